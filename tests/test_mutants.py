"""benchmarks/mutants.py stays usable: every mutant's snippet still occurs exactly once in the
source (a store edit that breaks a mutant fails here, not in a long benchmark run), and a
mutant applied to a copy of the package is what a process with that copy first on PYTHONPATH
imports and runs (the worktree is untouched). No matrix is run here."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kvcheck_bench_mutants", ROOT / "benchmarks" / "mutants.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


MUTANTS = _script()


@pytest.mark.parametrize("mutant", MUTANTS.MUTANTS, ids=lambda m: m.name)
def test_snippet_occurs_once(mutant: object) -> None:
    text = MUTANTS.check_mutant(mutant)
    assert text.count(mutant.original) == 1  # type: ignore[attr-defined]


def test_mutants_are_distinct_and_spread() -> None:
    names = [m.name for m in MUTANTS.MUTANTS]
    assert len(names) == len(set(names)) >= 16
    assert {m.area for m in MUTANTS.MUTANTS} >= {"raft", "storage", "kv", "watch", "lease"}
    from kvcheck.reference.bugs import Bugs

    assert not set(names) & set(Bugs.names())


def test_a_broken_snippet_is_refused(tmp_path: Path) -> None:
    m = MUTANTS.MUTANTS[0]
    broken = MUTANTS.Mutant("broken", m.area, m.file, m.original + "\n# not in the source", m.replacement, "")
    with pytest.raises(MUTANTS.MutantError, match="occurs 0 times"):
        MUTANTS.check_mutant(broken)


def test_applied_mutant_is_what_a_child_imports(tmp_path: Path) -> None:
    m = next(m for m in MUTANTS.MUTANTS if m.name == "commit_quorum_off_by_one")
    before = (ROOT / m.file).read_text()
    tree = MUTANTS.build_tree(tmp_path / "tree", m)
    assert (ROOT / m.file).read_text() == before  # the worktree is never edited
    probe = (
        "import inspect, sys\n"
        "from kvcheck.reference.raft.raft import Raft\n"
        "import kvcheck.reference.raft.raft as mod\n"
        "print(mod.__file__)\n"
        "print('MUTATED' if 'quorum() - 2' in inspect.getsource(Raft.maybe_commit) else 'ORIGINAL')\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    # (run outside the worktree: python -c puts the current directory first on sys.path, and
    # the worktree's kvcheck/ folder would be imported from there)
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    path, verdict = out.stdout.split()
    assert Path(path).resolve().is_relative_to(tree.resolve())
    assert verdict == "MUTATED"
    # without the copy on the path, the same probe runs the project's own code
    env.pop("PYTHONPATH")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert out.stdout.split()[1] == "ORIGINAL"
