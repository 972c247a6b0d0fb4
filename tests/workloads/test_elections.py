"""Elections in quick succession: the swarm's election draw (pre-vote off, short election
timeouts: swarm._elections) and lost-vote bursts whose voter restarts at once
(nemesis.make_burst_schedule's ``quick`` draws). Each comes from a substream of its own, so
every other draw of a seed stays what it was."""

from __future__ import annotations

import random
from typing import Any

import pytest

from kvcheck.workloads import swarm
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.nemesis import (
    QUICK_RESTART_SECONDS,
    SLOW_CANDIDATE_SECONDS,
    VOTE_TARGETS,
    aimed,
    make_burst_schedule,
)


def _drawn(seed: int, workload: str = "register") -> RunConfig:
    return swarm.draw_swarm(RunConfig(workload=workload, seed=seed, faults=[]))


def test_election_draw_leaves_every_other_draw_of_a_seed_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    with_draw = [_drawn(s).to_json() for s in range(60)]
    monkeypatch.setattr(swarm, "_elections", lambda seed: {})
    without = [_drawn(s).to_json() for s in range(60)]
    for a, b in zip(with_draw, without, strict=True):
        na, nb = a["node"], b["node"]
        for name in ("pre_vote", "election_tick", "heartbeat_tick"):
            na.pop(name), nb.pop(name)
        a["swarm"]["drawn"].pop("node"), b["swarm"]["drawn"].pop("node")
        assert a == b


def test_a_third_of_the_seeds_run_without_pre_vote_and_a_quarter_with_short_timeouts() -> None:
    drawn = [_drawn(s) for s in range(400)]
    off = sum(not c.node["pre_vote"] for c in drawn)
    short = [c for s, c in enumerate(drawn) if "election_tick" in swarm._elections(s)]
    assert 0.25 < off / 400 < 0.42
    assert 0.18 < len(short) / 400 < 0.32
    for c in drawn:
        assert c.node["check_quorum"] is True  # etcd always runs check-quorum
        assert c.node["heartbeat_tick"] < c.node["election_tick"]
    for c in short:
        assert c.node["heartbeat_tick"] == 1 and c.node["election_tick"] in swarm.SHORT_ELECTION_TICKS
        RunConfig.from_json(c.to_json())  # a valid config (heartbeat below the election timeout)


def _fields(faults: list[Any]) -> list[tuple[Any, ...]]:
    return [(f.kind, f.start, f.stop, {k: v for k, v in f.params.items() if k not in ("hold_for", "target")})
            for f in faults]


def test_quick_restart_draws_change_only_the_voters_downtime() -> None:
    kinds = ["disk", "kill", "pause", "partition"]
    quick_seen = revoted = slow_seen = 0
    for seed in range(40):
        plain = make_burst_schedule(kinds, [1, 2, 3, 4, 5], 30.0, random.Random(seed), gap=3.0)
        quick = make_burst_schedule(kinds, [1, 2, 3, 4, 5], 30.0, random.Random(seed), gap=3.0,
                                    quick=random.Random(f"q{seed}"))
        slow = [q for q in quick if q.params.get("at") == "candidate"]
        slow_seen += len(slow)
        for q in slow:
            assert q.kind == "partition" and q.params["hold"] and q.params["wait"] == 8.0
            assert SLOW_CANDIDATE_SECONDS[0] <= q.params["hold_for"] <= SLOW_CANDIDATE_SECONDS[1]
        # a slow candidate's cut replaces the burst's cut of the winner, at the same times
        plain_kept = [p for p, q in zip(plain, quick, strict=True) if q.params.get("at") != "candidate"]
        assert [(p.kind, p.start, p.stop) for p in plain] == [(q.kind, q.start, q.stop) for q in quick]
        quick = [q for q in quick if q.params.get("at") != "candidate"]
        assert _fields(plain_kept) == _fields(quick)
        for p, q in zip(plain_kept, quick, strict=True):
            if p.params.get("hold_for") != q.params.get("hold_for"):
                assert p.params["target"] == "voted" and q.params["target"] in VOTE_TARGETS
                assert QUICK_RESTART_SECONDS[0] <= q.params["hold_for"] <= QUICK_RESTART_SECONDS[1]
                quick_seen += 1
                revoted += q.params["target"] == "revoted"
            else:
                assert p.params.get("target") == q.params.get("target")
                if q.params.get("target") == "voted":
                    assert q.params["hold_for"] >= 0.3
    assert quick_seen > 10 and 0 < revoted < quick_seen and slow_seen > 3


def test_burst_seeds_draw_quick_restarts_into_their_schedule() -> None:
    voted = [f for s in range(40) for f in _drawn(s, "kv").with_schedule().schedule
             if f.params.get("target") in VOTE_TARGETS]
    assert voted and all(aimed(f) for f in voted)
    assert any(f.params["target"] == "revoted" for f in voted)
    assert any(f.params["hold_for"] <= QUICK_RESTART_SECONDS[1] for f in voted)
    assert any(f.params["hold_for"] >= 0.3 for f in voted)


