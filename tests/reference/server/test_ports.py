"""Ports for real-process members: outside the kernel's ephemeral range, checked by binding,
never handed out twice; a member whose port is taken exits at once naming the address, and
``start_cluster`` reports that member instead of waiting for a leader.

Why these properties: a port handed out before its member binds it must stay free meanwhile.
The kernel draws bind(0) and outgoing source ports from the ephemeral range, so a port
outside it cannot be taken by either (see reference/cluster.py's module text).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kvcheck.reference import cluster as rc
from kvcheck.reference.server import LISTEN_FAILED_EXIT


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port taken by a listener of the test (as another program could take one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", rc.free_port()))
        s.listen()
        yield s.getsockname()[1]


def test_ephemeral_range_is_read_from_proc_with_a_fallback(tmp_path: Path) -> None:
    f = tmp_path / "ip_local_port_range"
    f.write_text("40000\t50000\n")
    assert rc.ephemeral_range(f) == (40000, 50000)
    assert rc.ephemeral_range(tmp_path / "missing") == rc.EPHEMERAL_FALLBACK
    f.write_text("garbage\n")
    assert rc.ephemeral_range(f) == rc.EPHEMERAL_FALLBACK


@pytest.mark.parametrize(("ephemeral", "pool"), [
    ((32768, 60999), range(10000, 32768)),  # Linux's default
    ((49152, 65535), range(10000, 49152)),  # IANA's (BSD, macOS, Windows)
    ((10000, 20000), range(20001, 65536)),
    ((1024, 60000), range(60001, 65536)),
])
def test_the_pool_is_the_widest_stretch_outside_the_ephemeral_range(
        ephemeral: tuple[int, int], pool: range) -> None:
    assert rc.port_pool(ephemeral) == pool
    assert not set(rc.port_pool(ephemeral)) & set(range(ephemeral[0], ephemeral[1] + 1))


def test_no_pool_when_the_ephemeral_range_covers_every_port() -> None:
    with pytest.raises(OSError, match="ephemeral port range 1024-65535"):
        rc.port_pool((1024, 65535))


def test_handed_out_ports_are_outside_the_ephemeral_range_distinct_and_bindable() -> None:
    low, high = rc.ephemeral_range()
    ports = [rc.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(not low <= p <= high for p in ports), (low, high, ports)
    for p in ports:  # a member could bind every one of them now
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", p))


def test_outgoing_connections_never_take_a_pool_port() -> None:
    """The property the allocator relies on: the kernel picks source ports in the ephemeral
    range, never in the pool, however many connections are open."""
    pool = set(rc.port_pool())
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        assert server.getsockname()[1] not in pool  # bind(0) neither
        server.listen(512)
        conns = [socket.create_connection(server.getsockname()) for _ in range(300)]
        try:
            sources = {c.getsockname()[1] for c in conns}
        finally:
            for c in conns:
                c.close()
    assert len(sources) == 300
    assert not sources & pool


def test_a_taken_port_is_passed_over_and_an_exhausted_pool_says_so(held_port: int) -> None:
    spare = rc.free_port()
    allocator = rc.PortAllocator(pool=[held_port, spare])
    assert allocator.take() == spare
    with pytest.raises(OSError, match=f"no free port on 127.0.0.1 in {min(held_port, spare)}-"):
        allocator.take()  # the spare was handed out, the other one is held


@pytest.mark.parametrize("role", ["peer", "client", "metrics"])
def test_a_member_whose_port_is_taken_exits_naming_the_address(tmp_path: Path, held_port: int, role: str) -> None:
    addr = {r: f"127.0.0.1:{rc.free_port()}" for r in ("peer", "client", "metrics")}
    addr[role] = taken = f"127.0.0.1:{held_port}"
    cmd = [sys.executable, "-m", rc.SERVER_MODULE, "--id", "1", "--data-dir", str(tmp_path / "d"),
           "--listen-peer", addr["peer"], "--listen-client", addr["client"],
           "--listen-metrics", addr["metrics"], "--member", f"1,node1,{addr['peer']},{addr['client']}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == LISTEN_FAILED_EXIT, proc.stderr
    assert f"member 1 cannot listen for {role} connections on {taken}: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_start_cluster_reports_the_member_that_cannot_listen(
        tmp_path: Path, held_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    real = rc.free_port
    ports = iter([held_port])  # node1's peer port is taken by another program

    def free_port() -> int:
        return next(ports, None) or real()

    monkeypatch.setattr(rc, "free_port", free_port)
    with pytest.raises(rc.MemberFailed) as failed:
        rc.start_cluster(tmp_path / "c", 3, wait=60)
    message = str(failed.value)
    assert "member node1 (pid " in message, message
    assert f"exited with status {LISTEN_FAILED_EXIT}" in message
    assert f"member 1 cannot listen for peer connections on 127.0.0.1:{held_port}" in message
    info = rc.ClusterInfo.load(tmp_path / "c")
    assert [rc.process_state(n) for n in info.nodes] == ["stopped"] * 3  # nothing left running


def test_a_killed_member_restarts_at_once_on_its_own_ports(tmp_path: Path) -> None:
    """kill_node returns only once the process is gone, listeners closed: an immediate
    restart binds the same ports (a dying process's command line reads empty before then)."""
    info = rc.start_cluster(tmp_path / "c", 3)
    try:
        for round_ in range(4):
            node = info.nodes[round_ % 3]
            rc.kill_node(info, node)
            rc.restart_node(info, node)
            rc.wait_for_leader(info, 60, launched=[node])  # MemberFailed if it could not listen
    finally:
        rc.stop_cluster(info)
