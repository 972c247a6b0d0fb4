"""The regression suite's benchmark: the clean matrix on 1 and on 2 local worker processes
(target: >= 1.8x faster with 2), then optionally the full ``kvcheck regress``.

    python benchmarks/regress_full.py [--seeds 4] [--time-limit 20] [--jobs 2] [--full]

Prints the wall time of the same clean matrix (every workload x fault mix x seeds) run with
1 worker process and with ``--jobs`` processes, the speedup, and whether every seed gave the
same history (sha256) both times; and the runs' CPU seconds per worker process, since on a
shared machine (Linux autogroups give a session one share however many processes it runs)
the wall speedup says more about the neighbours than about the suite. ``--full`` then runs ``kvcheck regress`` with its default
budget (the bug matrix's time to detection per switch is in its table). Exits 1 if a clean
run was not valid or the histories differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from kvcheck.workloads.regress import FULL, make_plan, render_table, run_regress


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=4, help="seeds per (workload, fault mix) cell")
    ap.add_argument("--time-limit", type=float, default=20.0, help="simulated seconds per run")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--full", action="store_true", help="then run kvcheck regress with its full budget")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="kvcheck-regress-bench-"))
    budget = dataclasses.replace(FULL, clean_seeds=args.seeds, clean_time_limit=args.time_limit)
    walls: dict[int, float] = {}
    cpu: dict[int, tuple[float, float]] = {}
    keys = []
    ok = True
    for jobs in (1, args.jobs):
        plan = make_plan(budget, [], clean=True)
        t0 = time.perf_counter()
        outcome = run_regress(plan, store / f"jobs{jobs}", jobs=jobs, progress=False)
        walls[jobs] = time.perf_counter() - t0
        runs = outcome.document["clean"]["runs"]
        ok &= outcome.document["clean"]["ok"]
        keys.append(outcome.seed_keys())
        results = [r for cell in plan.clean for r in cell.results]
        per_worker: dict[str, float] = {}
        for r in results:
            per_worker[r.worker] = per_worker.get(r.worker, 0.0) + r.cpu_seconds
        cpu[jobs] = (sum(per_worker.values()), max(per_worker.values(), default=0.0))
        print(f"clean matrix, {runs} runs, {jobs} worker process{'es' if jobs > 1 else ''}: "
              f"{walls[jobs]:.1f} s wall ({'all valid' if outcome.document['clean']['ok'] else 'NOT all valid'})")
    same = keys[0] == keys[1]
    total, busiest = cpu[args.jobs]
    print(f"CPU seconds of the runs: {cpu[1][0]:.1f} on 1 process; {total:.1f} on {args.jobs}, the busiest "
          f"process {busiest:.1f} (on idle cores the wall speedup is bounded by {total / busiest:.2f}x)"
          if busiest else "no CPU time recorded")
    print(f"speedup with {args.jobs} processes: {walls[1] / walls[args.jobs]:.2f}x (target >= 1.8x with 2)")
    print(f"same histories with 1 and {args.jobs} processes: {'yes' if same else 'NO'}")
    if args.full:
        t0 = time.perf_counter()
        outcome = run_regress(make_plan(FULL, None), store / "full", jobs=args.jobs, progress=sys.stderr.isatty())
        print(render_table(outcome.document))
        print(f"kvcheck regress (full budget): {time.perf_counter() - t0:.1f} s wall, {outcome.out_dir}")
        ok &= outcome.ok
    print(f"run directories under {store}")
    return 0 if ok and same else 1


if __name__ == "__main__":
    sys.exit(main())
