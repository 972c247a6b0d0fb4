"""The watch workload end to end in the simulation: a clean store under every fault kind is
valid for both of its checkers, and the two watch bug switches are caught from the history
alone (pinned seeds; benchmarks/sweep.py --workloads watch --bug NAME finds others)."""

from __future__ import annotations

from typing import Any

import pytest

from kvcheck.checker.api import CheckOptions, run_checkers
from kvcheck.checker.history import pair_calls
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.run import Progress
from kvcheck.workloads.sim.cluster import execute_sim
from kvcheck.workloads.workload import make_workload

ALL_FAULTS = ["partition", "kill", "pause", "clock", "packet", "disk", "member"]


def run(seed: int, faults: list[str], bugs: list[str], time_limit: float = 10.0) -> tuple[Any, dict[str, Any]]:
    cfg = RunConfig(workload="watch", faults=faults, seed=seed, time_limit=time_limit, bugs=bugs).with_schedule()
    ex = execute_sim(cfg, Progress(time_limit, enabled=False))
    workload = make_workload("watch", keys=cfg.keys)
    return ex, run_checkers(list(workload.checkers), ex.ops, CheckOptions(**workload.check_options()))


def test_a_clean_run_under_every_fault_is_valid_and_exercises_watches() -> None:
    ex, results = run(1, ALL_FAULTS, [])
    assert {n: r.valid for n, r in results.items()} == {"linearizable": True, "watch": True, "members": True}, \
        [a.to_json() for r in results.values() for a in r.anomalies]
    w = results["watch"].detail
    assert w["streams"] >= 8 and w["events"] >= 300 and w["final_read"] is not None
    calls = pair_calls(ex.ops)
    fs = {c.f for c in calls if c.outcome == "ok"}
    assert {"put", "delete", "txn", "read", "range", "watch", "compact"} <= fs
    # every write completion carries its revision; each stream is its own process
    assert all("revision" in c.completion.extra for c in calls
               if c.f in ("put", "delete", "txn") and c.outcome == "ok" and c.completion is not None)
    watch_procs = [c.process for c in calls if c.f == "watch"]
    assert len(watch_procs) == len(set(watch_procs))


def test_the_same_seed_gives_the_same_watch_history() -> None:
    a, _ = run(3, ["partition"], [], time_limit=4.0)
    b, _ = run(3, ["partition"], [], time_limit=4.0)
    assert [o.to_dict() for o in a.ops] == [o.to_dict() for o in b.ops]


def test_watch_resume_gap_is_caught() -> None:
    # seed 1 under partition,kill: a stream re-opened from last-seen + 1 misses that revision
    _, results = run(1, ["partition", "kill"], ["watch_resume_gap"])
    kinds = {a.kind for a in results["watch"].anomalies}
    assert results["watch"].valid is False and {"watch:resumable", "watch:reliable"} <= kinds


def test_watch_from_lagging_member_is_caught() -> None:
    # seed 2: a progress notification claims revisions the member has not applied; the event comes later
    _, results = run(2, ["partition", "kill"], ["watch_from_lagging_member"])
    assert results["watch"].valid is False
    assert "watch:bookmarkable" in {a.kind for a in results["watch"].anomalies}


@pytest.mark.parametrize("seed, faults, time_limit", [(5, ["partition"], 10.0), (6, ALL_FAULTS, 20.0)])
def test_a_history_with_30_percent_info_writes_is_decided_and_each_placement_explained(
        seed: int, faults: list[str], time_limit: float) -> None:
    # Take a clean run's history and forget the outcome of 30% of its ok writes (each becomes
    # info, its process retired: later ops of that thread move to a fresh process id). The
    # checker must still decide (valid) and say where it put each of them.
    import random

    from kvcheck.checker.history import Op
    from kvcheck.checker.watch import WatchChecker

    ex, _ = run(seed, faults, [], time_limit=time_limit)
    rng = random.Random(0)
    alias: dict[object, object] = {}
    fresh = iter(range(1_000_000, 2_000_000))
    ops: list[Op] = []
    forgotten = 0
    for op in ex.ops:
        d = op.to_dict()
        d["process"] = alias.get(op.process, op.process)
        if op.type == "ok" and op.f in ("put", "delete", "txn") and rng.random() < 0.3:
            d = {k: v for k, v in d.items() if k not in ("revision", "deleted")}
            d["type"], d["error"] = "info", "timeout"
            if op.f == "txn":  # an info txn's value is the request's: no deleted counts known
                d["value"] = [[m[0], m[1], m[2] if m[0] == "put" else None] for m in d["value"]]
            alias[op.process] = next(fresh)
            forgotten += 1
        ops.append(Op.from_dict(d, position=len(ops)))
    result = WatchChecker().check(ops, CheckOptions())
    assert forgotten >= 50
    assert result.valid is True, [a.to_json() for a in result.anomalies[:5]]
    placements = result.detail["placements"]
    assert len(placements) >= forgotten and all(p["how"] for p in placements)
    placed = [p for p in placements if p["revision"] is not None]
    assert len(placed) >= 0.6 * forgotten


def test_a_history_compare_becomes_the_stores_compare() -> None:
    from kvcheck.reference.kv import requests as kvr
    from kvcheck.workloads.watch import guard_compare

    c = guard_compare(["version", "w/k0", 2, ">"])
    assert (c.target, c.result, c.key, c.version) == (kvr.CompareTarget.VERSION, kvr.CompareResult.GREATER,
                                                      b"w/k0", 2)
    c = guard_compare(["mod_revision", "w/k1", 7, "!="])
    assert (c.target, c.result, c.mod_revision) == (kvr.CompareTarget.MOD, kvr.CompareResult.NOT_EQUAL, 7)
    c = guard_compare(["value", "w/k1", 5, "="])
    assert (c.target, c.result, c.value) == (kvr.CompareTarget.VALUE, kvr.CompareResult.EQUAL, b"5")
