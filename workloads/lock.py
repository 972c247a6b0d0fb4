"""The lock workload: etcd's lock recipe (``etcdctl lock``, clientv3 ``concurrency.Mutex``)
guarding a shared resource, so that a broken mutual exclusion shows in the history.

Why: a lease-based lock is only as good as its holder's knowledge that it still holds it. A
client that stalls past its lease TTL loses the lock (the lease expires, its key is deleted,
the next waiter acquires) but, when it wakes, still acts as the holder. Jepsen showed this
for etcd 3.4's locks; the cure is fencing: the protected resource refuses a write that does
not carry the current holder's token. ``lock`` runs the recipe without fencing (a paused
holder's writes land: kvcheck.checker.lock reports the two holders), ``lock-fenced`` with
it (every resource write is a txn that succeeds only while the writer's lock key still
exists with the create revision it acquired: the stale holder's writes fail).

How: a few lockers (background tasks, each a pausable client: workloads/clientpause.py)
loop: grant a lease (TTL 2 s, the least etcd grants with its default timing) and keep it
alive every TTL/3 in a task of its own (``lease-keepalive`` ops, own process); acquire
(``acquire``, one op spanning the recipe): a txn creates ``lock/<lease id in hex>`` iff its
create revision is 0 (else reads it), the create revision is the lock revision; then read
the prefix: no key with a smaller create revision -> acquired; else watch the key with the
largest create revision below ours from the read's revision + 1 until it is deleted (and
re-read at least every second, as a watch served by a cut-off member may never report it),
and again; if our own key is gone the lease expired: the acquire fails (session expired).
While holding, the locker writes the resource key ``lock-resource`` (``write`` ops, value
``start``, one to three ``mid``, ``end``, 0.2-0.6 s apart; the completion records the
write's ``revision``), then releases (``release``: delete its key) and revokes the lease.
Every lock op carries the holder's ``lease``; acquires and writes its ``lock_revision``.
The runner's worker threads do nothing (the lockers are the load); there are no final reads.

Acquire waits are not bounded by the client timeout (a waiter waits while others hold); each
request inside is. When the run stops, a waiting acquire ends ``fail`` (``stopped``).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from kvcheck.reference.client import Failed
from kvcheck.reference.client import Indeterminate as ClientIndeterminate
from kvcheck.reference.kv import requests as kvr
from kvcheck.workloads import generator as gen
from kvcheck.workloads.client import CALL_ERRORS, call_outcome
from kvcheck.workloads.generator import Base, Context, Generator, OpSpec, Result, Wait
from kvcheck.workloads.watch import KVHandle

LOCK_PREFIX = "lock/"
LOCK_PREFIX_END = "lock0"  # etcd's range end of the prefix "lock/"
RESOURCE_KEY = "lock-resource"
TTL = 2
LOCKERS = 3


class _Idle(Base):
    """No ops: every thread waits for the phase's time limit."""

    def next(self, ctx: Context) -> Result:
        return Wait(None, shared=True)


class LockWorkload:
    """See the module docstring."""

    # members: the periodic HashKV checks of every member (workloads.hashcheck)
    checkers: tuple[str, ...] = ("lock", "members")

    def __init__(self, fenced: bool, lockers: int = LOCKERS, ttl: int = TTL) -> None:
        self.fenced = fenced
        self.name = "lock-fenced" if fenced else "lock"
        self.lockers = lockers
        self.ttl = ttl

    def check_options(self) -> dict[str, Any]:
        return {"extra": {"lock_fenced": self.fenced, "lock_ttl": self.ttl}}

    def client(self, target: Any, process: int) -> KVHandle:
        return KVHandle(target.kv_client(process))

    def generator(self) -> Generator:
        return _Idle()

    def final_generator(self, threads: int) -> Generator:
        return gen.once_each([])

    async def invoke(self, client: KVHandle, spec: OpSpec) -> tuple[Any, ...]:
        raise ValueError(f"workload {self.name} runs no worker ops (f={spec.f!r})")

    async def background(self, env: Any) -> None:
        async with trio.open_nursery() as nursery:
            for slot in range(self.lockers):
                nursery.start_soon(self._locker, env, slot)

    async def _locker(self, env: Any, slot: int) -> None:
        locker = _Locker(self, env, slot)
        try:
            await locker.run()
        finally:
            with trio.CancelScope(shield=True):
                await locker.client.aclose()


Answer = tuple[str, Any, dict[str, Any]]  # (ok|fail, value, extra fields of the completion)


