"""The package's layering, read from the source with ``ast`` (ARCHITECTURE.md, "Layering"):
the checker is black-box — nothing under checker/ imports the store or the harness — and no
module imports another that (directly or through others) imports it back. Every import
counts, including those inside functions and under TYPE_CHECKING: a lazy import is still a
dependency."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"kvcheck": "kvcheck", "checker": "kvcheck.checker", "reference": "kvcheck.reference",
           "workloads": "kvcheck.workloads", "histories": "kvcheck.histories", "serve": "kvcheck.serve"}


def modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder, package in FOLDERS.items():
        base = ROOT / folder
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The kvcheck modules ``name`` imports (``from pkg import mod`` resolves to the module
    when ``pkg.mod`` is one)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_the_checker_never_imports_the_store_or_the_harness() -> None:
    bad = sorted(f"{m} imports {t}" for m, ts in graph().items() if m.startswith("kvcheck.checker")
                 for t in ts if t.startswith(("kvcheck.workloads", "kvcheck.reference")))
    assert not bad, "\n".join(bad)


def test_the_store_cores_never_import_the_harness() -> None:
    bad = sorted(f"{m} imports {t}" for m, ts in graph().items() if m.startswith("kvcheck.reference")
                 for t in ts if t.startswith(("kvcheck.workloads", "kvcheck.checker")))
    assert not bad, "\n".join(bad)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in g:
                    continue
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(g[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_walker_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_below_the_web_ui_imports_it() -> None:
    """kvcheck.serve sits on top of both stacks, like the command line: it reads the run
    store and talks to clusters, and nothing else depends on it."""
    bad = sorted(f"{m} imports {t}" for m, ts in graph().items() if not m.startswith("kvcheck.serve")
                 for t in ts if t.startswith("kvcheck.serve"))
    assert bad == []
