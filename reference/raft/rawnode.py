"""RawNode: the one object a driver talks to, and its Config and Status.

The driver feeds inputs (``tick``, ``step``, ``propose``, ``propose_conf_change``,
``read_index``, ``transfer_leader``, ``report_unreachable``, ``report_snapshot``) and
collects outputs with ``has_ready``/``ready``/``advance`` under the Ready contract written
on ``Ready`` (kvcheck.reference.raft.types): persist, then send, then apply, then advance.
It is the synchronous half of etcd-io/raft's RawNode: no goroutines/tasks, no clock (time
is ``tick``), no I/O, and all randomness from ``Config.rng``, so the same inputs in the same
order give the same outputs.

Starting a node:
- a fresh member of a new cluster: ``RawNode(config, MemoryStorage())`` then
  ``bootstrap(peers)`` on every initial member with the same peer list;
- a restart: rebuild the MemoryStorage from the WAL (``apply_snapshot``, ``set_hard_state``,
  ``append``) and create the RawNode from it; leave ``Config.applied`` at 0 (the snapshot
  index) so entries after the snapshot, including conf changes, are applied again;
- a node joining an existing cluster: an empty MemoryStorage and no bootstrap; the leader
  catches it up (entries or a snapshot) once the cluster has added it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from kvcheck.reference.bugs import NO_BUGS, Bugs
from kvcheck.reference.raft.storage import MemoryStorage
from kvcheck.reference.raft.types import (
    ConfChange,
    ConfState,
    HardState,
    InvariantHook,
    Message,
    Proposed,
    Ready,
    Role,
    raise_violation,
)


@dataclass(frozen=True)
class Config:
    """How one node behaves. Ticks are the unit of time; the driver decides their length.

    ``election_tick``: a follower that hears nothing from a leader for a randomized
    [election_tick, 2*election_tick) ticks campaigns. ``heartbeat_tick``: a leader sends
    heartbeats this often. ``pre_vote``: campaign only after a pre-vote round shows a
    majority would vote (keeps a rejoining node from bumping the term). ``check_quorum``: a
    leader that has not heard from a quorum within an election timeout steps down, and
    followers that heard from a leader within it ignore votes (leader lease).
    ``max_inflight_msgs``: MsgApp sent to a follower in replicate state before an ack.
    ``max_size_per_msg``: bytes of entries per MsgApp (at least one entry is sent).
    ``applied``: the index the state machine has applied (0: the storage snapshot's index).
    ``rng``: the only source of randomness (None: ``random.Random(id)``).
    ``bugs``: injected bug switches (off by default).
    ``on_invariant_violation``: called with an InvariantViolation when a safety invariant
    breaks; the default raises it.
    """

    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_inflight_msgs: int = 256
    max_size_per_msg: int = 1 << 20
    applied: int = 0
    rng: random.Random | None = field(default=None, compare=False)
    bugs: Bugs = NO_BUGS
    on_invariant_violation: InvariantHook = field(default=raise_violation, compare=False)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        if self.id <= 0:
            raise ValueError(f"Config.id must be a positive node id, got {self.id}")
        if self.heartbeat_tick <= 0:
            raise ValueError(f"Config.heartbeat_tick must be > 0, got {self.heartbeat_tick}")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError(
                f"Config.election_tick ({self.election_tick}) must be greater than "
                f"heartbeat_tick ({self.heartbeat_tick})"
            )
        if self.max_inflight_msgs <= 0:
            raise ValueError(f"Config.max_inflight_msgs must be > 0, got {self.max_inflight_msgs}")
        if self.max_size_per_msg <= 0:
            raise ValueError(f"Config.max_size_per_msg must be > 0, got {self.max_size_per_msg}")
        if self.applied < 0:
            raise ValueError(f"Config.applied must be >= 0, got {self.applied}")


@dataclass(frozen=True)
class ProgressStatus:
    """The leader's view of one follower."""

    match: int
    next: int
    state: str  # "probe" | "replicate" | "snapshot"
    recent_active: bool
    is_learner: bool
    inflight: int
    pending_snapshot: int


@dataclass(frozen=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    leader: int
    role: Role
    conf_state: ConfState
    lead_transferee: int
    progress: dict[int, ProgressStatus]  # only on the leader; empty otherwise

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit)


class RawNode:
    """A Raft node as a synchronous state machine. See the module doc and ``Ready``."""

    def __init__(self, config: Config, storage: MemoryStorage) -> None:
        raise NotImplementedError("behaviour lands in the next commit")

    def bootstrap(self, peers: list[int]) -> None:
        """Start a new cluster: the log gets one ADD_NODE conf change entry per peer (term 1,
        committed), applied to the configuration at once. Call on every initial member with
        the same peers, on an empty storage. The entries appear in the next Ready as entries
        to persist and committed entries to apply like any other."""
        raise NotImplementedError

    def tick(self) -> None:
        """Advance logical time by one tick (elections, heartbeats, check quorum)."""
        raise NotImplementedError

    def campaign(self) -> None:
        """Start an election now (with pre-vote when configured), as if the timeout fired."""
        raise NotImplementedError

    def step(self, msg: Message) -> None:
        """Handle a message from a peer. Raises StepError for a message that must not come
        from the network (not addressed to this node)."""
        raise NotImplementedError

    def propose(self, data: bytes) -> Proposed:
        """Append a NORMAL entry to the leader's log. Raises ProposalDropped (with the
        leader hint) on a non-leader or during a leader transfer."""
        raise NotImplementedError

    def propose_conf_change(self, cc: ConfChange) -> Proposed:
        """Append a CONF_CHANGE entry. Raises ProposalDropped when not leader, when another
        conf change is not yet applied, before the leader's first entry of its term is
        applied, or when the change is invalid (removing the last voter, demoting a voter)."""
        raise NotImplementedError

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change to the configuration (the application calls this
        for each CONF_CHANGE entry it applies). Returns the new ConfState (for snapshots)."""
        raise NotImplementedError

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read point. A ReadState(index, ctx) appears in a later
        Ready once leadership is confirmed by a heartbeat round (and after the leader has
        committed an entry of its term); serve the read once applied >= index. A follower
        forwards the request to the leader. ``ctx`` must be unique among pending requests.
        Raises ProposalDropped when no leader is known."""
        raise NotImplementedError

    def transfer_leader(self, to: int) -> None:
        """Ask the leader to hand leadership to voter ``to`` (TimeoutNow once ``to`` is up to
        date). A follower forwards the request to the leader."""
        raise NotImplementedError

    def report_unreachable(self, node_id: int) -> None:
        """The transport failed to send to ``node_id``: fall back to probing it."""
        raise NotImplementedError

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        """The result of sending a snapshot (a MsgSnap) to ``node_id``."""
        raise NotImplementedError

    def has_ready(self) -> bool:
        """Whether ``ready()`` has work. False while a Ready is outstanding (not advanced)."""
        raise NotImplementedError

    def ready(self) -> Ready:
        """The next batch of work. Call ``advance(rd)`` before the next ``ready()``."""
        raise NotImplementedError

    def advance(self, rd: Ready) -> None:
        """Report that ``rd`` was handled per the contract (persisted, sent, applied)."""
        raise NotImplementedError

    def status(self) -> Status:
        raise NotImplementedError
