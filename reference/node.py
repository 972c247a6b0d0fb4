"""The node driver: the one loop that turns the Raft core and the KV state machine into a member.

Why: the TCP server and the deterministic simulation must run the very same member logic, so
everything between "a request arrived" and "its answer is known" lives here, over three small
protocols the two shells implement: ``Transport`` (send Raft messages; the shell delivers
incoming ones with ``Node.receive``), ``Disk`` (durable hard state, log and snapshots) and
``Clock`` (``now`` and ``sleep``). This module imports trio but no socket, os or time, draws
randomness only from the ``random.Random`` it is given, and iterates only ordered containers.

How: ``Node.run`` loads the Disk, builds the RawNode and runs three tasks: the ticker (one
Raft tick per ``tick_interval`` of Clock time; request deadlines expire here), the Ready loop
and the lessor loop. The Ready loop follows the contract on ``raft.Ready``: persist the
snapshot, entries and hard state (fsynced when ``must_sync``), then send the messages, then
apply the snapshot and committed entries to the KV state machine, resolve waiters, and
``advance``. Proposals made while a Ready is being persisted accumulate in the core and go
out together in the next Ready: one fsync per batch (group commit). Nothing is acknowledged
before it is fsynced on a majority: the leader counts its own entries only after ``advance``
and followers ack only after their fsync (the messages of a Ready are sent after its persist).
The Ready loop is a task woken when an input leaves work; a shell whose Disk never waits (the
simulation) may instead pass ``ready_soon`` and have each pass run to completion outside any
task, saving a scheduler pass per Ready: the same code, another driver.

Client-facing logic is here too, as async methods the server and the simulation's in-process
client both call: ``propose`` (a write through the log, answered when applied; proposals are
matched to applied entries by (index, term)), ``range`` (linearizable by ReadIndex, batched:
every read that arrives while a ReadIndex round is being set up shares it; serializable reads
are local), leader-side lease keepalive/time-to-live, lease expiry proposed by the leader,
watches, membership changes, leader transfer, status, hash and snapshots. Errors leave as
``WireError`` with a code (``not_leader`` with the leader's id and client endpoint as a hint).
The log is snapshotted and compacted every ``snapshot_count`` applied entries.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import logging
import random
import struct
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import msgpack
import trio

from kvcheck.reference import raft
from kvcheck.reference.bugs import NO_BUGS, Bugs
from kvcheck.reference.kv import KVStateMachine, encode_entry
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.wire import ErrorCode, WireError

log = logging.getLogger("kvcheck.node")

# A member that applied its own removal stops this many seconds later (the server; the
# simulation's members too): the leader meanwhile sees the removal's commit acknowledged.
REMOVED_GRACE = 1.0

R = TypeVar("R")

# --------------------------------------------------------------------------------------------
# The three protocols the shells implement
# --------------------------------------------------------------------------------------------


class Clock(Protocol):
    """This member's clock: seconds (float), monotonic. The simulation skews rate and offset."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class TrioClock:
    """The clock of a real process: trio's clock (monotonic time in a real run)."""

    def now(self) -> float:
        return trio.current_time()

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


@dataclass(frozen=True)
class Member:
    """One cluster member as the membership table knows it."""

    id: int
    name: str
    peer: str = ""  # HOST:PORT of its peer listener ("" in the simulation)
    client: str = ""  # HOST:PORT of its client listener
    learner: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "peer": self.peer, "client": self.client,
                "learner": self.learner}

    @classmethod
    def from_wire(cls, d: Any) -> Member:
        if not isinstance(d, dict) or not isinstance(d.get("id"), int):
            raise ValueError(f"member must be a map with an integer id, got {d!r:.120}")
        return cls(int(d["id"]), str(d.get("name", "")), str(d.get("peer", "")),
                   str(d.get("client", "")), bool(d.get("learner", False)))


class Transport(Protocol):
    """Carries Raft messages between members. ``send`` never blocks and may drop messages
    (Raft retries); the shell calls ``Node.receive`` for each message that arrives."""

    def send(self, messages: Sequence[raft.Message]) -> None: ...

    def update_members(self, members: Mapping[int, Member]) -> None: ...


@dataclass
class DiskState:
    """What a Disk recovered: the newest snapshot, the hard state and the entries after it."""

    snapshot: raft.Snapshot | None = None
    hard_state: raft.HardState | None = None
    entries: list[raft.Entry] = field(default_factory=list)


class Disk(Protocol):
    """Durable Raft state. ``save`` with ``sync`` returns only once everything saved so far is
    durable; ``save_snapshot`` returns once the snapshot is durable (log before it may go)."""

    async def load(self) -> DiskState: ...

    async def save(
        self, hard_state: raft.HardState | None, entries: Sequence[raft.Entry], sync: bool
    ) -> None: ...

    async def save_snapshot(self, snapshot: raft.Snapshot) -> None: ...


class MemoryDisk:
    """A Disk in memory that survives Node restarts within one process (tests, the
    simulation's simplest disk). Everything saved is durable at once."""

    def __init__(self) -> None:
        self.snapshot: raft.Snapshot | None = None
        self.hard_state: raft.HardState | None = None
        self.entries: list[raft.Entry] = []
        self.syncs = 0

    async def load(self) -> DiskState:
        return DiskState(self.snapshot, self.hard_state, list(self.entries))

    async def save(
        self, hard_state: raft.HardState | None, entries: Sequence[raft.Entry], sync: bool
    ) -> None:
        if entries:
            first = entries[0].index
            self.entries = [e for e in self.entries if e.index < first] + list(entries)
        if hard_state is not None:
            self.hard_state = hard_state
        if sync:
            self.syncs += 1
        await trio.lowlevel.checkpoint()

    async def save_snapshot(self, snapshot: raft.Snapshot) -> None:
        if self.snapshot is None or snapshot.meta.index > self.snapshot.meta.index:
            self.snapshot = snapshot
            self.entries = [e for e in self.entries if e.index > snapshot.meta.index]
        await trio.lowlevel.checkpoint()


