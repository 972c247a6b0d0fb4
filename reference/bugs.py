"""Injectable bugs: named switches, all off by default, each checked at one guarded line.

The regression suite turns a switch on and expects the black-box checkers to catch the bug
from the client history alone. A switch is read at exactly one place in the store, as a
one-line guard, so the bug it injects is easy to find and review:

    if self.bugs.fire("stale_term_append", m.type is MT.APP):
        return self.handle_append(m)  # BUG ...

``fire(name, changes)`` is true only when the switch is on and ``changes`` says that taking
the buggy branch here behaves differently from the correct code (the condition must be
cheap and free of side effects: it is evaluated with the switch off too). Each true answer
is counted in the ``BugCounter`` the store's shell attached with ``Bugs.counting`` (one per
member), so a run can tell "the bug never fired" (the faults never reached that line: make
the faults stronger) from "it fired N times and the checkers missed it" (make the checkers
stronger). Add a switch here (a bool field, its comment naming where it is guarded, what
anomaly it should produce, and the fault mix and workload that tend to expose it) together
with its guarded line and a test that the checker catches it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any


class BugCounter:
    """How often each switch's guarded line changed behaviour on one member (all its
    incarnations). ``on_first(name)`` is called the first time a switch fires (a shell logs
    it in the member's log)."""

    def __init__(self, on_first: Callable[[str], None] | None = None) -> None:
        self.counts: dict[str, int] = {}
        self.on_first = on_first

    def hit(self, name: str) -> None:
        n = self.counts.get(name, 0)
        self.counts[name] = n + 1
        if n == 0 and self.on_first is not None:
            self.on_first(name)


@dataclass(frozen=True, slots=True)
class Bugs:
    """Which deliberate bugs are on. Each field's comment names where it is guarded, the
    anomaly it should produce and (``expose:``) the fault mix and workload that tend to
    expose it."""

    # Not a switch: where fire() counts (see Bugs.counting); None counts nothing.
    counter: BugCounter | None = field(default=None, compare=False, repr=False,
                                       metadata={"switch": False})

    # node: serve linearizable reads from local state on any member, skipping ReadIndex
    # (stale reads). expose: --faults partition (an isolated follower), register.
    local_reads: bool = False
    # kv.machine (KVStateMachine.apply): apply a retried (client_id, seq) again instead of
    # answering it from the session table (a write applied twice; a cas reported failed that
    # took effect). expose: --swarm (attempt timeouts retry one request id) --faults
    # partition,kill,packet, register.
    no_session_dedup: bool = False
    # kv.watch (WatchHub.create): a watch resumed from a past revision skips that revision's
    # events (the gap a resuming client would never notice). expose: a watch workload.
    watch_resume_gap: bool = False
    # kv.machine (KVStateMachine.expired_leases): the leader deletes an expired lease's keys on
    # its own timer, outside the log, besides proposing the expiry. expose: a lease workload.
    lease_expiry_local: bool = False
    # raft.Raft.maybe_commit: commit an entry of an older term by counting its replicas
    # (the Raft paper's Figure 8: a committed entry later overwritten, a lost write).
    # expose: --swarm --faults partition (rolling-leader), 3 members, small append batches
    # (max_size_per_msg), clients that wait, kv.
    figure8_commit: bool = False
    # raft.Raft.step: a follower accepts MsgApp from a leader of an older term (its newer
    # entries overwritten; committed from the new leader's heartbeats: divergent members).
    # expose: --swarm --faults partition (deposed-leader bursts: the old leader's held
    # appends land just after the next election), kv, final per-member reads. Some runs
    # livelock in a reject/probe storm (a short --wall-budget ends them).
    stale_term_append: bool = False
    # raft.log.RaftLog.maybe_append: truncate the log after the leader's entries even when
    # they all match (a reordered, older MsgApp then erases acknowledged entries; the member
    # then stalls; a member missing them that wins an election loses acknowledged writes).
    # expose: --swarm (batch_reorder, duplicates) --faults partition,packet,kill, kv.
    eager_truncation: bool = False
    # raft.Raft.send_heartbeat: a heartbeat carries the leader's commit index instead of
    # min(commit, the follower's match), so a follower whose log still ends in a stale tail
    # of an older term (entries a deposed leader gave it alone) commits and applies that
    # tail before the new leader's probes truncate it (divergent members; reads of writes
    # that never committed). (It was guarded in handle_append, committing up to the
    # follower's own last index: there it could not change anything, because a leader's
    # probes find the exact conflict index and the first append a follower accepts in a
    # term carries the conflicting entry, so no stale tail survives it.)
    # expose: --swarm --faults partition,kill (a minority follower behind a partition
    # that heals under a newer leader), kv, final per-member reads.
    follower_commit_overrun: bool = False
    # raft.Raft.handle_read_index: answer ReadIndex before the leader has committed an
    # entry of its own term (its commit index may be stale: stale reads after an election).
    # expose: --swarm --faults partition (cut at a leader ack, perturb slow_disk), register.
    read_index_before_commit: bool = False
    # raft.Raft.propose_conf_change: allow a conf change while another is not yet applied
    # (two majorities at once). expose: --swarm --faults member,kill,partition (membership
    # churn: two adds at once from 3 members, a split along the configurations), kv, --nodes 3.
    unsafe_conf_change: bool = False
    # node.Node._handle_ready: a new term and vote are persisted without fsync before the
    # vote goes out, so a power loss lets the member vote twice in one term (two leaders in a
    # term; divergent logs). expose: --swarm --faults disk,kill,partition --nodes 3 (lost-vote
    # bursts: the voter loses power as it votes), kv, final per-member reads.
    vote_not_durable: bool = False
    # node.Node.read_barrier: a linearizable read is served once its read index is confirmed
    # but before this member has applied up to it (a stale read from a lagging follower).
    # expose: --swarm --faults partition,pause,packet (stall/slow_fsync perturbation), register.
    read_before_apply: bool = False
    # node.Node._handle_ready: appended entries are saved without fsync and acknowledged (the
    # leader counts its own) anyway, so a power loss loses acknowledged, committed writes.
    # expose: --swarm --faults disk,kill,partition (power loss of a majority/all), kv.
    ack_before_durable: bool = False
    # node.Node._load: on restart the applied index is taken from the durable commit index,
    # not from the snapshot the state machine was restored from, so the entries between them
    # are never applied on that member (its reads miss acknowledged writes).
    # expose: --faults kill,disk (any restart), register or kv.
    applied_index_not_atomic: bool = False
    # raft.Raft.restore: a follower given a snapshot whose last entry it already holds
    # restores it anyway, dropping the (acknowledged) entries after it and rewinding its state
    # machine (lost writes, divergent members). expose: --swarm (small snapshot_count,
    # batch_duplicate/long_delay perturbation) --faults partition,kill,packet, kv.
    snapshot_skips_entries: bool = False
    # kv.machine (KVStateMachine.lease_keepalive): a keepalive that reaches the leader after
    # the lease expired revives it (its keys outlive the TTL the client was promised).
    # expose: a lease workload (the lease issue's), --faults pause,clock,partition; register
    # and kv never grant leases, so they cannot catch it.
    lease_renew_after_expiry: bool = False
    # kv.machine (KVStateMachine._compare): a txn's compares read the revision before the
    # latest, while its writes apply at the head (a guard passes on a stale snapshot: lost
    # updates, G-single). expose: the append workload, --faults all.
    txn_read_stale_snapshot: bool = False
    # kv.machine (KVStateMachine._exec_plan): a txn's puts after its first wait for the next
    # applied entry, so its writes become visible one at a time, across revisions (G-single,
    # G1c, reads of half-applied txns). expose: the append workload, --faults all.
    txn_non_atomic: bool = False
    # node (Node._send_progress): a member answers a progress notification at its applied
    # revision plus the log entries it holds but has not applied, as if they were revisions
    # it had already delivered (a member behind the leader then bookmarks events it has not
    # sent yet).
    watch_from_lagging_member: bool = False

    def fire(self, name: str, changes: bool = True) -> bool:
        """Whether switch ``name``'s buggy branch is taken here: on, and ``changes`` (taking
        it behaves differently from the correct code). Counts each firing."""
        if not getattr(self, name) or not changes:
            return False
        if self.counter is not None:
            self.counter.hit(name)
        return True

    def counting(self, counter: BugCounter) -> Bugs:
        """These switches, counting their firings in ``counter``."""
        return replace(self, counter=counter)

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.metadata.get("switch", True)]

    def enabled(self) -> list[str]:
        return [name for name in self.names() if getattr(self, name)]

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> Bugs:
        unknown = sorted(set(names) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown bug switch(es): {', '.join(unknown)}; known: {', '.join(cls.names())}")
        on: dict[str, Any] = {name: True for name in names}
        return replace(cls(), **on)


NO_BUGS = Bugs()
