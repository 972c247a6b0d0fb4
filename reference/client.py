"""The store's client: what workloads and ``kvcheck ctl`` use to talk to a cluster.

Why: histories are only as good as the client that records them. A write whose reply never
came may still take effect, so the client must say "indeterminate" rather than "failed", and a
retry must not apply a write twice. How: ``KVClient`` is the small interface workloads program
against (another store's client, e.g. real etcd, implements it too); ``Client`` implements it
over the reference store's TCP protocol (reference/wire.py): an endpoint list, leader discovery
from ``not_leader`` hints, failover, one multiplexed connection per endpoint, per-request
timeouts. Every request carries (client id, seq); a retry of a write reuses its seq, so the
server's session table answers it from its stored outcome instead of applying it again. Errors
are ``Failed`` (certainly did not take effect) or ``Indeterminate`` (may have, or may still).
Watches run on their own connection and resume from the last revision seen after a reconnect.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import trio

from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.wire import (
    BadFrame,
    ErrorCode,
    FrameReader,
    WireError,
    encode_frame,
    request_frame,
    send_frame_bytes,
)

DEFAULT_TIMEOUT = 5.0



def cas_compare(key: bytes, expected: bytes | None) -> kvr.Compare:
    """The compare of a cas-as-txn: ``key`` holds ``expected`` (None: ``key`` is absent)."""
    if expected is None:
        return kvr.Compare(result=kvr.CompareResult.EQUAL, target=kvr.CompareTarget.VERSION,
                           key=key, version=0)
    return kvr.Compare(result=kvr.CompareResult.EQUAL, target=kvr.CompareTarget.VALUE,
                       key=key, value=expected)

class ClientError(Exception):
    """A request that did not succeed; ``code`` says why."""

    def __init__(self, code: ErrorCode, message: str = "", *, cause: WireError | None = None) -> None:
        super().__init__(f"{code.value}: {message}" if message else code.value)
        self.code = code
        self.message = message
        self.cause = cause


class Failed(ClientError):
    """The request certainly did not take effect (a definite error, or a read that failed)."""


class Indeterminate(ClientError):
    """A write whose outcome is unknown: it may have taken effect or may still do so."""


class BadResponse(Exception):
    """The store answered a request with a response of another kind (a protocol violation:
    e.g. a write answered with nothing, or with another request's response). The request's
    outcome is unknown; a test harness records the answer as an anomaly of the store."""


@runtime_checkable
class KVClient(Protocol):
    """The operations workloads use. Responses are reference.kv.requests types; errors are
    ``Failed`` or ``Indeterminate``. A real-etcd client implements the same methods."""

    async def put(
        self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False
    ) -> kvr.PutResponse: ...

    async def get(
        self, key: bytes, *, range_end: bytes = b"", revision: int = 0, limit: int = 0,
        serializable: bool = False, keys_only: bool = False, count_only: bool = False,
    ) -> kvr.RangeResponse: ...

    async def delete(
        self, key: bytes, *, range_end: bytes = b"", prev_kv: bool = False
    ) -> kvr.DeleteRangeResponse: ...

    async def txn(
        self, compare: Sequence[kvr.Compare], success: Sequence[kvr.RequestOp],
        failure: Sequence[kvr.RequestOp] = (),
    ) -> kvr.TxnResponse: ...

    async def cas(self, key: bytes, expected: bytes | None, new: bytes) -> kvr.TxnResponse: ...

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> kvr.LeaseGrantResponse: ...

    async def lease_revoke(self, lease_id: int) -> kvr.LeaseRevokeResponse: ...

    async def lease_keepalive(self, lease_id: int) -> int: ...

    async def lease_keepalive_response(self, lease_id: int) -> kvr.LeaseKeepAliveResponse:
        """One keepalive's whole response: the TTL and the header (its raft_term names the
        leadership that answered: within one term one lessor clock ran)."""
        ...

    def watch(
        self, key: bytes, *, range_end: bytes = b"", start_revision: int = 0,
        prev_kv: bool = False, progress_notify: bool = False,
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[kvr.WatchResponse]]: ...

    async def aclose(self) -> None: ...


class KVShortcuts:
    """The ``KVClient`` calls that are the same in terms of the others, for every client that
    has ``range``, ``txn`` and ``lease_keepalive_response`` (this module's ``Client`` and the
    etcd target's ``EtcdClient``)."""

    async def range(self, req: kvr.RangeRequest, *, timeout: float | None = None) -> kvr.RangeResponse:
        raise NotImplementedError

    async def txn(
        self, compare: Sequence[kvr.Compare], success: Sequence[kvr.RequestOp],
        failure: Sequence[kvr.RequestOp] = (),
    ) -> kvr.TxnResponse:
        raise NotImplementedError

    async def lease_keepalive_response(self, lease_id: int) -> kvr.LeaseKeepAliveResponse:
        raise NotImplementedError

    async def get(
        self, key: bytes, *, range_end: bytes = b"", revision: int = 0, limit: int = 0,
        serializable: bool = False, keys_only: bool = False, count_only: bool = False,
    ) -> kvr.RangeResponse:
        return await self.range(kvr.RangeRequest(
            key=key, range_end=range_end, revision=revision, limit=limit,
            serializable=serializable, keys_only=keys_only, count_only=count_only,
        ))

    async def cas(self, key: bytes, expected: bytes | None, new: bytes) -> kvr.TxnResponse:
        """Compare-and-set as a txn: if key's value is ``expected`` (None: the key is absent)
        put ``new``. ``succeeded`` tells whether the swap happened."""
        return await self.txn([cas_compare(key, expected)], [kvr.PutRequest(key=key, value=new)])

    async def lease_keepalive(self, lease_id: int) -> int:
        """One keepalive; the remaining TTL (0: the lease is unknown or expired)."""
        return (await self.lease_keepalive_response(lease_id)).ttl


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """'127.0.0.1:2379' or 'http(s)://127.0.0.1:2379' -> (host, port)."""
    rest = endpoint.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} is not HOST:PORT")
    return host, int(port)


