"""The direct socket paths of the framing layer (plain TCP streams skip trio's wrappers).

``FrameReader`` reads a ``trio.SocketStream`` straight from its socket after waiting for
readability, and ``send_frame_bytes`` writes straight to it when the kernel has room. These
tests run them over a real socket pair: split and coalesced frames, frames larger than one
read, oversize frames skipped, a payload larger than the socket buffer, end of stream, and a
stream closed by another task while a read waits.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from kvcheck.reference.wire import (
    BadFrame,
    FrameReader,
    FrameTooLarge,
    encode_frame,
    send_frame_bytes,
    send_now,
)


def _pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


@pytest.mark.trio
async def test_split_and_coalesced_frames_read_in_order() -> None:
    left, right = _pair()
    frames = [{"id": i, "value": b"x" * (i * 37)} for i in range(40)]
    data = b"".join(encode_frame(f) for f in frames)
    reader = FrameReader(right)
    async with left, right, trio.open_nursery() as nursery:
        async def writer() -> None:
            pos, step = 0, 1
            while pos < len(data):  # chunks of 1, 2, 3, ... bytes: splits land everywhere
                await left.send_all(data[pos:pos + step])
                pos, step = pos + step, step % 97 + 1
                await trio.sleep(0)
            await left.send_eof()

        nursery.start_soon(writer)
        got = [await reader.read() for _ in frames]
        assert got == frames
        assert await reader.read() is None  # clean end of stream


@pytest.mark.trio
async def test_frames_larger_than_one_read_and_the_socket_buffer() -> None:
    left, right = _pair()
    big = {"id": 1, "value": bytes(range(256)) * 4096}  # 1 MiB: many reads, many partial writes
    small = {"id": 2, "value": b"tail"}
    reader = FrameReader(right)
    async with left, right, trio.open_nursery() as nursery:
        async def writer() -> None:
            await send_frame_bytes(left, encode_frame(big))
            await send_frame_bytes(left, encode_frame(small))

        nursery.start_soon(writer)
        assert await reader.read() == big
        assert await reader.read() == small


@pytest.mark.trio
async def test_oversize_frame_is_skipped_on_a_socket() -> None:
    left, right = _pair()
    reader = FrameReader(right, max_frame=1000)
    async with left, right, trio.open_nursery() as nursery:
        async def writer() -> None:
            await send_frame_bytes(left, encode_frame({"v": b"y" * 300_000}))
            await send_frame_bytes(left, encode_frame({"after": 1}))

        nursery.start_soon(writer)
        with pytest.raises(FrameTooLarge):
            await reader.read()
        assert await reader.read() == {"after": 1}


@pytest.mark.trio
async def test_end_of_stream_inside_a_frame_is_a_bad_frame() -> None:
    left, right = _pair()
    async with left, right:
        frame = encode_frame({"id": 1, "op": "put"})
        assert send_now(left, frame[:-3]) == len(frame) - 3
        await left.send_eof()
        with pytest.raises(BadFrame):
            await FrameReader(right).read()


@pytest.mark.trio
async def test_closing_the_stream_wakes_a_waiting_read() -> None:
    left, right = _pair()
    reader = FrameReader(right)
    raised: list[BaseException] = []
    async with left:
        async def read() -> None:
            try:
                await reader.read()
            except trio.ClosedResourceError as exc:
                raised.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            await right.aclose()
        assert len(raised) == 1
        with pytest.raises(trio.ClosedResourceError):  # and a read after the close
            await reader.read()


@pytest.mark.trio
async def test_send_to_a_closed_peer_raises_os_error() -> None:
    left, right = _pair()
    await right.aclose()
    async with left:
        with pytest.raises(OSError):
            for _ in range(100):
                await send_frame_bytes(left, encode_frame({"v": b"z" * 1000}))


@pytest.mark.trio
async def test_send_now_takes_nothing_from_other_streams() -> None:
    send, _recv = trio.testing.memory_stream_pair()
    assert send_now(send, b"abc") == 0  # not a plain socket: the caller uses send_all
