"""A synchronous in-memory cluster of RawNodes, for transcripts, property tests and regress.

``Cluster`` plays the driver for every node, following the Ready contract literally:
``process_ready`` persists (into the node's MemoryStorage, which stands for its disk), then
queues the messages on the network, then applies committed entries to a tiny state machine
(the list of applied entries), then advances. A crash throws away the RawNode and the state
machine (everything not in storage); a restart rebuilds both from storage. The network is a
list of in-flight messages that tests deliver in order, out of order, twice or never, with
partitions that drop messages between groups.

``check_invariants`` verifies the Raft safety properties over everything observed so far:
election safety (one leader per term), log matching, leader completeness and state machine
safety. It raises ``SafetyViolation`` naming the property and the nodes involved.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgpack

from kvcheck.reference.bugs import NO_BUGS, Bugs
from kvcheck.reference.raft.rawnode import Config, RawNode
from kvcheck.reference.raft.storage import MemoryStorage
from kvcheck.reference.raft.types import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    InvariantHook,
    Message,
    MessageType,
    Ready,
    Role,
    StorageError,
    raise_violation,
)


class SafetyViolation(AssertionError):
    """A Raft safety property does not hold for what the cluster did."""


@dataclass
class SimNode:
    id: int
    storage: MemoryStorage
    raw: RawNode | None  # None while crashed
    incarnation: int = 0
    # The state machine: every applied entry (index, term, type, data) since the snapshot it
    # was restored from, and the membership after each applied index.
    applied: list[Entry] = field(default_factory=list)
    snapshot_entries: list[Entry] = field(default_factory=list)
    conf_state: ConfState = field(default_factory=ConfState)
    conf_history: dict[int, ConfState] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.raw is not None

    def state_entries(self) -> list[Entry]:
        """The whole applied sequence: restored snapshot contents plus applied since."""
        return self.snapshot_entries + self.applied

    def applied_index(self) -> int:
        ents = self.state_entries()
        return ents[-1].index if ents else self.storage.snapshot().meta.index


def encode_state(entries: Iterable[Entry]) -> bytes:
    out: bytes = msgpack.packb([e.to_wire() for e in entries])
    return out


def decode_state(data: bytes) -> list[Entry]:
    if not data:
        return []
    return [Entry.from_wire(x) for x in msgpack.unpackb(data)]


class Cluster:
    def __init__(
        self,
        *,
        seed: int = 0,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_inflight_msgs: int = 256,
        max_size_per_msg: int = 1 << 20,
        bugs: Bugs = NO_BUGS,
        on_invariant_violation: InvariantHook = raise_violation,
    ) -> None:
        self.seed = seed
        self.election_tick = election_tick
        self.heartbeat_tick = heartbeat_tick
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.max_inflight_msgs = max_inflight_msgs
        self.max_size_per_msg = max_size_per_msg
        self.bugs = bugs
        self.on_invariant_violation = on_invariant_violation
        self.nodes: dict[int, SimNode] = {}
        self.network: list[Message] = []
        self.cut: set[tuple[int, int]] = set()  # (from, to) links that drop messages
        # What the cluster has been seen to do, for the safety checks.
        self.leaders_by_term: dict[int, int] = {}
        self.applied_at: dict[int, tuple[int, int, bytes, int]] = {}  # index -> entry, node
        self.committed: dict[int, Entry] = {}
        self.committed_seen_at_term: dict[int, int] = {}
        self._recorded_upto: dict[int, int] = {}  # node -> committed prefix already recorded
        self.on_apply: Callable[[int, Entry], None] | None = None

    # --- membership of the simulation ---

    def _config(self, nid: int, incarnation: int) -> Config:
        return Config(
            id=nid,
            election_tick=self.election_tick,
            heartbeat_tick=self.heartbeat_tick,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
            max_inflight_msgs=self.max_inflight_msgs,
            max_size_per_msg=self.max_size_per_msg,
            rng=random.Random(f"{self.seed}/{nid}/{incarnation}"),
            bugs=self.bugs,
            on_invariant_violation=self.on_invariant_violation,
        )

    def add_node(self, nid: int, bootstrap: list[int] | None) -> SimNode:
        """A new node with empty storage; ``bootstrap`` peers for an initial member, None for
        a node that will join an existing cluster."""
        if nid in self.nodes:
            raise ValueError(f"node {nid} already exists")
        storage = MemoryStorage()
        raw = RawNode(self._config(nid, 0), storage)
        if bootstrap is not None:
            raw.bootstrap(bootstrap)
        node = SimNode(nid, storage, raw)
        self.nodes[nid] = node
        return node

    def add_nodes(self, count: int) -> list[int]:
        """Bootstrap ``count`` new nodes as one cluster of voters."""
        start = max(self.nodes, default=0) + 1
        ids = list(range(start, start + count))
        for nid in ids:
            self.add_node(nid, ids)
        return ids

    def raw(self, nid: int) -> RawNode:
        node = self.nodes.get(nid)
        if node is None:
            raise KeyError(f"no node {nid}")
        if node.raw is None:
            raise RuntimeError(f"node {nid} is down")
        return node.raw

    def up_ids(self) -> list[int]:
        return [nid for nid in sorted(self.nodes) if self.nodes[nid].up]

    # --- the driver loop for one node ---

    def process_ready(self, nid: int) -> Ready | None:
        """One turn of the Ready contract for node ``nid``; None if it had nothing to do."""
        node = self.nodes[nid]
        raw = node.raw
        if raw is None or not raw.has_ready():
            return None
        rd = raw.ready()
        # 1. persist
        if rd.snapshot is not None:
            node.storage.apply_snapshot(rd.snapshot)
        node.storage.append(rd.entries)
        if rd.hard_state is not None:
            node.storage.set_hard_state(rd.hard_state)
        # 2. send
        for m in rd.messages:
            self.send(m)
        # 3. apply
        if rd.snapshot is not None:
            node.snapshot_entries = decode_state(rd.snapshot.data)
            node.applied = []
            node.conf_state = rd.snapshot.meta.conf_state
            node.conf_history = {rd.snapshot.meta.index: node.conf_state}
        for e in rd.committed_entries:
            self._apply(node, raw, e)
        # 4. advance
        raw.advance(rd)
        self.observe()
        return rd

    def _apply(self, node: SimNode, raw: RawNode, e: Entry) -> None:
        if e.type is EntryType.CONF_CHANGE:
            node.conf_state = raw.apply_conf_change(ConfChange.decode(e.data))
        node.conf_history[e.index] = node.conf_state
        node.applied.append(e)
        seen = self.applied_at.get(e.index)
        mine = (e.term, int(e.type), e.data, node.id)
        if seen is None:
            self.applied_at[e.index] = mine
        elif seen[:3] != mine[:3]:
            raise SafetyViolation(
                f"state machine safety: node {node.id} applied {e.term}/{e.index} {e.data!r} "
                f"but node {seen[3]} applied {seen[0]}/{e.index} {seen[2]!r}"
            )
        if self.on_apply is not None:
            self.on_apply(node.id, e)

    # --- network ---

    def send(self, m: Message) -> None:
        if (m.from_, m.to) in self.cut:
            self.dropped(m)
            return
        self.network.append(m)

    def dropped(self, m: Message) -> None:
        """A message was lost. Like a real transport, report a failed snapshot send."""
        if m.type is MessageType.SNAP:
            sender = self.nodes.get(m.from_)
            if sender is not None and sender.raw is not None:
                sender.raw.report_snapshot(m.to, ok=False)

    def deliver(self, m: Message) -> bool:
        """Step ``m`` into its recipient; False if dropped (link cut, node down/unknown)."""
        node = self.nodes.get(m.to)
        if (m.from_, m.to) in self.cut or node is None or node.raw is None:
            self.dropped(m)
            return False
        node.raw.step(m)
        self.observe()
        return True

    def take_messages(self, to: int | None = None) -> list[Message]:
        """Remove and return the queued messages (for ``to`` only, if given)."""
        if to is None:
            taken, self.network = self.network, []
            return taken
        taken = [m for m in self.network if m.to == to]
        self.network = [m for m in self.network if m.to != to]
        return taken

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut every link between different groups (nodes in no group are cut off)."""
        self.heal()
        group_of: dict[int, int] = {}
        for gi, group in enumerate(groups):
            for nid in group:
                group_of[nid] = gi
        for a in sorted(self.nodes):
            for b in sorted(self.nodes):
                if a != b and group_of.get(a, -1 - a) != group_of.get(b, -1 - b):
                    self.cut.add((a, b))

    def isolate(self, nid: int) -> None:
        for other in sorted(self.nodes):
            if other != nid:
                self.cut.add((nid, other))
                self.cut.add((other, nid))

    def heal(self) -> None:
        self.cut.clear()

    # --- faults ---

    def crash(self, nid: int) -> None:
        """Lose everything that is not in the node's storage; in-flight messages to it drop."""
        node = self.nodes[nid]
        node.raw = None
        node.applied = []
        node.snapshot_entries = []
        for m in self.take_messages(nid):
            self.dropped(m)

    def restart(self, nid: int) -> None:
        node = self.nodes[nid]
        if node.raw is not None:
            raise RuntimeError(f"node {nid} is up")
        node.incarnation += 1
        snap = node.storage.snapshot()
        node.snapshot_entries = decode_state(snap.data)
        node.applied = []
        node.conf_state = snap.meta.conf_state
        node.conf_history = {snap.meta.index: node.conf_state}
        node.raw = RawNode(self._config(nid, node.incarnation), node.storage)
        self._recorded_upto.pop(nid, None)
        self.observe()

    # --- driving ---

    def tick(self, nid: int, n: int = 1) -> None:
        raw = self.raw(nid)
        for _ in range(n):
            raw.tick()
        self.observe()

    def stabilize(self, max_rounds: int = 10_000) -> None:
        """Process Readies and deliver messages until nothing moves."""
        for _ in range(max_rounds):
            moved = False
            for nid in self.up_ids():
                if self.process_ready(nid) is not None:
                    moved = True
            for m in self.take_messages():
                self.deliver(m)
                moved = True
            if not moved:
                return
        raise RuntimeError(f"cluster did not stabilize within {max_rounds} rounds")

    def leader(self) -> int | None:
        """The live leader with the highest term, if any."""
        best: tuple[int, int] | None = None
        for nid in self.up_ids():
            r = self.raw(nid).raft
            if r.role is Role.LEADER and (best is None or r.term > best[0]):
                best = (r.term, nid)
        return None if best is None else best[1]

    def elect(self, nid: int) -> None:
        """Make ``nid`` campaign and run the cluster until it settles."""
        self.raw(nid).campaign()
        self.stabilize()

    def compact(self, nid: int, index: int) -> None:
        """Snapshot node ``nid``'s state machine at applied ``index`` and compact its log."""
        node = self.nodes[nid]
        if index > node.applied_index():
            raise ValueError(f"node {nid} has applied only {node.applied_index()}, not {index}")
        data = encode_state(e for e in node.state_entries() if e.index <= index)
        cs = node.conf_history.get(index)
        if cs is None:
            cs = next(
                (node.conf_history[i] for i in sorted(node.conf_history, reverse=True) if i <= index),
                node.conf_state,
            )
        node.storage.create_snapshot(index, cs, data)
        node.storage.compact(index)

    # --- safety checks ---

    def _log_of(self, node: SimNode) -> dict[int, Entry]:
        """The node's log as far as it is readable (after its snapshot)."""
        if node.raw is not None:
            log = node.raw.raft.log
            try:
                ents = log.all_entries()
            except StorageError:
                ents = []
        else:
            ents = node.storage.all_entries()
        return {e.index: e for e in ents}

    def observe(self) -> None:
        """Record leaders and committed entries as they happen (called after every action)."""
        max_term = max((self.raw(n).raft.term for n in self.up_ids()), default=0)
        for nid in self.up_ids():
            r = self.raw(nid).raft
            if r.role is Role.LEADER:
                other = self.leaders_by_term.setdefault(r.term, nid)
                if other != nid:
                    raise SafetyViolation(
                        f"election safety: nodes {other} and {nid} both led term {r.term}"
                    )
            log = r.log
            lo = max(log.first_index(), self._recorded_upto.get(nid, 0) + 1)
            hi = log.committed
            for i in range(lo, hi + 1):
                try:
                    e = log.slice(i, i + 1)[0]
                except (StorageError, IndexError):
                    continue
                c = self.committed.setdefault(i, e)
                self.committed_seen_at_term.setdefault(i, max_term)
                if c != e:
                    raise SafetyViolation(
                        f"state machine safety: node {nid} committed {e.term}/{i} but "
                        f"{c.term}/{i} was committed before"
                    )
            self._recorded_upto[nid] = max(self._recorded_upto.get(nid, 0), hi)

    def check_invariants(self) -> None:
        self.observe()
        logs = {nid: self._log_of(node) for nid, node in sorted(self.nodes.items())}
        # Committed entries agree with every log that has a same-index entry of that term,
        # and no two nodes committed different entries at one index.
        for nid in self.up_ids():
            log = self.raw(nid).raft.log
            for i, e in logs[nid].items():
                if i > log.committed:
                    break
                c = self.committed.get(i)
                if c is not None and c != e:
                    raise SafetyViolation(
                        f"state machine safety: node {nid} has {e.term}/{i} committed but "
                        f"{c.term}/{i} was committed before"
                    )
        # Log matching: same index and term -> identical up to there.
        ids = sorted(logs)
        for a_pos, a in enumerate(ids):
            for b in ids[a_pos + 1 :]:
                la, lb = logs[a], logs[b]
                common = sorted(set(la) & set(lb), reverse=True)
                top = next((i for i in common if la[i].term == lb[i].term), None)
                if top is None:
                    continue
                for i in common:
                    if i <= top and la[i] != lb[i]:
                        raise SafetyViolation(
                            f"log matching: nodes {a} and {b} agree on term {la[top].term} at "
                            f"{top} but differ at {i}: {la[i]} vs {lb[i]}"
                        )
        # Leader completeness: a leader of a later term holds every committed entry.
        for nid in self.up_ids():
            r = self.raw(nid).raft
            if r.role is not Role.LEADER:
                continue
            first = r.log.first_index()
            for i, c in self.committed.items():
                if i < first or r.term <= self.committed_seen_at_term[i]:
                    continue
                mine = logs[nid].get(i)
                if mine != c:
                    raise SafetyViolation(
                        f"leader completeness: leader {nid} of term {r.term} has {mine} at {i}, "
                        f"committed entry is {c}"
                    )
