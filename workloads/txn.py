"""The append and wr workloads: multi-key transactions checked by the transactional
checker (kvcheck.checker.txn), as Jepsen tests etcd with Elle.

append: each transaction is 1..``max_ops`` micro-ops over a small active key set:
``["r", k, None]`` reads key k's whole list, ``["append", k, v]`` appends v (unique per key).
wr: ``["r", k, None]`` reads a register, ``["w", k, v]`` writes a unique value. A key that
has taken ``key_bound`` appends (writes) is retired for a fresh one, so lists stay short.

How a transaction runs on the store, as an etcd user would write it: one linearizable
range read of the keys it touches (their values and mod_revisions), the micro-ops worked out
locally (a read after the txn's own append sees it), then one store txn whose compares
guard every touched key's mod_revision and whose success branch puts the new values. A
guard failure wrote nothing: the transaction is retried from the read as a new store
transaction (at most ``guard_retries`` times, then ``fail``). A write phase with an unknown
outcome raises Indeterminate (the runner records ``info`` and never retries it under the
same identity). A read-only transaction is the range read alone (linearizable; with
``serializable_reads`` a serializable read of one member's state, which strict
serializability does not promise, so the checker then asks for ``serializable``).

History values are the micro-op lists; a completion carries the values read. Keys are ints
in the history and ``txn/<k>`` (zero-padded) in the store; a list is stored as its
elements separated by spaces.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from kvcheck.reference import client as refclient
from kvcheck.reference.kv import requests as kvr
from kvcheck.workloads import generator as gen
from kvcheck.workloads.client import DefiniteFailure, Indeterminate
from kvcheck.workloads.generator import Context, Generator, OpSpec

PREFIX = b"txn/"


def store_key(k: int) -> bytes:
    return PREFIX + f"{k:08d}".encode()


def decode_list(raw: bytes) -> list[Any]:
    """A stored list; an element that is not an int comes back as text (the checker then
    reports a value no transaction appended)."""
    out: list[Any] = []
    for tok in raw.decode("utf-8", errors="replace").split():
        try:
            out.append(int(tok))
        except ValueError:
            out.append(tok)
    return out


def decode_register(raw: bytes) -> Any:
    text = raw.decode("utf-8", errors="replace")
    try:
        return int(text)
    except ValueError:
        return text


@dataclass
class TxnWorkload:
    """append (list-append) or wr (read-write registers) transactions; ``name`` is the
    workload's registered name (the kind, or e.g. "append-serializable-reads")."""

    kind: str
    keys: int = 8
    max_ops: int = 5
    key_bound: int = 32
    read_fraction: float = 0.5
    serializable_reads: bool = False
    guard_retries: int = 8
    # How long one member may hold a write before the client retries it elsewhere under the
    # same request id (the simulation's client; etcd's client retries the same way). The
    # store's session table must answer such a retry without applying it twice.
    attempt_timeout: float | None = 0.25
    # members: the periodic HashKV checks of every member (workloads.hashcheck)
    checkers: tuple[str, ...] = ("txn", "members")
    name: str = ""
    _active: list[int] = field(default_factory=list)
    _next_key: int = 0
    _writes: dict[int, int] = field(default_factory=dict)
    _used: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.kind not in ("append", "wr"):
            raise ValueError(f"unknown txn workload kind {self.kind!r}")
        self.name = self.name or self.kind + ("-serializable-reads" if self.serializable_reads else "")
        self._active = list(range(self.keys))
        self._next_key = self.keys

    @property
    def write_f(self) -> str:
        return "append" if self.kind == "append" else "w"

    def check_options(self) -> dict[str, Any]:
        model = "serializable" if self.serializable_reads else "strict-serializable"
        return {"consistency_model": model, "extra": {"txn_kind": self.kind}}

    # -- generation

    def txn(self, ctx: Context) -> OpSpec:
        rng: random.Random = ctx.rng
        mops: list[list[Any]] = []
        for _ in range(rng.randint(1, self.max_ops)):
            slot = rng.randrange(len(self._active))
            k = self._active[slot]
            self._used.add(k)
            if rng.random() < self.read_fraction:
                mops.append(["r", k, None])
                continue
            v = self._writes.get(k, 0) + 1
            self._writes[k] = v
            mops.append([self.write_f, k, v])
            if v >= self.key_bound:
                self._active[slot] = self._next_key
                self._next_key += 1
        return OpSpec("txn", mops)

    def generator(self) -> Generator:
        return gen.fn(self.txn)

    def final_generator(self, threads: int) -> Generator:
        """Every key used, read once (up to 8 keys per transaction)."""
        used = sorted(self._used)
        specs = [OpSpec("txn", [["r", k, None] for k in used[i:i + 8]]) for i in range(0, len(used), 8)]
        return gen.once_each(specs)

    # -- execution

    def client(self, target: Any, process: int) -> Any:
        kv = target.kv_client(process)
        if hasattr(kv, "attempt_timeout"):
            kv.attempt_timeout = self.attempt_timeout
        return _Closing(kv)

    async def _read(self, kv: Any, keys: list[int], serializable: bool) -> dict[int, tuple[bytes | None, int]]:
        """One range read over the keys: key -> (raw value or None, mod_revision)."""
        if not keys:
            return {}
        lo, hi = min(keys), max(keys)
        try:
            resp = await kv.get(store_key(lo), range_end=store_key(hi) + b"\x00", serializable=serializable)
        except (refclient.Failed, refclient.Indeterminate) as exc:  # a read changes nothing
            raise DefiniteFailure(exc.code.value, exc.message) from None
        want = {store_key(k): k for k in keys}
        out: dict[int, tuple[bytes | None, int]] = {k: (None, 0) for k in keys}
        for item in resp.kvs:
            k = want.get(item.key)
            if k is not None:
                out[k] = (item.value, item.mod_revision)
        return out

    def _work_out(self, mops: list[list[Any]], state: dict[int, tuple[bytes | None, int]]
                  ) -> tuple[list[list[Any]], dict[int, Any]]:
        """The completed micro-ops and the new value of each written key."""
        cur: dict[int, Any] = {}
        for k, (raw, _rev) in state.items():
            if self.kind == "append":
                cur[k] = decode_list(raw) if raw is not None else []
            else:
                cur[k] = decode_register(raw) if raw is not None else None
        done: list[list[Any]] = []
        written: dict[int, Any] = {}
        for f, k, v in mops:
            if f == "r":
                val = cur.get(k)
                done.append(["r", k, list(val) if isinstance(val, list) else val])
            elif f == "append":
                cur[k] = [*cur[k], v]
                written[k] = cur[k]
                done.append([f, k, v])
            else:
                cur[k] = v
                written[k] = v
                done.append([f, k, v])
        return done, written

    async def invoke(self, client: _Closing, spec: OpSpec) -> tuple[str, Any]:
        kv = client.kv
        mops: list[list[Any]] = spec.value
        if self.kind == "append":
            touched = sorted({k for _f, k, _v in mops})
        else:  # a register written before it is read needs no read
            seen: set[int] = set()
            reads: set[int] = set()
            for f, k, _v in mops:
                if f == "r" and k not in seen:
                    reads.add(k)
                seen.add(k)
            touched = sorted(reads)
        if all(f == "r" for f, _k, _v in mops):
            state = await self._read(kv, touched, self.serializable_reads)
            return "ok", self._work_out(mops, state)[0]
        for _attempt in range(self.guard_retries):
            state = await self._read(kv, touched, False)
            done, written = self._work_out(mops, state)
            compares = [kvr.Compare(result=kvr.CompareResult.EQUAL, target=kvr.CompareTarget.MOD,
                                    key=store_key(k), mod_revision=rev) for k, (_raw, rev) in state.items()]
            puts: list[kvr.RequestOp] = [kvr.PutRequest(key=store_key(k), value=self._encode(v)) for k, v in written.items()]
            try:
                resp = await kv.txn(compares, puts)
            except refclient.Failed as exc:
                raise DefiniteFailure(exc.code.value, exc.message) from None
            except refclient.Indeterminate as exc:
                raise Indeterminate(exc.code.value, exc.message) from None
            if resp.succeeded:
                return "ok", done
        raise DefiniteFailure("guard-failed", f"the read keys changed {self.guard_retries} times before the write")

    def _encode(self, v: Any) -> bytes:
        if isinstance(v, list):
            return " ".join(str(x) for x in v).encode()
        return str(v).encode()


class _Closing:
    """The store's client with the ``close`` the runner calls."""

    def __init__(self, kv: Any) -> None:
        self.kv = kv

    async def close(self) -> None:
        await self.kv.aclose()


