"""The kubernetes workload: the store used as Kubernetes' API server uses etcd.

Why: Kubernetes is etcd's biggest client, and it leans on exactly the guarantees the other
workloads test one by one: optimistic concurrency on ``mod_revision`` (no lost update),
ranges at a revision, and informers — list at revision R, then watch from R + 1 with
prev_kv, re-list when the watch is canceled by compaction — whose caches must equal the
store at every revision they reach.

How: objects live under ``/registry/pods/default/<name>``. Workers run the API server's
storage calls: create = a txn ``mod_revision == 0`` then put; update = read, then a txn
``mod_revision == seen`` then put, retried on conflict (up to 3 reads); delete = read, then
a txn ``mod_revision == seen`` then delete; get = a linearizable read; list = a range of the
prefix. Each is one op in the history: f ``txn`` with the micro-ops as the watch workload
records them and ``compare`` ([["mod_revision", key, seen]]), ``succeeded`` and the txn's
header ``revision`` (of the last attempt) on the completion (``fail`` with
``compare-failed`` when every attempt conflicted), so that the watch checker can check the
compare's outcome against the replayed state (``kv:compare-state``). Informers (background) list the
prefix (``range`` with ``informer`` = n) and watch it from the list's revision + 1
(``watch`` with ``informer`` = n in the request), resume from the last revision seen + 1
when the stream breaks and re-list when compaction cancels it. A background lister lists
the prefix at a past revision now and then (``range`` with ``read_revision``), some below
the last compaction (which must fail with compacted). Checked with
``linearizable`` (per object), ``watch`` and ``informer`` (kvcheck.checker.informer).
"""

from __future__ import annotations

from typing import Any

import trio

from kvcheck.reference.kv import requests as kvr
from kvcheck.workloads import generator as gen
from kvcheck.workloads.client import CALL_ERRORS, call_outcome, encode_value
from kvcheck.workloads.generator import Context, Generator, OpSpec
from kvcheck.workloads.watch import KVHandle, WatchWorkload, kv_json

PREFIX = "/registry/pods/default/"
PREFIX_END = "/registry/pods/default0"
CONFLICT_RETRIES = 3


def _mod_is(key: str, revision: int) -> kvr.Compare:
    return kvr.Compare(result=kvr.CompareResult.EQUAL, target=kvr.CompareTarget.MOD, key=key.encode(),
                       mod_revision=revision)


