"""Map the project's top-level folders into one import name, ``kvcheck``.

The folders show the parts (checker/, reference/, workloads/, histories/) while everything
imports as ``kvcheck.checker``, ``kvcheck.reference`` and so on; no generic top-level name
like ``checker`` is installed. Subpackages are found by walking each folder, so adding one
needs no edit here.
"""

from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
PARTS = {
    "kvcheck": "kvcheck",
    "kvcheck.checker": "checker",
    "kvcheck.reference": "reference",
    "kvcheck.workloads": "workloads",
    "kvcheck.histories": "histories",
    "kvcheck.serve": "serve",
}


def find_packages() -> list[str]:
    packages = []
    for name, folder in PARTS.items():
        base = ROOT / folder
        for init in sorted(base.rglob("__init__.py")):
            rel = init.parent.relative_to(base)
            if "build" in rel.parts or any(p.startswith(".") for p in rel.parts):
                continue
            packages.append(".".join([name, *rel.parts]) if rel.parts else name)
    return packages


setup(
    packages=find_packages(),
    package_dir=PARTS,
    package_data={
        "kvcheck": ["py.typed"],
        "kvcheck.histories": ["**/*.jsonl", "**/*.json", "**/*.edn", "**/*.log", "**/*.txt"],
        "kvcheck.checker": ["**/*.js", "**/*.css", "**/*.html"],
        "kvcheck.serve": ["templates/*.html", "static/*.js", "static/*.css"],
    },
    include_package_data=False,
)
