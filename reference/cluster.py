"""``kvcheck cluster``: start and control a reference-store cluster of real processes on 127.0.0.1.

Why: people (and the local target, the tests and the throughput benchmark) need a real
multi-process cluster to poke at, kill -9, pause and restart, the way one runs etcd members.
How: every member is ``python -m kvcheck.reference.server`` in its own session, logging to
``DIR/<name>.log``. ``DIR/cluster.json`` records members, ports, pids and options, so every
later command (and ``kvcheck ctl --data-dir DIR``) finds the cluster again; restart reuses a
member's ports and data directory. A pid is only signalled after checking that its command
line is that member's server. ``options["node"]`` holds NodeConfig overrides (field name ->
value) that every member, restarted or added, gets as server flags (server.node_flags).

Ports (``PortHold``): a member's ports are chosen here, before its process exists (every
member's --member list names the others' addresses), so between the choice and the
member's listen no other socket may take them. Binding port 0 and closing (what an earlier
free_port did) leaves the number unprotected: any process's next bind(0) or outgoing
connection may take it. So a port is HELD from the moment it is chosen: ``PortHold.take``
binds a socket to it exclusively (no SO_REUSEADDR: a port with any socket on it, a
TIME_WAIT included, is passed over), and ``launch`` hands that very socket to the member
process (``--listen-fd ROLE=FD``, server.py), which sets SO_REUSEADDR and listens on it;
the launcher then closes its copy. The port is bound at every moment from the choice on:
nothing can bind it (an exclusive bind, SO_REUSEADDR or not, conflicts with it), and the
kernel's bind(0) and outgoing connections skip explicitly bound ports. ``start_cluster``,
``add_node`` and the local target's starts all launch this way.

A killed member's ports are free until its restart. The local target holds them again at
once (``hold_again``: bound with SO_REUSEADDR, to get past the TIME_WAIT connections the
member left; a connection to a port with no listener is refused, so the member still looks
killed) and hands them to the restarted process. That re-held socket has SO_REUSEADDR, so
a program binding a port of its own choosing with SO_REUSEADDR could still bind beside it
while the member is down; another kvcheck cannot (its ``take`` binds exclusively).

Ports are drawn at random (seeded per process) from the widest stretch of [10000, 65535]
OUTSIDE /proc/sys/net/ipv4/ip_local_port_range (32768-65535 assumed where that file does
not exist) and never twice by one process: a port of a ``kvcheck cluster`` member killed
by ``kvcheck cluster kill`` is free until its restart (no process is left to hold it), and
outside the ephemeral range no outgoing connection can take it meanwhile. Should a port be
taken anyway, the member exits at once with the address in its error (server.py), and
``start_cluster`` / ``wait_for_leader`` report that member's exit and log tail
(``MemberFailed``) instead of waiting for a leader that cannot appear. The local target's
fault proxies listen on port 0 themselves and report the port they got.

cluster.json: ``{"version": 1, "tls": {ca, cert, key, client_cert, client_key} | null,
"options": {"bugs": [...], "node": {NodeConfig field: value}}, "nodes": [{"id", "name", "peer", "client", "metrics",
"data_dir", "pid", "join", "removed"}]}``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import trio

from kvcheck.exitcodes import KvcheckError, MalformedInput, MissingInput, UsageError
from kvcheck.reference.server import node_flags

CLUSTER_FILE = "cluster.json"
SERVER_MODULE = "kvcheck.reference.server"


@dataclass
class NodeInfo:
    id: int
    name: str
    peer: str
    client: str
    metrics: str
    data_dir: str
    pid: int = 0
    join: bool = False
    removed: bool = False


@dataclass
class ClusterInfo:
    path: Path  # the cluster directory
    nodes: list[NodeInfo] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    tls: dict[str, str] | None = None

    @property
    def live_nodes(self) -> list[NodeInfo]:
        return [n for n in self.nodes if not n.removed]

    def endpoints(self) -> list[str]:
        return [n.client for n in self.live_nodes]

    def node(self, ref: str) -> NodeInfo:
        for n in self.nodes:
            if ref in (str(n.id), n.name):
                return n
        known = ", ".join(f"{n.id} ({n.name})" for n in self.nodes)
        raise UsageError(f"no member {ref!r} in {self.path / CLUSTER_FILE}; members: {known}")

    def save(self) -> None:
        doc = {"version": 1, "tls": self.tls, "options": self.options,
               "nodes": [asdict(n) for n in self.nodes]}
        tmp = self.path / (CLUSTER_FILE + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        os.replace(tmp, self.path / CLUSTER_FILE)

    @classmethod
    def load(cls, path: Path) -> ClusterInfo:
        file = path / CLUSTER_FILE
        if not file.is_file():
            raise MissingInput(f"{file}: no cluster here (run `kvcheck cluster start --data-dir {path}`)")
        try:
            doc = json.loads(file.read_text())
            nodes = [NodeInfo(**n) for n in doc["nodes"]]
            return cls(path, nodes, dict(doc.get("options", {})), doc.get("tls"))
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedInput(str(file), None, f"not a cluster description: {exc}") from exc


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
EPHEMERAL_FALLBACK = (32768, 65535)  # Linux's default low end to IANA's high end
PORT_FLOOR = 10000  # below: the well-known and registered services people run
MIN_POOL = 1000  # a smaller stretch outside the ephemeral range is not worth using
RANDOM_DRAWS = 64  # random ports tried before PortAllocator.reserve scans the pool


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's ephemeral port range [low, high] (what bind(0) and connect() use)."""
    try:
        low, high = (int(x) for x in path.read_text().split())
    except (OSError, ValueError):
        return EPHEMERAL_FALLBACK
    if not 0 < low <= high <= 65535:
        return EPHEMERAL_FALLBACK
    return low, high