# --------------------------------------------------------------------------------------------
# Configuration and metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeConfig:
    id: int
    name: str = ""
    tick_interval: float = 0.1  # seconds of Clock time per Raft tick
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    request_timeout: float = 5.0  # a proposal not applied within this is answered "timeout"
    snapshot_count: int = 10_000  # applied entries between snapshots
    snapshot_catchup_entries: int = 5_000  # entries kept in the log after a snapshot
    quota_bytes: int = 2 * 1024**3
    max_request_bytes: int = 1536 * 1024
    lease_check_interval: float = 0.5
    progress_notify_interval: float = 10.0
    watch_buffer: int = 1024  # responses buffered per watch before it is closed as too slow
    cluster_id: int = 0
    # etcd raft's MaxSizePerMsg and MaxInflightMsgs: bytes of entries per MsgApp (at least one
    # entry goes out) and MsgApp in flight to a replicating follower before an ack.
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256

    @property
    def min_lease_ttl(self) -> int:
        # etcd: ceil(3 * election_ticks / 2 * heartbeat interval), at least 1 second
        seconds = 3 * self.election_tick / 2 * self.tick_interval
        return max(1, -int(-seconds // 1))


_LEADER_EARLY = (raft.MessageType.APP, raft.MessageType.HEARTBEAT, raft.MessageType.SNAP)

APPLY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class NodeMetrics:
    """Plain counters the server exports to Prometheus (the simulation may read them too)."""

    proposals_committed: int = 0
    proposals_failed: int = 0
    leader_changes: int = 0
    apply_seconds_sum: float = 0.0
    apply_count: int = 0
    apply_buckets: list[int] = field(default_factory=lambda: [0] * len(APPLY_BUCKETS))
    snapshots: int = 0
    fsyncs: int = 0

    def observe_apply(self, seconds: float) -> None:
        self.apply_seconds_sum += seconds
        self.apply_count += 1
        for i, bound in enumerate(APPLY_BUCKETS):
            if seconds <= bound:
                self.apply_buckets[i] += 1


# --------------------------------------------------------------------------------------------
# Waiters
# --------------------------------------------------------------------------------------------


class _Waiter:
    """One pending answer (a proposal, a read index, a conf change) with a Clock deadline."""

    __slots__ = ("deadline", "done", "error", "event", "result")

    def __init__(self, deadline: float) -> None:
        self.event = trio.Event()
        self.deadline = deadline
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False

    def resolve(self, result: Any) -> None:
        if not self.done:
            self.done = True
            self.result = result
            self.event.set()

    def fail(self, error: BaseException) -> None:
        if not self.done:
            self.done = True
            self.error = error
            self.event.set()

    async def wait(self) -> Any:
        await self.event.wait()
        if self.error is not None:
            raise self.error
        return self.result


def kv_error(err: kvr.KVError) -> WireError:
    """Map a typed KV error onto a wire error: the same code, except that a non-primary
    lessor is ``not_leader``."""
    if isinstance(err, kvr.ErrNotPrimary):
        return WireError(ErrorCode.NOT_LEADER, err.message)
    try:
        code = ErrorCode(err.code)
    except ValueError:
        code = ErrorCode.INTERNAL
    return WireError(code, err.message)


class WatchStream:
    """One watch on this member: iterate responses; ``cancel`` (or leaving the context) ends it.
    The iteration ends without a canceled response when the member drops the watch (restored
    from a snapshot, stopped, too slow): the client then resumes elsewhere."""

    def __init__(self, node: Node, watch_id: int, recv: trio.MemoryReceiveChannel[kvr.WatchResponse]) -> None:
        self.node = node
        self.watch_id = watch_id
        self._recv = recv

    def __aiter__(self) -> AsyncIterator[kvr.WatchResponse]:
        return self._recv.__aiter__()

    async def receive(self) -> kvr.WatchResponse:
        return await self._recv.receive()

    def request_progress(self) -> None:
        self.node._send_progress(self.watch_id)

    def cancel(self) -> kvr.WatchResponse | None:
        return self.node._cancel_watch(self.watch_id)


# --------------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------------


class Node:
    """One member. Create it, then ``await node.run()`` (cancel the task to stop it: a crash,
    as far as the node is concerned; what survives is whatever its Disk made durable)."""

    def __init__(
        self,
        config: NodeConfig,
        transport: Transport,
        disk: Disk,
        clock: Clock,
        rng: random.Random,
        *,
        initial_members: Sequence[Member] = (),
        join: bool = False,
        bugs: Bugs = NO_BUGS,
        on_finding: Callable[[str], None] | None = None,
        ready_soon: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.config = config
        # How the Ready loop runs: a task woken by an Event (a real member), or, when the
        # shell gives ``ready_soon(fn)`` (the simulation, whose Disk never waits), each pass
        # run to completion by ``fn`` whenever the shell calls it: no scheduler pass per Ready.
        self._ready_soon = ready_soon
        self._drain_scheduled = False
        self.id = config.id
        self.transport = transport
        self.disk = disk
        self.clock = clock
        self.rng = rng
        self.bugs = bugs
        self.join = join
        self.initial_members = list(initial_members)
        self.findings: list[str] = []
        self._on_finding = on_finding
        self.metrics = NodeMetrics()
        self.kv = self._new_kv()
        self.members: dict[int, Member] = {m.id: m for m in self.initial_members}
        self.removed_ids: set[int] = set()
        self.storage = raft.MemoryStorage()
        self.raw: raft.RawNode | None = None
        self.leader = raft.NONE
        self.role = raft.Role.FOLLOWER
        self.term = 0
        self.applied = 0
        self.commit = 0
        self.conf_state = raft.ConfState()
        self.snapshot_index = 0
        self.running = False
        self.ready_event = trio.Event()  # set once the node has loaded and is serving
        self.removed = trio.Event()  # set when this member applies its own removal (it stops REMOVED_GRACE later)
        self._wake = trio.Event()
        self._leader_waiters: list[tuple[int, _Waiter]] = []
        self._counter = itertools.count(1)
        self._deadlines: list[tuple[float, int, _Waiter]] = []
        self._proposals: dict[int, tuple[int, _Waiter]] = {}  # index -> (term, waiter)
        self._conf_waiters: dict[int, _Waiter] = {}  # token -> waiter
        self._read_batch: list[_Waiter] = []
        # ReadIndex contexts must be unique cluster-wide: the leader queues its own reads beside
        # the ones followers forward, and a restarted member's counter starts again. So a
        # context is (member id, clock reading when this incarnation started, counter); set in
        # run(). Not drawn from self.rng, which would shift the seeded Raft timeouts.
        self._read_ctx_prefix = b""
        self._reads_inflight: dict[bytes, list[_Waiter]] = {}
        self._applied_waiters: list[tuple[int, int, _Waiter]] = []
        self._watches: dict[int, trio.MemorySendChannel[kvr.WatchResponse]] = {}
        self._progress_watches: set[int] = set()
        self._member_lock = trio.Lock()
        self._proposed_ids: set[int] = set()  # ids this member proposed to add (never reused)
        self._durable_term_vote = (0, 0)  # (term, vote) of the last hard state persisted
        self._in_ready = False  # a Ready is outstanding: inputs to the core wait in _deferred
        self._deferred: list[Callable[[], None]] = []
        self._snapshot_now = False  # a member was added: snapshot after this Ready

    # -- lifecycle ---------------------------------------------------------------------------

    def _new_kv(self) -> KVStateMachine:
        return KVStateMachine(**self._kv_options())

    def _kv_options(self) -> dict[str, Any]:
        return {"min_lease_ttl": self.config.min_lease_ttl, "quota_bytes": self.config.quota_bytes,
                "max_request_bytes": self.config.max_request_bytes, "bugs": self.bugs}

    def _event(self, text: str, *args: Any) -> None:
        """A lifecycle event worth a line in this member's log (elections, leader changes,
        snapshots, membership): INFO on ``kvcheck.node`` with the member's id as
        ``record.member``, so a shell can route it to that member's log file."""
        log.info("node %d: " + text, self.id, *args, extra={"member": self.id})

    def _finding(self, violation: raft.InvariantViolation) -> None:
        text = f"invariant violation on node {self.id}: {violation}"
        log.error("%s", text, extra={"member": self.id})
        self.findings.append(text)
        if self._on_finding is not None:
            self._on_finding(text)

    async def _load(self) -> None:
        state = await self.disk.load()
        applied = 0
        if state.snapshot is not None and not state.snapshot.is_empty():
            self.storage.apply_snapshot(state.snapshot)
            self._restore_state(state.snapshot)
            applied = state.snapshot.meta.index
        if state.hard_state is not None:
            self.storage.set_hard_state(state.hard_state)
            self._durable_term_vote = (state.hard_state.term, state.hard_state.vote)
            self.term, self.commit = state.hard_state.term, state.hard_state.commit
        if state.entries:
            self.storage.append(state.entries)
        hs = state.hard_state
        if hs is not None and self.bugs.fire("applied_index_not_atomic", hs.commit > applied):
            applied = hs.commit  # BUG applied_index_not_atomic: restart trusts an applied index its state lacks
        fresh = state.snapshot is None and state.hard_state is None and not state.entries
        cfg = raft.Config(
            id=self.id, election_tick=self.config.election_tick,
            heartbeat_tick=self.config.heartbeat_tick, pre_vote=self.config.pre_vote,
            check_quorum=self.config.check_quorum, applied=applied, rng=self.rng,
            max_size_per_msg=self.config.max_size_per_msg,
            max_inflight_msgs=self.config.max_inflight_msgs,
            bugs=self.bugs, on_invariant_violation=self._finding,
        )
        self.raw = raft.RawNode(cfg, self.storage)
        self.applied = applied
        self.snapshot_index = applied
        if fresh and not self.join:
            if not self.initial_members:
                raise ValueError(f"node {self.id}: empty disk and no initial members to bootstrap")
            self.raw.bootstrap(sorted(m.id for m in self.initial_members))
            self._event("bootstrapped a new cluster of members %s",
                        sorted(m.id for m in self.initial_members))
        elif fresh:
            self._event("empty disk: joining an existing cluster")
        else:
            self._event("recovered from disk: term %d, vote %d, commit %d, snapshot index %d, "
                        "log up to index %d", self.term, self._durable_term_vote[1], self.commit,
                        applied, self.storage.last_index())
        self.transport.update_members(self.members)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Load from the Disk and serve until cancelled."""
        await self._load()
        self._read_ctx_prefix = struct.pack(">Qd", self.id, self.clock.now())
        self.running = True
        try:
            async with trio.open_nursery() as nursery:
                if self._ready_soon is None:
                    nursery.start_soon(self._ready_loop)
                elif self._has_work():
                    self._kick()
                nursery.start_soon(self._ticker)
                nursery.start_soon(self._lessor_loop)
                nursery.start_soon(self._progress_loop)
                self.ready_event.set()
                task_status.started()
        finally:
            self.running = False
            self._fail_all(WireError(ErrorCode.UNAVAILABLE, f"member {self.id} stopped"))

    def _fail_all(self, err: WireError) -> None:
        for _, _, waiter in self._deadlines:
            waiter.fail(err)
        self._deadlines.clear()
        self._proposals.clear()
        self._conf_waiters.clear()
        self._read_batch.clear()
        self._reads_inflight.clear()
        self._applied_waiters.clear()
        self._leader_waiters.clear()
        for send in self._watches.values():
            send.close()
        self._watches.clear()
        self._progress_watches.clear()

    def _kick(self) -> None:
        if self._ready_soon is None:
            self._wake.set()
        elif not self._drain_scheduled:
            self._drain_scheduled = True
            self._ready_soon(self._drain_inline)

    def _drain_inline(self) -> None:
        """One pass of the Ready loop, run to completion outside any task (``ready_soon``)."""
        self._drain_scheduled = False
        if not self.running or self.raw is None:
            return
        coro = self._drain()
        try:
            coro.send(None)
        except StopIteration:
            return
        coro.close()
        raise RuntimeError(f"member {self.id}: the Ready loop waited on its Disk, which an "
                           "inline driver (ready_soon) cannot do")

    def _call(self, fn: Callable[[], None]) -> None:
        """Run an input to the Raft core now, or right after the outstanding Ready is advanced
        (inputs are never interleaved with a Ready being handled). The Ready loop is woken
        only when there is something for it to do: many inputs (a follower's tick, a late
        append response) leave nothing."""
        if self._in_ready:
            self._deferred.append(fn)
            self._kick()
            return
        fn()
        if self._has_work():
            self._kick()

    def _has_work(self) -> bool:
        """Whether the Ready loop has something to do now."""
        raw = self.raw
        return bool(self._read_batch or self._deferred) or (raw is not None and raw.has_ready())

    def _run_deferred(self) -> None:
        while self._deferred:
            batch, self._deferred = self._deferred, []
            for fn in batch:
                fn()

    def _rawnode(self) -> raft.RawNode:
        if self.raw is None or not self.running:
            raise WireError(ErrorCode.UNAVAILABLE, f"member {self.id} is not running")
        return self.raw

    # -- incoming messages ---------------------------------------------------------------------

    def receive(self, msg: raft.Message) -> None:
        """A Raft message from a peer (the Transport calls this)."""
        if self.raw is None or not self.running:
            return
        self._call(functools.partial(self._step, self.raw, msg))

    def _step(self, raw: raft.RawNode, msg: raft.Message) -> None:
        try:
            raw.step(msg)
        except raft.StepError as exc:
            log.warning("node %d: dropped message %s from %d: %s", self.id, msg.type.name, msg.from_, exc,
                        extra={"member": self.id})
        except Exception:  # a message from the network must never stop the member
            log.exception("node %d: stepping %s from %d failed", self.id, msg.type.name, msg.from_,
                          extra={"member": self.id})

    def report_unreachable(self, node_id: int) -> None:
        if self.raw is not None and self.running:
            self._call(lambda: self.raw.report_unreachable(node_id) if self.raw else None)

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        if self.raw is not None and self.running:
            self._call(lambda: self.raw.report_snapshot(node_id, ok) if self.raw else None)

    @property
    def db_size(self) -> int:
        """Bytes the state machine's quota counts (stored versions and leases)."""
        return int(self.kv.db_size)

    # -- the three loops -------------------------------------------------------------------------

    async def _ticker(self) -> None:
        assert self.raw is not None
        while True:
            await self.clock.sleep(self.config.tick_interval)
            self._call(self.raw.tick)
            self._expire_deadlines()

    def _expire_deadlines(self) -> None:
        now = self.clock.now()
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, waiter = heapq.heappop(self._deadlines)
            if not waiter.done:
                self.metrics.proposals_failed += 1
                waiter.fail(WireError(ErrorCode.TIMEOUT, "request timed out"))

    def _waiter(self, timeout: float | None = None) -> _Waiter:
        deadline = self.clock.now() + (self.config.request_timeout if timeout is None else timeout)
        waiter = _Waiter(deadline)
        heapq.heappush(self._deadlines, (deadline, next(self._counter), waiter))
        return waiter

    async def _ready_loop(self) -> None:
        while True:
            if self._wake.is_set() and not self._has_work():
                self._wake = trio.Event()  # kicked during the last Ready for work done since
            await self._wake.wait()
            self._wake = trio.Event()
            await self._drain()

    async def _drain(self) -> None:
        """Handle every Ready the core has now (the Ready contract on ``raft.Ready``)."""
        raw = self.raw
        assert raw is not None
        self._issue_reads()
        self._run_deferred()
        while raw.has_ready():
            rd = raw.ready()
            self._in_ready = True
            try:
                await self._handle_ready(raw, rd)
                raw.advance(rd)
            finally:
                self._in_ready = False
            self._run_deferred()
            self._issue_reads()
            if self._snapshot_now or self.applied - self.snapshot_index >= self.config.snapshot_count:
                await self._maybe_snapshot()

    async def _handle_ready(self, raw: raft.RawNode, rd: raft.Ready) -> None:
        self._observe_soft_state(rd.soft_state, rd.hard_state)
        # 0. A leader may replicate before its own fsync (etcd's Raft thesis 10.2.1): its own
        # entries count towards commit only once advance() reports them persisted, and its
        # term and vote are already durable. Everything else waits for the persist step.
        messages = rd.messages
        if messages and rd.soft_state.role is raft.Role.LEADER and (
            rd.hard_state is None
            or (rd.hard_state.term, rd.hard_state.vote) == self._durable_term_vote
        ):
            early = [m for m in messages if m.type in _LEADER_EARLY]
            if early:
                self.transport.send(early)
                messages = [m for m in messages if m.type not in _LEADER_EARLY]
        snap = rd.snapshot if rd.snapshot is not None and not rd.snapshot.is_empty() else None
        # Committed entries that this member already holds durably (from earlier Readies) are
        # applied before this Ready's fsync, so their answers do not wait for it: committed
        # means durable on a majority already, and nothing they need is in this Ready.
        apply_first = (
            snap is None and bool(rd.committed_entries)
            and rd.committed_entries[-1].index <= self.storage.last_index()
        )
        if apply_first:
            self._apply_committed(rd.committed_entries)
        # 1. persist
        if snap is not None:
            await self.disk.save_snapshot(snap)
        sync = rd.must_sync
        hs = rd.hard_state
        if self.bugs.fire("vote_not_durable", sync and not rd.entries and hs is not None and (hs.term, hs.vote) != self._durable_term_vote):
            sync = False  # BUG vote_not_durable: the new term and vote go out before an fsync
        if self.bugs.fire("ack_before_durable", sync and bool(rd.entries)):
            sync = False  # BUG ack_before_durable: appended entries are acknowledged (and counted) unsynced
        if rd.entries or rd.hard_state is not None:
            await self.disk.save(rd.hard_state, rd.entries, sync)
            if sync:
                self.metrics.fsyncs += 1
        if snap is not None:
            self.storage.apply_snapshot(snap)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
            self._durable_term_vote = (rd.hard_state.term, rd.hard_state.vote)
            self.term = rd.hard_state.term
            self.commit = rd.hard_state.commit
        if rd.entries:
            self.storage.append(rd.entries)
        # 2. send
        if messages:
            self.transport.send(messages)
        # 3. apply
        if snap is not None:
            self._install_snapshot(snap)
        if rd.committed_entries and not apply_first:
            self._apply_committed(rd.committed_entries)
        for rs in rd.read_states:
            batch = self._reads_inflight.pop(rs.request_ctx, None)
            for waiter in batch or ():
                waiter.resolve(rs.index)
        self._wake_applied()
        self._deliver_watch_responses()

    def _apply_committed(self, entries: Sequence[raft.Entry]) -> None:
        started = self.clock.now()
        self._apply_entries(entries)
        self.metrics.observe_apply(self.clock.now() - started)
        self._wake_applied()
        self._deliver_watch_responses()

    def _observe_soft_state(self, ss: raft.SoftState, hs: raft.HardState | None) -> None:
        term = hs.term if hs is not None else self.term  # this Ready's, before it is persisted
        if ss.role is not self.role:
            self._event("became %s at term %d", ss.role.name.lower().replace("_", "-"), term)
        if ss.leader != self.leader:
            if ss.leader != raft.NONE:
                self.metrics.leader_changes += 1
                self._event("leader is node %d (term %d)", ss.leader, term)
            else:
                self._event("lost the leader (term %d)", term)
            self.leader = ss.leader
            for target, waiter in self._leader_waiters:
                if target == ss.leader:
                    waiter.resolve(target)
            self._leader_waiters = [(t, w) for t, w in self._leader_waiters if not w.done]
        was_leader = self.role is raft.Role.LEADER
        self.role = ss.role
        is_leader = ss.role is raft.Role.LEADER
        if is_leader and not was_leader:
            self.kv.promote(self.clock.now())
        elif was_leader and not is_leader:
            self.kv.demote()

    def _apply_entries(self, entries: Sequence[raft.Entry]) -> None:
        raw = self.raw
        assert raw is not None
        now = self.clock.now() if self.role is raft.Role.LEADER else None
        for entry in entries:
            if entry.index <= self.applied:
                continue
            outcome: Any = None
            if entry.type is raft.EntryType.CONF_CHANGE:
                outcome = self._apply_conf_change(raw, entry)
            else:
                try:
                    outcome = self.kv.apply(entry.index, entry.data, now)
                except kvr.KVError as exc:
                    outcome = kv_error(exc)
            self.applied = entry.index
            pending = self._proposals.pop(entry.index, None)
            if pending is not None:
                term, waiter = pending
                if term == entry.term:
                    self.metrics.proposals_committed += 1
                    if isinstance(outcome, WireError):
                        waiter.fail(outcome)
                    else:
                        waiter.resolve(outcome)
                else:
                    self.metrics.proposals_failed += 1
                    waiter.fail(self.not_leader("proposal lost in a leader change"))

    def _apply_conf_change(self, raw: raft.RawNode, entry: raft.Entry) -> Any:
        cc = raft.ConfChange.decode(entry.data)
        self.conf_state = raw.apply_conf_change(cc)
        info: dict[str, Any] = {}
        if cc.context:
            with contextlib.suppress(Exception):
                decoded = msgpack.unpackb(cc.context, raw=False)
                if isinstance(decoded, dict):
                    info = decoded
        member: Member | None = None
        if "member" in info:
            with contextlib.suppress(ValueError):
                member = Member.from_wire(info["member"])
        if cc.type is raft.ConfChangeType.REMOVE_NODE:
            self.members.pop(cc.node_id, None)
            self.removed_ids.add(cc.node_id)
            if cc.node_id == self.id:
                self.removed.set()
        else:
            if self.snapshot_index > 0:
                # A member that joins after our latest snapshot could never restore it (it is not
                # in that snapshot's configuration) once the log before it is compacted: take a
                # snapshot that includes it, at the end of this Ready.
                self._snapshot_now = True
            learner = cc.type is raft.ConfChangeType.ADD_LEARNER
            old = self.members.get(cc.node_id)
            base = member or old or Member(cc.node_id, f"node{cc.node_id}")
            self.members[cc.node_id] = Member(base.id, base.name, base.peer, base.client, learner)
        self.transport.update_members(self.members)
        self._event("applied conf change at index %d: %s %d; members now %s", entry.index,
                    cc.type.name.lower().replace("_", " "), cc.node_id, sorted(self.members))
        token = info.get("token")
        waiter = self._conf_waiters.pop(token, None) if isinstance(token, int) else None
        result = self.members.get(cc.node_id, member or Member(cc.node_id, ""))
        if waiter is not None:
            waiter.resolve(result)
        return result

    def _wake_applied(self) -> None:
        while self._applied_waiters and self._applied_waiters[0][0] <= self.applied:
            _, _, waiter = heapq.heappop(self._applied_waiters)
            waiter.resolve(self.applied)

    async def _maybe_snapshot(self) -> None:
        if not self._snapshot_now and self.applied - self.snapshot_index < self.config.snapshot_count:
            return
        self._snapshot_now = False
        index = self.applied
        if index <= self.storage.snapshot().meta.index or index > self.storage.last_index():
            return
        snap = self.storage.create_snapshot(index, self.conf_state, self._snapshot_data())
        await self.disk.save_snapshot(snap)
        self.snapshot_index = index
        self.metrics.snapshots += 1
        compact_to = index - self.config.snapshot_catchup_entries
        if compact_to > self.storage.first_index():
            self.storage.compact(compact_to)
        self._event("snapshot at index %d; log kept from index %d", index, self.storage.first_index())

    def _snapshot_data(self) -> bytes:
        data: bytes = msgpack.packb({
            "kv": self.kv.snapshot(),
            "members": [m.to_wire() for _, m in sorted(self.members.items())],
            "removed": sorted(self.removed_ids),
            "cluster_id": self.config.cluster_id,
        }, use_bin_type=True)
        return data

    def _restore_state(self, snap: raft.Snapshot) -> None:
        doc = msgpack.unpackb(snap.data, raw=False, strict_map_key=False)
        if not isinstance(doc, dict) or "kv" not in doc:
            raise ValueError(f"snapshot at index {snap.meta.index} is not a member snapshot")
        if self.raw is None:  # starting up: a fresh state machine
            self.kv = KVStateMachine.restore(doc["kv"], **self._kv_options())
        else:  # a follower catching up: in place, so watches resync instead of ending
            self.kv.install_snapshot(doc["kv"])
        members = [Member.from_wire(m) for m in doc.get("members", [])]
        if members:
            self.members = {m.id: m for m in members}
        self.removed_ids = set(doc.get("removed", []))
        self.conf_state = snap.meta.conf_state
        if self.role is raft.Role.LEADER:
            self.kv.promote(self.clock.now())

    def _install_snapshot(self, snap: raft.Snapshot) -> None:
        """A follower got the leader's snapshot: replace the state machine wholesale."""
        self._event("installed the leader's snapshot at index %d, term %d", snap.meta.index, snap.meta.term)
        self._restore_state(snap)
        self.applied = snap.meta.index
        self.snapshot_index = snap.meta.index
        self.transport.update_members(self.members)
        for index in sorted(self._proposals):
            if index <= snap.meta.index:
                _, waiter = self._proposals.pop(index)
                waiter.fail(WireError(ErrorCode.TIMEOUT, "member restored from a snapshot; outcome unknown"))

    def _issue_reads(self) -> None:
        if not self._read_batch or self.raw is None:
            return
        batch, self._read_batch = self._read_batch, []
        ctx = self._read_ctx_prefix + next(self._counter).to_bytes(8, "big")
        try:
            self.raw.read_index(ctx)
        except raft.ProposalDropped as exc:
            err = self.not_leader(f"read index dropped: {exc.reason}", exc.leader)
            for waiter in batch:
                waiter.fail(err)
            return
        self._reads_inflight[ctx] = batch

    async def _lessor_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.lease_check_interval)
            if self.role is not raft.Role.LEADER or self.raw is None:
                continue
            expired = self.kv.expired_leases(self.clock.now())
            if not expired:
                continue
            data = encode_entry(kvr.Envelope(0, 0, kvr.LeaseExpireRequest(ids=list(expired))))
            self._call(functools.partial(self._propose_quietly, self.raw, data))

    @staticmethod
    def _propose_quietly(raw: raft.RawNode, data: bytes) -> None:
        with contextlib.suppress(raft.ProposalDropped):
            raw.propose(data)

    async def _progress_loop(self) -> None:
        while True:
            await self.clock.sleep(self.config.progress_notify_interval)
            for watch_id in sorted(self._progress_watches):
                self._send_progress(watch_id)

    def _deliver_watch_responses(self) -> None:
        if not self._watches:
            self.kv.take_watch_responses()
            return
        for watch_id, resp in self.kv.take_watch_responses():
            self._push_watch(watch_id, resp)

    def _push_watch(self, watch_id: int, resp: kvr.WatchResponse) -> None:
        send = self._watches.get(watch_id)
        if send is None:
            return
        try:
            send.send_nowait(resp)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            # too slow (or gone): drop the watch; the client resumes from its last revision
            self._watches.pop(watch_id, None)
            self._progress_watches.discard(watch_id)
            self.kv.cancel_watch(watch_id)
            send.close()

    # -- client-facing API -------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.role is raft.Role.LEADER

    def not_leader(self, message: str = "not the leader", leader: int | None = None) -> WireError:
        hint = self.leader if leader is None or leader == raft.NONE else leader
        member = self.members.get(hint) if hint else None
        return WireError(
            ErrorCode.NOT_LEADER, message, leader=hint or None,
            endpoint=member.client if member is not None and member.client else None,
        )

    def _header(self, resp: R) -> R:
        header = getattr(resp, "header", None)
        if isinstance(header, kvr.ResponseHeader):
            header.member_id = self.id
            header.raft_term = self.term
            header.cluster_id = self.config.cluster_id
        return resp

    async def propose(
        self, request: kvr.Message, client_id: int, seq: int, *, timeout: float | None = None
    ) -> kvr.Message | None:
        """Put a client request through the log; its response once applied here.

        ``(client_id, seq)`` is the request's session identity: a retry with the same pair is
        answered from the session table. Raises WireError: not_leader (definite), timeout
        (unknown outcome), or the request's own typed error."""
        raw = self._rawnode()
        if not isinstance(request, kvr.LOG_REQUESTS) or isinstance(request, kvr.LeaseExpireRequest):
            raise WireError(ErrorCode.BAD_REQUEST, f"{type(request).__name__} does not go through the log")
        if client_id <= 0 or seq <= 0:
            raise WireError(ErrorCode.BAD_REQUEST, "a write needs a positive client id and seq")
        data = encode_entry(kvr.Envelope(client_id, seq, request))  # type: ignore[arg-type]
        if len(data) > self.config.max_request_bytes:
            raise WireError(ErrorCode.REQUEST_TOO_LARGE,
                            f"request of {len(data)} bytes exceeds {self.config.max_request_bytes}")
        if not self.is_leader:
            raise self.not_leader()
        waiter = self._waiter(timeout)

        def do_propose() -> None:
            try:
                proposed = raw.propose(data)
            except raft.ProposalDropped as exc:
                waiter.fail(self.not_leader(f"proposal dropped: {exc.reason}", exc.leader))
                return
            lost = self._proposals.get(proposed.index)
            if lost is not None:  # an older term's proposal at this index was overwritten
                lost[1].fail(self.not_leader("proposal lost in a leader change"))
            self._proposals[proposed.index] = (proposed.term, waiter)

        self._call(do_propose)
        return self._header(await waiter.wait())

    async def read_barrier(self, timeout: float | None = None) -> int:
        """ReadIndex: wait until this member has applied everything committed when the read
        began (leadership confirmed by a quorum). Returns the read index."""
        self._rawnode()
        if self.leader == raft.NONE:
            raise WireError(ErrorCode.UNAVAILABLE, "no leader: cannot serve a linearizable read")
        waiter = self._waiter(timeout)
        self._read_batch.append(waiter)
        self._kick()
        index: int = await waiter.wait()
        if not self.bugs.fire("read_before_apply", self.applied < index):
            await self.wait_applied(index, timeout)
        return index

    async def wait_applied(self, index: int, timeout: float | None = None) -> None:
        if self.applied >= index:
            return
        waiter = self._waiter(timeout)
        heapq.heappush(self._applied_waiters, (index, next(self._counter), waiter))
        await waiter.wait()

    async def range(self, req: kvr.RangeRequest, *, timeout: float | None = None) -> kvr.RangeResponse:
        """A read: serializable ones from local state; linearizable ones after ReadIndex.
        A learner serves serializable reads only, as etcd's (``rpc not supported for
        learner``): it refuses a linearizable one with the leader as a hint."""
        self._rawnode()
        if not req.serializable and self.id in self.conf_state.learners:
            raise self.not_leader("rpc not supported for learner")
        if not req.serializable:
            if self.bugs.fire("local_reads"):
                pass  # BUG local_reads: serve a linearizable read from local state, no ReadIndex
            else:
                await self.read_barrier(timeout)
        try:
            return self._header(self.kv.range(req))
        except kvr.KVError as exc:
            raise kv_error(exc) from None

    def _leader_side(self) -> None:
        self._rawnode()
        if not self.is_leader:
            raise self.not_leader("lease operations are served by the leader")

    async def _leader_barrier(self) -> None:
        """Leader-side lease operations first apply everything committed (a new leader may
        not have applied the grant of the lease it is asked about yet), as etcd does."""
        self._leader_side()
        await self.read_barrier()
        self._leader_side()

    async def lease_keepalive(self, lease_id: int) -> kvr.LeaseKeepAliveResponse:
        await self._leader_barrier()
        try:
            ttl = self.kv.lease_keepalive(lease_id, self.clock.now())
        except kvr.KVError as exc:
            raise kv_error(exc) from None
        resp = kvr.LeaseKeepAliveResponse(header=kvr.ResponseHeader(revision=self.kv.revision),
                                          id=lease_id, ttl=ttl)
        return self._header(resp)

    async def lease_time_to_live(self, req: kvr.LeaseTimeToLiveRequest) -> kvr.LeaseTimeToLiveResponse:
        await self._leader_barrier()
        try:
            return self._header(self.kv.lease_time_to_live(req.id, req.keys, self.clock.now()))
        except kvr.KVError as exc:
            raise kv_error(exc) from None

    async def lease_leases(self) -> kvr.LeaseLeasesResponse:
        await self._leader_barrier()
        return self._header(self.kv.lease_leases())

    def hash_kv(self, revision: int = 0) -> kvr.HashKVResponse:
        self._rawnode()
        try:
            return self._header(self.kv.hash_kv(revision))
        except kvr.KVError as exc:
            raise kv_error(exc) from None

    # -- watches

    @contextlib.contextmanager
    def watch(self, req: kvr.WatchCreateRequest) -> Any:
        """``with node.watch(req) as stream: async for resp in stream: ...``"""
        self._rawnode()
        try:
            watch_id, initial = self.kv.create_watch(req)
        except kvr.KVError as exc:
            raise kv_error(exc) from None
        send, recv = trio.open_memory_channel[kvr.WatchResponse](self.config.watch_buffer)
        self._watches[watch_id] = send
        if req.progress_notify:
            self._progress_watches.add(watch_id)
        for resp in initial:
            self._push_watch(watch_id, self._header(resp))
        try:
            yield WatchStream(self, watch_id, recv)
        finally:
            if watch_id in self._watches:
                self._cancel_watch(watch_id)

    def _cancel_watch(self, watch_id: int) -> kvr.WatchResponse | None:
        send = self._watches.pop(watch_id, None)
        self._progress_watches.discard(watch_id)
        resp = self.kv.cancel_watch(watch_id)
        if send is not None:
            send.close()
        return resp

    def _send_progress(self, watch_id: int) -> None:
        if watch_id not in self._watches:
            return
        for wid, resp in self.kv.progress(watch_id):
            lag = self.storage.last_index() - self.applied
            if self.bugs.fire("watch_from_lagging_member", lag > 0):  # Bugs.watch_from_lagging_member
                resp.header.revision += lag
            self._push_watch(wid, self._header(resp))

    @property
    def watcher_count(self) -> int:
        return len(self._watches)

    # -- membership and leadership

    def member_list(self) -> list[Member]:
        return [m for _, m in sorted(self.members.items())]

    async def _conf_change(self, cc_type: raft.ConfChangeType, node_id: int,
                           member: Member | None) -> Member:
        result: Member = await self._propose_conf_change(cc_type, node_id, member).wait()
        return result

    def _propose_conf_change(self, cc_type: raft.ConfChangeType, node_id: int,
                             member: Member | None) -> _Waiter:
        """Propose a conf change now; the waiter answers once it is applied here (or fails at
        once if Raft refuses it: one change at a time, as etcd)."""
        raw = self._rawnode()
        if not self.is_leader:
            raise self.not_leader("membership changes are served by the leader")
        token = next(self._counter)
        context: dict[str, Any] = {"token": token}
        if member is not None:
            context["member"] = member.to_wire()
        cc = raft.ConfChange(cc_type, node_id, msgpack.packb(context, use_bin_type=True))
        waiter = self._waiter()
        self._conf_waiters[token] = waiter

        def do_propose() -> None:
            try:
                raw.propose_conf_change(cc)
            except raft.ProposalDropped as exc:
                self._conf_waiters.pop(token, None)
                if exc.leader not in (raft.NONE, self.id):
                    waiter.fail(self.not_leader(exc.reason, exc.leader))
                else:
                    waiter.fail(WireError(ErrorCode.UNAVAILABLE, f"membership change refused: {exc.reason}"))

        self._call(do_propose)
        return waiter

    # Membership changes: the check, the new id and the proposal happen at once; the wait for
    # the change to apply does not hold anything, so a second change proposed meanwhile
    # reaches Raft, whose one-change-at-a-time rule refuses it (as etcd's raft does), and two
    # concurrent adds never pick the same new id (``_proposed_ids``).

    async def member_add(self, name: str, peer: str, client: str, learner: bool = False) -> Member:
        async with self._member_lock:
            for m in self.members.values():
                if peer and m.peer == peer:
                    raise WireError(ErrorCode.MEMBER_EXIST, f"peer address {peer} is member {m.id}")
            new_id = max([0, *self.members, *self.removed_ids, *self._proposed_ids]) + 1
            kind = raft.ConfChangeType.ADD_LEARNER if learner else raft.ConfChangeType.ADD_NODE
            waiter = self._propose_conf_change(kind, new_id, Member(new_id, name or f"node{new_id}", peer, client, learner))
            self._proposed_ids.add(new_id)
        result: Member = await waiter.wait()
        return result

    async def member_remove(self, member_id: int) -> Member:
        async with self._member_lock:
            member = self.members.get(member_id)
            if member is None:
                raise WireError(ErrorCode.MEMBER_NOT_FOUND, f"member {member_id} not found")
            waiter = self._propose_conf_change(raft.ConfChangeType.REMOVE_NODE, member_id, None)
        await waiter.wait()
        return member

    async def member_promote(self, member_id: int) -> Member:
        async with self._member_lock:
            member = self.members.get(member_id)
            if member is None:
                raise WireError(ErrorCode.MEMBER_NOT_FOUND, f"member {member_id} not found")
            if not member.learner:
                raise WireError(ErrorCode.NOT_LEARNER, f"member {member_id} is not a learner")
            raw = self._rawnode()
            if not self.is_leader:
                raise self.not_leader("membership changes are served by the leader")
            progress = raw.status().progress.get(member_id)
            if progress is None or progress.match < self.commit * 9 // 10:
                raise WireError(ErrorCode.LEARNER_NOT_READY,
                                f"learner {member_id} has not caught up with the leader yet")
            return await self._conf_change(raft.ConfChangeType.ADD_NODE, member_id, None)

    async def move_leader(self, to: int, timeout: float | None = None) -> int:
        raw = self._rawnode()
        if to not in self.members or self.members[to].learner:
            raise WireError(ErrorCode.MEMBER_NOT_FOUND, f"{to} is not a voting member")
        if not self.is_leader:
            raise self.not_leader("move-leader is served by the leader")
        if self.leader == to:
            return to
        waiter = self._waiter(timeout)
        self._leader_waiters.append((to, waiter))
        def do_transfer() -> None:
            try:
                raw.transfer_leader(to)
            except raft.ProposalDropped as exc:
                waiter.fail(WireError(ErrorCode.UNAVAILABLE, f"leader transfer refused: {exc.reason}"))

        self._call(do_transfer)
        try:
            await waiter.wait()
        except WireError as exc:
            if exc.code is ErrorCode.TIMEOUT:
                raise WireError(ErrorCode.TIMEOUT, f"leadership did not move to {to} in time") from None
            raise
        return to

    # -- status and snapshots

    def status(self) -> dict[str, Any]:
        raw = self._rawnode()
        st = raw.status()
        return {
            "id": self.id,
            "name": self.config.name,
            "leader": st.leader,
            "term": st.term,
            "role": st.role.name.lower(),
            "commit": st.commit,
            "applied": self.applied,
            "raft_index": self.storage.last_index(),
            "snapshot_index": self.snapshot_index,
            "revision": self.kv.revision,
            "compact_revision": self.kv.compact_revision,
            "is_learner": self.id in self.conf_state.learners,
            "voters": list(self.conf_state.voters),
            "learners": list(self.conf_state.learners),
            "watchers": len(self._watches),
            "db_size": self.db_size,
            "findings": list(self.findings),
            # bug switches that fired in this process, and how often (reference.bugs)
            "bugs_fired": dict(self.bugs.counter.counts) if self.bugs.counter is not None else {},
        }

    def snapshot_document(self) -> dict[str, Any]:
        """The applied state as one document (``kvcheck ctl snapshot save``)."""
        self._rawnode()
        term = self.storage.term(self.applied) if self.applied >= self.storage.first_index() - 1 else 0
        return {"format": "kvcheck-snapshot/1", "index": self.applied, "term": term,
                "revision": self.kv.revision, "data": self._snapshot_data()}
