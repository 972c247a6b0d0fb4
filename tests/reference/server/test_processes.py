"""The reference store as real processes on 127.0.0.1: the issue's end-to-end scenarios.

Every cluster is started by the ``kvcheck cluster`` machinery with OS-chosen ports and is
stopped (SIGTERM, then SIGKILL) in the fixture's teardown. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
import trio
from click.testing import CliRunner

from kvcheck.reference.client import ClientError, Failed, Indeterminate, open_client
from kvcheck.reference.cluster import (
    ClusterInfo,
    add_node,
    kill_node,
    process_state,
    remove_node,
    restart_node,
    start_cluster,
    statuses,
    stop_cluster,
    wait_for_leader,
)
from kvcheck.reference.ctl import ctl
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.wire import MAX_FRAME, ErrorCode


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterInfo]:
    info = start_cluster(tmp_path_factory.mktemp("cluster"), 3)
    try:
        yield info
    finally:
        stop_cluster(info)


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[ClusterInfo]:
    info = start_cluster(tmp_path / "c", 3, options={"snapshot_count": 200, "snapshot_catchup_entries": 50})
    try:
        yield info
    finally:
        stop_cluster(info)


def ctl_run(info_dir: Path, *args: str, input: str | None = None) -> str:
    result = CliRunner().invoke(ctl, ["--data-dir", str(info_dir), *args], input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def leader_node(info: ClusterInfo) -> Any:
    leader = wait_for_leader(info, 30)
    return next(n for n in info.nodes if n.id == leader)


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def caught_up(info: ClusterInfo) -> bool:
    st = statuses(info)
    applied = {s["applied"] for s in st.values() if isinstance(s, dict)}
    return len(st) == len(info.live_nodes) and all(isinstance(s, dict) for s in st.values()) and len(applied) == 1


def hashes(info: ClusterInfo) -> dict[int, int]:
    async def go() -> dict[int, int]:
        out = {}
        async with open_client(info.endpoints()) as c:
            for n in info.live_nodes:
                out[n.id] = (await c.hash_kv(n.client))["hash"]
        return out

    return trio.run(go)


# -- the basics ------------------------------------------------------------------------------------


def test_put_get_txn_lease_and_watch_through_the_client(cluster: ClusterInfo) -> None:
    async def go() -> None:
        async with open_client(cluster.endpoints()) as c:
            put = await c.put(b"greeting", b"hello")
            got = await c.get(b"greeting")
            assert got.kvs[0].value == b"hello" and got.kvs[0].mod_revision == put.header.revision
            swapped = await c.cas(b"greeting", b"hello", b"world")
            assert swapped.succeeded
            refused = await c.cas(b"greeting", b"hello", b"again")
            assert not refused.succeeded
            assert (await c.get(b"greeting", serializable=True)).kvs[0].value in (b"world", b"hello")
            lease = await c.lease_grant(30)
            await c.put(b"leased", b"x", lease=lease.id)
            assert await c.lease_keepalive(lease.id) == 30
            ttl = await c.lease_time_to_live(lease.id, keys=True)
            assert ttl.keys == [b"leased"]
            await c.lease_revoke(lease.id)
            assert (await c.get(b"leased")).kvs == []
            with pytest.raises(Failed) as info:
                await c.lease_revoke(lease.id)
            assert info.value.code is ErrorCode.LEASE_NOT_FOUND

            start = (await c.put(b"w/0", b"a")).header.revision
            async with c.watch(b"w/", range_end=b"w0", start_revision=start, prev_kv=True) as stream:
                events: list[tuple[int, bytes, bytes]] = []
                await c.put(b"w/1", b"b")
                await c.delete(b"w/0")
                with trio.fail_after(10):
                    async for resp in stream:
                        events += [(int(e.type), e.kv.key, e.kv.value) for e in resp.events]
                        if len(events) >= 3:
                            break
            assert events == [(0, b"w/0", b"a"), (0, b"w/1", b"b"), (1, b"w/0", b"")]

    trio.run(go)


def test_ctl_commands_have_etcdctl_shapes(cluster: ClusterInfo) -> None:
    d = cluster.path
    assert ctl_run(d, "put", "ctl/a", "1") == "OK\n"
    ctl_run(d, "put", "ctl/b", "2")
    assert ctl_run(d, "get", "ctl/", "--prefix") == "ctl/a\n1\nctl/b\n2\n"
    assert ctl_run(d, "get", "ctl/", "--prefix", "--keys-only", "--order", "DESCEND", "--sort-by", "KEY") == "ctl/b\nctl/a\n"
    assert ctl_run(d, "get", "ctl/", "--prefix", "--count-only") == "2\n"
    assert ctl_run(d, "get", "ctl/", "--prefix", "--limit", "1", "--consistency", "s") == "ctl/a\n1\n"
    doc = json.loads(ctl_run(d, "-w", "json", "get", "ctl/a"))
    assert doc["count"] == 1 and doc["kvs"][0]["value"] == "MQ=="  # base64, as etcdctl prints
    out = ctl_run(d, "txn", input='value("ctl/a") = "1"\n\nput ctl/a 10\nget ctl/b\n\nput ctl/a 99\n')
    assert out == "SUCCESS\n\nOK\n\nctl/b\n2\n"
    assert ctl_run(d, "get", "ctl/a", "--print-value-only") == "10\n"
    rev = json.loads(ctl_run(d, "-w", "json", "get", "ctl/a"))["kvs"][0]["mod_revision"]
    assert ctl_run(d, "get", "ctl/a", "--rev", str(rev - 1), "--print-value-only") == "1\n"
    assert ctl_run(d, "del", "ctl/", "--prefix") == "2\n"
    lease_line = ctl_run(d, "lease", "grant", "60")
    lease_id = lease_line.split()[1]
    assert lease_line == f"lease {lease_id} granted with TTL(60s)\n"
    assert lease_id in ctl_run(d, "lease", "list")
    assert "remaining(" in ctl_run(d, "lease", "timetolive", lease_id)
    assert ctl_run(d, "lease", "keep-alive", "--once", lease_id) == f"lease {lease_id} keepalived with TTL(60)\n"
    assert ctl_run(d, "lease", "revoke", lease_id) == f"lease {lease_id} revoked\n"
    members = ctl_run(d, "member", "list").splitlines()
    assert len(members) == 3 and all(", started, node" in m for m in members)
    assert len(ctl_run(d, "endpoint", "status").splitlines()) == 3
    assert ctl_run(d, "endpoint", "health").count("is healthy") == 3
    assert ctl_run(d, "alarm", "list") == ""
    leader = wait_for_leader(cluster, 30)
    target = next(n.id for n in cluster.nodes if n.id != leader)
    assert ctl_run(d, "move-leader", f"{target:x}") == f"Leadership transferred to {target:x}\n"
    assert wait_for_leader(cluster, 30) == target
    ctl_run(d, "put", "watched", "v1")
    proc = subprocess.run(
        [sys.executable, "-m", "kvcheck", "ctl", "--data-dir", str(d), "watch", "watched", "--rev", "1", "--max-events", "1"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:3] == ["PUT", "watched", "v1"]


def test_metrics_are_served_over_http(cluster: ClusterInfo) -> None:
    node = cluster.nodes[0]
    text = httpx.get(f"http://{node.metrics}/metrics", timeout=10).text
    for name in ("kvcheck_server_proposals_committed_total", "kvcheck_server_proposals_failed_total",
                 "kvcheck_server_leader_changes_seen_total", "kvcheck_server_has_leader",
                 "kvcheck_server_apply_duration_seconds_bucket", "kvcheck_mvcc_db_total_size_in_bytes",
                 "kvcheck_debugging_mvcc_watcher_total"):
        assert name in text, name
    assert "kvcheck_server_has_leader 1.0" in text


# -- bad frames --------------------------------------------------------------------------------------


def _frame(obj: Any) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return struct.pack(">I", len(payload)) + payload


def _read_frame(sock: socket.socket) -> Any:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        return buf

    (length,) = struct.unpack(">I", exactly(4))
    return msgpack.unpackb(exactly(length), raw=False, strict_map_key=False)


def _status_request(rid: int) -> bytes:
    return _frame({"id": rid, "op": "status", "body": {}, "client": 0, "seq": 0})


def test_malformed_and_oversize_frames_leave_the_member_up(cluster: ClusterInfo) -> None:
    host, port = cluster.nodes[0].client.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        big = b"\x00" * (MAX_FRAME + 1)
        sock.sendall(struct.pack(">I", len(big)) + big)
        reply = _read_frame(sock)
        assert reply["err"]["code"] == "request_too_large"
        sock.sendall(_status_request(7))  # the same connection still works
        assert _read_frame(sock)["id"] == 7
        sock.sendall(_frame({"no": "id"}))
        assert _read_frame(sock)["err"]["code"] == "bad_request"
        sock.sendall(_frame({"id": 8, "op": "put", "body": {"key": 5}, "client": 1, "seq": 1}))
        assert _read_frame(sock)["err"]["code"] == "bad_request"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">I", 4) + b"\xc1\xc1\xc1\xc1")  # not msgpack: connection closed
        assert sock.recv(100) == b""
    peer_host, peer_port = cluster.nodes[0].peer.split(":")
    with socket.create_connection((peer_host, int(peer_port)), timeout=10) as sock:
        sock.sendall(_frame({"hello": 2}) + _frame({"m": [["garbage"]]}))
        assert sock.recv(100) == b""
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(_status_request(9))
        reply = _read_frame(sock)
        assert reply["id"] == 9 and reply["ok"]["id"] == cluster.nodes[0].id


def test_every_member_hash_agrees_after_a_quiet_period(cluster: ClusterInfo) -> None:
    async def write() -> None:
        async with open_client(cluster.endpoints()) as c:
            for i in range(50):
                await c.put(f"quiet/{i % 7}".encode(), str(i).encode())
            await c.delete(b"quiet/3")

    trio.run(write)
    wait_until(lambda: caught_up(cluster), 20, "members to apply the same index")
    assert len(set(hashes(cluster).values())) == 1


# -- faults ------------------------------------------------------------------------------------------


def test_kill_9_of_the_leader_elects_a_new_one_and_loses_no_acknowledged_write(fresh_cluster: ClusterInfo) -> None:
    info = fresh_cluster
    acked: dict[bytes, bytes] = {}
    unknown: set[bytes] = set()
    old = leader_node(info)

    async def load(stop_after: float) -> None:
        async def worker(w: int) -> None:
            async with open_client(info.endpoints(), timeout=3) as c:
                i = 0
                while trio.current_time() < deadline:
                    key, value = f"k/{w}/{i}".encode(), f"{w}-{i}".encode()
                    try:
                        await c.put(key, value)
                        acked[key] = value
                    except Indeterminate:
                        unknown.add(key)
                    except Failed:
                        pass
                    i += 1

        deadline = trio.current_time() + stop_after
        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(worker, w)
            await trio.sleep(1.0)
            kill_node(info, old)  # SIGKILL mid-load

    trio.run(load, 6.0)
    assert process_state(old) == "stopped"
    new = leader_node(info)
    assert new.id != old.id
    restart_node(info, old)
    wait_until(lambda: process_state(old) == "running", 10, "the restarted member")
    wait_until(lambda: caught_up(info), 30, "every member to catch up")
    assert len(acked) > 50

    async def verify() -> None:
        async with open_client(info.endpoints()) as c:
            for node in info.live_nodes:
                got = await c.call("range", kvr.RangeRequest(key=b"k/", range_end=b"k0", serializable=True).to_wire(),
                                   write=False, endpoint=node.client)
                seen = {kv["key"]: kv["value"] for kv in got["kvs"]}
                missing = [k for k in acked if seen.get(k) != acked[k]]
                assert not missing, f"member {node.id} lost acknowledged writes: {missing[:5]}"
                assert set(seen) <= set(acked) | unknown  # nothing that certainly failed

    trio.run(verify)
    assert len(set(hashes(info).values())) == 1


def test_a_paused_follower_catches_up_after_resume(fresh_cluster: ClusterInfo) -> None:
    info = fresh_cluster
    leader = leader_node(info)
    follower = next(n for n in info.nodes if n.id != leader.id)
    runner = CliRunner()
    from kvcheck.reference.cluster import cluster as cluster_cli

    assert runner.invoke(cluster_cli, ["pause", "--data-dir", str(info.path), follower.name]).exit_code == 0
    assert process_state(follower) == "paused"

    async def write() -> None:
        async with open_client([n.client for n in info.nodes if n.id != follower.id]) as c:
            for i in range(300):  # more than snapshot_count: the follower may need a snapshot
                await c.put(f"p/{i}".encode(), b"x" * 50)

    trio.run(write)
    assert runner.invoke(cluster_cli, ["resume", "--data-dir", str(info.path), follower.name]).exit_code == 0
    wait_until(lambda: caught_up(info), 30, "the resumed follower to catch up")
    assert len(set(hashes(info).values())) == 1
    status = runner.invoke(cluster_cli, ["status", "--data-dir", str(info.path), "-w", "json"])
    rows = json.loads(status.output)["members"]
    assert [r["process"] for r in rows] == ["running"] * 3
    assert len({r["leader"] for r in rows}) == 1


def test_snapshot_save_and_restore_round_trip(cluster: ClusterInfo, tmp_path: Path) -> None:
    async def write() -> dict[bytes, tuple[bytes, int]]:
        async with open_client(cluster.endpoints()) as c:
            for i in range(20):
                await c.put(f"snap/{i}".encode(), f"v{i}".encode())
            got = await c.get(b"snap/", range_end=b"snap0")
            return {kv.key: (kv.value, kv.mod_revision) for kv in got.kvs}

    before = trio.run(write)
    snap = tmp_path / "backup.snap"
    assert "Snapshot saved" in ctl_run(cluster.path, "snapshot", "save", str(snap))
    restored_dir = tmp_path / "restored"
    ctl_run(cluster.path, "snapshot", "restore", str(snap), "--data-dir", str(restored_dir), "--nodes", "3")
    info = start_cluster(restored_dir, 3)
    try:
        async def read() -> tuple[dict[bytes, tuple[bytes, int]], int]:
            async with open_client(info.endpoints()) as c:
                got = await c.get(b"snap/", range_end=b"snap0")
                after = {kv.key: (kv.value, kv.mod_revision) for kv in got.kvs}
                put = await c.put(b"after-restore", b"1")
                return after, put.header.revision

        after, revision = trio.run(read)
        assert after == before  # same keys, values and revisions
        assert revision > max(r for _, r in before.values())
    finally:
        stop_cluster(info)
    corrupt = tmp_path / "corrupt.snap"
    corrupt.write_bytes(snap.read_bytes()[:-5] + b"xxxxx")
    result = CliRunner().invoke(ctl, ["snapshot", "restore", str(corrupt), "--data-dir", str(tmp_path / "bad")])
    assert result.exit_code != 0 and "checksum" in str(result.exception) + result.output


def test_member_add_then_remove(fresh_cluster: ClusterInfo) -> None:
    info = fresh_cluster

    async def write(prefix: str) -> None:
        async with open_client(info.endpoints()) as c:
            for i in range(10):
                await c.put(f"{prefix}/{i}".encode(), b"v")

    trio.run(write, "m")
    node = add_node(info, learner=True)
    assert node.id == 4
    wait_until(lambda: process_state(node) == "running", 10, "the new member's process")
    wait_until(lambda: caught_up(info), 30, "the new member to catch up")
    members = json.loads(ctl_run(info.path, "-w", "json", "member", "list"))["members"]
    assert [m["learner"] for m in sorted(members, key=lambda m: m["id"])] == [False, False, False, True]

    def promoted() -> bool:
        result = CliRunner().invoke(ctl, ["--data-dir", str(info.path), "member", "promote", "4"])
        return result.exit_code == 0  # learner_not_ready until the leader has seen it catch up

    wait_until(promoted, 20, "the learner to be promotable")

    def voter_in(member: int) -> bool:
        status = statuses(info)[member]
        return isinstance(status, dict) and 4 in status["voters"]

    leader = wait_for_leader(info, 30)
    assert voter_in(leader)  # the promotion was acknowledged: applied on the leader
    wait_until(lambda: voter_in(4), 10, "member 4 to apply its own promotion")  # one apply behind, at most
    trio.run(write, "m4")
    members = json.loads(ctl_run(info.path, "-w", "json", "member", "list"))["members"]
    assert sorted(m["id"] for m in members) == [1, 2, 3, 4]
    remove_node(info, node)
    wait_until(lambda: process_state(node) == "stopped", 10, "the removed member to stop")
    members = json.loads(ctl_run(info.path, "-w", "json", "member", "list"))["members"]
    assert sorted(m["id"] for m in members) == [1, 2, 3]
    trio.run(write, "after")  # the 3-member cluster still commits


def test_tls_cluster_refuses_a_client_without_a_certificate(tmp_path: Path) -> None:
    info = start_cluster(tmp_path / "tls", 3, tls=True)
    try:
        assert ctl_run(info.path, "put", "secure", "yes") == "OK\n"
        assert info.tls is not None
        from kvcheck.reference.tls import client_context

        async def attempt(ssl_context: Any) -> None:
            async with open_client(info.endpoints(), ssl_context=ssl_context, timeout=1) as c:
                await c.get(b"secure")

        with pytest.raises(ClientError):
            trio.run(attempt, client_context(None, ca=Path(info.tls["ca"])))  # CA only, no certificate
        with pytest.raises(ClientError):
            trio.run(attempt, None)  # plain TCP against a TLS port
        result = CliRunner().invoke(ctl, ["--endpoints", info.endpoints()[0], "--cacert", info.tls["ca"],
                                          "--command-timeout", "1", "get", "secure"])
        assert result.exit_code != 0
        out = ctl_run(info.path, "get", "secure", "--print-value-only")
        assert out == "yes\n"
    finally:
        stop_cluster(info)


def test_cluster_cli_start_status_kill_restart_stop(tmp_path: Path) -> None:
    d = tmp_path / "cli"
    env = {**os.environ}

    def kv(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kvcheck", "cluster", *args, "--data-dir", str(d)],
                              capture_output=True, text=True, timeout=90, env=env)

    started = kv("start", "--nodes", "3")
    try:
        assert started.returncode == 0, started.stderr
        doc = json.loads((d / "cluster.json").read_text())
        assert [n["id"] for n in doc["nodes"]] == [1, 2, 3]
        assert "leader:" in started.stdout
        assert kv("kill", "node2").returncode == 0
        rows = json.loads(kv("status", "-w", "json").stdout)["members"]
        assert [r["process"] for r in rows] == ["running", "stopped", "running"]
        assert kv("restart", "node2").returncode == 0
        assert kv("restart", "node2").returncode == 64  # already running: a usage error
        assert kv("kill", "nope").returncode == 64
    finally:
        stopped = kv("stop")
    assert stopped.returncode == 0
    info = ClusterInfo.load(d)
    assert all(process_state(n) == "stopped" for n in info.nodes)


def test_a_watch_resumes_on_another_member_after_its_member_dies(fresh_cluster: ClusterInfo) -> None:
    info = fresh_cluster
    leader = leader_node(info)
    victim = next(n for n in info.nodes if n.id != leader.id)
    others = [n.client for n in info.nodes if n.id != victim.id]

    async def go() -> tuple[list[bytes], int]:
        got: list[bytes] = []
        created = 0
        async with open_client(info.endpoints()) as writer, open_client([victim.client, *others]) as watcher:
            start = (await writer.put(b"r/start", b"0")).header.revision
            async with watcher.watch(b"r/", range_end=b"r0", start_revision=start + 1) as stream:
                for i in range(10):
                    await writer.put(f"r/{i:02d}".encode(), b"v")
                with trio.fail_after(20):
                    async for resp in stream:
                        got += [e.kv.key for e in resp.events]
                        created += resp.created
                        if len(got) >= 10:
                            break
                kill_node(info, victim)  # the watch's member dies: the client resumes elsewhere
                for i in range(10, 20):
                    await writer.put(f"r/{i:02d}".encode(), b"v")
                with trio.fail_after(30):
                    async for resp in stream:
                        got += [e.kv.key for e in resp.events]
                        created += resp.created
                        if len(got) >= 20:
                            break
        return got, created

    keys, created = trio.run(go)
    assert keys == [f"r/{i:02d}".encode() for i in range(20)]  # none lost, none repeated
    assert created == 1  # the resumed watch does not announce itself again
