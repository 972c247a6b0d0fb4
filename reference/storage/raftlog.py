"""Raft persistence on the WAL: hard state, log entries and the snapshot marker.

Why: a Raft node must persist its hard state (term, vote, commit) and its new log entries
before it sends messages or acknowledges anything, and after a crash rebuild exactly the
log it had made durable. This module does that with plain values (tuples and a small
dataclass), so it does not import the Raft package; the node converts.

How: three WAL record types, each a fixed little-endian struct:

- ENTRY (1): index u64, term u64, entry type u8, then the entry data.
- HARD_STATE (2): term u64, vote u64, commit u64.
- SNAPSHOT (3): index u64, term u64, flags u8, then the ConfState bytes (opaque here).
  Flag 1 (keep): the log after the index survives; else the marker replaces the log.

``save(hard_state, entries)`` appends the entries, then the hard state (so a torn batch
never keeps a commit index without the entries it covers), with one write to the file and
no fsync. Nothing is promised durable until ``sync()``; many saves may share one sync. An entry at index ``i <= last index`` replaces
the log from ``i`` on, and replay applies that truncation, as etcd's WAL does.
``save_snapshot_meta`` records that a snapshot file at (index, term) exists: entries up to
its index are dropped; those after it are kept when the log holds its index with its term,
else all are dropped (a snapshot received from the leader replaces a log that disagrees).
That decision is made when the marker is saved and stored in it, so replay repeats it even
when the entries it was based on were in released segments.

One replay state machine (``_LogState``) serves both recovery and live saves, so
``load()`` always returns what a restart would recover if everything saved so far were
synced. Each new WAL segment starts with the current snapshot marker and hard state (the
WAL's prologue), so ``release_to(index)`` may delete every old segment whose entries are
all at or below a saved snapshot index without losing state. Replay therefore tolerates a
jump in entry indices only when a later snapshot marker covers it; otherwise the WAL is
refused as corrupt.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from kvcheck.reference.storage.errors import CorruptionError
from kvcheck.reference.storage.fs import FileSystem
from kvcheck.reference.storage.wal import (
    DEFAULT_SEGMENT_SIZE,
    TornTail,
    Wal,
    WalRecord,
    segment_name,
)

__all__ = [
    "RECORD_ENTRY",
    "RECORD_HARD_STATE",
    "RECORD_SNAPSHOT",
    "EntryTuple",
    "HardStateTuple",
    "RaftState",
    "RaftWal",
    "SnapshotMeta",
]

RECORD_ENTRY = 1
RECORD_HARD_STATE = 2
RECORD_SNAPSHOT = 3

HardStateTuple = tuple[int, int, int]
"""(term, vote, commit)"""
EntryTuple = tuple[int, int, int, bytes]
"""(index, term, type, data)"""

_ENTRY = struct.Struct("<QQB")
_HARD_STATE = struct.Struct("<QQQ")
_SNAPSHOT = struct.Struct("<QQB")
_KEEP_LOG = 1  # snapshot record flag: the log after the snapshot index is kept
_U64 = 1 << 64


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Which snapshot the log starts after: its last included index and term, its ConfState."""

    index: int
    term: int
    conf_state: bytes = b""


class RaftState(NamedTuple):
    """What a node recovers: the snapshot marker, the hard state, the entries after the snapshot.

    A named tuple, so ``snapshot, hard_state, entries = raft_wal.load()`` works too.
    """

    snapshot: SnapshotMeta | None
    hard_state: HardStateTuple | None
    entries: list[EntryTuple]