def port_pool(ephemeral: tuple[int, int] | None = None) -> range:
    """The widest stretch of [PORT_FLOOR, 65535] outside the ephemeral range."""
    low, high = ephemeral or ephemeral_range()
    below = range(PORT_FLOOR, max(PORT_FLOOR, low))
    above = range(max(PORT_FLOOR, high + 1), 65536)
    best = max(below, above, key=len)
    if len(best) < MIN_POOL:  # an unusually wide ephemeral range: try the registered ports too
        best = max(best, range(1024, max(1024, low)), key=len)
    if len(best) < MIN_POOL:
        raise OSError(f"the ephemeral port range {low}-{high} leaves fewer than {MIN_POOL} ports "
                      f"in {PORT_FLOOR}-65535 for the cluster's listeners; narrow "
                      f"{EPHEMERAL_RANGE_FILE}")
    return best


class PortAllocator:
    """Chooses 127.0.0.1 ports outside the ephemeral range, each bound exclusively when chosen
    and never chosen twice by one allocator (see the module text)."""

    def __init__(self, pool: Sequence[int] | None = None, rng: random.Random | None = None) -> None:
        self._pool = pool
        self.rng = rng or random.Random(int.from_bytes(os.urandom(8), "big") ^ os.getpid())
        self.handed_out: set[int] = set()
        self._lock = threading.Lock()

    @property
    def pool(self) -> Sequence[int]:
        if self._pool is None:
            self._pool = port_pool()
        return self._pool

    def reserve(self) -> socket.socket:
        """A socket bound exclusively to a new port of the pool (not listening).

        Random ports first; should those be taken, every port of the pool in turn (from a
        random one on), so "no free port" means that none was free. (Random draws alone
        missed the one free port of three 1 time in 130: (2/3)**12.)"""
        with self._lock:
            pool = self.pool
            start = self.rng.randrange(len(pool))
            draws = (self.rng.choice(pool) for _ in range(RANDOM_DRAWS))
            scan = (pool[(start + i) % len(pool)] for i in range(len(pool)))
            for port in itertools.chain(draws, scan):
                if port in self.handed_out:
                    continue
                sock = _bind_exclusive(port)
                if sock is not None:
                    self.handed_out.add(port)
                    return sock
        raise OSError(f"no free port on 127.0.0.1 in {min(pool)}-{max(pool)} "
                      f"({len(self.handed_out)} handed out by this process)")


