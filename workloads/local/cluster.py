"""The local target: real server processes (``kvcheck.reference.server``) on 127.0.0.1.

The cluster is described by the server helper's ``ClusterInfo`` (cluster.json in a temporary
directory, so ``kvcheck ctl --data-dir`` works on it while a run is going). Each member is
advertised to the others at its FaultProxy port while it listens on a private peer port, so
every peer connection passes through the proxy (``proxy.py``): partitions and packet faults
act on the links, kill -9 and SIGSTOP/SIGCONT act on the processes (the server helper's
cluster functions, run in a worker thread since they poll /proc). Clients are the reference
store's TCP ``Client`` (leader discovery, failover, indeterminate writes) behind the
workload's ``KVRegisterClient``. Clock and disk faults cannot be injected into real
processes here: ``RunConfig.validate`` rejects them for this target (exit 64).

Every member, started, restarted or added, runs with the run's recorded node values
(``RunConfig.node``, written to config.json) as server flags (``server.node_flags``), so a
local run's timing, snapshot and quota settings are the ones its config.json shows. A
member's ports (private peer, client, metrics) are held by the run's ``cluster.PortHold``
from the moment they are chosen and handed to the member process as it starts (it listens
on those very sockets); after a kill -9 they are held again until the restart hands them
over anew, so no other socket can take one meanwhile. Each proxy listens on port 0 and
reports the port it got, which becomes the member's advertised peer address. A member that
exits on its own (e.g. it could not bind its port) fails the start at once with its exit
report (``MemberFailed``); one that exits later is recorded in cluster-events.log.

What the etcd target does alike (the start-and-stop bracket, health, link faults, Ctrl-C) is
``workloads.realcluster.ProcessCluster`` and ``execute_real``, shared by both targets.

Runs on real time: they are not deterministic and ``kvcheck replay`` refuses them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from kvcheck.reference import cluster as rc
from kvcheck.reference.client import Client, ClientConfig, ClientError
from kvcheck.reference.wire import ErrorCode
from kvcheck.workloads.client import home_member
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.hashcheck import HashKVError
from kvcheck.workloads.kvclient import KVRegisterClient
from kvcheck.workloads.local.proxy import FaultProxy, open_listener
from kvcheck.workloads.realcluster import ProcessCluster, execute_real

if TYPE_CHECKING:
    from kvcheck.workloads.execution import Execution, Progress

LOCAL_FAULTS = ("partition", "kill", "pause", "packet", "member")


@dataclasses.dataclass
class LocalNode:
    info: rc.NodeInfo
    listen_peer: str  # the private port the process listens on; info.peer is the proxy
    up: bool = False  # launched and not killed or removed by us: it should be running


class LocalCluster(ProcessCluster):
    """Real processes plus proxies; create inside trio.run, ``await start(nursery)`` (or use
    ``LocalCluster.running``, the shared ``ProcessCluster`` bracket)."""

    FAULTS = LOCAL_FAULTS

    def __init__(self, config: RunConfig, path: Path) -> None:
        super().__init__(config, path)
        self.proxy: FaultProxy = FaultProxy(random.Random(f"{config.seed}:proxy"))
        self.info = rc.ClusterInfo(path, options={"bugs": list(config.bugs), "node": dict(config.node)})
        self.nodes: dict[int, LocalNode] = {}
        self._status_client: Client | None = None

    @property
    def node_ids(self) -> list[int]:
        return sorted(i for i, n in self.nodes.items() if not n.info.removed)

    async def _new_node(self, node_id: int, name: str, join: bool = False) -> tuple[LocalNode, trio.SocketListener]:
        """A member's addresses: its proxy's listener (the advertised peer address) and its
        own ports, held; neither served nor launched yet."""
        listener, peer = await open_listener()
        info = rc.NodeInfo(id=node_id, name=name, peer=peer, client=self.ports.address(),
                           metrics=self.ports.address(), data_dir=str(self.path / name / "data"), join=join)
        return LocalNode(info, self.ports.address()), listener

    def _add(self, node: LocalNode) -> None:
        self.nodes[node.info.id] = node
        self.info.nodes.append(node.info)

    def _roles(self, node: LocalNode) -> dict[str, str]:
        """What the member's process listens on (its peer port is behind the proxy)."""
        return {"peer": node.listen_peer, "client": node.info.client, "metrics": node.info.metrics}

    def _launch(self, node: LocalNode) -> None:
        cmd = rc.server_command(self.info, node.info)
        cmd[cmd.index("--listen-peer") + 1] = node.listen_peer  # the proxy takes the advertised port
        rc.launch_held(self.info, node.info, self.ports, cmd, self._roles(node))
        node.up = True
        self.info.save()
        self._log(f"started {node.info.name} (pid {node.info.pid})")

    def exited(self) -> list[LocalNode]:
        """Members that should be running but whose process has stopped on its own."""
        return [n for n in self.nodes.values()
                if n.up and not n.info.removed and rc.process_state(n.info) == "stopped"]

    def _note_exits(self) -> None:
        for n in self.exited():
            n.up = False
            report = rc.exit_report(n.info)
            self.unexpected_exits.append(report)
            self._log(f"unexpected exit: {report}")

    async def wait_started(self, timeout: float) -> None:
        """Wait for the new cluster's leader; fail at once if a member process exits."""
        with trio.move_on_after(timeout):
            while True:
                self._note_exits()  # also noted by every status poll
                if self.unexpected_exits:
                    raise rc.MemberFailed("the local cluster cannot start: " + "; ".join(self.unexpected_exits))
                if await self.wait_healthy(0.5):
                    return
        answered = await self._statuses()  # the run directory is removed: say what we saw here
        seen = "; ".join(f"{n.info.name}: " + (
            f"leader {answered[i].get('leader')} term {answered[i].get('term')}" if i in answered
            else f"no answer ({rc.process_state(n.info)}), {rc.log_tail(n.info, 1)}")
            for i, n in sorted(self.nodes.items()))
        raise RuntimeError(f"the local cluster in {self.path} found no leader within {timeout:.0f} s: {seen}")

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        for i in self.config.node_ids:
            node, listener = await self._new_node(i, f"node{i}")
            await self._start_proxy(node, listener)
            self._add(node)
        self.info.save()
        for node in self.nodes.values():
            self._launch(node)
        self._status_client = self._client(timeout=1.0)

    async def _start_proxy(self, node: LocalNode, listener: trio.SocketListener) -> None:
        assert self._nursery is not None
        await self._nursery.start(self.proxy.serve, node.info.id, listener, node.listen_peer)

    def _client(self, timeout: float, home: int | None = None) -> Client:
        """A client of the running members; ``home``: the member its reads go to first."""
        assert self._nursery is not None
        endpoints = [self.nodes[i].info.client for i in self.node_ids]
        home_endpoint = self.nodes[home].info.client if home is not None else None
        return Client(ClientConfig(endpoints=endpoints, timeout=timeout, home=home_endpoint), self._nursery)

    async def shutdown(self) -> None:
        self._note_exits()
        for n in self.nodes.values():
            n.up = False
        await trio.to_thread.run_sync(rc.stop_cluster, self.info, 2.0)
        self.ports.close()

    # -- health -------------------------------------------------------------------------

    async def _statuses(self) -> dict[int, dict[str, Any]]:
        assert self._status_client is not None
        self._note_exits()
        out: dict[int, dict[str, Any]] = {}
        for i in self.node_ids:
            node = self.nodes[i]
            if rc.process_state(node.info) != "running":
                continue
            try:
                out[i] = await self._status_client.status(node.info.client, timeout=0.5)
            except ClientError:
                continue
        return out

    async def leader(self) -> int | None:
        statuses = await self._statuses()
        leaders = [s["leader"] for s in statuses.values() if s.get("role") == "leader"]
        if not leaders:
            return None
        best = max((statuses[i]["term"], i) for i in statuses if statuses[i].get("role") == "leader")
        return best[1]

    # -- the periodic hash check (workloads.hashcheck), through each member's endpoint ---

    async def hash_revision(self) -> int | None:
        statuses = await self._statuses()
        leaders = [(s["term"], s["revision"]) for s in statuses.values() if s.get("role") == "leader"]
        return int(max(leaders)[1]) if leaders else None

    async def member_hash_kv(self, member: int, revision: int) -> dict[str, int] | None:
        assert self._status_client is not None
        self._note_exits()
        node = self.nodes.get(member)
        if node is None or rc.process_state(node.info) != "running":
            return None
        try:
            body = await self._status_client.hash_kv(node.info.client, revision)
        except ClientError as exc:
            raise HashKVError(exc.code.value) from None
        # the wire leaves out fields at their zero value, as protobuf does
        return {"revision": int(body.get("hash_revision", 0)), "compact_revision": int(body.get("compact_revision", 0)),
                "hash": int(body.get("hash", 0))}

    def _progress(self, status: dict[str, Any]) -> tuple[Any, int, int]:
        return status.get("leader"), status["commit"], status["applied"]

    # -- state targets (nemesis.STATE_TARGETS), approximated from outside -----------------
    # The simulation reads its members' state directly and acts at the very instant of an
    # event. Here the nemesis sees the real processes through their status endpoint (role,
    # term, applied index) and the peer messages passing the proxy, and acts a little later:
    # after the status round trip or the poll interval, plus the time a signal takes.

    async def _statuses_at_once(self, timeout: float = 0.25) -> dict[int, dict[str, Any]]:
        """Every running member's status, asked of all members at once (one slow or paused
        member costs ``timeout``, not ``timeout`` per member); members that do not answer are
        left out."""
        assert self._status_client is not None
        client = self._status_client
        out: dict[int, dict[str, Any]] = {}

        async def one(i: int) -> None:
            with contextlib.suppress(ClientError):
                out[i] = await client.status(self.nodes[i].info.client, timeout=timeout)

        async with trio.open_nursery() as nursery:
            for i in self.node_ids:
                if rc.process_state(self.nodes[i].info) == "running":
                    nursery.start_soon(one, i)
        return out

    async def most_behind(self) -> int | None:
        """The member whose status reports the lowest applied index (lowest id on ties).
        Approximation: the statuses are asked of every member at once but answered at
        slightly different instants, and a member that does not answer within 0.25 s (a
        paused one) is not a candidate (nor is a paused member in the simulation)."""
        statuses = await self._statuses_at_once()
        up = [(int(s["applied"]), i) for i, s in statuses.items() if "applied" in s]
        if not up:
            return None
        applied, behind = min(up)
        self._log(f"most-behind: node {behind} (applied {applied}; "
                  + ", ".join(f"node {i} {a}" for a, i in sorted(up, key=lambda x: x[1]) if i != behind) + ")")
        return behind

    async def next_leader(self, timeout: float, poll: float = 0.02) -> int | None:
        """The member that wins the next election: statuses are polled (every ``poll``
        seconds) until a member reports itself leader in a term newer than the current
        leader's (the highest term in which the first poll's members knew a leader: a paused
        leader cannot say so itself, its followers can); that member (None after
        ``timeout``). Approximation: it is hit up to one poll round (a few tens of
        milliseconds) after it won, not at the instant."""
        with trio.move_on_after(timeout):
            first = await self._statuses_at_once()
            known = max((int(s.get("term", 0)) for s in first.values() if s.get("leader")), default=0)
            while True:
                await trio.sleep(poll)
                now = await self._statuses_at_once()
                leaders = [(int(s.get("term", 0)), i) for i, s in now.items() if s.get("role") == "leader"]
                term, winner = max(leaders, default=(0, 0))
                if term > known:
                    self._log(f"new-leader: node {winner} leads term {term} (a leader was known in term {known})")
                    return winner
        return None

    async def next_acker(self, timeout: float) -> int | None:
        """The next follower that acknowledges an append (a MsgAppResp that is not a reject)
        within ``timeout`` seconds, seen as the acknowledgement passes the proxy on its way
        to the leader. Exact as to which member and which moment the ack left it; the fault
        then lands after the signal's delivery, a few milliseconds later."""
        from kvcheck.reference.raft import Message, MessageType
        from kvcheck.reference.wire import unpack

        acked: list[int] = []
        event = trio.Event()

        def watch(src: int, dst: int, frame: bytes) -> None:
            if acked:
                return
            try:
                batch = unpack(frame[4:]).get("m") or []
                for raw in batch:
                    msg = Message.from_wire(raw)
                    if msg.type is MessageType.APP_RESP and not msg.reject and msg.index > 0:
                        acked.append(src)
                        event.set()
                        return
            except Exception:  # not a message batch (the hello frame): not an ack
                return

        self.proxy.observers.append(watch)
        try:
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            self.proxy.observers.remove(watch)
        if acked:
            self._log(f"acked: node {acked[0]} acknowledged an append")
        return acked[0] if acked else None

    def client(self, process: int) -> KVRegisterClient:
        return KVRegisterClient(self.kv_client(process))

    def kv_client(self, process: int) -> Client:
        home = home_member(process, self.node_ids)
        return self._client(timeout=self.config.client_timeout, home=home)

    # -- faults ---------------------------------------------------------------------------

    async def kill(self, node: int) -> None:
        n = self.nodes[node]
        n.up = False
        if rc.process_state(n.info) != "stopped":
            await trio.to_thread.run_sync(rc.kill_node, self.info, n.info)
            self._log(f"killed {n.info.name} (SIGKILL)")
        self._hold_again(n)  # until the restart: its process is gone, its ports closed

    def _hold_again(self, node: LocalNode) -> None:
        for role, address in self._roles(node).items():
            if not self.ports.hold_again(address):
                self._log(f"{node.info.name}'s {role} port {address} is taken by another socket")

    async def restart(self, node: int) -> None:
        n = self.nodes[node]
        if not n.info.removed and rc.process_state(n.info) == "stopped":
            self._hold_again(n)  # a member that exited on its own was not held again at its kill
            self._launch(n)

    async def pause(self, node: int) -> None:
        n = self.nodes[node]
        if rc.process_state(n.info) == "running":
            await trio.to_thread.run_sync(rc.pause_node, self.info, n.info)
            self._log(f"paused {n.info.name} (SIGSTOP)")

    async def resume(self, node: int) -> None:
        n = self.nodes[node]
        if rc.process_state(n.info) == "paused":
            await trio.to_thread.run_sync(rc.resume_node, self.info, n.info)
            self._log(f"resumed {n.info.name} (SIGCONT)")

    async def remove_member(self, node: int) -> bool:
        if len(self.node_ids) <= 3 or node not in self.node_ids:
            return False
        client = self._client(timeout=5.0)
        try:
            await client.member_remove(node)
        except ClientError as exc:
            self._log(f"member remove {node} failed: {exc}")
            return False
        finally:
            await client.aclose()
        n = self.nodes[node]
        n.info.removed, n.up = True, False
        self.info.save()
        await trio.to_thread.run_sync(rc.stop_cluster, rc.ClusterInfo(self.path, [n.info]), 2.0)
        self.proxy.stop(node)
        self._log(f"removed {n.info.name}")
        return True

    async def add_member(self, node: int, learner: bool = False) -> int | None:
        name = f"node{max(self.nodes) + 1}"
        new, listener = await self._new_node(0, name, join=True)  # its id comes from member add
        client = self._client(timeout=5.0)
        try:
            body = await client.member_add(name, new.info.peer, new.info.client, learner=learner)
        except ClientError as exc:
            self._log(f"member add failed: {exc}")
            await listener.aclose()
            self.ports.release(new.listen_peer, new.info.client, new.info.metrics)
            return None
        finally:
            await client.aclose()
        member_id = int(body["member"]["id"])
        new.info.id = member_id
        await self._start_proxy(new, listener)
        self._add(new)
        self.info.save()
        self._launch(new)
        return member_id

    async def promote_member(self, member: int, timeout: float) -> dict[str, Any]:
        """``ctl member promote``, retried every 0.1 s while the leader refuses (learner not
        in sync, no leader) for at most ``timeout`` seconds (as SimCluster.promote_member)."""
        attempts = not_ready = 0
        last = ""
        with trio.move_on_after(timeout):
            while True:
                attempts += 1
                client = self._client(timeout=2.0)
                try:
                    await client.member_promote(member)
                    return {"promoted": True, "attempts": attempts, "not_ready": not_ready}
                except ClientError as exc:
                    last = exc.code.value
                    if exc.code is ErrorCode.NOT_LEARNER:
                        return {"promoted": True, "attempts": attempts, "not_ready": not_ready}
                    if exc.code is ErrorCode.MEMBER_NOT_FOUND:
                        break
                    not_ready += exc.code is ErrorCode.LEARNER_NOT_READY
                finally:
                    await client.aclose()
                await trio.sleep(0.1)
        self._log(f"member promote of {member} gave up: {last or 'no answer'}")
        return {"promoted": False, "attempts": attempts, "not_ready": not_ready, "error": last or "no answer"}

    async def final_info(self) -> dict[str, Any]:
        """Each member's process state and status, the bug switches' firing counts, the
        proxy's counters."""
        info: dict[str, Any] = {}
        statuses = await self._statuses()
        info["nodes"] = {str(i): {"state": rc.process_state(self.nodes[i].info),
                                  **({k: s[k] for k in ("role", "term", "commit", "applied") if k in s}
                                     if (s := statuses.get(i)) else {})}
                         for i in self.node_ids}
        by_member = {str(i): s.get("bugs_fired") or {} for i, s in sorted(statuses.items())}
        # (a member's counts restart with its process: a killed member's earlier firings are lost)
        bugs = self.config.bugs
        info["bugs"] = {"enabled": list(bugs),
                        "fired": {b: sum(m.get(b, 0) for m in by_member.values()) for b in bugs},
                        "by_member": {i: m for i, m in by_member.items() if m}}
        info["proxy"] = dataclasses.asdict(self.proxy.stats)
        info["cluster_dir"] = str(self.path)
        return info

    def logs(self) -> dict[str, str]:
        out = {"cluster-events.log": "\n".join(self.events) + "\n"}
        for n in self.nodes.values():
            path = rc.log_path(n.info)
            if path.is_file():
                out[f"{n.info.name}.log"] = path.read_text(errors="replace")
        return out


def execute_local(config: RunConfig, progress: Progress) -> Execution:
    """Run ``config`` against real processes on 127.0.0.1 (real time). Ctrl-C stops the run
    where it is (``realcluster.execute_real``): the members are asked for their state and
    stopped, and what was recorded is returned with ``info["stopped"]`` saying why, as the
    simulation does."""
    path = Path(tempfile.mkdtemp(prefix="kvcheck-local-"))
    try:
        return execute_real(LocalCluster, config, progress, path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
