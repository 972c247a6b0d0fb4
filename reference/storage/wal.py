"""An append-only write-ahead log of typed, checksummed records in rotating segment files.

Why: Raft may acknowledge nothing before its hard state and entries are on disk, and a
node must come back after a crash with exactly what it had fsynced. This module is the
generic part: records in, records out, an explicit fsync point, and recovery that
distinguishes a torn tail (normal after a crash: cut it off) from corruption (refuse).
``kvcheck.reference.storage.raftlog`` gives the records their Raft meaning.

Layout: a directory of segments named ``<seq as 16 hex digits>.wal``, with consecutive
sequence numbers. Each segment starts with a 24-byte header::

    magic "KVCKWAL\\0" | version u32 | seq u64 | crc32 of the previous 20 bytes u32

followed by records, each a 16-byte header and a payload::

    length u32 | type u8 | 3 zero bytes | crc32 of the previous 8 bytes u32 | crc32 of payload u32

(little-endian). The header has its own CRC so that a damaged length is detected before it
is used: a flipped bit in an early record's length can never make recovery mistake valid
records for a torn tail.

Writing: ``append`` buffers a record in memory; ``flush`` writes the buffer with one write
(no fsync); ``sync`` flushes and fsyncs the segment, so many records (many Raft Readies)
share one fsync. Only ``sync`` promises durability; records may become durable earlier (a
segment cut syncs what was buffered), and a crash keeps at most a prefix of the records
appended since the last sync. When the current segment reaches ``segment_size`` the next
append cuts a new one: the old segment is synced, the new one is written as
``<seq>.wal.tmp`` with its header, fsynced, renamed into place and the directory fsynced,
so a segment name never exists without a complete header. The caller's
``prologue`` callback supplies records to repeat at the start of every new segment (the
Raft layer repeats its hard state and snapshot marker there); they go into the temp file
with the header, so they are durable as soon as the segment exists, which is what lets
``release`` delete old segments without losing state.

Recovery (``Wal.open``): leftover ``.tmp`` files are removed; segment numbers must be
consecutive; every header must be valid. In the final segment only, the record at the tail
may be torn: a short header, a length running past the end of the file, a payload CRC
mismatch on the record that ends exactly at the end of the file, or a damaged header
followed by nothing but zero bytes. The file is truncated to the end of the last good
record and fsynced. Anything else (a bad CRC with more bytes after it, a damaged header, a
short record in an earlier segment, a gap in the numbering) raises ``CorruptionError``
naming the file, the byte offset and the reason. ``scan`` applies the same checks
without changing anything, for inspection.
"""

from __future__ import annotations

import itertools
import re
import struct
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kvcheck.reference.storage.errors import CorruptionError
from kvcheck.reference.storage.fs import AppendFile, FileSystem, normalize_path

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "MAX_RECORD_SIZE",
    "RECORD_HEADER_SIZE",
    "SEGMENT_HEADER_SIZE",
    "TornTail",
    "Wal",
    "WalRecord",
    "WalScan",
    "encode_record",
    "scan",
    "segment_name",
]

SEGMENT_MAGIC = b"KVCKWAL\x00"
SEGMENT_VERSION = 1
_SEGMENT_HEADER = struct.Struct("<8sIQI")
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size  # 24
_RECORD_PREFIX = struct.Struct("<IB3x")  # length, type: the part the header CRC covers
_RECORD_HEADER = struct.Struct("<IB3xII")
RECORD_HEADER_SIZE = _RECORD_HEADER.size  # 16
MAX_RECORD_SIZE = 64 << 20  # a single record's payload; larger appends are refused
DEFAULT_SEGMENT_SIZE = 64 << 20

_SEGMENT_RE = re.compile(r"^([0-9a-f]{16})\.wal$")
_TMP_SUFFIX = ".wal.tmp"

Prologue = Callable[[], Iterable[tuple[int, bytes]]]


def segment_name(seq: int) -> str:
    """The file name of segment ``seq``."""
    return f"{seq:016x}.wal"


def _segment_header(seq: int) -> bytes:
    head = struct.pack("<8sIQ", SEGMENT_MAGIC, SEGMENT_VERSION, seq)
    return head + struct.pack("<I", zlib.crc32(head))


