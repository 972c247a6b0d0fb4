"""How fast the watch checker is: synthetic valid histories of N watch events over 100 streams.

    python benchmarks/watch_check.py [--events 100000,300000,1000000] [--streams 100]
                                     [--keys 1000] [--batch 10]

Each history has W = N / streams ok puts (one revision each, keys round-robin over
``--keys``), 100 streams (half watch the whole key space from revision 2 with prev_kv,
half from "now"), each receiving every event of the W revisions in responses of
``--batch`` events, and a final range read. Prints, per size, the time to build the history
(not counted), the check's wall and CPU time (CPU time is the fair figure on a shared
machine), events per CPU second, the peak RSS of the process so far, and the CPU time per
event relative to the smallest size (linear growth keeps it near 1).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from typing import Any

from kvcheck.checker.api import CheckOptions
from kvcheck.checker.history import Op
from kvcheck.checker.watch import WatchChecker


def build(events: int, streams: int, keys: int, batch: int) -> list[Op]:
    writes = max(1, events // streams)
    ops: list[Op] = []

    def add(process: Any, typ: str, f: str, value: Any = None, **extra: Any) -> None:
        i = len(ops)
        ops.append(Op(type=typ, f=f, value=value, process=process, time=i, index=i, position=i,
                      key=extra.pop("key", None), extra=extra))

    for s in range(streams):
        add(1000 + s, "invoke", "watch", {"key": "k", "range_end": "l", "start_revision": 2 if s % 2 else 0,
                                           "prev_kv": bool(s % 2)})
        add(1000 + s, "ok", "watch", {"watch_id": 1, "created": True, "canceled": False, "compact_revision": 0,
                                      "revision": 1, "events": []})
    state: dict[str, tuple[int, int, int, int]] = {}
    pending: list[dict[str, Any]] = []
    pending_prev: list[dict[str, Any]] = []
    for w in range(writes):
        rev = w + 2
        key = f"k{w % keys:06d}"
        prev = state.get(key)
        create, version = (rev, 1) if prev is None else (prev[1], prev[3] + 1)
        state[key] = (w, create, rev, version)
        add(0, "invoke", "put", w, key=key)
        add(0, "ok", "put", w, key=key, revision=rev)
        ev = {"type": "put", "key": key, "value": w, "create_revision": create, "mod_revision": rev,
              "version": version}
        pending.append(ev)
        pending_prev.append({**ev, "prev_kv": None if prev is None else {
            "key": key, "value": prev[0], "create_revision": prev[1], "mod_revision": prev[2],
            "version": prev[3]}})
        if len(pending) == batch or w == writes - 1:
            for s in range(streams):
                add(1000 + s, "ok", "watch", {"watch_id": 1, "created": False, "canceled": False,
                                              "compact_revision": 0, "revision": rev,
                                              "events": [dict(e) for e in (pending_prev if s % 2 else pending)]})
            pending, pending_prev = [], []
    for s in range(streams):
        add(1000 + s, "ok", "watch", {"end": "closed"})
    kvs = [{"key": k, "value": v[0], "create_revision": v[1], "mod_revision": v[2], "version": v[3]}
           for k, v in sorted(state.items())]
    add(1, "invoke", "range", None)
    add(1, "ok", "range", {kv["key"]: kv["value"] for kv in kvs}, revision=writes + 1, kvs=kvs)
    return ops


def peak_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="100000,300000,1000000")
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=10)
    args = ap.parse_args()
    base: float | None = None
    for n in (int(x) for x in args.events.split(",")):
        t0 = time.perf_counter()
        ops = build(n, args.streams, args.keys, args.batch)
        built = time.perf_counter() - t0
        gc.collect()
        t1, c1 = time.perf_counter(), time.process_time()
        result = WatchChecker().check(ops, CheckOptions())
        took, cpu = time.perf_counter() - t1, time.process_time() - c1
        per = cpu / max(1, result.detail["events"])
        base = base or per
        print(f"{result.detail['events']:>9} events, {result.detail['streams']} streams, {len(ops):>8} ops: "
              f"built {built:6.2f} s, checked {took:6.2f} s wall, {cpu:6.2f} s CPU "
              f"({result.detail['events'] / cpu:,.0f} events per CPU second), "
              f"valid={result.valid}, peak RSS {peak_mb():,.0f} MB, time per event x{per / base:.2f}",
              flush=True)
        if result.valid is not True:
            print("  unexpected anomalies:", [a.to_json() for a in result.anomalies[:3]])
            return 1
        del ops, result
        gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
