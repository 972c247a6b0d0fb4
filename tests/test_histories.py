"""Every pinned history (histories/pinned/NAME/: history.jsonl, config.json, expected.json)
re-checked with `kvcheck check`: the verdict and the anomaly classes must be the expected
ones, so a checker change that loses a detection — or raises a false alarm on a clean
history — fails here."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kvcheck.workloads.regress import anomalies_of

PINNED = Path(__file__).resolve().parents[1] / "histories" / "pinned"
CASES = sorted(p for p in PINNED.iterdir() if p.is_dir()) if PINNED.is_dir() else []
EXIT = {"valid": 0, "invalid": 1, "unknown": 2}


def test_the_pinned_set_has_bug_and_clean_histories_of_each_workload() -> None:
    expected = [json.loads((c / "expected.json").read_text()) for c in CASES]
    assert any(e["verdict"] == "invalid" and "local_reads" in e["bugs"] for e in expected)
    for workload in ("register", "kv"):
        assert any(e["verdict"] == "valid" and e["workload"] == workload and not e["bugs"] for e in expected)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_pinned_history_keeps_its_verdict_and_anomaly(case: Path, tmp_path: Path) -> None:
    expected = json.loads((case / "expected.json").read_text())
    run = tmp_path / case.name  # kvcheck check RUN_DIR rewrites results.json and report.html there
    run.mkdir()
    for f in ("history.jsonl", "config.json"):
        shutil.copyfile(case / f, run / f)
    p = subprocess.run([sys.executable, "-m", "kvcheck", "check", str(run)], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == EXIT[expected["verdict"]], p.stdout + p.stderr
    results = json.loads((run / "results.json").read_text())
    found = sorted({f"{a['checker']}:{a['kind']}" for a in anomalies_of(results)})
    assert found == expected["anomalies"]


def test_pin_from_regress_shrinks_and_pins_each_caught_switch(tmp_path: Path) -> None:
    from kvcheck.histories.pin import pin_caught_switches
    from kvcheck.workloads.regress import Budget, make_plan, run_regress

    plan = make_plan(Budget(clean_seeds=1, bug_seeds=6, bug_wall=None, clean_time_limit=5.0), ["local_reads"],
                     clean=False)
    plan.bugs[0].time_limit = 10.0
    outcome = run_regress(plan, tmp_path / "store", jobs=1, progress=False)
    assert outcome.document["bugs"]["caught"] == 1
    pinned = pin_caught_switches(outcome.out_dir, root=tmp_path / "pinned", max_runs=4)
    assert [p.name for p in pinned] == ["bug-local_reads"]
    expected = json.loads((pinned[0] / "expected.json").read_text())
    assert expected["verdict"] == "invalid" and expected["anomalies"] == ["linearizable:nonlinearizable"]
    assert expected["bugs"] == ["local_reads"] and (pinned[0] / "history.jsonl").is_file()