class KubernetesWorkload(WatchWorkload):
    name = "kubernetes"
    checkers: tuple[str, ...] = ("linearizable", "watch", "informer", "members")
    prefix = PREFIX
    prefix_end = PREFIX_END

    def __init__(self, objects: int = 5, informers: int = 3) -> None:
        super().__init__(keys=1, watchers=0)
        self.keys = [f"{PREFIX}pod-{i}" for i in range(objects)]
        self.informers = informers
        self._calls: dict[int, str] = {}  # id(spec) -> the API call (create, update, delete)
        self.past_list_every = (0.5, 2.0)  # seconds between lists at a past revision

    def _call(self, call: str, value: list[list[Any]]) -> OpSpec:
        spec = OpSpec("txn", value)
        self._calls[id(spec)] = call
        return spec

    def generator(self) -> Generator:
        return gen.mix([gen.fn(self._create), gen.fn(self._update), gen.fn(self._remove), gen.fn(self._read),
                        gen.fn(self._list)], [0.2, 0.35, 0.1, 0.2, 0.15])

    def _create(self, ctx: Context) -> OpSpec:
        key = ctx.rng.choice(self.keys)
        return self._call("create", [["put", key, self._fresh(key)]])

    def _update(self, ctx: Context) -> OpSpec:
        key = ctx.rng.choice(self.keys)
        return self._call("update", [["put", key, self._fresh(key)]])

    def _remove(self, ctx: Context) -> OpSpec:
        return self._call("delete", [["delete", ctx.rng.choice(self.keys), None]])

    def _list(self, ctx: Context) -> OpSpec:
        return OpSpec("range", None, None)

    def final_generator(self, threads: int) -> Generator:
        specs = [OpSpec("read", None, k) for k in self.keys] + [OpSpec("range", None, None)]
        return gen.once_each(specs)

    async def _invoke(self, handle: KVHandle, spec: OpSpec) -> tuple[Any, ...]:
        if spec.f != "txn":
            return await super()._invoke(handle, spec)
        call = self._calls.pop(id(spec), "update")
        client = handle.kv
        (op, key, value), = spec.value
        for _attempt in range(CONFLICT_RETRIES):
            seen = 0
            if call != "create":
                got = await client.get(key.encode())
                if not got.kvs:
                    return "fail", spec.value, {"compare": [["mod_revision", key, 0]], "call": call,
                                                "reason": "not found"}
                seen = got.kvs[0].mod_revision
            request = (kvr.PutRequest(key=key.encode(), value=encode_value(value)) if op == "put"
                       else kvr.DeleteRangeRequest(key=key.encode()))
            t = await client.txn([_mod_is(key, seen)], [request])
            handle.served(t.header)
            extra = {"compare": [["mod_revision", key, seen]], "revision": self._saw(t.header),
                     "succeeded": bool(t.succeeded)}
            if t.succeeded:
                done = value if op == "put" else int(getattr(t.responses[0], "deleted", 0))
                return "ok", [[op, key, done]], {**extra, "call": call}
            if call == "create":
                break  # it exists: a create does not retry
        return "fail", spec.value, {**extra, "call": call}

    async def background(self, env: Any) -> None:
        async with trio.open_nursery() as nursery:
            for n in range(self.informers):
                nursery.start_soon(self._informer, env, n)
            nursery.start_soon(self._compactor, env)
            nursery.start_soon(self._past_lister, env)

    async def _past_lister(self, env: Any) -> None:
        """Lists at a past revision now and then, as the API server lists at a resourceVersion:
        a ``range`` with ``read_revision`` R (on the invocation and the completion) picked
        between a little below the last compaction and the newest revision seen, so that some
        land below it (they must fail with compacted) and most above."""
        rec = env.recorder
        process = env.new_process()
        client = env.target.kv_client(process)
        try:
            while True:
                with trio.move_on_after(env.rng.uniform(*self.past_list_every)):
                    await env.stop.wait()
                if env.stop.is_set() or self.max_revision < 2:
                    return
                past = env.rng.randint(max(1, self.compacted - 10), self.max_revision)
                inv = rec.invoke(process, "range", None, extra={"read_revision": past})
                try:
                    with trio.fail_after(env.client_timeout):
                        r = await client.get(PREFIX.encode(), range_end=PREFIX_END.encode(), revision=past)
                except CALL_ERRORS as exc:
                    typ, error = call_outcome(exc)
                    rec.complete(inv, typ, None, error=error, extra={"read_revision": past})
                    if typ == "fail":
                        continue
                    await client.aclose()  # an unanswered call retires its process
                    process = env.new_process()
                    client = env.target.kv_client(process)
                    continue
                kvs = [kv_json(kv) for kv in r.kvs]
                rec.complete(inv, "ok", {kv["key"]: kv["value"] for kv in kvs},
                             extra={"read_revision": past, "revision": self._saw(r.header), "kvs": kvs})
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    async def _informer(self, env: Any, n: int) -> None:
        rec = env.recorder
        process = env.new_process()
        client = env.target.kv_client(process)
        try:
            while not env.stop.is_set():
                inv = rec.invoke(process, "range", None, extra={"informer": n})
                try:
                    with trio.fail_after(env.client_timeout):
                        r = await client.get(PREFIX.encode(), range_end=PREFIX_END.encode())
                except CALL_ERRORS as exc:
                    typ, error = call_outcome(exc, changes=False)
                    rec.complete(inv, typ, None, error=error, extra={"informer": n})
                    with trio.move_on_after(0.3):
                        await env.stop.wait()
                    continue
                kvs = [kv_json(kv) for kv in r.kvs]
                rec.complete(inv, "ok", {kv["key"]: kv["value"] for kv in kvs},
                             extra={"informer": n, "revision": self._saw(r.header), "kvs": kvs})
                start = r.header.revision + 1
                while not env.stop.is_set():
                    request = {"key": PREFIX, "range_end": PREFIX_END, "start_revision": start, "prev_kv": True,
                               "progress_notify": True, "filters": [], "progress_requests": True, "informer": n}
                    outcome, last_seen = await self._stream(env, request, env.rng.uniform(*self.stream_duration))
                    if outcome == "canceled":
                        break  # compacted: list again
                    start = max(start, last_seen + 1)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()


def make_kubernetes(keys: int) -> KubernetesWorkload:
    return KubernetesWorkload()


__all__ = ["KubernetesWorkload", "make_kubernetes"]
