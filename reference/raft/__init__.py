"""The Raft core: a sans-IO consensus state machine in the shape of etcd-io/raft.

``RawNode`` is what a driver uses; the values it exchanges are in ``types``; the durable log
it reads is ``MemoryStorage``. ``testing`` holds a synchronous in-memory cluster for tests and
the regression suite. No trio, no sockets, no clock, no global random in this package.
"""

from kvcheck.reference.raft.rawnode import Config, ProgressStatus, RawNode, Status
from kvcheck.reference.raft.storage import MemoryStorage
from kvcheck.reference.raft.types import (
    EMPTY_HARD_STATE,
    EMPTY_SNAPSHOT,
    NONE,
    Compacted,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    InvariantViolation,
    MalformedMessage,
    Message,
    MessageType,
    ProposalDropped,
    Proposed,
    RaftError,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SnapshotOutOfDate,
    SoftState,
    StepError,
    StorageError,
    Unavailable,
)

__all__ = [
    "EMPTY_HARD_STATE",
    "EMPTY_SNAPSHOT",
    "NONE",
    "Compacted",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "InvariantViolation",
    "MalformedMessage",
    "MemoryStorage",
    "Message",
    "MessageType",
    "ProgressStatus",
    "ProposalDropped",
    "Proposed",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SnapshotOutOfDate",
    "SoftState",
    "Status",
    "StepError",
    "StorageError",
    "Unavailable",
]