def _bind_exclusive(port: int, host: str = "127.0.0.1") -> socket.socket | None:
    """A socket bound to host:port if no other socket is on that port (no SO_REUSEADDR: a
    TIME_WAIT connection counts), else None."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind host:port now (no SO_REUSEADDR: a TIME_WAIT counts as taken)."""
    sock = _bind_exclusive(port, host)
    if sock is None:
        return False
    sock.close()
    return True


_PORTS = PortAllocator()


class PortHold:
    """Ports held for member listeners until the members own them (see the module text); a
    context manager that closes whatever it still holds."""

    def __init__(self, allocator: PortAllocator | None = None) -> None:
        self.allocator = allocator or _PORTS
        self.sockets: dict[int, socket.socket] = {}

    def take(self) -> int:
        """A new port of the pool, held (bound exclusively) from now on."""
        sock = self.allocator.reserve()
        port: int = sock.getsockname()[1]
        self.sockets[port] = sock
        return port

    def address(self) -> str:
        """'127.0.0.1:PORT' of a new held port."""
        return f"127.0.0.1:{self.take()}"

    def hold_again(self, address: str) -> bool:
        """Hold a known port again (a killed member's, until its restart): bound with
        SO_REUSEADDR, so past the TIME_WAIT connections it left. False if another socket
        has the port."""
        port = _port(address)
        if port in self.sockets:
            return True
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.close()
            return False
        self.sockets[port] = sock
        return True

    def held(self, roles: dict[str, str]) -> dict[str, socket.socket]:
        """The held sockets of ``roles`` (role -> 'HOST:PORT'), for ``launch`` to hand over."""
        return {role: self.sockets[_port(a)] for role, a in roles.items() if _port(a) in self.sockets}

    def release(self, *addresses: str) -> None:
        """Stop holding these ports ('HOST:PORT'): a member owns them now, or nobody will."""
        for address in addresses:
            sock = self.sockets.pop(_port(address), None)
            if sock is not None:
                sock.close()

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()

    def __enter__(self) -> PortHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def make_tls(path: Path) -> dict[str, str]:
    """A CA, a member certificate (server and client use) and a client certificate (trustme)."""
    import trustme

    tls_dir = path / "tls"
    tls_dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    member = ca.issue_cert("127.0.0.1", "localhost", common_name="kvcheck-member")
    client = ca.issue_cert("127.0.0.1", "localhost", common_name="kvcheck-client")
    files = {
        "ca": tls_dir / "ca.pem", "cert": tls_dir / "member.pem", "key": tls_dir / "member.key",
        "client_cert": tls_dir / "client.pem", "client_key": tls_dir / "client.key",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    member.private_key_pem.write_to_path(str(files["key"]))
    member.cert_chain_pems[0].write_to_path(str(files["cert"]))
    for pem in member.cert_chain_pems[1:]:
        pem.write_to_path(str(files["cert"]), append=True)
    client.private_key_pem.write_to_path(str(files["client_key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client_cert"]))
    return {k: str(v) for k, v in files.items()}


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


class MemberFailed(KvcheckError):
    """A member process exited on its own (e.g. it could not listen on its port)."""


# Member processes this process started and has not reaped yet. Holding the Popen keeps
# the subprocess module from reaping them behind our back (it reaps dropped children in
# its next Popen), which would lose their exit codes.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
# Exit codes of member processes this process started and reaped (pid -> code; a negative
# code is the signal that ended it).
_EXIT_CODES: dict[int, int] = {}
_REAP_LOCK = threading.Lock()  # the local target polls from worker threads


def _reap(pid: int, wait: float = 0.0) -> None:
    """Reap pid if it is our exited child (started in this process), keeping its exit code;
    ``wait``: seconds to wait for one of ours that is still exiting."""
    with _REAP_LOCK:
        child = _CHILDREN.get(pid)
    if child is not None:
        try:
            code = child.wait(wait) if wait > 0 else child.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            with _REAP_LOCK:
                _EXIT_CODES[pid] = code
                _CHILDREN.pop(pid, None)
        return
    with _REAP_LOCK, contextlib.suppress(ChildProcessError, OSError):  # a child of an earlier Popen
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            _EXIT_CODES[pid] = os.waitstatus_to_exitcode(status)


def _proc_state(pid: int) -> str | None:
    """The /proc state letter of pid (R, S, T, Z, ...), or None if it does not exist."""
    if pid <= 0:
        return None
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _live_threads(pid: int) -> list[int]:
    """The threads of process ``pid`` other than its leader (the thread whose id is pid)
    that have not exited yet."""
    try:
        tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except (OSError, ValueError):
        return []
    live = []
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue  # it exited while we looked
        if tid != pid and stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            live.append(tid)
    return live


def _exited(pid: int) -> bool:
    """Whether every thread of process ``pid`` has exited, so that the descriptors they
    share (a member's listeners) are closed.

    Not the same as its /proc state being Z: the pid's state is its leader thread's, which
    turns Z as soon as that one thread exits, while the process's other threads may still be
    exiting (on a loaded machine for a while, and a thread inside an fsync cannot die before
    the fsync ends) and holding every listener open: the kernel still completes connections
    to them. Measured under load, 1 kill -9 in 7: the member's pid read Z, another of its
    threads read R, and its metrics port accepted a connection. waitpid reaps a leader only
    after its whole thread group is gone, so a reaped (vanished) pid has exited too."""
    state = _proc_state(pid)  # reaps pid if it is our exited child
    if state is None or state == "X":
        return True
    return state == "Z" and not _live_threads(pid)


def _is_member_process(node: NodeInfo) -> bool:
    # A process whose leader thread exited reads an empty command line at /proc/PID/cmdline;
    # its live threads still show theirs.
    for path in [f"/proc/{node.pid}/cmdline"] + [f"/proc/{node.pid}/task/{t}/cmdline" for t in _live_threads(node.pid)]:
        try:
            cmdline = Path(path).read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in cmdline]
        if SERVER_MODULE in args and str(node.data_dir) in args:
            return True
    return False


