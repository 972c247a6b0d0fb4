"""Key-value histories seen as one register per key, for the linearizability checker.

Why: the watch workload's writers put, delete and run multi-key transactions, and a final
range reads the whole key space; the linearizability checker's models know registers
(read, write, cas). If the whole history is linearizable, so is its projection onto each
key (restrict the linearization order), so checking each key's projection is sound: an
invalid key is a real anomaly.

How: ``register_view`` rewrites each call as the register calls it makes on each key —
put k v -> write v; delete k -> write null (the key is absent); a delete of a range -> write
null to each key of the range (its value names them: ``keys``); a txn -> one write per key
it touches (its delete micro-ops write null); read k -> read; a range -> one read per key
of the history (null where the range saw no value); cas stays cas — keeping the original op
ids, so anomalies name the ops of the file. Every projected call gets a process of its own
per (process, key), because one txn or range is several concurrent register calls. Ops of
other kinds (watch streams, compactions), reads at a past revision (``read_revision`` on
the invocation) and ranges over part of the key space (whose invocation value is the request:
key, range_end, limit, revision; a key it does not show may lie outside it or past its limit)
are left out: the watch checker judges those against the write order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kvcheck.checker.history import Op

PROJECTED = ("put", "delete", "delete-range", "txn", "cas", "read", "range")


def is_kv_history(ops: Sequence[Op]) -> bool:
    """Whether the history has key-value ops (put, delete, txn, range) that the register
    models do not know: then it is checked through ``register_view``."""
    return any(op.f in ("put", "delete", "delete-range", "txn", "range") for op in ops if not op.is_nemesis)


def _keys(ops: Sequence[Op]) -> list[str]:
    keys: dict[str, None] = {}
    for op in ops:
        if op.is_nemesis:
            continue
        if op.f in ("put", "delete", "cas", "read") and op.key is not None:
            keys.setdefault(str(op.key), None)
        elif op.f == "txn" and isinstance(op.value, list):
            for m in op.value:
                if isinstance(m, list | tuple) and len(m) == 3:
                    keys.setdefault(str(m[1]), None)
        elif op.f == "range" and op.type == "ok" and isinstance(op.value, dict):
            for k in op.value:
                keys.setdefault(str(k), None)
        elif op.f == "delete-range" and isinstance(op.value, dict):
            for k in op.value.get("keys") or ():
                keys.setdefault(str(k), None)
    return sorted(keys)


def _micro(op: Op, key_list: list[str]) -> list[tuple[str, str, Any]]:
    """(f, key, value) register calls of one op (its invocation's or completion's value)."""
    f = op.f
    if f == "put":
        return [("write", str(op.key), op.value)]
    if f == "delete":
        return [("write", str(op.key), None)]
    if f == "delete-range":  # every key of the range is absent after it (an absent one stays so)
        keys = op.value.get("keys") if isinstance(op.value, dict) else None
        return [("write", str(k), None) for k in keys or ()]
    if f == "cas":
        return [("cas", str(op.key), op.value)]
    if f == "read":
        return [("read", str(op.key), op.value if op.type == "ok" else None)]
    if f == "txn":
        if not isinstance(op.value, list):
            return []
        return [("write", str(m[1]), m[2] if m[0] == "put" else None) for m in op.value
                if isinstance(m, list | tuple) and len(m) == 3]
    if f == "range":
        seen = op.value if op.type == "ok" and isinstance(op.value, dict) else {}
        return [("read", k, seen.get(k)) for k in key_list]
    return []


def register_view(ops: Sequence[Op]) -> list[Op]:
    """The history as register calls per key (see the module docstring)."""
    key_list = _keys(ops)
    index = {k: i for i, k in enumerate(key_list)}
    stride = max(1, len(key_list))
    out: list[Op] = []
    open_f: dict[Any, str] = {}
    for op in ops:
        if op.is_nemesis:
            out.append(op)
            continue
        if op.type == "invoke":
            if op.f not in PROJECTED or isinstance(op.extra.get("read_revision"), int):
                continue  # (a read at a past revision does not read the register's current value)
            if op.f == "range" and isinstance(op.value, dict):
                continue  # a range of part of the key space (the request is its value): see below
            open_f[op.process] = op.f
        elif open_f.get(op.process) != op.f:
            continue  # the completion of an op left out
        else:
            del open_f[op.process]
        assert isinstance(op.process, int)
        for f, key, value in _micro(op, key_list):
            proc = op.process * stride + index[key]
            out.append(Op(type=op.type, f=f, value=value, process=proc, time=op.time, index=op.index,
                          key=key, node=op.node, error=op.error, position=op.position, line=op.line))
    return out
