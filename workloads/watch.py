"""The watch workload: writers change a small key space while watch streams report it.

Why: a store's watches promise more than its reads (ordered, unique, atomic, reliable,
resumable, bookmarkable streams; see kvcheck.checker.watch), and a store can keep every
read linearizable while its watches skip, repeat or invent events. This workload records
both sides in one history so the checkers can compare them.

How: worker threads (the runner's) put, delete, run multi-key txns, cas and read keys under
``w/``; every write completion records the response's header ``revision`` (a delete also
``deleted``: how many keys it removed). Beside them (the workload's ``background``) a few
watcher slots each open one watch stream after another — on one key, a range or the whole
prefix; from "now" (0) or a past revision; some with prev_kv, progress_notify, a NOPUT or
NODELETE filter, or progress requests — and a compactor compacts now and then; a quarter of
its compactions (``REFUSED_COMPACTION_SHARE``, drawn from a substream of their own) ask for
a revision the store must refuse when it applies the request: the last one compacted (etcd:
"required revision has been compacted") or one far beyond the newest (etcd: "required
revision is a future revision"); the watch checker judges ok answers. Each stream
is its own process: an ``invoke`` line with the request, one ``ok`` line per response, a
line per progress request, and an end line (``ok`` closed or canceled, ``info`` broken or
stalled). A broken stream is re-opened as a NEW process from the last revision it saw + 1.
After recovery each key is read and the whole key space is read in one range. The history
format is documented in the README ("Watch histories").
"""

from __future__ import annotations

import inspect
import random
from typing import Any

import trio

from kvcheck.reference.client import Failed
from kvcheck.reference.client import Indeterminate as ClientIndeterminate
from kvcheck.reference.kv import requests as kvr
from kvcheck.workloads import generator as gen
from kvcheck.workloads.client import (
    CALL_ERRORS,
    DefiniteFailure,
    Indeterminate,
    call_outcome,
    decode_value,
    encode_value,
)
from kvcheck.workloads.determinism import substream
from kvcheck.workloads.generator import Context, Generator, OpSpec

PREFIX = "w/"
PREFIX_END = "w0"  # etcd's range end of the prefix "w/"


def kv_json(kv: kvr.KeyValue) -> dict[str, Any]:
    out = {"key": kv.key.decode("utf-8", "replace"), "value": decode_value(kv.value) if kv.version else None,
           "create_revision": kv.create_revision, "mod_revision": kv.mod_revision, "version": kv.version}
    if kv.lease:
        out["lease"] = kv.lease
    return out


def event_json(ev: kvr.Event) -> dict[str, Any]:
    kv = ev.kv
    out: dict[str, Any] = {"type": "put" if ev.type is kvr.EventType.PUT else "delete",
                           "key": kv.key.decode("utf-8", "replace"),
                           "value": decode_value(kv.value) if ev.type is kvr.EventType.PUT else None,
                           "create_revision": kv.create_revision, "mod_revision": kv.mod_revision,
                           "version": kv.version}
    if ev.prev_kv is not None:
        out["prev_kv"] = kv_json(ev.prev_kv)
    return out


def response_json(resp: kvr.WatchResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"watch_id": resp.watch_id, "created": resp.created, "canceled": resp.canceled,
                           "compact_revision": resp.compact_revision, "revision": resp.header.revision,
                           "events": [event_json(e) for e in resp.events]}
    if resp.cancel_reason:
        out["cancel_reason"] = resp.cancel_reason
    return out


_RESULTS = {"=": kvr.CompareResult.EQUAL, "!=": kvr.CompareResult.NOT_EQUAL, ">": kvr.CompareResult.GREATER,
            "<": kvr.CompareResult.LESS}
_TARGETS = {"version": kvr.CompareTarget.VERSION, "create_revision": kvr.CompareTarget.CREATE,
            "mod_revision": kvr.CompareTarget.MOD, "value": kvr.CompareTarget.VALUE}


