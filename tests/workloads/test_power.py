"""Detection power of the harness: bug-switch firing counts, swarm configurations, overlapping
and state-targeted fault schedules, rare-path perturbation, the wall-clock budget, grouped
internal findings and the recovery (liveness) check."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from kvcheck.checker.history import Op
from kvcheck.reference.bugs import BugCounter, Bugs
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.execution import group_findings
from kvcheck.workloads.nemesis import STATE_TARGETS, make_schedule, make_swarm_schedule, overlapping
from kvcheck.workloads.run import internal_problems, run_once
from kvcheck.workloads.sim.perturb import PERTURB_DEFAULTS, Perturber
from kvcheck.workloads.swarm import draw_swarm

REFERENCE = Path(__file__).resolve().parents[2] / "reference"


def test_fire_counts_only_when_on_and_changing_behaviour() -> None:
    first: list[str] = []
    counter = BugCounter(on_first=first.append)
    bugs = Bugs.from_names(["stale_term_append"]).counting(counter)
    assert bugs.fire("stale_term_append") is True
    assert bugs.fire("stale_term_append", False) is False  # on, but nothing would change
    assert bugs.fire("figure8_commit") is False  # off
    assert bugs.fire("stale_term_append") is True
    assert counter.counts == {"stale_term_append": 2}
    assert first == ["stale_term_append"]
    assert "counter" not in Bugs.names()
    assert Bugs.from_names(["local_reads"]) == Bugs.from_names(["local_reads"]).counting(BugCounter())
    with pytest.raises(AttributeError):
        bugs.fire("no_such_switch")


def test_every_switch_is_guarded_by_exactly_one_fire_line() -> None:
    sources = "\n".join(p.read_text() for p in REFERENCE.rglob("*.py") if p.name != "bugs.py")
    for name in Bugs.names():
        guards = re.findall(rf'bugs\.fire\("{name}"', sources)
        assert len(guards) == 1, f"{name}: {len(guards)} guarded lines"
        assert not re.search(rf"bugs\.{name}\b", sources), f"{name} read outside its fire() guard"


def test_swarm_draw_is_per_seed_keeps_pinned_options_and_round_trips() -> None:
    a = draw_swarm(RunConfig(workload="kv", seed=3), {"concurrency"})
    b = draw_swarm(RunConfig(workload="kv", seed=3), {"concurrency"})
    c = draw_swarm(RunConfig(workload="kv", seed=4))
    assert a.to_json() == b.to_json()
    assert a.to_json() != c.to_json()
    assert a.concurrency == RunConfig().concurrency  # pinned: as given
    assert a.swarm is not None and "concurrency" not in a.swarm["drawn"]
    a.validate()
    a.with_schedule()
    again = RunConfig.from_json(json.loads(json.dumps(a.to_json())))
    assert again.to_json() == a.to_json()
    # different seeds explore differently shaped runs
    shapes = {(cfg.nodes, tuple(cfg.faults), cfg.node["election_tick"], cfg.client_timeout)
              for cfg in (draw_swarm(RunConfig(seed=s)) for s in range(20))}
    assert len(shapes) >= 15


def test_swarm_draws_slow_disks_in_some_seeds_and_records_them() -> None:
    """perturb slow_disk: drawn in about a fifth of the seeds (0.2 to 0.6 per member),
    written into config.json's perturb section and the swarm record; a pinned perturb
    section is kept as given."""
    cfgs = [draw_swarm(RunConfig(workload="register", seed=s)) for s in range(200)]
    slow = [c.perturb["slow_disk"] for c in cfgs if c.perturb["slow_disk"] > 0]
    assert 20 <= len(slow) <= 60
    assert all(0.2 <= p <= 0.6 for p in slow)
    for c in cfgs[:20]:
        assert c.swarm is not None
        assert c.swarm["drawn"]["perturb"]["slow_disk"] == c.to_json()["perturb"]["slow_disk"] == c.perturb["slow_disk"]
    on = next(s for s, c in enumerate(cfgs) if c.perturb["slow_disk"] > 0)
    kept = RunConfig(workload="register", seed=on)
    given = dict(kept.perturb)
    assert draw_swarm(kept, {"perturb"}).perturb == given


def test_old_config_without_new_sections_reads_as_before() -> None:
    d = RunConfig(seed=1).to_json()
    for name in ("perturb", "client_attempt_timeout", "swarm", "wall_budget"):
        del d[name]
    cfg = RunConfig.from_json(d)
    assert cfg.perturb == PERTURB_DEFAULTS and cfg.client_attempt_timeout is None
    assert cfg.swarm is None and cfg.wall_budget is None


def test_swarm_schedule_overlaps_kinds_but_never_one_kind_with_itself() -> None:
    kinds = ["partition", "kill", "pause", "clock", "packet", "disk", "member"]
    saw_overlap = saw_state_target = False
    for seed in range(30):
        rng = random.Random(seed)
        faults = make_swarm_schedule(kinds, [1, 2, 3, 4, 5], 30.0, rng, gap=2.0, duration=(1.0, 6.0),
                                     max_overlap=3)
        assert faults
        for f in faults:
            assert 0 <= f.start <= f.stop <= 30.0
            at = [g for g in faults if g.start <= f.start < g.stop]
            assert len(at) <= 3
            assert sum(1 for g in at if g.kind == f.kind) == 1
            saw_state_target |= f.params.get("target") in STATE_TARGETS
        saw_overlap |= overlapping(faults)
    assert saw_overlap and saw_state_target
    assert not overlapping(make_schedule(kinds, [1, 2, 3], 30.0, random.Random(0)))


def test_perturber_at_zero_draws_nothing() -> None:
    rng = random.Random(1)
    state = rng.getstate()
    p = Perturber(dict(PERTURB_DEFAULTS), rng, 1.0)
    assert p.batch_delays(3) == [[0.0], [0.0], [0.0]]
    assert p.ready_delay() == 0.0 and p.kill_tears() is False
    assert rng.getstate() == state
    q = Perturber({**PERTURB_DEFAULTS, "batch_duplicate": 1.0, "long_delay": 1.0}, random.Random(2), 1.0)
    delays = q.batch_delays(2)
    assert all(len(d) == 2 and d[0] >= 1.0 and d[1] > 0 for d in delays)
    assert q.stats["batch_duplicate"] == 1 and q.stats["long_delay"] == 2


def test_findings_are_grouped_with_count_first_time_and_members() -> None:
    events = [(1.5, 4, "invariant violation on node 4: commit 9 beyond last index 7"),
              (1.7, 4, "invariant violation on node 4: commit 9 beyond last index 7"),
              (2.0, 2, "node 2 failed to start: x"), (3.0, 3, "node 3 failed to start: x")]
    grouped = group_findings(events)
    assert grouped == [
        {"finding": events[0][2], "count": 2, "first_time": 1.5, "members": [4]},
        {"finding": events[2][2], "count": 2, "first_time": 2.0, "members": [2, 3]},
    ]


def _op(index: int, time: float, process: int | str, typ: str, f: str, value: object = None) -> Op:
    return Op(index=index, time=int(time * 1e9), process=process, type=typ, f=f, value=value,
              key="register")


def test_recovery_is_checked_and_names_stuck_members() -> None:
    cfg = RunConfig()
    ops = [_op(0, 33.0, 0, "invoke", "read"), _op(1, 33.1, 0, "ok", "read", 3)]
    ok = {"phases": {"main_end": 30.0, "healed": 30.0, "recovered": 32.0, "healthy": True, "end": 40.0}}
    assert internal_problems(ops, cfg, ok)["problems"] == []
    stuck = {"phases": {"main_end": 30.0, "healed": 30.0, "recovered": 51.0, "healthy": False, "end": 60.0},
             "nodes": {"1": {"state": "up", "role": "LEADER", "commit": 90, "applied": 90},
                       "2": {"state": "up", "role": "FOLLOWER", "commit": 40, "applied": 40}}}
    out = internal_problems(ops, cfg, stuck)
    assert out["liveness"] is not None and not out["liveness"]["healthy"]
    text = "; ".join(out["liveness"]["explanation"])
    assert "n2 up follower commit 40 applied 40" in text
    failed_reads = [_op(0, 33.0, 0, "invoke", "read"), _op(1, 33.1, 0, "fail", "read")]
    out = internal_problems(failed_reads, cfg, ok)
    assert out["problems"] == [] and out["final_reads_unanswered"] == ["register"]
    findings = {**ok, "findings": [{"finding": "x", "count": 3, "first_time": 1.0, "members": [1]}]}
    assert internal_problems(ops, cfg, findings)["problems"] == ["3 internal invariant findings"]


def test_a_run_over_its_wall_budget_stops_and_checks_what_it_recorded(tmp_path: Path) -> None:
    cfg = RunConfig(workload="register", faults=["partition"], time_limit=300.0, seed=5, wall_budget=0.3)
    out = run_once(cfg, tmp_path, progress=False)
    stopped = out.results["run"]["stopped"]
    assert stopped.startswith("wall-clock budget of 0.3s spent at ")
    assert "messages sent" in stopped and "per simulated second; undelivered: " in stopped  # where it went
    assert out.results["checkers_valid"] is True and out.code == 0
    assert out.results["run"]["simulated_seconds"] < 300
    latest = (tmp_path / "latest").resolve()
    assert latest == out.run_dir.resolve()
    assert (latest / "results.json").is_file() and (latest / "history.jsonl").stat().st_size > 0


def test_swarm_run_replays_exactly(tmp_path: Path) -> None:
    cfg = draw_swarm(RunConfig(workload="register", seed=11, time_limit=8.0))
    first = run_once(cfg, tmp_path, progress=False)
    again = RunConfig.from_json(json.loads((first.run_dir / "config.json").read_text()))
    second = run_once(again, tmp_path, progress=False)
    assert (first.run_dir / "history.jsonl").read_bytes() == (second.run_dir / "history.jsonl").read_bytes()
    assert first.results["bugs"] == {"enabled": [], "fired": {}, "by_member": {}}


def test_overlapping_faults_take_turns_in_the_history(tmp_path: Path) -> None:
    """A kill and a member removal at once (the removal waits on the cluster): their nemesis
    ops never interleave, since a process has one open op at a time."""
    from kvcheck.workloads.nemesis import Fault

    cfg = RunConfig(workload="register", faults=["kill", "member"], time_limit=6.0, seed=2,
                    schedule=[Fault("member", 1.0, 4.0, {"target": "leader", "seed": 1}),
                              Fault("kill", 1.0, 3.0, {"target": "one", "seed": 2}),
                              Fault("kill", 3.5, 5.0, {"target": "leader", "seed": 3})])
    out = run_once(cfg, tmp_path, progress=False)
    open_ops = 0
    for op in out.execution.ops:
        if op.is_nemesis:
            open_ops += 1 if op.type == "invoke" else -1
            assert open_ops in (0, 1)
    assert out.results["run"]["faults_started"] == {"member": 1, "kill": 2}
    assert out.results["checkers_valid"] is True


def test_swarm_seed_with_snapshots_and_packet_loss_recovers(tmp_path: Path) -> None:
    """Pinned: swarm seed 3 (snapshots every 50 entries, a MsgSnap lost to packet loss) left
    two followers stuck for good, because the simulation's transport never told Raft
    whether a snapshot went out (the TCP transport does); now the leader probes again."""
    cfg = draw_swarm(RunConfig(workload="register", seed=3, time_limit=10.0))
    out = run_once(cfg, tmp_path, progress=False)
    assert out.results["internal"]["liveness"] is None, out.results["internal"]
    assert out.results["valid"] is True
    logs = "".join(p.read_text() for p in out.run_dir.glob("node*.log"))
    assert "installed the leader's snapshot" in logs


def test_swarm_seed_with_a_member_added_after_a_snapshot_catches_up(tmp_path: Path) -> None:
    """Found with clean kv swarm seed 13 (snapshots every 200 entries, a member replaced at
    19.4 s): the leader's latest snapshot predated the new member, which refused it (it is not
    in that snapshot's configuration) while the log before it was compacted: the member stayed
    at commit 0 for good. Members now snapshot right after applying an addition. Pinned to
    seed 35 since links deliver in order (seed 13 no longer adds a member; on the first
    in-order network, with that fix reverted, seed 35's three added members stayed at commit
    0; not checked again since held cuts may stall): the added members catch up."""
    cfg = draw_swarm(RunConfig(workload="kv", seed=35))
    out = run_once(cfg, tmp_path, progress=False)
    assert out.results["internal"]["liveness"] is None, out.results["internal"]
    assert out.results["valid"] is True
    joined = [s for i, s in out.results["run"]["nodes"].items() if int(i) > cfg.nodes]
    assert joined and all(s["state"] == "up" and s["applied"] > 0 for s in joined), joined


def test_swarm_retries_of_one_request_id_catch_no_session_dedup(tmp_path: Path) -> None:
    """Swarm seed 19 cuts client attempts short, so writes are retried under the same request
    id during faults: without the session table's dedup a retried write applies twice and
    the history shows it; the clean store's history of the same run is valid. (Seed 1 on
    reordering links; on in-order links, with half of the held cuts stalled paths, seeds
    0-18 fire the switch without a client seeing the double write, or never fire it.)"""
    cfg = draw_swarm(RunConfig(workload="register", seed=19, time_limit=10.0, bugs=["no_session_dedup"]))
    out = run_once(cfg, tmp_path / "bug", progress=False)
    assert out.results["bugs"]["fired"]["no_session_dedup"] > 0
    assert out.results["checkers_valid"] is False
    clean = run_once(draw_swarm(RunConfig(workload="register", seed=19, time_limit=10.0)), tmp_path / "clean",
                     progress=False)
    assert clean.results["valid"] is True


def test_swarm_draws_snapshot_storms_in_some_seeds_from_their_own_substream() -> None:
    """A quarter of the seeds snapshot every 5 to 20 applied entries (keeping 1, 2 or half
    that many entries of log); the storm comes from a substream of its own, so every other
    draw of a seed is what it was without it; a pinned node section is kept."""
    from kvcheck.workloads import swarm

    cfgs = [draw_swarm(RunConfig(workload="kv", seed=s)) for s in range(200)]
    storms = [c for c in cfgs if c.node["snapshot_count"] in swarm.STORM_COUNTS]
    assert 30 <= len(storms) <= 75
    for c in storms:
        count, kept = c.node["snapshot_count"], c.node["snapshot_catchup_entries"]
        assert kept in (1, 2, count // 2)
        assert c.swarm is not None and c.swarm["drawn"]["node"]["snapshot_count"] == count
    storm_seed = storms[0].seed
    quiet = swarm._snapshot_storm
    try:
        swarm._snapshot_storm = lambda seed: {}  # type: ignore[assignment]
        without = draw_swarm(RunConfig(workload="kv", seed=storm_seed))
    finally:
        swarm._snapshot_storm = quiet  # type: ignore[assignment]
    with_storm = draw_swarm(RunConfig(workload="kv", seed=storm_seed))
    a, b = with_storm.to_json(), without.to_json()
    assert {k for k in a if a[k] != b[k]} == {"node", "swarm"}
    assert {k for k in a["node"] if a["node"][k] != b["node"][k]} <= {"snapshot_count", "snapshot_catchup_entries"}
    pinned = RunConfig(workload="kv", seed=storm_seed)
    given = dict(pinned.node)
    assert draw_swarm(pinned, {"node"}).node == given


def test_a_store_that_never_yields_is_stopped_by_the_watchdog_and_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store loop that never yields holds the one thread every simulated member shares, so
    the wall budget (checked when the simulation is idle) never fires: the watchdog stops the
    run its grace later, names the member and where it was, and what was recorded is checked."""
    from kvcheck.reference.node import Node
    from kvcheck.workloads.sim.cluster import stuck_grace

    original = Node.propose
    proposals: list[int] = []

    async def propose(self: Node, *args: Any, **kwargs: Any) -> Any:
        proposals.append(self.id)
        if len(proposals) == 30:
            while True:  # the bug: a loop that never yields
                pass
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(Node, "propose", propose)
    cfg = RunConfig(workload="register", faults=[], time_limit=30.0, seed=3, wall_budget=0.5)
    out = run_once(cfg, tmp_path, progress=False)
    run = out.results["run"]
    assert stuck_grace(0.5) == 5.0
    assert run["stuck"]["member"] == proposals[-1]
    assert run["stopped"].startswith(f"watchdog: member n{proposals[-1]} never yielded: 5.5s of wall time")
    assert run["stuck"]["where"].startswith("reference/") and " in " in run["stuck"]["where"]
    assert any(f"node {proposals[-1]} stuck: never yielded" in f["finding"] for f in run["findings"])
    assert out.code == 1 and out.results["checkers_valid"] is True  # from inside the store
    ops = out.execution.ops
    assert sum(op.type == "ok" for op in ops) > 0 and run["simulated_seconds"] < 30
    latest = (tmp_path / "latest").resolve()
    assert latest == out.run_dir.resolve() and (latest / "results.json").is_file()
