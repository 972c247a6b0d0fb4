"""Durable storage for the reference store: a file-system interface, a WAL, snapshot files.

Everything durable goes through a ``FileSystem`` (``OsFileSystem`` for real, or
``MemoryFileSystem``, whose ``crash(rng)`` loses what was not fsynced and may tear the last
write, for tests and the simulation). On it: ``Wal`` (generic checksummed records with an
explicit ``sync``), ``RaftWal`` (hard state, entries, snapshot marker with plain tuples),
``SnapshotStore`` (atomic snapshot files) and ``DataDir`` (a node's WAL and snapshots,
saved and recovered in the right order). Data that fails a check raises ``CorruptionError``
naming the file, the byte offset and the reason.
"""

from kvcheck.reference.storage.datadir import DataDir, Recovered
from kvcheck.reference.storage.errors import CorruptionError
from kvcheck.reference.storage.fs import (
    AppendFile,
    CrashPointFileSystem,
    FileSystem,
    InjectedCrash,
    MemoryFileSystem,
    OsFileSystem,
    StaleHandleError,
)
from kvcheck.reference.storage.raftlog import (
    EntryTuple,
    HardStateTuple,
    RaftState,
    RaftWal,
    SnapshotMeta,
)
from kvcheck.reference.storage.snapshot import SnapshotFile, SnapshotStore
from kvcheck.reference.storage.wal import TornTail, Wal, WalRecord, WalScan

__all__ = [
    "AppendFile",
    "CorruptionError",
    "CrashPointFileSystem",
    "DataDir",
    "EntryTuple",
    "FileSystem",
    "HardStateTuple",
    "InjectedCrash",
    "MemoryFileSystem",
    "OsFileSystem",
    "RaftState",
    "RaftWal",
    "Recovered",
    "SnapshotFile",
    "SnapshotMeta",
    "SnapshotStore",
    "StaleHandleError",
    "TornTail",
    "Wal",
    "WalRecord",
    "WalScan",
]