def guard_compare(guard: list[Any]) -> kvr.Compare:
    """The store's Compare for a history compare ``[target, key, operand, result]``."""
    target, key, operand, result = guard
    c = kvr.Compare(result=_RESULTS[result], target=_TARGETS[target], key=key.encode())
    if target == "value":
        c.value = encode_value(operand)
    else:
        setattr(c, target, int(operand))
    return c


REFUSED_COMPACTION_SHARE = 0.25  # of the compactor's rounds that ask for a refused revision
FUTURE_GAP = 1000  # revisions past the newest seen: a compaction there must be refused

class KVHandle:
    """A worker's store client, closed the way the runner closes clients. ``node_of_member``:
    the target's node number of each member id a response header names (etcd's member ids are
    64-bit numbers; the history's ``node`` is the target's node number on every target)."""

    def __init__(self, kv: Any, node_of_member: dict[int, int] | None = None) -> None:
        self.kv = kv
        self.node_of_member = node_of_member if node_of_member is not None else {}  # kept by reference: it grows
        self.served_by: int | None = None  # the member that answered the last call (history ``node``)

    def served(self, header: kvr.ResponseHeader) -> None:
        member = header.member_id
        self.served_by = self.node_of_member.get(member, member) or None

    async def close(self) -> None:
        await self.kv.aclose()


