"""The etcd target: a cluster of real ``etcd`` processes on 127.0.0.1, or an existing one.

``kvcheck run --target etcd`` starts ``--nodes`` members of the ``etcd`` binary on PATH
(Debian's etcd-server) with ports held by ``reference.cluster.PortHold`` (outside the
kernel's ephemeral range, bound from their choice until etcd starts: etcd takes no inherited
socket, so they are let go just before it binds them) and data directories inside the run
directory (``etcd-data/nodeN``, removed when the run ends: etcd preallocates 64 MB WAL
segments), waits for a leader, runs the workload and tears the cluster down. Each member's
output goes to ``nodeN.log`` in the run directory; ``cluster-events.log`` lists what the
target did (starts, kills, pauses, membership changes).

Faults, modelled on the local target (``workloads/local/cluster.py``): kill -9 and restart
(same data directory), SIGSTOP/SIGCONT, partitions and packet faults through a TCP proxy on
every member's peer port (``proxy.py``: each member advertises its proxy's URL and listens
behind it), and membership remove/re-add through etcd's members API (the re-added member is
a new member with an empty data directory, started with ``--initial-cluster-state
existing``). Clock and disk faults cannot be injected into real processes without
privileges; ``RunConfig.validate`` rejects them (exit 64).

Teardown: SIGCONT whatever is paused, SIGTERM the followers and wait for them, then the
leader (a leader whose followers stop at the same moment spends seconds in a failed
leadership transfer; one whose followers are already gone stops at once), SIGKILL whatever
is still running after ``STOP_GRACE`` seconds. What the two real-process targets do alike
(the start-and-stop bracket, health, link faults, Ctrl-C: the run stops where it is, the
members' state is read, every member stopped and what was recorded checked) is
``workloads.realcluster``'s ``ProcessCluster`` and ``execute_real``.

With ``--etcd-endpoints`` the target is an existing cluster: no process is started or
touched, node numbers are its members in member-list order, and only faults that need no
process control would be possible (none of the current kinds: ``validate`` rejects them).

Runs on real time: ``kvcheck replay`` re-runs the same schedule against a fresh cluster,
but the history is not byte-identical.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from kvcheck.exitcodes import UsageError
from kvcheck.reference import cluster as rc
from kvcheck.reference.client import ClientError
from kvcheck.workloads.client import home_member
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.etcd.client import EtcdClient
from kvcheck.workloads.etcd.proxy import EtcdPeerProxy
from kvcheck.workloads.kvclient import KVRegisterClient
from kvcheck.workloads.peerproxy import open_listener
from kvcheck.workloads.realcluster import PortTaken, ProcessCluster, execute_real

if TYPE_CHECKING:
    from kvcheck.workloads.execution import Execution, Progress

T = TypeVar("T")
ETCD_FAULTS = ("partition", "kill", "pause", "packet", "member")
ETCD_PACKAGE = "Debian's etcd-server package (apt-get install etcd-server etcd-client)"
STOP_GRACE = 10.0
# how long a membership change is asked for: a removal about a fault slot (one still refused
# then is recorded as refused); an add longer, since a cluster left one member short should get
# it back. Each attempt waits ADMIN_TIMEOUT: a conf change proposed while a new leader still
# has one pending is dropped by raft and never answered, so it is asked again.
RECONFIG_RETRY = 10.0
ADD_RETRY = 20.0
ADMIN_TIMEOUT = 4.0


START_ATTEMPTS = 3


class EtcdMissing(UsageError):
    """No etcd binary: exit 64, naming the package."""


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise EtcdMissing(f"--target etcd: etcd is not installed (no etcd binary on PATH): install {ETCD_PACKAGE}")
    return path


@dataclasses.dataclass
class EtcdMember:
    node: int
    name: str
    client: str  # host:port
    peer: str  # the advertised peer address: the proxy's
    listen_peer: str  # where the process listens for peers, behind the proxy
    data_dir: Path
    log: Path
    flags: list[str] = dataclasses.field(default_factory=list)
    member_id: int = 0
    proc: subprocess.Popen[bytes] | None = None
    removed: bool = False
    up: bool = False  # launched and not killed or removed by us: it should be running
    paused: bool = False  # sent SIGSTOP by us and not SIGCONT yet

    def state(self) -> str:
        """running | paused | stopped."""
        if self.proc is None or self.proc.poll() is not None:
            return "stopped"
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return "stopped"
        letter = stat.rsplit(")", 1)[1].split()[0]
        if letter in ("Z", "X"):
            return "stopped"
        return "paused" if letter in ("T", "t") else "running"


class EtcdCluster(ProcessCluster):
    """Real etcd processes plus peer proxies (or an existing cluster's endpoints); create
    inside trio.run and use ``EtcdCluster.running`` (the shared ``ProcessCluster`` bracket:
    a start whose member could not bind its port is retried with new ports, since etcd's own
    client and peer ports are chosen before it starts and let go just before it binds them)."""

    FAULTS = ETCD_FAULTS
    START_ATTEMPTS = START_ATTEMPTS

    def __init__(self, config: RunConfig, path: Path) -> None:
        # etcd's own client and peer ports are held (``self.ports``, reference.cluster.PortHold)
        # from their choice until the member starts, and again while a killed member is down
        super().__init__(config, path)
        self.external = bool(config.etcd.get("endpoints"))
        self.proxy: EtcdPeerProxy = EtcdPeerProxy(random.Random(f"{config.seed}:proxy"))
        self.members: dict[int, EtcdMember] = {}
        self.node_of_member: dict[int, int] = {}  # etcd member id -> node number (history "node")
        self.port_taken = False
        self._status: EtcdClient | None = None
        self.token = f"kvcheck-{config.seed}-{os.getpid()}-{time.monotonic_ns()}"
        # an existing cluster is shared and not empty: a run keeps to keys of its own
        self.namespace = f"kvcheck/{self.token}/".encode() if self.external else b""

    # -- shape ------------------------------------------------------------------------------

    @property
    def node_ids(self) -> list[int]:
        return sorted(i for i, m in self.members.items() if not m.removed)

    def supported_faults(self) -> tuple[str, ...]:
        return () if self.external else ETCD_FAULTS

    def _new_member(self, node: int) -> EtcdMember:
        name = f"node{node}"
        m = EtcdMember(node=node, name=name, client=self.ports.address(),
                       peer="", listen_peer=self.ports.address(),
                       data_dir=self.path / "etcd-data" / name, log=self.path / f"{name}.log")
        self.members[node] = m
        return m

    def _flags(self, m: EtcdMember, initial_cluster: str, state: str) -> list[str]:
        s = self.config.etcd
        return ["--name", m.name, "--data-dir", str(m.data_dir),
                "--listen-client-urls", f"http://{m.client}", "--advertise-client-urls", f"http://{m.client}",
                "--listen-peer-urls", f"http://{m.listen_peer}",
                "--initial-advertise-peer-urls", f"http://{m.peer}",
                "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
                "--initial-cluster-token", self.token,
                "--heartbeat-interval", str(s["heartbeat_ms"]), "--election-timeout", str(s["election_ms"]),
                f"--pre-vote={'true' if s['pre_vote'] else 'false'}",
                "--logger", "zap", "--log-outputs", "stderr"]

    def _launch(self, m: EtcdMember) -> None:
        m.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # etcd takes no inherited socket: its held ports are let go just before it binds them
        self.ports.release(m.client, m.listen_peer)
        with open(m.log, "ab") as logf:
            m.proc = subprocess.Popen([etcd_binary(), *m.flags], stdin=subprocess.DEVNULL, stdout=logf,
                                      stderr=logf, start_new_session=True, close_fds=True)
        m.up = True
        self._log(f"started {m.name} (pid {m.proc.pid})")

    async def _start_proxy(self, m: EtcdMember) -> None:
        """The member's proxy, on a port the OS chooses: it becomes the advertised peer URL."""
        assert self._nursery is not None
        listener, m.peer = await open_listener()
        await self._nursery.start(self.proxy.serve, m.node, listener, m.listen_peer)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        if self.external:
            await self._attach(list(self.config.etcd["endpoints"]))
            return
        for i in self.config.node_ids:
            await self._start_proxy(self._new_member(i))
        initial = ",".join(f"{m.name}=http://{m.peer}" for m in self.members.values())
        for m in self.members.values():
            m.flags = self._flags(m, initial, "new")
        for m in self.members.values():
            self._launch(m)
        self._status = EtcdClient([m.client for m in self.members.values()], timeout=1.0, dial_timeout=0.5)

    async def _attach(self, endpoints: list[str]) -> None:
        self._status = EtcdClient(endpoints, timeout=2.0, dial_timeout=1.0)
        members = await self._status.member_list()
        for i, row in enumerate(members, start=1):
            client = row["client_urls"][0].split("://", 1)[-1] if row["client_urls"] else ""
            peer = row["peer_urls"][0].split("://", 1)[-1] if row["peer_urls"] else ""
            self.members[i] = EtcdMember(node=i, name=row["name"] or f"member{i}", client=client, peer=peer,
                                         listen_peer=peer, data_dir=Path(), log=Path(), member_id=row["id"])
            self.node_of_member[row["id"]] = i
        await self._status.aclose()
        self._status = EtcdClient([m.client for m in self.members.values()], timeout=1.0, dial_timeout=0.5)

    async def _learn_ids(self) -> None:
        assert self._status is not None
        rows = await self._status.member_list()
        by_name = {row["name"]: row["id"] for row in rows}
        for m in self.members.values():
            if m.name in by_name:
                m.member_id = by_name[m.name]
                self.proxy.members[format(m.member_id, "x")] = m.node
                self.node_of_member[m.member_id] = m.node

    async def wait_started(self, timeout: float) -> None:
        with trio.move_on_after(timeout):
            while True:
                self._note_exits()
                if self.unexpected_exits:
                    if any("address already in use" in e for e in self.unexpected_exits):
                        self.port_taken = True
                        raise PortTaken("; ".join(self.unexpected_exits))
                    raise RuntimeError("the etcd cluster cannot start: " + "; ".join(self.unexpected_exits))
                if await self.leader() is not None:
                    with contextlib.suppress(ClientError):
                        await self._learn_ids()
                        if all(m.member_id for m in self.members.values()):
                            return
                await trio.sleep(0.1)
        tails = "; ".join(f"{m.name}: {m.state()}, log {_tail(m.log)}" for m in self.members.values())
        raise RuntimeError(f"the etcd cluster in {self.path} found no leader within {timeout:.0f} s: {tails}")

    async def facts(self) -> dict[str, Any]:
        """What config.json records: the etcd version and each member's flags."""
        assert self._status is not None
        version: dict[str, Any] = {}
        for i in self.node_ids:
            with contextlib.suppress(ClientError):
                version = await self._status.version(self.members[i].client)
                break
        return {"version": version.get("etcdserver", ""), "cluster_version": version.get("etcdcluster", ""),
                "members": {m.name: m.flags for m in self.members.values() if m.flags},
                "namespace": self.namespace.decode()}

    async def prepare(self) -> None:
        self.config.etcd.update(await self.facts())

    async def shutdown(self) -> None:
        await self._stop_members()
        if self.port_taken:  # the start is tried again in the same place
            shutil.rmtree(self.path / "etcd-data", ignore_errors=True)

    async def _stop_members(self) -> None:
        self._note_exits()
        for m in self.members.values():
            m.up = False
        live = [m for m in self.members.values() if m.state() != "stopped"]
        if not live:
            if self._status is not None:
                await self._status.aclose()
            self.ports.close()
            return
        for m in live:
            if m.paused or m.state() == "paused":
                os.kill(m.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
                m.paused = False
        leader = None
        with trio.move_on_after(1.5):
            leader = await self.leader()
        followers = [m for m in live if m.node != leader]
        last = [m for m in live if m.node == leader]
        for group in (followers, last):
            await self._stop_group(group)
        if self._status is not None:
            await self._status.aclose()
        self.ports.close()
        self._log("stopped the cluster")

    async def _stop_group(self, group: list[EtcdMember]) -> None:
        for m in group:
            if m.state() != "stopped":
                m.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = trio.current_time() + STOP_GRACE
        while trio.current_time() < deadline and any(m.state() != "stopped" for m in group):
            await trio.sleep(0.05)
        for m in group:
            if m.state() != "stopped":
                self._log(f"{m.name} did not stop within {STOP_GRACE:g} s of SIGTERM: SIGKILL")
                m.proc.kill()  # type: ignore[union-attr]
            if m.proc is not None:
                await trio.to_thread.run_sync(m.proc.wait)

    def _note_exits(self) -> None:
        for m in self.members.values():
            if m.proc is not None and m.up and not m.removed and m.proc.poll() is not None:
                report = f"{m.name} (pid {m.proc.pid}) exited with {m.proc.returncode}: {_tail(m.log)}"
                self.unexpected_exits.append(report)
                self._log(f"unexpected exit: {report}")
                m.up = False

    # -- health -----------------------------------------------------------------------------

    async def _statuses(self) -> dict[int, dict[str, Any]]:
        assert self._status is not None
        out: dict[int, dict[str, Any]] = {}
        for i in self.node_ids:
            m = self.members[i]
            if not self.external and m.state() != "running":
                continue
            try:
                out[i] = await self._status.status(m.client, timeout=0.5)
            except ClientError:
                continue
        return out

    async def node_states(self) -> dict[str, dict[str, Any]]:
        """Each member's state for the run's liveness verdict (``run.py`` names the members
        that kept the cluster from recovering): running, paused, stopped or removed, and a
        running member's role, commit and applied index as its status answers them."""
        statuses = await self._statuses() if self._status is not None else {}
        out: dict[str, dict[str, Any]] = {}
        for i, m in sorted(self.members.items()):
            state = "removed" if m.removed else ("external" if self.external else m.state())
            row: dict[str, Any] = {"state": state}
            st = statuses.get(i)
            if st is not None:
                row.update(role="LEADER" if st["leader"] and st["leader"] == st["member_id"] else "FOLLOWER",
                           commit=st["raft_index"], applied=st["raft_applied_index"])
            elif state == "running":
                row["state"] = "running, no status answer"
            out[str(i)] = row
        return out

    def _node_of(self, member_id: int) -> int | None:
        return next((m.node for m in self.members.values() if m.member_id == member_id and member_id), None)

    async def leader(self) -> int | None:
        statuses = await self._statuses()
        best: tuple[int, int] | None = None
        for s in statuses.values():
            if s["leader"]:
                node = self._node_of(s["leader"])
                if node is None and s["leader"] == s["member_id"]:
                    node = next(i for i, x in statuses.items() if x is s)
                if node is not None and (best is None or s["raft_term"] > best[0]):
                    best = (s["raft_term"], node)
        return best[1] if best is not None else None

    def _progress(self, status: dict[str, Any]) -> tuple[Any, int, int]:
        return status["leader"], status["raft_index"], status["raft_applied_index"]

    # -- clients ----------------------------------------------------------------------------

    def kv_client(self, process: int) -> EtcdClient:
        endpoints = [self.members[i].client for i in self.node_ids]
        home = self.members[home_member(process, self.node_ids)].client
        return EtcdClient(endpoints, timeout=self.config.client_timeout, home=home, namespace=self.namespace)

    def client(self, process: int) -> KVRegisterClient:
        return _EtcdRegisterClient(self.kv_client(process), self.node_of_member)

    # -- faults -----------------------------------------------------------------------------

    async def kill(self, node: int) -> None:
        m = self.members[node]
        m.up = False
        m.paused = False
        if m.proc is not None and m.state() != "stopped":
            m.proc.kill()
            await trio.to_thread.run_sync(m.proc.wait)
            self._log(f"killed {m.name} (SIGKILL)")
            for address in (m.client, m.listen_peer):  # kept for its restart
                self.ports.hold_again(address)

    async def restart(self, node: int) -> None:
        m = self.members[node]
        if not m.removed and m.state() == "stopped":
            self._launch(m)

    async def pause(self, node: int) -> None:
        m = self.members[node]
        if m.proc is not None and m.state() == "running":
            os.kill(m.proc.pid, signal.SIGSTOP)
            m.paused = True
            self._log(f"paused {m.name} (SIGSTOP)")

    async def resume(self, node: int) -> None:
        # By what we did, not by /proc: a SIGSTOP is delivered when the process next runs, so
        # on a loaded machine a resume right after the pause can still see it running (and a
        # resume that sent nothing left the member stopped for the rest of the run).
        m = self.members[node]
        if m.proc is not None and (m.paused or m.state() == "paused") and m.proc.poll() is None:
            os.kill(m.proc.pid, signal.SIGCONT)
            self._log(f"resumed {m.name} (SIGCONT)")
        m.paused = False

    def _admin(self, exclude: int | None = None) -> EtcdClient:
        endpoints = [self.members[i].client for i in self.node_ids if i != exclude]
        return EtcdClient(endpoints, timeout=ADMIN_TIMEOUT, dial_timeout=0.5)

    async def remove_member(self, node: int) -> bool:
        if len(self.node_ids) <= 3 or node not in self.node_ids:
            return False
        m = self.members[node]
        admin = self._admin(exclude=node)
        removed = False
        last = ""
        try:
            with trio.move_on_after(RECONFIG_RETRY):
                while not removed:
                    try:
                        await admin.member_remove(m.member_id)
                        removed = True
                        break
                    except ClientError as exc:
                        last = str(exc)
                        if "member not found" in last:
                            removed = True  # an earlier attempt that timed out was applied
                            break
                        if not any(r in last for r in RECONFIG_REFUSALS):
                            with contextlib.suppress(ClientError):
                                removed = not await self._still_member(admin, m)
                    if not removed:
                        await trio.sleep(0.5)
        finally:
            await admin.aclose()
        if not removed:
            self._log(f"member remove {m.name} failed for {RECONFIG_RETRY:g} s: {last}")
            return False
        m.removed, m.up = True, False
        self._log(f"removed {m.name} (member {m.member_id:x})")
        if m.proc is not None:
            with trio.move_on_after(2.0):  # a removed member stops by itself, mostly
                while m.state() == "running":
                    await trio.sleep(0.05)
            if m.state() != "stopped":  # it is out of the cluster and its data is discarded
                m.proc.kill()
                await trio.to_thread.run_sync(m.proc.wait)
        self.proxy.stop(node)
        return True

    async def _still_member(self, admin: EtcdClient, m: EtcdMember) -> bool:
        return m.member_id in {row["id"] for row in await admin.member_list()}

    async def add_member(self, node: int) -> int | None:
        """A new member in place of removed ``node`` (None if ``node`` was not removed: its
        removal was refused, so the cluster keeps its size)."""
        if node in self.node_ids:
            return None
        new = self._new_member(max(self.members) + 1)
        new.removed = True  # not a member until etcd accepts it
        await self._start_proxy(new)
        admin = self._admin()
        url = f"http://{new.peer}"
        member_id: int | None = None
        rows: list[dict[str, Any]] = []
        last = ""
        try:
            with trio.move_on_after(ADD_RETRY):
                while member_id is None:
                    try:
                        added = await admin.member_add([url])
                        member_id, rows = added["id"], added["members"]
                        break
                    except ClientError as exc:
                        last = str(exc)
                        if not any(r in last for r in RECONFIG_REFUSALS):
                            # no answer (e.g. a leader election meanwhile): it may have been
                            # applied, and the member list says whether it was
                            with contextlib.suppress(ClientError):
                                rows = await admin.member_list()
                                mine = [row for row in rows if url in row["peer_urls"]]
                                if mine:
                                    member_id = mine[0]["id"]
                                    self._log(f"member add {new.name} answered {last}, but the member list has it")
                                    break
                    await trio.sleep(0.5)
        finally:
            await admin.aclose()
        if member_id is None:
            self._log(f"member add {new.name} failed for {ADD_RETRY:g} s: {last}")
            self.proxy.stop(new.node)
            return None
        new.member_id = member_id
        self.proxy.members[format(new.member_id, "x")] = new.node
        self.node_of_member[member_id] = new.node
        names = {m.member_id: m.name for m in self.members.values()}
        initial = ",".join(f"{names.get(row['id']) or new.name}={row['peer_urls'][0]}"
                           for row in rows if row["peer_urls"])
        new.flags = self._flags(new, initial, "existing")
        new.removed = False
        self._launch(new)
        self._log(f"added {new.name} (member {new.member_id:x})")
        return new.node

    async def final_info(self) -> dict[str, Any]:
        """Each member's state, the proxy's counters, the etcd version, unexpected exits."""
        return {"nodes": await self.node_states(), "proxy": dataclasses.asdict(self.proxy.stats),
                "etcd_version": self.config.etcd.get("version", ""), "unexpected_exits": self.unexpected_exits}

    def logs(self) -> dict[str, str]:
        return {"cluster-events.log": "\n".join(self.events) + "\n"}


# etcd's strict reconfiguration check refuses a membership change while the cluster would
# be short of connected (or started) members; it passes once they have been up a few seconds
RECONFIG_REFUSALS = ("unhealthy cluster", "not enough started members")


async def _reconfig(call: Callable[[], Awaitable[T]]) -> T:
    """``call`` (a member add or remove), asked again while etcd's strict reconfiguration
    check refuses it; the caller bounds the time."""
    while True:
        try:
            return await call()
        except ClientError as exc:
            if not any(r in str(exc) for r in RECONFIG_REFUSALS):
                raise
            await trio.sleep(0.5)


class _EtcdRegisterClient(KVRegisterClient):
    """The register client whose answering member (the history's ``node``) is the target's
    node number, not etcd's 64-bit member id."""

    def __init__(self, kv: EtcdClient, node_of_member: dict[int, int]) -> None:
        super().__init__(kv)
        self.node_of_member = node_of_member

    def _served(self, header: object) -> None:
        member = getattr(header, "member_id", 0)
        self.served_by = self.node_of_member.get(member, member) or None


def _tail(path: Path, lines: int = 2) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:])[:600] or "(empty log)"


