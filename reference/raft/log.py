"""RaftLog: the node's view of its log, the durable part (MemoryStorage) plus the unstable tail.

New entries (appended by a leader or received from one) and a received snapshot live in
``Unstable`` until a Ready hands them to the driver and ``advance`` reports them persisted
(``stable_to``/``stable_snap_to``). Reads (``term``, ``slice``) look in the unstable part
first and fall back to storage. ``committed`` and ``applied`` are the Raft paper's
commitIndex and lastApplied. Two safety invariants are checked here and reported through the
hook: a committed entry is never overwritten, and commit never passes the last index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kvcheck.reference.bugs import NO_BUGS, Bugs
from kvcheck.reference.raft.storage import MemoryStorage, limit_size
from kvcheck.reference.raft.types import (
    Compacted,
    Entry,
    Snapshot,
    StorageError,
    Unavailable,
)

Report = Callable[[str, str], None]  # (invariant, detail)


class Unstable:
    """Entries and a snapshot not yet persisted. ``offset`` is the index of entries[0]."""

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_first_index(self) -> int | None:
        return None if self.snapshot is None else self.snapshot.meta.index + 1

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.meta.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.meta.index == i:
                return self.snapshot.meta.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (if still of ``term``) are persisted: drop them."""
        t = self.maybe_term(index)
        if t is None or t != term or index < self.offset:
            return  # replaced or already stable
        self.entries = self.entries[index + 1 - self.offset :]
        self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.meta.index == index:
            self.snapshot = None

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.meta.index + 1
        self.entries = []
        self.snapshot = snap

    def truncate_and_append(self, ents: Sequence[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            # Replace everything unstable; storage's suffix from ``after`` is overwritten
            # when the driver appends these entries.
            self.offset = after
            self.entries = list(ents)
        else:
            self.entries = [*self.entries[: after - self.offset], *ents]


class RaftLog:
    def __init__(self, storage: MemoryStorage, report: Report, bugs: Bugs = NO_BUGS) -> None:
        self.storage = storage
        self.bugs = bugs
        self.report = report
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applied = first - 1

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, unstable={len(self.unstable.entries)})"
        )

    # --- indices and terms ---

    def first_index(self) -> int:
        snap = self.unstable.snapshot  # Unstable.maybe_first_index, inlined: a hot path
        return snap.meta.index + 1 if snap is not None else self.storage.first_index()

    def last_index(self) -> int:
        unstable = self.unstable  # Unstable.maybe_last_index, inlined: a hot path
        if unstable.entries:
            return unstable.offset + len(unstable.entries) - 1
        if unstable.snapshot is not None:
            return unstable.snapshot.meta.index
        return self.storage.last_index()

    def stable_last_index(self) -> int:
        """The last index known persisted: everything before the unstable entries."""
        if self.unstable.entries:
            return self.unstable.offset - 1
        if self.unstable.snapshot is not None:
            return 0  # nothing is durable until the snapshot is
        return self.last_index()

    def term(self, i: int) -> int:
        """Term of entry ``i``; raises Compacted / Unavailable outside the known range."""
        # The common cases first: an entry below the unstable tail is the storage's (which
        # raises Compacted below its snapshot), one inside it is a new entry.
        unstable = self.unstable
        offset = unstable.offset
        if i < offset:
            if unstable.snapshot is None:
                return self.storage.term(i)
        elif i < offset + len(unstable.entries):
            return unstable.entries[i - offset].term
        dummy = self.first_index() - 1
        if i < dummy:
            raise Compacted(f"term({i}): compacted up to {dummy}")
        if i > self.last_index():
            raise Unavailable(f"term({i}): last index is {self.last_index()}")
        t = unstable.maybe_term(i)
        if t is not None:
            return t
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        try:
            return self.term(i)
        except StorageError:
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, term: int) -> bool:
        try:
            return self.term(i) == term
        except StorageError:
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at (last_index, term) is at least as up to date as ours."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and last_index >= self.last_index())

    # --- reading entries ---

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries [lo, hi) from storage and/or the unstable tail."""
        if lo > hi:
            raise StorageError(f"slice({lo}, {hi}): lo > hi")
        first = self.first_index()
        if lo < first:
            raise Compacted(f"slice({lo}, {hi}): compacted up to {first - 1}")
        if hi > self.last_index() + 1:
            raise Unavailable(f"slice({lo}, {hi}): last index is {self.last_index()}")
        if lo == hi:
            return []
        ents: list[Entry] = []
        off = self.unstable.offset
        if lo < off:
            ents = self.storage.entries(lo, min(hi, off), max_size)
            if len(ents) < min(hi, off) - lo:
                return ents  # size-limited
        if hi > off:
            ents = ents + self.unstable.entries[max(lo, off) - off : hi - off]
        return limit_size(ents, max_size)

    def entries_from(self, i: int, max_size: int | None = None) -> list[Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        return self.entries_from(self.first_index())

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def next_committed_entries(self, max_size: int | None = None) -> list[Entry]:
        """Committed, not yet applied entries (none while a snapshot is pending)."""
        if self.has_pending_snapshot():
            return []
        lo = max(self.applied + 1, self.first_index())
        if self.committed + 1 > lo:
            return self.slice(lo, self.committed + 1, max_size)
        return []

    def has_next_committed_entries(self) -> bool:
        if self.has_pending_snapshot():
            return False
        return self.committed > max(self.applied, self.first_index() - 1)

    # --- changing the log ---

    def find_conflict(self, ents: Sequence[Entry]) -> int:
        """Index of the first entry whose term differs from ours or that we lack; 0 if all
        entries are already present with the same terms."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= ``index`` whose term is <= ``term`` (fast back-off)."""
        if index > self.last_index():
            return index
        while index > 0:
            try:
                t = self.term(index)
            except StorageError:
                break
            if t <= term:
                break
            index -= 1
        return index

    def maybe_append(
        self, index: int, log_term: int, commit: int, ents: Sequence[Entry]
    ) -> int | None:
        """Follower side of AppendEntries: if our log has (index, log_term), append ``ents``
        (truncating only from the first conflicting entry) and commit up to
        min(commit, last new index). Returns the last new index, or None on mismatch."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if self.bugs.fire("eager_truncation", bool(ents) and ci == 0 and self.last_index() > last_new):
            ci = ents[0].index  # BUG: rewrite from the first entry, dropping a longer tail
        if ci != 0:
            if ci <= self.committed:
                self.report(
                    "never overwrite a committed entry",
                    f"entry {ci} conflicts but commit is {self.committed}",
                )
            self.append(ents[ci - index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def append(self, ents: Sequence[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        if after < self.committed:
            self.report(
                "never overwrite a committed entry",
                f"append after {after} but commit is {self.committed}",
            )
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def commit_to(self, to: int) -> None:
        if to <= self.committed:
            return
        last = self.last_index()
        if to > last:
            self.report("commit within the log", f"commit {to} beyond last index {last}")
            to = last
        self.committed = to

    def maybe_commit(self, max_index: int, term: int) -> bool:
        if max_index > self.committed and self.term_or_zero(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            self.report(
                "applied within [applied, committed]",
                f"applied_to({i}) with applied {self.applied}, committed {self.committed}",
            )
            return
        self.applied = i

    def restore(self, snap: Snapshot) -> None:
        self.committed = snap.meta.index
        self.unstable.restore(snap)

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)
