"""A node's data directory: its WAL and its snapshot files, recovered and saved together.

Why: the order of durable steps matters and is easy to get wrong in a driver loop. A
snapshot file must be durable before the WAL says it exists; the WAL marker must be durable
before old segments and older snapshot files are deleted; on start the snapshot loaded must
be the one the WAL's marker names (a newer file may exist if a crash came between the two
writes). ``DataDir`` does those steps in that order so the node does not have to.

How: ``<root>/wal`` holds a ``RaftWal``, ``<root>/snap`` a ``SnapshotStore``, both on the
one ``FileSystem`` passed in (the real OS or the simulation's in-memory disk). Opening
removes snapshot files newer than the WAL's marker (a save cut short by a crash), so the
files on disk are always ones the WAL can name.
"""

from __future__ import annotations

from typing import NamedTuple

from kvcheck.reference.storage.errors import CorruptionError
from kvcheck.reference.storage.fs import FileSystem, normalize_path
from kvcheck.reference.storage.raftlog import EntryTuple, HardStateTuple, RaftWal
from kvcheck.reference.storage.snapshot import SnapshotFile, SnapshotStore, snapshot_name
from kvcheck.reference.storage.wal import DEFAULT_SEGMENT_SIZE

__all__ = ["DataDir", "Recovered"]


class Recovered(NamedTuple):
    """What a node starts from: the snapshot (or None), the hard state (or None), the entries after it."""

    snapshot: SnapshotFile | None
    hard_state: HardStateTuple | None
    entries: list[EntryTuple]


class DataDir:
    """Open (creating if needed) and recover a node's storage under ``root`` on ``fs``."""

    def __init__(
        self,
        fs: FileSystem,
        root: str = "",
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        keep_snapshots: int = 2,
    ) -> None:
        root = normalize_path(root)
        self.fs = fs
        self.root = root
        self.keep_snapshots = keep_snapshots
        self.snapshots = SnapshotStore(fs, f"{root}/snap" if root else "snap")
        self.wal = RaftWal.open(fs, f"{root}/wal" if root else "wal", segment_size=segment_size)
        self.discarded_snapshots = self._discard_unnamed_snapshots()

    def _discard_unnamed_snapshots(self) -> list[str]:
        """Remove snapshot files newer than the WAL's marker: a save interrupted before its
        marker was durable. Nothing refers to them, and a later save may reuse the index."""
        marker = self.wal.snapshot
        newest_named = marker.index if marker is not None else -1
        doomed = [i for i in self.snapshots.indexes() if i > newest_named]
        paths = [f"{self.snapshots.directory}/{snapshot_name(i)}" for i in doomed]
        for path in paths:
            self.fs.remove(path)
        if paths:
            self.fs.sync_dir(self.snapshots.directory)
        return paths

    def load(self) -> Recovered:
        """The recovered state; ``CorruptionError`` if the snapshot the WAL names is missing or bad."""
        state = self.wal.load()
        snap: SnapshotFile | None = None
        if state.snapshot is not None:
            path = f"{self.snapshots.directory}/{snapshot_name(state.snapshot.index)}"
            try:
                snap = self.snapshots.load(state.snapshot.index)
            except FileNotFoundError:
                raise CorruptionError(
                    path, None, f"the WAL starts after snapshot index {state.snapshot.index} but its file is missing"
                ) from None
            if snap.term != state.snapshot.term:
                raise CorruptionError(
                    path, None, f"snapshot term {snap.term} differs from the WAL's marker term {state.snapshot.term}"
                )
        return Recovered(snap, state.hard_state, state.entries)

    def save(self, hard_state: HardStateTuple | None, entries: list[EntryTuple]) -> None:
        """Append entries then hard state to the WAL (not durable until ``sync``)."""
        self.wal.save(hard_state, entries)

    def sync(self) -> None:
        """fsync the WAL."""
        self.wal.sync()

    def save_snapshot(self, index: int, term: int, conf_state: bytes, data: bytes, *, release: bool = True) -> None:
        """Durably save a snapshot: file, then WAL marker (synced), then release old segments and files.

        ``data`` is the state machine's payload at applied index ``index`` (opaque here).
        With ``release`` False the WAL keeps its old segments (and all snapshot files stay).
        """
        saved = self.wal.snapshot
        if saved is not None and index < saved.index:
            raise ValueError(f"snapshot index {index} is older than the saved snapshot index {saved.index}")
        self.snapshots.save(index, term, conf_state, data)
        self.wal.save_snapshot_meta(index, term, conf_state)
        self.wal.sync()
        if release:
            self.wal.release_to(index)
            self.snapshots.purge(self.keep_snapshots, keep_index=index)

    def close(self) -> None:
        """Sync and close the WAL."""
        self.wal.close()