def execute_etcd(config: RunConfig, progress: Progress) -> Execution:
    """Run ``config`` against real etcd (real time). Member logs and data directories go to
    the run directory (``progress.run_dir``; a temporary directory when there is none).
    Ctrl-C stops the run where it is, as on the local target (``realcluster.execute_real``):
    the members are asked for their state and stopped, and what was recorded is returned."""
    if not config.etcd.get("endpoints"):
        etcd_binary()  # exit 64 naming the package when etcd is not installed
    own_dir = progress.run_dir is None
    path = Path(tempfile.mkdtemp(prefix="kvcheck-etcd-")) if own_dir else Path(progress.run_dir)  # type: ignore[arg-type]
    try:
        execution = execute_real(EtcdCluster, config, progress, path)
        if own_dir:  # the member logs would go with the temporary directory
            for log in sorted(path.glob("node*.log")):
                execution.logs.setdefault(log.name, log.read_text(errors="replace"))
        return execution
    finally:
        shutil.rmtree(path / "etcd-data", ignore_errors=True)
        if own_dir:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def plain_cluster(path: Path, nodes: int = 3, *, timeout: float = 30.0,
                  pre_vote: bool = False, pids: list[int] | None = None) -> Iterator[list[str]]:
    """A plain etcd cluster (no proxies, no faults) under ``path`` for tests and benchmarks:
    yields the client endpoints once a leader is elected; stops every member (followers
    first, then the leader, SIGKILL after ``STOP_GRACE``) when the block ends. A start whose
    member could not bind its port is retried with new ports (see ``EtcdCluster.running``).
    ``pids``, when given, receives the members' process ids."""
    for attempt in range(1, START_ATTEMPTS + 1):
        procs: list[subprocess.Popen[bytes]] = []
        members: list[dict[str, str]] = []
        try:
            try:
                endpoints = _start_plain(path / f"attempt{attempt}", nodes, timeout, pre_vote, procs, members)
            except PortTaken:
                if attempt == START_ATTEMPTS:
                    raise
                continue
            if pids is not None:
                pids[:] = [p.pid for p in procs]
            yield endpoints
            return
        finally:
            _stop_plain(procs, members)