async def open_stream(
    endpoint: str, ssl_context: ssl.SSLContext | None
) -> trio.abc.Stream:
    host, port = parse_endpoint(endpoint)
    tcp = await trio.open_tcp_stream(host, port)
    if ssl_context is None:
        return tcp
    stream = trio.SSLStream(tcp, ssl_context, server_hostname=host, https_compatible=False)
    try:
        await stream.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return stream


class _ConnectionLost(Exception):
    """The connection failed; ``sent`` says whether the request may have reached the server."""

    def __init__(self, message: str, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class _Connection:
    """One multiplexed connection: requests by id, a reader task resolving replies."""

    def __init__(self, endpoint: str, stream: trio.abc.Stream) -> None:
        self.endpoint = endpoint
        self.stream = stream
        self.reader = FrameReader(stream)
        self.send_lock = trio.Lock()
        self.pending: dict[int, tuple[trio.Event, list[Any]]] = {}
        self.closed = False
        self.failure = ""

    async def reader_task(self) -> None:
        try:
            while True:
                frame = await self.reader.read()
                if frame is None:
                    raise BadFrame("server closed the connection")
                if not isinstance(frame, dict):
                    raise BadFrame(f"reply is not a map: {frame!r:.100}")
                slot = self.pending.pop(frame.get("id"), None)  # type: ignore[arg-type]
                if slot is not None:
                    slot[1].append(frame)
                    slot[0].set()
        except (BadFrame, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.failure = str(exc) or type(exc).__name__
        finally:
            self.closed = True
            for event, _ in self.pending.values():
                event.set()
            self.pending.clear()
            with contextlib.suppress(Exception):
                await trio.aclose_forcefully(self.stream)

    async def request(self, rid: int, data: bytes) -> dict[str, Any]:
        """Send one encoded request frame with id ``rid``; its reply."""
        if self.closed:
            raise _ConnectionLost(f"connection to {self.endpoint} is closed", sent=False)
        event = trio.Event()
        box: list[Any] = []
        self.pending[rid] = (event, box)
        try:
            if self.send_lock.locked():
                async with self.send_lock:
                    await self.stream.send_all(data)
            else:  # nobody is mid-write: straight to the socket when it has room
                self.send_lock.acquire_nowait()
                try:
                    await send_frame_bytes(self.stream, data)
                finally:
                    self.send_lock.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.pending.pop(rid, None)
            raise _ConnectionLost(f"send to {self.endpoint} failed: {exc}", sent=True) from exc
        try:
            await event.wait()
        finally:
            self.pending.pop(rid, None)
        if not box:
            raise _ConnectionLost(f"connection to {self.endpoint} lost: {self.failure}", sent=True)
        reply: dict[str, Any] = box[0]
        return reply


@dataclass
class ClientConfig:
    endpoints: list[str]
    timeout: float = DEFAULT_TIMEOUT  # per request, including retries
    dial_timeout: float = 2.0
    ssl_context: ssl.SSLContext | None = None
    client_id: int | None = None  # default: a random 62-bit id
    # Reads go to this endpoint first (it must be one of ``endpoints``), as Jepsen binds
    # each client to a node: a test then sees what that member answers, follower or not.
    # Writes still follow the leader. None: every request goes to the last known leader.
    home: str | None = None

    def __post_init__(self) -> None:
        if self.home is not None and self.home not in self.endpoints:
            raise ValueError(f"the home endpoint {self.home} is not one of the endpoints")


class Client(KVShortcuts):
    """The TCP client. Use as ``async with open_client(endpoints) as client:``."""

    def __init__(self, config: ClientConfig, nursery: trio.Nursery) -> None:
        if not config.endpoints:
            raise ValueError("the client needs at least one endpoint")
        for endpoint in config.endpoints:
            parse_endpoint(endpoint)
        self.config = config
        self.client_id = config.client_id if config.client_id is not None else secrets.randbits(62) + 1
        self._nursery = nursery
        self._endpoints = list(config.endpoints)
        self._preferred: str | None = None  # the last known leader's endpoint
        self._rotation = itertools.count()
        self._conns: dict[str, _Connection] = {}
        self._dialing: dict[str, trio.Event] = {}
        self._seq = itertools.count(1)

    # -- plumbing -------------------------------------------------------------------------

    def next_seq(self) -> int:
        return next(self._seq)

    async def _connection(self, endpoint: str) -> _Connection:
        while True:
            conn = self._conns.get(endpoint)
            if conn is not None and not conn.closed:
                return conn
            dialing = self._dialing.get(endpoint)
            if dialing is None:
                break
            await dialing.wait()
        done = trio.Event()
        self._dialing[endpoint] = done
        try:
            with trio.fail_after(self.config.dial_timeout):
                stream = await open_stream(endpoint, self.config.ssl_context)
            conn = _Connection(endpoint, stream)
            self._conns[endpoint] = conn
            self._nursery.start_soon(conn.reader_task)
            return conn
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
            raise _ConnectionLost(f"cannot connect to {endpoint}: {exc}", sent=False) from exc
        finally:
            del self._dialing[endpoint]
            done.set()

    def _pick(self, tried: set[str], *, read: bool = False) -> str:
        home = self.config.home
        if read and home is not None and home not in tried:
            return home
        if self._preferred is not None and self._preferred not in tried:
            return self._preferred
        for _ in range(len(self._endpoints)):
            endpoint = self._endpoints[next(self._rotation) % len(self._endpoints)]
            if endpoint not in tried:
                return endpoint
        tried.clear()
        return self._endpoints[next(self._rotation) % len(self._endpoints)]

    async def call(
        self,
        op: str,
        body: dict[str, Any],
        *,
        write: bool,
        timeout: float | None = None,
        endpoint: str | None = None,
        seq: int | None = None,
    ) -> Any:
        """Send one request, following leader hints and failing over until it has a definite
        answer or the timeout passes. A write keeps one seq across every retry."""
        seq = seq if seq is not None else self.next_seq()
        timeout = self.config.timeout if timeout is None else timeout
        deadline = trio.current_time() + timeout
        frame = request_frame(seq, op, body, self.client_id, seq)
        try:
            data = encode_frame(frame)
        except WireError as exc:  # over the frame limit: certainly never sent
            raise Failed(exc.code, exc.message, cause=exc) from None
        maybe_applied = False
        tried: set[str] = set()
        last: WireError | None = None
        last_message = ""
        attempt = 0
        while True:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                break
            target = endpoint or self._pick(tried, read=not write)
            attempt += 1
            try:
                with trio.fail_after(remaining):
                    conn = await self._connection(target)
                    reply = await conn.request(seq, data)
            except trio.TooSlowError:
                maybe_applied = True
                last_message = f"no reply from {target} within the timeout"
                break
            except _ConnectionLost as exc:
                maybe_applied = maybe_applied or exc.sent
                last_message = str(exc)
                tried.add(target)
                if self._preferred == target:
                    self._preferred = None
                if endpoint is not None:
                    break
                await trio.sleep(min(0.05 * attempt, 0.5, max(0.0, deadline - trio.current_time())))
                continue
            if "ok" in reply:
                if endpoint is None:
                    self._preferred = target
                return reply["ok"]
            try:
                err = WireError.from_wire(reply.get("err"))
            except BadFrame as exc:
                raise Failed(ErrorCode.BAD_REQUEST, f"malformed reply from {target}: {exc}") from exc
            last = err
            if err.code is ErrorCode.NOT_LEADER and endpoint is None:
                tried.add(target)
                if err.endpoint and err.endpoint != target:
                    if err.endpoint not in self._endpoints:
                        self._endpoints.append(err.endpoint)
                    self._preferred = err.endpoint
                else:
                    self._preferred = None
                    await trio.sleep(min(0.05 * attempt, 0.3, max(0.0, deadline - trio.current_time())))
                continue
            if err.code in (ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE) and endpoint is None:
                # a member that stopped or timed out may have proposed it: unknown, retry
                maybe_applied = True
                tried.add(target)
                if self._preferred == target:
                    self._preferred = None
                await trio.sleep(min(0.05 * attempt, 0.3, max(0.0, deadline - trio.current_time())))
                continue
            if err.indeterminate and write:
                raise Indeterminate(err.code, err.message, cause=err)
            raise Failed(err.code, err.message, cause=err)
        code = last.code if last is not None and not maybe_applied else ErrorCode.TIMEOUT
        message = last.message if last is not None and not maybe_applied else last_message
        if write and maybe_applied:
            raise Indeterminate(ErrorCode.TIMEOUT, message or "no definite reply", cause=last)
        raise Failed(code if last is not None else ErrorCode.UNAVAILABLE,
                     message or last_message or "no endpoint answered", cause=last)

    async def aclose(self) -> None:
        for conn in list(self._conns.values()):
            with contextlib.suppress(Exception):
                await trio.aclose_forcefully(conn.stream)
        self._conns.clear()

    # -- the key-value interface -------------------------------------------------------------

    async def range(self, req: kvr.RangeRequest, *, timeout: float | None = None) -> kvr.RangeResponse:
        body = await self.call("range", req.to_wire(), write=False, timeout=timeout)
        return kvr.RangeResponse.from_wire(body)

    async def put(
        self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False
    ) -> kvr.PutResponse:
        req = kvr.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv)
        return kvr.PutResponse.from_wire(await self.call("put", req.to_wire(), write=True))

    async def delete(
        self, key: bytes, *, range_end: bytes = b"", prev_kv: bool = False
    ) -> kvr.DeleteRangeResponse:
        req = kvr.DeleteRangeRequest(key=key, range_end=range_end, prev_kv=prev_kv)
        return kvr.DeleteRangeResponse.from_wire(
            await self.call("delete_range", req.to_wire(), write=True))

    async def txn(
        self, compare: Sequence[kvr.Compare], success: Sequence[kvr.RequestOp],
        failure: Sequence[kvr.RequestOp] = (),
    ) -> kvr.TxnResponse:
        req = kvr.TxnRequest(compare=list(compare), success=list(success), failure=list(failure))
        return kvr.TxnResponse.from_wire(await self.call("txn", req.to_wire(), write=True))

    async def compact(self, revision: int, physical: bool = False) -> kvr.CompactionResponse:
        req = kvr.CompactionRequest(revision=revision, physical=physical)
        return kvr.CompactionResponse.from_wire(await self.call("compaction", req.to_wire(), write=True))

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> kvr.LeaseGrantResponse:
        req = kvr.LeaseGrantRequest(ttl=ttl, id=lease_id)
        return kvr.LeaseGrantResponse.from_wire(await self.call("lease_grant", req.to_wire(), write=True))

    async def lease_revoke(self, lease_id: int) -> kvr.LeaseRevokeResponse:
        req = kvr.LeaseRevokeRequest(id=lease_id)
        return kvr.LeaseRevokeResponse.from_wire(await self.call("lease_revoke", req.to_wire(), write=True))

    async def lease_keepalive_response(self, lease_id: int) -> kvr.LeaseKeepAliveResponse:
        body = await self.call("lease_keepalive", {"id": lease_id}, write=False)
        # a field at its default is left off the wire: an expired lease's reply has no ttl
        return kvr.LeaseKeepAliveResponse.from_wire(body)

    async def lease_time_to_live(self, lease_id: int, keys: bool = False) -> kvr.LeaseTimeToLiveResponse:
        req = kvr.LeaseTimeToLiveRequest(id=lease_id, keys=keys)
        return kvr.LeaseTimeToLiveResponse.from_wire(
            await self.call("lease_time_to_live", req.to_wire(), write=False))

    async def lease_leases(self) -> kvr.LeaseLeasesResponse:
        return kvr.LeaseLeasesResponse.from_wire(await self.call("lease_leases", {}, write=False))

    async def alarm(self, req: kvr.AlarmRequest) -> kvr.AlarmResponse:
        return kvr.AlarmResponse.from_wire(await self.call("alarm", req.to_wire(), write=True))

    # -- cluster and maintenance --------------------------------------------------------------

    async def status(self, endpoint: str, timeout: float | None = None) -> dict[str, Any]:
        body: dict[str, Any] = await self.call("status", {}, write=False, endpoint=endpoint, timeout=timeout)
        return body

    async def hash_kv(self, endpoint: str, revision: int = 0) -> dict[str, Any]:
        body: dict[str, Any] = await self.call("hash_kv", {"revision": revision}, write=False, endpoint=endpoint)
        return body

    async def member_list(self) -> list[dict[str, Any]]:
        body = await self.call("member_list", {}, write=False)
        return list(body["members"])

    async def member_add(self, name: str, peer: str, client: str, learner: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = await self.call(
            "member_add", {"name": name, "peer": peer, "client": client, "learner": learner}, write=True)
        return body

    async def member_remove(self, member_id: int) -> dict[str, Any]:
        body: dict[str, Any] = await self.call("member_remove", {"id": member_id}, write=True)
        return body

    async def member_promote(self, member_id: int) -> dict[str, Any]:
        body: dict[str, Any] = await self.call("member_promote", {"id": member_id}, write=True)
        return body

    async def move_leader(self, to: int) -> dict[str, Any]:
        body: dict[str, Any] = await self.call("move_leader", {"to": to}, write=True)
        return body

    async def snapshot(self, endpoint: str | None = None) -> bytes:
        body = await self.call("snapshot", {}, write=False, endpoint=endpoint, timeout=max(self.config.timeout, 30))
        return bytes(body["data"])

    # -- watches ------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(
        self, key: bytes, *, range_end: bytes = b"", start_revision: int = 0,
        prev_kv: bool = False, progress_notify: bool = False,
        filters: Sequence[Any] = (), resume: bool = True,
    ) -> AsyncIterator[AsyncIterator[kvr.WatchResponse]]:
        """A watch stream that survives member failures: after a reconnect it resumes from
        the revision after the last one it delivered, so no event is lost or repeated.
        Canceled responses (e.g. compaction) are delivered and end the stream.
        ``resume=False``: one stream on one member (the home endpoint, when configured):
        the iteration ends when that stream breaks, and the caller decides what next (a
        test that records each underlying stream must see every reconnect)."""
        send, recv = trio.open_memory_channel[kvr.WatchResponse](256)
        state = {"next": start_revision, "created": 0}
        failure: list[Failed] = []
        current: dict[str, Any] = {}  # the stream the watch is on now, and its watch id

        async def pump() -> None:
            attempt = 0
            tried: set[str] = set()
            async with send:
                while True:
                    target = self._pick(tried, read=not resume)
                    req = kvr.WatchCreateRequest(
                        key=key, range_end=range_end, start_revision=state["next"],
                        prev_kv=prev_kv, progress_notify=progress_notify, filters=list(filters),
                    )
                    try:
                        with trio.fail_after(self.config.dial_timeout):
                            stream = await open_stream(target, self.config.ssl_context)
                    except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError):
                        if not resume:
                            return
                        tried.add(target)
                        attempt += 1
                        await trio.sleep(min(0.05 * attempt, 0.5))
                        continue
                    current.clear()
                    current["stream"] = stream
                    try:
                        await stream.send_all(encode_frame(request_frame(
                            self.next_seq(), "watch_create", req.to_wire(), self.client_id, 0)))
                        reader = FrameReader(stream)
                        while True:
                            frame = await reader.read()
                            if frame is None:
                                raise BadFrame("server closed the watch")
                            if "err" in frame:
                                err = WireError.from_wire(frame["err"])
                                if err.code in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT):
                                    raise BadFrame(str(err))
                                failure.append(Failed(err.code, err.message, cause=err))
                                return  # ends the stream; raised when the watch context exits
                            resp = kvr.WatchResponse.from_wire(frame["ok"])
                            if resp.created:
                                current["watch_id"] = resp.watch_id
                            attempt = 0
                            tried.clear()
                            if resp.events:
                                state["next"] = resp.events[-1].kv.mod_revision + 1
                            elif resp.header.revision and not resp.created and state["next"] != 0:
                                # a progress notification: everything up to it was delivered
                                state["next"] = max(state["next"], resp.header.revision + 1)
                            if resp.created and state["next"] == 0:
                                state["next"] = resp.header.revision + 1
                            if resp.created and not resp.canceled and not resp.events:
                                if state["created"]:
                                    continue  # a resumed watch: the consumer saw its creation
                                state["created"] = 1
                            await send.send(resp)
                            if resp.canceled:
                                return
                    except (BadFrame, kvr.KVError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        if not resume:
                            return
                        tried.add(target)
                        attempt += 1
                        await trio.sleep(min(0.05 * attempt, 0.5))
                    finally:
                        current.clear()
                        await trio.aclose_forcefully(stream)

        async def request_progress() -> None:
            stream, wid = current.get("stream"), current.get("watch_id")
            if stream is None or wid is None:
                return
            frame = request_frame(self.next_seq(), "watch_progress", {"watch_id": wid}, self.client_id, 0)
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stream.send_all(encode_frame(frame))

        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            try:
                async with recv:
                    yield WatchHandle(recv, request_progress)
            except Exception as exc:  # re-raised below, outside the nursery
                error = exc
            finally:
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error
        if failure:
            raise failure[0]


class WatchHandle:
    """A watch stream of the TCP client: iterate its responses; ``await request_progress()``
    asks the serving member for a progress notification (no-op while reconnecting)."""

    def __init__(self, recv: trio.MemoryReceiveChannel[kvr.WatchResponse],
                 request: Callable[[], Awaitable[None]]) -> None:
        self._recv = recv
        self._request = request

    def __aiter__(self) -> WatchHandle:
        return self

    async def __anext__(self) -> kvr.WatchResponse:
        return await self._recv.__anext__()

    async def receive(self) -> kvr.WatchResponse:
        return await self._recv.receive()

    async def request_progress(self) -> None:
        await self._request()


@contextlib.asynccontextmanager
async def open_client(
    endpoints: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    ssl_context: ssl.SSLContext | None = None,
    client_id: int | None = None,
    home: str | None = None,
    dial_timeout: float = ClientConfig.dial_timeout,
) -> AsyncIterator[Client]:
    error: Exception | None = None
    config = ClientConfig(list(endpoints), timeout=timeout, ssl_context=ssl_context, client_id=client_id,
                          home=home, dial_timeout=dial_timeout)
    async with trio.open_nursery() as nursery:
        client = Client(config, nursery)
        try:
            yield client
        except Exception as exc:  # re-raised below, outside the nursery (no ExceptionGroup)
            error = exc
        finally:
            await client.aclose()
            nursery.cancel_scope.cancel()
    if error is not None:
        raise error
