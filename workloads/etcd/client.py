"""A client of real etcd (v3.4) over its JSON gateway, with the reference client's interface.

Why: the workloads talk to ``kvcheck.reference.client.KVClient``; this class implements the
same methods against an etcd cluster, returning the same response types
(``kvcheck.reference.kv.requests``), so every workload and checker runs unchanged against a
store nobody here wrote, and the differential test can compare the two field by field.

How: unary calls are HTTP/1.1 POSTs of JSON to etcd's grpc-gateway (``/v3/kv/range``,
``/v3/kv/put``, ``/v3/kv/txn``, ``/v3/lease/grant``, ...) through ``httpx`` under trio.
The gateway writes keys and values in base64, int64 fields as decimal strings and leaves out
every field at its proto3 default; ``_decode_*`` turn all three back into typed messages.
A request goes to the client's home member first (Jepsen binds a client to a node; etcd
forwards writes to its leader itself) and fails over to the others only while nothing was
sent: connection refused or a connect timeout. Outcome classes, as the reference client:
``Failed`` for a definite answer (an etcd error that means "not applied", every failed
read, or no member reachable at all) and ``Indeterminate`` for a write whose request may
have reached a member (timeout, dropped connection, etcd's own "request timed out" or
"leader changed").

Watches cannot use httpx: it sends the whole request body before it reads the response,
and the gateway's watch is a bidirectional stream (create, then progress requests while
responses stream back). So a watch is a raw HTTP/1.1 request over a trio socket with a
chunked body and ``Expect: 100-continue`` (without it Go's server drains the unread body
when the handler first writes). Responses are newline-separated JSON objects in the chunked
response body. A watch resumes on another member after a connection loss, from the revision
after the last one it delivered, as the reference client's does.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import trio

from kvcheck.reference.client import Failed, Indeterminate, KVShortcuts, parse_endpoint
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.kv.requests import prefix_end
from kvcheck.reference.wire import ErrorCode

DEFAULT_TIMEOUT = 5.0

_SSL_CONTEXT: ssl.SSLContext | None = None


def _shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for every client of this process. The gateway is plain HTTP, but an
    httpx client given none builds its own, loading the whole CA bundle: measured 0.26 s per
    client on a loaded machine, synchronously in the trio thread that also runs the etcd
    target's peer proxies. A run opens a client per process (and another after every
    indeterminate op), so the proxies forwarded nothing for seconds at its start and etcd
    lost its leader for the whole of a 6 s run (the lease test found no lease granted)."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT

# etcd's error messages (api/v3rpc/rpctypes) -> the reference client's codes. The gateway
# puts the message in "error"/"message" and the gRPC status code in "code".
ERROR_MESSAGES: dict[str, ErrorCode] = {
    "etcdserver: mvcc: required revision has been compacted": ErrorCode.COMPACTED,
    "etcdserver: mvcc: required revision is a future revision": ErrorCode.FUTURE_REV,
    "etcdserver: key is not provided": ErrorCode.EMPTY_KEY,
    "etcdserver: key not found": ErrorCode.KEY_NOT_FOUND,
    "etcdserver: value is provided": ErrorCode.VALUE_PROVIDED,
    "etcdserver: lease is provided": ErrorCode.LEASE_PROVIDED,
    "etcdserver: too many operations in txn request": ErrorCode.TOO_MANY_OPS,
    "etcdserver: duplicate key given in txn request": ErrorCode.DUPLICATE_KEY,
    "etcdserver: mvcc: database space exceeded": ErrorCode.NO_SPACE,
    "etcdserver: request is too large": ErrorCode.REQUEST_TOO_LARGE,
    "etcdserver: requested lease not found": ErrorCode.LEASE_NOT_FOUND,
    "etcdserver: lease already exists": ErrorCode.LEASE_EXIST,
    "etcdserver: too large lease TTL": ErrorCode.LEASE_TTL_TOO_LARGE,
    "etcdserver: member not found": ErrorCode.MEMBER_NOT_FOUND,
    "etcdserver: member ID already exist": ErrorCode.MEMBER_EXIST,
    "etcdserver: Peer URLs already exists": ErrorCode.MEMBER_EXIST,
    "etcdserver: corrupt cluster": ErrorCode.CORRUPT,
    "etcdserver: request timed out": ErrorCode.TIMEOUT,
    "etcdserver: request timed out, possibly due to previous leader failure": ErrorCode.TIMEOUT,
    "etcdserver: request timed out, possibly due to connection lost": ErrorCode.TIMEOUT,
    "etcdserver: leader changed": ErrorCode.TIMEOUT,
    "etcdserver: no leader": ErrorCode.UNAVAILABLE,
    "etcdserver: not leader": ErrorCode.NOT_LEADER,
    "etcdserver: server stopped": ErrorCode.UNAVAILABLE,
    "etcdserver: too many requests": ErrorCode.UNAVAILABLE,
}
# gRPC status codes whose errors say the request was not applied, whatever the message
DEFINITE_GRPC_CODES = {3, 5, 6, 7, 8, 9, 11, 16}  # invalid argument ... out of range, unauthenticated
# etcd messages that are answered before anything is proposed (definite even on writes)
DEFINITE_MESSAGES = {"etcdserver: too many requests"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes(d: dict[str, Any], name: str) -> bytes:
    v = d.get(name)
    return base64.b64decode(v) if v else b""


def _int(d: dict[str, Any], name: str) -> int:
    v = d.get(name)
    return int(v) if v is not None else 0


def _enum(cls: type[Any], v: Any) -> Any:
    """An enum field: the gateway writes names (``"DELETE"``); numbers are accepted too."""
    if v is None:
        return cls(0)
    if isinstance(v, str) and not v.lstrip("-").isdigit():
        return cls[v]
    return cls(int(v))


def decode_header(d: dict[str, Any] | None) -> kvr.ResponseHeader:
    d = d or {}
    return kvr.ResponseHeader(revision=_int(d, "revision"), raft_term=_int(d, "raft_term"),
                              member_id=_int(d, "member_id"), cluster_id=_int(d, "cluster_id"))


def decode_kv(d: dict[str, Any]) -> kvr.KeyValue:
    return kvr.KeyValue(key=_bytes(d, "key"), create_revision=_int(d, "create_revision"),
                        mod_revision=_int(d, "mod_revision"), version=_int(d, "version"),
                        value=_bytes(d, "value"), lease=_int(d, "lease"))


def decode_range(d: dict[str, Any]) -> kvr.RangeResponse:
    return kvr.RangeResponse(header=decode_header(d.get("header")),
                             kvs=[decode_kv(x) for x in d.get("kvs") or ()],
                             more=bool(d.get("more", False)), count=_int(d, "count"))


def decode_put(d: dict[str, Any]) -> kvr.PutResponse:
    prev = d.get("prev_kv")
    return kvr.PutResponse(header=decode_header(d.get("header")),
                           prev_kv=decode_kv(prev) if prev is not None else None)


def decode_delete(d: dict[str, Any]) -> kvr.DeleteRangeResponse:
    return kvr.DeleteRangeResponse(header=decode_header(d.get("header")), deleted=_int(d, "deleted"),
                                   prev_kvs=[decode_kv(x) for x in d.get("prev_kvs") or ()])


def decode_txn(d: dict[str, Any]) -> kvr.TxnResponse:
    responses: list[kvr.ResponseOp] = []
    for r in d.get("responses") or ():
        if "response_range" in r:
            responses.append(decode_range(r["response_range"]))
        elif "response_put" in r:
            responses.append(decode_put(r["response_put"]))
        elif "response_delete_range" in r:
            responses.append(decode_delete(r["response_delete_range"]))
        elif "response_txn" in r:
            responses.append(decode_txn(r["response_txn"]))
        else:
            raise Failed(ErrorCode.BAD_REQUEST, f"unknown txn response op {sorted(r)}")
    return kvr.TxnResponse(header=decode_header(d.get("header")),
                           succeeded=bool(d.get("succeeded", False)), responses=responses)


def decode_event(d: dict[str, Any]) -> kvr.Event:
    prev = d.get("prev_kv")
    return kvr.Event(type=_enum(kvr.EventType, d.get("type")), kv=decode_kv(d.get("kv") or {}),
                     prev_kv=decode_kv(prev) if prev is not None else None)


def decode_watch(d: dict[str, Any]) -> kvr.WatchResponse:
    return kvr.WatchResponse(header=decode_header(d.get("header")), watch_id=_int(d, "watch_id"),
                             created=bool(d.get("created", False)),
                             canceled=bool(d.get("canceled", False)),
                             compact_revision=_int(d, "compact_revision"),
                             cancel_reason=str(d.get("cancel_reason", "")),
                             events=[decode_event(e) for e in d.get("events") or ()])


# -- request encoders (JSON bodies) -----------------------------------------------------------

def encode_range(r: kvr.RangeRequest) -> dict[str, Any]:
    return {"key": b64(r.key), "range_end": b64(r.range_end), "limit": r.limit, "revision": r.revision,
            "sort_order": int(r.sort_order), "sort_target": int(r.sort_target),
            "serializable": r.serializable, "keys_only": r.keys_only, "count_only": r.count_only,
            "min_mod_revision": r.min_mod_revision, "max_mod_revision": r.max_mod_revision,
            "min_create_revision": r.min_create_revision, "max_create_revision": r.max_create_revision}


def encode_put(r: kvr.PutRequest) -> dict[str, Any]:
    return {"key": b64(r.key), "value": b64(r.value), "lease": r.lease, "prev_kv": r.prev_kv,
            "ignore_value": r.ignore_value, "ignore_lease": r.ignore_lease}


def encode_delete(r: kvr.DeleteRangeRequest) -> dict[str, Any]:
    return {"key": b64(r.key), "range_end": b64(r.range_end), "prev_kv": r.prev_kv}


_COMPARE_FIELD = {kvr.CompareTarget.VERSION: "version", kvr.CompareTarget.CREATE: "create_revision",
                  kvr.CompareTarget.MOD: "mod_revision", kvr.CompareTarget.VALUE: "value",
                  kvr.CompareTarget.LEASE: "lease"}


def encode_compare(c: kvr.Compare) -> dict[str, Any]:
    name = _COMPARE_FIELD[kvr.CompareTarget(c.target)]
    value = getattr(c, name)
    # the oneof member is always written, so a compare with 0 (or b"") still names its target
    return {"result": int(c.result), "target": int(c.target), "key": b64(c.key),
            "range_end": b64(c.range_end), name: b64(value) if name == "value" else value}


def encode_op(op: kvr.RequestOp) -> dict[str, Any]:
    if isinstance(op, kvr.RangeRequest):
        return {"request_range": encode_range(op)}
    if isinstance(op, kvr.PutRequest):
        return {"request_put": encode_put(op)}
    if isinstance(op, kvr.DeleteRangeRequest):
        return {"request_delete_range": encode_delete(op)}
    return {"request_txn": encode_txn(op)}


def encode_txn(r: kvr.TxnRequest) -> dict[str, Any]:
    return {"compare": [encode_compare(c) for c in r.compare], "success": [encode_op(o) for o in r.success],
            "failure": [encode_op(o) for o in r.failure]}


def encode_watch_create(r: kvr.WatchCreateRequest) -> dict[str, Any]:
    return {"create_request": {"key": b64(r.key), "range_end": b64(r.range_end),
                               "start_revision": r.start_revision, "progress_notify": r.progress_notify,
                               "filters": [int(f) for f in r.filters], "prev_kv": r.prev_kv,
                               "watch_id": r.watch_id}}


class Namespace:
    """Keys under a prefix (an existing cluster is shared: a run keeps to its own keys).
    Requests get the prefix added to every key and range end; responses lose it."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.end = prefix_end(prefix)

    def key(self, key: bytes) -> bytes:
        return self.prefix + key

    def range_end(self, key: bytes, range_end: bytes) -> bytes:
        if not range_end:
            return b""
        if range_end == b"\0":
            return self.end  # "every key >= key" stays inside the namespace
        return self.prefix + range_end

    def request(self, msg: Any) -> Any:
        if isinstance(msg, kvr.RangeRequest | kvr.DeleteRangeRequest | kvr.Compare | kvr.WatchCreateRequest):
            return dataclasses.replace(msg, key=self.key(msg.key), range_end=self.range_end(msg.key, msg.range_end))
        if isinstance(msg, kvr.PutRequest):
            return dataclasses.replace(msg, key=self.key(msg.key))
        if isinstance(msg, kvr.TxnRequest):
            return kvr.TxnRequest(compare=[self.request(c) for c in msg.compare],
                                  success=[self.request(o) for o in msg.success],
                                  failure=[self.request(o) for o in msg.failure])
        return msg

    def strip(self, key: bytes) -> bytes:
        return key[len(self.prefix):] if key.startswith(self.prefix) else key

    def kv(self, kv: kvr.KeyValue | None) -> kvr.KeyValue | None:
        return None if kv is None else dataclasses.replace(kv, key=self.strip(kv.key))

    def response(self, msg: Any) -> Any:
        if isinstance(msg, kvr.RangeResponse):
            msg.kvs = [self.kv(kv) for kv in msg.kvs]  # type: ignore[misc]
        elif isinstance(msg, kvr.PutResponse):
            msg.prev_kv = self.kv(msg.prev_kv)
        elif isinstance(msg, kvr.DeleteRangeResponse):
            msg.prev_kvs = [self.kv(kv) for kv in msg.prev_kvs]  # type: ignore[misc]
        elif isinstance(msg, kvr.TxnResponse):
            msg.responses = [self.response(r) for r in msg.responses]
        elif isinstance(msg, kvr.WatchResponse):
            for e in msg.events:
                e.kv = self.kv(e.kv)  # type: ignore[assignment]
                e.prev_kv = self.kv(e.prev_kv)
        elif isinstance(msg, kvr.LeaseTimeToLiveResponse):
            msg.keys = [self.strip(k) for k in msg.keys]
        return msg