def _start_plain(path: Path, nodes: int, timeout: float, pre_vote: bool,
                 procs: list[subprocess.Popen[bytes]], members: list[dict[str, str]]) -> list[str]:
    import httpx

    binary = etcd_binary()
    ports = rc.PortHold()
    for i in range(1, nodes + 1):
        members.append({"name": f"node{i}", "client": ports.address(), "peer": ports.address()})
    initial = ",".join(f"{m['name']}=http://{m['peer']}" for m in members)
    token = f"kvcheck-plain-{os.getpid()}-{time.monotonic_ns()}"
    for m in members:
        (path / m["name"]).mkdir(parents=True, exist_ok=True)
        ports.release(m["client"], m["peer"])  # etcd binds them itself, now
        with open(path / f"{m['name']}.log", "ab") as logf:
            procs.append(subprocess.Popen(
                [binary, "--name", m["name"], "--data-dir", str(path / m["name"] / "data"),
                 "--listen-client-urls", f"http://{m['client']}", "--advertise-client-urls", f"http://{m['client']}",
                 "--listen-peer-urls", f"http://{m['peer']}", "--initial-advertise-peer-urls", f"http://{m['peer']}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", token, f"--pre-vote={'true' if pre_vote else 'false'}",
                 "--logger", "zap", "--log-outputs", "stderr"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True, close_fds=True))
    endpoints = [m["client"] for m in members]
    deadline = time.monotonic() + timeout
    while True:
        exited = [f"{m['name']}: {_tail(path / (m['name'] + '.log'))}"
                  for m, p in zip(members, procs, strict=True) if p.poll() is not None]
        if exited and any("address already in use" in e for e in exited):
            raise PortTaken("; ".join(exited))
        if exited or time.monotonic() > deadline:
            raise RuntimeError(f"the etcd cluster in {path} did not elect a leader within {timeout:g} s: "
                               + "; ".join(exited or [_tail(path / f"node{i + 1}.log") for i in range(nodes)]))
        with contextlib.suppress(httpx.HTTPError, ValueError):
            d = httpx.post(f"http://{endpoints[0]}/v3/maintenance/status", json={}, timeout=0.5).json()
            if d.get("leader"):
                return endpoints
        time.sleep(0.1)


def _stop_plain(procs: list[subprocess.Popen[bytes]], members: list[dict[str, str]]) -> None:
    import httpx

    leader = ""
    for m in members:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            leader = str(httpx.post(f"http://{m['client']}/v3/maintenance/status", json={}, timeout=0.5)
                         .json().get("leader") or "")
            if leader:
                break
    last: list[subprocess.Popen[bytes]] = []
    for m, p in zip(members, procs, strict=False):
        with contextlib.suppress(httpx.HTTPError, ValueError):
            own = httpx.post(f"http://{m['client']}/v3/maintenance/status", json={}, timeout=0.5).json()
            if leader and str(own.get("header", {}).get("member_id")) == leader:
                last.append(p)
    for group in ([p for p in procs if p not in last], last):
        for p in group:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in group:
            try:
                p.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
