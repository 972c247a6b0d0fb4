"""Fault schedules and partition shapes: data that replays, shapes that cut what they claim."""

from __future__ import annotations

import random
from typing import Any

import pytest
import trio
import trio.testing

from kvcheck.exitcodes import UsageError
from kvcheck.workloads.nemesis import (
    FAULT_KINDS,
    PARTITION_SHAPES,
    Fault,
    Nemesis,
    make_schedule,
    parse_faults,
    partition_links,
)
from kvcheck.workloads.recorder import Recorder


def reachable(nodes: list[int], blocked: list[list[int]]) -> dict[int, set[int]]:
    b = {(s, d) for s, d in blocked}
    return {a: {c for c in nodes if c != a and (a, c) not in b} for a in nodes}


def test_parse_faults() -> None:
    assert parse_faults("partition, kill") == ["partition", "kill"]
    assert parse_faults("none") == []
    assert parse_faults("all") == list(FAULT_KINDS)
    with pytest.raises(UsageError, match="unknown fault kind 'bogus'"):
        parse_faults("partition,bogus")


@pytest.mark.parametrize("seed", range(20))
def test_schedule_covers_every_kind_within_the_time_limit(seed: int) -> None:
    rng = random.Random(seed)
    sched = make_schedule(list(FAULT_KINDS), [1, 2, 3, 4, 5], 30.0, rng)
    assert {f.kind for f in sched} == set(FAULT_KINDS)
    prev_stop = 0.0
    for f in sched:
        assert prev_stop <= f.start < f.stop <= 30.0
        prev_stop = f.stop
    again = make_schedule(list(FAULT_KINDS), [1, 2, 3, 4, 5], 30.0, random.Random(seed))
    assert again == sched
    assert [Fault.from_json(f.to_json()) for f in sched] == sched


def test_fault_from_json_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="lacks stop"):
        Fault.from_json({"kind": "kill", "start": 1})
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault.from_json({"kind": "flood", "start": 1, "stop": 2})
    with pytest.raises(ValueError, match="start <= stop"):
        Fault.from_json({"kind": "kill", "start": 3, "stop": 2})


NODES = [1, 2, 3, 4, 5]


def test_halves_cut_both_ways_between_two_groups() -> None:
    blocked, desc = partition_links("halves", NODES, random.Random(1), None)
    a, b = desc["groups"]
    assert sorted(a + b) == NODES and len(a) == 2
    assert sorted(blocked) == sorted([[x, y] for x in a for y in b] + [[y, x] for x in a for y in b])


def test_isolate_leader_isolates_the_leader() -> None:
    blocked, desc = partition_links("isolate-leader", NODES, random.Random(1), 4)
    assert desc["groups"][0] == [4]
    assert reachable(NODES, blocked)[4] == set()
    assert all(r == set(NODES) - {4, n} for n, r in reachable(NODES, blocked).items() if n != 4)


