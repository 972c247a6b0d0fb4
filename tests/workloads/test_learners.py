"""Learners and the deposed-leader membership sequence (workloads/nemesis.py ``learner_of``,
``depose_of``; SimCluster ``promote_member``, ``cut_at_conf_ack``): the draws come from
their own substreams, a learner answers serializable reads only (as etcd's), its promotion
is refused until it is in sync and retried, and the deposed-leader cut leaves the conf change
on a follower, uncommitted at the old leader."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import trio

from kvcheck.reference.client import Failed
from kvcheck.reference.node import Node
from kvcheck.reference.wire import ErrorCode
from kvcheck.workloads import nemesis
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.determinism import deterministic_trio
from kvcheck.workloads.nemesis import (
    LEARNER_TROUBLES,
    churn_params,
    depose_of,
    learner_of,
    make_schedule,
)
from kvcheck.workloads.sim.cluster import SimClient, SimCluster
from kvcheck.workloads.sim.scheduler import SimScheduler


def run(fn: Any, seed: int = 1) -> Any:
    with deterministic_trio(seed):
        return trio.run(fn, clock=SimScheduler())


def test_learner_and_depose_draws_leave_every_other_draw_where_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = [learner_of(s) for s in range(200)]
    assert 60 < sum(1 for d in drawn if d) < 140  # about half
    assert {d["learner"]["trouble"] for d in drawn if d} == set(LEARNER_TROUBLES)
    assert any(depose_of(s) for s in range(20)) and not all(depose_of(s) for s in range(20))
    kinds = ["partition", "kill", "member"]  # (a plain schedule: learners, no depose)
    with_new = make_schedule(kinds, [1, 2, 3], 60.0, random.Random(7))
    monkeypatch.setattr(nemesis, "learner_of", lambda seed: {})
    monkeypatch.setattr(nemesis, "depose_of", lambda seed: {})
    without = make_schedule(kinds, [1, 2, 3], 60.0, random.Random(7))
    assert [(f.kind, f.start, f.stop) for f in with_new] == [(f.kind, f.start, f.stop) for f in without]
    for new, old in zip(with_new, without, strict=True):
        assert {k: v for k, v in new.params.items() if k not in ("learner", "depose")} == old.params
    # depose only in churns; learner in either
    for s in range(40):
        p = churn_params({"target": "one", "seed": s}, depose=True)
        assert "depose" not in p or p["mode"] == "churn"
        assert "depose" not in churn_params({"target": "one", "seed": s})  # swarm schedules only


def test_a_learner_serves_serializable_reads_only_and_is_promoted_once_in_sync() -> None:
    async def main() -> dict[str, Any]:
        cluster = SimCluster(RunConfig(nodes=3, seed=12000))
        out: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            assert await cluster.wait_healthy(10.0)
            writer = SimClient(cluster, 1, timeout=2.0)
            await writer.put(b"k", b"v1")
            learner = await cluster.grow_member(learner=True)
            assert learner is not None
            out["learners"] = cluster.learner_members()
            assert await cluster.wait_healthy(5.0)  # a learner is replicated to like any member
            pinned = SimClient(cluster, 2, timeout=0.5, pin=learner)
            out["serializable"] = (await pinned.get(b"k", serializable=True)).kvs[0].value
            try:
                await pinned.get(b"k")
                out["linearizable"] = "answered"
            except Failed as exc:
                out["linearizable"] = exc.code
            out["promote"] = await cluster.promote_member(learner, 5.0)
            out["learners_after"] = cluster.learner_members()
            out["linearizable_after"] = (await SimClient(cluster, 3, timeout=2.0, pin=learner).get(b"k")).kvs[0].value
            nursery.cancel_scope.cancel()
        return out

    out = run(main)
    assert out["learners"] == {4}
    assert out["serializable"] == b"v1"
    assert out["linearizable"] is ErrorCode.NOT_LEADER  # "rpc not supported for learner"
    assert out["promote"]["promoted"] is True
    assert out["learners_after"] == set()
    assert out["linearizable_after"] == b"v1"


def test_promoting_a_cut_off_learner_is_refused_until_it_catches_up() -> None:
    async def main() -> dict[str, Any]:
        cluster = SimCluster(RunConfig(nodes=3, seed=12001))
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            assert await cluster.wait_healthy(10.0)
            writer = SimClient(cluster, 1, timeout=2.0)
            learner = await cluster.grow_member(learner=True)
            assert learner is not None
            others = [n for n in cluster.node_ids if n != learner]
            await cluster.block_links(nemesis.cut([[learner], others]))
            for i in range(30):
                await writer.put(b"k", str(i).encode())

            async def heal_later() -> None:
                await trio.sleep(1.0)
                await cluster.heal_links()

            nursery.start_soon(heal_later)
            got = await cluster.promote_member(learner, 5.0)
            nursery.cancel_scope.cancel()
        return got

    got = run(main)
    assert got["promoted"] is True
    assert got["not_ready"] >= 1 and got["attempts"] > got["not_ready"]


async def _leader_with_an_add_in_flight(cluster: SimCluster, nursery: trio.Nursery) -> tuple[int, Node]:
    """Start ``cluster``; once healthy, its leader (id, node) with a voter's add (a conf
    change) just proposed to it, in flight."""
    await cluster.start(nursery)
    assert await cluster.wait_healthy(10.0)
    leader_id = await cluster.leader()
    assert leader_id is not None
    old = cluster.slots[leader_id].node
    assert old is not None and old.raw is not None
    nursery.start_soon(cluster.grow_member)
    return leader_id, old


def test_the_deposed_leader_cut_leaves_its_conf_change_on_a_follower_uncommitted() -> None:
    async def main() -> tuple[int | None, int, int, int, list[int]]:
        cluster = SimCluster(RunConfig(nodes=3, seed=12002))
        async with trio.open_nursery() as nursery:
            leader_id, old = await _leader_with_an_add_in_flight(cluster, nursery)
            assert old.raw is not None
            deposed = await cluster.cut_at_conf_ack(3.0, hold=True)
            pending = old.raw.raft.pending_conf_index
            commit = old.commit
            # the followers' last log indexes: one holds the change
            lasts = [cluster.slots[n].node.storage.last_index()  # type: ignore[union-attr]
                     for n in cluster.node_ids if n != leader_id]
            new = await cluster.leader_elected(5.0)
            nursery.cancel_scope.cancel()
        return deposed, leader_id, pending, commit, [*lasts, new or 0]

    deposed, leader_id, pending, commit, rest = run(main)
    lasts, new = rest[:-1], rest[-1]
    assert deposed == leader_id
    assert commit < pending  # the old leader never learned it could commit the change
    assert max(lasts) >= pending  # a follower holds it
    assert new not in (0, leader_id)


def _member_ops(run_dir: Path) -> list[dict[str, Any]]:
    ops = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    return [op for op in ops if op["process"] == "nemesis" and op["f"].endswith("-member") and op["type"] == "info"]


def test_register_swarm_seed_1000_adds_a_learner_cut_off_with_the_leader_and_stays_valid(tmp_path: Path) -> None:
    """Seed 1000 (7 members): a member fault adds a learner, cuts it off with the leader and
    two other voters (a minority of the 7 voters; with the learner, as many members as a
    majority of the voters), then promotes it once the cut healed; the history stays valid.
    A store whose commit index counts the learner's acknowledgement loses writes here."""
    from kvcheck.workloads.run import run_once

    config = RunConfig(workload="register", seed=1000, faults=list(nemesis.FAULT_KINDS))
    from kvcheck.workloads.swarm import draw_swarm

    draw_swarm(config, frozenset({"faults"}))  # as `kvcheck run --swarm --faults all`
    # on the reordering links of --unordered-links (the seed was found before links delivered
    # in order; on in-order links this seed's add is still uncommitted when the cut starts, so
    # the new leader answers the promote member_not_found, and none of seeds 1001-1024 draws
    # the with-leader trouble)
    config.network["fifo"] = False
    outcome = run_once(config, tmp_path, progress=False)
    stops = [op["value"] for op in _member_ops(outcome.run_dir) if op["f"] == "stop-member"]
    learner = next(v["learner"] for v in stops if v.get("learner", {}).get("trouble") == "with-leader")
    assert learner["promoted"] is True and len(learner["groups"][0]) == 4  # 3 voters and the learner
    assert outcome.results["valid"] is True