def process_state(node: NodeInfo) -> str:
    """running | paused | stopped (no process).

    A member started by this process is ours until we reap it (its pid cannot be reused
    meanwhile), so its command line is not checked: an exiting process's reads empty before
    it becomes a zombie. It is not stopped until every one of its threads has exited
    (``_exited``): until then it still holds its listeners, and counts as running."""
    with _REAP_LOCK:
        ours = node.pid in _CHILDREN
    state = _proc_state(node.pid)
    if state is None or _exited(node.pid) or not (ours or _is_member_process(node)):
        return "stopped"
    return "paused" if state in ("T", "t") else "running"


def log_path(node: NodeInfo) -> Path:
    """Where a member's stdout and stderr go."""
    return Path(node.data_dir).parent / f"{node.name}.log"


def exit_report(node: NodeInfo, lines: int = 3) -> str:
    """Why a stopped member stopped: its exit code (when this process reaped it) and the
    last lines of its log."""
    _reap(node.pid, wait=5.0)  # it may still be exiting when process_state looked
    code = _EXIT_CODES.get(node.pid)
    how = "exited" if code is None else (
        f"was killed by signal {-code}" if code < 0 else f"exited with status {code}")
    return f"member {node.name} (pid {node.pid}, client {node.client}, peer {node.peer}) {how}; {log_tail(node, lines)}"


def log_tail(node: NodeInfo, lines: int = 3) -> str:
    """'PATH: last | lines' of a member's log."""
    try:
        tail = [ln for ln in log_path(node).read_text(errors="replace").splitlines() if ln.strip()][-lines:]
    except OSError:
        tail = []
    return f"{log_path(node)}: {' | '.join(tail) if tail else '(empty log)'}"


def check_running(nodes: list[NodeInfo]) -> None:
    """Raise MemberFailed naming every member of ``nodes`` whose process has stopped."""
    failed = [exit_report(n) for n in nodes if process_state(n) == "stopped"]
    if failed:
        raise MemberFailed("; ".join(failed))


def _signal(node: NodeInfo, sig: signal.Signals) -> bool:
    if process_state(node) == "stopped":
        return False
    os.kill(node.pid, sig)
    return True


# cluster.json options written before options["node"] existed: option -> (field, divisor)
_LEGACY_OPTIONS: dict[str, tuple[str, int]] = {
    "tick_ms": ("tick_interval", 1000), "election_ticks": ("election_tick", 1),
    "snapshot_count": ("snapshot_count", 1), "snapshot_catchup_entries": ("snapshot_catchup_entries", 1),
    "quota_bytes": ("quota_bytes", 1), "request_timeout": ("request_timeout", 1),
}


