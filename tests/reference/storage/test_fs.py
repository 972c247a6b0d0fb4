"""The FileSystem interface: the OS and in-memory implementations agree, and the in-memory
one loses exactly what a power failure would (unsynced data, unsynced directory changes)
and tears only the last unsynced write, deterministically for a given seed."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcheck.reference.storage.fs import (
    AppendFile,
    CrashPointFileSystem,
    FileSystem,
    InjectedCrash,
    MemoryFileSystem,
    OsFileSystem,
    StaleHandleError,
    normalize_path,
)

NO_TEAR = 0.0
ALWAYS_TEAR = 1.0


@pytest.fixture(params=["os", "memory"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> FileSystem:
    if request.param == "os":
        return OsFileSystem(tmp_path)
    return MemoryFileSystem()


def write_synced(fs: FileSystem, path: str, data: bytes) -> AppendFile:
    handle = fs.open_append(path)
    handle.write(data)
    handle.sync()
    return handle


# -- the protocol, both implementations ---------------------------------------------------


def test_both_implementations_satisfy_the_protocol(tmp_path: Path) -> None:
    assert isinstance(OsFileSystem(tmp_path), FileSystem)
    assert isinstance(MemoryFileSystem(), FileSystem)
    assert isinstance(CrashPointFileSystem(MemoryFileSystem()), FileSystem)


def test_append_read_size_truncate(fs: FileSystem) -> None:
    fs.makedirs("a/b")
    handle = fs.open_append("a/b/f")
    handle.write(b"hello ")
    handle.write(b"world")
    assert handle.size() == 11 == fs.size("a/b/f")
    assert fs.read_bytes("a/b/f") == b"hello world"
    assert fs.read_bytes("a/b/f", 6) == b"world"
    assert fs.read_bytes("a/b/f", 2, 3) == b"llo"
    assert fs.read_bytes("a/b/f", 20) == b""
    handle.truncate(5)
    handle.write(b"!")
    assert fs.read_bytes("a/b/f") == b"hello!"
    handle.sync()
    handle.close()
    again = fs.open_append("a/b/f", create=False)
    again.write(b"?")
    again.close()
    assert fs.read_bytes("a/b/f") == b"hello!?"


def test_listdir_is_sorted_and_exists_is_dir(fs: FileSystem) -> None:
    fs.makedirs("d")
    for name in ("c", "a", "b"):
        fs.open_append(f"d/{name}").close()
    fs.makedirs("d/sub")
    assert fs.listdir("d") == ["a", "b", "c", "sub"]
    assert fs.exists("d/a") and not fs.exists("d/z") and not fs.exists("d/a/x")
    assert fs.is_dir("d/sub") and not fs.is_dir("d/a") and not fs.is_dir("nope")
    assert fs.listdir("") == ["d"]


def test_rename_replaces_and_remove_deletes(fs: FileSystem) -> None:
    write_synced(fs, "x", b"new").close()
    write_synced(fs, "y", b"old").close()
    fs.rename("x", "y")
    assert fs.listdir("") == ["y"]
    assert fs.read_bytes("y") == b"new"
    fs.remove("y")
    assert fs.listdir("") == []


def test_errors_are_the_os_exception_types(fs: FileSystem) -> None:
    fs.makedirs("d")
    with pytest.raises(FileNotFoundError):
        fs.read_bytes("missing")
    with pytest.raises(FileNotFoundError):
        fs.open_append("missing", create=False)
    with pytest.raises(FileNotFoundError):
        fs.open_append("nodir/f")
    with pytest.raises(FileNotFoundError):
        fs.remove("missing")
    with pytest.raises(FileNotFoundError):
        fs.rename("missing", "other")
    with pytest.raises(IsADirectoryError):
        fs.open_append("d")
    with pytest.raises((IsADirectoryError, PermissionError)):
        fs.remove("d")
    fs.open_append("f").close()
    with pytest.raises(NotADirectoryError):
        fs.listdir("f")
    with pytest.raises((FileExistsError, NotADirectoryError)):
        fs.makedirs("f/g")


@pytest.mark.parametrize("bad", ["/etc/passwd", "..", "../x", "a/../../x"])
def test_paths_cannot_leave_the_root(fs: FileSystem, bad: str) -> None:
    with pytest.raises(ValueError, match=r"absolute|leaves the file system root"):
        fs.open_append(bad)


def test_normalize_path() -> None:
    assert normalize_path("") == "" == normalize_path(".")
    assert normalize_path("a//b/./c") == "a/b/c"
    assert normalize_path("a/b/../c") == "a/c"


def test_closed_handle_refuses_use(fs: FileSystem) -> None:
    handle = fs.open_append("f")
    handle.close()
    handle.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        handle.write(b"x")


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.sampled_from("abc"), st.binary(max_size=20)),
        st.tuples(st.just("truncate"), st.sampled_from("abc"), st.integers(0, 30)),
        st.tuples(st.just("rename"), st.sampled_from("abc"), st.sampled_from("abc")),
        st.tuples(st.just("remove"), st.sampled_from("abc"), st.none()),
        st.tuples(st.just("sync"), st.sampled_from("abc"), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=60, deadline=None)
@given(ops=ops)
def test_memory_matches_os_without_crashes(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:
    """Differential: the same operations give the same visible files on both implementations."""
    systems: list[FileSystem] = [OsFileSystem(tmp_path_factory.mktemp("os")), MemoryFileSystem()]
    for system in systems:
        system.makedirs("d")
    for op, name, arg in ops:
        outcomes = []
        for system in systems:
            path = f"d/{name}"
            try:
                if op == "write":
                    h = system.open_append(path)
                    h.write(arg)
                    h.close()
                elif op == "truncate":
                    h = system.open_append(path)
                    h.truncate(arg)
                    h.close()
                elif op == "rename":
                    system.rename(path, f"d/{arg}")
                elif op == "remove":
                    system.remove(path)
                else:
                    h = system.open_append(path, create=False)
                    h.sync()
                    h.close()
                outcomes.append("ok")
            except OSError as err:
                outcomes.append(type(err).__name__)
        assert outcomes[0] == outcomes[1], (op, name, arg)
        views = [{n: s.read_bytes(f"d/{n}") for n in s.listdir("d")} for s in systems]
        assert views[0] == views[1]


# -- in-memory crash semantics -----------------------------------------------------------


def test_unsynced_writes_are_lost() -> None:
    fs = MemoryFileSystem()
    handle = write_synced(fs, "f", b"durable")
    fs.sync_dir("")
    handle.write(b" volatile")
    assert fs.read_bytes("f") == b"durable volatile"
    assert fs.dirty_files() == ["f"]
    fs.crash(random.Random(1), tear_probability=NO_TEAR)
    assert fs.read_bytes("f") == b"durable"
    assert fs.dirty_files() == []


def test_synced_writes_survive_every_crash() -> None:
    fs = MemoryFileSystem()
    write_synced(fs, "f", b"abc").close()
    fs.sync_dir("")
    for seed in range(20):
        fs.crash(random.Random(seed), tear_probability=ALWAYS_TEAR)
        assert fs.read_bytes("f") == b"abc"


def test_unsynced_truncate_is_lost() -> None:
    fs = MemoryFileSystem()
    handle = write_synced(fs, "f", b"0123456789")
    fs.sync_dir("")
    handle.truncate(3)
    fs.crash(random.Random(0), tear_probability=ALWAYS_TEAR)
    assert fs.read_bytes("f") == b"0123456789"


def test_synced_truncate_survives() -> None:
    fs = MemoryFileSystem()
    handle = write_synced(fs, "f", b"0123456789")
    fs.sync_dir("")
    handle.truncate(3)
    handle.sync()
    fs.crash(random.Random(0), tear_probability=ALWAYS_TEAR)
    assert fs.read_bytes("f") == b"012"


def test_new_file_is_lost_without_directory_sync() -> None:
    fs = MemoryFileSystem()
    write_synced(fs, "f", b"data").close()  # the file is synced, its name is not
    fs.crash(random.Random(0), tear_probability=NO_TEAR)
    assert not fs.exists("f")


def test_new_file_survives_with_directory_sync() -> None:
    fs = MemoryFileSystem()
    fs.makedirs("d")
    write_synced(fs, "d/f", b"data").close()
    fs.sync_dir("d")
    fs.crash(random.Random(0), tear_probability=NO_TEAR)
    assert fs.read_bytes("d/f") == b"data"


def test_directory_sync_without_file_sync_keeps_an_empty_file() -> None:
    fs = MemoryFileSystem()
    handle = fs.open_append("f")
    handle.write(b"data")
    fs.sync_dir("")
    fs.crash(random.Random(0), tear_probability=NO_TEAR)
    assert fs.read_bytes("f") == b""


def test_rename_is_volatile_until_directory_sync() -> None:
    fs = MemoryFileSystem()
    write_synced(fs, "old", b"v1").close()
    fs.sync_dir("")
    fs.rename("old", "new")
    assert fs.listdir("") == ["new"]
    fs.crash(random.Random(0), tear_probability=NO_TEAR)
    assert fs.listdir("") == ["old"]
    assert fs.read_bytes("old") == b"v1"


def test_rename_is_durable_after_directory_sync() -> None:
    fs = MemoryFileSystem()
    write_synced(fs, "target", b"old").close()
    write_synced(fs, "tmp", b"new").close()
    fs.sync_dir("")
    fs.rename("tmp", "target")
    fs.sync_dir("")
    fs.crash(random.Random(0), tear_probability=NO_TEAR)
    assert fs.listdir("") == ["target"]
    assert fs.read_bytes("target") == b"new"


def test_rename_across_directories_needs_both_synced() -> None:
    fs = MemoryFileSystem()
    fs.makedirs("a")
    fs.makedirs("b")
    write_synced(fs, "a/f", b"x").close()
    fs.sync_dir("a")
    fs.rename("a/f", "b/f")
    fs.sync_dir("b")  # the new name is durable, the old one's removal is not
    fs.crash(random.Random(0), tear_probability=NO_TEAR)
    assert fs.read_bytes("a/f") == b"x" == fs.read_bytes("b/f")


def test_remove_is_volatile_until_directory_sync() -> None:
    fs = MemoryFileSystem()
    write_synced(fs, "f", b"keep").close()
    fs.sync_dir("")
    fs.remove("f")
    fs.crash(random.Random(0), tear_probability=NO_TEAR)
    assert fs.read_bytes("f") == b"keep"
    fs.remove("f")
    fs.sync_dir("")
    fs.crash(random.Random(0), tear_probability=NO_TEAR)
    assert not fs.exists("f")


def test_torn_write_keeps_a_strict_prefix_of_the_last_write() -> None:
    lengths = set()
    for seed in range(200):
        fs = MemoryFileSystem()
        handle = write_synced(fs, "f", b"base:")
        fs.sync_dir("")
        handle.write(b"0123456789")
        torn = fs.crash(random.Random(seed), tear_probability=ALWAYS_TEAR)
        assert torn == ["f"]
        got = fs.read_bytes("f")
        assert got.startswith(b"base:")
        tail = got[len(b"base:") :]
        assert b"0123456789".startswith(tail) and 1 <= len(tail) <= 9
        lengths.add(len(tail))
    assert lengths == set(range(1, 10)), "every strict prefix length occurs"


def test_appends_since_the_last_sync_tear_as_one_extent() -> None:
    seen = set()
    for seed in range(100):
        fs = MemoryFileSystem()
        handle = write_synced(fs, "f", b"base:")
        fs.sync_dir("")
        handle.write(b"first")
        handle.write(b"second")  # follows the first: one dirty extent, as in a page cache
        assert fs.crash(random.Random(seed), tear_probability=ALWAYS_TEAR) == ["f"]
        tail = fs.read_bytes("f")[len(b"base:") :]
        assert b"firstsecond".startswith(tail) and 1 <= len(tail) < len(b"firstsecond")
        seen.add(len(tail))
    assert max(seen) > len(b"first"), "the tear can reach into the second write"


def test_a_write_after_an_unsynced_truncate_tears_in_place() -> None:
    for seed in range(50):
        fs = MemoryFileSystem()
        handle = write_synced(fs, "f", b"0123456789")
        fs.sync_dir("")
        handle.truncate(4)
        handle.write(b"abcdef")
        fs.crash(random.Random(seed), tear_probability=ALWAYS_TEAR)
        got = fs.read_bytes("f")
        keep = next(i for i in range(1, 6) if got == b"0123" + b"abcdef"[:i] + b"0123456789"[4 + i :])
        assert 1 <= keep <= 5


def test_a_write_beyond_the_durable_end_is_never_torn_into_a_hole() -> None:
    for seed in range(50):
        fs = MemoryFileSystem()
        handle = write_synced(fs, "f", b"")
        fs.sync_dir("")
        handle.write(b"grow")
        handle.truncate(10)  # unsynced: extends with zeros; the write before it is forgotten
        handle.write(b"tail")  # starts at 10, beyond the durable end (0)
        assert fs.crash(random.Random(seed), tear_probability=ALWAYS_TEAR) == []
        assert fs.read_bytes("f") == b""


def test_tear_probability_zero_never_tears() -> None:
    for seed in range(50):
        fs = MemoryFileSystem()
        handle = write_synced(fs, "f", b"x")
        fs.sync_dir("")
        handle.write(b"unsynced")
        assert fs.crash(random.Random(seed), tear_probability=NO_TEAR) == []
        assert fs.read_bytes("f") == b"x"


def test_tear_probability_must_be_a_probability() -> None:
    with pytest.raises(ValueError, match="tear_probability"):
        MemoryFileSystem().crash(random.Random(0), tear_probability=1.5)


def test_crash_is_deterministic_for_a_seed() -> None:
    def run(seed: int) -> dict[str, bytes]:
        fs = MemoryFileSystem()
        fs.makedirs("d")
        handles = [write_synced(fs, f"d/{i}", b"s" * i) for i in range(8)]
        fs.sync_dir("d")
        for i, handle in enumerate(handles):
            handle.write(bytes([65 + i]) * 40)
        fs.crash(random.Random(seed))
        return {name: fs.read_bytes(f"d/{name}") for name in fs.listdir("d")}

    assert run(7) == run(7)
    assert len({tuple(sorted(run(seed).items())) for seed in range(10)}) > 1


def test_handles_from_before_a_crash_are_stale() -> None:
    fs = MemoryFileSystem()
    handle = write_synced(fs, "f", b"x")
    fs.sync_dir("")
    fs.crash(random.Random(0))
    with pytest.raises(StaleHandleError):
        handle.write(b"y")
    fresh = fs.open_append("f", create=False)
    fresh.write(b"y")
    assert fs.read_bytes("f") == b"xy"


def test_durable_bytes_shows_the_synced_image() -> None:
    fs = MemoryFileSystem()
    handle = write_synced(fs, "f", b"ab")
    handle.write(b"cd")
    assert fs.durable_bytes("f") == b"ab"
    assert fs.read_bytes("f") == b"abcd"


# -- crash points -------------------------------------------------------------------------


def test_crash_point_stops_at_the_chosen_step() -> None:
    inner = MemoryFileSystem()
    counting = CrashPointFileSystem(inner)
    write_synced(counting, "f", b"abc").close()
    counting.sync_dir("")
    assert counting.steps == ["open_append f", "write f (3 bytes)", "sync f", "sync_dir "]

    inner = MemoryFileSystem()
    crashing = CrashPointFileSystem(inner, crash_at=2)
    with pytest.raises(InjectedCrash, match="before step 2: sync f"):
        write_synced(crashing, "f", b"abc")
    assert crashing.crashed
    with pytest.raises(InjectedCrash):
        crashing.sync_dir("")
    inner.crash(random.Random(0), tear_probability=NO_TEAR)
    assert not inner.exists("f")


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("write"), st.binary(min_size=1, max_size=12)),
            st.tuples(st.just("truncate"), st.integers(0, 40)),
            st.tuples(st.just("sync"), st.none()),
        ),
        max_size=25,
    ),
    seed=st.integers(0, 2**32),
)
def test_a_crash_without_tearing_restores_the_bytes_of_the_last_sync(ops: list, seed: int) -> None:
    fs = MemoryFileSystem()
    handle = fs.open_append("f")
    fs.sync_dir("")
    at_last_sync = b""
    for op, arg in ops:
        if op == "write":
            handle.write(arg)
        elif op == "truncate":
            handle.truncate(arg)
        else:
            handle.sync()
            at_last_sync = fs.read_bytes("f")
        assert fs.durable_bytes("f") == at_last_sync
    fs.crash(random.Random(seed), tear_probability=0.0)
    assert fs.read_bytes("f") == at_last_sync