def test_a_deposed_leader_churn_draws_a_linger_after_its_earlier_draws() -> None:
    for s in range(200):
        got = depose_of(s)
        r = random.Random(f"{s}:depose")
        if r.random() >= 0.5:
            assert got == {}
            continue
        dp = got["depose"]  # how and heal_after are where they were before the linger
        assert (dp["how"], dp["heal_after"]) == (r.choice(("isolate", "kill")), round(r.uniform(1.0, 4.0), 2))
        assert 0.5 <= dp["linger"] <= 4.0 and 0.5 <= dp["split"] <= 3.5 and isinstance(dp["hand_off"], bool)


def _swarm_1019(tmp_path: Path, bugs: list[str]) -> tuple[dict[str, Any], Path, bool]:
    """Register swarm seed 1019 as regress --quick's swarm seeds run it: the deposed-leader
    churn's stop op, the run directory, the verdict."""
    from kvcheck.workloads.run import run_once
    from kvcheck.workloads.swarm import draw_swarm

    quick = {"time_limit": 20.0, "wall_budget": 30.0, "check_timeout": 20.0}
    config = RunConfig(workload="register", seed=1019, faults=list(nemesis.FAULT_KINDS), bugs=bugs, **quick)
    draw_swarm(config, frozenset(quick))
    outcome = run_once(config, tmp_path, progress=False)
    stop = next(op["value"] for op in _member_ops(outcome.run_dir) if op["f"] == "stop-member"
                and op["value"].get("deposed"))
    return stop, outcome.run_dir, outcome.results["valid"] is True


