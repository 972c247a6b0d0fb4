"""The values the Raft core exchanges with its driver: entries, states, messages, Ready.

Everything here is a frozen dataclass of plain data so that it can be compared, hashed,
printed in transcripts and converted to msgpack-able tuples (``to_wire``/``from_wire``) for
the TCP transport and the simulation. The shapes follow etcd-io/raft's raftpb: an ``Entry``
carries opaque bytes (the core never looks inside, except for CONF_CHANGE entries, whose data
is an encoded ``ConfChange``), a ``Message`` is one struct for every message type with the
fields that type uses, and a ``Ready`` is the batch of work the driver must do.

Node ids are positive integers; ``NONE`` (0) means "no node" (no vote, no known leader).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

NONE = 0
"""The "no node" id: no vote cast, no leader known."""


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class ConfChangeType(IntEnum):
    ADD_NODE = 0  # add a voter, or promote an existing learner to voter
    REMOVE_NODE = 1  # remove a voter or a learner
    ADD_LEARNER = 2  # add a non-voting member that receives the log


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class MessageType(IntEnum):
    """Message types. Only the "remote" ones may be passed to ``RawNode.step``."""

    APP = 1  # leader -> follower: entries after (index, log_term), commit
    APP_RESP = 2  # follower -> leader: index = last matching index, or reject + hint
    VOTE = 3  # candidate -> voter: term, (index, log_term) = candidate's last entry
    VOTE_RESP = 4
    PRE_VOTE = 5  # pre-candidate -> voter: term = the term it would campaign in
    PRE_VOTE_RESP = 6
    SNAP = 7  # leader -> follower: install ``snapshot``
    HEARTBEAT = 8  # leader -> follower: commit = min(match, leader commit), context = read ctx
    HEARTBEAT_RESP = 9
    TIMEOUT_NOW = 10  # leader -> transfer target: campaign now, skipping pre-vote and lease
    READ_INDEX = 11  # follower -> leader: a ReadIndex request, context = the caller's ctx
    READ_INDEX_RESP = 12  # leader -> follower: index = the read index, context = ctx
    TRANSFER_LEADER = 13  # follower -> leader: forwarded transfer_leader, from_ = the target


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def to_wire(self) -> list[Any]:
        return [self.term, self.index, int(self.type), self.data]

    @classmethod
    def from_wire(cls, raw: Any) -> Entry:
        if not isinstance(raw, list | tuple) or len(raw) != 4:
            raise MalformedMessage(f"entry must be [term, index, type, data], got {raw!r:.80}")
        term, index, etype, data = raw
        _check_uint("entry term", term)
        _check_uint("entry index", index)
        if etype not in (0, 1):
            raise MalformedMessage(f"entry type must be 0 or 1, got {etype!r}")
        if not isinstance(data, bytes):
            raise MalformedMessage(f"entry data must be bytes, got {type(data).__name__}")
        return cls(term, index, EntryType(etype), data)


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable about a node besides its log: term, vote and commit."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def is_empty(self) -> bool:
        return self == EMPTY_HARD_STATE


EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True, slots=True)
class ConfState:
    """The membership: voters and learners, each sorted ascending."""

    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()

    def to_wire(self) -> list[Any]:
        return [list(self.voters), list(self.learners)]

    @classmethod
    def from_wire(cls, raw: Any) -> ConfState:
        if not isinstance(raw, list | tuple) or len(raw) != 2:
            raise MalformedMessage(f"conf state must be [voters, learners], got {raw!r:.80}")
        voters, learners = raw
        for name, ids in (("voters", voters), ("learners", learners)):
            if not isinstance(ids, list | tuple):
                raise MalformedMessage(f"conf state {name} must be a list, got {ids!r:.80}")
            for i in ids:
                _check_uint(f"conf state {name} id", i)
        return cls(tuple(voters), tuple(learners))


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The application's state as of ``meta.index``; ``data`` is opaque to the core."""

    meta: SnapshotMeta = field(default_factory=SnapshotMeta)
    data: bytes = b""

    def is_empty(self) -> bool:
        return self.meta.index == 0

    def to_wire(self) -> list[Any]:
        return [self.meta.index, self.meta.term, self.meta.conf_state.to_wire(), self.data]

    @classmethod
    def from_wire(cls, raw: Any) -> Snapshot:
        if not isinstance(raw, list | tuple) or len(raw) != 4:
            raise MalformedMessage(
                f"snapshot must be [index, term, conf_state, data], got {raw!r:.80}"
            )
        index, term, cs, data = raw
        _check_uint("snapshot index", index)
        _check_uint("snapshot term", term)
        if not isinstance(data, bytes):
            raise MalformedMessage(f"snapshot data must be bytes, got {type(data).__name__}")
        return cls(SnapshotMeta(index, term, ConfState.from_wire(cs)), data)


