"""Raft persistence: hard state and entries round-trip, a later entry at an existing index
replaces the log from there (on replay too), snapshot markers trim the log, old segments
are released without losing state, and a crash recovers exactly what was synced."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kvcheck.reference.storage.errors import CorruptionError
from kvcheck.reference.storage.fs import FileSystem, MemoryFileSystem, OsFileSystem
from kvcheck.reference.storage.raftlog import EntryTuple, RaftState, RaftWal, SnapshotMeta


@pytest.fixture(params=["os", "memory"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> FileSystem:
    if request.param == "os":
        return OsFileSystem(tmp_path)
    return MemoryFileSystem()


def ents(first: int, last: int, term: int, tag: bytes = b"") -> list[EntryTuple]:
    return [(i, term, 0, b"%s%d" % (tag, i)) for i in range(first, last + 1)]


def reopen(fs: FileSystem, segment_size: int = 1 << 20) -> RaftState:
    return RaftWal.open(fs, "wal", segment_size=segment_size).load()


def test_hard_state_and_entries_round_trip(fs: FileSystem) -> None:
    log = RaftWal.open(fs, "wal")
    assert log.load() == RaftState(None, None, [])
    log.save((1, 2, 0), ents(1, 3, 1))
    log.save((1, 2, 3), [])
    log.sync()
    log.close()
    state = reopen(fs)
    assert state.snapshot is None
    assert state.hard_state == (1, 2, 3)
    assert state.entries == ents(1, 3, 1)


def test_entries_are_written_before_the_hard_state() -> None:
    """A torn batch may keep some entries but never a commit index without its entries."""
    for seed in range(100):
        fs = MemoryFileSystem()
        log = RaftWal.open(fs, "wal")
        log.save((1, 0, 0), ents(1, 1, 1))
        log.sync()
        log.save((2, 0, 4), ents(2, 4, 2, b"long-data-" * 3))
        fs.crash(random.Random(seed), tear_probability=1.0)
        state = reopen(fs)
        assert state.hard_state is not None
        assert state.hard_state[2] <= (state.entries[-1][0] if state.entries else 0)


def test_a_later_entry_at_an_existing_index_replaces_the_log_from_there(fs: FileSystem) -> None:
    log = RaftWal.open(fs, "wal")
    log.save((1, 0, 0), ents(1, 5, 1))
    log.save((2, 0, 0), ents(3, 4, 2, b"new"))
    expected = ents(1, 2, 1) + ents(3, 4, 2, b"new")
    assert log.load().entries == expected
    assert log.last_index() == 4
    log.close()
    assert reopen(fs).entries == expected, "replay applies the truncation too"


def test_entries_must_follow_the_log() -> None:
    log = RaftWal.open(MemoryFileSystem(), "wal")
    log.save(None, ents(1, 3, 1))
    with pytest.raises(ValueError, match="entries start at index 5"):
        log.save(None, ents(5, 6, 1))
    with pytest.raises(ValueError, match="not contiguous"):
        log.save(None, [(4, 1, 0, b""), (6, 1, 0, b"")])
    with pytest.raises(ValueError, match="index 0 is reserved"):
        log.save(None, [(0, 1, 0, b"")])
    with pytest.raises(ValueError, match="entry data must be bytes"):
        log.save(None, [(4, 1, 0, "text")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="a hard state is"):
        log.save((1, 2), [])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"a hard state is \(term, vote, commit\) as u64s, got \(-1, 0, 0\)"):
        log.save((-1, 0, 0), [])
    assert log.load().entries == ents(1, 3, 1), "a refused save writes nothing"


def test_snapshot_marker_keeps_the_entries_after_it_when_terms_match(fs: FileSystem) -> None:
    log = RaftWal.open(fs, "wal")
    log.save((1, 0, 5), ents(1, 8, 1))
    log.save_snapshot_meta(5, 1, b"conf")
    state = log.load()
    assert state.snapshot == SnapshotMeta(5, 1, b"conf")
    assert state.entries == ents(6, 8, 1)
    log.close()
    assert reopen(fs) == state


def test_snapshot_marker_that_disagrees_with_the_log_replaces_it(fs: FileSystem) -> None:
    log = RaftWal.open(fs, "wal")
    log.save((1, 0, 0), ents(1, 8, 1))
    log.save_snapshot_meta(5, 3, b"")  # the leader's snapshot: index 5 has term 3 there
    assert log.load().entries == []
    log.save((3, 0, 5), ents(6, 7, 3))
    state = log.load()
    assert state.entries == ents(6, 7, 3)
    log.close()
    assert reopen(fs) == state


def test_snapshot_marker_ahead_of_the_log_empties_it(fs: FileSystem) -> None:
    log = RaftWal.open(fs, "wal")
    log.save((1, 0, 0), ents(1, 3, 1))
    log.save_snapshot_meta(10, 2, b"")
    assert log.load().entries == [] and log.last_index() == 10
    with pytest.raises(ValueError, match="entries start at index 10; the log has snapshot index 10"):
        log.save(None, ents(10, 10, 2))
    log.save(None, ents(11, 11, 2))
    log.close()
    assert reopen(fs).entries == ents(11, 11, 2)


def test_an_older_snapshot_marker_is_refused() -> None:
    log = RaftWal.open(MemoryFileSystem(), "wal")
    log.save(None, ents(1, 5, 1))
    log.save_snapshot_meta(4, 1, b"")
    with pytest.raises(ValueError, match="older than the saved snapshot"):
        log.save_snapshot_meta(3, 1, b"")


def test_release_deletes_old_segments_and_recovery_is_unchanged(fs: FileSystem) -> None:
    log = RaftWal.open(fs, "wal", segment_size=200)
    for i in range(1, 61):
        log.save((1, 1, i - 1), ents(i, i, 1, b"payload-"))
    log.sync()
    segments_before = log.wal.segments()
    assert len(segments_before) > 5
    with pytest.raises(ValueError, match="beyond the saved snapshot index"):
        log.release_to(40)
    log.save_snapshot_meta(40, 1, b"c")
    removed = log.release_to(40)
    assert removed, "some segments held only entries <= 40"
    remaining = log.wal.segments()
    assert remaining[0] > 0 and len(remaining) < len(segments_before)
    state = log.load()
    assert state.entries == ents(41, 60, 1, b"payload-")
    log.close()
    assert reopen(fs, 200) == state


def test_release_keeps_state_that_only_old_segments_held() -> None:
    """The hard state and the marker are repeated in each new segment, so releasing the
    segments where they were first written loses neither."""
    fs = MemoryFileSystem()
    log = RaftWal.open(fs, "wal", segment_size=150)
    log.save((7, 3, 0), ents(1, 1, 7))
    log.save_snapshot_meta(1, 7, b"conf")
    for i in range(2, 40):
        log.save(None, ents(i, i, 7))
    log.save_snapshot_meta(30, 7, b"conf2")
    log.release_to(30)
    log.close()
    state = reopen(fs, 150)
    assert state.hard_state == (7, 3, 0)
    assert state.snapshot == SnapshotMeta(30, 7, b"conf2")
    assert state.entries == ents(31, 39, 7)


def test_a_gap_no_snapshot_covers_refuses_to_start() -> None:
    fs = MemoryFileSystem()
    log = RaftWal.open(fs, "wal", segment_size=150)
    for i in range(1, 30):
        log.save(None, ents(i, i, 1))
    log.close()
    fs.remove("wal/0000000000000000.wal")
    fs.rename("wal/0000000000000001.wal", "wal/0000000000000000.wal")
    # Renumbering is caught by the header check; remove the first segment properly instead.
    fs.rename("wal/0000000000000000.wal", "wal/0000000000000001.wal")
    with pytest.raises(CorruptionError, match=r"log gap: entries up to index \d+ are missing") as info:
        RaftWal.open(fs, "wal", segment_size=150)
    assert info.value.path == "wal/0000000000000001.wal" and info.value.offset is not None


def test_unknown_record_type_refuses_to_start() -> None:
    from kvcheck.reference.storage.wal import Wal

    fs = MemoryFileSystem()
    wal, _ = Wal.open(fs, "wal")
    wal.append(77, b"?")
    wal.close()
    with pytest.raises(CorruptionError, match="unknown record type 77"):
        RaftWal.open(fs, "wal")


def test_many_saves_share_one_fsync() -> None:
    fs = MemoryFileSystem()
    log = RaftWal.open(fs, "wal")
    before = fs.stats["syncs"]
    for i in range(1, 101):
        log.save((1, 1, i - 1), ents(i, i, 1))
    log.sync()
    assert fs.stats["syncs"] - before == 1


# -- stateful: the WAL against a plain model, with crashes ----------------------------------


@dataclass
class Model:
    snapshot: SnapshotMeta | None = None
    hard_state: tuple[int, int, int] | None = None
    log: dict[int, EntryTuple] = field(default_factory=dict)

    def copy(self) -> Model:
        return Model(self.snapshot, self.hard_state, dict(self.log))

    @property
    def base(self) -> int:
        return self.snapshot.index if self.snapshot else 0

    @property
    def last(self) -> int:
        return max(self.log) if self.log else self.base

    def term_at(self, index: int) -> int | None:
        if index in self.log:
            return self.log[index][1]
        return self.snapshot.term if self.snapshot and self.snapshot.index == index else None

    def add_entry(self, entry: EntryTuple) -> None:
        for i in [i for i in self.log if i >= entry[0]]:
            del self.log[i]
        self.log[entry[0]] = entry

    def add_snapshot(self, meta: SnapshotMeta) -> None:
        if self.term_at(meta.index) == meta.term:
            self.log = {i: e for i, e in self.log.items() if i > meta.index}
        else:
            self.log = {}
        self.snapshot = meta

    def state(self) -> RaftState:
        return RaftState(self.snapshot, self.hard_state, [self.log[i] for i in sorted(self.log)])


class RaftWalMachine(RuleBasedStateMachine):
    """Random saves, truncations, snapshot markers, syncs, releases and crashes."""

    SEGMENT = 160

    @initialize()
    def start(self) -> None:
        self.fs = MemoryFileSystem()
        self.log = RaftWal.open(self.fs, "wal", segment_size=self.SEGMENT)
        self.model = Model()
        self.term = 1
        self.counter = 0
        # Model states since the last sync, one per record appended: a torn tail may keep
        # any prefix of the unsynced records.
        self.since_sync: list[Model] = [self.model.copy()]

    def record(self) -> None:
        self.since_sync.append(self.model.copy())

    @rule(back=st.integers(0, 3), count=st.integers(0, 4), bump=st.booleans(), hs=st.booleans())
    def save(self, back: int, count: int, bump: bool, hs: bool) -> None:
        if bump:
            self.term += 1
        first = max(self.model.base + 1, self.model.last + 1 - back)
        entries = []
        for i in range(first, first + count):
            self.counter += 1
            entries.append((i, self.term, self.counter % 2, b"e%d" % self.counter))
        hard_state = (self.term, self.counter % 3, min(self.model.last, self.model.base + back)) if hs else None
        self.log.save(hard_state, entries)
        for entry in entries:
            self.model.add_entry(entry)
            self.record()
        if hard_state is not None:
            self.model.hard_state = hard_state
            self.record()

    @precondition(lambda self: self.model.last > self.model.base)
    @rule(data=st.data(), matching=st.booleans())
    def snapshot(self, data: st.DataObject, matching: bool) -> None:
        index = data.draw(st.integers(self.model.base + 1, self.model.last + 2))
        term = self.model.term_at(index) if matching else None
        meta = SnapshotMeta(index, term if term is not None else self.term + 5, b"c%d" % index)
        self.log.save_snapshot_meta(meta.index, meta.term, meta.conf_state)
        self.model.add_snapshot(meta)
        self.record()

    @rule()
    def sync(self) -> None:
        self.log.sync()
        self.since_sync = [self.model.copy()]

    @precondition(lambda self: self.model.snapshot is not None)
    @rule()
    def release(self) -> None:
        self.log.release_to(self.model.base)
        self.since_sync = [self.model.copy()]  # release syncs first

    @rule(seed=st.integers(0, 2**32), tear=st.booleans())
    def crash_and_recover(self, seed: int, tear: bool) -> None:
        self.fs.crash(random.Random(seed), tear_probability=1.0 if tear else 0.0)
        self.log = RaftWal.open(self.fs, "wal", segment_size=self.SEGMENT)
        recovered = self.log.load()
        candidates = [m.state() for m in self.since_sync]
        # At least the synced state; more only as a prefix of the later records (a segment
        # cut syncs what was buffered, and a torn write may keep whole records).
        assert recovered in candidates, "the synced state plus a prefix of the unsynced records"
        self.model = self.since_sync[candidates.index(recovered)].copy()
        self.since_sync = [self.model.copy()]

    @rule()
    def close_and_reopen(self) -> None:
        self.log.close()
        self.log = RaftWal.open(self.fs, "wal", segment_size=self.SEGMENT)
        self.since_sync = [self.model.copy()]

    @invariant()
    def load_matches_the_model(self) -> None:
        if hasattr(self, "log"):
            assert self.log.load() == self.model.state()


TestRaftWalMachine = RaftWalMachine.TestCase
TestRaftWalMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None, report_multiple_bugs=False)


class LongRaftWalMachine(RaftWalMachine):
    pass


@pytest.mark.slow
class TestRaftWalMachineLong(LongRaftWalMachine.TestCase):  # type: ignore[name-defined,misc]
    settings = settings(max_examples=2000, stateful_step_count=60, deadline=None, report_multiple_bugs=False)
