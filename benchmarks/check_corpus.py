"""Benchmark of the linearizability checker: prints figures, asserts nothing.

Sets (each run in its own child process so its peak memory is its own):

- ``knossos``: the Knossos corpus (../shared/corpora/knossos), per file parse and check
  seconds, totals, and whether every verdict matches the manifest;
- ``a``: 10,000-op cas-register histories, 10 processes, 5% info: one with unique written
  values, one with values drawn from 0..4 as Jepsen's register workload does;
- ``b``: one 100,000-op kv history (get/put/append) over 100 keys, 50 processes;
- ``c``: 100 cas-register histories shaped like Jepsen's etcd tests: 80 ops each, 10-20
  processes, values 0..4 (they repeat), 15-19 writes and cas that never complete (info),
  overlapping each other and the reads after them;
- ``append``: 6.824-style append histories (edn-lines, 50 clients, 10 keys, ~2,000 ops):
  one valid, two with one get corrupted (a stale list, a reordered list);
- ``append100k``: one 100,000-op append history (100 keys, 50 clients, 5% info);
- ``planted``: a 17,000-op, 64-client single-key cas-register history (unique values,
  compare-failed and indeterminate cas) as generated, then with each of five anomalies planted
  (a duplicated apply, a read of a value never written, a stale read, a lost write, two
  reads in the wrong order);
- ``timeout``: how far past ``timeout`` a timed-out check returns (a history the search
  cannot finish: many concurrent writes and a read nobody could have seen).

Stress histories are generated with fixed seeds from a simulated execution (each op takes
effect at a random moment inside its interval, crashed ops at a random later moment or
never), written as JSONL and read back, so "parse" is the JSONL reader.

    python benchmarks/check_corpus.py [SET ...]        # default: all sets
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kvcheck.checker import linearizable
from kvcheck.checker.formats import read_history, write_jsonl
from kvcheck.checker.history import Op
from kvcheck.checker.linearizable import check_history
from kvcheck.checker.models import get_model

ROOT = Path(__file__).resolve().parent.parent
CORPUS = next((p for p in (ROOT.parent / "shared" / "corpora" / "knossos",  # beside the checkout
                            ROOT.parent.parent / "shared" / "corpora" / "knossos")  # a worktree
               if p.is_dir()), ROOT.parent / "shared" / "corpora" / "knossos")
INIT: dict[str, Any] = {"cas-register": None, "multi-register": {"x": 0, "y": 0}, "mutex": False}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- generators ---------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def emit(self, process: Any, type_: str, f: str, value: Any, key: Any = None) -> None:
        self.ops.append(Op(type=type_, f=f, value=value, process=process, key=key,
                           position=len(self.ops), index=len(self.ops)))


def gen_cas_register(seed: int, n_ops: int, processes: int, info_rate: float,
                     values: int | None, never_complete: int = 0) -> list[Op]:
    """A cas-register history from a simulated execution. ``values``: draw written values
    from range(values) (repeating) or, when None, use fresh ones. ``never_complete``: that
    many writes/cas end ``info`` (indeterminate) instead of the usual ``info_rate``."""
    rng = random.Random(seed)
    rec = Recorder()
    state: Any = None
    counter = 0
    open_: dict[int, list[Any]] = {}  # process -> [f, value, effect or None]
    idle = list(range(processes))
    next_proc = processes
    floating: list[list[Any]] = []
    indeterminate_left = never_complete

    def value() -> Any:
        nonlocal counter
        if values is not None:
            return rng.randrange(values)
        counter += 1
        return counter

    def apply(f: str, v: Any) -> tuple[str, Any]:
        nonlocal state
        if f == "read":
            return "ok", state
        if f == "write":
            state = v
            return "ok", v
        if state == v[0]:
            state = v[1]
            return "ok", v
        return "fail", v

    while len(rec.ops) < n_ops or open_:
        r = rng.random()
        if idle and len(rec.ops) < n_ops and r < 0.35:
            p = idle.pop(rng.randrange(len(idle)))
            x = rng.random()
            if x < 0.5:
                f, v = "read", None
            elif x < 0.75:
                f, v = "write", value()
            else:
                old = state if rng.random() < 0.6 else value()
                f, v = "cas", [old, value()]
            rec.emit(p, "invoke", f, v)
            open_[p] = [f, v, None]
        elif open_ and r < 0.65:
            c = rng.choice(list(open_.values()))
            if c[2] is None:
                c[2] = apply(c[0], c[1])
        elif floating and r < 0.68:
            c = floating.pop(rng.randrange(len(floating)))
            if rng.random() < 0.5:
                apply(c[0], c[1])
        elif open_:
            p = rng.choice(list(open_))
            f, v, eff = open_[p]
            crash = f != "read" and (
                (indeterminate_left > 0 and rng.random() < 0.5) or
                (never_complete == 0 and rng.random() < info_rate))
            if crash:
                del open_[p]
                indeterminate_left -= 1
                rec.emit(p, "info", f, v)
                if eff is None:
                    floating.append([f, v])
                idle.append(next_proc)
                next_proc += 1
                continue
            if eff is None:
                eff = apply(f, v)
            del open_[p]
            rec.emit(p, eff[0], f, eff[1])
            idle.append(p)
        if len(rec.ops) >= n_ops and not open_:
            break
    return rec.ops


def gen_kv(seed: int, n_ops: int, keys: int, processes: int) -> list[Op]:
    """A 6.824-style kv history: get/put/append over ``keys`` keys; appended tokens are
    unique ("x P N y"), so gets return long strings."""
    rng = random.Random(seed)
    rec = Recorder()
    state: dict[str, str] = {}
    open_: dict[int, list[Any]] = {}
    idle = list(range(processes))
    counter = 0
    while len(rec.ops) < n_ops or open_:
        r = rng.random()
        if idle and len(rec.ops) < n_ops and r < 0.4:
            p = idle.pop(rng.randrange(len(idle)))
            k = str(rng.randrange(keys))
            x = rng.random()
            counter += 1
            if x < 0.5:
                f, v = "get", None
            elif x < 0.6:
                f, v = "put", f"x {p} {counter} y"
            else:
                f, v = "append", f"x {p} {counter} y"
            rec.emit(p, "invoke", f, v, k)
            open_[p] = [f, v, k, None]
        elif open_ and r < 0.7:
            c = rng.choice(list(open_.values()))
            if c[3] is None:
                f, v, k = c[0], c[1], c[2]
                s = state.get(k, "")
                if f == "get":
                    c[3] = s
                elif f == "put":
                    state[k] = v
                    c[3] = v
                else:
                    state[k] = s + v
                    c[3] = v
        elif open_:
            p = rng.choice(list(open_))
            f, v, k, eff = open_.pop(p)
            if eff is None:
                s = state.get(k, "")
                eff = s if f == "get" else v
                if f == "put":
                    state[k] = v
                elif f == "append":
                    state[k] = s + v
            rec.emit(p, "ok", f, eff, k)
            idle.append(p)
    return rec.ops


def gen_append(seed: int, n_ops: int, keys: int, processes: int, info_rate: float = 0.0,
               corrupt: str | None = None) -> list[Op]:
    """A 6.824-style append history from a linearizable in-memory store: get/put/append over
    ``keys`` keys (~8% put, ~46% append, ~46% get), unique tokens "x P N y", each op taking
    effect at a random moment inside its interval; ``info_rate`` of the puts and appends
    crash (info) and take effect later or never. ``corrupt``: change one get (about the
    middle of the history) so the history is certainly not linearizable: "stale" drops the
    last token appended by an op that completed before the get was invoked; "reorder" swaps
    two tokens another get, completed before it, saw in the other order."""
    rng = random.Random(seed)
    rec = Recorder()
    state: dict[str, str] = {}
    tokens: dict[str, list[str]] = {}  # key -> the current generation's appended tokens
    done_at: dict[str, int] = {}  # token -> position of its append's ok completion
    open_: dict[int, list[Any]] = {}
    idle = list(range(processes))
    next_proc = processes
    floating: list[list[Any]] = []
    counter = 0

    def apply(f: str, v: str, k: str) -> str:
        s = state.get(k, "")
        if f == "get":
            return s
        if f == "put":
            state[k] = v
            tokens[k] = []
        else:
            state[k] = s + v
            tokens.setdefault(k, []).append(v)
        return v

    while len(rec.ops) < n_ops or open_:
        r = rng.random()
        if idle and len(rec.ops) < n_ops and r < 0.4:
            p = idle.pop(rng.randrange(len(idle)))
            k = str(rng.randrange(keys))
            x = rng.random()
            counter += 1
            f, v = ("get", None) if x < 0.46 else ("put", f"x {p} {counter} y") if x < 0.54 else (
                "append", f"x {p} {counter} y")
            rec.emit(p, "invoke", f, v, k)
            open_[p] = [f, v, k, None]
        elif open_ and r < 0.7:
            c = rng.choice(list(open_.values()))
            if c[3] is None:
                c[3] = apply(c[0], c[1], c[2])
        elif floating and r < 0.72:
            f, v, k = floating.pop(rng.randrange(len(floating)))
            if rng.random() < 0.5:
                apply(f, v, k)
        elif open_:
            p = rng.choice(list(open_))
            f, v, k, eff = open_.pop(p)
            if f != "get" and rng.random() < info_rate:
                rec.emit(p, "info", f, v, k)
                if eff is None:
                    floating.append([f, v, k])
                idle.append(next_proc)
                next_proc += 1
                continue
            if eff is None:
                eff = apply(f, v, k)
            rec.emit(p, "ok", f, eff, k)
            if f == "append":
                done_at[v] = len(rec.ops) - 1
            idle.append(p)
    if corrupt is not None:
        _corrupt_get(rec.ops, corrupt, done_at)
    return rec.ops


def _corrupt_get(ops: list[Op], how: str, done_at: dict[str, int]) -> None:
    """Change one ok get from the middle on so the history certainly is not linearizable."""
    inv_at: dict[tuple[Any, int], int] = {}
    last_inv: dict[Any, int] = {}
    for i, op in enumerate(ops):
        if op.type == "invoke":
            last_inv[op.process] = i
        else:
            inv_at[(op.process, i)] = last_inv[op.process]
    seen: dict[str, list[tuple[int, list[str]]]] = {}  # key -> (completion position, tokens)
    for i, op in enumerate(ops):
        if op.type != "ok" or op.f != "get":
            continue
        toks = ["x " + t for t in op.value.split("x ")[1:]]
        invoked = inv_at[(op.process, i)]
        if i > len(ops) // 2 and len(toks) >= 2:
            if how == "stale" and done_at.get(toks[-1], len(ops)) < invoked:
                ops[i] = _with_value(op, "".join(toks[:-1]))
                return
            if how == "reorder":
                for j, earlier in seen.get(op.key, []):
                    if j < invoked and earlier[-2:] == toks[-2:] and len(earlier) == len(toks):
                        ops[i] = _with_value(op, "".join([*toks[:-2], toks[-1], toks[-2]]))
                        return
        seen.setdefault(op.key, []).append((i, toks))
    raise AssertionError(f"no get to corrupt ({how})")


def _with_value(op: Op, value: Any) -> Op:
    return Op(type=op.type, f=op.f, value=value, process=op.process, key=op.key,
              position=op.position, index=op.index)


def write_edn_lines(ops: list[Op], path: Path) -> None:
    """One EDN map per line, as the 6.824 / Porcupine kv logs are written."""
    with open(path, "w") as out:
        for op in ops:
            parts = [f":process {op.process}", f":type :{op.type}", f":f :{op.f}",
                     f":key {json.dumps(op.key)}", f":value {json.dumps(op.value)}"]
            out.write("{" + ", ".join(parts) + "}\n")


ANOMALIES = ("duplicate", "never-written", "stale-read", "lost-write", "reads-out-of-order")


def gen_register_planted(seed: int, n_ops: int, processes: int, anomaly: str | None) -> list[Op]:
    """A cas-register history like a real etcd cluster's under faults: ``processes`` clients,
    unique written values, reads, writes and cas (many failing their compare; recorded
    ``fail`` = compare failed), some writes and cas indeterminate (info, taking effect later
    or never). Each op takes effect at a random moment inside its interval. Half way, with
    every open call finished, ``anomaly`` is planted:

    - "duplicate": an earlier write is applied a second time (the register goes back to it;
      later reads see it, later cas compare against it);
    - "never-written": one read returns a value nobody wrote;
    - "stale-read": write x, write y, then a read returns x;
    - "lost-write": write x, then write y is acknowledged but never applied (a read after it
      sees x, and so does everything after);
    - "reads-out-of-order": while write y (over x) is open, one read sees y and a later read
      sees x.
    """
    rng = random.Random(seed)
    rec = Recorder()
    state: Any = 0
    counter = 0
    written: list[Any] = []
    open_: dict[int, list[Any]] = {}  # process -> [f, value, effect or None]
    idle = list(range(processes))
    next_proc = processes
    floating: list[list[Any]] = []
    planted = anomaly is None

    def fresh() -> int:
        nonlocal counter
        counter += 1
        return counter

    def apply(f: str, v: Any) -> tuple[str, Any]:
        nonlocal state
        if f == "read":
            return "ok", state
        if f == "write":
            state = v
            written.append(v)
            return "ok", v
        if state == v[0]:
            state = v[1]
            written.append(v[1])
            return "ok", v
        return "fail", v

    def call(f: str, v: Any, result: Any = None, applied: bool = True) -> None:
        nonlocal next_proc
        p = next_proc
        next_proc += 1
        rec.emit(p, "invoke", f, v)
        if applied:
            result = apply(f, v)[1] if result is None else result
        rec.emit(p, "ok", f, v if f != "read" else result)

    def plant() -> None:
        nonlocal state, next_proc
        for p in list(open_):  # finish every open call first
            f, v, eff = open_.pop(p)
            eff = eff or apply(f, v)
            rec.emit(p, eff[0], f, eff[1])
            idle.append(p)
        x, y = fresh(), fresh()
        call("write", x)
        if anomaly == "duplicate":
            call("write", y)
            state = written[len(written) // 2]  # an old write applied again
        elif anomaly == "never-written":
            call("read", None, result=10**9)
        elif anomaly == "stale-read":
            call("write", y)
            call("read", None, result=x)
        elif anomaly == "lost-write":
            call("write", y, applied=False)
            call("read", None)
        elif anomaly == "reads-out-of-order":
            py, pa, pb = next_proc, next_proc + 1, next_proc + 2
            next_proc += 3
            rec.emit(py, "invoke", "write", y)
            rec.emit(pa, "invoke", "read", None)
            rec.emit(pa, "ok", "read", y)
            rec.emit(pb, "invoke", "read", None)
            rec.emit(pb, "ok", "read", x)
            apply("write", y)
            rec.emit(py, "ok", "write", y)
        else:
            raise ValueError(anomaly)

    while len(rec.ops) < n_ops or open_:
        if not planted and len(rec.ops) >= n_ops // 2:
            plant()
            planted = True
        r = rng.random()
        if idle and len(rec.ops) < n_ops and r < 0.35:
            p = idle.pop(rng.randrange(len(idle)))
            x = rng.random()
            if x < 0.5:
                f, v = "read", None
            elif x < 0.7:
                f, v = "write", fresh()
            else:
                old = state if rng.random() < 0.5 else rng.choice(written[-5:] or [0])
                f, v = "cas", [old, fresh()]
            rec.emit(p, "invoke", f, v)
            open_[p] = [f, v, None]
        elif open_ and r < 0.65:
            c = rng.choice(list(open_.values()))
            if c[2] is None:
                c[2] = apply(c[0], c[1])
        elif floating and r < 0.67:
            c = floating.pop(rng.randrange(len(floating)))
            if rng.random() < 0.5:
                apply(c[0], c[1])
        elif open_:
            p = rng.choice(list(open_))
            f, v, eff = open_[p]
            if f != "read" and rng.random() < 0.02:
                del open_[p]
                rec.emit(p, "info", f, v)
                if eff is None:
                    floating.append([f, v])
                idle.append(next_proc)
                next_proc += 1
                continue
            eff = eff or apply(f, v)
            del open_[p]
            rec.emit(p, eff[0], f, eff[1])
            idle.append(p)
    return rec.ops


def stress_sets() -> dict[str, list[tuple[str, str, list[Op]]]]:
    return {
        "a": [("a-cas-10k-unique-values", "cas-register", gen_cas_register(1, 10_000, 10, 0.05, None)),
              ("a-cas-10k-values-0..4", "cas-register", gen_cas_register(1, 10_000, 10, 0.05, 5))],
        "b": [("b-kv-100k", "kv", gen_kv(2, 100_000, 100, 50))],
        "c": [(f"c-etcd-{i:03d}", "cas-register",
               gen_cas_register(1000 + i, 80, random.Random(i).randint(10, 20), 0.0, 5,
                                never_complete=random.Random(-i).randint(15, 19)))
              for i in range(100)],
    }


def scale_histories(name: str) -> list[tuple[str, str, list[Op], bool]]:
    """(name, model, ops, compare_failed) of the issue-16 sets, generated with fixed seeds."""
    if name == "append":
        return [("append-2k-valid", "kv", gen_append(7, 2_000, 10, 50), False),
                ("append-2k-invalid-stale", "kv", gen_append(7, 2_000, 10, 50, corrupt="stale"), False),
                ("append-2k-invalid-reorder", "kv", gen_append(8, 2_000, 10, 50, corrupt="reorder"), False)]
    if name == "append100k":
        return [("append-100k", "kv", gen_append(9, 100_000, 100, 50, info_rate=0.05), False)]
    if name == "planted":
        return [(f"register-17k-{a}", "cas-register", gen_register_planted(11, 17_000, 64, a), True)
                for a in (None, *ANOMALIES)]
    raise ValueError(name)


def run_scale_one(name: str, index: int, timeout: float, all_keys: bool) -> dict[str, Any]:
    """Check one generated history the way ``kvcheck check`` does (written, read back)."""
    import inspect

    hname, model_name, ops, compare_failed = scale_histories(name)[index]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{hname}.{'edn' if model_name == 'kv' else 'jsonl'}"
        if model_name == "kv":
            write_edn_lines(ops, path)
        else:
            write_jsonl(ops, path)
        t1 = time.perf_counter()
        c1 = time.process_time()
        read, fmt = read_history(path)
        t2 = time.perf_counter()
        c2 = time.process_time()
    model = get_model(model_name, fail_cas_means_compare_failed=compare_failed)
    kwargs: dict[str, Any] = {"timeout": timeout}
    if "all_keys" in inspect.signature(check_history).parameters:
        kwargs["all_keys"] = all_keys
    res = check_history(read, model, **kwargs)
    t3 = time.perf_counter()
    c3 = time.process_time()
    doc = res.to_json()
    keys = doc["keys"]
    per_key = [k.get("seconds") for k in keys.values() if k.get("seconds") is not None]
    return {"history": hname, "format": fmt, "ops": len(read), "keys": len(keys),
            "valid": res.valid, "parse_seconds": t2 - t1, "check_seconds": t3 - t2,
            "parse_cpu": c2 - c1, "check_cpu": c3 - c2, "load_average": os.getloadavg()[0],
            "verdict_seconds": doc.get("verdict_seconds"),
            "explain_seconds": doc.get("explain_seconds"),
            "op_is_first": [k.get("op_is_first") for k in keys.values() if k["valid"] is False],
            "decided_keys": sum(1 for k in keys.values() if k["valid"] != "unknown"),
            "max_key_seconds": max(per_key) if per_key else None,
            "methods": sorted({k["method"] for k in keys.values()}),
            "minimal_ops": [len(k["minimal_history"] or []) for k in keys.values() if k["valid"] is False],
            "reason": next((k.get("reason") for k in keys.values() if k["valid"] is False), None),
            "unknown_cause": res.unknown_cause, "peak_mb": peak_mb()}


SCALE_SETS = {"append": 3, "append100k": 1, "planted": 1 + len(ANOMALIES)}


# --- runs ---------------------------------------------------------------------------------


def run_knossos(timeout: float) -> dict[str, Any]:
    with open(CORPUS / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    parse_total = check_total = check_cpu = 0.0
    mismatches = []
    t_all = time.perf_counter()
    for row in rows:
        t0 = time.perf_counter()
        ops, _ = read_history(CORPUS / row["file"])
        t1 = time.perf_counter()
        c1 = time.process_time()
        res = check_history(ops, get_model(row["model"], INIT[row["model"]]), timeout=timeout)
        check_cpu += time.process_time() - c1
        t2 = time.perf_counter()
        parse_total += t1 - t0
        check_total += t2 - t1
        ok = res.valid is (row["expected_valid"] == "true")
        if not ok:
            mismatches.append(row["file"])
        print(f"  {row['file']:52s} parse {t1 - t0:7.4f}s check {t2 - t1:7.4f}s "
              f"valid={res.valid} {'' if ok else 'MISMATCH'}")
    return {"files": len(rows), "parse_seconds": parse_total, "check_seconds": check_total,
            "check_cpu_seconds": check_cpu, "load_average": os.getloadavg()[0],
            "parse_plus_check_one_process": time.perf_counter() - t_all,
            "mismatches": mismatches, "peak_mb": peak_mb()}


def run_stress(name: str, timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    histories = stress_sets()[name]
    gen_s = time.perf_counter() - t0
    parse_total = check_total = check_cpu = 0.0
    verdicts: dict[str, int] = {}
    worst = ("", 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for hname, model, ops in histories:
            path = Path(tmp) / f"{hname}.jsonl"
            write_jsonl(ops, path)
            t1 = time.perf_counter()
            read, _ = read_history(path)
            t2 = time.perf_counter()
            c2 = time.process_time()
            res = check_history(read, get_model(model), timeout=timeout)
            check_cpu += time.process_time() - c2
            t3 = time.perf_counter()
            parse_total += t2 - t1
            check_total += t3 - t2
            verdicts[str(res.valid)] = verdicts.get(str(res.valid), 0) + 1
            if t3 - t2 > worst[1]:
                worst = (hname, t3 - t2)
            if len(histories) <= 2 or res.valid is not True:
                methods = sorted({k.method for k in res.keys.values()})
                print(f"  {hname}: {len(read)} ops, {len(res.keys)} keys, parse {t2 - t1:.3f}s "
                      f"check {t3 - t2:.3f}s valid={res.valid} via {', '.join(methods)} "
                      f"{res.unknown_cause or ''}")
    return {"histories": len(histories), "generate_seconds": gen_s, "parse_seconds": parse_total,
            "check_seconds": check_total, "check_cpu_seconds": check_cpu,
            "load_average": os.getloadavg()[0], "slowest": worst, "verdicts": verdicts,
            "peak_mb": peak_mb()}


def run_timeout(timeout: float) -> dict[str, Any]:
    rec = Recorder()
    n = 40
    value = [p for p in range(n - 1)] + [0]  # one value repeats: the unique-value path is off
    for p in range(n):
        rec.emit(p, "invoke", "write", value[p])
    rec.emit(n, "invoke", "read", None)
    rec.emit(n, "ok", "read", -1)
    for p in range(n):
        rec.emit(p, "ok", "write", value[p])
    overs = []
    for _ in range(5):
        # the previous run's abandoned search is freed at the start of the next check; free
        # it here so each figure is this call's own latency
        linearizable._GRAVEYARD.clear()
        t0 = time.perf_counter()
        res = check_history(rec.ops, get_model("register"), timeout=timeout)
        overs.append(time.perf_counter() - t0 - timeout)
        assert res.valid == "unknown", res.valid
    print(f"  timeout {timeout}s: returned {max(overs) * 1000:.1f} ms past it at worst "
          f"(mean {sum(overs) / len(overs) * 1000:.1f} ms), verdict unknown, "
          f"load average {os.getloadavg()[0]:.1f}")
    return {"timeout": timeout, "max_overshoot_seconds": max(overs), "peak_mb": peak_mb()}


TARGETS = {"append": "invalid: verdict <= 0.1 s, with --all-keys every key decided, each <= 1 s, "
                     "<= 500 MB; valid <= 0.2 s",
           "append100k": "<= 10 s, <= 2 GiB", "planted": "each decided and explained <= 1 s",
           "knossos": "check <= 0.5 s total; parse+check in one process <= 6 s",
           "a": "<= 10 s", "b": "<= 30 s", "c": "<= 5 s total", "timeout": "<= 0.1 s past"}


def child(name: str, timeout: float, index: int, all_keys: bool) -> None:
    if name in SCALE_SETS:
        out = run_scale_one(name, index, timeout, all_keys)
    elif name == "knossos":
        out = run_knossos(timeout)
    elif name == "timeout":
        out = run_timeout(1.0)
    else:
        out = run_stress(name, timeout)
    print("RESULT " + json.dumps(out))


def run_child(cmd: list[str], echo: Callable[[str], bool] = lambda line: False) -> dict[str, Any] | None:
    """Run a ``--child`` command and return its RESULT line's figures; the lines ``echo``
    accepts are printed as they were; without a RESULT (the child failed) the tails of its
    output are printed and None returned."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    result = None
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[7:])
        elif echo(line):
            print(line)
    if result is None:
        print(proc.stdout[-2000:], proc.stderr[-4000:])
    return result


