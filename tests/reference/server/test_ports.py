"""Ports for real-process members: held (a bound socket) from the moment they are chosen
until the member owns them, outside the kernel's ephemeral range, never handed out twice; a
member whose port is taken exits at once naming the address, and ``start_cluster`` reports
that member instead of waiting for a leader.

Why these properties: a port chosen before its member binds it must stay free meanwhile. A
held port admits the member's SO_REUSEADDR listener and nothing else; the kernel draws
bind(0) and outgoing source ports from the ephemeral range, so a port outside it cannot be
taken by either while a ``kvcheck cluster`` member is down (see reference/cluster.py).
"""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from kvcheck.reference import cluster as rc
from kvcheck.reference.server import LISTEN_FAILED_EXIT


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port taken by a listener of the test (as another program could take one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
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


def test_held_ports_are_outside_the_ephemeral_range_distinct_and_held() -> None:
    low, high = rc.ephemeral_range()
    with rc.PortHold() as hold:
        ports = [hold.take() for _ in range(200)]
        assert len(set(ports)) == len(ports)
        assert all(not low <= p <= high for p in ports), (low, high, ports)
        assert not any(rc.port_is_free(p) for p in ports)  # no one else can bind them now
    assert all(rc.port_is_free(p) for p in ports)  # released
    with rc.PortHold() as hold:  # and not handed out again by this process
        assert not set(ports) & {hold.take() for _ in range(200)}


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return False
    return True


def _bind(port: int, reuseaddr: bool) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if reuseaddr:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_a_held_port_admits_no_other_socket() -> None:
    """Held (bound exclusively, not listening): no other bind, with SO_REUSEADDR or without,
    and a connection is refused."""
    with rc.PortHold() as hold:
        port = hold.take()
        for reuseaddr in (False, True):
            with pytest.raises(OSError, match="Address already in use"):
                _bind(port, reuseaddr)
        assert not _connects(port)


def test_a_member_listens_on_the_sockets_it_is_handed_and_again_after_kill_9(tmp_path: Path) -> None:
    """start_cluster hands each member its held sockets and keeps no copy (a killed member's
    ports refuse connections); held again past the TIME_WAITs the kill left, they are handed
    to the restarted member, which serves on them."""
    info = rc.start_cluster(tmp_path / "c", 1)
    try:
        node = info.nodes[0]
        args = Path(f"/proc/{node.pid}/cmdline").read_bytes().decode().split("\0")
        handed = sorted(args[i + 1].split("=")[0] for i, a in enumerate(args) if a == "--listen-fd")
        assert handed == ["client", "metrics", "peer"], args
        metrics_port = int(node.metrics.rsplit(":", 1)[1])
        for _ in range(3):  # HTTP/1.0: the member closes first, leaving TIME_WAITs on its port
            assert b"kvcheck_server_applied_index" in urllib.request.urlopen(f"http://{node.metrics}/metrics").read()
        rc.kill_node(info, node)  # bounded: on a loaded machine the process may outlive it
        deadline = time.monotonic() + 60  # stopped: every thread exited, listeners closed
        while rc.process_state(node) != "stopped" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rc.process_state(node) == "stopped"
        assert not _connects(metrics_port)
        assert not rc.port_is_free(metrics_port)  # the TIME_WAITs: an exclusive bind is refused
        with rc.PortHold() as hold:
            roles = rc.member_roles(node)
            assert all(hold.hold_again(a) for a in roles.values())
            rc.launch_held(info, node, hold)
            assert hold.sockets == {}
        rc.wait_for_leader(info, 60, launched=[node])
        assert b"kvcheck_server_applied_index" in urllib.request.urlopen(f"http://{node.metrics}/metrics").read()
    finally:
        rc.stop_cluster(info)


# A stand-in member: listens on the socket it is handed (--listen-fd metrics=FD), then its
# leader thread exits while another thread keeps the process (and so the listener) alive
# until the file named first exists: the state a kill -9 leaves while the process's other
# threads are still exiting (the leader reads Z, the listener still completes connections).
_LEADER_EXITS_FIRST = """
import ctypes, os, socket, sys, threading, time
fd = int(sys.argv[sys.argv.index("--listen-fd") + 1].split("=")[1])
listener = socket.socket(fileno=fd)
listener.listen()
release = sys.argv[1]
threading.Thread(target=lambda: [time.sleep(0.01) for _ in iter(lambda: os.path.exists(release), True)]).start()
ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_process_whose_leader_thread_exited_is_not_stopped_while_its_threads_hold_its_ports(
        tmp_path: Path) -> None:
    """The cause of a kill -9 test seeing a killed member's port accept a connection: its
    pid read Z (its leader thread had exited) while another of its threads still held the
    listener. A member is stopped only once every thread has exited."""
    release = tmp_path / "release"
    info = rc.ClusterInfo(tmp_path / "c")
    node = rc.NodeInfo(id=1, name="node1", peer="", client="", metrics="", data_dir=str(tmp_path / "c" / "d"))
    with rc.PortHold() as hold:
        node.metrics = hold.address()
        rc.launch_held(info, node, hold, [sys.executable, "-c", _LEADER_EXITS_FIRST, str(release)],
                       roles={"metrics": node.metrics})
    try:
        deadline = time.monotonic() + 60
        while rc._proc_state(node.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rc._proc_state(node.pid) == "Z", rc.log_tail(node)
        assert rc._live_threads(node.pid)
        assert rc.process_state(node) == "running"  # not stopped: it still holds its port
        assert _connects(int(node.metrics.rsplit(":", 1)[1]))
    finally:
        release.touch()
    deadline = time.monotonic() + 60
    while rc.process_state(node) != "stopped" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rc.process_state(node) == "stopped"
    assert not _connects(int(node.metrics.rsplit(":", 1)[1]))


def test_a_member_refuses_an_inherited_socket_bound_elsewhere(tmp_path: Path) -> None:
    with rc.PortHold() as hold:
        peer, client, other = hold.address(), hold.address(), hold.address()
        fd = hold.sockets[int(other.rsplit(":", 1)[1])].fileno()
        hold.release(peer, client)  # the member binds these itself (held, they would refuse it)
        cmd = [sys.executable, "-m", rc.SERVER_MODULE, "--id", "1", "--data-dir", str(tmp_path / "d"),
               "--listen-peer", peer, "--listen-client", client, "--listen-fd", f"client={fd}",
               "--member", f"1,node1,{peer},{client}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, pass_fds=[fd])
    assert proc.returncode == LISTEN_FAILED_EXIT, proc.stderr
    assert f"member 1 cannot listen for client connections on {client}: inherited descriptor {fd} is " in proc.stderr
    assert f"not a TCP socket bound to {client}" in proc.stderr


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


def test_a_taken_port_is_passed_over_and_an_exhausted_pool_says_so() -> None:
    with rc.PortHold() as others, socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:
        held_elsewhere, spare = others.take(), others.take()
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        others.release(f"127.0.0.1:{spare}")
        pool = [held_elsewhere, listening.getsockname()[1], spare]
        with rc.PortHold(rc.PortAllocator(pool=pool)) as hold:
            assert hold.take() == spare
            with pytest.raises(OSError, match=f"no free port on 127.0.0.1 in {min(pool)}-{max(pool)}"):
                hold.take()  # the spare was handed out, the other two are taken


class _AlwaysFirst(random.Random):
    """An rng whose every choice is the first element (as unlucky as random draws can be)."""

    def choice(self, seq: Sequence[int]) -> int:  # type: ignore[override]
        return seq[0]


def test_a_free_port_of_the_pool_is_found_however_the_draws_fall() -> None:
    """"no free port" only when none is: after its random draws the allocator tries every
    port of the pool (random draws alone missed the one free port of three 1 time in 130)."""
    with rc.PortHold() as others:
        pool = [others.take() for _ in range(5)]
        others.release(f"127.0.0.1:{pool[3]}")
        with rc.PortHold(rc.PortAllocator(pool=pool, rng=_AlwaysFirst(0))) as hold:
            assert hold.take() == pool[3]
            with pytest.raises(OSError, match="no free port"):
                hold.take()


@pytest.mark.parametrize("role", ["peer", "client", "metrics"])
def test_a_member_whose_port_is_taken_exits_naming_the_address(tmp_path: Path, held_port: int, role: str) -> None:
    hold = rc.PortHold()
    addr = {r: hold.address() for r in ("peer", "client", "metrics")}
    addr[role] = taken = f"127.0.0.1:{held_port}"
    cmd = [sys.executable, "-m", rc.SERVER_MODULE, "--id", "1", "--data-dir", str(tmp_path / "d"),
           "--listen-peer", addr["peer"], "--listen-client", addr["client"],
           "--listen-metrics", addr["metrics"], "--member", f"1,node1,{addr['peer']},{addr['client']}"]
    with hold:  # the other two are handed over as a launcher does; the taken one is bound by address
        handed = hold.held(addr)
        for r, sock in handed.items():
            cmd += ["--listen-fd", f"{r}={sock.fileno()}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                              pass_fds=[sock.fileno() for sock in handed.values()])
    assert proc.returncode == LISTEN_FAILED_EXIT, proc.stderr
    assert f"member 1 cannot listen for {role} connections on {taken}: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_start_cluster_reports_the_member_that_cannot_listen(
        tmp_path: Path, held_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    real = rc.PortHold.take
    ports = iter([held_port])  # node1's peer port is taken by another program

    def take(self: rc.PortHold) -> int:
        return next(ports, None) or real(self)

    monkeypatch.setattr(rc.PortHold, "take", take)
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
