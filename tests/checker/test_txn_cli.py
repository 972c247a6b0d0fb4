"""``kvcheck check --checker txn`` on bare history files: Jepsen EDN append histories as
they are, JSONL micro-op lists, --consistency-model, and malformed transactions."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kvcheck.cli import main
from kvcheck.exitcodes import ExitCode

ROOT = Path(__file__).resolve().parents[2]
READ_SKEW = ROOT / "histories" / "examples" / "append-read-skew.edn"


def run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["check", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_jepsen_edn_append_history_read_skew() -> None:
    code, out, _ = run(READ_SKEW, "--checker", "txn")
    assert code == ExitCode.INVALID
    assert "G-single: T3 < T2 because T3 read key 1 as [], without T2's append of 1" in out
    assert "weakest violated repeatable-read, snapshot-isolation" in out
    code, out, _ = run(READ_SKEW, "--checker", "txn", "--consistency-model", "read-committed")
    assert code == ExitCode.VALID, out


def test_json_names_the_models_and_the_cycle(tmp_path: Path) -> None:
    code, out, _ = run(READ_SKEW, "--checker", "txn", "--json")
    assert code == ExitCode.INVALID
    entry = json.loads(out)["files"][0]["checkers"]["txn"]
    assert entry["strongest_satisfied"] == ["cursor-stability"]
    assert entry["ruled_out_by"]["snapshot-isolation"] == ["G-single"]
    anomaly = entry["anomalies"][0]
    assert anomaly["ops"] == [3, 2]
    assert [e["type"] for e in anomaly["detail"]["cycle"]] == ["rw", "wr"]
    assert anomaly["detail"]["dot"].startswith("digraph")
    report = tmp_path / "r.html"
    code, _, _ = run(READ_SKEW, "--checker", "txn", "--report", report)
    assert "G-single" in report.read_text()


def test_jsonl_micro_ops_and_malformed_ones(tmp_path: Path) -> None:
    good = tmp_path / "h.jsonl"
    lines = [{"process": 0, "type": "invoke", "f": "txn", "value": [["append", "k1", 1], ["r", "k2", None]]},
             {"process": 0, "type": "ok", "f": "txn", "value": [["append", "k1", 1], ["r", "k2", []]]},
             {"process": 1, "type": "invoke", "f": "txn", "value": [["r", "k1", None]]},
             {"process": 1, "type": "ok", "f": "txn", "value": [["r", "k1", [1]]]}]
    good.write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, out, _ = run(good, "--checker", "txn")
    assert code == ExitCode.VALID, out
    bad = tmp_path / "bad.jsonl"
    lines[3]["value"] = [["inc", "k1", 1]]
    bad.write_text("".join(json.dumps(x) + "\n" for x in lines))
    code, _, err = run(bad, "--checker", "txn")
    assert code == ExitCode.DATAERR
    assert "bad.jsonl:4:" in err and "inc" in err


def test_consistency_model_needs_the_txn_checker() -> None:
    code, _, err = run(READ_SKEW, "--checker", "linearizable", "--model", "register",
                       "--consistency-model", "serializable")
    assert code == ExitCode.USAGE and "--consistency-model" in err
    code, _, _ = run(READ_SKEW, "--checker", "txn", "--consistency-model", "bogus")
    assert code == ExitCode.USAGE
