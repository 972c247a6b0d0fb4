"""Power loss of several members at once (nemesis ``power``: majority | all).

A write acknowledged before it was fsynced on a majority survives a single member's power
loss (the others still hold it), so only a power loss of most of the cluster at once shows a
store that acknowledges too early. These tests pin that the fault does hit every member it
names, that the clean store keeps every acknowledged write through it, and that the same run
with ``ack_before_durable`` on loses acknowledged writes visibly in the client history."""

from __future__ import annotations

import random
from pathlib import Path

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.nemesis import (
    POWER_TARGETS,
    make_swarm_schedule,
    pick_nodes,
    power_of,
    widen,
)
from kvcheck.workloads.run import run_once


def _power_loss_config(seed: int, bugs: list[str]) -> RunConfig:
    from kvcheck.workloads.nemesis import Fault

    # Every member loses power at the instant a follower acknowledged an append (so writes
    # were in flight), and all come back 2 s later; the final reads read every key.
    return RunConfig(workload="kv", faults=["disk"], time_limit=8.0, seed=seed, keys=4, bugs=bugs,
                     wall_budget=60.0,
                     schedule=[Fault("disk", 3.0, 5.0, {"target": "acked", "seed": 7, "torn": True,
                                                         "power": "all"})])


def test_power_targets_pick_a_majority_or_everyone() -> None:
    nodes = [1, 2, 3, 4, 5]
    rng = random.Random(0)
    assert pick_nodes("all", nodes, rng, None) == nodes
    assert len(pick_nodes("majority", nodes, rng, None)) == 3
    assert widen([4], "all", nodes, rng) == nodes
    grown = widen([4], "majority", nodes, rng)
    assert 4 in grown and len(grown) == 3
    assert widen([4], None, nodes, rng) == [4]
    draws = [power_of(s).get("power") for s in range(400)]
    assert {d for d in draws if d} == set(POWER_TARGETS)
    assert 40 < draws.count(None) < 360  # some faults hit one member, some many
    # swarm schedules carry the parameter on kill and disk faults only
    seen = set()
    for seed in range(20):
        for f in make_swarm_schedule(["kill", "disk", "pause"], nodes, 30.0, random.Random(seed), gap=2.0,
                                     duration=(1.0, 3.0), max_overlap=2):
            if "power" in f.params:
                seen.add(f.kind)
    assert seen == {"kill", "disk"}


def test_clean_store_keeps_acknowledged_writes_through_a_power_loss_of_every_member(tmp_path: Path) -> None:
    out = run_once(_power_loss_config(0, []), tmp_path, progress=False)
    start = next(op for op in out.execution.ops if op.is_nemesis and op.f == "start-disk" and op.type == "info")
    assert start.value["nodes"] == [1, 2, 3, 4, 5]
    logs = [p.read_text() for p in sorted(out.run_dir.glob("node*.log"))]
    assert all("disk lost unsynced writes" in log for log in logs)
    writes_after = [op for op in out.execution.ops if op.type == "ok" and op.f in ("write", "cas")
                    and (op.time or 0) > 5.0e9]
    assert writes_after, "the cluster came back and took writes"
    assert out.results["valid"] is True, out.results


def test_ack_before_durable_loses_acknowledged_writes_in_a_power_loss(tmp_path: Path) -> None:
    out = run_once(_power_loss_config(0, ["ack_before_durable"]), tmp_path, progress=False)
    assert out.results["bugs"]["fired"]["ack_before_durable"] > 0
    assert out.results["checkers_valid"] is False


def test_partition_cut_at_a_leader_ack_keeps_the_commit_from_the_followers(tmp_path: Path) -> None:
    """``at: leader-ack`` cuts what the leader sends at the instant an append ack reaches it:
    the recorded links are those around the member that was leader then, and the clean
    store's history stays valid through the election that follows."""
    from kvcheck.workloads.nemesis import Fault, leader_ack_of

    assert any(leader_ack_of(s) for s in range(30)) and not all(leader_ack_of(s) for s in range(30))
    cfg = RunConfig(workload="register", faults=["partition"], time_limit=8.0, seed=1, wall_budget=60.0,
                    schedule=[Fault("partition", 2.0, 5.0, {"shape": "leader-outbound", "seed": 3,
                                                              "at": "leader-ack"})])
    out = run_once(cfg, tmp_path, progress=False)
    start = next(op for op in out.execution.ops if op.is_nemesis and op.f == "start-partition" and op.type == "info")
    cut = start.value["node"]
    assert start.value["at"] == "leader-ack"
    assert start.value["blocked"] == [[cut, o] for o in range(1, cfg.nodes + 1) if o != cut]
    # another member won an election while the cut leader's messages were lost
    elected = [float(line.split()[0]) for p in out.run_dir.glob("node*.log") if p.name != f"node{cut}.log"
               for line in p.read_text().splitlines() if "became leader" in line]
    assert any(2.0 < t < 5.0 for t in elected), elected
    assert out.results["valid"] is True, out.results


def test_slow_disk_delays_only_append_acks_of_the_slow_members() -> None:
    """perturb slow_disk: each member's disk is slow (or not) for the whole run; a slow one's
    successful append acks leave 10-100 ms late, nothing else does; at 0 nothing is drawn."""
    from kvcheck.workloads.config import RunConfig
    from kvcheck.workloads.sim.perturb import PERTURB_DEFAULTS, Perturber

    rng = random.Random(5)
    state = rng.getstate()
    off = Perturber(dict(PERTURB_DEFAULTS), rng, 1.0)
    assert off.ack_delay(1) == 0.0 and rng.getstate() == state
    p = Perturber({**PERTURB_DEFAULTS, "slow_disk": 0.5}, random.Random(1), 1.0)
    delays = {m: p.ack_delay(m) for m in range(1, 30)}
    assert {m: p.ack_delay(m) for m in delays} == delays  # fixed per member
    slow = [d for d in delays.values() if d > 0]
    assert slow and len(slow) < len(delays) and all(0.01 <= d <= 0.1 for d in slow)
    assert p.stats["slow_disk"] == len(slow)
    # a config.json written before slow_disk existed reads as "off"
    d = RunConfig(seed=1).to_json()
    del d["perturb"]["slow_disk"]
    assert RunConfig.from_json(d).perturb["slow_disk"] == 0.0