class _Unsent(Exception):
    """The request certainly did not reach the member (refused, connect timeout)."""


class EtcdClient(KVShortcuts):
    """``KVClient`` over etcd's JSON gateway (get, cas and lease_keepalive are the reference
    client's ``KVShortcuts``; a keepalive is a one-message stream). Close with ``await
    client.aclose()``."""

    def __init__(self, endpoints: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
                 dial_timeout: float = 1.0, home: str | None = None, namespace: bytes = b"") -> None:
        if not endpoints:
            raise ValueError("the client needs at least one endpoint")
        for endpoint in endpoints:
            parse_endpoint(endpoint)
        if home is not None and home not in endpoints:
            raise ValueError(f"the home endpoint {home} is not one of the endpoints")
        self.endpoints = [e.split("://", 1)[-1].rstrip("/") for e in endpoints]
        self.home = home.split("://", 1)[-1].rstrip("/") if home else None
        self.timeout = timeout
        self.dial_timeout = dial_timeout
        self._preferred: str | None = None
        self.ns = Namespace(namespace) if namespace else None
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=dial_timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=8),
            verify=_shared_ssl_context())

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._http.aclose()

    # -- plumbing -------------------------------------------------------------------------

    def _order(self, endpoint: str | None) -> list[str]:
        if endpoint is not None:
            return [endpoint]
        first = self.home or self._preferred
        rest = [e for e in self.endpoints if e != first]
        return [first, *rest] if first is not None else rest

    async def call(self, path: str, body: dict[str, Any], *, write: bool,
                   endpoint: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """POST ``body`` to ``path``; the decoded JSON of the reply. Fails over to the next
        member only while the request certainly was not sent."""
        timeout = self.timeout if timeout is None else timeout
        unsent: list[str] = []
        with trio.move_on_after(timeout) as scope:
            for target in self._order(endpoint):
                try:
                    reply = await self._post(target, path, body, write)
                except _Unsent as exc:
                    unsent.append(str(exc))
                    continue
                if endpoint is None and self.home is None:
                    self._preferred = target
                return reply
        if scope.cancelled_caught and write:
            raise Indeterminate(ErrorCode.TIMEOUT, f"no reply to {path} within {timeout:g} s")
        if scope.cancelled_caught:
            raise Failed(ErrorCode.TIMEOUT, f"no reply to {path} within {timeout:g} s")
        raise Failed(ErrorCode.UNAVAILABLE, "no member reachable: " + "; ".join(unsent))

    async def _post(self, target: str, path: str, body: dict[str, Any], write: bool) -> dict[str, Any]:
        url = f"http://{target}{path}"
        try:
            resp = await self._http.post(url, content=json.dumps(body).encode(),
                                         headers={"content-type": "application/json"})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise _Unsent(f"{target}: {type(exc).__name__}: {exc}") from None
        except httpx.HTTPError as exc:  # sent, then the connection failed or timed out
            if write:
                raise Indeterminate(ErrorCode.TIMEOUT, f"{target}: {type(exc).__name__}: {exc}") from None
            raise Failed(ErrorCode.TIMEOUT, f"{target}: {type(exc).__name__}: {exc}") from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise Indeterminate(ErrorCode.UNKNOWN, f"{target}: HTTP {resp.status_code}: {resp.text[:200]}") \
                if write else Failed(ErrorCode.UNKNOWN, f"{target}: HTTP {resp.status_code}: {resp.text[:200]}")
        if resp.status_code == 200 and "error" not in data:
            return data
        raise self._error(data, write)

    @staticmethod
    def _error(data: dict[str, Any], write: bool) -> Failed | Indeterminate:
        err = data.get("error")
        message = str(data.get("message") or (err.get("message") if isinstance(err, dict) else err) or "")
        grpc = data.get("code") if not isinstance(err, dict) else err.get("code")
        grpc_code = int(grpc) if isinstance(grpc, int | str) and str(grpc).lstrip("-").isdigit() else -1
        code = ERROR_MESSAGES.get(message, ErrorCode.UNKNOWN)
        definite = grpc_code in DEFINITE_GRPC_CODES or message in DEFINITE_MESSAGES
        if write and not definite:
            return Indeterminate(code, message)
        return Failed(code, message)

    # -- the key-value interface ----------------------------------------------------------

    async def range(self, req: kvr.RangeRequest, *, timeout: float | None = None) -> kvr.RangeResponse:
        if self.ns is not None:
            req = self.ns.request(req)
            return self.ns.response(decode_range(
                await self.call("/v3/kv/range", encode_range(req), write=False, timeout=timeout)))
        return decode_range(await self.call("/v3/kv/range", encode_range(req), write=False, timeout=timeout))

    async def put_request(self, req: kvr.PutRequest) -> kvr.PutResponse:
        if self.ns is not None:
            return self.ns.response(decode_put(await self.call("/v3/kv/put", encode_put(self.ns.request(req)),
                                                               write=True)))
        return decode_put(await self.call("/v3/kv/put", encode_put(req), write=True))

    async def put(self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False) -> kvr.PutResponse:
        return await self.put_request(kvr.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv))

    async def delete_request(self, req: kvr.DeleteRangeRequest) -> kvr.DeleteRangeResponse:
        if self.ns is not None:
            return self.ns.response(decode_delete(
                await self.call("/v3/kv/deleterange", encode_delete(self.ns.request(req)), write=True)))
        return decode_delete(await self.call("/v3/kv/deleterange", encode_delete(req), write=True))

    async def delete(self, key: bytes, *, range_end: bytes = b"", prev_kv: bool = False) -> kvr.DeleteRangeResponse:
        return await self.delete_request(kvr.DeleteRangeRequest(key=key, range_end=range_end, prev_kv=prev_kv))

    async def txn(self, compare: Sequence[kvr.Compare], success: Sequence[kvr.RequestOp],
                  failure: Sequence[kvr.RequestOp] = ()) -> kvr.TxnResponse:
        req = kvr.TxnRequest(compare=list(compare), success=list(success), failure=list(failure))
        if self.ns is not None:
            return self.ns.response(decode_txn(
                await self.call("/v3/kv/txn", encode_txn(self.ns.request(req)), write=True)))
        return decode_txn(await self.call("/v3/kv/txn", encode_txn(req), write=True))

    async def compact(self, revision: int, physical: bool = False) -> kvr.CompactionResponse:
        d = await self.call("/v3/kv/compaction", {"revision": revision, "physical": physical}, write=True)
        return kvr.CompactionResponse(header=decode_header(d.get("header")))

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> kvr.LeaseGrantResponse:
        d = await self.call("/v3/lease/grant", {"TTL": ttl, "ID": lease_id}, write=True)
        return kvr.LeaseGrantResponse(header=decode_header(d.get("header")), id=_int(d, "ID"), ttl=_int(d, "TTL"))

    async def lease_revoke(self, lease_id: int) -> kvr.LeaseRevokeResponse:
        d = await self.call("/v3/lease/revoke", {"ID": lease_id}, write=True)
        return kvr.LeaseRevokeResponse(header=decode_header(d.get("header")))

    async def lease_keepalive_response(self, lease_id: int) -> kvr.LeaseKeepAliveResponse:
        d = await self.call("/v3/lease/keepalive", {"ID": lease_id}, write=False)
        result = d.get("result")
        if not isinstance(result, dict):
            raise Failed(ErrorCode.UNKNOWN, f"keepalive reply without a result: {d!r:.200}")
        return kvr.LeaseKeepAliveResponse(header=decode_header(result.get("header")), id=lease_id,
                                          ttl=_int(result, "TTL"))

    async def lease_time_to_live(self, lease_id: int, keys: bool = False) -> kvr.LeaseTimeToLiveResponse:
        d = await self.call("/v3/lease/timetolive", {"ID": lease_id, "keys": keys}, write=False)
        resp = kvr.LeaseTimeToLiveResponse(
            header=decode_header(d.get("header")), id=_int(d, "ID"), ttl=_int(d, "TTL"),
            granted_ttl=_int(d, "grantedTTL"), keys=[base64.b64decode(k) for k in d.get("keys") or ()])
        return self.ns.response(resp) if self.ns is not None else resp

    async def lease_leases(self) -> kvr.LeaseLeasesResponse:
        d = await self.call("/v3/lease/leases", {}, write=False)
        return kvr.LeaseLeasesResponse(header=decode_header(d.get("header")),
                                       leases=[kvr.LeaseStatus(id=_int(x, "ID")) for x in d.get("leases") or ()])

    # -- cluster and maintenance ------------------------------------------------------------

    async def status(self, endpoint: str, timeout: float | None = None) -> dict[str, Any]:
        """One member's status: member_id, leader (0: none known), raft_term, raft_index,
        raft_applied_index, revision, version, db_size."""
        d = await self.call("/v3/maintenance/status", {}, write=False, endpoint=endpoint, timeout=timeout)
        header = decode_header(d.get("header"))
        return {"member_id": header.member_id, "revision": header.revision, "leader": _int(d, "leader"),
                "raft_term": _int(d, "raftTerm"), "raft_index": _int(d, "raftIndex"),
                "raft_applied_index": _int(d, "raftAppliedIndex"), "version": d.get("version", ""),
                "db_size": _int(d, "dbSize"), "errors": list(d.get("errors") or ())}

    async def member_list(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        d = await self.call("/v3/cluster/member/list", {}, write=False, endpoint=endpoint)
        return [{"id": _int(m, "ID"), "name": m.get("name", ""), "peer_urls": list(m.get("peerURLs") or ()),
                 "client_urls": list(m.get("clientURLs") or ()), "is_learner": bool(m.get("isLearner", False))}
                for m in d.get("members") or ()]

    async def member_add(self, peer_urls: Sequence[str]) -> dict[str, Any]:
        d = await self.call("/v3/cluster/member/add", {"peerURLs": list(peer_urls)}, write=True)
        m = d.get("member") or {}
        return {"id": _int(m, "ID"), "peer_urls": list(m.get("peerURLs") or ()),
                "members": [{"id": _int(x, "ID"), "name": x.get("name", ""),
                             "peer_urls": list(x.get("peerURLs") or ())} for x in d.get("members") or ()]}

    async def member_remove(self, member_id: int) -> None:
        await self.call("/v3/cluster/member/remove", {"ID": member_id}, write=True)

    async def version(self, endpoint: str) -> dict[str, Any]:
        try:
            resp = await self._http.get(f"http://{endpoint}/version")
            data: dict[str, Any] = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Failed(ErrorCode.UNAVAILABLE, f"{endpoint}/version: {exc}") from None
        return data

    # -- watches ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(
        self, key: bytes, *, range_end: bytes = b"", start_revision: int = 0,
        prev_kv: bool = False, progress_notify: bool = False, filters: Sequence[Any] = (),
        resume: bool = True,
    ) -> AsyncIterator[WatchStream]:
        """A watch stream that survives member failures (resumes from the revision after the
        last one delivered). Canceled responses are delivered and end the stream. The stream
        has ``request_progress()``: etcd answers with a response of watch_id -1 whose
        header.revision every event up to has been sent. ``resume=False`` (as the reference
        client's): one stream on one member (the home member when there is one); the
        iteration ends when that stream breaks and the caller decides what next (a workload
        that records each underlying stream as a process must see every reconnect)."""
        stream = WatchStream(self, kvr.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start_revision, prev_kv=prev_kv,
            progress_notify=progress_notify, filters=list(filters)), resume=resume)
        error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.pump)
            try:
                yield stream
            except Exception as exc:  # re-raised below, outside the nursery
                error = exc
            finally:
                nursery.cancel_scope.cancel()
        if error is not None:
            raise error
        if stream.failure is not None:
            raise stream.failure