def _check_u64(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _U64:
        raise ValueError(f"{name} must be an int in [0, 2**64), got {value!r}")
    return value


def _encode_entry(entry: EntryTuple) -> bytes:
    try:
        index, term, etype, data = entry
        head = _ENTRY.pack(index, term, etype)
    except (ValueError, TypeError, struct.error) as err:
        raise ValueError(
            f"an entry is (index u64, term u64, type u8, data bytes), got {entry!r}: {err}"
        ) from None
    if index == 0:
        raise ValueError("entry index 0 is reserved (Raft logs start at index 1)")
    if type(data) is not bytes:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(f"entry data must be bytes, got {type(data).__name__}")
        data = bytes(data)
    return head + data


def _encode_hard_state(hs: HardStateTuple) -> bytes:
    try:
        term, vote, commit = hs
        return _HARD_STATE.pack(term, vote, commit)
    except (ValueError, TypeError, struct.error) as err:
        raise ValueError(f"a hard state is (term, vote, commit) as u64s, got {hs!r}: {err}") from None


def _encode_snapshot(meta: SnapshotMeta, keep: bool) -> bytes:
    if not isinstance(meta.conf_state, bytes):
        raise ValueError(f"conf_state must be bytes, got {type(meta.conf_state).__name__}")
    index = _check_u64("snapshot index", meta.index)
    term = _check_u64("snapshot term", meta.term)
    return _SNAPSHOT.pack(index, term, _KEEP_LOG if keep else 0) + meta.conf_state


class _LogState:
    """The effective Raft state a sequence of records describes (used for replay and live)."""

    def __init__(self) -> None:
        self.snapshot: SnapshotMeta | None = None
        self.hard_state: HardStateTuple | None = None
        self.entries: list[EntryTuple] = []  # contiguous, all after the snapshot index
        # A jump in indices seen during replay: (highest missing index, file, offset).
        # Cleared by a later snapshot marker at or above it; fatal if still there at the end.
        self.gap: tuple[int, str, int] | None = None

    @property
    def base(self) -> int:
        return self.snapshot.index if self.snapshot is not None else 0

    @property
    def last_index(self) -> int:
        return self.entries[-1][0] if self.entries else self.base

    def first_index(self) -> int:
        return self.entries[0][0] if self.entries else self.base + 1

    def term_at(self, index: int) -> int | None:
        if self.entries and self.entries[0][0] <= index <= self.entries[-1][0]:
            return self.entries[index - self.entries[0][0]][1]
        if self.snapshot is not None and index == self.snapshot.index:
            return self.snapshot.term
        return None

    def add_entry(self, entry: EntryTuple, *, where: tuple[str, int] | None) -> None:
        """Append ``entry``, replacing the log from its index on. ``where`` None: live save."""
        index = entry[0]
        entries = self.entries
        if entries and index == entries[-1][0] + 1:  # the common case: the next index
            entries.append(entry)
            return
        if index <= self.base:
            if where is None:
                raise ValueError(f"entry index {index} is at or below the snapshot index {self.base}")
            return  # covered by the snapshot
        first = self.first_index()
        if self.entries and first <= index <= self.last_index + 1:
            del self.entries[index - first :]
        elif not self.entries and index == first:
            pass
        else:
            if where is None:
                raise ValueError(
                    f"entry index {index} does not follow the log (first {first}, last {self.last_index})"
                )
            # Replay after released segments: the entries before ``index`` lived in deleted
            # segments and must be covered by a later snapshot marker.
            if index > first:
                missing = index - 1
                if self.gap is None or missing > self.gap[0]:
                    self.gap = (missing, *where)
            self.entries.clear()
        self.entries.append(entry)

    def keeps_log(self, meta: SnapshotMeta) -> bool:
        """Whether the log after ``meta.index`` survives the snapshot: only if the log agrees
        with the snapshot at its index (a local compaction). A snapshot from the leader that
        the log disagrees with (or does not reach) replaces the whole log."""
        return self.term_at(meta.index) == meta.term

    def add_snapshot(self, meta: SnapshotMeta, keep: bool, *, where: tuple[str, int] | None) -> None:
        if self.snapshot is not None and meta.index < self.snapshot.index:
            if where is None:
                raise ValueError(
                    f"snapshot index {meta.index} is older than the saved snapshot index {self.snapshot.index}"
                )
            return
        if keep:
            if where is not None and self.term_at(meta.index) not in (None, meta.term):
                raise CorruptionError(
                    where[0], where[1],
                    f"snapshot marker at index {meta.index} term {meta.term} keeps the log after it, "
                    f"but the log has term {self.term_at(meta.index)} there",
                )
            if self.entries and self.entries[0][0] <= meta.index:
                del self.entries[: meta.index - self.entries[0][0] + 1]
        else:
            self.entries.clear()
        self.snapshot = meta
        if self.gap is not None and self.gap[0] <= meta.index:
            self.gap = None

    def apply(self, record: WalRecord, where: str) -> None:
        payload = record.payload
        if record.type == RECORD_ENTRY:
            if len(payload) < _ENTRY.size:
                raise CorruptionError(where, record.offset, f"entry record of {len(payload)} bytes is too short")
            index, term, etype = _ENTRY.unpack_from(payload, 0)
            if index == 0:
                raise CorruptionError(where, record.offset, "entry record with index 0")
            self.add_entry((index, term, etype, payload[_ENTRY.size :]), where=(where, record.offset))
        elif record.type == RECORD_HARD_STATE:
            if len(payload) != _HARD_STATE.size:
                raise CorruptionError(where, record.offset, f"hard state record of {len(payload)} bytes, expected {_HARD_STATE.size}")
            self.hard_state = _HARD_STATE.unpack(payload)
        elif record.type == RECORD_SNAPSHOT:
            if len(payload) < _SNAPSHOT.size:
                raise CorruptionError(where, record.offset, f"snapshot record of {len(payload)} bytes is too short")
            index, term, flags = _SNAPSHOT.unpack_from(payload, 0)
            if flags & ~_KEEP_LOG:
                raise CorruptionError(where, record.offset, f"snapshot record with unknown flags {flags:#x}")
            meta = SnapshotMeta(index, term, payload[_SNAPSHOT.size :])
            self.add_snapshot(meta, bool(flags & _KEEP_LOG), where=(where, record.offset))
        else:
            raise CorruptionError(where, record.offset, f"unknown record type {record.type}")


class RaftWal:
    """Durable Raft state in a WAL directory. Open with ``RaftWal.open(fs, directory)``.

    Typical driver use per batch of Readies: ``save(hs, entries)`` for each, then one
    ``sync()`` before sending messages or acknowledging; ``save_snapshot_meta`` after the
    snapshot file is durable, then ``release_to(index)`` to delete old segments.
    """

    def __init__(self, wal: Wal, state: _LogState, segment_max: dict[int, int]) -> None:
        """Internal: use ``RaftWal.open``."""
        self.wal = wal
        self._state = state
        self._segment_max = segment_max  # segment seq -> highest entry index written in it

    @classmethod
    def open(cls, fs: FileSystem, directory: str, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> RaftWal:
        """Open (creating if needed) and recover; ``CorruptionError`` if the WAL cannot be trusted."""
        holder: list[RaftWal] = []

        def prologue() -> list[tuple[int, bytes]]:
            return holder[0]._prologue() if holder else []

        wal, records = Wal.open(fs, directory, segment_size=segment_size, prologue=prologue)
        state = _LogState()
        segment_max: dict[int, int] = {seq: 0 for seq in wal.segments()}
        paths = dict(zip(wal.segments(), wal.segment_paths(), strict=True))
        for record in records:
            state.apply(record, paths[record.seq])
            if record.type == RECORD_ENTRY:
                index = _ENTRY.unpack_from(record.payload, 0)[0]
                segment_max[record.seq] = max(segment_max[record.seq], index)
        if state.gap is not None:
            missing, path, offset = state.gap
            raise CorruptionError(
                path, offset, f"log gap: entries up to index {missing} are missing and no snapshot marker covers them"
            )
        raft_wal = cls(wal, state, segment_max)
        holder.append(raft_wal)
        return raft_wal

    def _prologue(self) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        if self._state.snapshot is not None:
            # Restating the current base: the entries after it (earlier segments) are kept.
            out.append((RECORD_SNAPSHOT, _encode_snapshot(self._state.snapshot, keep=True)))
        if self._state.hard_state is not None:
            out.append((RECORD_HARD_STATE, _encode_hard_state(self._state.hard_state)))
        return out

    # -- reading -------------------------------------------------------------------------

    def load(self) -> RaftState:
        """The snapshot marker (or None), the hard state (or None) and the entries after it.

        Reflects everything saved so far, synced or not: right after ``open`` it is what
        the disk held; after saves, it is what a restart would see once they are synced.
        """
        return RaftState(self._state.snapshot, self._state.hard_state, list(self._state.entries))

    @property
    def torn_tail(self) -> TornTail | None:
        """What recovery cut off the WAL's tail at open (None: it ended cleanly)."""
        return self.wal.torn_tail

    @property
    def snapshot(self) -> SnapshotMeta | None:
        """The latest snapshot marker saved (None before the first)."""
        return self._state.snapshot

    @property
    def hard_state(self) -> HardStateTuple | None:
        """The latest hard state saved (None before the first)."""
        return self._state.hard_state

    def last_index(self) -> int:
        """The index of the last entry (the snapshot index when there are none; 0 when empty)."""
        return self._state.last_index

    # -- writing -------------------------------------------------------------------------

    def _append(self, rtype: int, payload: bytes) -> int:
        return self.wal.append(rtype, payload)

    def save(self, hard_state: HardStateTuple | None, entries: list[EntryTuple]) -> None:
        """Append ``entries`` (replacing the log from the first one's index), then ``hard_state``.

        Validates first (contiguous indices, u64 fields, bytes data) so a bad call writes
        nothing. Not durable until ``sync()``.
        """
        frames = [_encode_entry(e) for e in entries]
        hs_frame = None
        if hard_state is not None:
            hs_frame = _encode_hard_state(hard_state)
            hard_state = _HARD_STATE.unpack(hs_frame)  # normalized to a tuple of ints
        if entries:
            expect = entries[0][0]
            if expect > self._state.last_index + 1 or expect <= self._state.base:
                raise ValueError(
                    f"entries start at index {expect}; the log has snapshot index {self._state.base} "
                    f"and last index {self._state.last_index}"
                )
            for entry in entries[1:]:
                expect += 1
                if entry[0] != expect:
                    raise ValueError(f"entries are not contiguous: index {entry[0]} where {expect} was expected")
        # An unchanged hard state is not written again.
        # Append, then update the state: a segment cut inside ``_append`` writes the
        # prologue from the state of the records already in earlier segments.
        for entry, frame in zip(entries, frames, strict=True):
            seq = self.wal.append(RECORD_ENTRY, frame)
            self._state.add_entry(entry, where=None)
            if entry[0] > self._segment_max.get(seq, 0):
                self._segment_max[seq] = entry[0]
        if hs_frame is not None and hard_state != self._state.hard_state:
            self._append(RECORD_HARD_STATE, hs_frame)
            self._state.hard_state = hard_state
        # One write per save: the records reach the file (not durable yet), so a crash
        # before ``sync`` meets them on the disk, where it may drop or tear them.
        self.wal.flush()

    def save_snapshot_meta(self, index: int, term: int, conf_state: bytes) -> None:
        """Record that a durable snapshot file covers the log up to (index, term).

        Write the snapshot file (``SnapshotStore.save``) first. Not durable until ``sync()``.
        """
        meta = SnapshotMeta(index, term, conf_state)
        keep = self._state.keeps_log(meta)
        frame = _encode_snapshot(meta, keep)
        if index < self._state.base:
            raise ValueError(f"snapshot index {index} is older than the saved snapshot index {self._state.base}")
        self._append(RECORD_SNAPSHOT, frame)
        self._state.add_snapshot(meta, keep, where=None)
        self.wal.flush()

    def sync(self) -> None:
        """fsync: everything saved so far is durable when this returns."""
        self.wal.sync()

    def release_to(self, index: int) -> list[str]:
        """Delete WAL segments whose entries are all at or below ``index``.

        ``index`` must not exceed the saved snapshot marker's index (else entries no
        snapshot covers would be lost). Syncs first. Returns the deleted segment names.
        """
        if index > self._state.base:
            raise ValueError(f"release_to({index}) is beyond the saved snapshot index {self._state.base}")
        segs = self.wal.segments()
        before = segs[-1]
        for seq in segs[:-1]:
            if self._segment_max.get(seq, 0) > index:
                before = seq
                break
        removed = self.wal.release(before)
        for seq in removed:
            self._segment_max.pop(seq, None)
        return [segment_name(seq) for seq in removed]

    def close(self) -> None:
        """Sync and close."""
        self.wal.close()