def node_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The NodeConfig overrides in a cluster's options: ``options["node"]`` plus the older
    top-level keys (tick_ms, election_ticks, snapshot_count, ...)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in ("bugs", "node") or value is None:
            continue
        if key not in _LEGACY_OPTIONS:
            raise UsageError(f"cluster option {key!r} is unknown; NodeConfig values go in options['node']")
        name, divisor = _LEGACY_OPTIONS[key]
        out[name] = value / divisor if divisor != 1 else value
    node = options.get("node") or {}
    if not isinstance(node, dict):
        raise UsageError(f"cluster option 'node' must map NodeConfig fields to values, got {node!r}")
    out.update(node)
    return out


def server_command(info: ClusterInfo, node: NodeInfo) -> list[str]:
    opts = info.options
    cmd = [sys.executable, "-m", SERVER_MODULE, "--id", str(node.id), "--name", node.name,
           "--data-dir", node.data_dir, "--listen-peer", node.peer, "--listen-client", node.client,
           "--listen-metrics", node.metrics]
    for member in info.nodes:
        if not member.removed and (not member.join or member.id == node.id or node.join):
            cmd += ["--member", f"{member.id},{member.name},{member.peer},{member.client}"]
    if node.join:
        cmd.append("--join")
    cmd += node_flags(node_overrides(opts))
    for bug in opts.get("bugs", []):
        cmd += ["--bug", bug]
    if info.tls:
        cmd += ["--cert", info.tls["cert"], "--key", info.tls["key"], "--ca", info.tls["ca"]]
    return cmd


def launch(info: ClusterInfo, node: NodeInfo, command: list[str] | None = None,
           sockets: dict[str, socket.socket] | None = None) -> None:
    """Start ``node``'s server process (``command``: server_command(info, node) unless given).

    ``sockets`` (role -> a socket bound to that role's address, from ``PortHold.held``) are
    handed to the process (``--listen-fd``), which listens on them; this process closes its
    copies, so the member is their only owner."""
    Path(node.data_dir).mkdir(parents=True, exist_ok=True)
    command = list(command or server_command(info, node))
    sockets = sockets or {}
    for role, sock in sockets.items():
        command += ["--listen-fd", f"{role}={sock.fileno()}"]
    with open(log_path(node), "ab") as logf:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
            close_fds=True, pass_fds=[sock.fileno() for sock in sockets.values()],
        )
    for sock in sockets.values():
        sock.close()
    node.pid = proc.pid
    with _REAP_LOCK:
        _EXIT_CODES.pop(proc.pid, None)
        _CHILDREN[proc.pid] = proc


def member_roles(node: NodeInfo) -> dict[str, str]:
    """What a member listens on: role -> address."""
    return {"peer": node.peer, "client": node.client, "metrics": node.metrics}


def launch_held(info: ClusterInfo, node: NodeInfo, ports: PortHold, command: list[str] | None = None,
                roles: dict[str, str] | None = None) -> None:
    """``launch`` handing over the ports of ``roles`` (default: member_roles(node)) that
    ``ports`` holds; ``ports`` holds them no more."""
    roles = roles or member_roles(node)
    launch(info, node, command, ports.held(roles))
    ports.release(*roles.values())


def client_ssl(info: ClusterInfo) -> Any:
    if not info.tls:
        return None
    from kvcheck.reference.tls import TLSFiles, client_context

    return client_context(TLSFiles(Path(info.tls["client_cert"]), Path(info.tls["client_key"]),
                                   Path(info.tls["ca"])))


async def _statuses(info: ClusterInfo, timeout: float = 1.0) -> dict[int, dict[str, Any] | str]:
    from kvcheck.reference.client import ClientError, open_client

    out: dict[int, dict[str, Any] | str] = {}
    async with open_client(info.endpoints() or ["127.0.0.1:1"], timeout=timeout,
                           ssl_context=client_ssl(info)) as client:
        async def one(node: NodeInfo) -> None:
            try:
                out[node.id] = await client.status(node.client, timeout=timeout)
            except ClientError as exc:
                out[node.id] = str(exc)

        async with trio.open_nursery() as nursery:
            for node in info.live_nodes:
                nursery.start_soon(one, node)
    return out


