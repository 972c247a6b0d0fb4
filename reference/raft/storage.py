"""MemoryStorage: the part of the Raft log the application has made durable.

The core reads its stable log through this object and never writes it: the driver appends
a Ready's entries, hard state and snapshot here after (or as) it persists them to its WAL,
and on restart it rebuilds a MemoryStorage from the WAL before creating the RawNode. The
layout is etcd's: ``_ents[0]`` is a dummy entry holding the index and term of the last
snapshot (index 0, term 0 for a fresh log), so ``term(snapshot index)`` is always known.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from kvcheck.reference.raft.types import (
    EMPTY_HARD_STATE,
    Compacted,
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMeta,
    SnapshotOutOfDate,
    StorageError,
    Unavailable,
)


class MemoryStorage:
    """An in-memory log with a snapshot prefix, a hard state and the snapshot's ConfState."""

    def __init__(self) -> None:
        self._hard_state: HardState = EMPTY_HARD_STATE
        self._snapshot: Snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(term=0, index=0)]

    # --- reads (used by the core) ---

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The saved hard state and the ConfState of the saved snapshot."""
        return self._hard_state, self._snapshot.meta.conf_state

    def _offset(self) -> int:
        return self._ents[0].index

    def first_index(self) -> int:
        """The first index that may be read with ``entries`` (snapshot index + 1)."""
        return self._ents[0].index + 1

    def last_index(self) -> int:
        ents = self._ents
        return ents[0].index + len(ents) - 1

    def term(self, i: int) -> int:
        """The term of entry ``i``; ``i`` may be the snapshot index (first_index - 1)."""
        offset = self._offset()
        if i < offset:
            raise Compacted(f"term({i}): compacted up to {offset}")
        if i - offset >= len(self._ents):
            raise Unavailable(f"term({i}): last index is {self.last_index()}")
        return self._ents[i - offset].term

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries [lo, hi), at least one if any, at most ``max_size`` bytes of data."""
        offset = self._offset()
        if lo <= offset:
            raise Compacted(f"entries({lo}, {hi}): compacted up to {offset}")
        if hi > self.last_index() + 1:
            raise Unavailable(f"entries({lo}, {hi}): last index is {self.last_index()}")
        if lo > hi:
            raise StorageError(f"entries({lo}, {hi}): lo > hi")
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def snapshot(self) -> Snapshot:
        """The most recent snapshot (``create_snapshot`` or ``apply_snapshot``)."""
        return self._snapshot

    def hard_state(self) -> HardState:
        return self._hard_state

    # --- writes (used by the driver) ---

    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log by ``snap`` (a Ready's snapshot, or one loaded at restart)."""
        if snap.meta.index < self._snapshot.meta.index:
            raise SnapshotOutOfDate(
                f"snapshot at {snap.meta.index} is older than the held one at "
                f"{self._snapshot.meta.index}"
            )
        self._snapshot = snap
        self._ents = [Entry(term=snap.meta.term, index=snap.meta.index)]

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record the application's state as of applied index ``index`` as the snapshot.

        ``conf_state`` is the membership as of ``index`` (what ``apply_conf_change`` last
        returned). Call ``compact(index)`` afterwards to drop the log prefix.
        """
        if index <= self._snapshot.meta.index:
            raise SnapshotOutOfDate(
                f"create_snapshot({index}): already have a snapshot at {self._snapshot.meta.index}"
            )
        if index > self.last_index():
            raise Unavailable(f"create_snapshot({index}): last index is {self.last_index()}")
        snap = Snapshot(SnapshotMeta(index, self.term(index), conf_state), data)
        self._snapshot = snap
        return snap

    def compact(self, index: int) -> None:
        """Drop entries up to and including ``index`` (which must be <= the snapshot index
        for the leader to still be able to catch followers up)."""
        offset = self._offset()
        if index <= offset:
            raise Compacted(f"compact({index}): already compacted up to {offset}")
        if index > self.last_index():
            raise Unavailable(f"compact({index}): last index is {self.last_index()}")
        dummy = Entry(term=self._ents[index - offset].term, index=index)
        self._ents = [dummy, *self._ents[index - offset + 1 :]]

    def append(self, entries: Sequence[Entry]) -> None:
        """Append a Ready's entries, replacing any existing suffix from entries[0].index."""
        if not entries:
            return
        first = self.first_index()
        last_new = entries[0].index + len(entries) - 1
        if last_new < first:
            return  # all already compacted away
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        for prev, nxt in itertools.pairwise(entries):
            if nxt.index != prev.index + 1:
                raise StorageError(f"append: entries not contiguous at {prev.index}->{nxt.index}")
        at = entries[0].index - self._offset()
        if at > len(self._ents):
            raise Unavailable(
                f"append: gap, first new index {entries[0].index} after last {self.last_index()}"
            )
        del self._ents[at:]
        self._ents.extend(entries)

    def all_entries(self) -> list[Entry]:
        """Every entry after the snapshot (a copy; for tests and inspection)."""
        return list(self._ents[1:])


def entry_size(e: Entry) -> int:
    """Approximate encoded size: the data plus a small fixed header."""
    return len(e.data) + 16


def limit_size(ents: list[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix within ``max_size`` bytes, but never fewer than one entry."""
    if max_size is None or not ents:
        return list(ents)
    total = entry_size(ents[0])
    n = 1
    while n < len(ents):
        total += entry_size(ents[n])
        if total > max_size:
            break
        n += 1
    return list(ents[:n])
