"""Stale-leader episodes (nemesis.add_stale_leader_episodes, swarm ``schedule.stale_leader``):
the leader cut off on a minority side (partition shape ``leader-minority``), paused while the
majority elects and serves writes, and resumed while the cut holds, still believing it leads.

These tests pin the shape (the leader plus followers up to a minority), the episode layout
(what it adds, what it drops, that it leaves the rest of the schedule alone), the swarm draw,
and that in a clean simulated run the resumed member does lead again next to a newer leader
(the deposed-leader window the episode exists for) while the history stays valid."""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.nemesis import Fault, add_stale_leader_episodes, partition_links
from kvcheck.workloads.run import run_once


@pytest.mark.parametrize("n", [3, 5, 7])
def test_leader_minority_puts_the_leader_with_followers_up_to_a_minority(n: int) -> None:
    nodes = list(range(1, n + 1))
    for seed in range(10):
        blocked, desc = partition_links("leader-minority", nodes, random.Random(seed), 2)
        side, rest = desc["groups"]
        assert desc["leader"] == 2 and 2 in side
        assert len(side) == (n - 1) // 2 and len(rest) == n - len(side)  # a minority, the largest one
        assert sorted(side + rest) == nodes
        # every link between the sides is cut both ways, and no other
        assert sorted(blocked) == sorted([[a, b] for a in side for b in rest] + [[b, a] for a in side for b in rest])


def _episodes(schedule: list[Fault], kinds: list[str], seed: int = 3, limit: float = 30.0,
              et: float = 1.0, keep: bool = False) -> list[Fault]:
    return add_stale_leader_episodes(schedule, kinds, limit, random.Random(seed), election_timeout=et, keep=keep)


def test_an_episode_cuts_the_leader_side_and_pauses_the_leader_inside_the_cut() -> None:
    for seed in range(20):
        out = _episodes([], ["partition", "pause"], seed)
        cuts = [f for f in out if f.kind == "partition"]
        pauses = [f for f in out if f.kind == "pause"]
        assert 1 <= len(cuts) <= 2 and len(pauses) == len(cuts)
        for c, p in zip(cuts, pauses, strict=True):
            assert c.params["shape"] == "leader-minority" and p.params["target"] == "leader"
            # the pause begins right after the cut and ends while it holds: the leader resumes
            # on the cut-off side, with 2-3 election timeouts of the cut still to come
            assert c.start < p.start < c.start + 0.01
            assert p.stop - p.start >= 2.5 and c.stop - p.stop >= 2.0
            assert c.stop <= 30.0 - 0.1


def test_an_episode_keeps_every_fault_and_goes_where_none_of_its_kinds_is_active() -> None:
    kill = Fault("kill", 0.0, 29.0, {"target": "one", "seed": 1})
    early = Fault("pause", 0.0, 0.2, {"target": "one", "seed": 2})
    busy = Fault("partition", 0.1, 12.0, {"shape": "halves", "seed": 3})
    for seed in range(20):
        out = _episodes([kill, early, busy], ["partition", "pause", "kill"], seed, keep=True)
        assert [f for f in out if f in (kill, early, busy)] == [early, kill, busy]  # all kept
        added = [f for f in out if f.params.get("shape") == "leader-minority" or f.params.get("target") == "leader"]
        assert added and all(f.start >= busy.stop + 0.2 for f in added)  # after the busy stretch
        # no two faults of one kind at once
        for kind in ("partition", "pause"):
            fs = sorted((f for f in out if f.kind == kind), key=lambda f: f.start)
            assert all(a.stop <= b.start for a, b in itertools.pairwise(fs))
    # a schedule busy to the end leaves no room: nothing is added
    whole = Fault("partition", 0.1, 29.5, {"shape": "halves", "seed": 3})
    assert _episodes([whole], ["partition", "pause"], keep=True) == [whole]


def test_without_keep_an_episode_replaces_the_overlapping_faults_of_its_kinds() -> None:
    clock = Fault("clock", 0.0, 29.0, {"mode": "skew", "node": 1, "rate": 0.7})
    whole = Fault("partition", 0.1, 29.5, {"shape": "halves", "seed": 3})
    out = _episodes([clock, whole], ["partition", "pause", "clock"])
    assert clock in out and whole not in out
    assert {f.params.get("shape") for f in out if f.kind == "partition"} == {"leader-minority"}
    for kind in ("partition", "pause"):
        fs = sorted((f for f in out if f.kind == kind), key=lambda f: f.start)
        assert fs and all(a.stop <= b.start for a, b in itertools.pairwise(fs))


