"""The WAL: records round-trip; a torn tail is cut off and exactly the records before it
come back; any other damage refuses to start, naming the file, the byte offset and why."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcheck.reference.storage.errors import CorruptionError
from kvcheck.reference.storage.fs import (
    CrashPointFileSystem,
    FileSystem,
    InjectedCrash,
    MemoryFileSystem,
    OsFileSystem,
)
from kvcheck.reference.storage.wal import (
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    Wal,
    encode_record,
    segment_name,
)

SEG0 = f"wal/{segment_name(0)}"


@pytest.fixture(params=["os", "memory"])
def fs(request: pytest.FixtureRequest, tmp_path: Path) -> FileSystem:
    if request.param == "os":
        return OsFileSystem(tmp_path)
    return MemoryFileSystem()


def payloads(n: int) -> list[bytes]:
    return [f"record-{i}:".encode() + bytes(range(i % 7)) for i in range(n)]


def write_wal(fs: FileSystem, records: list[bytes], *, segment_size: int = 1 << 20) -> Wal:
    wal, existing = Wal.open(fs, "wal", segment_size=segment_size)
    assert existing == []
    for i, payload in enumerate(records):
        wal.append(1 + i % 3, payload)
    wal.sync()
    return wal


def reopen(fs: FileSystem, **kw: int) -> tuple[Wal, list[tuple[int, bytes]]]:
    wal, records = Wal.open(fs, "wal", **kw)
    return wal, [(r.type, r.payload) for r in records]


def expected(records: list[bytes]) -> list[tuple[int, bytes]]:
    return [(1 + i % 3, p) for i, p in enumerate(records)]


def record_offsets(records: list[bytes]) -> list[int]:
    offsets, at = [], SEGMENT_HEADER_SIZE
    for p in records:
        offsets.append(at)
        at += RECORD_HEADER_SIZE + len(p)
    return offsets


def replace_file(fs: FileSystem, path: str, data: bytes) -> None:
    handle = fs.open_append(path)
    handle.truncate(0)
    handle.write(data)
    handle.sync()
    handle.close()


# -- round trip ---------------------------------------------------------------------------


def test_records_round_trip_and_appends_continue_after_reopen(fs: FileSystem) -> None:
    records = payloads(10)
    write_wal(fs, records).close()
    wal, got = reopen(fs)
    assert got == expected(records)
    assert wal.torn_tail is None
    wal.append(9, b"after reopen")
    wal.sync()
    wal.close()
    _, got = reopen(fs)
    assert got == [*expected(records), (9, b"after reopen")]


def test_empty_wal_opens_with_one_segment(fs: FileSystem) -> None:
    wal, got = reopen(fs)
    assert got == [] and wal.segments() == [0]
    assert fs.listdir("wal") == [segment_name(0)]


def test_record_type_and_size_are_checked() -> None:
    with pytest.raises(ValueError, match="type"):
        encode_record(0, b"")
    with pytest.raises(ValueError, match="type"):
        encode_record(256, b"")


def test_nothing_is_durable_before_sync() -> None:
    fs = MemoryFileSystem()
    wal = write_wal(fs, payloads(3))
    wal.append(1, b"unsynced")
    fs.crash(random.Random(0), tear_probability=0.0)
    _, got = reopen(fs)
    assert got == expected(payloads(3))


def test_a_sync_with_nothing_new_writes_nothing() -> None:
    fs = MemoryFileSystem()
    wal = write_wal(fs, payloads(3))
    before = dict(fs.stats)
    wal.sync()
    assert fs.stats == before


def test_one_write_and_one_fsync_per_batch() -> None:
    fs = MemoryFileSystem()
    wal, _ = Wal.open(fs, "wal")
    before = dict(fs.stats)
    for p in payloads(50):
        wal.append(1, p)
    wal.sync()
    assert fs.stats["writes"] - before["writes"] == 1
    assert fs.stats["syncs"] - before["syncs"] == 1


# -- torn tails ---------------------------------------------------------------------------


def test_cut_at_every_byte_of_the_last_record_recovers_exactly_the_earlier_records(fs: FileSystem) -> None:
    records = payloads(6)
    write_wal(fs, records).close()
    whole = fs.read_bytes(SEG0)
    last_start = record_offsets(records)[-1]
    assert len(whole) == last_start + RECORD_HEADER_SIZE + len(records[-1])
    for cut in range(last_start, len(whole)):
        replace_file(fs, SEG0, whole[:cut])
        wal, got = reopen(fs)
        assert got == expected(records[:-1]), f"cut at {cut}"
        if cut > last_start:
            assert wal.torn_tail is not None and wal.torn_tail.offset == last_start
            assert wal.torn_tail.path == SEG0 and wal.torn_tail.dropped_bytes == cut - last_start
        assert fs.size(SEG0) == last_start, "the torn tail is truncated away"
        # the WAL is usable after recovery, and what it appends survives a reopen
        wal.append(7, b"next")
        wal.close()
        _, got = reopen(fs)
        assert got == [*expected(records[:-1]), (7, b"next")]


def test_payload_crc_error_in_the_final_record_is_a_torn_tail(fs: FileSystem) -> None:
    records = payloads(4)
    write_wal(fs, records).close()
    whole = bytearray(fs.read_bytes(SEG0))
    whole[-1] ^= 0xFF
    replace_file(fs, SEG0, bytes(whole))
    wal, got = reopen(fs)
    assert got == expected(records[:-1])
    assert wal.torn_tail is not None and "payload CRC mismatch in the final record" in wal.torn_tail.reason


def test_a_zeroed_tail_is_a_torn_tail(fs: FileSystem) -> None:
    records = payloads(4)
    write_wal(fs, records).close()
    whole = fs.read_bytes(SEG0)
    replace_file(fs, SEG0, whole + bytes(100))
    wal, got = reopen(fs)
    assert got == expected(records)
    assert fs.size(SEG0) == len(whole)
    assert wal.torn_tail is not None and "zero bytes" in wal.torn_tail.reason


@settings(max_examples=100, deadline=None)
@given(
    batches=st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), min_size=1, max_size=6),
    synced=st.lists(st.booleans(), min_size=6, max_size=6),
    seed=st.integers(0, 2**32),
)
def test_crash_recovers_the_synced_records_and_at_most_a_prefix_of_the_rest(
    batches: list[list[bytes]], synced: list[bool], seed: int
) -> None:
    fs = MemoryFileSystem()
    wal, _ = Wal.open(fs, "wal", segment_size=256)
    appended: list[bytes] = []
    durable = 0
    for batch, sync in zip(batches, synced, strict=False):
        for p in batch:
            wal.append(1, p)
            appended.append(p)
        if sync:
            wal.sync()
            durable = len(appended)
    fs.crash(random.Random(seed))
    _, got = reopen(fs, segment_size=256)
    payloads_got = [p for _, p in got]
    assert payloads_got == appended[: len(payloads_got)]
    assert len(payloads_got) >= durable


# -- corruption refuses to start ----------------------------------------------------------


def test_a_flipped_byte_in_any_earlier_record_refuses_to_start(fs: FileSystem) -> None:
    records = payloads(4)
    write_wal(fs, records).close()
    whole = fs.read_bytes(SEG0)
    offsets = record_offsets(records)
    for target in range(len(records) - 1):  # every record but the last
        start = offsets[target]
        end = start + RECORD_HEADER_SIZE + len(records[target])
        for at in range(start, end):
            damaged = bytearray(whole)
            damaged[at] ^= 0x01
            replace_file(fs, SEG0, bytes(damaged))
            with pytest.raises(CorruptionError) as info:
                Wal.open(fs, "wal")
            err = info.value
            assert err.path == SEG0 and err.offset == start, f"byte {at}"
            if at < start + RECORD_HEADER_SIZE - 4:
                assert "record header CRC mismatch" in err.reason
            else:
                assert "record payload CRC mismatch" in err.reason and "later records follow" in err.reason
            assert f"{SEG0}: offset {start}: " in str(err)
    replace_file(fs, SEG0, whole)
    _, got = reopen(fs)
    assert got == expected(records), "the undamaged file still opens"


def test_a_damaged_final_record_header_refuses_to_start(fs: FileSystem) -> None:
    records = payloads(3)
    write_wal(fs, records).close()
    whole = bytearray(fs.read_bytes(SEG0))
    last = record_offsets(records)[-1]
    whole[last] ^= 0x10  # the length: its header CRC catches it
    replace_file(fs, SEG0, bytes(whole))
    with pytest.raises(CorruptionError, match="record header CRC mismatch") as info:
        Wal.open(fs, "wal")
    assert info.value.offset == last


@pytest.mark.parametrize(
    ("at", "reason"),
    [(0, "bad segment magic"), (9, "segment header CRC mismatch"), (20, "segment header CRC mismatch")],
)
def test_a_damaged_segment_header_refuses_to_start(fs: FileSystem, at: int, reason: str) -> None:
    write_wal(fs, payloads(2)).close()
    whole = bytearray(fs.read_bytes(SEG0))
    whole[at] ^= 0x01
    replace_file(fs, SEG0, bytes(whole))
    with pytest.raises(CorruptionError, match=reason) as info:
        Wal.open(fs, "wal")
    assert info.value.path == SEG0 and info.value.offset == 0


def test_a_short_segment_header_refuses_to_start(fs: FileSystem) -> None:
    write_wal(fs, []).close()
    replace_file(fs, SEG0, fs.read_bytes(SEG0)[:10])
    with pytest.raises(CorruptionError, match="segment header truncated"):
        Wal.open(fs, "wal")


def test_a_segment_named_for_another_sequence_refuses_to_start(fs: FileSystem) -> None:
    write_wal(fs, payloads(2)).close()
    fs.rename(SEG0, f"wal/{segment_name(5)}")
    with pytest.raises(CorruptionError, match="header says sequence 0000000000000000"):
        Wal.open(fs, "wal")


def test_a_gap_in_segment_numbers_refuses_to_start(fs: FileSystem) -> None:
    wal = write_wal(fs, payloads(40), segment_size=200)
    assert len(wal.segments()) >= 4
    wal.close()
    fs.remove(f"wal/{segment_name(2)}")
    with pytest.raises(CorruptionError, match="gap in segment numbers") as info:
        Wal.open(fs, "wal", segment_size=200)
    assert info.value.path == f"wal/{segment_name(3)}"


def test_a_torn_record_in_an_earlier_segment_refuses_to_start(fs: FileSystem) -> None:
    write_wal(fs, payloads(40), segment_size=200).close()
    first = fs.read_bytes(SEG0)
    replace_file(fs, SEG0, first[:-3])
    with pytest.raises(CorruptionError, match="runs past the end of the segment") as info:
        Wal.open(fs, "wal", segment_size=200)
    assert info.value.path == SEG0


def test_an_unexpected_file_refuses_to_start(fs: FileSystem) -> None:
    write_wal(fs, payloads(1)).close()
    fs.open_append("wal/notes.txt").close()
    with pytest.raises(CorruptionError, match="unexpected file in the WAL directory") as info:
        Wal.open(fs, "wal")
    assert info.value.path == "wal/notes.txt"


def test_corruption_error_has_the_malformed_input_exit_code() -> None:
    err = CorruptionError("wal/x.wal", 40, "bad")
    assert int(err.code) == 65 and str(err) == "wal/x.wal: offset 40: bad"


# -- segments -------------------------------------------------------------------------------


def test_segments_rotate_and_replay_in_order(fs: FileSystem) -> None:
    records = payloads(60)
    wal = write_wal(fs, records, segment_size=300)
    assert len(wal.segments()) > 3
    assert wal.segments() == list(range(len(wal.segments())))
    for path in wal.segment_paths()[:-1]:
        assert fs.size(path) >= 300
    wal.close()
    _, got = reopen(fs, segment_size=300)
    assert got == expected(records)


def test_prologue_records_start_every_new_segment(fs: FileSystem) -> None:
    calls = []

    def prologue() -> list[tuple[int, bytes]]:
        calls.append(1)
        return [(200, f"state-{len(calls)}".encode())]

    wal, _ = Wal.open(fs, "wal", segment_size=120, prologue=prologue)
    for p in payloads(12):
        wal.append(1, p)
    wal.sync()
    wal.close()
    _, records = Wal.open(fs, "wal", segment_size=120)
    firsts = {}
    for r in records:
        firsts.setdefault(r.seq, r)
    assert len(firsts) == len(calls) + 1
    for seq, rec in firsts.items():
        if seq > 0:
            assert rec.type == 200 and rec.offset == SEGMENT_HEADER_SIZE


def test_release_removes_only_older_segments_and_never_the_current(fs: FileSystem) -> None:
    wal = write_wal(fs, payloads(60), segment_size=300)
    segs = wal.segments()
    assert wal.release(2) == [0, 1]
    assert wal.segments() == segs[2:]
    assert fs.listdir("wal") == [segment_name(s) for s in segs[2:]]
    assert wal.release(10**6) == segs[2:-1]
    assert wal.segments() == [segs[-1]]
    wal.close()
    reopened, _ = Wal.open(fs, "wal", segment_size=300)
    assert reopened.segments() == [segs[-1]]


def test_leftover_temp_segment_is_removed_on_open() -> None:
    fs = MemoryFileSystem()
    write_wal(fs, payloads(2)).close()
    handle = fs.open_append(f"wal/{segment_name(1)}.tmp")
    handle.write(b"half a header")
    handle.close()
    wal, got = reopen(fs)
    assert got == expected(payloads(2))
    assert fs.listdir("wal") == [segment_name(0)]
    assert wal.segments() == [0]


def test_a_crash_at_any_step_loses_nothing_synced() -> None:
    """Crash at every file-system step (appends, syncs, segment cuts): the records whose
    sync returned are all back, followed by at most a prefix of the others."""

    def scenario(fs: FileSystem, synced: list[bytes]) -> None:
        wal, _ = Wal.open(fs, "wal", segment_size=100)
        for p in payloads(12):
            wal.append(1, p)
            wal.sync()
            synced.append(p)

    counter = CrashPointFileSystem(MemoryFileSystem())
    everything: list[bytes] = []
    scenario(counter, everything)
    assert any(step.startswith("rename") for step in counter.steps), "the scenario cuts segments"
    for crash_at in range(len(counter.steps)):
        for seed in range(3):
            inner = MemoryFileSystem()
            synced: list[bytes] = []
            with pytest.raises(InjectedCrash):
                scenario(CrashPointFileSystem(inner, crash_at), synced)
            inner.crash(random.Random(seed))
            _, got = reopen(inner, segment_size=100)
            got_payloads = [p for _, p in got]
            assert got_payloads == everything[: len(got_payloads)], f"crash at step {crash_at}"
            assert len(got_payloads) >= len(synced), f"crash at step {crash_at}"


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 120), min_size=1, max_size=30),
    segment_size=st.integers(64, 400),
    data=st.data(),
)
def test_any_cut_inside_the_last_record_of_many_segments_recovers_all_but_it(
    sizes: list[int], segment_size: int, data: st.DataObject
) -> None:
    fs = MemoryFileSystem()
    records = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    wal = write_wal(fs, records, segment_size=segment_size)
    last_path = wal.segment_paths()[-1]
    wal.close()
    _, got = Wal.open(fs, "wal", segment_size=segment_size)
    last = [r for r in got if r.seq == int(last_path.rsplit("/", 1)[1][:16], 16)]
    if not last:  # the final segment holds no record: nothing to cut
        return
    start = last[-1].offset
    whole = fs.read_bytes(last_path)
    cut = data.draw(st.integers(start, len(whole) - 1))
    replace_file(fs, last_path, whole[:cut])
    reopened, after = reopen(fs, segment_size=segment_size)
    assert after == expected(records)[:-1]
    assert reopened.torn_tail is None if cut == start else reopened.torn_tail is not None


def test_scan_reads_without_changing_anything() -> None:
    from kvcheck.reference.storage.wal import scan

    fs = MemoryFileSystem()
    records = payloads(5)
    write_wal(fs, records, segment_size=120).close()
    tmp = fs.open_append(f"wal/{segment_name(99)}.tmp")
    tmp.close()
    last = f"wal/{fs.listdir('wal')[-2]}"
    whole = fs.read_bytes(last)
    replace_file(fs, last, whole + b"\x05\x00")  # a torn record header at the tail
    before = {name: fs.read_bytes(f"wal/{name}") for name in fs.listdir("wal")}
    found = scan(fs, "wal")
    assert [r.payload for r in found.records] == records
    assert found.torn_tail is not None and found.torn_tail.offset == len(whole)
    assert found.temp_files == [f"wal/{segment_name(99)}.tmp"]
    assert found.seqs == list(range(len(found.seqs)))
    assert {name: fs.read_bytes(f"wal/{name}") for name in fs.listdir("wal")} == before
    assert scan(fs, "no-such-dir").records == []
