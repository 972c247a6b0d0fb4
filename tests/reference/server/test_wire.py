"""Framing: round trips, split reads, oversize frames skipped in sync, garbage rejected."""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing

from kvcheck.reference.wire import (
    MAX_FRAME,
    BadFrame,
    ErrorCode,
    FrameReader,
    FrameTooLarge,
    WireError,
    encode_frame,
    pack,
)


@pytest.mark.trio
async def _feed(chunks: list[bytes]) -> FrameReader:
    send, recv = trio.testing.memory_stream_one_way_pair()
    for chunk in chunks:
        await send.send_all(chunk)
        await trio.testing.wait_all_tasks_blocked()
    await send.aclose()
    return FrameReader(recv)


@pytest.mark.trio
async def test_frames_round_trip_across_split_reads() -> None:
    data = encode_frame({"id": 1, "op": "put", "body": {"key": b"k"}}) + encode_frame([1, 2])
    send, recv = trio.testing.memory_stream_one_way_pair()
    reader = FrameReader(recv)
    async with trio.open_nursery() as nursery:
        async def writer() -> None:
            for i in range(len(data)):  # one byte at a time
                await send.send_all(data[i : i + 1])
            await send.aclose()
        nursery.start_soon(writer)
        assert await reader.read() == {"id": 1, "op": "put", "body": {"key": b"k"}}
        assert await reader.read() == [1, 2]
        assert await reader.read() is None


@pytest.mark.trio
async def test_oversize_frame_is_skipped_and_the_next_frame_reads() -> None:
    big = b"x" * (MAX_FRAME + 10)
    reader = await _feed([struct.pack(">I", len(big)) + big + encode_frame({"id": 2})])
    with pytest.raises(FrameTooLarge) as info:
        await reader.read()
    assert info.value.length == len(big)
    assert await reader.read() == {"id": 2}


@pytest.mark.trio
async def test_garbage_payload_is_a_bad_frame() -> None:
    reader = await _feed([struct.pack(">I", 3) + b"\xc1\xc1\xc1"])
    with pytest.raises(BadFrame, match="not msgpack"):
        await reader.read()


@pytest.mark.trio
async def test_absurd_length_is_a_bad_frame() -> None:
    reader = await _feed([b"\xff\xff\xff\xff"])
    with pytest.raises(BadFrame, match="beyond any valid frame"):
        await reader.read()


@pytest.mark.trio
async def test_truncated_frame_is_a_bad_frame() -> None:
    reader = await _feed([struct.pack(">I", 10) + b"abc"])
    with pytest.raises(BadFrame, match="closed inside a frame"):
        await reader.read()


def test_encoding_an_oversize_frame_is_request_too_large() -> None:
    with pytest.raises(WireError) as info:
        encode_frame(b"y" * MAX_FRAME)
    assert info.value.code is ErrorCode.REQUEST_TOO_LARGE


def test_wire_error_round_trip_and_indeterminacy() -> None:
    err = WireError(ErrorCode.NOT_LEADER, "not the leader", leader=3, endpoint="127.0.0.1:5")
    back = WireError.from_wire(err.to_wire())
    assert (back.code, back.message, back.leader, back.endpoint) == (
        ErrorCode.NOT_LEADER, "not the leader", 3, "127.0.0.1:5")
    assert not back.indeterminate
    assert WireError.from_wire({"code": "timeout"}).indeterminate
    assert WireError.from_wire({"code": "from-the-future"}).code is ErrorCode.UNKNOWN
    with pytest.raises(BadFrame):
        WireError.from_wire(pack(1))


def test_state_machine_error_codes_pass_through_and_stale_sequence_is_unknown() -> None:
    from kvcheck.reference.kv import requests as kvr
    from kvcheck.reference.node import kv_error

    for cls in kvr.ERRORS.values():
        err = kv_error(cls())
        if cls is kvr.ErrNotPrimary:
            assert err.code is ErrorCode.NOT_LEADER
        else:
            assert err.code.value == cls.code, cls
    assert kv_error(kvr.ErrStaleSequence()).indeterminate
    assert not kv_error(kvr.ErrDuplicateKey()).indeterminate
