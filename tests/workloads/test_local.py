"""The local target: real server processes on 127.0.0.1 with kill -9, SIGSTOP/SIGCONT,
membership changes, and partitions/packet faults through the peer-link proxy; its members
run with the run's recorded node config, and a member that cannot listen fails the start."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from kvcheck.reference import cluster as rc
from kvcheck.reference.server import CONFIG_LOG_MARK, LISTEN_FAILED_EXIT
from kvcheck.workloads.client import DefiniteFailure, home_member
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.local.cluster import LOCAL_FAULTS, LocalCluster
from kvcheck.workloads.run import run_once


def test_local_target_every_supported_fault(tmp_path: Path) -> None:
    cfg = RunConfig(workload="kv", faults=list(LOCAL_FAULTS), target="local", nodes=5,
                    time_limit=12.0, seed=2, client_timeout=2.0, recovery_quiet=0.5)
    out = run_once(cfg, tmp_path, progress=False)
    assert out.results["valid"] is True, out.results["checkers"]["linearizable"]
    run = out.results["run"]
    assert run["faults_started"] == run["faults_healed"] == {k: 1 for k in LOCAL_FAULTS}
    assert run["phases"]["healthy"] is True
    proxy = run["proxy"]
    assert proxy["forwarded"] > 0
    partition = next(op for op in out.execution.ops if op.f == "start-partition" and op.type == "info")
    if partition.value["blocked"]:
        assert proxy["dropped_blocked"] > 0  # the proxy really cut the links
    assert (out.run_dir / "cluster-events.log").is_file()
    assert any(p.name.startswith("node") for p in out.run_dir.iterdir())
    # the periodic HashKV checks (workloads.hashcheck) asked every member over its endpoint
    assert run["hash_checks"]["rounds"] >= 5 and run["hash_checks"]["answers"]["ok"] >= 5
    assert len({op.node for op in out.execution.ops if op.f == "hash_kv" and op.type == "ok"}) >= 5
    assert out.results["checkers"]["members"]["hash_kv_answers"] == run["hash_checks"]["answers"]["ok"]
    # no server process of the run survives it
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert run["cluster_dir"] not in ps


def recorded_node_values() -> dict[str, Any]:
    """Node values a run records, none of them NodeConfig's default."""
    return RunConfig().node | {
        "tick_interval": 0.05, "election_tick": 16, "heartbeat_tick": 2, "check_quorum": False,
        "request_timeout": 3.0, "snapshot_count": 500, "snapshot_catchup_entries": 40,
        "quota_bytes": 64 * 1024**2, "max_request_bytes": 4096, "lease_check_interval": 0.2,
        "progress_notify_interval": 5.0, "watch_buffer": 100, "cluster_id": 4242,
    }


def test_local_members_run_with_the_recorded_node_config(tmp_path: Path) -> None:
    """Started, restarted after kill -9 and added members all report the run's node values
    as the config they run with (not just flags on a command line)."""
    cfg = RunConfig(workload="kv", target="local", nodes=3, seed=1, node=recorded_node_values())
    cfg.validate()

    async def main() -> dict[str, dict[int, dict[str, Any]]]:
        cluster = LocalCluster(cfg, tmp_path)
        seen: dict[str, dict[int, dict[str, Any]]] = {}
        try:
            async with trio.open_nursery() as nursery:
                await cluster.start(nursery)
                with pytest.raises(RuntimeError, match=r"found no leader within 0 s: node1: .*; node3: "):
                    await cluster.wait_started(0.0)  # no time: the error says what each member shows
                await cluster.wait_started(60.0)
                seen["started"] = {i: s["config"] for i, s in (await cluster._statuses()).items()}
                await cluster.kill(1)
                await cluster.restart(1)
                added = await cluster.add_member(0)
                assert added is not None, cluster.events
                assert await cluster.wait_healthy(60.0), cluster.events
                statuses = await cluster._statuses()
                seen["restarted"] = {1: statuses[1]["config"]}
                seen["added"] = {added: statuses[added]["config"]}
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await cluster.shutdown()
        return seen

    seen = trio.run(main)
    assert set(seen["started"]) == {1, 2, 3}
    for configs in seen.values():
        for node_id, config in configs.items():
            assert config == {"id": node_id, "name": f"node{node_id}", **cfg.node}


def taken_port_at(monkeypatch: pytest.MonkeyPatch, taken: int, call: int) -> None:
    """The ``call``-th port a PortHold hands out (0-based) is ``taken``, which another
    program holds, instead of a held port of the pool."""
    real = rc.PortHold.take
    calls = iter(range(1000))

    def take(self: rc.PortHold) -> int:
        return taken if next(calls) == call else real(self)

    monkeypatch.setattr(rc.PortHold, "take", take)