def test_revoted_is_a_vote_in_a_term_the_member_already_held() -> None:
    """The sim's ``next_second_voter``: a grant in a term the member was seen holding before
    counts (it refused a stale candidate of term 3 first); a grant that moves the member to
    the new term, and a repeated grant to the same candidate, do not."""
    from types import SimpleNamespace

    import trio

    from kvcheck.reference import raft
    from kvcheck.workloads.sim.cluster import SimCluster

    MT = raft.MessageType
    nodes = {i: SimpleNamespace(term=2) for i in (1, 2, 3)}
    cluster: Any = SimCluster.__new__(SimCluster)
    cluster.slots = {i: SimpleNamespace(node=n, state="up") for i, n in nodes.items()}
    cluster.net = SimpleNamespace(observers=[], blocked=set())

    def send(src: int, dst: int, mtype: raft.MessageType, term: int, reject: bool = False) -> None:
        for observe in list(cluster.net.observers):
            observe(src, dst, raft.Message(mtype, dst, src, term, reject=reject))

    async def main() -> list[int | None]:
        found: list[int | None] = []

        async def watch() -> None:
            found.append(await cluster.next_second_voter(5.0))

        async with trio.open_nursery() as n:
            n.start_soon(watch)
            await trio.sleep(0.01)
            # node 2 moves to term 3 by voting for node 1 (one step): not a second vote
            send(1, 2, MT.VOTE, 3)
            nodes[2].term = 3
            send(2, 1, MT.VOTE_RESP, 3)
            send(1, 2, MT.VOTE, 3)  # a duplicate request, granted again to the same candidate
            send(2, 1, MT.VOTE_RESP, 3)
            assert not found
            # node 3 refuses stale candidate 1 at term 3 (learning the term), then votes for 2
            nodes[3].term = 3
            send(3, 1, MT.VOTE_RESP, 3, reject=True)
            send(2, 3, MT.VOTE, 3)
            send(3, 2, MT.VOTE_RESP, 3)
        return found

    assert trio.run(main) == [3]


def test_a_candidates_links_are_cut_before_its_first_vote_request_leaves() -> None:
    """The sim's ``cut_at_candidate``: pre-votes and requests of the current term pass; the
    first MsgVote of a newer term is the instant of the cut, so that very request is held."""
    from types import SimpleNamespace

    import trio

    from kvcheck.reference import raft
    from kvcheck.workloads.sim.cluster import SimCluster

    MT = raft.MessageType
    cluster: Any = SimCluster.__new__(SimCluster)
    cluster.slots = {i: SimpleNamespace(node=SimpleNamespace(term=2), state="up") for i in (1, 2, 3)}
    blocked: list[tuple[list[list[int]], bool]] = []
    cluster.net = SimpleNamespace(observers=[], block=lambda links, hold: blocked.append((links, hold)))

    def send(src: int, dst: int, mtype: raft.MessageType, term: int) -> None:
        for observe in list(cluster.net.observers):
            observe(src, dst, raft.Message(mtype, dst, src, term))

    async def main() -> int | None:
        found: list[int | None] = []

        async def watch() -> None:
            found.append(await cluster.cut_at_candidate(5.0, lambda c: [[c, 1], [c, 2]], True))

        async with trio.open_nursery() as n:
            n.start_soon(watch)
            await trio.sleep(0.01)
            send(3, 1, MT.PRE_VOTE, 3)
            send(2, 1, MT.VOTE, 2)
            assert not blocked
            send(3, 1, MT.VOTE, 3)
            assert blocked == [([[3, 1], [3, 2]], True)]  # at once, before the request leaves
            send(2, 1, MT.VOTE, 3)
        assert len(blocked) == 1
        return found[0]

    assert trio.run(main) == 3


def test_lost_vote_episodes_lay_a_lost_vote_burst_over_the_random_process() -> None:
    from kvcheck.workloads.nemesis import add_lost_vote_episodes, aimed, make_swarm_schedule

    kinds = ["partition", "kill", "pause", "disk", "clock"]
    seen = 0
    for seed in range(20):
        base = make_swarm_schedule(kinds, [1, 2, 3, 4, 5], 30.0, random.Random(seed), gap=2.0,
                                   duration=(0.5, 4.0), max_overlap=3)
        out = add_lost_vote_episodes(base, kinds, 30.0, random.Random(f"e{seed}"))
        assert out == add_lost_vote_episodes(base, kinds, 30.0, random.Random(f"e{seed}"))
        added = [f for f in out if f not in base]
        voters = [f for f in added if f.params.get("target") in VOTE_TARGETS]
        assert added and len(voters) in (1, 2)
        seen += len(voters)
        for v in voters:
            assert v.kind in ("disk", "kill") and v.params["wait"] == 8.0
        # only faults of the episode's kinds give way, and none overlaps it
        kept = [f for f in base if f in out]
        assert all(f in kept for f in base if f.kind == "clock")
        spans = [(min(f.start for f in added if abs(f.start - v.start) < 0.01),
                  max(f.stop for f in added if abs(f.start - v.start) < 0.01)) for v in voters]
        for f in kept:
            if f.kind in {a.kind for a in added}:
                assert all(f.stop <= lo or f.start >= hi for lo, hi in spans)
        assert all(aimed(f) for f in added)
        assert all(0 <= f.start <= f.stop <= 29.9 for f in out)
    assert seen >= 20
    assert add_lost_vote_episodes([], ["partition", "clock"], 30.0, random.Random(1)) == []


def test_half_the_random_process_seeds_draw_lost_vote_episodes() -> None:
    drawn = [_drawn(s, "kv") for s in range(200)]
    plain = [c for c in drawn if not c.swarm["schedule"].get("burst")]
    lost = [c for c in plain if c.swarm["schedule"].get("lost_vote")]
    assert not any(c.swarm["schedule"].get("lost_vote") for c in drawn if c.swarm["schedule"].get("burst"))
    assert 0.35 < len(lost) / len(plain) < 0.65
    with_voter = [c for c in lost if any(f.params.get("target") in VOTE_TARGETS for f in c.with_schedule().schedule)]
    assert with_voter
    # a config written before the draw existed replays without episodes
    for c in lost[:5]:
        d = c.to_json()
        d["schedule"] = []
        del d["swarm"]["schedule"]["lost_vote"]
        assert not any(f.params.get("target") in VOTE_TARGETS for f in RunConfig.from_json(d).with_schedule().schedule)