class _Locker:
    """One locker's loop; ``call`` records one op (stalling while its client is paused)."""

    def __init__(self, w: LockWorkload, env: Any, slot: int) -> None:
        self.w = w
        self.env = env
        self.rng: random.Random = env.rng
        self.gate = env.clients.gate(f"locker{slot}")
        self.process = env.new_process()
        self.gate.process = self.process
        self.client = env.target.kv_client(self.process)
        # when the lease may have expired, as far as this client can tell (clientv3's
        # session deadline, from the send time of the last answered keepalive: a lower bound)
        self.session_deadline = 0.0

    def _retire(self) -> None:
        """An info op retires the process: the locker goes on as a new one."""
        self.process = self.env.new_process()
        self.gate.process = self.process
        self.client = self.env.target.kv_client(self.process)

    async def call(self, f: str, value: Any, fn: Callable[[], Awaitable[Answer]], *, key: Any = None,
                   extra: dict[str, Any] | None = None, timeout: bool = True) -> tuple[str, Any, dict[str, Any]]:
        rec = self.env.recorder
        await self.gate.wait()
        inv = rec.invoke(self.process, f, value, key=key, extra=extra)
        try:
            if timeout:
                with trio.fail_after(self.env.client_timeout):
                    typ, out, more = await fn()
            else:
                typ, out, more = await fn()
        except CALL_ERRORS as exc:
            typ, error = call_outcome(exc)
            await self.gate.wait()
            rec.complete(inv, typ, value, error=error, extra=extra)
            if typ == "fail":
                return "fail", None, {}
            old = self.client
            self._retire()
            with trio.CancelScope(shield=True):
                await old.aclose()
            return "info", None, {}
        await self.gate.wait()
        error = more.pop("error", None)
        rec.complete(inv, typ, out, error=error, extra={**(extra or {}), **more})
        return typ, out, more

    async def request(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        """One request inside a multi-request op: bounded by the client timeout, and its
        answer acted on only once the client is not paused."""
        with trio.fail_after(self.env.client_timeout):
            out = await fn()
        await self.gate.wait()
        return out

    async def sleep(self, seconds: float) -> bool:
        """Sleep; False when the run asked the background to stop."""
        with trio.move_on_after(seconds):
            await self.env.stop.wait()
        return not self.env.stop.is_set()

    async def run(self) -> None:
        while not self.env.stop.is_set():
            granted = trio.current_time()
            typ, _, more = await self.call("lease-grant", self.w.ttl, self._grant)
            if typ != "ok":
                await self.sleep(0.5)
                continue
            lease = more["lease"]
            ttl = int(more.get("ttl") or self.w.ttl)
            self.session_deadline = granted + ttl
            session_over = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._keepalives, lease, ttl, session_over)
                try:
                    await self._session(lease)
                finally:
                    session_over.set()
            await self.call("lease-revoke", lease, functools.partial(self._revoke, lease), extra={"lease": lease})
            await self.sleep(self.rng.uniform(0.0, 0.3))

    async def _session(self, lease: int) -> None:
        """Acquire, hold (writing the resource), release."""
        key = f"{LOCK_PREFIX}{lease:x}"
        typ, _, more = await self.call("acquire", key, functools.partial(self._acquire, key.encode(), lease),
                                       extra={"lease": lease}, timeout=False)
        if typ != "ok":
            return
        token = more["lock_revision"]
        self.gate.set_holding(True, lease=lease, lock_revision=token)
        expired = False
        try:
            marks = ["start"] + ["mid"] * self.rng.randint(1, 3) + ["end"]
            for i, mark in enumerate(marks):
                if i and not await self.sleep(self.rng.uniform(0.2, 0.6)) and mark != "end":
                    continue  # the run is ending: go straight to the end mark
                if trio.current_time() >= self.session_deadline:
                    expired = True  # as etcdctl lock: the session is over, stop acting
                    break
                write = functools.partial(self._write, key.encode(), token, f"{lease:x} {mark}")
                typ, _, more = await self.call("write", mark, write, key=RESOURCE_KEY,
                                               extra={"lease": lease, "lock_revision": token})
                if typ == "info":
                    break  # outcome unknown: stop acting as the holder
                if typ == "fail" and self.w.fenced:
                    break  # the fence refused: the lock is lost
        finally:
            self.gate.set_holding(False)
        extra = {"lease": lease, "lock_revision": token} | ({"session_expired": True} if expired else {})
        await self.call("release", key, functools.partial(self._release, key.encode()), extra=extra)

    # -- the requests --------------------------------------------------------------------

    async def _grant(self) -> Answer:
        g = await self.client.lease_grant(self.w.ttl)
        return "ok", g.ttl, {"lease": g.id, "ttl": g.ttl, "revision": g.header.revision}

    async def _revoke(self, lease: int) -> Answer:
        r = await self.client.lease_revoke(lease)
        return "ok", lease, {"revision": r.header.revision}

    async def _release(self, key: bytes) -> Answer:
        d = await self.client.delete(key)
        return "ok", key.decode(), {"revision": d.header.revision, "deleted": d.deleted}

    async def _write(self, lock_key: bytes, token: int, data: str) -> Answer:
        mark = data.split()[-1]
        if not self.w.fenced:
            p = await self.client.put(RESOURCE_KEY.encode(), data.encode())
            return "ok", mark, {"revision": p.header.revision}
        # the fence: the write lands only while our lock key exists with our create revision
        t = await self.client.txn(
            [kvr.Compare(result=kvr.CompareResult.EQUAL, target=kvr.CompareTarget.CREATE, key=lock_key,
                         create_revision=token)],
            [kvr.PutRequest(key=RESOURCE_KEY.encode(), value=data.encode())])
        if not t.succeeded:
            return "fail", mark, {"error": "compare-failed", "revision": t.header.revision}
        return "ok", mark, {"revision": t.header.revision, "fence": token}

    async def _acquire(self, key: bytes, lease: int) -> Answer:
        """etcd's lock recipe (see the module docstring)."""
        c = self.client
        t = await self.request(lambda: c.txn(
            [kvr.Compare(result=kvr.CompareResult.EQUAL, target=kvr.CompareTarget.CREATE, key=key,
                         create_revision=0)],
            [kvr.PutRequest(key=key, value=b"", lease=lease)],
            [kvr.RangeRequest(key=key)]))
        if t.succeeded:
            mine = t.header.revision
        else:
            kvs = t.responses[0].kvs if t.responses and isinstance(t.responses[0], kvr.RangeResponse) else []
            if not kvs:
                return "fail", key.decode(), {"error": "lock-key-vanished"}
            mine = kvs[0].create_revision
        waited: list[str] = []
        while True:
            if self.env.stop.is_set():
                return "fail", key.decode(), {"error": "stopped", "lock_revision": mine}
            try:
                r = await self.request(lambda: c.get(LOCK_PREFIX.encode(), range_end=LOCK_PREFIX_END.encode()))
            except (Failed, ClientIndeterminate, trio.TooSlowError):
                await self.sleep(0.2)  # a read changes nothing: ask again
                continue
            if not any(kv.key == key for kv in r.kvs):
                return "fail", key.decode(), {"error": "session-expired", "lock_revision": mine}
            before = [kv for kv in r.kvs if kv.create_revision < mine]
            if not before:
                return "ok", key.decode(), {"lock_revision": mine, "revision": r.header.revision,
                                            "waited_for": waited}
            pred = max(before, key=lambda kv: kv.create_revision)
            waited.append(pred.key.decode("utf-8", "replace"))
            await self._wait_delete(pred.key, r.header.revision + 1)

    async def _wait_delete(self, key: bytes, start_revision: int) -> None:
        """Until ``key`` is deleted at or after ``start_revision`` (at most about a second:
        the caller reads the prefix again)."""
        with trio.move_on_after(1.0):
            try:
                async with self.client.watch(key, start_revision=start_revision) as stream:
                    async for resp in stream:
                        await self.gate.wait()
                        if resp.canceled or any(ev.type is kvr.EventType.DELETE for ev in resp.events):
                            return
            except (Failed, ClientIndeterminate):
                await self.sleep(0.2)

    async def _keepalives(self, lease: int, ttl: int, over: trio.Event) -> None:
        """Keep the lease alive every TTL/3 until the session is over or the lease is gone
        (a keepalive answering TTL 0), as clientv3's session does; its own process."""
        rec = self.env.recorder
        process = self.env.new_process()
        client = self.env.target.kv_client(process)
        try:
            while True:
                with trio.move_on_after(ttl / 3):
                    await over.wait()
                await self.gate.wait()
                if over.is_set():
                    return
                sent = trio.current_time()
                inv = rec.invoke(process, "lease-keepalive", lease)
                try:
                    with trio.fail_after(min(self.env.client_timeout, ttl / 2)):
                        left = await client.lease_keepalive(lease)
                except CALL_ERRORS as exc:
                    typ, error = call_outcome(exc)
                    await self.gate.wait()
                    rec.complete(inv, typ, lease, error=error)
                    if typ == "fail":
                        continue
                    with trio.CancelScope(shield=True):
                        await client.aclose()
                    process = self.env.new_process()
                    client = self.env.target.kv_client(process)
                    continue
                await self.gate.wait()
                rec.complete(inv, "ok", left)
                if left <= 0:
                    self.session_deadline = sent  # the lease is gone
                    return
                # the server restarted the TTL no earlier than this keepalive was sent
                self.session_deadline = max(self.session_deadline, sent + left)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()


def make_lock(keys: int) -> LockWorkload:
    return LockWorkload(fenced=False)


def make_lock_fenced(keys: int) -> LockWorkload:
    return LockWorkload(fenced=True)