def test_a_local_runs_members_ran_with_the_node_config_its_config_json_records(tmp_path: Path) -> None:
    """End to end through the run directory: every member's log says it ran with exactly the
    node values config.json records (what a replay of that config would give its nodes)."""
    cfg = RunConfig(workload="register", target="local", nodes=3, time_limit=2.0, seed=5,
                    node=recorded_node_values())
    out = run_once(cfg, tmp_path, progress=False)
    recorded = json.loads((out.run_dir / "config.json").read_text())["node"]
    assert recorded == cfg.node
    assert RunConfig.from_json(json.loads((out.run_dir / "config.json").read_text())).node == recorded
    for node_id in (1, 2, 3):
        log = (out.run_dir / f"node{node_id}.log").read_text()
        lines = [ln for ln in log.splitlines() if CONFIG_LOG_MARK in ln]
        assert lines, log[-2000:]
        ran_with = json.loads(lines[0].split(CONFIG_LOG_MARK, 1)[1])
        assert ran_with == {"id": node_id, "name": f"node{node_id}", **recorded}


def test_the_local_target_reports_a_member_that_cannot_listen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        taken_port_at(monkeypatch, taken, 3)  # node2's client port (node1 took 3 ports)
        cfg = RunConfig(workload="kv", target="local", nodes=3, time_limit=5.0, seed=3)
        with pytest.raises(rc.MemberFailed) as failed:
            run_once(cfg, tmp_path, progress=False)
    message = str(failed.value)
    assert message.startswith("the local cluster cannot start: member node2 (pid ")
    assert f"exited with status {LISTEN_FAILED_EXIT}" in message
    assert f"member 2 cannot listen for client connections on 127.0.0.1:{taken}" in message


def test_a_member_exit_seen_first_by_a_status_poll_still_fails_the_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        taken_port_at(monkeypatch, taken, 3)  # node2's client port
        cfg = RunConfig(workload="kv", target="local", nodes=3, seed=4)

        async def main() -> None:
            cluster = LocalCluster(cfg, tmp_path)
            try:
                async with trio.open_nursery() as nursery:
                    await cluster.start(nursery)
                    with trio.fail_after(60):
                        while rc.process_state(cluster.nodes[2].info) != "stopped":
                            await trio.sleep(0.05)
                    await cluster._statuses()  # the health poll notices the exit first
                    assert "unexpected exit: member node2" in "\n".join(cluster.events)
                    with pytest.raises(rc.MemberFailed, match=f"127.0.0.1:{taken}: Address already in use"):
                        await cluster.wait_started(60.0)
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await cluster.shutdown()

        trio.run(main)


@pytest.mark.parametrize("bugs", [["local_reads"], []])
def test_local_clients_read_from_their_own_member(tmp_path: Path, bugs: list[str]) -> None:
    """As in the simulation, a process's reads go to its own member first (Jepsen binds a
    client to a node), so a follower's read path is tested too: with the local_reads bug an
    isolated follower serves a value the cluster has overwritten; the clean store fails that
    read (no ReadIndex without the leader) instead of answering it stale."""
    cfg = RunConfig(workload="register", target="local", nodes=3, seed=1, bugs=bugs, client_timeout=2.0)
    cfg.validate()

    async def main() -> Any:
        async with LocalCluster.running(cfg, tmp_path, 60.0) as cluster:
            leader = await cluster.leader()
            assert leader is not None
            home = next(i for i in cluster.node_ids if i != leader)
            process = next(p for p in range(3) if home_member(p, cluster.node_ids) == home)
            bound, other = cluster.client(process), cluster.client(leader)
            await bound.write("r", 1)
            with trio.fail_after(10):
                while await bound.read("r") != 1:  # the home member has applied it
                    await trio.sleep(0.05)
            await cluster.block_links([[a, b] for a in cluster.node_ids for b in cluster.node_ids
                                       if a != b and home in (a, b)])
            await other.write("r", 2)  # acknowledged by the leader and the third member
            try:
                answer: Any = await bound.read("r")
            except DefiniteFailure as exc:  # the clean store's answer
                answer = exc
            return answer, (await cluster._statuses())[home]["bugs_fired"]

    seen, fired = trio.run(main)
    if bugs:
        assert seen == 1  # stale: 2 was acknowledged before this read began
        assert fired.get("local_reads", 0) >= 1  # the member's status counts its firings
    else:
        assert isinstance(seen, DefiniteFailure), seen
        assert fired == {}
