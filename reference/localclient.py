"""An in-process client: the ``KVClient`` interface over Node objects, without sockets.

Why: the deterministic simulation runs members and clients in one trio run; its clients must
behave exactly like the TCP client (reference/client.py) — leader discovery from not-leader
hints, failover, a retried write keeps its (client id, seq) so the session table answers it,
"indeterminate" for a write whose outcome is unknown, watches that resume from the last
revision seen — but call the members' client-facing methods directly. How: ``members`` is a
callable returning the members currently reachable (the simulation decides which: crashed or
partitioned-away members are left out); each call tries the known leader first and retries
until its deadline (trio's clock, which the simulation mocks).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import trio

from kvcheck.reference.client import (
    DEFAULT_TIMEOUT,
    BadResponse,
    Failed,
    Indeterminate,
    cas_compare,
)
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.node import Node
from kvcheck.reference.wire import ErrorCode, WireError

T = TypeVar("T")
R = TypeVar("R")


class LogRequests:
    """The ``KVClient`` methods that are one request through the log (put, delete, txn, cas,
    lease grant and revoke, compaction), for in-process clients that implement ``_write``: send the
    request with one (client id, seq) across its retries and return its response."""

    async def _write(self, request: kvr.Message) -> Any:
        raise NotImplementedError

    async def _request(self, request: kvr.Message, expected: type[R]) -> R:
        """``_write``, checking that the answer is the request's kind of response (a TCP
        client's decoder refuses anything else; in process, a member's answer is taken as is)."""
        resp = await self._write(request)
        if not isinstance(resp, expected):
            raise BadResponse(f"{type(request).__name__} answered with {type(resp).__name__}, "
                              f"not {expected.__name__}: {resp!r:.200}")
        return resp

    async def put(self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False) -> kvr.PutResponse:
        return await self._request(kvr.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv),
                                   kvr.PutResponse)

    async def delete(self, key: bytes, *, range_end: bytes = b"", prev_kv: bool = False) -> kvr.DeleteRangeResponse:
        return await self._request(kvr.DeleteRangeRequest(key=key, range_end=range_end, prev_kv=prev_kv),
                                   kvr.DeleteRangeResponse)

    async def txn(self, compare: Sequence[kvr.Compare], success: Sequence[kvr.RequestOp],
                  failure: Sequence[kvr.RequestOp] = ()) -> kvr.TxnResponse:
        return await self._request(
            kvr.TxnRequest(compare=list(compare), success=list(success), failure=list(failure)), kvr.TxnResponse)

    async def cas(self, key: bytes, expected: bytes | None, new: bytes) -> kvr.TxnResponse:
        return await self.txn([cas_compare(key, expected)], [kvr.PutRequest(key=key, value=new)])

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> kvr.LeaseGrantResponse:
        return await self._request(kvr.LeaseGrantRequest(ttl=ttl, id=lease_id), kvr.LeaseGrantResponse)

    async def lease_revoke(self, lease_id: int) -> kvr.LeaseRevokeResponse:
        return await self._request(kvr.LeaseRevokeRequest(id=lease_id), kvr.LeaseRevokeResponse)

    async def compact(self, revision: int, physical: bool = False) -> kvr.CompactionResponse:
        return await self._request(kvr.CompactionRequest(revision=revision, physical=physical),
                                   kvr.CompactionResponse)


class LocalClient(LogRequests):
    """``KVClient`` over in-process members. ``client_id`` must be unique per client (> 0)."""

    def __init__(self, members: Callable[[], Mapping[int, Node]], client_id: int,
                 *, timeout: float = DEFAULT_TIMEOUT) -> None:
        if client_id <= 0:
            raise ValueError("client_id must be a positive integer")
        self.members = members
        self.client_id = client_id
        self.timeout = timeout
        self.leader: int | None = None
        self._seq = itertools.count(1)
        self._rotation = itertools.count()

    def _pick(self, tried: set[int]) -> Node | None:
        nodes = self.members()
        if self.leader is not None and self.leader in nodes and self.leader not in tried:
            return nodes[self.leader]
        ids = sorted(i for i in nodes if i not in tried) or sorted(nodes)
        if not ids:
            return None
        return nodes[ids[next(self._rotation) % len(ids)]]

    async def _call(self, fn: Callable[[Node], Awaitable[T]], *, write: bool) -> T:
        deadline = trio.current_time() + self.timeout
        maybe_applied = False
        tried: set[int] = set()
        last: WireError | None = None
        attempt = 0
        while trio.current_time() < deadline:
            node = self._pick(tried)
            if node is None:
                await trio.sleep(0.05)
                continue
            attempt += 1
            try:
                with trio.move_on_at(deadline) as scope:
                    result = await fn(node)
                if scope.cancelled_caught:
                    maybe_applied = True
                    break
                self.leader = node.id if write else self.leader
                return result
            except WireError as err:
                last = err
                tried.add(node.id)
                if err.code is ErrorCode.NOT_LEADER:
                    self.leader = err.leader
                elif err.code in (ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE):
                    maybe_applied = True
                    if self.leader == node.id:
                        self.leader = None
                else:
                    if err.indeterminate and write:
                        raise Indeterminate(err.code, err.message, cause=err) from None
                    raise Failed(err.code, err.message, cause=err) from None
                await trio.sleep(min(0.01 * attempt, 0.2))
        if write and maybe_applied:
            raise Indeterminate(ErrorCode.TIMEOUT, "no definite answer before the deadline", cause=last)
        raise Failed(last.code if last is not None else ErrorCode.UNAVAILABLE,
                     last.message if last is not None else "no member answered", cause=last)

    async def _write(self, request: kvr.Message) -> Any:
        seq = next(self._seq)  # one seq for every retry of this request
        return await self._call(lambda node: node.propose(request, self.client_id, seq), write=True)

    # -- the KVClient interface ------------------------------------------------------------------

    async def get(
        self, key: bytes, *, range_end: bytes = b"", revision: int = 0, limit: int = 0,
        serializable: bool = False, keys_only: bool = False, count_only: bool = False,
    ) -> kvr.RangeResponse:
        req = kvr.RangeRequest(key=key, range_end=range_end, revision=revision, limit=limit,
                               serializable=serializable, keys_only=keys_only, count_only=count_only)
        return await self._call(lambda node: node.range(req), write=False)

    async def lease_keepalive(self, lease_id: int) -> int:
        return (await self.lease_keepalive_response(lease_id)).ttl

    async def lease_keepalive_response(self, lease_id: int) -> kvr.LeaseKeepAliveResponse:
        resp: kvr.LeaseKeepAliveResponse = await self._call(lambda node: node.lease_keepalive(lease_id),
                                                            write=False)
        return resp

    @contextlib.asynccontextmanager
    async def watch(
        self, key: bytes, *, range_end: bytes = b"", start_revision: int = 0,
        prev_kv: bool = False, progress_notify: bool = False,
    ) -> AsyncIterator[AsyncIterator[kvr.WatchResponse]]:
        """Resumes on another member from the revision after the last event delivered when
        its member stops or drops the watch."""
        send, recv = trio.open_memory_channel[kvr.WatchResponse](256)
        state = {"next": start_revision, "created": 0}

        async def pump() -> None:
            tried: set[int] = set()
            async with send:
                while True:
                    node = self._pick(tried)
                    if node is None or not node.running:
                        await trio.sleep(0.05)
                        tried.clear()
                        continue
                    req = kvr.WatchCreateRequest(key=key, range_end=range_end, start_revision=state["next"],
                                                 prev_kv=prev_kv, progress_notify=progress_notify)
                    try:
                        with node.watch(req) as stream:
                            async for resp in stream:
                                if resp.events:
                                    state["next"] = resp.events[-1].kv.mod_revision + 1
                                elif resp.created and state["next"] == 0:
                                    state["next"] = resp.header.revision + 1
                                elif not resp.created and resp.header.revision:
                                    state["next"] = max(state["next"], resp.header.revision + 1)
                                if resp.created and not resp.canceled and not resp.events:
                                    if state["created"]:
                                        continue  # a resumed watch: its creation was seen
                                    state["created"] = 1
                                await send.send(resp)
                                if resp.canceled:
                                    return
                    except WireError:
                        pass
                    tried.add(node.id)
                    await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            try:
                async with recv:
                    yield recv
            finally:
                nursery.cancel_scope.cancel()

    async def aclose(self) -> None:
        return None
