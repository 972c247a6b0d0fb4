"""The CI regression guard (.ci/run): the switches it requires `kvcheck regress --quick` to
catch are known switches, listed once, each with its shrunk failing history pinned."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kvcheck.reference.bugs import Bugs

ROOT = Path(__file__).resolve().parents[1]


def caught_switches() -> list[str]:
    text = (ROOT / ".ci" / "run").read_text()
    match = re.search(r"^caught_switches=\(\n(.*?)^\)", text, re.M | re.S)
    assert match, ".ci/run lists caught_switches=( ... )"
    return [line.strip() for line in match.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_ci_guard_names_known_switches_each_pinned() -> None:
    names = caught_switches()
    assert names, "the guard names at least one switch"
    assert len(names) == len(set(names)), "each switch once"
    assert set(names) <= set(Bugs.names()), sorted(set(names) - set(Bugs.names()))
    for name in names:
        expected = ROOT / "histories" / "pinned" / f"bug-{name}" / "expected.json"
        assert expected.is_file(), f"{name} is required caught by CI but has no pinned history"
        assert json.loads(expected.read_text())["verdict"] == "invalid"


def test_the_ci_guard_runs_regress_quick_with_every_listed_switch() -> None:
    text = (ROOT / ".ci" / "run").read_text()
    assert 'bug_args+=(--bug "$switch")' in text
    assert re.search(r'^kvcheck regress --quick .*"\$\{bug_args\[@\]\}"', text, re.M)