def run_scale_set(name: str, timeout: float) -> None:
    """Each history of a scale set in its own child (its own peak memory), invalid ones twice:
    stopping at the first invalid key (the default) and deciding every key (--all-keys)."""
    for index in range(SCALE_SETS[name]):
        for all_keys in (False, True):
            cmd = [sys.executable, __file__, "--child", name, "--index", str(index),
                   "--timeout", str(timeout)] + (["--all-keys"] if all_keys else [])
            r = run_child(cmd)
            if r is None:
                break
            mode = "--all-keys" if all_keys else "default"
            mk = r["max_key_seconds"]
            vs = r["verdict_seconds"]
            print(f"  {r['history']} [{mode}]: {r['ops']} ops, {r['keys']} keys, parse "
                  f"{r['parse_seconds']:.3f}s check {r['check_seconds']:.3f}s"
                  + (f" (verdict {vs:.3f}s, explanation {r['explain_seconds']:.3f}s)" if vs is not None else "")
                  + f", valid={r['valid']}, keys decided {r['decided_keys']}/{r['keys']}"
                  + (f", slowest key {mk:.3f}s" if mk is not None else "")
                  + f", via {'/'.join(r['methods'])}, peak {r['peak_mb']:.0f} MB"
                  + f" [CPU: parse {r['parse_cpu']:.3f}s check {r['check_cpu']:.3f}s; "
                    f"load average {r['load_average']:.1f}]"
                  + (f", minimal {r['minimal_ops']} ops" if r["minimal_ops"] else "")
                  + (f", op proven first {r['op_is_first']}" if r["op_is_first"] else "")
                  + (f"; {r['reason']}" if r["reason"] else "")
                  + (f"; unknown: {r['unknown_cause']}" if r["unknown_cause"] else ""), flush=True)
            if r["valid"] is not False:
                break  # --all-keys changes nothing for a history without an invalid key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sets", nargs="*", default=["knossos", "a", "b", "c", "timeout", "append", "append100k", "planted"])
    ap.add_argument("--timeout", type=float, default=120.0, help="per-history check timeout")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--all-keys", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.timeout, args.index, args.all_keys)
        return
    for name in args.sets:
        if name == "knossos" and not (CORPUS / "manifest.tsv").is_file():
            print(f"knossos: corpus not found at {CORPUS}, skipped")
            continue
        print(f"== {name} (target {TARGETS.get(name, '-')})", flush=True)
        if name in SCALE_SETS:
            run_scale_set(name, args.timeout)
            continue
        echo = (lambda line: "MISMATCH" in line) if name == "knossos" else (lambda line: True)
        result = run_child([sys.executable, __file__, "--child", name, "--timeout", str(args.timeout)], echo)
        if result is None:
            continue
        if name == "knossos":
            print(f"  {result['files']} files: parse {result['parse_seconds']:.3f}s, "
                  f"check {result['check_seconds']:.3f}s ({result['check_cpu_seconds']:.3f}s CPU), "
                  f"parse+check in one process "
                  f"{result['parse_plus_check_one_process']:.3f}s, mismatches {len(result['mismatches'])}, "
                  f"peak {result['peak_mb']:.0f} MB, load average {result['load_average']:.1f}")
        elif name == "timeout":
            print(f"  peak {result['peak_mb']:.0f} MB")
        else:
            print(f"  {result['histories']} histories: parse {result['parse_seconds']:.3f}s, "
                  f"check {result['check_seconds']:.3f}s ({result['check_cpu_seconds']:.3f}s CPU; slowest {result['slowest'][0]} "
                  f"{result['slowest'][1]:.3f}s), verdicts {result['verdicts']}, "
                  f"peak {result['peak_mb']:.0f} MB, load average {result['load_average']:.1f}")


if __name__ == "__main__":
    main()