class _HTTPStreamError(Exception):
    pass


class WatchStream:
    """The responses of one watch (an async iterator) and its progress requests."""

    def __init__(self, client: EtcdClient, create: kvr.WatchCreateRequest, *, resume: bool = True) -> None:
        self.client = client
        self.create = create
        self.resume = resume
        self.failure: Failed | None = None
        self._send, self._recv = trio.open_memory_channel[kvr.WatchResponse](256)
        self._sock: trio.SocketStream | None = None
        self._next = create.start_revision
        self._created = False

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> kvr.WatchResponse:
        try:
            return await self._recv.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def request_progress(self) -> None:
        """Ask the member for a progress notification (sent on the open stream)."""
        sock = self._sock
        if sock is None:
            raise Failed(ErrorCode.UNAVAILABLE, "the watch stream is not connected")
        try:
            await sock.send_all(_chunk({"progress_request": {}}))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise Failed(ErrorCode.UNAVAILABLE, f"progress request not sent: {exc}") from None

    async def pump(self) -> None:
        attempt = 0
        async with self._send:
            while True:
                for target in self.client._order(None):
                    create = kvr.WatchCreateRequest(
                        key=self.create.key, range_end=self.create.range_end, start_revision=self._next,
                        progress_notify=self.create.progress_notify, filters=self.create.filters,
                        prev_kv=self.create.prev_kv)
                    if self.client.ns is not None:
                        create = self.client.ns.request(create)
                    try:
                        if await self._stream(target, create) or not self.resume:
                            return
                        attempt = 0
                    except (_HTTPStreamError, OSError, trio.BrokenResourceError, trio.ClosedResourceError,
                            trio.TooSlowError, ValueError, KeyError):
                        if not self.resume:
                            return  # the iteration ends: the caller sees the break
                        attempt += 1
                    finally:
                        self._sock = None
                    await trio.sleep(min(0.05 * attempt, 0.5))

    async def _stream(self, target: str, create: kvr.WatchCreateRequest) -> bool:
        """Run the watch on one member; True when the stream ended for good (canceled or an
        error answer), False when the member went away after delivering something."""
        host, port = parse_endpoint(target)
        with trio.fail_after(self.client.dial_timeout):
            sock = await trio.open_tcp_stream(host, port)
        async with sock:
            await sock.send_all(
                f"POST /v3/watch HTTP/1.1\r\nHost: {target}\r\nContent-Type: application/json\r\n"
                "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n".encode()
                + _chunk(encode_watch_create(create)))
            self._sock = sock  # progress requests may be sent from here on (one send at a time)
            reader = _ChunkedReader(sock)
            await reader.read_head()
            async for obj in reader.objects():
                if "error" in obj:
                    err = obj["error"]
                    failure = EtcdClient._error(err if isinstance(err, dict) else obj, write=False)
                    if failure.code in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT, ErrorCode.UNKNOWN):
                        raise _HTTPStreamError(str(failure))
                    self.failure = Failed(failure.code, failure.message)
                    return True
                resp = decode_watch(obj.get("result") or {})
                if resp.events:
                    self._next = resp.events[-1].kv.mod_revision + 1
                elif resp.watch_id == -1 or (resp.header.revision and not resp.created and self._next != 0):
                    self._next = max(self._next, resp.header.revision + 1)
                if resp.created and self._next == 0:
                    self._next = resp.header.revision + 1
                if resp.created and not resp.canceled and not resp.events:
                    if self._created:
                        continue  # a resumed watch: the consumer saw its creation
                    self._created = True
                if self.client.ns is not None:
                    resp = self.client.ns.response(resp)
                await self._send.send(resp)
                if resp.canceled:
                    return True
        raise _HTTPStreamError(f"{target} ended the watch stream")


