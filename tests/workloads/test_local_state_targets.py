"""The local target's state-driven fault targets (nemesis.STATE_TARGETS) on real processes:
``most-behind`` and ``new-leader`` from the members' status endpoint, ``acked`` from the
append acknowledgements passing the peer-link proxy — approximations of the simulation's,
which sees its members' state at the very instant (see LocalCluster)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import trio

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.local.cluster import LocalCluster
from kvcheck.workloads.nemesis import Fault
from kvcheck.workloads.run import run_once


def test_state_targets_resolve_on_real_members(tmp_path: Path) -> None:
    cfg = RunConfig(workload="register", target="local", nodes=3, seed=1, client_timeout=2.0)
    cfg.validate()

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with LocalCluster.running(cfg, tmp_path, 60.0) as cluster:
            leader = await cluster.leader()
            assert leader is not None
            seen["leader"] = leader
            seen["term"] = (await cluster._statuses())[leader]["term"]
            writer = cluster.client(0)  # writes follow the leader
            stop = trio.Event()

            async def load() -> None:
                i = 0
                while not stop.is_set():
                    with contextlib.suppress(Exception):
                        await writer.write("r", i)
                    i += 1
                    await trio.sleep(0.005)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(load)
                # acked: the next follower whose append acknowledgement passes the proxy
                seen["acker"] = await cluster.next_acker(10.0)
                # most-behind: a follower cut off from its peers falls behind the others
                lag = max(i for i in cluster.node_ids if i != leader)
                seen["lag"] = lag
                await cluster.block_links([[a, b] for a in cluster.node_ids for b in cluster.node_ids
                                           if a != b and lag in (a, b)])
                with trio.fail_after(20):
                    while True:
                        st = await cluster._statuses()
                        if st[leader]["applied"] - st[lag]["applied"] >= 20:
                            break
                        await trio.sleep(0.05)
                seen["behind"] = await cluster.most_behind()
                await cluster.heal_links()
                # new-leader: kill the leader while waiting for the next election's winner

                async def kill_leader() -> None:
                    await trio.sleep(0.3)
                    await cluster.kill(leader)

                nursery.start_soon(kill_leader)
                seen["new"] = await cluster.next_leader(20.0)
                seen["statuses"] = await cluster._statuses()
                stop.set()
            await cluster.restart(leader)
            seen["events"] = list(cluster.events)
        return seen

    seen = trio.run(main)
    leader = seen["leader"]
    assert seen["acker"] in {1, 2, 3} - {leader}  # a follower acknowledges appends
    assert seen["behind"] == seen["lag"]
    new = seen["new"]
    assert new is not None and new != leader
    assert seen["statuses"][new]["term"] > seen["term"]
    events = "\n".join(seen["events"])
    assert f"acked: node {seen['acker']}" in events
    assert f"most-behind: node {seen['lag']}" in events
    assert f"new-leader: node {new} leads term" in events


def test_a_local_run_with_every_state_target(tmp_path: Path) -> None:
    """End to end on real processes: faults aimed at the new leader, the most-behind member
    and a member that just acknowledged an append are resolved (cluster-events.log says
    how) and the history stays valid."""
    schedule = [Fault("pause", 1.0, 4.5, {"target": "leader", "seed": 1}),  # forces an election
                Fault("kill", 1.2, 7.0, {"target": "new-leader", "seed": 2}),  # ... whose winner is hit
                Fault("pause", 8.0, 10.0, {"target": "most-behind", "seed": 3}),
                Fault("kill", 11.0, 13.0, {"target": "acked", "seed": 4})]
    cfg = RunConfig(workload="register", faults=["kill", "pause"], target="local", nodes=3,
                    time_limit=14.0, seed=4, client_timeout=2.0, recovery_quiet=0.5, schedule=schedule)
    out = run_once(cfg, tmp_path, progress=False)
    assert out.results["valid"] is True, out.results["checkers"]
    starts = [op for op in out.execution.ops if op.is_nemesis and op.type == "info"
              and str(op.f).startswith("start-")]
    assert [op.value["target"] for op in starts] == ["leader", "new-leader", "most-behind", "acked"]
    events = (out.run_dir / "cluster-events.log").read_text()
    paused, new_leader, behind, acked = (op.value["nodes"][0] for op in starts)
    assert new_leader != paused
    assert f"new-leader: node {new_leader} leads term" in events, events
    line = next(ln for ln in events.splitlines() if "most-behind: node" in ln)
    assert f"most-behind: node {behind} " in line, events
    assert f"acked: node {acked} acknowledged" in events, events
