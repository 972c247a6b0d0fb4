"""Snapshot files are written atomically (a crash at any step leaves the old snapshot or the
complete new one, never a partial file), verified on load, and a data directory recovers the
snapshot its WAL names together with the entries after it."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from kvcheck.reference.storage.datadir import DataDir
from kvcheck.reference.storage.errors import CorruptionError
from kvcheck.reference.storage.fs import (
    CrashPointFileSystem,
    FileSystem,
    InjectedCrash,
    MemoryFileSystem,
    OsFileSystem,
)
from kvcheck.reference.storage.raftlog import EntryTuple
from kvcheck.reference.storage.snapshot import (
    SnapshotFile,
    SnapshotStore,
    encode_snapshot,
    snapshot_name,
)


@pytest.fixture(params=["os", "memory"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> FileSystem:
    if request.param == "os":
        return OsFileSystem(tmp_path)
    return MemoryFileSystem()


def ents(first: int, last: int, term: int) -> list[EntryTuple]:
    return [(i, term, 0, b"v%d" % i) for i in range(first, last + 1)]


def replace_file(fs: FileSystem, path: str, data: bytes) -> None:
    handle = fs.open_append(path)
    handle.truncate(0)
    handle.write(data)
    handle.sync()
    handle.close()


# -- SnapshotStore --------------------------------------------------------------------------


def test_save_and_load_round_trip(fs: FileSystem) -> None:
    store = SnapshotStore(fs, "snap")
    path = store.save(42, 3, b"conf", b"state" * 100)
    assert path == f"snap/{snapshot_name(42)}"
    assert store.indexes() == [42]
    assert store.load(42) == SnapshotFile(42, 3, b"conf", b"state" * 100)
    assert fs.listdir("snap") == [snapshot_name(42)], "no temp file is left behind"


def test_load_newest_picks_the_highest_index(fs: FileSystem) -> None:
    store = SnapshotStore(fs, "snap")
    for index in (5, 30, 12):
        store.save(index, 1, b"", b"at %d" % index)
    assert store.indexes() == [5, 12, 30]
    snap, skipped = store.load_newest()
    assert snap is not None and snap.index == 30 and skipped == []
    snap, _ = store.load_newest(max_index=20)
    assert snap is not None and snap.index == 12


def test_load_newest_skips_a_corrupt_file_and_says_why(fs: FileSystem) -> None:
    store = SnapshotStore(fs, "snap")
    store.save(5, 1, b"", b"good")
    store.save(9, 1, b"", b"newer")
    raw = bytearray(fs.read_bytes(f"snap/{snapshot_name(9)}"))
    raw[-6] ^= 0x40
    replace_file(fs, f"snap/{snapshot_name(9)}", bytes(raw))
    snap, skipped = store.load_newest()
    assert snap is not None and snap.index == 5
    assert len(skipped) == 1 and skipped[0].path == f"snap/{snapshot_name(9)}"
    assert "snapshot CRC mismatch" in skipped[0].reason


def test_every_flipped_byte_is_detected(fs: FileSystem) -> None:
    store = SnapshotStore(fs, "snap")
    store.save(7, 2, b"cs", b"payload")
    path = f"snap/{snapshot_name(7)}"
    whole = fs.read_bytes(path)
    for at in range(len(whole)):
        damaged = bytearray(whole)
        damaged[at] ^= 0x01
        replace_file(fs, path, bytes(damaged))
        with pytest.raises(CorruptionError) as info:
            store.load(7)
        assert info.value.path == path, f"byte {at}"
        assert info.value.offset is not None


def test_every_truncation_is_detected(fs: FileSystem) -> None:
    store = SnapshotStore(fs, "snap")
    store.save(7, 2, b"cs", b"payload")
    path = f"snap/{snapshot_name(7)}"
    whole = fs.read_bytes(path)
    for cut in range(len(whole)):
        replace_file(fs, path, whole[:cut])
        with pytest.raises(CorruptionError, match=r"shorter than its header|lengths in the header"):
            store.load(7)


def test_a_file_under_another_index_name_is_refused(fs: FileSystem) -> None:
    store = SnapshotStore(fs, "snap")
    store.save(7, 2, b"", b"x")
    fs.rename(f"snap/{snapshot_name(7)}", f"snap/{snapshot_name(8)}")
    with pytest.raises(CorruptionError, match="header says index 7, file name says 8"):
        store.load(8)


def test_missing_snapshot_is_file_not_found(fs: FileSystem) -> None:
    with pytest.raises(FileNotFoundError):
        SnapshotStore(fs, "snap").load(3)


def test_unexpected_file_in_the_directory_is_refused(fs: FileSystem) -> None:
    store = SnapshotStore(fs, "snap")
    fs.open_append("snap/readme").close()
    with pytest.raises(CorruptionError, match="unexpected file in the snapshot directory"):
        store.indexes()


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="index"):
        encode_snapshot(SnapshotFile(-1, 0, b"", b""))
    with pytest.raises(ValueError, match="bytes"):
        encode_snapshot(SnapshotFile(1, 0, b"", "text"))  # type: ignore[arg-type]


def test_purge_keeps_the_newest_and_the_named_one(fs: FileSystem) -> None:
    store = SnapshotStore(fs, "snap")
    for index in (1, 2, 3, 4, 5):
        store.save(index, 1, b"", b"")
    removed = store.purge(2, keep_index=1)
    assert removed == [f"snap/{snapshot_name(i)}" for i in (2, 3)]
    assert store.indexes() == [1, 4, 5]


def test_leftover_temp_files_are_removed_on_open() -> None:
    fs = MemoryFileSystem()
    SnapshotStore(fs, "snap").save(1, 1, b"", b"a")
    handle = fs.open_append(f"snap/{snapshot_name(2)}.tmp")
    handle.write(b"partial")
    handle.close()
    store = SnapshotStore(fs, "snap")
    assert fs.listdir("snap") == [snapshot_name(1)]
    assert store.indexes() == [1]


def test_snapshot_save_is_atomic_at_every_crash_point() -> None:
    """Crash before each file-system step of a save, with and without torn writes: the
    snapshot name holds either the previous complete file or the new complete file."""
    old = SnapshotFile(10, 1, b"conf-old", b"old state " * 50)
    new = SnapshotFile(10, 2, b"conf-new", b"new state " * 80)  # same index: a replacement

    def prepare() -> MemoryFileSystem:
        inner = MemoryFileSystem()
        SnapshotStore(inner, "snap").save(old.index, old.term, old.conf_state, old.data)
        return inner

    counter = CrashPointFileSystem(prepare())
    SnapshotStore(counter, "snap").save(new.index, new.term, new.conf_state, new.data)
    steps = len(counter.steps)
    assert steps >= 5, counter.steps
    outcomes = set()
    for crash_at in range(steps + 1):
        for seed in range(4):
            inner = prepare()
            crashing = CrashPointFileSystem(inner, crash_at if crash_at < steps else None)
            with contextlib.suppress(InjectedCrash):
                SnapshotStore(crashing, "snap").save(new.index, new.term, new.conf_state, new.data)
            inner.crash(random.Random(seed), tear_probability=1.0)
            store = SnapshotStore(inner, "snap")
            got = store.load(10)
            assert got in (old, new), f"crash before step {crash_at}"
            outcomes.add(got.term)
            assert inner.listdir("snap") == [snapshot_name(10)]
    assert outcomes == {1, 2}, "both outcomes occur: before the rename is durable, and after"


# -- DataDir -------------------------------------------------------------------------------


def test_datadir_recovers_snapshot_hard_state_and_entries(fs: FileSystem) -> None:
    data = DataDir(fs, "node1", segment_size=256)
    data.save((1, 1, 0), ents(1, 30, 1))
    data.sync()
    data.save_snapshot(20, 1, b"voters=1", b"state@20")
    data.save((2, 1, 25), ents(31, 35, 2))
    data.sync()
    data.close()
    recovered = DataDir(fs, "node1", segment_size=256).load()
    assert recovered.snapshot == SnapshotFile(20, 1, b"voters=1", b"state@20")
    assert recovered.hard_state == (2, 1, 25)
    assert recovered.entries == ents(21, 30, 1) + ents(31, 35, 2)


def test_datadir_releases_old_segments_and_snapshots(fs: FileSystem) -> None:
    data = DataDir(fs, "", segment_size=200, keep_snapshots=2)
    for i in range(1, 101):
        data.save((1, 1, i - 1), ents(i, i, 1))
        if i % 25 == 0:
            data.sync()
            data.save_snapshot(i, 1, b"", b"state@%d" % i)
    assert data.snapshots.indexes() == [75, 100]
    assert len(fs.listdir("wal")) <= 3
    data.close()
    recovered = DataDir(fs, "", segment_size=200).load()
    assert recovered.snapshot is not None and recovered.snapshot.index == 100
    assert recovered.entries == []
    assert recovered.hard_state == (1, 1, 99)


def test_datadir_loads_the_snapshot_the_wal_names_not_a_newer_file() -> None:
    fs = MemoryFileSystem()
    data = DataDir(fs, "", segment_size=300)
    data.save((1, 1, 10), ents(1, 10, 1))
    data.sync()
    data.save_snapshot(5, 1, b"", b"state@5")
    # A crash after the snapshot file at 8 is durable but before the WAL marker is:
    data.snapshots.save(8, 1, b"", b"state@8")
    data.wal.save_snapshot_meta(8, 1, b"")
    fs.crash(random.Random(0), tear_probability=0.0)
    reopened = DataDir(fs, "", segment_size=300)
    recovered = reopened.load()
    assert recovered.snapshot is not None and recovered.snapshot.index == 5
    assert recovered.entries == ents(6, 10, 1)
    assert reopened.discarded_snapshots == [f"snap/{snapshot_name(8)}"], "the unnamed newer file is removed"
    assert reopened.snapshots.indexes() == [5]


def test_datadir_refuses_when_the_named_snapshot_is_missing() -> None:
    fs = MemoryFileSystem()
    data = DataDir(fs, "n")
    data.save(None, ents(1, 3, 1))
    data.save_snapshot(3, 1, b"", b"s")
    data.close()
    fs.remove(f"n/snap/{snapshot_name(3)}")
    with pytest.raises(CorruptionError, match="snapshot index 3 but its file is missing"):
        DataDir(fs, "n").load()


def test_datadir_refuses_when_the_named_snapshot_is_corrupt() -> None:
    fs = MemoryFileSystem()
    data = DataDir(fs, "n")
    data.save(None, ents(1, 3, 1))
    data.save_snapshot(3, 1, b"", b"s")
    data.close()
    path = f"n/snap/{snapshot_name(3)}"
    raw = bytearray(fs.read_bytes(path))
    raw[-1] ^= 1
    replace_file(fs, path, bytes(raw))
    with pytest.raises(CorruptionError, match="snapshot CRC mismatch"):
        DataDir(fs, "n").load()


def test_datadir_snapshot_is_consistent_at_every_crash_point() -> None:
    """Crash before each step of save_snapshot (file, marker, sync, release, purge): the
    recovered snapshot and entries always describe the same log."""
    all_entries = ents(1, 40, 1)

    def prepare(fs: FileSystem) -> DataDir:
        data = DataDir(fs, "", segment_size=200)
        data.save((1, 1, 40), all_entries)
        data.sync()
        data.save_snapshot(10, 1, b"", b"state@10")
        return data

    counter = CrashPointFileSystem(MemoryFileSystem())
    prepare(counter).save_snapshot(30, 1, b"", b"state@30")
    for crash_at in range(len(counter.steps)):
        for seed in range(3):
            inner = MemoryFileSystem()
            with contextlib.suppress(InjectedCrash):
                prepare(CrashPointFileSystem(inner, crash_at)).save_snapshot(30, 1, b"", b"state@30")
            inner.crash(random.Random(seed))
            recovered = DataDir(inner, "", segment_size=200).load()
            if recovered.snapshot is None:
                assert recovered.entries == all_entries[: len(recovered.entries)]
                continue
            index = recovered.snapshot.index
            assert recovered.snapshot.data == b"state@%d" % index
            assert recovered.entries == all_entries[index:], f"crash before step {crash_at}"


def test_datadir_refuses_an_older_snapshot_before_writing_it() -> None:
    fs = MemoryFileSystem()
    data = DataDir(fs, "")
    data.save(None, ents(1, 9, 1))
    data.save_snapshot(8, 1, b"", b"s8")
    with pytest.raises(ValueError, match="older than the saved snapshot index 8"):
        data.save_snapshot(5, 1, b"", b"s5")
    assert data.snapshots.indexes() == [8]


def test_recovered_state_unpacks_like_a_tuple() -> None:
    fs = MemoryFileSystem()
    data = DataDir(fs, "")
    data.save((1, 0, 0), ents(1, 2, 1))
    snapshot, hard_state, entries = data.load()
    assert snapshot is None and hard_state == (1, 0, 0) and entries == ents(1, 2, 1)
    marker, hs, log_entries = data.wal.load()
    assert marker is None and hs == hard_state and log_entries == entries
