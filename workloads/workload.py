"""The register and kv workloads: what ops to generate, how to run each on a client, and the
model that checks the history.

register: one key; linearizable reads, writes of unique values, and cas (a transaction that
compares the value and writes only if it matches); checked with the ``cas-register`` model.
kv: ``keys`` keys, each used as a register the same way; ops carry ``key`` and the history is
checked key by key (the checker splits a history by its ``key`` field) with ``cas-register``.

Writes use unique values (a counter per run), which keeps the checker on its fast paths; a
cas compares against a value written recently (so some succeed) and writes a fresh one.
Read completions carry the value read (None: the key is absent).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from kvcheck.exitcodes import UsageError
from kvcheck.workloads import generator as gen
from kvcheck.workloads.client import RegisterClient
from kvcheck.workloads.generator import Context, Generator, OpSpec

REGISTER_KEY = "register"


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


WORKLOADS = ("register", "kv")


def make_workload(name: str, *, keys: int = 8) -> Workload:
    if name == "register":
        return Workload("register", "cas-register", [REGISTER_KEY], keyed=False)
    if name == "kv":
        if keys < 1:
            raise UsageError(f"--keys must be at least 1, not {keys}")
        return Workload("kv", "cas-register", [f"k{i}" for i in range(keys)], keyed=True)
    raise UsageError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
