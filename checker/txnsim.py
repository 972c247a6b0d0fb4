"""Synthetic transactional histories from a sequential store: valid by construction.

Why: the transactional checker's oracle tests and benchmark need histories whose truth is
known without a checker. A single-copy store that applies each transaction atomically at
one instant between its invocation and its completion produces strict-serializable
histories, whatever the overlap of the calls; changing any value read then makes them
invalid.

How: ``simulate`` runs ``clients`` processes. At each step one process either invokes a
random transaction (1..``max_ops`` micro-ops over a small active key set; a key whose list
grows past ``key_bound`` is retired for a fresh one) or completes its open one: the store
applies it at that moment (an ``ok`` with the values read), or, for an ``info`` outcome,
applies it or not at random. A process that saw ``info`` is replaced by a new one (process
+ clients), as Jepsen does. ``kind`` is "append" (``[r k nil]``/``[append k v]``) or "wr"
(``[r k nil]``/``[w k v]``, unique values per key).
"""

from __future__ import annotations

import random
from typing import Any

from kvcheck.checker.history import Op


def simulate(n: int, *, seed: int = 0, clients: int = 10, kind: str = "append", max_ops: int = 5,
             info_rate: float = 0.05, active_keys: int = 16, key_bound: int = 64,
             concurrency: float = 0.5, final_reads: bool = True) -> list[Op]:
    """``n`` transactions as a history (invocations and completions, indexed); with
    ``final_reads`` one last transaction reads every key written."""
    rng = random.Random(seed)
    state: dict[int, Any] = {}
    counts: dict[int, int] = {}
    keys = list(range(active_keys))
    next_key = active_keys
    next_value: dict[int, int] = {}
    procs = list(range(clients))
    open_txn: dict[int, list[list[Any]]] = {}
    ops: list[Op] = []
    started = 0

    def emit(p: int, t: str, v: Any) -> None:
        ops.append(Op(t, "txn", v, p, time=len(ops), index=len(ops)))

    def new_txn() -> list[list[Any]]:
        nonlocal next_key
        mops: list[list[Any]] = []
        for _ in range(rng.randint(1, max_ops)):
            slot = rng.randrange(len(keys))
            k = keys[slot]
            if rng.random() < 0.5:
                mops.append(["r", k, None])
            else:
                v = next_value.get(k, 0) + 1
                next_value[k] = v
                mops.append(["append" if kind == "append" else "w", k, v])
                counts[k] = counts.get(k, 0) + 1
                if counts[k] >= key_bound:
                    keys[slot] = next_key
                    next_key += 1
        return mops

    def apply(mops: list[list[Any]]) -> list[list[Any]]:
        out = []
        for f, k, v in mops:
            if f == "r":
                cur = state.get(k)
                out.append(["r", k, list(cur) if kind == "append" and cur is not None else ([] if kind == "append" else cur)])
            elif f == "append":
                state.setdefault(k, []).append(v)
                out.append([f, k, v])
            else:
                state[k] = v
                out.append([f, k, v])
        return out

    while started < n or open_txn:
        slot = rng.randrange(len(procs))
        p = procs[slot]
        if p in open_txn:
            # complete it, sooner the lower the concurrency
            if rng.random() < concurrency and started < n and len(open_txn) < len(procs):
                continue
            mops = open_txn.pop(p)
            if rng.random() < info_rate:
                if rng.random() < 0.5:
                    apply(mops)
                emit(p, "info", mops)
                procs[slot] = p + clients
            else:
                emit(p, "ok", apply(mops))
        elif started < n:
            mops = new_txn()
            open_txn[p] = mops
            emit(p, "invoke", mops)
            started += 1
    if final_reads and state:
        p = max(procs) + 1
        mops = [["r", k, None] for k in sorted(state)]
        emit(p, "invoke", mops)
        emit(p, "ok", apply(mops))
    return ops


def corrupt_one_read(ops: list[Op], rng: random.Random) -> list[Op] | None:
    """The history with one ok transaction's first read of a key changed so that no
    strict-serializable execution explains it: it reads a value appended (written) by a
    transaction invoked after it completed (a read from the future), or, for list-append,
    it misses the last element of its list although that element's ok writer completed
    before it began and a later read shows the element. None when no read qualifies."""
    start: dict[int, int] = {}
    end: dict[int, int] = {}
    opened: dict[Any, int] = {}
    for i, op in enumerate(ops):
        if op.type == "invoke":
            opened[op.process] = i
        else:
            s0 = opened.pop(op.process)
            start[s0] = s0
            end[s0] = i if op.type == "ok" else len(ops)
    writers: dict[Any, list[tuple[int, Any]]] = {}  # key -> (invoke position, value)
    for i, op in enumerate(ops):
        if op.type == "invoke":
            for f, k, v in op.value:
                if f != "r":
                    writers.setdefault(k, []).append((i, v))
    inv_of = {e: s0 for s0, e in end.items()}
    candidates = []
    for i, op in enumerate(ops):
        if op.type != "ok":
            continue
        seen: set[Any] = set()
        for j, (f, k, _v) in enumerate(op.value):
            if f == "r" and k not in seen:
                candidates.append((i, j))
            seen.add(k)
    rng.shuffle(candidates)
    for i, j in candidates:
        op = ops[i]
        f, k, v = op.value[j]
        new: Any = _MISSING
        future = [w for w in writers.get(k, []) if w[0] > i]
        if future:
            x = rng.choice(future)[1]
            new = [*v, x] if isinstance(v, list) else x
        elif isinstance(v, list) and v:
            x = v[-1]
            w_inv = next((w[0] for w in writers[k] if w[1] == x), None)
            if (w_inv is not None and end.get(w_inv, len(ops)) < inv_of[i] and ops[end[w_inv]].type == "ok"
                    and any(o.type == "ok" and p > i and any(m[0] == "r" and m[1] == k and isinstance(m[2], list) and x in m[2] for m in o.value)
                            for p, o in enumerate(ops))):
                new = v[:-1]
        if new is _MISSING:
            continue
        value = [list(m) for m in op.value]
        value[j] = [f, k, new]
        out = list(ops)
        out[i] = Op(op.type, op.f, value, op.process, op.time, op.index)
        return out
    return None


_MISSING: Any = object()
