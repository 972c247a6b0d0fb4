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
from kvcheck.reference.raft.raft import Raft
from kvcheck.reference.raft.storage import MemoryStorage
from kvcheck.reference.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
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
        config.validate()
        self.config = config
        self.storage = storage
        self.raft = Raft(
            config.id,
            storage,
            election_tick=config.election_tick,
            heartbeat_tick=config.heartbeat_tick,
            pre_vote=config.pre_vote,
            check_quorum=config.check_quorum,
            max_inflight=config.max_inflight_msgs,
            max_size_per_msg=config.max_size_per_msg,
            applied=config.applied,
            rng=config.rng if config.rng is not None else random.Random(config.id),
            bugs=config.bugs,
            on_violation=config.on_invariant_violation,
        )
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._outstanding: Ready | None = None

    @property
    def id(self) -> int:
        return self.raft.id

    def bootstrap(self, peers: list[int]) -> None:
        """Start a new cluster: the log gets one ADD_NODE conf change entry per peer (term 1,
        committed), applied to the configuration at once. Call on every initial member with
        the same peers, on an empty storage. The entries appear in the next Ready as entries
        to persist and committed entries to apply like any other."""
        if not peers:
            raise ValueError("bootstrap needs at least one peer")
        if len(set(peers)) != len(peers) or any(p <= 0 for p in peers):
            raise ValueError(f"bootstrap peers must be distinct positive ids, got {peers}")
        if self.storage.last_index() != 0 or not self.storage.hard_state().is_empty():
            raise ValueError("bootstrap needs an empty storage (this node has state: restart it)")
        if self.raft.log.last_index() != 0:
            raise ValueError("bootstrap called twice")
        r = self.raft
        r.become_follower(1, NONE)
        ccs = [ConfChange(ConfChangeType.ADD_NODE, p) for p in peers]
        ents = [Entry(1, i + 1, EntryType.CONF_CHANGE, cc.encode()) for i, cc in enumerate(ccs)]
        r.log.append(ents)
        r.log.commit_to(len(ents))
        for cc in ccs:
            r.apply_conf_change(cc)

    def tick(self) -> None:
        """Advance logical time by one tick (elections, heartbeats, check quorum)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (with pre-vote when configured), as if the timeout fired."""
        self.raft.hup(transfer=False)

    def step(self, msg: Message) -> None:
        """Handle a message from a peer. Raises StepError for a message that must not come
        from the network (not addressed to this node, no sender)."""
        self.raft.check_step_allowed(msg)
        self.raft.step(msg)

    def propose(self, data: bytes) -> Proposed:
        """Append a NORMAL entry to the leader's log. Raises ProposalDropped (with the
        leader hint) on a non-leader or during a leader transfer."""
        return self.raft.propose(EntryType.NORMAL, data)

    def propose_conf_change(self, cc: ConfChange) -> Proposed:
        """Append a CONF_CHANGE entry. Raises ProposalDropped when not leader, when another
        conf change is not yet applied, before the leader's first entry of its term is
        applied, or when the change is invalid (removing the last voter, demoting a voter)."""
        return self.raft.propose_conf_change(cc)

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change to the configuration (the application calls this
        for each CONF_CHANGE entry it applies). Returns the new ConfState (for snapshots)."""
        return self.raft.apply_conf_change(cc)

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read point. A ReadState(index, ctx) appears in a later
        Ready once leadership is confirmed by a heartbeat round (and after the leader has
        committed an entry of its term); serve the read once applied >= index. A follower
        forwards the request to the leader. ``ctx`` must be unique among pending requests
        (ValueError otherwise). Raises ProposalDropped when no leader is known. A request
        can be lost (leader change, message loss): the caller times out and retries."""
        self.raft.read_index(ctx)

    def transfer_leader(self, to: int) -> None:
        """Ask the leader to hand leadership to voter ``to`` (TimeoutNow once ``to`` is up to
        date). A follower forwards the request to the leader. Raises ProposalDropped when no
        leader is known. Proposals are refused while the transfer runs (at most an election
        timeout)."""
        self.raft.transfer_leader(to)

    def report_unreachable(self, node_id: int) -> None:
        """The transport failed to send to ``node_id``: fall back to probing it."""
        self.raft.report_unreachable(node_id)

    def report_snapshot(self, node_id: int, ok: bool) -> None:
        """The result of sending a snapshot (a MsgSnap) to ``node_id``."""
        self.raft.report_snapshot(node_id, ok)

    def has_ready(self) -> bool:
        """Whether ``ready()`` has work. False while a Ready is outstanding (not advanced)."""
        if self._outstanding is not None:
            return False
        # The cheap checks first: the driver asks this after every input and every Ready.
        r = self.raft
        log = r.log
        if r.msgs or r.read_states or log.unstable.entries or log.unstable.snapshot is not None:
            return True
        if r.pending_bcast and r.role is Role.LEADER:
            return True
        prev_soft = self._prev_soft
        if r.lead != prev_soft.leader or r.role is not prev_soft.role:
            return True
        if self._hard_state_changed() and not r.hard_state().is_empty():
            return True
        return log.has_next_committed_entries()

    def _hard_state_changed(self) -> bool:
        """Whether term, vote or commit moved since the last Ready (no HardState built)."""
        r, prev = self.raft, self._prev_hard
        return r.term != prev.term or r.vote != prev.vote or r.log.committed != prev.commit

    def ready(self) -> Ready:
        """The next batch of work. Call ``advance(rd)`` before the next ``ready()``."""
        if self._outstanding is not None:
            raise RuntimeError("ready() called again before advance() of the previous Ready")
        r = self.raft
        r.flush_proposals()
        prev_hard, prev_soft = self._prev_hard, self._prev_soft
        hard_changed = self._hard_state_changed()
        hs = r.hard_state() if hard_changed else prev_hard
        entries = list(r.log.unstable.entries)
        snapshot = r.log.unstable.snapshot
        rd = Ready(
            soft_state=prev_soft if (r.lead, r.role) == (prev_soft.leader, prev_soft.role) else r.soft_state(),
            hard_state=hs if hard_changed and not hs.is_empty() else None,
            entries=entries,
            snapshot=snapshot,
            committed_entries=r.log.next_committed_entries(),
            messages=r.msgs,
            read_states=r.read_states,
            must_sync=bool(entries) or snapshot is not None
            or hs.term != prev_hard.term or hs.vote != prev_hard.vote,
        )
        r.msgs = []
        r.read_states = []
        self._prev_soft = rd.soft_state
        if rd.hard_state is not None:
            self._prev_hard = rd.hard_state
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """Report that ``rd`` was handled per the contract (persisted, sent, applied)."""
        if rd is not self._outstanding:
            raise RuntimeError("advance() must be given the Ready returned by the last ready()")
        self._outstanding = None
        r = self.raft
        if rd.snapshot is not None:
            r.log.stable_snap_to(rd.snapshot.meta.index)
            r.log.applied_to(rd.snapshot.meta.index)
        r.persisted(rd.entries)
        if rd.committed_entries:
            r.log.applied_to(rd.committed_entries[-1].index)

    def status(self) -> Status:
        r = self.raft
        progress: dict[int, ProgressStatus] = {}
        if r.role is Role.LEADER:
            for nid, pr in r.prs.items():
                progress[nid] = ProgressStatus(
                    match=pr.match, next=pr.next, state=pr.state.value,
                    recent_active=pr.recent_active, is_learner=pr.is_learner,
                    inflight=pr.inflights.count(), pending_snapshot=pr.pending_snapshot,
                )  # fmt: skip
        return Status(
            id=r.id, term=r.term, vote=r.vote, commit=r.log.committed, applied=r.log.applied,
            leader=r.lead, role=r.role, conf_state=r.conf_state(),
            lead_transferee=r.lead_transferee, progress=progress,
        )  # fmt: skip
