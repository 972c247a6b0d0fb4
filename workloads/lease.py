"""The lease workload: keys attached to leases that are kept alive, left to expire or revoked,
while watch streams and linearizable reads look on.

Why: a lease is a promise about time — its keys live at least TTL after the last keepalive
and are gone not long after — and about the log: an expiry deletes the keys at one revision
that every member agrees on. A store can break either (expiring on a member's own timer,
outside the log, is the ``lease_expiry_local`` bug) while plain reads and writes stay
linearizable. The lease checker (kvcheck.checker.lease) and the watch checker judge it.

How: a few lessors (background tasks, one process each) loop: grant a lease with a TTL of
2 or 3 s (``lease-grant``, ok value = TTL, ``lease`` = its id, ``revision``), put the
lessor's own keys ``l/s<slot><a|b>`` attached to it (``put`` with a ``lease`` field), then
either keep it alive for a while and revoke it (``lease-revoke``; in half the revokes an
admin's client, another process, revokes it: ``etcdctl lease revoke`` while the holder runs),
or stop the keepalives
and let it expire (then one more keepalive after the lease must have expired must answer
TTL 0), or keep it alive for a while and then let it go (``MODES``, drawn at random; in
every run some lessor keeps its first lease alive: ``LeaseWorkload.first_mode``). Keepalives (``lease-keepalive``,
value = lease id, ok value = the TTL answered, 0: not found) run every TTL/3, some followed
by a LeaseTimeToLive with keys (``lease-timetolive``: ok value = the remaining TTL, -1 once the
lease is gone; ``granted_ttl``, ``keys``), as is half the revokes. A revoke does not stop the
holder's keepalive loop (etcd's clientv3 ``KeepAlive`` runs until an answer says TTL <= 0): after
the revoke completed it sends keepalives on the loop's own phase (0 to TTL/3 s later, then every
TTL/3) until one answers TTL 0, at most ``AFTER_REVOKE_KEEPALIVES`` times, so a leader that
renews a lease whose revoke committed (a new leader answering before it applied what its
predecessor committed, a deposed leader that still believes it leads) shows as a keepalive answered TTL > 0 after the revoke completed
(``lease:keepalive-after-revoke``). In half the kept-alive leases a co-holder (another process,
a second replica of the owner) runs its own keepalive loop for the lease on its own phase, until
the lessor lets the lease go or an answer says TTL 0 (after a revoke too): keepalives of one lease
from clients whose requests reach different members (a deposed leader among them). Those draws
come from a substream of their own. Half the holders (lessors and co-holders, drawn from a
substream of their own: ``STICKY_SHARE``) keep their keepalives on one stream, as etcd's
clientv3 ``LeaseKeepAlive`` does: on the member that answered them last (the leader they
reached), until that member fails one; the others send each keepalive to their own member
first. A partition that cuts the leader off keeps the sticky holders on it until it stops
answering (it steps down, or its leadership check fails), so a deposed leader that still
renews shows as an answer in an older term than one already seen (``lease:deposed-leader``)
or as the real leader expiring a lease early (``lease:early-expiry``). After a revoke that completed, and after the last keepalive of an expired lease answered TTL 0, a lessor now and
then puts one of its keys with the dead lease (``put`` with a ``lease`` field; drawn from a
substream of its own, ``DEAD_PUT_SHARE``): the store must refuse it when it applies the put
(etcd: "requested lease not found", a ``fail``), and a store that answers an apply-time error
as a success, or attaches a key to a lease that is gone, shows in the history. The workers
read keys and put keys no lease holds (``l/w<i>``: revisions around every expiry);
watchers (as in the watch workload) watch the prefix ``l/``; after recovery the
final phase waits until every lease left behind must have expired (TTL + the bound) and
reads every key and the whole prefix. Each lessor owns its keys, so a revoke always deletes
some and no write detaches a key from its lease.

The bound: an expiry is acted on by the leader's lessor loop (every ``lease_check_interval``),
proposed through the log, retried after ``lease_revoke_retry`` if lost, and committed by a
leader that may be stalled (a slow Ready pass, a slow disk) for up to twice the election
timeout without losing its leadership. A new leader restarts every lease's clock (etcd's
``Promote``: TTL + an election timeout there), so elections postpone expiry without limit;
the lease checker counts TTL from the last new leader the history shows (reads and
keepalives record the answering member's ``term``), not from a fixed number of elections.
``configure`` takes the parts from the run's own settings (a swarm draws its election
timeout): 2 x election timeout + check interval + revoke retry (+ etcd's promote extension).
"""