def statuses(info: ClusterInfo, timeout: float = 1.0) -> dict[int, dict[str, Any] | str]:
    return trio.run(_statuses, info, timeout)


def wait_for_leader(info: ClusterInfo, timeout: float = 30.0, nodes: list[NodeInfo] | None = None,
                    launched: list[NodeInfo] | None = None) -> int:
    """Block until every given running member answers and they agree on one leader.

    ``launched``: members just started; if one of them stops meanwhile, raise MemberFailed
    with its exit report at once (they must all be part of the answer)."""
    deadline = time.monotonic() + timeout
    launched = list(launched or [])
    want = [n for n in (nodes or info.live_nodes) if n in launched or process_state(n) == "running"]
    last: dict[int, dict[str, Any] | str] = {}
    while time.monotonic() < deadline:
        check_running(launched)
        last = statuses(info)
        leaders = {s["leader"] for n in want if isinstance(s := last.get(n.id), dict)}
        answered = all(isinstance(last.get(n.id), dict) for n in want)
        if answered and len(leaders) == 1 and 0 not in leaders:
            return leaders.pop()
        time.sleep(0.2)
    raise click.ClickException(f"no agreed leader within {timeout:.0f}s; statuses: {last}")


# --------------------------------------------------------------------------------------------
# Operations (importable: tests and benchmarks use them directly)
# --------------------------------------------------------------------------------------------


def start_cluster(path: Path, nodes: int = 3, *, tls: bool = False, options: dict[str, Any] | None = None,
                  wait: float = 30.0) -> ClusterInfo:
    """Create (or restart) the cluster in ``path``; returns once it has a leader."""
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    if (path / CLUSTER_FILE).exists():
        info = ClusterInfo.load(path)
        started = [n for n in info.live_nodes if process_state(n) == "stopped"]
        for node in started:
            launch(info, node)
        info.save()
        wait_for_leader(info, wait, launched=started)
        return info
    if nodes < 1:
        raise UsageError(f"--nodes must be at least 1, got {nodes}")
    info = ClusterInfo(path, options=dict(options or {}))
    if tls:
        info.tls = make_tls(path)
    restored = _restored_members(path)
    if restored is not None and restored != nodes:
        raise UsageError(f"{path} holds a snapshot restored for {restored} members; start it with --nodes {restored}")
    with PortHold() as ports:  # each member is handed its held ports as it starts
        for i in range(1, nodes + 1):
            name = f"node{i}"
            info.nodes.append(NodeInfo(id=i, name=name, peer=ports.address(), client=ports.address(),
                                       metrics=ports.address(), data_dir=str(path / name / "data")))
        info.save()
        for node in info.nodes:
            launch_held(info, node, ports)
        info.save()
        try:
            wait_for_leader(info, wait, launched=info.nodes)
        except MemberFailed:
            stop_cluster(info)  # a new cluster that cannot start leaves no process behind
            raise
    return info


def _restored_members(path: Path) -> int | None:
    marker = path / "restored.json"
    if not marker.is_file():
        return None
    return int(json.loads(marker.read_text())["members"])


