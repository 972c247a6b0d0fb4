"""The watch workload end to end in the simulation: a clean store under every fault kind is
valid for both of its checkers, and the two watch bug switches are caught from the history
alone (pinned seeds; benchmarks/sweep.py --workloads watch --bug NAME finds others)."""

from __future__ import annotations

from typing import Any

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
    assert {n: r.valid for n, r in results.items()} == {"linearizable": True, "watch": True}, \
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