from __future__ import annotations

import functools
import random
from typing import Any

import trio

from kvcheck.reference.kv.machine import KVStateMachine
from kvcheck.reference.node import NodeConfig
from kvcheck.workloads import generator as gen
from kvcheck.workloads.client import CALL_ERRORS, call_outcome, decode_value, encode_value
from kvcheck.workloads.determinism import substream
from kvcheck.workloads.generator import Context, Generator, OpSpec, Result, Wait
from kvcheck.workloads.watch import KVHandle, WatchWorkload, kv_json

TTLS = (2, 3)
MODES = ("revoke", "expire", "keep-then-expire")  # what a lessor does with a lease (module text)
DEAD_PUT_SHARE = 0.5  # of revoked / expired leases a lessor then puts a key with (module text)
# The share of revokes an admin's client sends instead of the lease's holder, and how many
# keepalives the holder's loop sends at most after a revoke completed (until one answers TTL 0).
ADMIN_REVOKE_SHARE = 0.5
AFTER_REVOKE_KEEPALIVES = 3
# The share of kept-alive leases a co-holder (another process: a second replica of the lease's
# owner) also keeps alive, on its own phase, until it lets the lease go or an answer says TTL 0.
CO_HOLDER_SHARE = 0.5
# The share of holders (a lessor, a co-holder) whose keepalives run on one stream, as etcd's
# clientv3 LeaseKeepAlive does: on the member that answered them last, until it fails one
# (``SimClient.sticky_keepalives``), instead of going to the holder's own member first.
STICKY_SHARE = 0.5


def lease_bound(node: NodeConfig | None = None, etcd: dict[str, Any] | None = None) -> dict[str, float]:
    """The expiry bound's parts (seconds past TTL after the last renewal or new leader) from
    the store's settings: the reference store's ``node`` settings (default: NodeConfig's), or
    for a real etcd its ``etcd`` section (``election_ms``): etcd's lessor checks every 500 ms,
    retries an unapplied expiry after 3 s and promotes leases to TTL + an election timeout."""
    if etcd is not None:
        election_timeout = float(etcd["election_ms"]) / 1000
        parts = {"leader_stall": 2 * election_timeout, "lease_check_interval": 0.5, "lease_revoke_retry": 3.0,
                 "promote_extension": election_timeout}
    else:
        node = node or NodeConfig(id=1, name="n1")
        election_timeout = node.election_tick * node.tick_interval
        parts = {"leader_stall": 2 * election_timeout, "lease_check_interval": node.lease_check_interval,
                 "lease_revoke_retry": KVStateMachine().lease_revoke_retry}
    parts = {k: round(v, 3) for k, v in parts.items()}
    parts["bound"] = round(sum(parts.values()), 3)
    return parts


class _Delayed:
    """``inner`` once ``delay`` seconds of the phase have passed."""

    def __init__(self, delay: float, inner: Generator) -> None:
        self.delay = delay
        self.inner = inner

    def next(self, ctx: Context) -> Result:
        if ctx.time < self.delay:
            return Wait(self.delay)
        return self.inner.next(ctx)

    def complete(self, ctx: Context, spec: OpSpec, outcome: str) -> None:
        self.inner.complete(ctx, spec, outcome)