EMPTY_SNAPSHOT = Snapshot()


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change; carried in a CONF_CHANGE entry as ``encode()`` bytes."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        out: bytes = msgpack.packb([int(self.type), self.node_id, self.context])
        return out

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        try:
            raw = msgpack.unpackb(data)
        except Exception as exc:
            raise MalformedMessage(f"conf change data is not msgpack: {exc}") from exc
        if not isinstance(raw, list) or len(raw) != 3:
            raise MalformedMessage(f"conf change must be [type, node_id, context], got {raw!r:.80}")
        ctype, node_id, context = raw
        if ctype not in (0, 1, 2):
            raise MalformedMessage(f"conf change type must be 0, 1 or 2, got {ctype!r}")
        _check_uint("conf change node id", node_id)
        if node_id == NONE:
            raise MalformedMessage("conf change node id must be positive")
        if not isinstance(context, bytes):
            raise MalformedMessage("conf change context must be bytes")
        return cls(ConfChangeType(ctype), node_id, context)


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message. Fields a type does not use keep their defaults.

    ``index``/``log_term``: for APP the entry the new entries follow; for VOTE/PRE_VOTE the
    candidate's last entry; for APP_RESP the follower's last matching index (or, when
    ``reject``, the rejected ``index`` with ``reject_hint``/``log_term`` pointing at where the
    follower's log could match). ``commit``: the sender's commit index. ``context``: the
    ReadIndex request context (HEARTBEAT, HEARTBEAT_RESP, READ_INDEX, READ_INDEX_RESP) or
    ``b"transfer"`` on votes of a leader transfer.
    """

    type: MessageType
    to: int
    from_: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""

    def to_wire(self) -> list[Any]:
        """Plain msgpack-able data; ``Message.from_wire`` inverts it exactly."""
        return [
            int(self.type), self.to, self.from_, self.term, self.log_term, self.index,
            [e.to_wire() for e in self.entries], self.commit,
            None if self.snapshot is None else self.snapshot.to_wire(),
            self.reject, self.reject_hint, self.context,
        ]  # fmt: skip

    @classmethod
    def from_wire(cls, raw: Any) -> Message:
        """Rebuild a message from ``to_wire`` data; raises MalformedMessage naming the problem."""
        if not isinstance(raw, list | tuple) or len(raw) != 12:
            raise MalformedMessage(f"message must be a list of 12 fields, got {raw!r:.80}")
        mtype, to, from_, term, log_term, index, ents, commit, snap, reject, hint, ctx = raw
        try:
            mt = MessageType(mtype)
        except (ValueError, TypeError):
            raise MalformedMessage(f"unknown message type {mtype!r}") from None
        for name, value in (("to", to), ("from", from_), ("term", term), ("log_term", log_term),
                            ("index", index), ("commit", commit), ("reject_hint", hint)):
            _check_uint(f"message {name}", value)
        if not isinstance(ents, list | tuple):
            raise MalformedMessage(f"message entries must be a list, got {ents!r:.80}")
        if not isinstance(reject, bool):
            raise MalformedMessage(f"message reject must be a bool, got {reject!r}")
        if not isinstance(ctx, bytes):
            raise MalformedMessage(f"message context must be bytes, got {type(ctx).__name__}")
        return cls(
            mt, to, from_, term, log_term, index, tuple(Entry.from_wire(e) for e in ents),
            commit, None if snap is None else Snapshot.from_wire(snap), reject, hint, ctx,
        )


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: serve the read of ``request_ctx`` once applied >= ``index``."""

    index: int
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the driver may want to know: who leads and this node's role."""

    leader: int
    role: Role


@dataclass(slots=True)
class Ready:
    """A batch of work from ``RawNode.ready()``. The contract, in this order:

    1. Persist: if ``snapshot`` is set, save it (``MemoryStorage.apply_snapshot`` plus the
       application's own durable copy); append ``entries`` to the durable log (they may
       overwrite a suffix: entries from index ``entries[0].index`` on replace what was
       there); save ``hard_state`` if set. If ``must_sync`` is true, fsync before step 2.
       (``must_sync`` is false only when the sole change is the commit index, which can be
       re-learned after a crash.)
    2. Send ``messages``. Only now: a vote or an acknowledgement refers to state that step 1
       made durable. This core takes the simple safe rule for leaders too: a leader's own
       entries count towards commit only after ``advance`` reports them persisted (it does
       not send MsgApp in parallel with its own fsync).
    3. Apply ``snapshot`` (if any) to the state machine, then ``committed_entries`` in
       order. They may include entries from this Ready's ``entries`` (persisted in step 1).
       For a CONF_CHANGE entry, decode ``ConfChange.decode(e.data)`` and call
       ``RawNode.apply_conf_change``. Serve each ``read_states`` item once the applied
       index reaches its ``index``.
    4. Call ``RawNode.advance(rd)`` with this Ready.

    ``soft_state`` is always the current one (not only on change). ``hard_state`` is None
    when unchanged since the last Ready.
    """

    soft_state: SoftState
    hard_state: HardState | None = None
    entries: list[Entry] = field(default_factory=list)
    snapshot: Snapshot | None = None
    committed_entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    must_sync: bool = False


@dataclass(frozen=True, slots=True)
class Proposed:
    """Where a proposal landed in the leader's log. It is committed iff the entry applied at
    ``index`` has this ``term``; an entry of another term there means it was lost."""

    term: int
    index: int


class RaftError(Exception):
    """Base of the errors the core raises to its caller."""


class ProposalDropped(RaftError):
    """The proposal (or read/transfer request) was not accepted: not the leader, a leader
    transfer in progress, a conf change already pending, ... ``leader`` is the known leader
    (NONE if unknown), for a "not leader" reply with a hint."""

    def __init__(self, reason: str, leader: int = NONE) -> None:
        super().__init__(f"{reason} (leader hint: {leader or 'unknown'})")
        self.reason = reason
        self.leader = leader


class StepError(RaftError):
    """``step`` was given a message it must not handle (a local type, not addressed to
    this node, from an unknown peer where that matters)."""


class MalformedMessage(RaftError, ValueError):
    """Wire data that does not decode into a message/entry/snapshot/conf change."""


class StorageError(RaftError):
    """Base of MemoryStorage errors."""


class Compacted(StorageError):
    """The requested index is at or below the compacted prefix of the log."""


class Unavailable(StorageError):
    """The requested index is beyond the last entry of the log."""


class SnapshotOutOfDate(StorageError):
    """A snapshot older than the one already held was offered."""


class InvariantViolation(RaftError):
    """An internal safety invariant broke (e.g. a committed entry would be overwritten).

    ``Config.on_invariant_violation`` decides what happens: by default it is raised (unit
    tests); the node driver logs it and records it as a finding of the run."""

    def __init__(self, node_id: int, invariant: str, detail: str) -> None:
        super().__init__(f"node {node_id}: {invariant}: {detail}")
        self.node_id = node_id
        self.invariant = invariant
        self.detail = detail


def raise_violation(v: InvariantViolation) -> None:
    """The default ``Config.on_invariant_violation``: raise it."""
    raise v


InvariantHook = Callable[[InvariantViolation], None]


def _check_uint(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedMessage(f"{name} must be a non-negative integer, got {value!r:.40}")
