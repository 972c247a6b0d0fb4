"""The append and wr workloads end to end in the simulation: clean runs under every fault
kind are valid, the history lines carry micro-op lists, and each transaction bug switch is
caught by the txn checker from the history alone (one pinned seed per switch; the sweep in
benchmarks/txn_bugs.py shows how soon each is caught)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.nemesis import FAULT_KINDS
from kvcheck.workloads.run import RunOutcome, run_once
from kvcheck.workloads.txn import TxnWorkload, decode_list
from kvcheck.workloads.workload import make_workload


def sim(tmp_path: Path, **kw: Any) -> RunOutcome:
    base: dict[str, Any] = dict(workload="append", faults=list(FAULT_KINDS), time_limit=8.0, rate=80.0, seed=0)
    base.update(kw)
    return run_once(RunConfig(**base), tmp_path, progress=False)


def txn_result(out: RunOutcome) -> dict[str, Any]:
    return out.results["checkers"]["txn"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(("workload", "seed"), [("append", 0), ("append", 1), ("wr", 0), ("wr", 1)])
def test_clean_store_every_fault_kind_valid(tmp_path: Path, workload: str, seed: int) -> None:
    out = sim(tmp_path, workload=workload, seed=seed)
    r = txn_result(out)
    assert out.results["valid"] is True, json.dumps(r)[:3000]
    assert r["ok"] >= 200
    assert r["weakest_violated"] == []
    assert r["strongest_satisfied"] == ["strict-serializable"]
    # history lines: the txn as micro-ops, completions with the values read
    line = next(json.loads(x) for x in (out.run_dir / "history.jsonl").read_text().splitlines()
                if '"ok"' in x and '"txn"' in x and '"r"' in x)
    _f, k, v = next(m for m in line["value"] if m[0] == "r")
    assert isinstance(k, int) and (v is None or isinstance(v, list if workload == "append" else int))


def _kinds(out: RunOutcome) -> set[str]:
    return set(txn_result(out)["anomaly_counts"])


def test_txn_read_stale_snapshot_is_caught(tmp_path: Path) -> None:
    """Compares read the revision before the latest: a guard passes on a stale snapshot and
    an append overwrites another's, which later reads show as a different order."""
    out = sim(tmp_path, bugs=["txn_read_stale_snapshot"], seed=0)
    assert out.code == 1 and out.results["valid"] is False
    assert "incompatible-order" in _kinds(out)


def test_txn_non_atomic_is_caught(tmp_path: Path) -> None:
    """A txn's later puts wait for the next entry: a read in between sees half of it."""
    out = sim(tmp_path, bugs=["txn_non_atomic"], seed=0)
    assert out.code == 1
    assert _kinds(out) & {"G-single", "G-single-realtime", "G-single-process", "G1c", "G1c-realtime"}


def test_no_session_dedup_is_caught_as_duplicate_elements(tmp_path: Path) -> None:
    """A write retried under the same request id after its first attempt was applied is
    applied again: the appended value appears twice in the list (etcd issue 14890). (Seed 3
    since member faults may add learners, of seeds 0-15 caught at 3, 7, 8, 10, 13, 14; seed 1
    when links began to deliver in order; seed 12 before.)"""
    out = sim(tmp_path, bugs=["no_session_dedup"], seed=3)
    assert out.code == 1
    assert "duplicate-elements" in _kinds(out)
    dup = next(a for a in txn_result(out)["anomalies"] if a["kind"] == "duplicate-elements")
    assert "2 times" in dup["explanation"]


def test_workload_shapes() -> None:
    w = make_workload("append", keys=4)
    assert w.checkers == ("txn", "members")
    assert w.check_options() == {"consistency_model": "strict-serializable", "extra": {"txn_kind": "append"}}
    sr = make_workload("append-serializable-reads", keys=4)
    assert sr.name == "append-serializable-reads"
    assert sr.check_options()["consistency_model"] == "serializable"
    assert decode_list(b"1 2 x") == [1, 2, "x"]
    with pytest.raises(ValueError):
        TxnWorkload("nope")
