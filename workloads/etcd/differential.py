"""Differential testing: the reference store against real etcd, op by op, field by field.

Why: the reference store claims etcd v3 semantics; etcd itself is the oracle. A sequence of
single-client operations (put with prev_kv/lease/ignore_value, range with every option,
delete range with prev_kv, txn with every compare target and result, compaction, lease
grant/revoke/time-to-live, watches from past revisions) runs against both stores and every
response is compared after normalising only what must differ.

How: one cluster of each store serves many sequences. Each sequence keeps to its own key
prefix and starts with a fence write outside it, so both stores begin it at a fresh revision
(never compacted); revisions are compared relative to that start (the fence's revision is
1, as an empty store's is), and a sequence's revision arguments are relative too. Lease ids
are compared by the slot that granted them; member and cluster ids and raft terms are
dropped; a lease's remaining TTL is compared as "alive" or -1 (time passes differently).
A watch is created from a past revision, then a sentinel put to its first key is awaited:
the events up to it, flattened, and the created/canceled/compact_revision flags are
compared. Errors are compared by the reference client's error codes. Leases are revoked
after each sequence so no expiry lands in a later one.

``Store`` adapts either client: ``EtcdStore`` (the JSON-gateway client) and ``RefStore``
(the reference store's TCP client). The operation strategies are Hypothesis's (a test
dependency): this module serves the test suite and ``benchmarks/differential.py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio
from hypothesis import strategies as st

from kvcheck.reference.client import Client, ClientError
from kvcheck.reference.kv import requests as kvr
from kvcheck.workloads.etcd.client import EtcdClient, prefix_end

KEYS = (b"a", b"b", b"c", b"d")
LEASE_SLOTS = 3
WATCH_TIMEOUT = 2.0

# -- operations: requests with relative revisions and lease slots --------------------------


@dataclass(frozen=True)
class Op:
    kind: str  # put | range | delete | txn | compact | grant | revoke | ttl | watch | bigtxn
    args: dict[str, Any]

    def __repr__(self) -> str:
        return f"{self.kind}({', '.join(f'{k}={v!r}' for k, v in self.args.items())})"


keys = st.sampled_from(KEYS)
values = st.sampled_from((b"", b"x", b"y", b"zz"))
rel_rev = st.integers(min_value=0, max_value=8)
slot = st.integers(min_value=0, max_value=LEASE_SLOTS - 1)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[bytes, bytes]:
    key = draw(keys)
    end = draw(st.sampled_from((b"", b"", b"c", b"e", b"\0")))
    return key, end


def put_args(draw: st.DrawFn) -> dict[str, Any]:
    return {"key": draw(keys), "value": draw(values), "lease": draw(st.none() | slot),
            "prev_kv": draw(st.booleans()), "ignore_value": draw(st.sampled_from((False, False, False, True))),
            "ignore_lease": draw(st.sampled_from((False, False, True)))}


@st.composite
def put_op(draw: st.DrawFn) -> Op:
    a = put_args(draw)
    if a["ignore_value"] and draw(st.booleans()):
        a["value"] = b""  # mostly the valid form: ignore_value with no value
    return Op("put", a)


@st.composite
def range_op(draw: st.DrawFn) -> Op:
    key, end = draw(ranges())
    return Op("range", {
        "key": key, "end": end, "limit": draw(st.sampled_from((0, 0, 1, 2))), "revision": draw(rel_rev | st.just(0)),
        "sort_order": draw(st.sampled_from(list(kvr.SortOrder))),
        "sort_target": draw(st.sampled_from(list(kvr.SortTarget))),
        "keys_only": draw(st.booleans()), "count_only": draw(st.booleans()),
        "min_mod_revision": draw(st.sampled_from((0, 0, 2, 4))), "max_mod_revision": draw(st.sampled_from((0, 0, 3, 6))),
        "min_create_revision": draw(st.sampled_from((0, 0, 2, 4))),
        "max_create_revision": draw(st.sampled_from((0, 0, 3, 6)))})


@st.composite
def delete_op(draw: st.DrawFn) -> Op:
    key, end = draw(ranges())
    return Op("delete", {"key": key, "end": end, "prev_kv": draw(st.booleans())})


@st.composite
def compare(draw: st.DrawFn) -> dict[str, Any]:
    target = draw(st.sampled_from(list(kvr.CompareTarget)))
    key, end = draw(ranges()) if draw(st.integers(0, 4)) == 0 else (draw(keys), b"")
    operand: Any
    if target is kvr.CompareTarget.VALUE:
        operand = draw(values)
    elif target is kvr.CompareTarget.LEASE:
        operand = draw(st.none() | slot)
    else:
        operand = draw(st.integers(min_value=0, max_value=6))
    return {"result": draw(st.sampled_from(list(kvr.CompareResult))), "target": target, "key": key,
            "end": end, "operand": operand}


def sub_op() -> st.SearchStrategy[Op]:
    return st.one_of(put_op(), range_op(), delete_op())


@st.composite
def txn_op(draw: st.DrawFn, depth: int = 0) -> Op:
    ops = sub_op() if depth else st.one_of(sub_op(), sub_op(), sub_op(), txn_op(depth=1))
    return Op("txn", {"compare": draw(st.lists(compare(), max_size=3)),
                      "success": draw(st.lists(ops, max_size=3)),
                      "failure": draw(st.lists(ops, max_size=3))})


def operations() -> st.SearchStrategy[Op]:
    return st.one_of(
        put_op(), put_op(), put_op(), range_op(), range_op(), delete_op(), txn_op(), txn_op(),
        st.builds(lambda r: Op("compact", {"revision": r}), st.integers(min_value=1, max_value=12)),
        st.builds(lambda s, ttl, explicit: Op("grant", {"slot": s, "ttl": ttl, "explicit": explicit}),
                  slot, st.sampled_from((60, 3600)), st.booleans()),
        st.builds(lambda s: Op("revoke", {"slot": s}), slot),
        st.builds(lambda s, k: Op("ttl", {"slot": s, "keys": k}), slot, st.booleans()),
        st.builds(lambda kr, r, p: Op("watch", {"key": kr[0], "end": kr[1], "start": r, "prev_kv": p}),
                  ranges(), st.integers(min_value=1, max_value=12), st.booleans()),
        st.builds(lambda n: Op("bigtxn", {"n": n}), st.sampled_from((128, 129))),
    )


def sequences(max_size: int = 16) -> st.SearchStrategy[list[Op]]:
    return st.lists(operations(), min_size=min(4, max_size), max_size=max_size)


# -- the stores ---------------------------------------------------------------------------


class Store(Protocol):
    name: str

    async def do(self, msg: kvr.Message) -> Any: ...

    async def lease_ttl(self, lease_id: int, keys: bool) -> kvr.LeaseTimeToLiveResponse: ...

    def watch(self, create: kvr.WatchCreateRequest) -> Any: ...


class EtcdStore:
    name = "etcd"

    def __init__(self, client: EtcdClient) -> None:
        self.c = client

    async def do(self, msg: kvr.Message) -> Any:
        c = self.c
        if isinstance(msg, kvr.RangeRequest):
            return await c.range(msg)
        if isinstance(msg, kvr.PutRequest):
            return await c.put_request(msg)
        if isinstance(msg, kvr.DeleteRangeRequest):
            return await c.delete_request(msg)
        if isinstance(msg, kvr.TxnRequest):
            return await c.txn(msg.compare, msg.success, msg.failure)
        if isinstance(msg, kvr.CompactionRequest):
            return await c.compact(msg.revision)
        if isinstance(msg, kvr.LeaseGrantRequest):
            return await c.lease_grant(msg.ttl, msg.id)
        if isinstance(msg, kvr.LeaseRevokeRequest):
            return await c.lease_revoke(msg.id)
        raise TypeError(msg)

    async def lease_ttl(self, lease_id: int, keys: bool) -> kvr.LeaseTimeToLiveResponse:
        return await self.c.lease_time_to_live(lease_id, keys)

    def watch(self, create: kvr.WatchCreateRequest) -> Any:
        return self.c.watch(create.key, range_end=create.range_end, start_revision=create.start_revision,
                            prev_kv=create.prev_kv)


class RefStore:
    name = "reference"

    def __init__(self, client: Client) -> None:
        self.c = client

    async def do(self, msg: kvr.Message) -> Any:
        resp_cls = kvr.MESSAGES_BY_KIND[msg.KIND + "_response"]
        write = not isinstance(msg, kvr.RangeRequest)
        return resp_cls.from_wire(await self.c.call(msg.KIND, msg.to_wire(), write=write))

    async def lease_ttl(self, lease_id: int, keys: bool) -> kvr.LeaseTimeToLiveResponse:
        return await self.c.lease_time_to_live(lease_id, keys)

    def watch(self, create: kvr.WatchCreateRequest) -> Any:
        return self.c.watch(create.key, range_end=create.range_end, start_revision=create.start_revision,
                            prev_kv=create.prev_kv)


# -- running a sequence -------------------------------------------------------------------


class _Seq:
    """One sequence on one store: prefix, revision base, lease slots."""

    def __init__(self, store: Store, prefix: bytes, lease_base: int) -> None:
        self.store = store
        self.prefix = prefix
        self.base = 0
        self.lease_base = lease_base
        self.leases: dict[int, int] = {}  # slot -> lease id granted
        self.slot_of: dict[int, int] = {}  # lease id -> slot
        self.last_rev = 0  # the latest header revision seen

    def k(self, key: bytes) -> bytes:
        return self.prefix + key

    def end(self, end: bytes) -> bytes:
        if not end:
            return b""
        if end == b"\0":
            return prefix_end(self.prefix)
        return self.prefix + end

    def abs_rev(self, rel: int) -> int:
        return rel + self.base - 1 if rel > 0 else 0

    def rel(self, rev: int) -> int:
        return rev - self.base + 1 if rev > 0 else 0

    def lease_id(self, s: int | None) -> int:
        if s is None:
            return 0
        return self.leases.get(s, self.lease_base + 100 + s)  # not granted: an id nobody holds

    def lease_name(self, lease: int) -> Any:
        if lease == 0:
            return 0
        return f"slot{self.slot_of[lease]}" if lease in self.slot_of else "unknown-lease"

    # requests

    def request(self, op: Op) -> kvr.Message:
        a = op.args
        if op.kind == "put":
            return kvr.PutRequest(key=self.k(a["key"]), value=a["value"], lease=self.lease_id(a["lease"]),
                                  prev_kv=a["prev_kv"], ignore_value=a["ignore_value"], ignore_lease=a["ignore_lease"])
        if op.kind == "range":
            return kvr.RangeRequest(
                key=self.k(a["key"]), range_end=self.end(a["end"]), limit=a["limit"],
                revision=self.abs_rev(a["revision"]), sort_order=a["sort_order"], sort_target=a["sort_target"],
                keys_only=a["keys_only"], count_only=a["count_only"],
                min_mod_revision=self.abs_rev(a["min_mod_revision"]), max_mod_revision=self.abs_rev(a["max_mod_revision"]),
                min_create_revision=self.abs_rev(a["min_create_revision"]),
                max_create_revision=self.abs_rev(a["max_create_revision"]))
        if op.kind == "delete":
            return kvr.DeleteRangeRequest(key=self.k(a["key"]), range_end=self.end(a["end"]), prev_kv=a["prev_kv"])
        if op.kind == "txn":
            return kvr.TxnRequest(compare=[self.compare(c) for c in a["compare"]],
                                  success=[self.request(o) for o in a["success"]],  # type: ignore[misc]
                                  failure=[self.request(o) for o in a["failure"]])  # type: ignore[misc]
        if op.kind == "bigtxn":
            return kvr.TxnRequest(success=[kvr.PutRequest(key=self.k(b"big%d" % i), value=b"v")
                                           for i in range(a["n"])])
        if op.kind == "compact":
            return kvr.CompactionRequest(revision=self.abs_rev(a["revision"]))
        if op.kind == "grant":
            return kvr.LeaseGrantRequest(ttl=a["ttl"], id=self.lease_base + a["slot"] if a["explicit"] else 0)
        if op.kind == "revoke":
            return kvr.LeaseRevokeRequest(id=self.lease_id(a["slot"]))
        raise ValueError(op.kind)

    def compare(self, c: dict[str, Any]) -> kvr.Compare:
        target = c["target"]
        fields: dict[str, Any] = {}
        if target is kvr.CompareTarget.VALUE:
            fields["value"] = c["operand"]
        elif target is kvr.CompareTarget.LEASE:
            fields["lease"] = self.lease_id(c["operand"])
        else:
            name = {kvr.CompareTarget.VERSION: "version", kvr.CompareTarget.CREATE: "create_revision",
                    kvr.CompareTarget.MOD: "mod_revision"}[target]
            fields[name] = c["operand"] if target is kvr.CompareTarget.VERSION else self.abs_rev(c["operand"])
        return kvr.Compare(result=c["result"], target=target, key=self.k(c["key"]), range_end=self.end(c["end"]),
                           **fields)

    # normalised responses

    def kv(self, kv: kvr.KeyValue | None) -> Any:
        if kv is None:
            return None
        return {"key": kv.key, "create": self.rel(kv.create_revision), "mod": self.rel(kv.mod_revision),
                "version": kv.version, "value": kv.value, "lease": self.lease_name(kv.lease)}

    def norm(self, resp: Any) -> Any:
        if isinstance(resp, kvr.RangeResponse):
            return {"rev": self.rel(resp.header.revision), "kvs": [self.kv(x) for x in resp.kvs],
                    "more": resp.more, "count": resp.count}
        if isinstance(resp, kvr.PutResponse):
            return {"rev": self.rel(resp.header.revision), "prev_kv": self.kv(resp.prev_kv)}
        if isinstance(resp, kvr.DeleteRangeResponse):
            return {"rev": self.rel(resp.header.revision), "deleted": resp.deleted,
                    "prev_kvs": [self.kv(x) for x in resp.prev_kvs]}
        if isinstance(resp, kvr.TxnResponse):
            return {"rev": self.rel(resp.header.revision), "succeeded": resp.succeeded,
                    "responses": [self.norm(r) for r in resp.responses]}
        if isinstance(resp, kvr.CompactionResponse):
            return {"rev": self.rel(resp.header.revision)}
        if isinstance(resp, kvr.LeaseGrantResponse):
            return {"rev": self.rel(resp.header.revision), "ttl": resp.ttl, "id": "granted" if resp.id else 0}
        if isinstance(resp, kvr.LeaseRevokeResponse):
            return {"rev": self.rel(resp.header.revision)}
        raise TypeError(resp)

    async def run(self, op: Op) -> Any:
        try:
            if op.kind == "ttl":
                lease = self.lease_id(op.args["slot"])
                t = await self.store.lease_ttl(lease, op.args["keys"])
                return {"ttl": "alive" if t.ttl > 0 else t.ttl, "granted_ttl": t.granted_ttl,
                        "keys": t.keys, "id": self.lease_name(t.id) if t.id else 0}
            if op.kind == "watch":
                return await self.watch(op)
            resp = await self.store.do(self.request(op))
        except ClientError as exc:
            return {"error": exc.code.value}
        self.last_rev = max(self.last_rev, resp.header.revision)
        if op.kind == "grant":
            self.leases[op.args["slot"]] = resp.id
            self.slot_of[resp.id] = op.args["slot"]
        return self.norm(resp)

    async def watch(self, op: Op) -> Any:
        a = op.args
        # a start past the sentinel's revision would wait for ever: start at most there
        start = min(a["start"], self.rel(self.last_rev) + 1)
        create = kvr.WatchCreateRequest(key=self.k(a["key"]), range_end=self.end(a["end"]),
                                        start_revision=self.abs_rev(start), prev_kv=a["prev_kv"])
        out: dict[str, Any] = {"created": False, "canceled": False, "compact_revision": 0, "events": []}
        sentinel = b"sentinel-%d" % id(op)
        sentinel_rev = 0
        with trio.move_on_after(WATCH_TIMEOUT) as scope:
            async with self.store.watch(create) as stream:
                async for resp in stream:
                    out["created"] = out["created"] or resp.created
                    if resp.canceled:
                        out["canceled"] = True
                        out["compact_revision"] = self.rel(resp.compact_revision)
                        break
                    if resp.created and not sentinel_rev:
                        put = await self.store.do(kvr.PutRequest(key=create.key, value=sentinel))
                        sentinel_rev = self.last_rev = put.header.revision
                    done = False
                    for e in resp.events:
                        out["events"].append({"type": int(e.type), "kv": self.kv(e.kv), "prev_kv": self.kv(e.prev_kv)})
                        done = done or (e.kv.mod_revision == sentinel_rev and e.kv.key == create.key)
                    if done:
                        break
        if scope.cancelled_caught:
            out["timeout"] = True
        if not sentinel_rev:  # canceled before the sentinel: write it anyway, the stores stay equal
            put = await self.store.do(kvr.PutRequest(key=create.key, value=sentinel))
            self.last_rev = put.header.revision
        for e in out["events"]:  # the sentinel's value differs per store run: name it
            for kv in (e["kv"], e["prev_kv"]):
                if kv is not None and kv["value"].startswith(b"sentinel-"):
                    kv["value"] = b"<sentinel>"
        return out

    async def fence(self) -> None:
        put = await self.store.do(kvr.PutRequest(key=self.prefix + b"\xff-fence", value=b""))
        self.base = put.header.revision
        # the fence key is outside the ops' keys but inside "\0" ranges: delete keeps them equal
        await self.store.do(kvr.DeleteRangeRequest(key=self.prefix + b"\xff-fence"))
        self.base += 1
        self.last_rev = self.base

    async def cleanup(self) -> None:
        for lease in list(self.leases.values()):
            with contextlib.suppress(ClientError):
                await self.store.do(kvr.LeaseRevokeRequest(id=lease))


@dataclass
class Difference:
    sequence: int
    index: int
    op: Op
    reference: Any
    etcd: Any

    def __str__(self) -> str:
        return (f"sequence {self.sequence} op {self.index} {self.op!r}:\n  reference: {self.reference!r}\n"
                f"  etcd:      {self.etcd!r}")


_COUNTER = itertools.count(1)


async def compare_sequence(ref: Store, etcd: Store, ops: Sequence[Op], tag: str = "d") -> tuple[int, Difference | None]:
    """Run ``ops`` on both stores; (ops compared, the first difference or None)."""
    n = next(_COUNTER)
    prefix = f"{tag}/{n}/".encode()
    lease_base = (n * 1000) % (1 << 40) + 7_000_000
    sides = [_Seq(ref, prefix, lease_base), _Seq(etcd, prefix, lease_base)]
    try:
        for s in sides:
            await s.fence()
        for i, op in enumerate(ops):
            r = await sides[0].run(op)
            e = await sides[1].run(op)
            if r != e:
                return i + 1, Difference(n, i, op, r, e)
        return len(ops), None
    finally:
        for s in sides:
            await s.cleanup()


def replace(op: Op, **args: Any) -> Op:
    return dataclasses.replace(op, args={**op.args, **args})
