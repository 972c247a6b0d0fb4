"""The Raft protocol itself: roles, elections, replication, commit, ReadIndex, membership.

``Raft`` is driven by ``RawNode`` (which adds the Ready bookkeeping) and follows the Raft
paper (Ongaro & Ousterhout) and etcd-io/raft's choices:

- Elections: randomized timeouts in [election_tick, 2*election_tick) ticks drawn from the
  injected rng; PreVote (a pre-candidate asks "would you vote for me in term+1?" without
  changing anyone's term); CheckQuorum (a leader steps down when fewer than a quorum of
  voters were heard from in an election timeout, and a follower that heard from its leader
  within that time ignores vote requests: the leader lease). Votes are granted to a
  candidate whose log is at least as up to date (last term, then last index).
- Replication: MsgApp carry entries after (index, log_term); a follower truncates only from
  the first entry whose term conflicts, commits min(leader commit, last new index), and on
  mismatch answers with a hint (the last index whose term is <= the leader's term there) so
  the leader skips a whole term per round trip. Progress/Inflights bound what is in flight.
- Commit: the leader commits the highest index replicated on a quorum of voters only if that
  entry is from its current term (Figure 8); its own entries count once ``advance`` reports
  them persisted.
- ReadIndex: record the commit index, confirm leadership with a heartbeat round carrying the
  request context, answer once a quorum acked; requests wait until the leader has committed
  an entry of its term. A follower forwards requests to the leader.
- Membership: one change at a time (ADD_NODE, ADD_LEARNER, REMOVE_NODE), proposed only when
  every earlier conf change, and the leader's first entry of its term, is applied.
- Leader transfer: catch the target up, then MsgTimeoutNow; it campaigns at once.

Safety invariants are reported through ``Config.on_invariant_violation``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from kvcheck.reference.bugs import Bugs
from kvcheck.reference.raft.log import RaftLog
from kvcheck.reference.raft.progress import Progress, ProgressState
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
    InvariantViolation,
    Message,
    MessageType,
    ProposalDropped,
    Proposed,
    ReadState,
    Role,
    Snapshot,
    SoftState,
    StepError,
    StorageError,
)

MT = MessageType
TRANSFER_CONTEXT = b"transfer"


class _ReadRequest:
    """A pending ReadIndex: the commit index when it arrived, who asked, who acked."""

    __slots__ = ("acks", "ctx", "frm", "index")

    def __init__(self, index: int, ctx: bytes, frm: int) -> None:
        self.index = index
        self.ctx = ctx
        self.frm = frm
        self.acks: dict[int, bool] = {}


class Raft:
    def __init__(
        self,
        node_id: int,
        storage: MemoryStorage,
        *,
        election_tick: int,
        heartbeat_tick: int,
        pre_vote: bool,
        check_quorum: bool,
        max_inflight: int,
        max_size_per_msg: int,
        applied: int,
        rng: random.Random,
        bugs: Bugs,
        on_violation: InvariantHook,
    ) -> None:
        self.id = node_id
        self.election_timeout = election_tick
        self.heartbeat_timeout = heartbeat_tick
        self.pre_vote = pre_vote
        self.check_quorum = check_quorum
        self.max_inflight = max_inflight
        self.max_size_per_msg = max_size_per_msg
        self.rng = rng
        self.bugs = bugs
        self.on_violation = on_violation
        self.log = RaftLog(storage, self.report, bugs)

        hs, cs = storage.initial_state()
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.role = Role.FOLLOWER
        self.voters: list[int] = []
        self.learners: list[int] = []
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_queue: list[_ReadRequest] = []  # confirmed in order
        self.pending_reads: list[Message] = []  # ReadIndex waiting for a current-term commit
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.pending_bcast = False  # proposals appended since the last MsgApp round
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = election_tick

        self._set_conf_state(cs)
        if not hs.is_empty():
            self._load_hard_state(hs)
        if applied > self.log.applied:
            # The application's state already includes these (Config.applied); entries after
            # it are delivered again. Below the snapshot index it means the snapshot's.
            self.log.applied_to(min(applied, self.log.committed))
        self.become_follower(self.term, NONE)

    # --- reporting ---

    def report(self, invariant: str, detail: str) -> None:
        self.on_violation(InvariantViolation(self.id, invariant, detail))

    # --- state snapshots for RawNode ---

    def soft_state(self) -> SoftState:
        return SoftState(self.lead, self.role)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.committed)

    def conf_state(self) -> ConfState:
        return ConfState(tuple(self.voters), tuple(self.learners))

    def _load_hard_state(self, hs: HardState) -> None:
        if hs.commit < self.log.committed or hs.commit > self.log.last_index():
            self.report(
                "saved commit within the log",
                f"hard state commit {hs.commit} outside [{self.log.committed}, "
                f"{self.log.last_index()}]",
            )
        self.log.committed = max(self.log.committed, min(hs.commit, self.log.last_index()))
        self.term = hs.term
        self.vote = hs.vote

    # --- configuration ---

    def _set_conf_state(self, cs: ConfState) -> None:
        self.voters = sorted(cs.voters)
        self.learners = sorted(cs.learners)
        next_index = self.log.last_index() + 1
        prs: dict[int, Progress] = {}
        for nid in sorted({*self.voters, *self.learners}):
            pr = self.prs.get(nid)
            if pr is None:
                pr = Progress(next_index, self.max_inflight, nid in self.learners)
                if nid == self.id:
                    pr.match = self.log.stable_last_index()
            pr.is_learner = nid in self.learners
            prs[nid] = pr
        self.prs = prs

    def promotable(self) -> bool:
        return self.id in self.voters

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed change. Deterministic on every member; invalid changes (checked
        at proposal time) are no-ops here so that all members agree."""
        voters = list(self.voters)
        learners = list(self.learners)
        nid = cc.node_id
        if cc.type is ConfChangeType.ADD_NODE:
            if nid in learners:
                learners.remove(nid)
            if nid not in voters:
                voters.append(nid)
        elif cc.type is ConfChangeType.ADD_LEARNER:
            if nid not in voters and nid not in learners:
                learners.append(nid)
        elif cc.type is ConfChangeType.REMOVE_NODE:
            if nid in voters and len(voters) > 1:
                voters.remove(nid)
            if nid in learners:
                learners.remove(nid)
        before = set(self.prs)
        self._set_conf_state(ConfState(tuple(sorted(voters)), tuple(sorted(learners))))
        if self.role is Role.LEADER:
            if self.id not in self.voters:
                # A removed leader steps down. Rather than leave the others waiting out
                # their leases, it hands off to the most up-to-date remaining voter (if that
                # one has the whole log) the way a leader transfer does.
                last = self.log.last_index()
                heir = max(
                    (nid for nid in self.voters if self.prs[nid].match == last),
                    key=lambda nid: (self.prs[nid].match, -nid),
                    default=NONE,
                )
                self.become_follower(self.term, NONE)
                if heir != NONE:
                    self.send(Message(MT.TIMEOUT_NOW, heir, self.id, self.term))
            else:
                if self.lead_transferee != NONE and self.lead_transferee not in self.voters:
                    self.lead_transferee = NONE
                # Fewer voters may mean a lower quorum: commit what now has one.
                if self.maybe_commit():
                    self.bcast_append()
                else:
                    for nid in self.prs:
                        if nid != self.id and self.prs[nid].match < self.log.last_index():
                            # Probe a new member at once rather than at the next heartbeat.
                            self.maybe_send_append(nid, send_if_empty=nid not in before)
        return self.conf_state()

    def has_unapplied_conf_changes(self) -> bool:
        if self.log.applied >= self.log.committed:
            return False
        try:
            ents = self.log.slice(
                max(self.log.applied + 1, self.log.first_index()), self.log.committed + 1
            )
        except StorageError:
            return False
        return any(e.type is EntryType.CONF_CHANGE for e in ents)

    # --- sending ---

    def send(self, m: Message) -> None:
        self.msgs.append(m)

    def maybe_send_append(self, to: int, send_if_empty: bool = True) -> bool:
        """Send a MsgApp (or a MsgSnap if the entries it needs are compacted) to ``to``."""
        pr = self.prs[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.log.term(prev_index)
            ents = self.log.entries_from(pr.next, self.max_size_per_msg)
        except StorageError:
            return self.send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        self.send(Message(MT.APP, to, self.id, self.term, log_term=prev_term, index=prev_index,
                          entries=tuple(ents), commit=self.log.committed))
        if pr.state is ProgressState.REPLICATE:
            if ents:
                last = ents[-1].index
                pr.optimistic_update(last)
                pr.inflights.add(last)
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False  # it may be down; wait until it answers a heartbeat
        snap = self.log.snapshot()
        if snap.is_empty():
            return False  # nothing compacted into a snapshot yet: cannot happen with
            # MemoryStorage (compaction needs a snapshot), kept as a guard
        self.send(Message(MT.SNAP, to, self.id, self.term, snapshot=snap))
        pr.become_snapshot(snap.meta.index)
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Never tell a follower to commit past what it is known to have: its log beyond
        # match may be a stale tail of an older term that a heartbeat would commit.
        commit = min(self.prs[to].match, self.log.committed)
        if self.bugs.fire("follower_commit_overrun", self.log.committed > commit):
            commit = self.log.committed  # BUG: the follower commits a tail nobody verified
        self.send(Message(MT.HEARTBEAT, to, self.id, self.term, commit=commit, context=ctx))

    def flush_proposals(self) -> None:
        if self.pending_bcast:
            self.pending_bcast = False
            if self.role is Role.LEADER:
                self.bcast_append()

    def bcast_append(self) -> None:
        self.pending_bcast = False
        for nid in self.prs:
            if nid != self.id:
                self.maybe_send_append(nid)

    def bcast_heartbeat(self, ctx: bytes = b"") -> None:
        for nid in self.prs:
            if nid != self.id:
                self.send_heartbeat(nid, ctx)

    # --- role changes ---

    def reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )
        self.lead_transferee = NONE
        self.votes = {}
        last = self.log.last_index()
        for nid, pr in self.prs.items():
            fresh = Progress(last + 1, self.max_inflight, pr.is_learner)
            if nid == self.id:
                fresh.match = self.log.stable_last_index()
            self.prs[nid] = fresh
        self.pending_conf_index = 0
        self.read_queue = []
        self.pending_reads = []

    def become_follower(self, term: int, lead: int) -> None:
        self.reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def become_pre_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise AssertionError("leader cannot become pre-candidate")
        # Term and vote stay: a pre-vote changes nobody's state.
        self.votes = {}
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE

    def become_candidate(self) -> None:
        if self.role is Role.LEADER:
            raise AssertionError("leader cannot become candidate")
        self.reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE

    def become_leader(self) -> None:
        if self.role is Role.FOLLOWER:
            raise AssertionError("follower cannot become leader without an election")
        self.reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        me = self.prs[self.id]
        me.become_replicate()
        me.recent_active = True
        # An empty entry of the new term: once it commits, everything before it is committed
        # (the leader cannot commit older entries by counting, Figure 8), and conf changes and
        # ReadIndex may proceed. Until it is applied, no conf change may be proposed.
        self.log.append([Entry(self.term, self.log.last_index() + 1)])
        self.pending_conf_index = self.log.last_index()

    # --- elections ---

    def tick(self) -> None:
        if self.role is Role.LEADER:
            self.tick_heartbeat()
        else:
            self.tick_election()

    def tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.hup(transfer=False)

    def tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.check_quorum_active()
            if self.role is Role.LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE  # the transfer did not finish in time
        if self.role is not Role.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.bcast_heartbeat()

    def check_quorum_active(self) -> None:
        active = sum(
            1 for nid in self.voters if nid == self.id or self.prs[nid].recent_active
        )
        for nid, pr in self.prs.items():
            if nid != self.id:
                pr.recent_active = False
        if active < self.quorum():
            self.become_follower(self.term, NONE)

    def hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER:
            return
        if not self.promotable():
            return
        if self.has_unapplied_conf_changes():
            return  # the configuration we would campaign in may be stale
        if transfer:
            self.campaign(MT.VOTE, transfer=True)
        elif self.pre_vote:
            self.campaign(MT.PRE_VOTE, transfer=False)
        else:
            self.campaign(MT.VOTE, transfer=False)

    def campaign(self, vote_type: MessageType, transfer: bool) -> None:
        if vote_type is MT.PRE_VOTE:
            self.become_pre_candidate()
            vote_term = self.term + 1
        else:
            self.become_candidate()
            vote_term = self.term
        if self.poll(self.id, vote_type, True) == "won":
            if vote_type is MT.PRE_VOTE:
                self.campaign(MT.VOTE, transfer=False)
            else:
                self.become_leader()
            return
        ctx = TRANSFER_CONTEXT if transfer else b""
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        for nid in self.voters:
            if nid != self.id:
                self.send(Message(vote_type, nid, self.id, vote_term, log_term=last_term,
                                  index=last_index, context=ctx))

    def poll(self, frm: int, vote_type: MessageType, granted: bool) -> str:
        """Record a vote; return "won", "lost" or "pending"."""
        self.votes.setdefault(frm, granted)
        yes = sum(1 for nid in self.voters if self.votes.get(nid) is True)
        no = sum(1 for nid in self.voters if self.votes.get(nid) is False)
        if yes >= self.quorum():
            return "won"
        if no > len(self.voters) - self.quorum():
            return "lost"
        return "pending"

    # --- step ---

    def step(self, m: Message) -> None:
        if m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                force = m.context == TRANSFER_CONTEXT
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    return  # we heard from a leader recently: do not let it be disrupted
            if m.type is MT.PRE_VOTE:
                pass  # a pre-vote request never changes our term
            elif m.type is MT.PRE_VOTE_RESP and not m.reject:
                pass  # granted at term+1; our term moves when we campaign for real
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if self.bugs.fire("stale_term_append", m.type is MT.APP and self.role is Role.FOLLOWER):
                return self.handle_append(m)  # BUG: a deposed leader's entries accepted
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A leader from an older term (e.g. after a partition): tell it our term so it
                # steps down; with pre-vote or check quorum it cannot learn it from a vote.
                self.send(Message(MT.APP_RESP, m.from_, self.id, self.term))
            elif m.type is MT.PRE_VOTE:
                self.send(Message(MT.PRE_VOTE_RESP, m.from_, self.id, self.term, reject=True))
            return

        if m.type in (MT.VOTE, MT.PRE_VOTE):
            self.handle_vote_request(m)
        elif self.role is Role.LEADER:
            self.step_leader(m)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self.step_candidate(m)
        else:
            self.step_follower(m)

    def handle_vote_request(self, m: Message) -> None:
        resp = MT.VOTE_RESP if m.type is MT.VOTE else MT.PRE_VOTE_RESP
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            # Answer in the request's term so a pre-candidate counts the grant.
            self.send(Message(resp, m.from_, self.id, m.term))
            if m.type is MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self.send(Message(resp, m.from_, self.id, self.term, reject=True))

    def step_candidate(self, m: Message) -> None:
        my_resp = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
        if m.type is MT.APP:
            self.become_follower(m.term, m.from_)
            self.handle_append(m)
        elif m.type is MT.HEARTBEAT:
            self.become_follower(m.term, m.from_)
            self.handle_heartbeat(m)
        elif m.type is MT.SNAP:
            self.become_follower(m.term, m.from_)
            self.handle_snapshot(m)
        elif m.type is my_resp:
            result = self.poll(m.from_, m.type, not m.reject)
            if result == "won":
                if self.role is Role.PRE_CANDIDATE:
                    self.campaign(MT.VOTE, transfer=False)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif result == "lost":
                self.become_follower(self.term, NONE)

    def step_follower(self, m: Message) -> None:
        if m.type is MT.APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self.handle_append(m)
        elif m.type is MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self.handle_heartbeat(m)
        elif m.type is MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self.handle_snapshot(m)
        elif m.type is MT.TIMEOUT_NOW:
            self.hup(transfer=True)
        elif m.type is MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))
        elif m.type is MT.TRANSFER_LEADER and self.lead != NONE:
            self.send(Message(MT.TRANSFER_LEADER, self.lead, m.from_, self.term))
        elif m.type is MT.READ_INDEX and self.lead != NONE:
            self.send(Message(MT.READ_INDEX, self.lead, m.from_, self.term, context=m.context))

    def step_leader(self, m: Message) -> None:
        pr = self.prs.get(m.from_)
        if m.type is MT.READ_INDEX:
            self.handle_read_index(m)
            return
        if m.type is MT.TRANSFER_LEADER:
            self.handle_transfer_leader(m.from_)
            return
        if pr is None:
            return  # from a node no longer (or not yet) in the configuration
        if m.type is MT.APP_RESP:
            self.handle_append_response(m, pr)
        elif m.type is MT.HEARTBEAT_RESP:
            pr.recent_active = True
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first_one()
            if pr.match < self.log.last_index():
                self.maybe_send_append(m.from_)
            if m.context:
                self.handle_read_ack(m.from_, m.context)

    def handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                # The follower's log has term log_term at reject_hint: skip to our last
                # entry of a term <= that, where the logs may match.
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            probing, next_before = pr.state is ProgressState.PROBE, pr.next
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                # A probe rejection that does not move next back rejects the very index the
                # follower acknowledged: a stale copy (answered once, as before), or a
                # follower that lost entries it acknowledged. From the second such rejection
                # without progress on, the next heartbeat response re-probes: answering each
                # at once made every duplicated copy one more never-ending probe loop (a
                # message storm that grows with every duplicate).
                if probing and pr.next == next_before:
                    pr.noop_rejects += 1
                    if pr.noop_rejects > 1:
                        return
                self.maybe_send_append(m.from_)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= self.log.first_index():
            pr.become_probe()
            pr.become_replicate()
        elif pr.state is ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)
        if self.maybe_commit():
            self.bcast_append()
        elif was_paused:
            self.maybe_send_append(m.from_)
        while self.maybe_send_append(m.from_, send_if_empty=False):
            pass
        if m.from_ == self.lead_transferee and pr.match == self.log.last_index():
            self.send(Message(MT.TIMEOUT_NOW, m.from_, self.id, self.term))

    def maybe_commit(self) -> bool:
        """Commit the highest index a quorum of voters has, if it is of the current term."""
        matches = sorted((self.prs[nid].match for nid in self.voters), reverse=True)
        if not matches:
            return False
        mci = matches[self.quorum() - 1]
        term = self.term
        if self.bugs.fire("figure8_commit", mci > self.log.committed and self.log.term_or_zero(mci) != term):
            term = self.log.term_or_zero(mci)  # BUG: counts replicas of an old-term entry
        committed = self.log.maybe_commit(mci, term)
        if committed and self.pending_reads and self.committed_in_term():
            pending, self.pending_reads = self.pending_reads, []
            for req in pending:
                self.handle_read_index(req)
        return committed

    def committed_in_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    # --- follower handlers ---

    def handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self.send(Message(MT.APP_RESP, m.from_, self.id, self.term, index=self.log.committed))
            return
        last_new = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self.send(Message(MT.APP_RESP, m.from_, self.id, self.term, index=last_new))
            return
        hint_index = min(m.index, self.log.last_index())
        hint_index = self.log.find_conflict_by_term(hint_index, m.log_term)
        hint_term = self.log.term_or_zero(hint_index)
        self.send(Message(MT.APP_RESP, m.from_, self.id, self.term, index=m.index, reject=True,
                          reject_hint=hint_index, log_term=hint_term))

    def handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self.send(Message(MT.HEARTBEAT_RESP, m.from_, self.id, self.term, context=m.context))

    def handle_snapshot(self, m: Message) -> None:
        if m.snapshot is None:
            return
        if self.restore(m.snapshot):
            self.send(Message(MT.APP_RESP, m.from_, self.id, self.term,
                              index=self.log.last_index()))
        else:
            self.send(Message(MT.APP_RESP, m.from_, self.id, self.term, index=self.log.committed))

    def restore(self, snap: Snapshot) -> bool:
        meta = snap.meta
        cs = meta.conf_state
        member = self.id in cs.voters or self.id in cs.learners
        if self.bugs.fire("snapshot_skips_entries", member and self.log.last_index() > meta.index and self.log.match_term(meta.index, meta.term)):
            pass  # BUG snapshot_skips_entries: restore a snapshot we hold, dropping the entries after it
        elif meta.index <= self.log.committed:
            return False
        elif not member:
            return False  # a snapshot of a configuration we are not part of
        elif self.log.match_term(meta.index, meta.term):
            # We already have the snapshot's last entry: just fast-forward commit.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snap)
        self.prs = {}
        self._set_conf_state(cs)
        return True

    # --- proposals ---

    def propose(self, entry_type: EntryType, data: bytes) -> Proposed:
        if self.role is not Role.LEADER:
            raise ProposalDropped("not leader", self.lead)
        if self.id not in self.prs:
            raise ProposalDropped("leader removed from the configuration", NONE)
        if self.lead_transferee != NONE:
            raise ProposalDropped(
                f"leadership transfer to {self.lead_transferee} in progress", self.lead
            )
        index = self.log.last_index() + 1
        self.log.append([Entry(self.term, index, entry_type, data)])
        if entry_type is EntryType.CONF_CHANGE:
            self.pending_conf_index = index
        # Replicate at the next ready(): proposals made between two Readies go out in one
        # MsgApp per follower. Our own ack comes from advance() once the entry is persisted.
        self.pending_bcast = True
        return Proposed(self.term, index)

    def propose_conf_change(self, cc: ConfChange) -> Proposed:
        if self.role is not Role.LEADER:
            raise ProposalDropped("not leader", self.lead)
        if self.pending_conf_index > self.log.applied and not self.bugs.fire("unsafe_conf_change"):
            raise ProposalDropped(
                f"a conf change (or the leader's first entry, index {self.pending_conf_index}) "
                f"is not applied yet (applied {self.log.applied})",
                self.lead,
            )
        nid = cc.node_id
        if cc.type is ConfChangeType.ADD_LEARNER and nid in self.voters:
            raise ProposalDropped(f"node {nid} is a voter; demoting a voter is not supported",
                                  self.lead)
        if cc.type is ConfChangeType.REMOVE_NODE and self.voters == [nid]:
            raise ProposalDropped(f"cannot remove node {nid}, the last voter", self.lead)
        return self.propose(EntryType.CONF_CHANGE, cc.encode())

    # --- ReadIndex ---

    def read_index(self, ctx: bytes) -> None:
        if self.role is Role.LEADER:
            if any(r.ctx == ctx for r in self.read_queue) or any(
                r.context == ctx for r in self.pending_reads
            ):
                raise ValueError(f"read_index: context {ctx!r} is already pending")
            self.handle_read_index(Message(MT.READ_INDEX, self.id, self.id, 0, context=ctx))
        elif self.lead != NONE:
            self.send(Message(MT.READ_INDEX, self.lead, self.id, self.term, context=ctx))
        else:
            raise ProposalDropped("no leader to serve ReadIndex")

    def handle_read_index(self, m: Message) -> None:
        if len(self.voters) == 1 and self.id in self.voters and self.committed_in_term():
            self.answer_read(_ReadRequest(self.log.committed, m.context, m.from_))
            return
        if not self.committed_in_term() and not self.bugs.fire("read_index_before_commit"):
            # Our commit index may be behind the true one until an entry of our term commits.
            self.pending_reads.append(m)
            return
        req = _ReadRequest(self.log.committed, m.context, m.from_)
        req.acks[self.id] = True
        self.read_queue.append(req)
        self.bcast_heartbeat(m.context)

    def handle_read_ack(self, frm: int, ctx: bytes) -> None:
        pos = next((i for i, r in enumerate(self.read_queue) if r.ctx == ctx), None)
        if pos is None:
            return
        req = self.read_queue[pos]
        req.acks[frm] = True
        if sum(1 for nid in self.voters if req.acks.get(nid)) < self.quorum():
            return
        # A quorum confirmed leadership after every earlier request arrived too.
        done, self.read_queue = self.read_queue[: pos + 1], self.read_queue[pos + 1 :]
        for r in done:
            self.answer_read(r)

    def answer_read(self, req: _ReadRequest) -> None:
        if req.frm == self.id:
            self.read_states.append(ReadState(req.index, req.ctx))
        else:
            self.send(Message(MT.READ_INDEX_RESP, req.frm, self.id, self.term, index=req.index,
                              context=req.ctx))

    # --- leader transfer ---

    def transfer_leader(self, to: int) -> None:
        if self.role is Role.LEADER:
            self.handle_transfer_leader(to)
        elif self.lead != NONE:
            self.send(Message(MT.TRANSFER_LEADER, self.lead, to, self.term))
        else:
            raise ProposalDropped("no leader to transfer leadership from")

    def handle_transfer_leader(self, to: int) -> None:
        if to not in self.voters:
            return  # not a voter (a learner or unknown): cannot lead
        if to == self.id or to == self.lead_transferee:
            return
        self.lead_transferee = to
        self.election_elapsed = 0  # the transfer must finish within an election timeout
        if self.prs[to].match == self.log.last_index():
            self.send(Message(MT.TIMEOUT_NOW, to, self.id, self.term))
        else:
            self.maybe_send_append(to)

    # --- feedback from the driver ---

    def persisted(self, entries: Sequence[Entry]) -> None:
        """``advance`` calls this with a Ready's entries once they are durable."""
        if not entries:
            return
        last = entries[-1]
        self.log.stable_to(last.index, last.term)
        if self.role is Role.LEADER and self.log.match_term(last.index, last.term):
            me = self.prs.get(self.id)
            if me is not None and me.maybe_update(last.index) and self.maybe_commit():
                self.bcast_append()

    def report_unreachable(self, nid: int) -> None:
        pr = self.prs.get(nid)
        if self.role is Role.LEADER and pr is not None and pr.state is ProgressState.REPLICATE:
            pr.become_probe()

    def report_snapshot(self, nid: int, ok: bool) -> None:
        pr = self.prs.get(nid)
        if self.role is not Role.LEADER or pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # wait for the follower's answer (or a heartbeat) first

    def check_step_allowed(self, m: Message) -> None:
        if m.to != self.id:
            raise StepError(f"message to {m.to} given to node {self.id}")
        if m.from_ == NONE:
            raise StepError(f"message {m.type.name} has no sender")