def stop_cluster(info: ClusterInfo, grace: float = 5.0) -> None:
    """SIGTERM every member, SIGKILL what is left after ``grace``; returns once every
    signalled process is gone (its ports closed) or after another ``grace``."""
    signalled: list[NodeInfo] = []
    for node in info.nodes:
        if process_state(node) == "paused":
            _signal(node, signal.SIGCONT)
        if _signal(node, signal.SIGTERM):
            signalled.append(node)

    def all_gone() -> bool:  # by pid, as _wait_state: an exiting member may still hold its ports
        return all(_exited(n.pid) for n in signalled)

    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all_gone():
        time.sleep(0.05)
    for node in signalled:
        _signal(node, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and not all_gone():
        time.sleep(0.05)


def kill_node(info: ClusterInfo, node: NodeInfo) -> None:
    if not _signal(node, signal.SIGKILL):
        raise UsageError(f"member {node.name} is not running")
    _wait_state(node, "stopped")


def restart_node(info: ClusterInfo, node: NodeInfo) -> None:
    if process_state(node) != "stopped":
        raise UsageError(f"member {node.name} is still running (pid {node.pid}); kill or stop it first")
    launch(info, node)
    info.save()


def add_node(info: ClusterInfo, learner: bool = False, wait: float = 30.0) -> NodeInfo:
    """member add through the leader, then start the new member with --join; returns once it
    knows the leader (MemberFailed if its process exits first)."""
    from kvcheck.reference.client import open_client

    new_name = f"node{max(n.id for n in info.nodes) + 1}"
    with PortHold() as ports:  # handed to the new member as it starts
        peer, client, metrics = ports.address(), ports.address(), ports.address()

        async def add() -> dict[str, Any]:
            async with open_client(info.endpoints(), ssl_context=client_ssl(info)) as c:
                return await c.member_add(new_name, peer, client, learner=learner)

        member = trio.run(add)["member"]
        node = NodeInfo(id=member["id"], name=member["name"], peer=peer, client=client, metrics=metrics,
                        data_dir=str(info.path / member["name"] / "data"), join=True)
        info.nodes.append(node)
        info.save()
        launch_held(info, node, ports)
        info.save()
        wait_for_leader(info, wait, nodes=[node], launched=[node])
    return node


def remove_node(info: ClusterInfo, node: NodeInfo) -> None:
    from kvcheck.reference.client import open_client

    async def remove() -> None:
        async with open_client([n.client for n in info.live_nodes if n.id != node.id],
                               ssl_context=client_ssl(info)) as c:
            await c.member_remove(node.id)

    trio.run(remove)
    node.removed = True
    info.save()
    deadline = time.monotonic() + 5  # a removed member stops itself once it applies its removal
    while process_state(node) != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal(node, signal.SIGTERM)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------

data_dir_option = click.option("--data-dir", "data_dir", type=click.Path(path_type=Path), required=True,
                               help="The cluster directory (holds cluster.json).")


def _load(data_dir: Path) -> ClusterInfo:
    return ClusterInfo.load(data_dir.resolve())


@click.group("cluster")
def cluster() -> None:
    """Start and control a reference-store cluster of real processes on 127.0.0.1."""


@cluster.command("start")
@data_dir_option
@click.option("--nodes", default=3, show_default=True, help="Members of a new cluster.")
@click.option("--tls", is_flag=True, help="Mutual TLS on every port (certificates made with trustme).")
@click.option("--snapshot-count", type=int, default=None, help="Applied entries between snapshots.")
@click.option("--tick-ms", type=int, default=None, help="Raft tick length in milliseconds.")
@click.option("--bug", "bugs", multiple=True, help="Enable an injected bug switch on every member.")
@click.option("--wait", type=float, default=30.0, show_default=True, help="Seconds to wait for a leader.")
def start_cmd(data_dir: Path, nodes: int, tls: bool, snapshot_count: int | None, tick_ms: int | None,
              bugs: tuple[str, ...], wait: float) -> int:
    """Start a new cluster, or the stopped members of an existing one."""
    from kvcheck.reference.bugs import Bugs

    try:
        Bugs.from_names(list(bugs))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    node: dict[str, Any] = {}
    if snapshot_count is not None:
        node["snapshot_count"] = snapshot_count
    if tick_ms is not None:
        node["tick_interval"] = tick_ms / 1000
    options: dict[str, Any] = {"bugs": list(bugs), "node": node}
    info = start_cluster(data_dir, nodes, tls=tls, options=options, wait=wait)
    leader = wait_for_leader(info, 5)
    for n in info.live_nodes:
        click.echo(f"{n.id}\t{n.name}\tclient={n.client}\tpeer={n.peer}\tmetrics=http://{n.metrics}/metrics\tpid={n.pid}")
    click.echo(f"leader: {leader}; cluster file: {info.path / CLUSTER_FILE}")
    return 0


@cluster.command("stop")
@data_dir_option
def stop_cmd(data_dir: Path) -> int:
    """Stop every member (SIGTERM, then SIGKILL after 5 s)."""
    info = _load(data_dir)
    stop_cluster(info)
    click.echo("stopped")
    return 0


@cluster.command("status")
@data_dir_option
@click.option("-w", "--write-out", "fmt", type=click.Choice(["table", "json"]), default="table")
def status_cmd(data_dir: Path, fmt: str) -> int:
    """Members, their process state, leader, term and applied index."""
    info = _load(data_dir)
    st = statuses(info)
    rows = []
    for n in info.nodes:
        s = st.get(n.id)
        row: dict[str, Any] = {"id": n.id, "name": n.name, "client": n.client, "pid": n.pid,
                               "process": "removed" if n.removed else process_state(n)}
        if isinstance(s, dict):
            row.update({k: s[k] for k in ("leader", "term", "role", "applied", "commit", "raft_index", "revision")})
        elif s is not None:
            row["error"] = s
        rows.append(row)
    if fmt == "json":
        click.echo(json.dumps({"members": rows}, indent=2))
        return 0
    click.echo("ID  NAME     CLIENT            PROCESS  ROLE       LEADER  TERM  APPLIED  REVISION")
    for r in rows:
        click.echo(f"{r['id']:<3} {r['name']:<8} {r['client']:<17} {r['process']:<8} "
                   f"{r.get('role', '-'):<10} {r.get('leader', '-')!s:<7} {r.get('term', '-')!s:<5} "
                   f"{r.get('applied', '-')!s:<8} {r.get('revision', '-')}")
    return 0


def _node_command(name: str, help_text: str) -> Any:
    def decorator(fn: Any) -> Any:
        @cluster.command(name, help=help_text)
        @data_dir_option
        @click.argument("node")
        def cmd(data_dir: Path, node: str) -> int:
            info = _load(data_dir)
            fn(info, info.node(node))
            click.echo(f"{name}: {node}")
            return 0

        return cmd

    return decorator


@_node_command("kill", "SIGKILL one member (by id or name).")
def _kill(info: ClusterInfo, node: NodeInfo) -> None:
    kill_node(info, node)


@_node_command("restart", "Start a stopped or killed member again (same ports and data).")
def _restart(info: ClusterInfo, node: NodeInfo) -> None:
    restart_node(info, node)


def pause_node(info: ClusterInfo, node: NodeInfo) -> None:
    if not _signal(node, signal.SIGSTOP):
        raise UsageError(f"member {node.name} is not running")
    _wait_state(node, "paused")


def resume_node(info: ClusterInfo, node: NodeInfo) -> None:
    if not _signal(node, signal.SIGCONT):
        raise UsageError(f"member {node.name} is not running")
    _wait_state(node, "running")


def _wait_state(node: NodeInfo, state: str, timeout: float = 5.0) -> None:
    """Signals are delivered asynchronously: wait (bounded) until /proc shows the new state.

    "stopped" waits for every thread of the pid to have exited (``_exited``): a dying
    process's command line reads empty before it has closed its listening sockets (measured:
    every time, 15 of 15 kill -9s), and so does its state read Z while its other threads
    still hold them (under load), and a restart in between would find its ports taken."""
    deadline = time.monotonic() + timeout

    def reached() -> bool:
        if state == "stopped":
            return _exited(node.pid)
        return process_state(node) == state

    while not reached() and time.monotonic() < deadline:
        time.sleep(0.01)


@_node_command("pause", "SIGSTOP one member.")
def _pause(info: ClusterInfo, node: NodeInfo) -> None:
    pause_node(info, node)


@_node_command("resume", "SIGCONT one member.")
def _resume(info: ClusterInfo, node: NodeInfo) -> None:
    resume_node(info, node)


@_node_command("remove-node", "member remove through the leader; the member then stops.")
def _remove(info: ClusterInfo, node: NodeInfo) -> None:
    remove_node(info, node)


@cluster.command("add-node")
@data_dir_option
@click.option("--learner", is_flag=True, help="Add as a learner (promote later with ctl member promote).")
def add_node_cmd(data_dir: Path, learner: bool) -> int:
    """member add through the leader, then start the new member."""
    info = _load(data_dir)
    node = add_node(info, learner)
    click.echo(f"{node.id}\t{node.name}\tclient={node.client}\tpeer={node.peer}\tpid={node.pid}")
    return 0
