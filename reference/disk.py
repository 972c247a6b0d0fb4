"""The node's Disk over the durable storage package (WAL + snapshot files on a FileSystem).

Why: the node driver speaks Raft types (HardState, Entry, Snapshot); reference/storage speaks
plain tuples and bytes so it does not depend on Raft. ``StorageDisk`` converts between them
and is the Disk both shells use: the server over the real file system (blocking writes and
fsyncs run in a worker thread, so the trio loop keeps serving while a batch syncs), the
simulation over storage's in-memory FileSystem (run inline: deterministic, and ``crash``
loses exactly what was not fsynced).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import msgpack
import trio

from kvcheck.reference import raft
from kvcheck.reference.node import DiskState
from kvcheck.reference.storage import DataDir, FileSystem, OsFileSystem

T = TypeVar("T")


def encode_conf_state(cs: raft.ConfState) -> bytes:
    data: bytes = msgpack.packb(cs.to_wire(), use_bin_type=True)
    return data


def decode_conf_state(data: bytes) -> raft.ConfState:
    if not data:
        return raft.ConfState()
    return raft.ConfState.from_wire(msgpack.unpackb(data, raw=False))


class StorageDisk:
    """The Disk protocol on a ``DataDir``. ``offload``: run file I/O in a worker thread."""

    def __init__(self, datadir: DataDir, *, offload: bool) -> None:
        self.datadir = datadir
        self.offload = offload

    async def _run(self, fn: Callable[[], T]) -> T:
        if self.offload:
            return await trio.to_thread.run_sync(fn)
        return await self._inline(fn)

    async def _inline(self, fn: Callable[[], T]) -> T:
        """Run quick file work in the event loop, then let other tasks run."""
        result = fn()
        await trio.lowlevel.checkpoint()
        return result

    async def load(self) -> DiskState:
        rec = await self._run(self.datadir.load)
        snapshot = None
        if rec.snapshot is not None:
            s = rec.snapshot
            snapshot = raft.Snapshot(
                raft.SnapshotMeta(s.index, s.term, decode_conf_state(s.conf_state)), s.data)
        hard_state = raft.HardState(*rec.hard_state) if rec.hard_state is not None else None
        entries = [raft.Entry(term, index, raft.EntryType(etype), data)
                   for index, term, etype, data in rec.entries]
        return DiskState(snapshot, hard_state, entries)

    async def save(
        self, hard_state: raft.HardState | None, entries: Sequence[raft.Entry], sync: bool
    ) -> None:
        hs = (hard_state.term, hard_state.vote, hard_state.commit) if hard_state is not None else None
        tuples = [(e.index, e.term, int(e.type), e.data) for e in entries]

        def work() -> None:
            self.datadir.save(hs, tuples)
            if sync:
                self.datadir.sync()

        if sync:
            await self._run(work)
        else:  # no fsync (only the commit index moved): a buffered write, done inline
            await self._inline(work)

    async def save_snapshot(self, snapshot: raft.Snapshot) -> None:
        meta = snapshot.meta

        def work() -> None:
            self.datadir.save_snapshot(meta.index, meta.term, encode_conf_state(meta.conf_state), snapshot.data)

        await self._run(work)

    async def close(self) -> None:
        await self._run(self.datadir.close)


async def open_disk(path: Path) -> StorageDisk:
    """The Disk of a member whose data directory is ``path`` on the real file system."""
    path.mkdir(parents=True, exist_ok=True)
    fs: FileSystem = OsFileSystem(path)
    datadir = await trio.to_thread.run_sync(lambda: DataDir(fs, ""))
    return StorageDisk(datadir, offload=True)
