"""Snapshot files: the state machine's state at an applied index, written atomically.

Why: the Raft log cannot grow forever; a node periodically saves the whole state machine
(an opaque payload from ``kvcheck.reference.kv``) and the WAL then forgets the entries it
covers. The applied index is stored inside the same file as the state it describes, so
the two can never disagree after a crash.

How: ``<index as 16 hex digits>.snap`` in one directory, each::

    magic "KVCKSNP\\0" | version u32 | index u64 | term u64 | conf_state length u32 |
    data length u64 | conf_state | data | crc32 of everything before u32

(little-endian). ``save`` writes ``<name>.tmp``, fsyncs it, renames it into place and
fsyncs the directory: after a crash the name holds either nothing or the complete file.
``load(index)`` verifies magic, version, lengths, the CRC and that the header's index
matches the name, raising ``CorruptionError`` (file, offset, reason) otherwise.
``load_newest`` returns the newest file that verifies and the errors of any newer ones it
skipped. Leftover ``.tmp`` files are removed when the store is opened.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

from kvcheck.reference.storage.errors import CorruptionError
from kvcheck.reference.storage.fs import FileSystem, normalize_path

__all__ = ["SnapshotFile", "SnapshotStore", "snapshot_name"]

SNAPSHOT_MAGIC = b"KVCKSNP\x00"
SNAPSHOT_VERSION = 1
_HEADER = struct.Struct("<8sIQQIQ")
_CRC = struct.Struct("<I")
_NAME_RE = re.compile(r"^([0-9a-f]{16})\.snap$")
_TMP_SUFFIX = ".snap.tmp"
_U64 = 1 << 64


def snapshot_name(index: int) -> str:
    """The file name of the snapshot at ``index``."""
    return f"{index:016x}.snap"


@dataclass(frozen=True, slots=True)
class SnapshotFile:
    """A snapshot as stored: the applied index and its term, the ConfState, the state payload."""

    index: int
    term: int
    conf_state: bytes
    data: bytes


def encode_snapshot(snap: SnapshotFile) -> bytes:
    """The bytes of a snapshot file."""
    for name in ("index", "term"):
        value = getattr(snap, name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _U64:
            raise ValueError(f"snapshot {name} must be an int in [0, 2**64), got {value!r}")
    if not isinstance(snap.conf_state, bytes) or not isinstance(snap.data, bytes):
        raise ValueError("snapshot conf_state and data must be bytes")
    head = _HEADER.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, snap.index, snap.term, len(snap.conf_state), len(snap.data))
    crc = zlib.crc32(snap.data, zlib.crc32(snap.conf_state, zlib.crc32(head)))
    return b"".join((head, snap.conf_state, snap.data, _CRC.pack(crc)))


def decode_snapshot(path: str, raw: bytes) -> SnapshotFile:
    """Parse and verify a snapshot file's bytes; ``CorruptionError`` names what is wrong."""
    if len(raw) < _HEADER.size + _CRC.size:
        raise CorruptionError(path, 0, f"snapshot file of {len(raw)} bytes is shorter than its header")
    magic, version, index, term, conf_len, data_len = _HEADER.unpack_from(raw, 0)
    if magic != SNAPSHOT_MAGIC:
        raise CorruptionError(path, 0, f"bad snapshot magic {magic!r}, expected {SNAPSHOT_MAGIC!r}")
    if version != SNAPSHOT_VERSION:
        raise CorruptionError(path, 8, f"unsupported snapshot version {version}, expected {SNAPSHOT_VERSION}")
    expected = _HEADER.size + conf_len + data_len + _CRC.size
    if expected != len(raw):
        raise CorruptionError(
            path, _HEADER.size,
            f"lengths in the header (conf_state {conf_len}, data {data_len}) need {expected} bytes, file has {len(raw)}",
        )
    crc_at = len(raw) - _CRC.size
    (stored,) = _CRC.unpack_from(raw, crc_at)
    if zlib.crc32(memoryview(raw)[:crc_at]) != stored:
        raise CorruptionError(path, crc_at, "snapshot CRC mismatch")
    conf_state = raw[_HEADER.size : _HEADER.size + conf_len]
    data = raw[_HEADER.size + conf_len : crc_at]
    return SnapshotFile(index, term, conf_state, data)


class SnapshotStore:
    """The snapshot directory of a node. Creates the directory and clears leftover temp files."""

    def __init__(self, fs: FileSystem, directory: str) -> None:
        self.fs = fs
        self.directory = normalize_path(directory)
        fs.makedirs(self.directory)
        leftovers = [name for name in fs.listdir(self.directory) if name.endswith(_TMP_SUFFIX)]
        for name in leftovers:
            fs.remove(self._path(name))
        if leftovers:
            fs.sync_dir(self.directory)

    def _path(self, name: str) -> str:
        return f"{self.directory}/{name}" if self.directory else name

    def indexes(self) -> list[int]:
        """The indexes of the snapshot files present, ascending. Unknown files are an error."""
        out = []
        for name in self.fs.listdir(self.directory):
            match = _NAME_RE.match(name)
            if match is None:
                if name.endswith(_TMP_SUFFIX):
                    continue  # a save in progress
                raise CorruptionError(self._path(name), None, "unexpected file in the snapshot directory")
            out.append(int(match.group(1), 16))
        return sorted(out)

    def save(self, index: int, term: int, conf_state: bytes, data: bytes) -> str:
        """Durably write the snapshot at ``index``; returns its path. Replaces one at the same index."""
        raw = encode_snapshot(SnapshotFile(index, term, conf_state, data))
        final = self._path(snapshot_name(index))
        tmp = final + ".tmp"
        handle = self.fs.open_append(tmp)
        try:
            handle.truncate(0)
            handle.write(raw)
            handle.sync()
        finally:
            handle.close()
        self.fs.rename(tmp, final)
        self.fs.sync_dir(self.directory)
        return final

    def load(self, index: int) -> SnapshotFile:
        """The verified snapshot at ``index``: FileNotFoundError if absent, CorruptionError if bad."""
        path = self._path(snapshot_name(index))
        snap = decode_snapshot(path, self.fs.read_bytes(path))
        if snap.index != index:
            raise CorruptionError(path, 12, f"header says index {snap.index}, file name says {index}")
        return snap

    def load_newest(self, *, max_index: int | None = None) -> tuple[SnapshotFile | None, list[CorruptionError]]:
        """The newest snapshot (at or below ``max_index``) that verifies, and why newer ones did not."""
        skipped: list[CorruptionError] = []
        for index in reversed(self.indexes()):
            if max_index is not None and index > max_index:
                continue
            try:
                return self.load(index), skipped
            except CorruptionError as err:
                skipped.append(err)
        return None, skipped

    def purge(self, keep: int = 2, *, keep_index: int | None = None) -> list[str]:
        """Delete all but the newest ``keep`` snapshot files (never ``keep_index``); returns paths."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        indexes = self.indexes()
        doomed = [i for i in indexes[:-keep] if i != keep_index]
        paths = [self._path(snapshot_name(i)) for i in doomed]
        for path in paths:
            self.fs.remove(path)
        if paths:
            self.fs.sync_dir(self.directory)
        return paths
