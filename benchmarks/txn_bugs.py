"""Which bug switches the append (or wr) workload catches, and how soon: for each switch,
seeds in a row with every fault kind, each run's verdict and the anomaly kinds the txn
checker named; then clean seeds of each workload for false alarms.

    python benchmarks/txn_bugs.py [--bugs txn_read_stale_snapshot,txn_non_atomic,no_session_dedup]
                                  [--seeds 20] [--clean-seeds 20] [--workloads append,wr]
                                  [--time-limit 8] [--rate 80] [--faults all]

Prints one line per run and a table: switch, workload, faults, seeds tried, caught, first
catching seed, the anomaly that caught it, and the catch count.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.nemesis import parse_faults
from kvcheck.workloads.run import run_once


def one(workload: str, seed: int, bugs: list[str], kinds: list[str], args: argparse.Namespace,
        store: Path) -> tuple[object, dict[str, int]]:
    cfg = RunConfig(workload=workload, faults=kinds, time_limit=args.time_limit, rate=args.rate,
                    seed=seed, bugs=bugs)
    out = run_once(cfg, store, progress=False)
    txn = out.results["checkers"].get("txn", {})
    return out.results["valid"], dict(txn.get("anomaly_counts") or {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bugs", default="txn_read_stale_snapshot,txn_non_atomic,no_session_dedup")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--clean-seeds", type=int, default=20)
    ap.add_argument("--workloads", default="append,wr")
    ap.add_argument("--bug-workload", default="append")
    ap.add_argument("--faults", default="all")
    ap.add_argument("--time-limit", type=float, default=8.0)
    ap.add_argument("--rate", type=float, default=80.0)
    args = ap.parse_args()
    kinds = parse_faults(args.faults)
    store = Path(tempfile.mkdtemp(prefix="kvcheck-txn-bugs-"))
    rows = []
    t0 = time.perf_counter()
    for bug in [b for b in args.bugs.split(",") if b]:
        first = None
        first_kinds: dict[str, int] = {}
        caught = 0
        for seed in range(args.seeds):
            valid, counts = one(args.bug_workload, seed, [bug], kinds, args, store)
            print(f"{bug:24} seed {seed:3} {valid!s:8} {counts}", flush=True)
            if valid is False:
                caught += 1
                if first is None:
                    first, first_kinds = seed, counts
        rows.append((bug, args.bug_workload, first, first_kinds, caught))
    clean: dict[str, dict[str, int]] = {}
    for workload in args.workloads.split(","):
        tally: dict[str, int] = {}
        for seed in range(args.clean_seeds):
            valid, counts = one(workload, seed, [], kinds, args, store)
            tally[str(valid)] = tally.get(str(valid), 0) + 1
            print(f"clean {workload:6} seed {seed:3} {valid!s:8} {counts}", flush=True)
        clean[workload] = tally
    print(f"\nfaults: {','.join(kinds)}; {args.time_limit:g} s simulated per run at {args.rate:g} ops/s")
    print(f"{'switch':24} {'workload':8} {'seeds':>5} {'caught':>6} {'first':>5}  anomaly at the first catching seed")
    for bug, workload, first, fk, caught in rows:
        print(f"{bug:24} {workload:8} {args.seeds:>5} {caught:>6} {first if first is not None else '-':>5}  "
              f"{', '.join(f'{k} x{n}' for k, n in fk.items()) or 'NOT caught'}")
    for workload, tally in clean.items():
        print(f"clean {workload}: {tally}")
    print(f"total wall {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
