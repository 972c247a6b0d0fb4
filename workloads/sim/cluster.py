"""The simulation target: 3 to 7 real ``Node`` objects in one trio run in virtual time.

Each node is the same ``kvcheck.reference.node.Node`` the TCP server runs, given simulated
shells for its three protocols:
- Transport: ``SimNetwork`` (latency, loss, duplication, reordering, partitions; messages are
  the immutable Raft ``Message`` values themselves, no encoding);
- Disk: the storage package's ``DataDir`` on a per-node ``MemoryFileSystem`` through the
  server's ``StorageDisk`` (inline, no threads), so a power loss (``crash_disk``) loses what
  was not fsynced and may tear the last write, while a process kill keeps the page cache;
- Clock: ``SimClock`` (per-node rate and offset over the run's virtual time).

Time is ``SimScheduler``'s (trio's clock for the run, and the heap of timers for ticks,
message deliveries and client hops): it jumps to the next event whenever every task waits.

Clients are in-process (``SimClient``, implementing the reference client's ``KVClient``
interface): a request travels to a node with a small latency, calls the node's async method
(``propose``, ``range``), and the reply travels back. Like the TCP client it follows
``not_leader`` hints, fails over, keeps a write's (client id, seq) across retries, and reports
a write it is not sure about as ``Indeterminate``. Clients reach every node (partitions cut
node-to-node links, as in Jepsen); a killed node refuses connections, a paused node holds
requests until it resumes. Writes go to the leader (learnt from hints); reads go first to the
client's own member (client id modulo the cluster size), as a Jepsen client is bound to one
node and etcd clients balance reads over members: followers serve linearizable reads through
ReadIndex, so a wrong read path on any member shows up in the history.

Membership: members are added through the leader as voters or, as etcd recommends, as
learners (``grow_member(learner=True)``, ``promote_member`` retried while the leader answers
that the learner is not in sync). A learner answers serializable reads only (the store
refuses it a linearizable one with the leader as a hint, as etcd's ``rpc not supported for
learner``), so a client's read sent to it goes on to the leader; ``learner_members`` tells the
final member reads which members are learners. A member the leader's configuration lists that
the harness never started (an add whose answer was lost with a deposed leader, committed by
the next) is started when seen (``start_listed``), as an operator starts what ``member list``
shows. ``cut_at_conf_ack`` deposes a leader the instant a follower acknowledges its pending
conf change (nemesis ``depose_of``), optionally handing leadership to that follower first. A
removed member runs on for the nemesis's linger, or until 1 s after it applies its own
removal (``REMOVED_GRACE``, as the server stops).

``SimCluster`` implements the runner's ``Target`` (and the nemesis's ``FaultTarget``);
``execute_sim`` runs one configured test under ``deterministic_trio`` and returns the history.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import gc
import itertools
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from kvcheck.reference import raft
from kvcheck.reference.bugs import BugCounter, Bugs
from kvcheck.reference.client import Failed, Indeterminate
from kvcheck.reference.disk import StorageDisk
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.localclient import LogRequests
from kvcheck.reference.node import REMOVED_GRACE, Member, Node
from kvcheck.reference.raft.raft import Raft as RaftCore
from kvcheck.reference.storage import DataDir, MemoryFileSystem
from kvcheck.reference.wire import ErrorCode, WireError
from kvcheck.workloads.client import home_member
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.determinism import deterministic_trio, substream
from kvcheck.workloads.execution import group_findings
from kvcheck.workloads.hashcheck import HashKVError
from kvcheck.workloads.kvclient import KVRegisterClient
from kvcheck.workloads.recorder import Recorder
from kvcheck.workloads.runner import drive
from kvcheck.workloads.sim.clock import SimClock
from kvcheck.workloads.sim.network import SimNetwork
from kvcheck.workloads.sim.perturb import Perturber
from kvcheck.workloads.sim.scheduler import SimScheduler

if TYPE_CHECKING:
    from kvcheck.workloads.execution import Execution, Progress

T = TypeVar("T")

@dataclass
class Slot:
    """One simulated machine: its clock and disk outlive the node process running on it."""

    id: int
    clock: SimClock
    fs: MemoryFileSystem
    node: Node | None = None
    scope: trio.CancelScope | None = None
    state: str = "down"  # up | paused | down | removed
    incarnation: int = 0
    join: bool = False
    held: list[raft.Message] = field(default_factory=list)
    log: list[tuple[float, str]] = field(default_factory=list)  # (trio time, line)
    fired: BugCounter = field(default_factory=BugCounter)  # bug switches fired, all incarnations
    finished: trio.Event | None = None  # set when the current node process has ended


class SimDisk(StorageDisk):
    """The server's StorageDisk on an in-memory DataDir, run inline without a scheduling
    point per call: in the simulation a write or fsync takes no simulated time, and skipping
    the checkpoint saves a trio batch per Ready (the node's loop yields elsewhere)."""

    def __init__(self, datadir: DataDir) -> None:
        super().__init__(datadir, offload=False)

    async def _inline(self, fn: Callable[[], T]) -> T:
        return fn()


class SimTransport:
    """Node ``id``'s Transport: hands each message to the simulated network (a batch may be
    perturbed: reordered, duplicated later, or a message held long)."""

    def __init__(self, net: SimNetwork, node_id: int, perturber: Perturber) -> None:
        self.net = net
        self.id = node_id
        self.perturber = perturber
        # The node's report_snapshot: like the TCP transport (reference.server), tell Raft
        # whether each MsgSnap went out, or the follower's progress waits for it forever.
        self.report_snapshot: Callable[[int, bool], None] | None = None

    def send(self, messages: Sequence[raft.Message]) -> None:
        if not self.perturber.active:
            for m in messages:
                sent = self.net.send(self.id, m.to, m)
                if m.type is raft.MessageType.SNAP and self.report_snapshot is not None:
                    self.report_snapshot(m.to, sent)
            return
        for m, delays in zip(messages, self.perturber.batch_delays(len(messages)), strict=True):
            if m.type is raft.MessageType.APP_RESP and not m.reject:  # sent once durable (slow_disk)
                slow = self.perturber.ack_delay(self.id)
                if slow and self.net.fifo:  # it leaves then, and joins its link's order then
                    for d in delays:
                        self.net.send_later(slow, self.id, m.to, m, d)
                    continue
                delays = [d + slow for d in delays] if slow else delays
            sent = False
            for d in delays:
                sent = self.net.send(self.id, m.to, m, d) or sent
            if m.type is raft.MessageType.SNAP and self.report_snapshot is not None:
                self.report_snapshot(m.to, sent)

    def update_members(self, members: Any) -> None:
        return None


class SimCluster:
    """The cluster of one simulation (create inside ``trio.run``; ``await start(nursery)``)."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.seed = config.seed
        self.bugs = Bugs.from_names(config.bugs)
        self.scheduler = sched = SimScheduler.current()
        net = config.network  # every parameter from the config (config.json), none from defaults
        self.net = SimNetwork(substream(self.seed, "network"), sched, base_latency=tuple(net["base_latency"]),
                              jitter=net["jitter"], grid=net["grid"], loss=net["loss"],
                              duplicate=net["duplicate"], fifo=net["fifo"], stall=net["stall"],
                              stall_rng=substream(self.seed, "network-stall"))
        self.client_latency: tuple[float, float] = tuple(net["client_latency"])
        self.slots: dict[int, Slot] = {}
        self.findings: list[tuple[float, int, str]] = []  # (seconds on the history's clock, member, text)
        self._nursery: trio.Nursery | None = None
        self._disk_rng = substream(self.seed, "disk")
        self._client_rng = substream(self.seed, "client-latency")
        node = config.node
        self.perturber = Perturber(config.perturb, substream(self.seed, "perturb"),
                                   node["election_tick"] * node["tick_interval"])
        # Log times are printed relative to this: the history's time 0 once the workload
        # starts (execute_sim moves it there), so node logs and history read on one clock.
        self.origin = trio.current_time()
        for i in config.node_ids:
            self._add_slot(Slot(i, SimClock(sched), MemoryFileSystem()))

    def _add_slot(self, slot: Slot) -> Slot:
        self.slots[slot.id] = slot
        slot.fired.on_first = lambda name: self._log(slot, f"BUG {name} fired (first time)")
        return slot

    # -- lifecycle -----------------------------------------------------------------------

    def _log(self, slot: Slot, text: str) -> None:
        slot.log.append((trio.current_time(), text))

    @property
    def node_ids(self) -> list[int]:
        return sorted(i for i, s in self.slots.items() if s.state != "removed")

    def supported_faults(self) -> tuple[str, ...]:
        return ("partition", "kill", "pause", "clock", "packet", "disk", "member")

    async def start(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        await nursery.start(self.scheduler.run)
        for i in self.node_ids:
            await self._start_node(self.slots[i])

    def _members(self) -> list[Member]:
        return [Member(i, f"n{i}") for i in self.config.node_ids]

    async def _start_node(self, slot: Slot) -> None:
        assert self._nursery is not None
        slot.incarnation += 1
        cfg = self.config.node_config(slot.id, f"n{slot.id}")
        disk = SimDisk(DataDir(slot.fs, "data"))
        transport = SimTransport(self.net, slot.id, self.perturber)
        node = Node(cfg, transport, disk, slot.clock,
                    substream(self.seed, "node", slot.id, slot.incarnation),
                    initial_members=self._members(), join=slot.join, bugs=self.bugs.counting(slot.fired),
                    on_finding=functools.partial(self._finding, slot),
                    ready_soon=functools.partial(self._ready_soon, slot))
        transport.report_snapshot = node.report_snapshot
        scope = trio.CancelScope()
        slot.node, slot.scope = node, scope
        slot.finished = finished = trio.Event()
        slot.held.clear()
        try:
            await self._nursery.start(self._run_node, slot, node, scope, finished)
        except Exception as exc:  # the node refused to start (e.g. corrupt WAL)
            self._finding(slot, f"node {slot.id} failed to start: {exc!r}")
            slot.node, slot.scope, slot.state = None, None, "down"
            return
        slot.state = "up"
        self.net.attach(slot.id, functools.partial(self._deliver, slot))
        self._log(slot, f"started (incarnation {slot.incarnation}{', joining' if slot.join else ''})")

    async def _run_node(self, slot: Slot, node: Node, scope: trio.CancelScope, finished: trio.Event,
                        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run_node_inner(slot, node, scope, task_status)
        finally:
            finished.set()

    async def _run_node_inner(self, slot: Slot, node: Node, scope: trio.CancelScope,
                              task_status: trio.TaskStatus[None]) -> None:
        started = False

        def mark() -> None:
            nonlocal started
            started = True
            task_status.started()

        with scope:
            try:
                await node.run(task_status=_Status(mark))
            except Exception as exc:
                if not started:
                    raise
                self._finding(slot, f"node {slot.id} crashed: {exc!r}")
        if slot.node is node and slot.state in ("up", "paused"):
            slot.state = "down"
            self.net.detach(slot.id)

    def _ready_soon(self, slot: Slot, drain: Callable[[], None]) -> None:
        """The nodes' Ready loops run as scheduler callbacks, at the next moment every task
        waits (their Disk never does): a crash there is the node's, as in a Ready-loop task."""

        def run() -> None:
            try:
                drain()
            except Exception as exc:
                self._finding(slot, f"node {slot.id} crashed: {exc!r}")
                if slot.scope is not None:
                    slot.scope.cancel()

        delay = self.perturber.ready_delay()
        if delay:  # a slow disk or a stalled apply loop: the pass runs later, if still alive
            node = slot.node
            self.scheduler.call_at(self.scheduler.current_time() + delay,
                                   lambda: run() if slot.node is node else None)
            return
        self.scheduler.call_at(self.scheduler.current_time(), run)

    def _finding(self, slot: Slot, text: str) -> None:
        self.findings.append((trio.current_time() - self.origin, slot.id, text))
        self._log(slot, f"FINDING {text}")

    def _deliver(self, slot: Slot, src: int, msg: raft.Message) -> None:
        if slot.state == "paused":
            slot.held.append(msg)
        elif slot.state == "up" and slot.node is not None:
            slot.node.receive(msg)

    async def _stop(self, slot: Slot, why: str) -> None:
        """Kill the node process and wait until its tasks have ended (the disk write a
        cancelled task was in the middle of happened just before the kill)."""
        finished = slot.finished
        if slot.scope is not None:
            slot.scope.cancel()
        self.net.detach(slot.id)
        slot.clock.resume()
        slot.node, slot.scope, slot.held = None, None, []
        if slot.state != "removed":
            slot.state = "down"
        self._log(slot, why)
        if finished is not None:
            await finished.wait()

    # -- the fault target ---------------------------------------------------------------

    def _slot(self, node: int) -> Slot | None:
        slot = self.slots.get(node)
        return slot if slot is not None and slot.state != "removed" else None

    async def leader(self) -> int | None:
        best: tuple[int, int] | None = None
        for i in self.node_ids:
            slot = self.slots[i]
            if slot.state == "up" and slot.node is not None and slot.node.is_leader:
                cand = (slot.node.term, i)
                if best is None or cand > best:
                    best = cand
        return best[1] if best else None

    async def quiesce(self) -> None:
        """The final heal: no more perturbation (messages already held still arrive)."""
        self.perturber.active = False

    async def most_behind(self) -> int | None:
        """The running member with the lowest applied index (lowest id on ties)."""
        up = [(s.node.applied, i) for i, s in sorted(self.slots.items())
              if s.state == "up" and s.node is not None]
        return min(up)[1] if up else None

    async def next_leader(self, timeout: float) -> int | None:
        """Wait (polling every 5 ms) until a member becomes leader in a newer term than the
        current leader's; that member, at once (None after ``timeout``)."""
        def current() -> tuple[int, int]:
            best = (0, 0)
            for i, s in self.slots.items():
                if s.state == "up" and s.node is not None and s.node.is_leader:
                    best = max(best, (s.node.term, i))
            return best

        start = current()
        with trio.move_on_after(timeout):
            while True:
                await trio.sleep(0.005)
                now = current()
                if now[0] > start[0]:
                    return now[1]
        return None

    async def next_acker(self, timeout: float) -> int | None:
        """Wait until a follower sends a successful append acknowledgement (MsgAppResp, not
        a reject) and return it at that instant (None after ``timeout``)."""
        acked: list[int] = []
        event = trio.Event()

        def watch(src: int, dst: int, msg: Any) -> None:
            if not acked and isinstance(msg, raft.Message) and msg.type is raft.MessageType.APP_RESP \
                    and not msg.reject and msg.index > 0:
                acked.append(src)
                event.set()

        self.net.observers.append(watch)
        try:
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            self.net.observers.remove(watch)
        return acked[0] if acked else None

    async def next_voter(self, timeout: float) -> int | None:
        """Wait until a member grants a vote in an election newer than every running member's
        term now (MsgVoteResp, not a reject; pre-votes and a repeated grant of an old vote do
        not count) and return it at that instant (None after ``timeout``)."""
        start = self._running_term()
        return await self._next_sender(
            lambda src, dst, msg: msg.type is raft.MessageType.VOTE_RESP and not msg.reject and msg.term > start,
            timeout, any_link=True)

    async def next_second_voter(self, timeout: float) -> int | None:
        """Wait until a member grants a vote in a term it already held before that request
        reached it (it had refused a candidate of that term, or learned the term from a reply
        or a message it ignored: several candidates in one term, its vote going to a later
        one) and return it at that instant (None after ``timeout``). Each member's durable
        term is sampled whenever it sends or is sent a message; a grant counts when an earlier
        sample already showed its term, and it is not a repeated grant to the same candidate
        seen while watching. Such a vote is the one a store must persist although the term
        did not change."""
        held: dict[int, set[int]] = {}  # member -> terms it was seen holding
        granted: set[tuple[int, int, int]] = set()  # (member, term, candidate) seen granted

        def sample(node: int) -> None:
            slot = self.slots.get(node)
            if slot is not None and slot.node is not None and slot.state in ("up", "paused"):
                held.setdefault(node, set()).add(slot.node.term)

        def match(src: int, dst: int, msg: raft.Message) -> bool:
            second = False
            if msg.type is raft.MessageType.VOTE_RESP and not msg.reject:
                second = msg.term in held.get(src, ()) and (src, msg.term, dst) not in granted
                granted.add((src, msg.term, dst))
            sample(src)
            sample(dst)
            return second

        return await self._next_sender(match, timeout, any_link=True)

    async def next_append_or_heartbeat_above_members(self, timeout: float) -> int | None:
        """Wait until a member sends an append or heartbeat in a newer term than any running
        member has now (a new leader's first words, on any link, cut or not) and return it at
        that instant (None after ``timeout``). Unlike ``next_uncut_append_above_leaders``:
        heartbeats count, a cut link does not hide the message, and the term to pass is every
        running member's, not only the leaders'."""
        start = self._running_term()
        return await self._next_sender(
            lambda src, dst, msg: msg.term > start and msg.type in (raft.MessageType.APP, raft.MessageType.HEARTBEAT),
            timeout, any_link=True)

    def _running_term(self) -> int:
        return max((s.node.term for s in self.slots.values()
                    if s.state in ("up", "paused") and s.node is not None), default=0)

    async def cut_at_leader_ack(self, timeout: float, links_for: Callable[[int], list[list[int]]],
                                hold: bool) -> int | None:
        """Wait until the leader receives a successful acknowledgement of an entry it has not
        committed yet and, at that instant (before the leader handles it), cut the links ``links_for(leader)`` names
        (keeping their messages with ``hold``): what the leader commits on that ack, and
        acknowledges to its clients, its followers do not learn. The leader, or None after
        ``timeout`` (nothing cut)."""
        hit: list[int] = []
        event = trio.Event()

        def watch(src: int, dst: int, msg: Any) -> None:
            if hit or not (isinstance(msg, raft.Message) and msg.type is raft.MessageType.APP_RESP
                           and not msg.reject and msg.index > 0):
                return
            slot = self.slots.get(dst)
            if slot is None or slot.state != "up" or slot.node is None or not slot.node.is_leader:
                return
            newest = max((s.node.term for s in self.slots.values()
                          if s.state == "up" and s.node is not None and s.node.is_leader), default=0)
            # the current leader, not one a partition left behind, acknowledged an entry it
            # has not committed yet (not a heartbeat-like empty append)
            if slot.node.term == newest and msg.index > slot.node.commit:
                hit.append(dst)
                self.net.block(links_for(dst), hold=hold)
                event.set()

        self.net.arrivals.append(watch)
        try:
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            self.net.arrivals.remove(watch)
        return hit[0] if hit else None

    async def cut_at_candidate(self, timeout: float, links_for: Callable[[int], list[list[int]]],
                               hold: bool) -> int | None:
        """Wait until a member asks for votes (MsgVote, not a pre-vote) in a term newer than
        every running member's now and, at that instant, before that request leaves, cut the
        links ``links_for(candidate)`` names (keeping their messages with ``hold``): the other
        members hear nothing of its election, time out in their turn and campaign in the same
        term, and its requests arrive when the cut heals, late, at members that voted meanwhile.
        The candidate, or None after ``timeout`` (nothing cut)."""
        start = self._running_term()

        def candidate(src: int, dst: int, msg: raft.Message) -> bool:
            if msg.type is not raft.MessageType.VOTE or msg.term <= start:
                return False
            self.net.block(links_for(src), hold=hold)  # in the observer: before the request leaves
            return True

        return await self._next_sender(candidate, timeout, any_link=True)

    async def next_uncut_append_above_leaders(self, timeout: float) -> int | None:
        """Wait until a member sends an append (MsgApp, on a link that is not cut) in a term
        newer than every current leader's, and return it at that instant: a leader that
        has just been elected, its first entries only on itself (None after ``timeout``).
        Unlike ``next_append_or_heartbeat_above_members``: appends only, on links that are
        not cut, past the current leaders' terms (a follower's newer term does not count)."""
        base = max((s.node.term for s in self.slots.values()
                    if s.state == "up" and s.node is not None and s.node.is_leader), default=0)
        return await self._next_sender(
            lambda src, dst, msg: msg.type is raft.MessageType.APP and msg.term > base, timeout)

    async def next_commit_leader(self, timeout: float, advances: int = 1) -> int | None:
        """Wait until a leader tells its followers (MsgApp, on a link that is not cut) of a
        higher commit index for the ``advances``-th time in this wait, and return it at that
        instant: a leader that has just committed, before that commit spreads."""
        last: dict[tuple[int, int], int] = {}  # (leader, term) -> commit it sent last
        count: dict[tuple[int, int], int] = {}

        def advanced(src: int, dst: int, msg: raft.Message) -> bool:
            if msg.type is not raft.MessageType.APP:
                return False
            key = (src, msg.term)
            before = last.setdefault(key, msg.commit)
            if msg.commit <= before:
                return False
            last[key] = msg.commit
            count[key] = count.get(key, 0) + 1
            return count[key] >= advances
        return await self._next_sender(advanced, timeout)

    async def _next_sender(self, match: Callable[[int, int, raft.Message], bool], timeout: float,
                           *, receiver: bool = False, any_link: bool = False) -> int | None:
        """The sender (or ``receiver``) of the next message ``match`` accepts, at that instant,
        on a link that is not cut (or on ``any_link``); None after ``timeout``."""
        found: list[int] = []
        event = trio.Event()

        def watch(src: int, dst: int, msg: Any) -> None:
            if not found and isinstance(msg, raft.Message) and (any_link or (src, dst) not in self.net.blocked) \
                    and match(src, dst, msg):
                found.append(dst if receiver else src)
                event.set()

        self.net.observers.append(watch)
        try:
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            self.net.observers.remove(watch)
        return found[0] if found else None

    async def block_links(self, blocked: list[list[int]]) -> None:
        self.net.block(blocked)

    async def hold_links(self, blocked: list[list[int]]) -> None:
        """Cut these links but keep what is sent on them, to deliver it at the heal."""
        self.net.block(blocked, hold=True)

    async def heal_links(self) -> None:
        self.net.heal()

    async def kill(self, node: int) -> None:
        slot = self._slot(node)
        if slot is not None and slot.state in ("up", "paused"):
            if self.perturber.kill_tears():
                await self._stop(slot, "killed, and the power failed with it")
                torn = slot.fs.crash(self._disk_rng, tear_probability=1.0)
                self._log(slot, f"disk lost unsynced writes; torn: {', '.join(torn) or 'none'}")
                return
            await self._stop(slot, "killed (kill -9)")

    async def restart(self, node: int) -> None:
        slot = self._slot(node)
        if slot is not None and slot.state == "down":
            await self._start_node(slot)

    async def pause(self, node: int) -> None:
        slot = self._slot(node)
        if slot is not None and slot.state == "up":
            slot.state = "paused"
            slot.clock.pause()
            self._log(slot, "paused (SIGSTOP)")

    async def resume(self, node: int) -> None:
        slot = self._slot(node)
        if slot is not None and slot.state == "paused":
            slot.state = "up"
            slot.clock.resume()
            held, slot.held = slot.held, []
            self._log(slot, f"resumed (SIGCONT), {len(held)} held messages delivered")
            for msg in held:
                if slot.node is not None and slot.state == "up":
                    slot.node.receive(msg)

    async def set_clock(self, node: int, rate: float, offset: float) -> None:
        slot = self._slot(node)
        if slot is not None:
            slot.clock.set(rate, offset)

    async def reset_clock(self, node: int) -> None:
        slot = self._slot(node)
        if slot is not None:
            slot.clock.reset()

    async def set_packet_faults(self, loss: float, delay: float, duplicate: float) -> None:
        self.net.set_packet_faults(loss, delay, duplicate)

    async def crash_disk(self, node: int, torn: bool) -> None:
        slot = self._slot(node)
        if slot is None:
            return
        if slot.state in ("up", "paused"):
            await self._stop(slot, "power loss")
        torn_files = slot.fs.crash(self._disk_rng, tear_probability=1.0 if torn else 0.0)
        if torn_files:
            detail = f"torn last write in {', '.join(torn_files)}"
        elif torn:
            detail = "no file had an unsynced write to tear"
        else:
            detail = "no write torn (not asked to)"
        self._log(slot, f"disk lost unsynced writes; {detail}")
        await trio.lowlevel.checkpoint()

    async def remove_member(self, node: int) -> bool:
        slot = self._slot(node)
        if slot is None or len(self.node_ids) <= 3:
            return False
        leader_id = await self.leader()
        if leader_id is None:
            return False
        leader = self.slots[leader_id].node
        assert leader is not None
        try:
            with trio.fail_after(5.0):
                await leader.member_remove(node)
        except (WireError, trio.TooSlowError) as exc:
            self._log(slot, f"member remove failed: {exc}")
            return False
        await self._stop(slot, "removed from the cluster")
        slot.state = "removed"
        return True

    async def add_member(self, node: int, learner: bool = False) -> int | None:
        """Add a fresh member (a new id, empty disk) in place of removed ``node`` (as a
        learner with ``learner``: promote it later, ``promote_member``)."""
        slot = self.slots.get(node)
        if slot is None or slot.state != "removed":
            return None
        member = await self._member_add(f"n{node}-replacement", learner, slot, "member add")
        if member is None:
            return None
        new = self._add_slot(Slot(member.id, SimClock(self.scheduler), MemoryFileSystem(), join=True))
        await self._start_node(new)
        return member.id

    async def _member_add(self, name: str, learner: bool, log_to: Slot | None, what: str) -> Member | None:
        """``member add`` through the current leader (``{leader}`` in ``name`` becomes its id);
        None if no member leads, the leader refuses, or 5 s pass. A learner's add is retried
        every 0.1 s within those 5 s while no member leads or the leader refuses it for a conf
        change not applied yet (an operator adding a learner retries, as etcd documents; plain
        adds keep their single try)."""
        deadline = trio.current_time() + 5.0
        while True:
            leader_id = await self.leader()
            leader = self.slots[leader_id].node if leader_id is not None else None
            try:
                if leader is None:
                    raise WireError(ErrorCode.UNAVAILABLE, "no leader")
                with trio.fail_after(max(0.0, deadline - trio.current_time())):
                    return await leader.member_add(name.format(leader=leader_id), "", "", learner=learner)
            except (WireError, trio.TooSlowError) as exc:
                retry = isinstance(exc, WireError) and exc.code is ErrorCode.UNAVAILABLE
                if not (learner and retry and trio.current_time() + 0.1 < deadline):
                    slot = log_to or (self.slots[leader_id] if leader_id is not None else None)
                    if slot is not None:
                        self._log(slot, f"{what} failed: {exc}")
                    return None
            await trio.sleep(0.1)

    # -- membership churn (nemesis.churn): several changes at once, as Jepsen's etcd test --

    MAX_MEMBERS = 7

    async def grow_member(self, learner: bool = False, spare: int = 0) -> int | None:
        """Add a fresh member (a new id, empty disk) through the current leader, not in place
        of a removed one (a learner with ``learner``); its id, or None if the leader refused
        or was not found in time. A learner may be one more than ``MAX_MEMBERS`` (7 voters and
        the learner that is to replace one of them), and ``spare`` more (a replacement whose
        removal is in flight)."""
        if len(self.node_ids) >= self.MAX_MEMBERS + learner + spare:
            return None
        member = await self._member_add("grown-by-n{leader}", learner, None, "member add (grow)")
        if member is None:
            return None
        if member.id in self.slots:  # already started (cannot happen: ids are never reused)
            return member.id
        new = self._add_slot(Slot(member.id, SimClock(self.scheduler), MemoryFileSystem(), join=True))
        await self._start_node(new)
        return member.id

    async def promote_member(self, member: int, timeout: float) -> dict[str, Any]:
        """Promote learner ``member`` to a voter through the current leader, as an operator
        runs ``etcdctl member promote``: retried every 0.1 s while the leader refuses (the
        learner is not in sync yet, no leader, another conf change pending) for at most
        ``timeout`` seconds. ``promoted`` (True also when it is a voter already), the number
        of ``attempts``, how many were refused as not in sync (``not_ready``), the last error."""
        attempts = not_ready = 0
        last = ""
        with trio.move_on_after(timeout):
            while True:
                attempts += 1
                leader_id = await self.leader()
                leader = self.slots[leader_id].node if leader_id is not None else None
                if leader is not None:
                    try:
                        with trio.fail_after(5.0):
                            await leader.member_promote(member)
                        return {"promoted": True, "attempts": attempts, "not_ready": not_ready}
                    except WireError as exc:
                        last = exc.code.value
                        if exc.code is ErrorCode.NOT_LEARNER:  # a voter already (an earlier try applied)
                            return {"promoted": True, "attempts": attempts, "not_ready": not_ready}
                        if exc.code is ErrorCode.MEMBER_NOT_FOUND:
                            break
                        not_ready += exc.code is ErrorCode.LEARNER_NOT_READY
                    except trio.TooSlowError:
                        last = "timeout"
                await trio.sleep(0.1)
        self._log(self.slots[member] if member in self.slots else next(iter(self.slots.values())),
                  f"member promote of {member} gave up: {last or 'no leader'}")
        return {"promoted": False, "attempts": attempts, "not_ready": not_ready, "error": last or "no leader"}

    async def cut_at_conf_ack(self, timeout: float, *, hold: bool, hand_off: bool = False) -> int | None:
        """Wait until a follower acknowledges the leader's pending (uncommitted) conf change
        entry and, at that instant, before the acknowledgement leaves, cut every link of that
        leader (keeping their messages with ``hold``): the follower holds the change, the
        leader never learns that it could commit it. The leader, or None after ``timeout``.

        With ``hand_off``, when that follower's acknowledgement covers the leader's whole log,
        the leader hands leadership to it first, as etcd's leader does when it is stopped
        gracefully (``TransferLeadership`` to an up-to-date voter) or on ``etcdctl
        move-leader``: its MsgTimeoutNow is the last message that leaves before the cut (one
        link latency later the follower campaigns at once, with the change in its log).
        ``handed_to`` records that follower (None when no hand-off happened)."""
        self.handed_to: int | None = None

        def acks_conf(src: int, dst: int, msg: raft.Message) -> bool:
            if msg.type is not raft.MessageType.APP_RESP or msg.reject:
                return False
            slot = self.slots.get(dst)
            node = slot.node if slot is not None and slot.state == "up" else None
            if node is None or not node.is_leader or node.raw is None or msg.term != node.term:
                return False
            pending = node.raw.raft.pending_conf_index
            if not node.commit < pending <= msg.index:
                return False
            others = [i for i in self.node_ids if i != dst]
            self.net.block([[dst, o] for o in others] + [[o, dst] for o in others], hold=hold)
            heir = self.slots[src].node if src in self.slots else None
            if hand_off and heir is not None and msg.index == node.raw.raft.log.last_index():
                self.handed_to = src
                timeout_now = raft.Message(raft.MessageType.TIMEOUT_NOW, src, dst, node.term)
                # (the link's base latency, drawing nothing from the network's stream)
                lat = self.net.link_latency.get((dst, src), self.net.base_latency[0])
                when = self.net.quantize(self.scheduler.current_time() + lat)
                self.scheduler.call_at(when, functools.partial(heir.receive, timeout_now))
            return True

        return await self._next_sender(acks_conf, timeout, receiver=True, any_link=True)

    async def start_listed(self) -> None:
        """``_start_listed`` for the current leader (nothing when no member leads)."""
        leader_id = await self.leader()
        node = self.slots[leader_id].node if leader_id is not None else None
        if node is not None:
            await self._start_listed(node)

    async def _start_listed(self, leader: Node) -> None:
        """Start every member ``leader`` lists that the harness never started: an add whose
        answer it did not see (the request timed out when its leader was deposed) that a
        later leader committed, as an operator starts the members ``member list`` shows."""
        for nid in sorted(leader.members):
            if nid not in self.slots and nid not in leader.removed_ids:
                slot = self._add_slot(Slot(nid, SimClock(self.scheduler), MemoryFileSystem(), join=True))
                self._log(slot, "listed by the leader but never started: starting it")
                await self._start_node(slot)

    async def configured_members(self) -> list[int]:
        """The voters and learners of the current leader's applied configuration (the
        harness's list when no member leads)."""
        leader_id = await self.leader()
        node = self.slots[leader_id].node if leader_id is not None else None
        if node is None:
            return self.node_ids
        return sorted({*node.conf_state.voters, *node.conf_state.learners})

    def learner_members(self) -> set[int]:
        """The members the current leader's configuration holds as learners (empty when no
        member leads)."""
        best: Node | None = None
        for s in self.slots.values():
            if s.state == "up" and s.node is not None and s.node.is_leader and s.node.running \
                    and (best is None or s.node.term > best.term):
                best = s.node
        return set(best.conf_state.learners) if best is not None else set()

    async def leader_elected(self, timeout: float) -> int | None:
        """Wait until a member leads a newer term than any leader now and return it at the
        instant it sends its first append as leader (before any follower has acknowledged
        its first entry), or None after ``timeout``."""
        now = max((s.node.term for s in self.slots.values() if s.state == "up" and s.node is not None
                   and s.node.is_leader), default=0)
        won: list[int] = []
        event = trio.Event()

        def watch(src: int, dst: int, msg: Any) -> None:
            if not won and isinstance(msg, raft.Message) and msg.type is raft.MessageType.APP and msg.term > now:
                won.append(src)
                event.set()

        self.net.observers.append(watch)
        try:
            with trio.move_on_after(timeout):
                await event.wait()
        finally:
            self.net.observers.remove(watch)
        return won[0] if won else None

    async def shrink_member(self, node: int, linger: float, floor: int = 3) -> bool:
        """Remove ``node`` through the current leader (down to ``floor`` members: 3, or 2 for
        the removal of a replacement whose add is in flight); True once the leader applied
        it. The member keeps running for ``linger`` seconds more before it is stopped (a
        removed member that has not applied its removal yet still answers and campaigns
        meanwhile, as a real one would until an operator stops it); one that applies its own
        removal stops ``REMOVED_GRACE`` later, as the server does (etcd stops a member that
        applied its own removal)."""
        slot = self._slot(node)
        if slot is None or len(self.node_ids) <= floor:
            return False
        leader_id = await self.leader()
        if leader_id is None:
            return False
        leader = self.slots[leader_id].node
        assert leader is not None
        try:
            with trio.fail_after(5.0):
                await leader.member_remove(node)
        except (WireError, trio.TooSlowError) as exc:
            self._log(slot, f"member remove failed: {exc}")
            return False
        if slot.state == "down":
            slot.state = "removed"
            return True

        async def stop_later() -> None:
            node = slot.node
            why = f"removed from the cluster ({linger:g}s ago)"
            with trio.move_on_after(linger):
                if node is not None:  # as the server: it applied its own removal, 1 s later it stops
                    await node.removed.wait()
                    await trio.sleep(REMOVED_GRACE)
                    why = f"applied its own removal {REMOVED_GRACE:g}s ago; stopping"
            if slot.state in ("up", "paused"):
                await self._stop(slot, why)
            slot.state = "removed"

        assert self._nursery is not None
        self._nursery.start_soon(stop_later)
        return True

    # -- health and clients -------------------------------------------------------------

    async def wait_healthy(self, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            while True:
                if await self._healthy():
                    return True
                await trio.sleep(0.05)
        return False

    async def _healthy(self) -> bool:
        """A leader, and every member of its configuration up and applied to its commit. A
        member whose removal the leader has applied is no longer one, even if the harness's
        request for it failed: a removal that timed out (``shrink_member``'s 5 s) may still
        commit later, and the removed member, no longer sent appends, never catches up (clean
        register swarm seed 1004 with slow disks: a removal of n7 timed out during a split and
        applied 4 s later; n7 campaigned as a pre-candidate at commit 595 to the end while the
        leader's six members agreed at 1051, reported as a liveness anomaly). Learners count:
        the leader replicates to them as to any member. A member the configuration lists that
        the harness never started is started first (``_start_listed``)."""
        leader_id = await self.leader()
        if leader_id is None:
            return False
        leader = self.slots[leader_id].node
        assert leader is not None
        await self._start_listed(leader)
        removed = self._removed_by(leader)
        for i in self.node_ids:
            if i in removed:
                continue
            slot = self.slots[i]
            if slot.state != "up" or slot.node is None or slot.node.applied < leader.commit:
                return False
        return True

    def _removed_by(self, leader: Node) -> set[int]:
        """The members the harness still lists whose removal ``leader`` has applied."""
        return {i for i in self.node_ids if i in leader.removed_ids}

    async def removed_members(self) -> set[int]:
        """The members the harness still lists whose removal the current leader has applied
        (as ``etcdctl member list`` would no longer show them): a removal whose answer the
        harness never saw (``remove_member`` / ``shrink_member`` give up after 5 s) may commit
        later. Empty when no member leads."""
        leader_id = await self.leader()
        if leader_id is None:
            return set()
        leader = self.slots[leader_id].node
        assert leader is not None
        return self._removed_by(leader)

    def client(self, process: int) -> KVRegisterClient:
        return KVRegisterClient(self.kv_client(process))

    def kv_client(self, process: int) -> SimClient:
        return SimClient(self, process + 1, self.config.client_timeout,
                         attempt_timeout=self.config.client_attempt_timeout)

    # -- the final per-member reads (workloads.memberreads) ------------------------------

    async def member_applied(self, member: int) -> int | None:
        slot = self._slot(member)
        if slot is None or slot.state != "up" or slot.node is None or not slot.node.running:
            return None
        return int(slot.node.applied)

    async def highest_commit(self) -> int:
        return max((int(s.node.commit) for s in self.slots.values()
                    if s.state == "up" and s.node is not None and s.node.running), default=0)

    async def member_hash(self, member: int) -> tuple[int, int] | None:
        slot = self._slot(member)
        if slot is None or slot.state != "up" or slot.node is None or not slot.node.running:
            return None
        resp = slot.node.hash_kv(0)
        return int(resp.header.revision), int(resp.hash)

    # -- the periodic hash check (workloads.hashcheck) -------------------------------------

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self.scheduler.call_at(self.scheduler.current_time() + delay, callback)

    def hash_revision_now(self) -> int | None:
        best: tuple[int, int] | None = None  # (term, revision) of the newest leader
        for i in self.node_ids:
            slot = self.slots[i]
            if slot.state == "up" and slot.node is not None and slot.node.running and slot.node.is_leader:
                best = max(best or (-1, 0), (int(slot.node.term), int(slot.node.kv.revision)))
        return None if best is None else best[1]

    def member_hash_kv_now(self, member: int, revision: int) -> dict[str, int] | None:
        slot = self._slot(member)
        if slot is None or slot.state != "up" or slot.node is None or not slot.node.running:
            return None
        try:
            resp = slot.node.hash_kv(revision)
        except WireError as exc:
            raise HashKVError(exc.code.value) from None
        return {"revision": int(resp.hash_revision), "compact_revision": int(resp.compact_revision),
                "hash": int(resp.hash)}

    def member_kv_client(self, process: int, member: int) -> SimClient:
        """A store client whose every request goes to ``member`` only (the watch-family
        workloads' per-member reads build on it; reads linearizable unless asked otherwise)."""
        return SimClient(self, process + 1, self.config.client_timeout, pin=member)

    def member_client(self, process: int, member: int) -> KVRegisterClient:
        return KVRegisterClient(self.member_kv_client(process, member), serializable=True)

    def member_linearizable_client(self, process: int, member: int) -> KVRegisterClient:
        """A register client whose reads are linearizable and sent to ``member`` only (it
        answers once it applied up to the leader's read index: a member that cannot catch up
        never answers)."""
        return KVRegisterClient(SimClient(self, process + 1, self.config.client_timeout, pin=member))

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, slot in sorted(self.slots.items()):
            st: dict[str, Any] = {"state": slot.state, "incarnation": slot.incarnation}
            if slot.node is not None and slot.node.running:
                s = slot.node.status()
                st.update({k: s[k] for k in ("role", "term", "commit", "applied", "revision")})
            out[str(i)] = st
        return out

    def bugs_fired(self) -> dict[str, Any]:
        """How often each enabled switch fired: in total and per member (see reference.bugs)."""
        by_member = {str(i): dict(s.fired.counts) for i, s in sorted(self.slots.items()) if s.fired.counts}
        total = {name: sum(s.fired.counts.get(name, 0) for s in self.slots.values())
                 for name in self.bugs.enabled()}
        return {"enabled": self.bugs.enabled(), "fired": total, "by_member": by_member}

    def logs(self) -> dict[str, str]:
        """Each member's log: its events and the faults it suffered, in seconds on the
        history's clock (negative: before the workload started)."""
        return {f"node{i}.log": LOG_HEADER + "".join(f"{t - self.origin:10.4f} {text}\n" for t, text in slot.log)
                for i, slot in sorted(self.slots.items())}


LOG_HEADER = "# seconds on the history's clock (0: the workload's start; negative: cluster start-up)\n"


class _Status:
    """A task_status that calls ``fn`` on started() (to know whether a node got going)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn = fn

    def started(self, value: Any = None) -> None:
        self.fn()


class SimClient(LogRequests):
    """An in-process client of the simulated cluster (the reference ``KVClient`` interface).

    ``attempt_timeout`` (None: the whole remaining timeout) bounds how long one member may
    hold a write before the client retries it elsewhere under the same seq, as etcd's client
    retries; a workload sets it (the txn workloads do, so retries of an applied write happen)."""

    attempt_timeout: float | None = None
    # Keepalives on one stream (etcd clientv3's LeaseKeepAlive: one long-lived stream on one
    # member until it errors, then another): sent to the member that answered the last
    # keepalive instead of the client's own member first (other requests do not move it), and
    # moved only when that member fails them (unavailable, a not-leader answer, down); a slow
    # answer is waited for up to the whole client timeout, not cut
    # after the per-attempt timeout (a paused member holds the stream's keepalives until it
    # resumes). A follower's redirect stands for its forwarding, so a stream opened while a
    # member led stays on it when it is cut off or paused (the lease workload).
    sticky_keepalives = False

    def __init__(self, cluster: SimCluster, client_id: int, timeout: float, *,
                 attempt_timeout: float | None = None, pin: int | None = None) -> None:
        self.cluster = cluster
        self.pin = pin  # every request goes to this member only (the final per-member reads)
        self.client_id = client_id
        self.timeout = timeout
        # The run's per-attempt timeout (--swarm draws one): every attempt, read or write, is
        # cut off there and retried elsewhere (a paused member cannot hold it). Without it a
        # workload may still set attempt_timeout, which bounds only a write's proposal.
        self._cut_attempts = attempt_timeout is not None
        if attempt_timeout is not None:
            self.attempt_timeout = attempt_timeout
        self._seq = itertools.count(1)
        self._preferred: int | None = None
        self._stream: int | None = None  # the member of the keepalive stream (sticky_keepalives)
        self._rotation = itertools.count(client_id)

    def adopt_stream(self, other: SimClient) -> None:
        """Go on with ``other``'s keepalive stream: the member it last reached (the harness
        retires a process after an op without an answer; the holder's stream is the same)."""
        self._stream = other._stream

    def _pick(self, tried: set[int], *, read: bool = False) -> int:
        if self.pin is not None:
            return self.pin
        ids = self.cluster.node_ids
        if read:  # reads go to the client's own member first (client_id is process + 1)
            home = home_member(self.client_id - 1, ids)
            if home not in tried:
                return home
        if self._preferred is not None and self._preferred not in tried and self._preferred in ids:
            return self._preferred
        for _ in range(len(ids)):
            i = ids[next(self._rotation) % len(ids)]
            if i not in tried:
                return i
        tried.clear()
        return ids[next(self._rotation) % len(ids)]

    async def _hop(self) -> None:
        cluster = self.cluster
        sched = cluster.scheduler
        when = cluster.net.quantize(sched.current_time() + cluster._client_rng.uniform(*cluster.client_latency))
        await sched.sleep_until(when)

    async def _backoff(self, attempt: int) -> None:
        """The pause before retrying elsewhere: longer with each attempt, at most 0.3 s."""
        await self.cluster.scheduler.sleep(min(0.05 * attempt, 0.3))

    async def call(self, fn: Callable[[Node, float], Awaitable[T]], *, write: bool, sticky: bool = False) -> T:
        """Send one request until a definite answer or the timeout (see reference.client);
        ``sticky``: a read on the client's keepalive stream: to the stream's member first (the
        one that answered the last such call), not to the client's own member, and no
        per-attempt cut (``sticky_keepalives``)."""
        deadline = trio.current_time() + self.timeout
        # a stream does not move on a slow answer: only an error, or the whole timeout, ends it
        cut = self._cut_attempts and not sticky
        maybe_applied = False
        last: WireError | None = None
        tried: set[int] = set()
        attempt = 0
        while trio.current_time() < deadline:
            if sticky and self._stream in tried:
                self._stream = None  # the stream's member failed it: the next one opens elsewhere
            attempt += 1
            if sticky and self.pin is None and self._stream is not None and self._stream not in tried \
                    and self._stream in self.cluster.node_ids:
                target = self._stream
            else:
                target = self._pick(tried, read=not write and not sticky)
            await self._hop()
            slot = self.cluster.slots.get(target)
            if slot is None or slot.state in ("down", "removed") or slot.node is None:
                tried.add(target)  # connection refused: nothing was sent
                if self._preferred == target:
                    self._preferred = None
                await self._backoff(attempt)
                continue
            node = slot.node
            remaining = deadline - trio.current_time()
            if cut and self.attempt_timeout is not None:
                remaining = min(remaining, self.attempt_timeout)
            try:
                with trio.fail_after(max(remaining, 0.0)):
                    await slot.clock.wait_running()  # a paused node holds the request
                    result = await fn(node, remaining)
            except trio.TooSlowError:
                maybe_applied = True
                if not cut:
                    break
                tried.add(target)  # retry elsewhere, same request id
                if self._preferred == target:
                    self._preferred = None
                continue
            except WireError as err:
                last = err
                if err.code is ErrorCode.NOT_LEADER:
                    tried.add(target)
                    self._preferred = err.leader if err.leader else None
                    if not err.leader:
                        await self._backoff(attempt)
                    continue
                if err.code in (ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE):
                    maybe_applied = maybe_applied or (write and slot.node is not node) or \
                        err.code is ErrorCode.TIMEOUT or "stopped" in err.message
                    tried.add(target)
                    if self._preferred == target:
                        self._preferred = None
                    await self._backoff(attempt)
                    continue
                if err.code.indeterminate and write:
                    raise Indeterminate(err.code, err.message, cause=err) from None
                raise Failed(err.code, err.message, cause=err) from None
            if slot.node is not node:  # the node died before the reply left
                maybe_applied = True
                continue
            await self._hop()
            self._preferred = target
            if sticky:
                self._stream = target
            return result
        if write and maybe_applied:
            raise Indeterminate(ErrorCode.TIMEOUT, "no definite reply within the timeout", cause=last)
        code = last.code if last is not None else ErrorCode.UNAVAILABLE
        raise Failed(code, last.message if last is not None else "no node answered", cause=last)

    async def _write(self, request: kvr.Message) -> Any:
        seq = next(self._seq)  # one seq across every retry: the session table dedups
        per_attempt = self.attempt_timeout

        async def go(node: Node, remaining: float) -> Any:
            timeout = remaining if per_attempt is None else min(remaining, per_attempt)
            return await node.propose(request, self.client_id, seq, timeout=timeout)

        return await self.call(go, write=True)

    async def get(self, key: bytes, *, range_end: bytes = b"", revision: int = 0, limit: int = 0,
                  serializable: bool = False, keys_only: bool = False,
                  count_only: bool = False) -> kvr.RangeResponse:
        req = kvr.RangeRequest(key=key, range_end=range_end, revision=revision, limit=limit,
                               serializable=serializable, keys_only=keys_only, count_only=count_only)

        async def go(node: Node, remaining: float) -> kvr.RangeResponse:
            return await node.range(req, timeout=remaining)

        return await self.call(go, write=False)

    async def lease_keepalive(self, lease_id: int) -> int:
        return (await self.lease_keepalive_response(lease_id)).ttl

    async def lease_keepalive_response(self, lease_id: int) -> kvr.LeaseKeepAliveResponse:
        async def go(node: Node, remaining: float) -> kvr.LeaseKeepAliveResponse:
            return await node.lease_keepalive(lease_id)

        return await self.call(go, write=False, sticky=self.sticky_keepalives)

    async def lease_time_to_live(self, lease_id: int, keys: bool = False) -> kvr.LeaseTimeToLiveResponse:
        async def go(node: Node, remaining: float) -> kvr.LeaseTimeToLiveResponse:
            return await node.lease_time_to_live(kvr.LeaseTimeToLiveRequest(id=lease_id, keys=keys))

        return await self.call(go, write=False)

    @contextlib.asynccontextmanager
    async def watch(self, key: bytes, *, range_end: bytes = b"", start_revision: int = 0,
                    prev_kv: bool = False, progress_notify: bool = False,
                    filters: Sequence[kvr.FilterType] = ()) -> AsyncIterator[SimWatch]:
        """A watch on one live member, chosen as reads are (the client's own member first):
        no resume across members — the stream ends if its member stops or drops it, and the
        caller decides whether to open another. ``request_progress()`` asks for a progress
        notification on the stream."""
        req = kvr.WatchCreateRequest(key=key, range_end=range_end, start_revision=start_revision,
                                     prev_kv=prev_kv, progress_notify=progress_notify,
                                     filters=list(filters))
        tried: set[int] = set()
        await self._hop()
        for _ in range(len(self.cluster.node_ids)):
            target = self._pick(tried, read=True)
            slot = self.cluster.slots.get(target)
            if slot is not None and slot.state == "up" and slot.node is not None:
                break
            tried.add(target)
        else:
            raise Failed(ErrorCode.UNAVAILABLE, "no member is up")
        assert slot.node is not None
        with slot.node.watch(req) as stream:
            yield SimWatch(stream, target)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


class SimWatch:
    """One watch stream of a ``SimClient``: iterate its responses; ``member`` is the member
    serving it."""

    def __init__(self, stream: Any, member: int) -> None:
        self._stream = stream
        self._it = stream.__aiter__()
        self.member = member

    def __aiter__(self) -> SimWatch:
        return self

    async def __anext__(self) -> kvr.WatchResponse:
        resp: kvr.WatchResponse = await self._it.__anext__()
        return resp

    def request_progress(self) -> None:
        self._stream.request_progress()


def traffic_note(cluster: SimCluster) -> str:
    """Where a run that spent its wall budget was spending it, as far as the network shows:
    messages sent per simulated second and the links holding the most undelivered messages
    (a store that loops, e.g. a leader and a follower answering each other forever, shows as
    a message rate far above a healthy run's few hundred per second)."""
    elapsed = max(1e-9, trio.current_time() - cluster.origin)
    links: collections.Counter[tuple[int, int]] = collections.Counter()
    for _, _, entry in cluster.scheduler._heap:
        if isinstance(entry, functools.partial) and entry.func == cluster.net._arrive:
            links[(int(entry.args[0]), int(entry.args[1]))] += 1
    top = ", ".join(f"n{a}->n{b} {k}" for (a, b), k in links.most_common(3))
    return (f" ({cluster.net.stats.sent} messages sent, {cluster.net.stats.sent / elapsed:.0f} per simulated"
            f" second; undelivered: {top or 'none'})")


# A simulated run whose wall budget is spent normally stops once the simulation is idle (see
# ``execute_sim``'s ``on_idle``). Code that never yields -- a store looping in its own
# Python, holding the one thread every member shares -- never lets it be idle, and the run
# would hang past any budget. The watchdog (SIGALRM, main thread only) fires this long after
# the budget: its handler raises ``StoreStuck`` in whatever code is running, names where it
# was (the innermost store frame, and its member), and the run ends with what it recorded.
def stuck_grace(budget: float) -> float:
    return min(30.0, max(5.0, budget / 2))


class StoreStuck(BaseException):
    """Raised by the watchdog's signal handler in the code that held the thread (a
    BaseException, as KeyboardInterrupt is: the store's own ``except Exception`` must not
    swallow it)."""

    def __init__(self, seconds: float, where: str, member: int | None) -> None:
        who = f"member n{member}" if member is not None else "the simulation"
        super().__init__(f"{who} never yielded: {seconds:g}s of wall time after the run began "
                         f"(its wall budget and a grace), it was still running {where}")
        self.seconds = seconds
        self.where = where
        self.member = member


def _stuck_at(frame: Any) -> tuple[str, int | None]:
    """The innermost frame in the store's code (``reference/``) or else the innermost one,
    as ``file:line in function``, and the id of the first member (a ``Node`` or a Raft core
    as some frame's ``self``) on the way out."""
    innermost = frame
    store_frame = None
    member = None
    f = frame
    while f is not None:
        path = f.f_code.co_filename.replace("\\", "/")
        if store_frame is None and "/reference/" in path:
            store_frame = f
        owner = f.f_locals.get("self")
        if member is None and isinstance(owner, (Node, RaftCore)):
            member = owner.id
        f = f.f_back
    at = store_frame or innermost
    if at is None:
        return "an unknown place", member
    path = at.f_code.co_filename.replace("\\", "/")
    short = path.split("/kvcheck/", 1)[-1] if "/kvcheck/" in path else path
    return f"{short}:{at.f_lineno} in {at.f_code.co_name}", member


class StuckWatchdog:
    """``with StuckWatchdog(seconds):`` -- after ``seconds`` of wall time, raise ``StoreStuck``
    in the main thread wherever it is (a SIGALRM interval timer; the old handler and timer
    come back on exit)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._old: Any = None
        self._old_timer = (0.0, 0.0)
        self._entered = 0.0

    def _fire(self, signum: int, frame: Any) -> None:
        where, member = _stuck_at(frame)
        raise StoreStuck(self.seconds, where, member)

    def __enter__(self) -> StuckWatchdog:
        self._old = signal.signal(signal.SIGALRM, self._fire)
        self._old_timer = signal.setitimer(signal.ITIMER_REAL, self.seconds)
        self._entered = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._old)
        delay, interval = self._old_timer
        if delay > 0:  # someone else's alarm (e.g. a test timeout): what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(0.001, delay - (time.monotonic() - self._entered)), interval)


def find_exception(exc: BaseException, kind: type[BaseException]) -> Any:
    """``exc`` or the first ``kind`` inside it (exception groups, causes, contexts)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, kind):
            return e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return None


def discard_abandoned_run() -> None:
    """The abandoned ``trio.run``'s tasks are coroutines that never finished: collect them now,
    their finalizers' complaints (no async context any more) silenced, instead of a screenful
    of tracebacks at some later collection."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        gc.collect()
    finally:
        sys.unraisablehook = hook


def stuck_execution(cluster: SimCluster, recorders: list[Recorder], stuck: StoreStuck,
                    records: list[tuple[float | None, str]]) -> Execution:
    """What a run the watchdog ended recorded: its history so far (open operations stay
    open: their outcome is unknown), why it stopped, and the stuck member as an internal
    finding (a store that loops is itself reported)."""
    from kvcheck.workloads.execution import Execution

    ops = recorders[0].ops if recorders else []
    t = ops[-1].time / 1e9 if ops and ops[-1].time is not None else 0.0
    member = stuck.member if stuck.member is not None else 0
    node = f"node {stuck.member}" if stuck.member is not None else "the store"
    cluster.findings.append((t, member, f"{node} stuck: never yielded, in {stuck.where}"))
    info: dict[str, Any] = {"stopped": f"watchdog: {stuck}", "stuck": {"member": stuck.member, "where": stuck.where},
                            "findings": group_findings(cluster.findings), "bugs": cluster.bugs_fired(),
                            "simulated_seconds": round(t, 3)}
    with contextlib.suppress(Exception):
        info["nodes"] = cluster.status()
    cluster_log = "".join(f"{'-' if at is None else f'{at - cluster.origin:.4f}':>10} {text}\n"
                          for at, text in records)
    return Execution(ops, info, {**cluster.logs(), "cluster.log": LOG_HEADER + cluster_log})


def execute_sim(config: RunConfig, progress: Progress) -> Execution:
    """Run ``config`` in the simulation: one deterministic ``trio.run`` in virtual time."""
    from kvcheck.workloads.execution import Execution

    records: list[tuple[float | None, str]] = []
    clusters: list[SimCluster] = []

    class Capture(logging.Handler):
        """The store's log records, stamped with simulated time instead of wall time: a
        member's events (records carrying ``member``, INFO and up) into that member's log,
        and every warning and up into cluster.log."""

        def emit(self, record: logging.LogRecord) -> None:
            member = getattr(record, "member", None)
            slot = clusters[0].slots.get(member) if clusters and isinstance(member, int) else None
            if slot is not None:
                prefix = "" if record.levelno == logging.INFO else f"{record.levelname} "
                clusters[0]._log(slot, prefix + record.getMessage())
            if record.levelno < logging.WARNING:
                return
            try:
                now: float | None = trio.current_time()
            except RuntimeError:
                now = None
            records.append((now, f"{record.levelname:7} {record.name}: {record.getMessage()}"))

    logger = logging.getLogger("kvcheck")
    handler = Capture(logging.INFO)
    saved = (logger.level, logger.propagate)

    budget = config.wall_budget
    wall_deadline = time.monotonic() + budget if budget else math.inf
    stop: list[str] = []  # why the run was stopped early (set once)
    interrupted: list[bool] = []
    recorders: list[Recorder] = []  # the run's recorder, for a run the watchdog ends (below)

    async def main() -> Execution:
        cluster = SimCluster(config)
        clusters.append(cluster)
        recorder: Recorder | None = None
        run_scope = trio.CancelScope()

        def on_idle() -> None:
            """The simulation is idle: stop the run (keeping what was recorded) if Ctrl-C was
            pressed or the wall-clock budget is spent."""
            if stop or not (interrupted or time.monotonic() > wall_deadline):
                return
            at = f"at {trio.current_time() - cluster.origin:.3f}s simulated"
            stop.append(f"interrupted (Ctrl-C) {at}" if interrupted else
                        f"wall-clock budget of {budget:g}s spent {at}" + traffic_note(cluster))
            run_scope.cancel()
            cluster.net.halted = True  # no more traffic: what is left of the run ends quickly

        cluster.scheduler.on_idle = on_idle
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            # Let the cluster elect a leader before the workload's time 0.
            await cluster.wait_healthy(config.startup_timeout)
            recorder = Recorder(trio.current_time)
            recorders.append(recorder)
            cluster.origin = trio.current_time()
            rec = recorder
            rec.on_event(lambda op: progress.event(op, rec.now()))
            info: dict[str, Any] = {}
            with run_scope:
                info = await drive(cluster, config, recorder)
            if stop:
                info["stopped"] = stop[0]
            info["nodes"] = cluster.status()
            info["network"] = dataclasses.asdict(cluster.net.stats)
            info["findings"] = group_findings(cluster.findings)
            info["bugs"] = cluster.bugs_fired()
            if any(v > 0 for v in cluster.perturber.p.values()):
                info["perturbations"] = dict(cluster.perturber.stats)
            info["simulated_seconds"] = round(recorder.now(), 3)
            nursery.cancel_scope.cancel()
        cluster_log = "".join(f"{'-' if t is None else f'{t - cluster.origin:.4f}':>10} {text}\n"
                              for t, text in records)
        return Execution(recorder.ops, info, {**cluster.logs(), "cluster.log": LOG_HEADER + cluster_log})

    def on_sigint(signum: int, frame: Any) -> None:
        if interrupted:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        interrupted.append(True)

    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the store's records go to the run's logs, not the terminal
    main_thread = threading.current_thread() is threading.main_thread()
    old_sigint = signal.signal(signal.SIGINT, on_sigint) if main_thread else None
    watchdog = StuckWatchdog(budget + stuck_grace(budget)) if main_thread and budget else None
    try:
        with deterministic_trio(config.seed), watchdog or contextlib.nullcontext():
            execution = trio.run(main, clock=SimScheduler())
    except BaseException as exc:
        stuck = find_exception(exc, StoreStuck)
        if stuck is None or not clusters:
            raise
        execution = stuck_execution(clusters[0], recorders, stuck, records)
        stuck.__traceback__ = stuck.__context__ = stuck.__cause__ = None  # frames of the dead run
        del stuck
        clusters.clear()  # the dead run's cluster holds its tasks
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, old_sigint)
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    if "stuck" in execution.info:
        discard_abandoned_run()
    if interrupted:
        execution.info.setdefault("stopped", "interrupted (Ctrl-C)")
        execution.info["interrupted"] = True
    return execution