def _chunk(obj: Any) -> bytes:
    data = json.dumps(obj).encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


class _ChunkedReader:
    """The response side of the watch's HTTP/1.1 exchange: the head (after any interim 1xx
    responses), then newline-separated JSON objects across the chunked body."""

    MAX_LINE = 64 * 1024 * 1024

    def __init__(self, sock: trio.SocketStream) -> None:
        self.sock = sock
        self.buf = bytearray()

    async def _fill(self) -> None:
        data = await self.sock.receive_some(65536)
        if not data:
            raise _HTTPStreamError("connection closed")
        self.buf += data

    async def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > self.MAX_LINE:
                raise _HTTPStreamError("line too long")
            await self._fill()

    async def read_head(self) -> None:
        while True:
            status = await self._line()
            headers = []
            while True:
                line = await self._line()
                if not line:
                    break
                headers.append(line.lower())
            parts = status.split(b" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                raise _HTTPStreamError(f"bad status line {status!r}")
            code = int(parts[1])
            if 100 <= code < 200:
                continue
            if code != 200:
                raise _HTTPStreamError(f"watch answered HTTP {code}")
            if b"transfer-encoding: chunked" not in headers:
                raise _HTTPStreamError("watch response is not chunked")
            return

    async def objects(self) -> AsyncIterator[dict[str, Any]]:
        body = bytearray()
        while True:
            size_line = await self._line()
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                return
            while len(self.buf) < size + 2:
                await self._fill()
            body += self.buf[:size]
            del self.buf[:size + 2]
            while True:
                i = body.find(b"\n")
                if i < 0:
                    break
                line = bytes(body[:i]).strip()
                del body[:i + 1]
                if line:
                    obj = json.loads(line)
                    if isinstance(obj, dict):
                        yield obj
