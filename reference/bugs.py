"""Injectable bugs: named switches, all off by default, each checked at one guarded line.

The regression suite turns a switch on and expects the black-box checkers to catch the bug
from the client history alone. A switch is read at exactly one place in the store, as a
one-line guard (``if bugs.local_reads: ...``), so the bug it injects is easy to find and
review. Add a switch here together with its guarded line and a test that the checker
catches it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True, slots=True)
class Bugs:
    """Which deliberate bugs are on. Each field's comment names where it is guarded."""

    # node: serve linearizable reads from local state on any member, skipping ReadIndex.
    local_reads: bool = False
    # kv.machine (KVStateMachine.apply): apply a retried (client_id, seq) again instead of
    # answering it from the session table.
    no_session_dedup: bool = False
    # kv.watch (WatchHub.create): a watch resumed from a past revision skips that revision's
    # events (the gap a resuming client would never notice).
    watch_resume_gap: bool = False
    # kv.machine (KVStateMachine.expired_leases): the leader deletes an expired lease's keys on
    # its own timer, outside the log, besides proposing the expiry.
    lease_expiry_local: bool = False
    # raft.Raft.maybe_commit: commit an entry of an older term by counting its replicas
    # (the Raft paper's Figure 8).
    figure8_commit: bool = False
    # raft.Raft.step: a follower accepts MsgApp from a leader of an older term.
    stale_term_append: bool = False
    # raft.log.RaftLog.maybe_append: truncate the log after the leader's entries even when
    # they all match (a reordered, older MsgApp then erases acknowledged entries).
    eager_truncation: bool = False
    # raft.Raft.handle_append: commit min(leader commit, own last index) instead of
    # min(leader commit, last index this message verified).
    follower_commit_overrun: bool = False
    # raft.Raft.handle_read_index: answer ReadIndex before the leader has committed an
    # entry of its own term (its commit index may be stale).
    read_index_before_commit: bool = False
    # raft.Raft.propose_conf_change: allow a conf change while another is not yet applied.
    unsafe_conf_change: bool = False
    # kv.machine (KVStateMachine._compare): a txn's compares read the revision before the
    # latest, while its writes apply at the head (a guard passes on a stale snapshot).
    txn_read_stale_snapshot: bool = False
    # kv.machine (KVStateMachine._exec_plan): a txn's puts after its first wait for the next
    # applied entry, so its writes become visible one at a time, across revisions.
    txn_non_atomic: bool = False
    # node (Node._send_progress): a member answers a progress notification at its applied
    # revision plus the log entries it holds but has not applied, as if they were revisions
    # it had already delivered (a member behind the leader then bookmarks events it has not
    # sent yet).
    watch_from_lagging_member: bool = False

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def enabled(self) -> list[str]:
        return [name for name in self.names() if getattr(self, name)]

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> Bugs:
        unknown = sorted(set(names) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown bug switch(es): {', '.join(unknown)}; known: {', '.join(cls.names())}")
        return replace(cls(), **{name: True for name in names})


NO_BUGS = Bugs()