def test_without_pause_the_episode_is_the_cut_alone_and_without_partition_nothing() -> None:
    out = _episodes([], ["partition", "kill"])
    assert out and {f.kind for f in out} == {"partition"}
    sched = [Fault("pause", 1.0, 2.0, {"target": "one", "seed": 2})]
    assert _episodes(sched, ["pause", "kill"]) == sched
    assert _episodes([], ["partition", "pause"], limit=2.0) == []  # no room for an episode


def test_most_swarm_seeds_with_partitions_draw_episodes_into_their_schedule() -> None:
    from kvcheck.workloads.swarm import draw_swarm

    drawn = 0
    with_partition = 0
    for seed in range(60):
        cfg = draw_swarm(RunConfig(workload="register", seed=seed, faults=[]))
        flag = cfg.swarm is not None and cfg.swarm["schedule"].get("stale_leader")
        if "partition" in cfg.faults:
            with_partition += 1
        else:
            assert not flag
        cfg.with_schedule()
        minority = [f for f in cfg.schedule if f.params.get("shape") == "leader-minority"]
        assert flag or not minority  # only the flag adds the shape (a short run may have no room)
        drawn += bool(flag)
    assert 0.4 * with_partition < drawn < 0.85 * with_partition


def test_the_resumed_leader_leads_again_beside_a_newer_leader_and_the_clean_store_stays_valid(
        tmp_path: Path) -> None:
    """The episode's point: after the pause, the member resumes as leader of its old term while
    another member leads a newer one (a deposed leader, until check-quorum); the clean store
    confirms every read with a quorum, so the history stays valid."""
    cut = Fault("partition", 2.0, 9.0, {"shape": "leader-minority", "seed": 5})
    pause = Fault("pause", 2.001, 5.0, {"target": "leader", "seed": 6})
    cfg = RunConfig(workload="register", faults=["partition", "pause"], time_limit=10.0, seed=3,
                    wall_budget=60.0, schedule=[cut, pause])
    out = run_once(cfg, tmp_path, progress=False)
    assert out.results["valid"] is True, out.results
    ops = out.execution.ops
    start = next(op for op in ops if op.is_nemesis and op.f == "start-partition" and op.type == "info")
    paused = next(op for op in ops if op.is_nemesis and op.f == "start-pause" and op.type == "info")
    old = start.value["leader"]
    assert paused.value["nodes"] == [old] and old in start.value["groups"][0]
    assert len(start.value["groups"][0]) == 2  # 5 members: the leader and one follower

    def events(member: int) -> list[tuple[float, str]]:
        text = (out.run_dir / f"node{member}.log").read_text().splitlines()
        return [(float(line.split()[0]), line) for line in text if not line.startswith("#")]

    resumed = next(t for t, line in events(old) if "resumed" in line)
    stepped_down = next(t for t, line in events(old) if t > resumed and "became follower" in line)
    newer = [t for m in range(1, cfg.nodes + 1) if m != old for t, line in events(m)
             if re.search(r"became leader", line) and 2.0 < t < resumed]
    assert newer, "the majority elected no leader while the old one was paused"
    assert stepped_down - resumed > 0.1  # it led again after the resume, beside the newer leader


def test_an_episode_never_displaces_a_fault_aimed_at_a_cluster_state() -> None:
    """A rolling-leader partition or a cut at a leader's ack reaches interleavings no plain
    draw does (figure8_commit's catches come from rolling-leader rounds): an episode goes
    around it even without ``keep``, while a plain overlapping partition gives way."""
    rolling = Fault("partition", 0.1, 10.0, {"shape": "rolling-leader", "seed": 3})
    plain = Fault("partition", 12.0, 14.0, {"shape": "halves", "seed": 4})
    for seed in range(20):
        out = _episodes([rolling, plain], ["partition", "pause"], seed)
        assert rolling in out
        added = [f for f in out if f.params.get("shape") == "leader-minority"]
        assert added and all(f.start >= rolling.stop + 0.2 for f in added)
        if any(f.start < plain.stop and f.stop > plain.start for f in added):
            assert plain not in out