class LeaseWorkload(WatchWorkload):
    name = "lease"
    checkers: tuple[str, ...] = ("watch", "lease", "members")
    prefix = "l/"
    prefix_end = "l0"

    def __init__(self, lessors: int = 3, watchers: int = 2) -> None:
        super().__init__(keys=1, watchers=watchers)
        self.lessors = lessors
        self.plain_keys = [f"{self.prefix}w{i}" for i in range(3)]
        self.keys = [f"{self.prefix}s{i}{c}" for i in range(lessors) for c in "ab"] + self.plain_keys
        self.bound = lease_bound()
        self.first_modes: list[str] = []  # the modes of the lessors' first leases, in turn
        self.keepalive_term = "leader"  # (configure)

    def first_mode(self, drawn: str) -> str:
        """The mode of a lessor's first lease: the one drawn, except that the last lessor to
        choose keeps its lease alive if every other one lets its first lease expire. Drawn
        freely, all three did so 1 run in 27 (simulation seed 72 with a 6 s limit), and a
        short run (6 s against etcd: one lease per lessor) then had no keepalive answered
        with a TTL. Every other run keeps the modes it drew."""
        self.first_modes.append(drawn)
        if len(self.first_modes) == self.lessors and set(self.first_modes) == {"expire"}:
            self.first_modes[-1] = "keep-then-expire"
        return self.first_modes[-1]

    def configure(self, config: Any) -> None:
        """Take the seed (``WatchWorkload``) and the bound from the run's settings (``RunConfig``: its node section, or its
        etcd section on the etcd target)."""
        super().configure(config)
        # whose raft term a keepalive's answer header carries: the leader's here (a follower
        # redirects), the member's that took the stream on a real etcd (it forwards the renewal)
        self.keepalive_term = "member" if getattr(config, "target", "sim") == "etcd" else "leader"
        if getattr(config, "target", "sim") == "etcd":
            self.bound = lease_bound(etcd=config.etcd)
        else:
            self.bound = lease_bound(config.node_config(1, "n1"))

    def check_options(self) -> dict[str, Any]:
        return {"extra": {"lease_bound": self.bound["bound"], "lease_bound_parts": self.bound,
                          "keepalive_term": self.keepalive_term}}

    def generator(self) -> Generator:
        # reads of every key, and puts of keys no lease holds (revisions around the expiries)
        return gen.mix([gen.fn(self._read), gen.fn(self._plain_put)], [0.5, 0.5])

    async def _invoke(self, handle: KVHandle, spec: OpSpec) -> tuple[Any, ...]:
        """As the watch workload's, and reads also record the answering member's raft ``term``
        (the lease checker bounds the elections before a read by it)."""
        if spec.f not in ("read", "range"):
            return await super()._invoke(handle, spec)
        if spec.f == "read":
            r = await handle.kv.get(spec.key.encode())
            kv = r.kvs[0] if r.kvs else None
            handle.served(r.header)
            extra: dict[str, Any] = {"revision": self._saw(r.header), "term": r.header.raft_term}
            if kv is not None:
                extra["kv"] = kv_json(kv)
            return "ok", decode_value(kv.value) if kv is not None else None, extra
        r = await handle.kv.get(self.prefix.encode(), range_end=self.prefix_end.encode())
        handle.served(r.header)
        kvs = [kv_json(kv) for kv in r.kvs]
        return "ok", {kv["key"]: kv["value"] for kv in kvs}, {"revision": self._saw(r.header), "kvs": kvs,
                                                               "term": r.header.raft_term}

    def _plain_put(self, ctx: Context) -> OpSpec:
        key = ctx.rng.choice(self.plain_keys)
        return OpSpec("put", self._fresh(key), key)

    def final_generator(self, threads: int) -> Generator:
        specs = [OpSpec("read", None, k) for k in self.keys] + [OpSpec("range", None, None)]
        return _Delayed(max(TTLS) + self.bound["bound"] + 0.5, gen.once_each(specs))

    async def background(self, env: Any) -> None:
        async with trio.open_nursery() as nursery:
            for slot in range(self.watchers):
                nursery.start_soon(self._watcher, env, slot)
            for slot in range(self.lessors):
                nursery.start_soon(self._lessor, env, slot)
            nursery.start_soon(self._compactor, env)

    async def _lessor(self, env: Any, slot: int) -> None:
        lessor = _Lessor(self, env, slot)
        try:
            await lessor.run()
        finally:
            with trio.CancelScope(shield=True):
                await lessor.aclose()