def test_register_swarm_seed_1019_removed_member_lingers_across_the_split(tmp_path: Path) -> None:
    """Seed 1019 (3 members, the churn's own linger 0): the old leader n2 is killed while its
    add of n4 is in flight; the new leader n3 is asked at once to remove n1. The clean store
    refuses (its first entry is not applied yet) and stays valid. With unsafe_conf_change it
    accepts: two changes in flight, the split cuts {n1, n2} (a majority of the old
    configuration) from {n3, n4} (of the new), and the removed n1 runs on (the deposed
    sequence's linger, 2.95 s) until it applies its own removal, as an etcd member does: the
    two sides commit different writes. (Before the linger n1 stopped the instant
    its removal applied, and this history stayed valid.)"""
    stop, _, valid = _swarm_1019(tmp_path / "clean", [])
    assert stop["linger"] == 0.0 and stop["depose"]["linger"] > 1.0
    assert stop["deposed"]["new_leader"] == 3
    assert [c["ok"] for c in stop["changes_done"] if c["change"] == "remove"] == [False]
    assert valid
    stop, run_dir, valid = _swarm_1019(tmp_path / "unsafe", ["unsafe_conf_change"])
    removal = next(c for c in stop["changes_done"] if c["change"] == "remove")
    assert removal["ok"] and removal["node"] == 1
    assert sorted(map(sorted, stop["split"]["groups"])) == [[1, 2], [3, 4]]
    # n1 ran on through the split: it stopped 1 s after it applied its own removal (on the
    # old configuration's side, with the old term's entries), not when the new leader did
    stopped = [line for line in (run_dir / "node1.log").read_text().splitlines() if "own removal" in line]
    assert len(stopped) == 1 and float(stopped[0].split()[0]) > stop["split"]["at"] + 1.0
    assert not valid


def test_a_hand_off_at_the_conf_ack_makes_the_follower_that_holds_the_change_the_new_leader() -> None:
    """5 members: the first follower to acknowledge the leader's add holds the change, which
    is not committed yet (one acknowledgement of four); the old leader hands off to it before
    its cut (as etcd's leader does when stopped gracefully), so it wins the next election with
    the change in its log, uncommitted."""

    async def main() -> tuple[int | None, int | None, int | None, int, int]:
        cluster = SimCluster(RunConfig(nodes=5, seed=12003))
        async with trio.open_nursery() as nursery:
            leader_id, old = await _leader_with_an_add_in_flight(cluster, nursery)
            assert old.raw is not None
            deposed = await cluster.cut_at_conf_ack(3.0, hold=True, hand_off=True)
            pending = old.raw.raft.pending_conf_index
            heir = cluster.handed_to
            new = await cluster.leader_elected(5.0)
            node = cluster.slots[new].node if new is not None else None
            assert node is not None
            applied = node.applied
            nursery.cancel_scope.cancel()
        return deposed == leader_id, heir, new, pending, applied

    same, heir, new, pending, applied = run(main)
    assert same and heir is not None and new == heir
    assert applied < pending  # the new leader holds the old term's change, not applied
