"""Check-time figures for the transactional checker: generated list-append histories of
10k / 30k / 100k / 300k transactions (1–5 micro-ops, 10 clients, 5% info; from the
sequential store in kvcheck.checker.txnsim, so each is valid), each checked in a fresh
process so its peak memory (max RSS) is its own. Prints seconds, transactions per second
and peak MiB (wall seconds and CPU seconds: on a shared machine the CPU time is the
checker's own cost); the issue's target is <= 10 s and <= 2 GiB for 100k.

    python benchmarks/txn_check.py [--sizes 10000,30000,100000,300000] [--kind append|wr]
    python benchmarks/txn_check.py --bug   # the same, with every 500th read made stale
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(n: int, kind: str, corrupt: bool) -> dict[str, float]:
    import random

    from kvcheck.checker.api import CheckOptions, get_checker
    from kvcheck.checker.txnsim import corrupt_one_read, simulate

    t0 = time.perf_counter()
    ops = simulate(n, seed=n, clients=10, kind=kind, info_rate=0.05)
    gen = time.perf_counter() - t0
    if corrupt:
        rng = random.Random(n)
        for _ in range(max(1, n // 500)):
            ops = corrupt_one_read(ops, rng) or ops
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    result = get_checker("txn").check(ops, CheckOptions())
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"txns": n, "generate_s": round(gen, 2), "check_s": round(secs, 2), "cpu_s": round(cpu, 2),
            "txns_per_s": round(n / secs),
            "peak_mib": round(peak), "history_mib": round(base), "valid": result.valid,
            "anomalies": sum(result.detail.get("anomaly_counts", {}).values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,30000,100000,300000")
    ap.add_argument("--kind", default="append", choices=["append", "wr"])
    ap.add_argument("--bug", action="store_true", help="corrupt one read in 500")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.kind, args.bug)))
        return
    print(f"{'txns':>8} {'check s':>8} {'cpu s':>8} {'txns/s':>8} {'peak MiB':>9} {'(history)':>9}  verdict")
    for n in (int(x) for x in args.sizes.split(",")):
        cmd = [sys.executable, __file__, "--one", str(n), "--kind", args.kind] + (["--bug"] if args.bug else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        print(f"{r['txns']:>8} {r['check_s']:>8} {r['cpu_s']:>8} {r['txns_per_s']:>8} {r['peak_mib']:>9} {r['history_mib']:>9}  "
              f"{r['valid']} ({r['anomalies']} anomalies)", flush=True)


if __name__ == "__main__":
    main()