def encode_record(rtype: int, payload: bytes) -> bytes:
    """One record as it is stored: header (with its CRCs) then payload."""
    if not 1 <= rtype <= 255:
        raise ValueError(f"WAL record type must be in 1..255, got {rtype}")
    if len(payload) > MAX_RECORD_SIZE:
        raise ValueError(f"WAL record of {len(payload)} bytes exceeds the maximum {MAX_RECORD_SIZE}")
    length = len(payload)
    header_crc = zlib.crc32(_RECORD_PREFIX.pack(length, rtype))
    return _RECORD_HEADER.pack(length, rtype, header_crc, zlib.crc32(payload)) + payload


@dataclass(frozen=True, slots=True)
class WalRecord:
    """A record read back: its type, payload, and where it was (segment seq, byte offset)."""

    type: int
    payload: bytes
    seq: int
    offset: int


@dataclass(frozen=True, slots=True)
class TornTail:
    """What recovery cut off the final segment: the file, the offset cut at, and why."""

    path: str
    offset: int
    dropped_bytes: int
    reason: str


class _TornAt(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def _parse_segment(path: str, data: bytes, seq: int, final: bool) -> tuple[list[WalRecord], TornTail | None]:
    """The records of one segment, and the torn tail if there is one (final segment only)."""
    if len(data) < SEGMENT_HEADER_SIZE:
        raise CorruptionError(path, 0, f"segment header truncated: {len(data)} of {SEGMENT_HEADER_SIZE} bytes")
    magic, version, header_seq, header_crc = _SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        raise CorruptionError(path, 0, f"bad segment magic {magic!r}, expected {SEGMENT_MAGIC!r}")
    if zlib.crc32(data[: SEGMENT_HEADER_SIZE - 4]) != header_crc:
        raise CorruptionError(path, 0, "segment header CRC mismatch")
    if version != SEGMENT_VERSION:
        raise CorruptionError(path, 0, f"unsupported segment version {version}, expected {SEGMENT_VERSION}")
    if header_seq != seq:
        raise CorruptionError(path, 0, f"segment header says sequence {header_seq:016x}, file name says {seq:016x}")

    records: list[WalRecord] = []
    offset = SEGMENT_HEADER_SIZE
    size = len(data)

    def torn_or_corrupt(reason: str, torn: bool) -> _TornAt:
        if torn and final:
            return _TornAt(offset, reason)
        raise CorruptionError(path, offset, reason)

    try:
        while offset < size:
            if size - offset < RECORD_HEADER_SIZE:
                raise torn_or_corrupt(
                    f"record header truncated: {size - offset} of {RECORD_HEADER_SIZE} bytes at end of segment",
                    torn=True,
                )
            length, rtype, header_crc, payload_crc = _RECORD_HEADER.unpack_from(data, offset)
            if zlib.crc32(data[offset : offset + 8]) != header_crc:
                zero_tail = data.count(0, offset) == size - offset
                raise torn_or_corrupt(
                    "record header CRC mismatch"
                    + (" (zero bytes to end of segment)" if zero_tail else ": its length or type is damaged"),
                    torn=zero_tail,
                )
            if rtype == 0:
                raise torn_or_corrupt("record type 0 is invalid", torn=False)
            if length > MAX_RECORD_SIZE:
                raise torn_or_corrupt(f"record length {length} exceeds the maximum {MAX_RECORD_SIZE}", torn=False)
            end = offset + RECORD_HEADER_SIZE + length
            if end > size:
                raise torn_or_corrupt(
                    f"record of {length} bytes runs past the end of the segment ({size - offset - RECORD_HEADER_SIZE} present)",
                    torn=True,
                )
            payload = data[offset + RECORD_HEADER_SIZE : end]
            if zlib.crc32(payload) != payload_crc:
                if end == size:
                    raise torn_or_corrupt("record payload CRC mismatch in the final record", torn=True)
                raise torn_or_corrupt(
                    f"record payload CRC mismatch ({size - end} bytes of later records follow)", torn=False
                )
            records.append(WalRecord(rtype, payload, seq, offset))
            offset = end
    except _TornAt as torn:
        return records, TornTail(path, torn.offset, size - torn.offset, torn.reason)
    return records, None


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


@dataclass(frozen=True, slots=True)
class WalScan:
    """What a WAL directory holds, read without changing anything (see ``scan``)."""

    seqs: list[int]  # segment sequence numbers, consecutive, oldest first
    records: list[WalRecord]  # every good record, in order
    torn_tail: TornTail | None  # what opening would cut off the final segment
    temp_files: list[str]  # leftover ``.tmp`` paths that opening would remove


def scan(fs: FileSystem, directory: str) -> WalScan:
    """Read and check a WAL directory without modifying it (for inspection and tests).

    Applies exactly the checks of ``Wal.open``: ``CorruptionError`` for anything but a
    torn tail. A missing directory is an empty WAL.
    """
    directory = normalize_path(directory)
    if not fs.exists(directory):
        return WalScan([], [], None, [])
    seqs: list[int] = []
    temp_files: list[str] = []
    for name in fs.listdir(directory):
        if name.endswith(_TMP_SUFFIX):
            temp_files.append(_join(directory, name))
            continue
        match = _SEGMENT_RE.match(name)
        if match is None:
            raise CorruptionError(_join(directory, name), None, "unexpected file in the WAL directory")
        seqs.append(int(match.group(1), 16))
    seqs.sort()
    for prev, seq in itertools.pairwise(seqs):
        if seq != prev + 1:
            raise CorruptionError(
                _join(directory, segment_name(seq)), None,
                f"gap in segment numbers: {segment_name(prev)} is followed by {segment_name(seq)}",
            )
    records: list[WalRecord] = []
    torn: TornTail | None = None
    for i, seq in enumerate(seqs):
        path = _join(directory, segment_name(seq))
        seg_records, seg_torn = _parse_segment(path, fs.read_bytes(path), seq, final=i == len(seqs) - 1)
        records.extend(seg_records)
        torn = seg_torn if seg_torn is not None else torn
    return WalScan(seqs, records, torn, temp_files)


class Wal:
    """An open WAL: append records, ``sync`` to make them durable, rotate and release segments.

    Use ``Wal.open(fs, directory)``, which recovers and returns the records already there.
    Not thread-safe; one owner (the node's driver loop).
    """

    def __init__(
        self,
        fs: FileSystem,
        directory: str,
        *,
        seqs: list[int],
        handle: AppendFile,
        size: int,
        segment_size: int,
        prologue: Prologue | None,
        torn_tail: TornTail | None,
    ) -> None:
        """Internal: use ``Wal.open``."""
        self.fs = fs
        self.directory = directory
        self.segment_size = segment_size
        self.torn_tail = torn_tail  # what recovery cut off, for the node's log; None if nothing
        self._seqs = seqs
        self._handle: AppendFile | None = handle
        self._size = size  # of the current segment, buffered records included
        self._pending: list[bytes] = []
        self._dirty = False  # appended (or cut) since the last sync
        self._prologue = prologue

    # -- opening -----------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        fs: FileSystem,
        directory: str,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        prologue: Prologue | None = None,
    ) -> tuple[Wal, list[WalRecord]]:
        """Open (creating if needed) the WAL in ``directory`` and recover its records.

        Returns the WAL, positioned to append after the last good record, and every record
        in order. A torn tail is truncated away (see ``Wal.torn_tail``); other damage
        raises ``CorruptionError``. ``prologue`` is called at each segment cut for records
        to write first in the new segment.
        """
        if segment_size < SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE:
            raise ValueError(f"segment_size {segment_size} is too small")
        directory = normalize_path(directory)
        fs.makedirs(directory)
        found = scan(fs, directory)
        for path in found.temp_files:
            fs.remove(path)  # a cut that did not finish: never named, never used
        if found.temp_files:
            fs.sync_dir(directory)

        if not found.seqs:
            cls._create_segment(fs, directory, 0)
            handle = fs.open_append(_join(directory, segment_name(0)), create=False)
            wal = cls(fs, directory, seqs=[0], handle=handle, size=SEGMENT_HEADER_SIZE,
                      segment_size=segment_size, prologue=prologue, torn_tail=None)
            return wal, []

        handle = fs.open_append(_join(directory, segment_name(found.seqs[-1])), create=False)
        if found.torn_tail is not None:
            handle.truncate(found.torn_tail.offset)
            handle.sync()
        wal = cls(fs, directory, seqs=list(found.seqs), handle=handle, size=handle.size(),
                  segment_size=segment_size, prologue=prologue, torn_tail=found.torn_tail)
        return wal, found.records

    @staticmethod
    def _create_segment(fs: FileSystem, directory: str, seq: int, body: bytes = b"") -> int:
        """Durably create segment ``seq``: header and ``body`` (encoded records) in a temp
        file, fsync, rename into place, fsync the directory. Returns the segment's size."""
        final = f"{directory}/{segment_name(seq)}" if directory else segment_name(seq)
        tmp = final + ".tmp"
        content = _segment_header(seq) + body
        handle = fs.open_append(tmp)
        try:
            handle.truncate(0)
            handle.write(content)
            handle.sync()
        finally:
            handle.close()
        fs.rename(tmp, final)
        fs.sync_dir(directory)
        return len(content)

    # -- writing -----------------------------------------------------------------------

    def _path(self, seq: int) -> str:
        return f"{self.directory}/{segment_name(seq)}" if self.directory else segment_name(seq)

    def _live(self) -> AppendFile:
        if self._handle is None:
            raise ValueError(f"WAL {self.directory or '.'} is closed")
        return self._handle

    def append(self, rtype: int, payload: bytes) -> int:
        """Buffer one record (type 1..255); returns the sequence number of its segment.

        Not durable until ``sync``. Cuts a new segment first when the current one is full.
        """
        frame = encode_record(rtype, payload)
        if self._handle is None:
            self._live()
        if self._size >= self.segment_size and self._size > SEGMENT_HEADER_SIZE:
            self.cut()
        self._pending.append(frame)
        self._size += len(frame)
        self._dirty = True
        return self._seqs[-1]

    def flush(self) -> None:
        """Write the buffered records to the segment file (one write), without fsync.

        They reach the OS (or the simulated page cache) but are not durable: a crash may
        drop them or keep a torn prefix. ``sync`` flushes first.
        """
        if self._pending:
            self._live().write(b"".join(self._pending))
            self._pending.clear()

    def sync(self) -> None:
        """Write buffered records and fsync the current segment: everything appended is durable."""
        handle = self._live()
        if not self._dirty:
            return
        self.flush()
        handle.sync()
        self._dirty = False

    def cut(self) -> None:
        """Close the current segment (synced) and start the next one, its prologue included.

        The prologue records are part of the new segment from the moment its name exists,
        so ``release`` can never delete the records they stand in for while they are missing.
        """
        handle = self._live()
        self.flush()
        handle.sync()
        handle.close()
        self._handle = None
        self._dirty = False
        seq = self._seqs[-1] + 1
        body = b""
        if self._prologue is not None:
            body = b"".join(encode_record(rtype, payload) for rtype, payload in self._prologue())
        self._size = self._create_segment(self.fs, self.directory, seq, body)
        self._handle = self.fs.open_append(self._path(seq), create=False)
        self._seqs.append(seq)

    # -- segments ------------------------------------------------------------------------

    @property
    def current_seq(self) -> int:
        """The sequence number of the segment being appended to."""
        return self._seqs[-1]

    def segments(self) -> list[int]:
        """The sequence numbers of the segments on disk, oldest first."""
        return list(self._seqs)

    def segment_paths(self) -> list[str]:
        """The paths of the segments on disk, oldest first."""
        return [self._path(seq) for seq in self._seqs]

    def release(self, before_seq: int) -> list[int]:
        """Delete the segments numbered below ``before_seq`` (never the current one).

        Syncs first, so the records a later segment repeats (its prologue) are durable before
        anything they stand in for is deleted. Returns the removed sequence numbers.
        """
        self.sync()
        doomed = [seq for seq in self._seqs[:-1] if seq < before_seq]
        for seq in doomed:  # oldest first, so the survivors stay consecutive
            self.fs.remove(self._path(seq))
        if doomed:
            self.fs.sync_dir(self.directory)
            self._seqs = [seq for seq in self._seqs if seq >= before_seq or seq == self._seqs[-1]]
        return doomed

    def close(self) -> None:
        """Sync and release the current segment. Idempotent."""
        if self._handle is None:
            return
        self.sync()
        self._handle.close()
        self._handle = None
