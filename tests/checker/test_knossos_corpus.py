"""The Knossos corpus is the oracle: every history's verdict must match its manifest entry, and
where the notes name the failing op and the previous ok op (0-based file positions counting
nemesis ops), kvcheck names the same ones.

The corpus lives beside the repository (../shared/corpora/knossos, resolved from the repository
root); outside CI a missing corpus skips these tests, with CI=true it fails them.
"""

from __future__ import annotations

import csv
import re
from typing import Any

import pytest

from kvcheck.checker.formats import read_history
from kvcheck.checker.linearizable import check_history
from kvcheck.checker.models import get_model

from .conftest import KNOSSOS as CORPUS
from .conftest import knossos_dir as _corpus


def _rows() -> list[dict[str, str]]:
    if not (CORPUS / "manifest.tsv").is_file():
        return [{"file": "<missing corpus>"}]
    with open(CORPUS / "manifest.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


ROWS = _rows()
INIT: dict[str, Any] = {
    "cas-register": None,  # the histories really started unset; reads compare literally
    "multi-register": {"x": 0, "y": 0},
    "mutex": False,
}


def test_corpus_is_complete() -> None:
    _corpus()
    assert len(ROWS) == 122
    assert {r["model"] for r in ROWS} == {"cas-register", "multi-register", "mutex"}


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_verdict_and_failing_op_match_knossos(row: dict[str, str]) -> None:
    corpus = _corpus()
    ops, _fmt = read_history(corpus / row["file"])
    model = get_model(row["model"], INIT[row["model"]])
    result = check_history(ops, model, timeout=60)
    expected = row["expected_valid"] == "true"
    assert result.valid is expected, result.to_json()
    assert len(result.keys) == 1
    key = next(iter(result.keys.values()))
    if expected:
        assert key.valid is True and key.op is None
        return
    assert key.valid is False
    assert key.op is not None and key.op["type"] == "ok"
    notes = row["notes"]
    m = re.search(r"op = index (\d+)", notes)
    if m:
        assert key.op["index"] == int(m.group(1))
    m = re.search(r"previous-ok = (?:index )?(\d+)", notes)
    if m:
        assert key.previous_ok is not None and key.previous_ok["index"] == int(m.group(1))
    if "no previous-ok" in notes:
        assert key.previous_ok is None
    m = re.search(r"last-op = (\d+)", notes)
    if m:  # each final path starts from the last op Knossos linearized
        assert key.final_paths
        assert all(p[0]["op"]["index"] == int(m.group(1)) for p in key.final_paths)
    m = re.search(r"exactly (\d+) final-paths", notes)
    if m:
        assert len(key.final_paths) == int(m.group(1))
    if "single final path" in notes:
        assert len(key.final_paths) == 1
    # every final path ends in the step the model rejects: the failing op's, or an open op's
    assert key.final_paths
    for path in key.final_paths:
        assert path[-1]["model"] is None and path[-1]["inconsistent"]
    assert any(p[-1]["op"]["index"] == key.op["index"] for p in key.final_paths)
    assert key.minimal_history and key.minimal_is_1_minimal