def test_with_stall_a_run_without_pause_faults_still_pauses_the_leader_inside_the_cut() -> None:
    """``stall`` (the swarm pool has pause, the seed's kinds do not): each episode's leader
    stalls as a drawn pause would, the stall drawn from the episode's partition seed alone, so
    the episode's cut keeps the seed it has without ``stall``; an episode only grows where the
    stall fits (else it is the cut alone, as without ``stall``)."""
    stalled = 0
    for seed in range(40):
        plain = _episodes([], ["partition", "kill"], seed)
        out = add_stale_leader_episodes([], ["partition", "kill"], 30.0, random.Random(seed),
                                        election_timeout=1.0, stall=True)
        cuts = [f for f in out if f.kind == "partition"]
        pauses = [f for f in out if f.kind == "pause"]
        assert [c.params["seed"] for c in cuts] == [f.params["seed"] for f in plain if f.kind == "partition"]
        assert {f.kind for f in plain} == {"partition"}
        for p in pauses:
            c = next(c for c in cuts if c.start < p.start < c.start + 0.01)
            assert p.params["target"] == "leader"
            assert p.stop - p.start >= 2.5 and c.stop - p.stop >= 2.0 and c.stop <= 30.0 - 0.1
        stalled += len(pauses) == len(cuts)
    assert stalled >= 30
    # no room for the stall: the cut alone, exactly as without stall
    for seed in range(40):
        short = add_stale_leader_episodes([], ["partition"], 7.0, random.Random(seed), election_timeout=1.0,
                                          stall=True)
        plain = add_stale_leader_episodes([], ["partition"], 7.0, random.Random(seed), election_timeout=1.0)
        assert short == plain or all(f.stop <= 7.0 - 0.1 for f in short)


def test_swarm_seeds_whose_pool_has_pause_stall_the_leader_in_every_episode() -> None:
    from kvcheck.workloads.swarm import draw_swarm

    seen = stalled = 0
    for seed in range(80):
        cfg = draw_swarm(RunConfig(workload="register", seed=seed, faults=[], time_limit=60.0))
        if "pause" in cfg.faults:
            continue
        cfg.with_schedule()
        cuts = [f for f in cfg.schedule if f.params.get("shape") == "leader-minority"]
        for c in cuts:
            seen += 1
            stalled += any(f.kind == "pause" and f.params.get("target") == "leader"
                           and c.start < f.start < c.start + 0.01 for f in cfg.schedule)
    assert seen >= 3 and stalled >= 0.75 * seen  # all but those with no room for the stall
    # a pool without pause (kvcheck run --swarm --faults partition,kill): never a pause
    for seed in range(40):
        cfg = draw_swarm(RunConfig(workload="register", seed=seed, faults=["partition", "kill"], time_limit=60.0))
        cfg.with_schedule()
        assert all(f.kind != "pause" for f in cfg.schedule)


def test_without_keep_plain_faults_that_take_members_down_give_way_to_an_episode() -> None:
    """A plain kill, power loss or membership change overlapping an episode would end it
    before its window (on the paused leader, or on the majority while it serves): it gives
    way as the episode's own kinds do; one aimed at a cluster state stays, and so does every
    fault of a burst schedule (``keep``) and any fault outside the episode."""
    kill = Fault("kill", 0.0, 29.0, {"target": "one", "seed": 1})
    disk = Fault("disk", 0.5, 28.0, {"target": "leader", "seed": 2, "torn": False})
    member = Fault("member", 0.7, 28.5, {"target": "one", "seed": 4})
    aimed_kill = Fault("kill", 0.2, 29.2, {"target": "new-leader", "seed": 5})
    clock = Fault("clock", 0.0, 29.0, {"mode": "skew", "node": 1, "rate": 0.7})
    late = Fault("kill", 29.5, 29.8, {"target": "one", "seed": 6})
    kinds = ["partition", "pause", "kill", "disk", "member", "clock"]
    for seed in range(20):
        out = _episodes([kill, disk, member, aimed_kill, clock], kinds, seed)
        assert any(f.params.get("shape") == "leader-minority" for f in out)
        assert kill not in out and disk not in out and member not in out
        assert aimed_kill in out and clock in out
        alone = _episodes([late], kinds, seed)
        cuts = [f for f in alone if f.params.get("shape") == "leader-minority"]
        assert (late in alone) == (not any(c.start < late.stop and c.stop > late.start for c in cuts))
        kept = _episodes([kill, disk, member], kinds, seed, keep=True)
        assert kill in kept and disk in kept and member in kept