def test_majorities_ring_gives_each_node_a_distinct_majority() -> None:
    for n in (5, 7):
        nodes = list(range(1, n + 1))
        blocked, _ = partition_links("majorities-ring", nodes, random.Random(n), None)
        reach = reachable(nodes, blocked)
        views = [frozenset(reach[x] | {x}) for x in nodes]
        assert all(len(v) >= n // 2 + 1 for v in views)
        assert len(set(views)) == n  # no two nodes see the same majority
        assert all((a in reach[b]) == (b in reach[a]) for a in nodes for b in nodes if a != b)


def test_bridge_node_sees_both_sides() -> None:
    blocked, desc = partition_links("bridge", NODES, random.Random(3), None)
    reach = reachable(NODES, blocked)
    bridge = desc["bridge"]
    assert reach[bridge] == set(NODES) - {bridge}
    a, b = desc["groups"]
    assert all(y not in reach[x] for x in a for y in b)


def test_one_way_blocks_one_direction_only() -> None:
    blocked, desc = partition_links("one-way", NODES, random.Random(2), None)
    v = desc["node"]
    if desc["direction"] == "outbound":
        assert all([v, o] in blocked and [o, v] not in blocked for o in NODES if o != v)
    else:
        assert all([o, v] in blocked and [v, o] not in blocked for o in NODES if o != v)


@pytest.mark.parametrize("shape", PARTITION_SHAPES)
def test_every_shape_is_deterministic(shape: str) -> None:
    one = partition_links(shape, NODES, random.Random(9), 2)
    two = partition_links(shape, NODES, random.Random(9), 2)
    assert one == two


def test_nemesis_records_start_and_stop_of_each_fault(fake_target: Any) -> None:
    sched = make_schedule(list(FAULT_KINDS), NODES, 30.0, random.Random(4))

    async def main() -> tuple[Recorder, Any]:
        target = fake_target(random.Random(1), nodes=5)
        rec = Recorder(trio.current_time)
        nem = Nemesis(target, rec, sched, random.Random(2))
        async with trio.open_nursery() as nursery:
            nem.bind(nursery)
            await nem.run(trio.current_time())
        return rec, target

    rec, target = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    fs = [op.f for op in rec.ops if op.type == "info"]
    for kind in FAULT_KINDS:
        assert fs.count(f"start-{kind}") == fs.count(f"stop-{kind}") >= 1
    assert all(op.process == "nemesis" for op in rec.ops)
    # the starts happen at the scheduled times (ns since start)
    starts = [op for op in rec.ops if op.type == "invoke" and op.f.startswith("start-")]
    assert [op.time for op in starts] == [round(f.start * 1e9) for f in sched]
    kinds_called = {c[0] for c in target.calls}
    assert {"block", "heal", "restart", "packet", "disk", "remove", "add"} <= kinds_called


@pytest.mark.parametrize("shape", PARTITION_SHAPES)
@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_every_shape_cuts_some_link_at_every_cluster_size(shape: str, n: int) -> None:
    nodes = list(range(1, n + 1))
    blocked, _ = partition_links(shape, nodes, random.Random(n), 1)
    assert blocked, f"{shape} on {n} nodes blocks nothing"
    assert all(a != b and a in nodes and b in nodes for a, b in blocked)


def test_config_split_gives_two_majorities_only_when_two_changes_were_pending() -> None:
    from kvcheck.workloads.nemesis import config_split

    def majority(side: list[int], config: list[int]) -> bool:
        return len(set(side) & set(config)) > len(config) // 2

    cases = [([1, 2, 3], [1, 2, 3, 4, 5], 1), ([1, 2, 3, 4, 5], [1, 4, 5], 4),
             ([1, 2, 3], [1, 2, 3, 4], 2), ([1, 2, 3, 4], [1, 2, 3], 3), ([1, 2, 3, 4, 5], [2, 3, 4, 5, 6], 2)]
    for old, new, leader in cases:
        side_old, side_new = config_split(old, new, leader)
        assert leader in side_new and set(side_old) | set(side_new) == set(old) | set(new)
        assert majority(side_new, new)
        two_at_once = len(set(old) ^ set(new)) >= 2
        assert majority(side_old, old) == two_at_once, (old, new)


def test_half_of_the_member_faults_are_churn_drawn_without_moving_other_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    from kvcheck.workloads import nemesis
    from kvcheck.workloads.nemesis import churn_params

    seen = {churn_params({"target": "one", "seed": s}).get("mode") for s in range(8)}
    assert seen == {None, "churn"}
    p = churn_params({"target": "one", "seed": 1})
    assert p["mode"] == "churn" and 2 <= p["changes"] <= 5 and 5 <= p["high"] <= 7
    kinds = ["partition", "kill", "member"]
    with_churn = make_schedule(kinds, [1, 2, 3], 30.0, random.Random(4))
    monkeypatch.setattr(nemesis, "churn_params", lambda p: p)
    without = make_schedule(kinds, [1, 2, 3], 30.0, random.Random(4))
    # The churn fields come from the fault's own seed: every draw is where it was before.
    assert [(f.kind, f.start, f.stop) for f in with_churn] == [(f.kind, f.start, f.stop) for f in without]
    assert [{k: v for k, v in f.params.items() if k in without[i].params} for i, f in enumerate(with_churn)] \
        == [f.params for f in without]
    assert any(f.params.get("mode") == "churn" for f in with_churn if f.kind == "member") or \
        all(f.params["seed"] % 2 == 0 for f in with_churn if f.kind == "member")
