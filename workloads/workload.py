"""The register and kv workloads: what ops to generate, how to run each on a client, and the
model that checks the history.

register: one key; linearizable reads, writes of unique values, and cas (a transaction that
compares the value and writes only if it matches); checked with the ``cas-register`` model.
kv: ``keys`` keys, each used as a register the same way; ops carry ``key`` and the history is
checked key by key (the checker splits a history by its ``key`` field) with ``cas-register``.

Every workload has the same outer shape (``WorkloadLike``): a name, the checkers that judge
its history (``checkers``, names from ``kvcheck.checker.api.CHECKERS``, with
``check_options`` for them), a main-phase generator, a final generator run after every fault
is healed, the client each process uses (``client(target, process)``: the register client
here, the store's whole ``KVClient`` for workloads that need transactions, leases or
watches) and ``invoke`` to run one op on it. ``WORKLOADS`` maps each name to its factory;
a new workload is a module plus one line there.

Writes use unique values (a counter per run), which keeps the checker on its fast paths; a
cas compares against a value written recently (so some succeed) and writes a fresh one.
Read completions carry the value read (None: the key is absent).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kvcheck.exitcodes import UsageError
from kvcheck.workloads import generator as gen
from kvcheck.workloads.client import RegisterClient
from kvcheck.workloads.generator import Context, Generator, OpSpec
from kvcheck.workloads.kubernetes import make_kubernetes
from kvcheck.workloads.lease import make_lease
from kvcheck.workloads.lock import make_lock, make_lock_fenced
from kvcheck.workloads.watch import make_watch

REGISTER_KEY = "register"


class WorkloadLike(Protocol):
    """What the runner and ``kvcheck run`` need of a workload. A workload may also have an
    ``async background(env)`` (watch streams, lease keepalives, compactions beside the
    worker threads; see ``workloads.runner.Background``)."""

    name: str
    checkers: tuple[str, ...]

    def check_options(self) -> dict[str, Any]:
        """Settings for ``CheckOptions`` (model, extra ...) that this workload's history needs."""
        ...

    def generator(self) -> Generator: ...

    def final_generator(self, threads: int) -> Generator: ...

    def client(self, target: Any, process: int) -> Any:
        """A client for ``process`` on ``target`` (closed with ``await client.close()``)."""
        ...

    async def invoke(self, client: Any, spec: OpSpec) -> tuple[Any, ...]:
        """("ok"|"fail", value) or ("ok"|"fail", value, extra fields for the completion line)."""
        ...