class _CoHolder:
    """A co-holder's loop for one lease (``_Lessor.co_hold``): ``stop`` (the lessor lets the
    lease go), ``revoked`` (its revoke was sent) and ``done`` (the loop ended, or never ran)."""

    def __init__(self, lease: int, ttl: int) -> None:
        self.lease, self.ttl = lease, ttl
        self.stop, self.revoked, self.done = trio.Event(), trio.Event(), trio.Event()


class _Lessor:
    """One lessor's loop (see the module docstring); ``call`` records one op."""

    def __init__(self, workload: LeaseWorkload, env: Any, slot: int) -> None:
        self.w = workload
        self.env = env
        self.rng: random.Random = env.rng
        self.keys = [k for k in workload.keys if k.startswith(f"{workload.prefix}s{slot}")]
        # which of the lessor's holders keep their keepalives on one stream (a substream of
        # its own: the lessor's other draws stay as they were)
        sticky_rng = substream(workload.seed, "lease-sticky", slot)
        self.sticky = {who: sticky_rng.random() < STICKY_SHARE for who in ("holder", "co-holder")}
        self.process = env.new_process()
        self.client = self.open_client("holder", self.process)
        # its own substream, so every other draw of the lessor stays what it was
        self.dead_rng = substream(workload.seed, "lease-dead-put", slot)
        # the clients of the admin and of the co-holder (each its own process, opened at its
        # first op), and the draws of who revokes, of co-holders and of the keepalives after a
        # revoke (a substream of their own: the lessor's other draws stay as they were)
        self.others: dict[str, tuple[int, Any]] = {}
        self.after_rng = substream(workload.seed, "lease-after-revoke", slot)
        self.co: _CoHolder | None = None  # the current lease's co-holder loop

    def open_client(self, who: str, process: int, retired: Any = None) -> Any:
        """The client of ``who`` for ``process``: a sticky holder's keeps its keepalives on one
        stream where the target's client offers it (the simulation's), and goes on with the
        stream of the client it replaces (``retired``: a new process after an op without an
        answer is the harness's bookkeeping; etcd's clientv3 keeps the stream)."""
        client = self.env.target.kv_client(process)
        if self.sticky.get(who) and hasattr(client, "sticky_keepalives"):
            client.sticky_keepalives = True
            if retired is not None and hasattr(client, "adopt_stream"):
                client.adopt_stream(retired)
        return client

    async def aclose(self) -> None:
        await self.client.aclose()
        for _, client in self.others.values():
            await client.aclose()

    async def call(self, f: str, value: Any, fn: Any, *, key: Any = None,
                   extra: dict[str, Any] | None = None, who: str = "holder") -> tuple[str, Any]:
        """Record one op: ``fn(client)`` on the client of ``who``: the lessor (``holder``),
        the ``admin`` or the ``co-holder``."""
        rec = self.env.recorder
        if who != "holder" and who not in self.others:
            fresh = self.env.new_process()
            self.others[who] = (fresh, self.open_client(who, fresh))
        process, client = self.others[who] if who != "holder" else (self.process, self.client)
        inv = rec.invoke(process, f, value, key=key, extra=extra)
        try:
            with trio.fail_after(self.env.client_timeout):
                typ, out, more = await fn(client)
        except CALL_ERRORS as exc:
            typ, error = call_outcome(exc)
            rec.complete(inv, typ, value, error=error, extra=extra)
            if typ == "fail":
                return "fail", None
            await client.aclose()  # an info op retires the process
            fresh = self.env.new_process()
            if who != "holder":
                self.others[who] = (fresh, self.open_client(who, fresh, client))
            else:
                self.process, self.client = fresh, self.open_client(who, fresh, client)
            return "info", None
        rec.complete(inv, typ, out, extra={**(extra or {}), **more})
        return typ, out

    async def sleep(self, seconds: float) -> bool:
        """Sleep; False when the run asked the background to stop."""
        with trio.move_on_after(seconds):
            await self.env.stop.wait()
        return not self.env.stop.is_set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            try:
                await self._run(nursery)
            finally:
                if self.co is not None:
                    self.co.stop.set()  # the run is ending: so is the co-holder's loop

    async def _run(self, nursery: trio.Nursery) -> None:
        w, rng = self.w, self.rng
        first = True
        while not self.env.stop.is_set():
            ttl = rng.choice(TTLS)
            typ, _ = await self.call("lease-grant", ttl, functools.partial(self._grant, ttl))
            if typ != "ok":
                await self.sleep(0.5)
                continue
            lease = self.env.recorder.ops[-1].extra["lease"]
            for key in self.keys:
                value = w._fresh(key)
                await self.call("put", value, functools.partial(self._put, key, value, lease), key=key,
                                extra={"lease": lease})
            mode = rng.choice(MODES)
            if first:
                first = False
                mode = w.first_mode(mode)
            co = self.co = _CoHolder(lease, ttl)
            if mode in ("revoke", "keep-then-expire") and self.after_rng.random() < CO_HOLDER_SHARE:
                nursery.start_soon(self.co_hold, co)
            else:
                co.done.set()
                until = trio.current_time() + rng.uniform(ttl, 3 * ttl)
                while trio.current_time() < until:
                    if not await self.sleep(ttl / 3):
                        return
                    await self.keepalive(lease)
                    if rng.random() < 0.3:
                        await self.time_to_live(lease)
            if mode == "revoke":
                who = "admin" if self.after_rng.random() < ADMIN_REVOKE_SHARE else "holder"
                typ, _ = await self.call("lease-revoke", lease, functools.partial(self._revoke, lease), who=who)
                co.revoked.set()
                if typ == "ok" and rng.random() < 0.5:
                    await self.time_to_live(lease)  # gone: TTL -1
                if typ == "ok":
                    await self.dead_put(lease)
                if not await self.keepalive_until_gone(lease, ttl):
                    return
                await co.done.wait()
            else:  # let it expire, then ask once more: TTL 0
                co.stop.set()  # the co-holder lets it go too (after its keepalive in flight)
                await co.done.wait()
                edge = self.rng.random()
                if edge < 0.5:
                    # a keepalive at the expiry's edge: the leader's clock for the lease started
                    # when the last renewal reached it, so this one may come just before (renewed:
                    # TTL again) or just after the expiry, before its revoke committed (TTL 0: the
                    # lease must stay dead). The edge is timed from a keepalive's answer, not
                    # the grant's: the leader renews before it answers, but a grant may be
                    # answered by a member that applied it before the leader did (etcd).
                    if mode == "expire":
                        await self.keepalive(lease)
                    if not await self.sleep(ttl + 0.6 * edge):
                        return
                    await self.keepalive(lease)
                if not await self.sleep(ttl + w.bound["bound"] + rng.uniform(0.1, 1.0)):
                    return
                if await self.keepalive(lease) == ("ok", 0):
                    await self.dead_put(lease)

    async def co_hold(self, co: _CoHolder) -> None:
        """A second holder's keepalive loop for the lessor's lease (another process keeping the
        same lease alive, on its own phase, every TTL/3): until an answer says TTL <= 0, until
        the lessor lets the lease go (``co.stop``), or, after the revoke (``co.revoked``), at most
        ``AFTER_REVOKE_KEEPALIVES`` more."""
        try:
            wait, after = self.after_rng.uniform(0.0, co.ttl / 3), 0
            while after < AFTER_REVOKE_KEEPALIVES:
                with trio.move_on_after(wait):
                    await co.stop.wait()
                if co.stop.is_set() or self.env.stop.is_set():
                    return
                after += co.revoked.is_set()
                typ, answer = await self.call("lease-keepalive", co.lease, functools.partial(self._keepalive, co.lease),
                                              who="co-holder")
                if typ == "ok" and isinstance(answer, int) and answer <= 0:
                    return
                wait = co.ttl / 3
        finally:
            co.done.set()

    async def keepalive_until_gone(self, lease: int, ttl: int) -> bool:
        """The holder's keepalive loop after a revoke (its own or the admin's): keepalives on
        the loop's phase, 0 to TTL/3 s after the revoke, then every TTL/3, until one answers
        TTL 0 (at most ``AFTER_REVOKE_KEEPALIVES``). False when the run asked to stop."""
        wait = self.after_rng.uniform(0.0, ttl / 3)
        for _ in range(AFTER_REVOKE_KEEPALIVES):
            if not await self.sleep(wait):
                return False
            typ, answer = await self.call("lease-keepalive", lease, functools.partial(self._keepalive, lease))
            if typ == "ok" and isinstance(answer, int) and answer <= 0:
                break
            wait = ttl / 3
        return True

    async def _grant(self, ttl: int, client: Any) -> tuple[str, Any, dict[str, Any]]:
        g = await client.lease_grant(ttl)
        return "ok", g.ttl, {"lease": g.id, "revision": self.w._saw(g.header), "term": g.header.raft_term}

    async def _put(self, key: str, value: int, lease: int, client: Any) -> tuple[str, Any, dict[str, Any]]:
        p = await client.put(key.encode(), encode_value(value), lease=lease)
        return "ok", value, {"revision": self.w._saw(p.header)}

    async def _revoke(self, lease: int, client: Any) -> tuple[str, Any, dict[str, Any]]:
        r = await client.lease_revoke(lease)
        return "ok", lease, {"revision": self.w._saw(r.header)}

    async def _keepalive(self, lease: int, client: Any) -> tuple[str, Any, dict[str, Any]]:
        k = await client.lease_keepalive_response(lease)
        # the answering leader's term: within one term one lessor clock ran (lease checker)
        return "ok", k.ttl, {"term": k.header.raft_term}

    async def keepalive(self, lease: int) -> tuple[str, Any]:
        return await self.call("lease-keepalive", lease, functools.partial(self._keepalive, lease))

    async def dead_put(self, lease: int) -> None:
        """Now and then (``DEAD_PUT_SHARE``), put one of the lessor's keys with ``lease``, which
        is gone (revoked, or expired: a keepalive answered TTL 0): etcd refuses it when it
        applies it ("requested lease not found"); the lease checker judges an ok answer."""
        if self.dead_rng.random() >= DEAD_PUT_SHARE:
            return
        key = self.dead_rng.choice(self.keys)
        value = self.w._fresh(key)
        await self.call("put", value, functools.partial(self._put, key, value, lease), key=key,
                        extra={"lease": lease})

    async def _time_to_live(self, lease: int, client: Any) -> tuple[str, Any, dict[str, Any]]:
        r = await client.lease_time_to_live(lease, keys=True)
        return "ok", r.ttl, {"granted_ttl": r.granted_ttl, "keys": [k.decode("utf-8", "replace") for k in r.keys],
                             "term": r.header.raft_term}

    async def time_to_live(self, lease: int) -> None:
        """LeaseTimeToLive with keys (``lease-timetolive``: the remaining TTL, -1 once the lease
        is gone, the granted TTL and the attached keys; the lease checker judges them), where the
        target's client offers it."""
        if callable(getattr(self.client, "lease_time_to_live", None)):
            await self.call("lease-timetolive", lease, functools.partial(self._time_to_live, lease))


def make_lease(keys: int) -> LeaseWorkload:
    return LeaseWorkload()