class SerializableKV:
    """A store client whose reads (``get``) are serializable: answered from the serving
    member's own state, not through the leader's ReadIndex (the final per-member reads,
    kvcheck.workloads.memberreads). Every other call is the wrapped client's."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    async def get(self, key: bytes, **kwargs: Any) -> Any:
        return await self.kv.get(key, serializable=True, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


class WatchWorkload:
    """See the module docstring. ``keys`` keys ``w/k0`` .. under the prefix ``w/``."""

    name = "watch"
    # members: the final per-member reads agree (workloads.memberreads, checker.members)
    checkers: tuple[str, ...] = ("linearizable", "watch", "members")

    prefix = PREFIX
    prefix_end = PREFIX_END

    def __init__(self, keys: int = 5, watchers: int = 4) -> None:
        self.keys = [f"{self.prefix}k{i}" for i in range(max(1, keys))]
        self.watchers = watchers
        self.max_revision = 1  # the highest revision any response has shown
        self.compacted = 0
        self._next_value = 0
        self._written: dict[str, list[int]] = {}
        self._guards: dict[int, list[list[Any]]] = {}  # id(txn spec) -> its compares (_guard)
        self.stream_duration = (2.0, 8.0)
        self.stall_after = 4.0
        self.compact_every = (3.0, 6.0)
        self.seed = 0  # the run's seed (configure): the substreams of the workload's own draws

    def configure(self, config: Any) -> None:
        """Take the run's seed from its settings (``RunConfig``)."""
        self.seed = int(getattr(config, "seed", 0) or 0)

    # -- the workers' ops --------------------------------------------------------------------

    def _fresh(self, key: str) -> int:
        self._next_value += 1
        self._written.setdefault(key, []).append(self._next_value)
        return self._next_value

    def _put(self, ctx: Context) -> OpSpec:
        key = ctx.rng.choice(self.keys)
        return OpSpec("put", self._fresh(key), key)

    def _delete(self, ctx: Context) -> OpSpec:
        return OpSpec("delete", None, ctx.rng.choice(self.keys))

    def _delete_range(self, ctx: Context) -> OpSpec:
        """A delete of part of the key space, ``[key, range_end)`` with range_end another key
        (which must survive), ``\\0`` or the prefix's end, with prev_kv (the response names the
        keys it deleted). The value is the request plus ``keys``: the workload's keys inside
        the range (every key it may delete)."""
        keys = sorted(self.keys)
        i = ctx.rng.randrange(len(keys))
        shape = ctx.rng.random()
        if shape < 0.6 and i + 1 < len(keys):
            end = keys[ctx.rng.randrange(i + 1, len(keys))]
        elif shape < 0.8:
            end = "\0"
        else:
            end = self.prefix_end
        inside = [k for k in keys if k >= keys[i] and (end == "\0" or k < end)]
        return OpSpec("delete-range", {"key": keys[i], "range_end": end, "keys": inside})

    def _txn(self, ctx: Context) -> OpSpec:
        keys = ctx.rng.sample(self.keys, min(len(self.keys), ctx.rng.choice((2, 2, 3))))
        ops = [["delete", k, None] if ctx.rng.random() < 0.25 else ["put", k, self._fresh(k)] for k in keys]
        spec = OpSpec("txn", ops)
        if ctx.rng.random() < 0.5:
            self._guards[id(spec)] = [self._guard(ctx) for _ in range(ctx.rng.choice((1, 1, 2)))]
        return spec

    def _guard(self, ctx: Context) -> list[Any]:
        """One txn compare ``[target, key, operand, result]``: a key's version, create or mod
        revision against a number near what it may hold (``=``, ``!=``, ``>`` or ``<``), or its
        value against one written to it recently (``=`` or ``!=``: etcd compares values as
        bytes, so their order is not the numbers'). Some hold, some do not."""
        rng = ctx.rng
        key = rng.choice(self.keys)
        target = rng.choice(("version", "create_revision", "mod_revision", "value"))
        if target == "value":
            recent = self._written.get(key, [])[-3:]
            return ["value", key, rng.choice(recent) if recent else 0, rng.choice(("=", "!="))]
        if target == "version":
            operand = rng.randint(0, 4)
        else:
            operand = rng.choice((0, rng.randint(max(1, self.max_revision - 15), self.max_revision + 1)))
        return [target, key, operand, rng.choice(("=", "!=", ">", "<"))]

    def _cas(self, ctx: Context) -> OpSpec:
        key = ctx.rng.choice(self.keys)
        recent = self._written.get(key, [])[-3:]
        old = ctx.rng.choice(recent) if recent else 0
        return OpSpec("cas", [old, self._fresh(key)], key)

    def _read(self, ctx: Context) -> OpSpec:
        return OpSpec("read", None, ctx.rng.choice(self.keys))

    def _range(self, ctx: Context) -> OpSpec:
        """A range read of part of the key space, as clients page and list: ``[key, range_end)``
        with range_end another key of the space (so the bound itself is a key that may exist),
        the prefix's end or ``\\0`` (every key from ``key`` on); a ``limit`` half the time;
        at a past revision a third of the time (the last compaction, the one after it, or any
        revision seen since: the boundary where compaction must keep what a read there shows).
        The value is the request; the checker reads the same fields from the completion."""
        rng = ctx.rng
        keys = sorted(self.keys)
        i = rng.randrange(len(keys))
        shape = rng.random()
        if shape < 0.5 and i + 1 < len(keys):
            end = keys[rng.randrange(i + 1, len(keys))]
        elif shape < 0.75:
            end = "\0"
        else:
            end = self.prefix_end
        limit = rng.randint(1, len(keys)) if rng.random() < 0.5 else 0
        revision = 0
        if rng.random() < 1 / 3 and self.max_revision > 1:
            floor = max(1, self.compacted)
            revision = min(self.max_revision, rng.choice((floor, floor + 1, rng.randint(floor, self.max_revision))))
        return OpSpec("range", {"key": keys[i], "range_end": end, "limit": limit, "revision": revision})

    def check_options(self) -> dict[str, Any]:
        return {"model": "cas-register", "extra": {"compare_failed": True, "kv_ops": True}}

    def client(self, target: Any, process: int) -> KVHandle:
        return KVHandle(target.kv_client(process), getattr(target, "node_of_member", None))

    def generator(self) -> Generator:
        return gen.mix([gen.fn(self._put), gen.fn(self._delete), gen.fn(self._txn), gen.fn(self._cas),
                        gen.fn(self._read), gen.fn(self._range), gen.fn(self._delete_range)],
                       [0.3, 0.09, 0.15, 0.1, 0.23, 0.1, 0.03])

    def final_generator(self, threads: int) -> Generator:
        specs = [OpSpec("read", None, k) for k in self.keys] + [OpSpec("range", None, None)]
        return gen.once_each(specs)

    def member_read_specs(self) -> list[OpSpec]:
        """The final per-member reads (workloads.memberreads): every key the workload writes,
        once, as the workers read it (f ``read``: the value, and ``kv`` and the header
        ``revision`` in the completion), so the watch checker judges each as a read at the
        member's revision (``kv:read-state``) and the members checker compares members."""
        return [OpSpec("read", None, k) for k in self.keys]

    def member_client(self, target: Any, process: int, member: int, *, linearizable: bool = False) -> KVHandle:
        """The client of a per-member read: every request to ``member`` only, its reads
        serializable (answered from the member's own state), or with ``linearizable`` through
        the leader's ReadIndex (a member that was behind, asked as its clients would)."""
        kv = target.member_kv_client(process, member)
        return KVHandle(kv if linearizable else SerializableKV(kv), getattr(target, "node_of_member", None))

    def _saw(self, header: kvr.ResponseHeader) -> int:
        self.max_revision = max(self.max_revision, header.revision)
        return header.revision

    async def invoke(self, client: KVHandle, spec: OpSpec) -> tuple[Any, ...]:
        client.served_by = None
        try:
            return await self._invoke(client, spec)
        except Failed as exc:
            raise DefiniteFailure(exc.code.value, exc.message) from None
        except ClientIndeterminate as exc:
            if spec.f in ("read", "range"):  # a read changes nothing: it did not happen
                raise DefiniteFailure(exc.code.value, exc.message) from None
            raise Indeterminate(exc.code.value, exc.message) from None

    async def _invoke(self, handle: KVHandle, spec: OpSpec) -> tuple[Any, ...]:
        f, key, client = spec.f, spec.key, handle.kv

        def saw(header: kvr.ResponseHeader) -> int:
            handle.served(header)
            return self._saw(header)

        if f == "put":
            put = await client.put(key.encode(), encode_value(spec.value))
            return "ok", spec.value, {"revision": saw(put.header)}
        if f == "delete":
            d = await client.delete(key.encode())
            return "ok", None, {"revision": saw(d.header), "deleted": d.deleted}
        if f == "delete-range":
            q = spec.value
            d = await client.delete(q["key"].encode(), range_end=q["range_end"].encode(), prev_kv=True)
            return "ok", q, {"revision": saw(d.header), "deleted": d.deleted,
                             "deleted_keys": [kv.key.decode("utf-8", "replace") for kv in d.prev_kvs]}
        if f == "txn":
            success: list[kvr.RequestOp] = [
                kvr.PutRequest(key=k.encode(), value=encode_value(v)) if op == "put"
                else kvr.DeleteRangeRequest(key=k.encode()) for op, k, v in spec.value]
            guards = self._guards.pop(id(spec), None)
            t = await client.txn([guard_compare(g) for g in guards or ()], success)
            if guards is not None and not t.succeeded:  # the compares failed: nothing was written
                return "fail", spec.value, {"revision": saw(t.header), "succeeded": False, "compare": guards}
            done = [[op, k, v if op == "put" else int(getattr(r, "deleted", 0))]
                    for (op, k, v), r in zip(spec.value, t.responses, strict=True)]
            txn_extra: dict[str, Any] = {"revision": saw(t.header)}
            if guards is not None:
                txn_extra.update(succeeded=True, compare=guards)
            return "ok", done, txn_extra
        if f == "cas":
            old, new = spec.value
            c = await client.cas(key.encode(), encode_value(old), encode_value(new))
            # the compare and its outcome, for the watch checker's kv:compare-state
            return (("ok" if c.succeeded else "fail"), spec.value,
                    {"revision": saw(c.header), "succeeded": bool(c.succeeded), "compare": [["value", key, old]]})
        if f == "read":
            r = await client.get(key.encode())
            kv = r.kvs[0] if r.kvs else None
            extra: dict[str, Any] = {"revision": saw(r.header)}
            if kv is not None:
                extra["kv"] = kv_json(kv)
            return "ok", decode_value(kv.value) if kv is not None else None, extra
        if f == "range" and isinstance(spec.value, dict):  # part of the key space (_range)
            q = spec.value
            r = await client.get(q["key"].encode(), range_end=q["range_end"].encode(), limit=q["limit"],
                                 revision=q["revision"])
            kvs = [kv_json(kv) for kv in r.kvs]
            part: dict[str, Any] = {"revision": saw(r.header), "kvs": kvs, "count": r.count, "more": r.more,
                                    "range": {k: q[k] for k in ("key", "range_end", "limit")}}
            if q["revision"]:
                part["read_revision"] = q["revision"]
            return "ok", {kv["key"]: kv["value"] for kv in kvs}, part
        if f == "range":
            r = await client.get(self.prefix.encode(), range_end=self.prefix_end.encode())
            kvs = [kv_json(kv) for kv in r.kvs]
            return "ok", {kv["key"]: kv["value"] for kv in kvs}, {"revision": saw(r.header), "kvs": kvs}
        raise ValueError(f"workload {self.name} cannot run f={f!r}")

    # -- the background: watch streams and compactions -----------------------------------------

    async def background(self, env: Any) -> None:
        async with trio.open_nursery() as nursery:
            for slot in range(self.watchers):
                nursery.start_soon(self._watcher, env, slot)
            nursery.start_soon(self._compactor, env)

    def _new_request(self, rng: random.Random) -> dict[str, Any]:
        shape = rng.random()
        if shape < 0.4:
            key, end = self.prefix, self.prefix_end
        elif shape < 0.8:
            key, end = rng.choice(self.keys), ""
        else:  # a range of two or three keys
            i = rng.randrange(len(self.keys))
            key = self.keys[i]
            # one running to the prefix's end is asked as a from-key watch (range_end "\0",
            # etcd's --from-key): the same keys, as the workload writes none past its prefix,
            # through the store's other range test
            end = self.keys[i + 2] if i + 2 < len(self.keys) else "\0"
        start = 0
        if rng.random() < 0.5 and self.max_revision > 1:
            start = rng.randint(max(1, self.max_revision - 40), self.max_revision)
        filters: list[str] = []
        f = rng.random()
        if f < 0.1:
            filters = ["noput"]
        elif f < 0.2:
            filters = ["nodelete"]
        return {"key": key, "range_end": end, "start_revision": start, "prev_kv": rng.random() < 0.5,
                "progress_notify": rng.random() < 0.3, "filters": filters,
                "progress_requests": rng.random() < 0.5}

    async def _watcher(self, env: Any, slot: int) -> None:
        rng = env.rng
        request: dict[str, Any] | None = None
        while not env.stop.is_set():
            if request is None:
                request = self._new_request(rng)
            outcome, last_seen = await self._stream(env, request, rng.uniform(*self.stream_duration))
            if outcome in ("broken", "stalled"):
                # the same watch again as a new stream, from the revision after the last seen
                request = dict(request)
                if last_seen:
                    request["start_revision"] = last_seen + 1
            else:
                request = None
            with trio.move_on_after(rng.uniform(0.05, 0.5)):
                await env.stop.wait()

    async def _stream(self, env: Any, request: dict[str, Any], duration: float) -> tuple[str, int]:
        """One watch stream, recorded line by line; (how it ended, last revision seen)."""
        rec = env.recorder
        rng = env.rng
        process = env.new_process()
        client = env.target.kv_client(process)
        value = {k: request[k] for k in ("key", "range_end", "start_revision", "prev_kv", "progress_notify",
                                          "filters", "informer") if k in request}
        inv = rec.invoke(process, "watch", value)
        last_seen = 0
        outcome = "broken"
        error = "stream broken"
        kwargs: dict[str, Any] = {"range_end": request["range_end"].encode(),
                                  "start_revision": request["start_revision"], "prev_kv": request["prev_kv"],
                                  "progress_notify": request["progress_notify"],
                                  "filters": [kvr.FilterType.NOPUT if f == "noput" else kvr.FilterType.NODELETE
                                              for f in request["filters"]]}
        if not hasattr(client, "cluster"):  # the TCP client: one stream, no hidden resume
            kwargs["resume"] = False
        try:
            async with client.watch(request["key"].encode(), **kwargs) as stream:
                member = getattr(stream, "member", None)
                can_request = request["progress_requests"] and hasattr(stream, "request_progress")
                end_at = trio.current_time() + duration
                next_progress = trio.current_time() + rng.uniform(0.3, 1.5)
                last_response = trio.current_time()
                it = stream.__aiter__()
                while True:
                    if env.stop.is_set() or trio.current_time() >= end_at:
                        outcome = "closed"
                        break
                    if trio.current_time() - last_response > self.stall_after:
                        outcome, error = "stalled", "no response within the stall timeout"
                        break
                    wake = min(end_at, last_response + self.stall_after + 0.01)
                    if can_request:
                        wake = min(wake, next_progress)
                    if can_request and trio.current_time() >= next_progress:
                        rec.respond(inv, "ok", {"progress_request": True}, node=member)
                        asked = stream.request_progress()  # the TCP client's is async
                        if inspect.isawaitable(asked):
                            await asked
                        next_progress = trio.current_time() + rng.uniform(0.3, 1.5)
                        continue
                    resp: kvr.WatchResponse | None = None
                    with trio.move_on_at(wake):
                        try:
                            resp = await it.__anext__()
                        except StopAsyncIteration:
                            outcome = "broken"
                            break
                    if resp is None:
                        continue
                    last_response = trio.current_time()
                    rec.respond(inv, "ok", response_json(resp), node=member)
                    if resp.events:
                        last_seen = max(last_seen, resp.events[-1].kv.mod_revision)
                    elif (resp.created and not request["start_revision"]) or (not resp.created and not resp.canceled):
                        last_seen = max(last_seen, resp.header.revision)
                    if resp.canceled:
                        outcome = "canceled"
                        break
        except (Failed, ClientIndeterminate) as exc:
            outcome, error = "broken", f"{exc.code.value}: {exc.message}"
        finally:
            with trio.CancelScope(shield=True):
                if outcome in ("closed", "canceled"):
                    rec.respond(inv, "ok", {"end": outcome}, last=True)
                else:
                    rec.respond(inv, "info", {"end": outcome}, error=error)
                await client.aclose()
        return outcome, last_seen

    async def _compactor(self, env: Any) -> None:
        rng = env.rng
        refused = substream(self.seed, "refused-compaction")  # its own: env.rng draws stay as they were
        process = env.new_process()
        client = env.target.kv_client(process)
        try:
            while True:
                with trio.move_on_after(rng.uniform(*self.compact_every)):
                    await env.stop.wait()
                if env.stop.is_set():
                    return
                rev = self.max_revision - rng.randint(5, 40)
                if refused.random() < REFUSED_COMPACTION_SHARE:  # must fail when applied
                    past = self.compacted > 1 and refused.random() < 0.5
                    rev = self.compacted if past else self.max_revision + FUTURE_GAP
                elif rev <= max(1, self.compacted):
                    continue
                inv = env.recorder.invoke(process, "compact", rev)
                try:
                    with trio.fail_after(env.client_timeout):
                        resp = await client.compact(rev)
                except CALL_ERRORS as exc:
                    typ, error = call_outcome(exc)
                    env.recorder.complete(inv, typ, rev, error=error)
                    if typ == "fail":
                        continue
                else:
                    # (clamped: a store that answered a future compaction ok must not push the
                    # workload's own draws, e.g. kubernetes' past lists, beyond the revisions seen)
                    self.compacted = max(self.compacted, min(rev, self.max_revision))
                    env.recorder.complete(inv, "ok", rev, extra={"revision": self._saw(resp.header)})
                    continue
                await client.aclose()  # an info compaction retires its process
                process = env.new_process()
                client = env.target.kv_client(process)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()


def make_watch(keys: int) -> WatchWorkload:
    return WatchWorkload(keys=min(keys, 6))


__all__: list[str] = ["WatchWorkload", "event_json", "make_watch", "response_json"]