@dataclass
class Workload:
    """One workload's generator state and execution."""

    name: str
    model: str
    keys: list[str]
    keyed: bool
    read_weight: float = 0.4
    write_weight: float = 0.3
    cas_weight: float = 0.3
    # members: the final per-member reads agree (workloads.memberreads, checker.members)
    checkers: tuple[str, ...] = ("linearizable", "members")
    _next_value: int = 0
    _written: dict[str, list[int]] = field(default_factory=dict)

    def fresh_value(self) -> int:
        self._next_value += 1
        return self._next_value

    def _key(self, rng: random.Random) -> str:
        return self.keys[0] if len(self.keys) == 1 else rng.choice(self.keys)

    def _hist_key(self, key: str) -> str | None:
        return key if self.keyed else None

    def read(self, ctx: Context) -> OpSpec:
        key = self._key(ctx.rng)
        return OpSpec("read", None, self._hist_key(key))

    def write(self, ctx: Context) -> OpSpec:
        key = self._key(ctx.rng)
        v = self.fresh_value()
        self._written.setdefault(key, []).append(v)
        return OpSpec("write", v, self._hist_key(key))

    def cas(self, ctx: Context) -> OpSpec:
        key = self._key(ctx.rng)
        recent = self._written.get(key, [])[-3:]
        old = ctx.rng.choice(recent) if recent else 0
        new = self.fresh_value()
        self._written.setdefault(key, []).append(new)
        return OpSpec("cas", [old, new], self._hist_key(key))

    def check_options(self) -> dict[str, Any]:
        # A cas whose compare failed is recorded fail/"compare-failed": it read another value.
        return {"model": self.model, "extra": {"compare_failed": True}}

    def client(self, target: Any, process: int) -> RegisterClient:
        return target.client(process)

    def member_read_specs(self) -> list[OpSpec]:
        """The final per-member reads (workloads.memberreads): every key once."""
        return [OpSpec("read", None, self._hist_key(k)) for k in self.keys]

    def generator(self) -> Generator:
        """The main phase's ops (endless: wrap in a time limit)."""
        return gen.mix([gen.fn(self.read), gen.fn(self.write), gen.fn(self.cas)],
                       [self.read_weight, self.write_weight, self.cas_weight])

    def final_generator(self, threads: int) -> Generator:
        """The final reads: every key read once, and for one key, once per thread."""
        if len(self.keys) == 1:
            specs = [OpSpec("read", None, self._hist_key(self.keys[0])) for _ in range(threads)]
        else:
            specs = [OpSpec("read", None, self._hist_key(k)) for k in self.keys]
        return gen.once_each(specs)

    async def invoke(self, client: RegisterClient, spec: OpSpec) -> tuple[str, Any]:
        """Run one op: ("ok", value) or ("fail", value). Client errors propagate."""
        key = spec.key if spec.key is not None else self.keys[0]
        if spec.f == "read":
            return "ok", await client.read(key)
        if spec.f == "write":
            await client.write(key, spec.value)
            return "ok", spec.value
        if spec.f == "cas":
            old, new = spec.value
            ok = await client.cas(key, old, new)
            return ("ok" if ok else "fail"), spec.value
        raise ValueError(f"workload {self.name} cannot run f={spec.f!r}")


def _register(keys: int) -> Workload:
    return Workload("register", "cas-register", [REGISTER_KEY], keyed=False)


def _kv(keys: int) -> Workload:
    if keys < 1:
        raise UsageError(f"--keys must be at least 1, not {keys}")
    return Workload("kv", "cas-register", [f"k{i}" for i in range(keys)], keyed=True)


def _txn(kind: str, keys: int, serializable_reads: bool = False) -> Any:
    from kvcheck.workloads.txn import TxnWorkload

    if keys < 1:
        raise UsageError(f"--keys must be at least 1, not {keys}")
    return TxnWorkload(kind, keys=keys, serializable_reads=serializable_reads)


# name -> factory(keys). A new workload module adds one line here.
WORKLOAD_FACTORIES: dict[str, Callable[[int], Any]] = {
    "register": _register,
    "kv": _kv,
    "watch": make_watch,
    "lease": make_lease,
    "kubernetes": make_kubernetes,
    "append": lambda keys: _txn("append", keys),
    "wr": lambda keys: _txn("wr", keys),
    "append-serializable-reads": lambda keys: _txn("append", keys, serializable_reads=True),
    "lock": make_lock,
    "lock-fenced": make_lock_fenced,
}
WORKLOADS: tuple[str, ...] = tuple(WORKLOAD_FACTORIES)
# Workloads whose client recipe is unsafe by design under timing faults, so an invalid
# verdict there is the recipe's, not the store's: ``lock`` (etcd's lock without fencing)
# breaks mutual exclusion when a holder's lease expires early in real time — a client pause,
# a clock fault on the leader (clean sim, clock,packet,disk seed 5: a strobe on the leader
# expired a holder's lease while it still wrote) or a delayed write. The regress clean
# matrix leaves them out; ``lock-fenced`` runs the same recipe with fencing and stays in.
RECIPE_UNSAFE_WORKLOADS: tuple[str, ...] = ("lock",)


def make_workload(name: str, *, keys: int = 8, config: Any = None) -> WorkloadLike:
    """The workload ``name``; with the run's ``config`` (RunConfig), a workload that derives
    something from the run's settings (``configure``: the lease workload's expiry bound from
    the election timeout) takes it from there."""
    try:
        factory = WORKLOAD_FACTORIES[name]
    except KeyError:
        raise UsageError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}") from None
    workload = factory(keys)
    configure = getattr(workload, "configure", None)
    if config is not None and callable(configure):
        configure(config)
    return workload
