"""The client against scripted fake servers: indeterminate writes, retries that reuse their seq,
leader hints, definite errors, and reads that fail without being indeterminate."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from kvcheck.reference.client import Failed, Indeterminate, open_client
from kvcheck.reference.wire import (
    ErrorCode,
    FrameReader,
    WireError,
    encode_frame,
    error_frame,
    ok_frame,
)

Behaviour = Callable[[trio.SocketStream, dict[str, Any]], Awaitable[bool]]  # False: close the connection


async def fake_server(nursery: trio.Nursery, behaviour: Behaviour, seen: list[dict[str, Any]]) -> str:
    async def handler(stream: trio.SocketStream) -> None:
        reader = FrameReader(stream)
        try:
            while (frame := await reader.read()) is not None:
                seen.append(frame)
                if not await behaviour(stream, frame):
                    return
        finally:
            await stream.aclose()

    listeners = await nursery.start(trio.serve_tcp, handler, 0)
    port = listeners[0].socket.getsockname()[1]
    return f"127.0.0.1:{port}"


PUT_OK = {"header": {"revision": 5, "raft_term": 1, "member_id": 1, "cluster_id": 0}, "prev_kv": None}
RANGE_OK = {"header": {"revision": 5, "raft_term": 1, "member_id": 1, "cluster_id": 0}}


async def hang(stream: trio.SocketStream, frame: dict[str, Any]) -> bool:
    await trio.sleep_forever()
    return True


async def drop(stream: trio.SocketStream, frame: dict[str, Any]) -> bool:
    return False  # read the request, then close: it may have been applied


async def answer(stream: trio.SocketStream, frame: dict[str, Any]) -> bool:
    await stream.send_all(encode_frame(ok_frame(frame["id"], PUT_OK)))
    return True


async def answer_any(stream: trio.SocketStream, frame: dict[str, Any]) -> bool:
    await stream.send_all(encode_frame(ok_frame(frame["id"], RANGE_OK if frame["op"] == "range" else PUT_OK)))
    return True


@pytest.mark.trio
async def test_a_write_without_a_reply_is_indeterminate() -> None:
    seen: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        endpoint = await fake_server(nursery, hang, seen)
        async with open_client([endpoint], timeout=0.5) as client:
            with pytest.raises(Indeterminate) as info:
                await client.put(b"k", b"v")
            assert info.value.code is ErrorCode.TIMEOUT
        nursery.cancel_scope.cancel()
    assert len(seen) == 1


@pytest.mark.trio
async def test_a_read_without_a_reply_fails_definitely() -> None:
    seen: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        endpoint = await fake_server(nursery, hang, seen)
        async with open_client([endpoint], timeout=0.5) as client:
            with pytest.raises(Failed):
                await client.get(b"k")
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_retry_after_a_lost_connection_reuses_the_client_id_and_seq() -> None:
    seen_a: list[dict[str, Any]] = []
    seen_b: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        a = await fake_server(nursery, drop, seen_a)
        b = await fake_server(nursery, answer, seen_b)
        async with open_client([a, b], timeout=5) as client:
            resp = await client.put(b"k", b"v")
            assert resp.header.revision == 5
            second = await client.put(b"k2", b"v")
            assert second.header.revision == 5
        nursery.cancel_scope.cancel()
    first_try, retry = seen_a[0], seen_b[0]
    assert (first_try["client"], first_try["seq"]) == (retry["client"], retry["seq"])
    assert first_try["body"] == retry["body"]
    later = seen_b[-1] if seen_b[-1]["body"]["key"] == b"k2" else seen_a[-1]
    assert later["seq"] != first_try["seq"]  # a new request gets a new seq


@pytest.mark.trio
async def test_not_leader_hints_are_followed() -> None:
    seen_f: list[dict[str, Any]] = []
    seen_l: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        leader = await fake_server(nursery, answer, seen_l)

        async def follower(stream: trio.SocketStream, frame: dict[str, Any]) -> bool:
            err = WireError(ErrorCode.NOT_LEADER, "not the leader", leader=2, endpoint=leader)
            await stream.send_all(encode_frame(error_frame(frame["id"], err)))
            return True

        f = await fake_server(nursery, follower, seen_f)
        async with open_client([f], timeout=5) as client:
            await client.put(b"k", b"v")
            await client.put(b"k", b"w")  # goes straight to the leader now
        nursery.cancel_scope.cancel()
    assert len(seen_f) == 1 and len(seen_l) == 2
    assert seen_f[0]["seq"] == seen_l[0]["seq"]


@pytest.mark.trio
async def test_reads_go_to_the_home_member_first_and_writes_to_the_leader() -> None:
    """A client bound to a member (Jepsen's way): its reads ask that member, even after a
    write found the leader; a home that drops the connection fails the read over."""
    seen_l: list[dict[str, Any]] = []
    seen_h: list[dict[str, Any]] = []
    home_up = True
    async with trio.open_nursery() as nursery:
        leader = await fake_server(nursery, answer_any, seen_l)

        async def home_member(stream: trio.SocketStream, frame: dict[str, Any]) -> bool:
            if not home_up:
                return False
            if frame["op"] != "range":
                err = WireError(ErrorCode.NOT_LEADER, "not the leader", leader=1, endpoint=leader)
                await stream.send_all(encode_frame(error_frame(frame["id"], err)))
                return True
            return await answer_any(stream, frame)

        home = await fake_server(nursery, home_member, seen_h)
        async with open_client([leader, home], timeout=5, home=home) as client:
            await client.get(b"k")
            await client.put(b"k", b"v")
            await client.get(b"k")
            home_up = False
            await client.get(b"k")  # fails over to the leader
        nursery.cancel_scope.cancel()
    assert [f["op"] for f in seen_h] == ["range", "put", "range", "range"]
    assert [f["op"] for f in seen_l] == ["put", "range"]
    with pytest.raises(ValueError, match="home endpoint"):
        async with open_client([leader], home="127.0.0.1:1"):
            pass


@pytest.mark.trio
async def test_a_definite_error_is_failed_not_indeterminate() -> None:
    async def refuse(stream: trio.SocketStream, frame: dict[str, Any]) -> bool:
        err = WireError(ErrorCode.LEASE_NOT_FOUND, "etcdserver: requested lease not found")
        await stream.send_all(encode_frame(error_frame(frame["id"], err)))
        return True

    async with trio.open_nursery() as nursery:
        endpoint = await fake_server(nursery, refuse, [])
        async with open_client([endpoint], timeout=5) as client:
            with pytest.raises(Failed) as info:
                await client.lease_revoke(42)
            assert info.value.code is ErrorCode.LEASE_NOT_FOUND
            assert not isinstance(info.value, Indeterminate)
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_the_client_implements_the_workload_interface() -> None:
    from kvcheck.reference.client import Client, KVClient

    async with trio.open_nursery() as nursery:
        client = Client.__new__(Client)
        assert isinstance(client, KVClient)
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_an_oversize_request_fails_without_being_sent() -> None:
    seen: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        endpoint = await fake_server(nursery, answer, seen)
        async with open_client([endpoint], timeout=5) as client:
            with pytest.raises(Failed) as info:
                await client.put(b"k", b"v" * (2 * 1024 * 1024))
            assert info.value.code is ErrorCode.REQUEST_TOO_LARGE
        nursery.cancel_scope.cancel()
    assert seen == []


@pytest.mark.trio
async def test_a_keepalive_of_an_expired_lease_answers_ttl_0() -> None:
    # The server leaves a field at its default off the wire, so the reply for an expired or
    # unknown lease has no ttl at all (found by the lease workload on the local target).
    from kvcheck.reference.kv import requests as kvr

    async def expired(stream: trio.SocketStream, frame: dict[str, Any]) -> bool:
        body = kvr.LeaseKeepAliveResponse(kvr.ResponseHeader(revision=5), id=42, ttl=0).to_wire()
        assert "ttl" not in body
        await stream.send_all(encode_frame(ok_frame(frame["id"], body)))
        return True

    async with trio.open_nursery() as nursery:
        endpoint = await fake_server(nursery, expired, [])
        async with open_client([endpoint], timeout=5) as client:
            assert await client.lease_keepalive(42) == 0
        nursery.cancel_scope.cancel()
