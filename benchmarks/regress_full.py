"""The regression suite's benchmark: the clean matrix on 1 and on 2 local worker processes
(target: >= 1.8x faster with 2), then optionally the full ``kvcheck regress``.

    python benchmarks/regress_full.py [--seeds 4] [--time-limit 20] [--jobs 2] [--shared-group] [--full]

Prints the wall time of the same clean matrix (every workload x fault mix x seeds) run with
1 worker process and with ``--jobs`` processes, the speedup, and whether every seed gave the
same history (sha256) both times. Since the machine may be shared, it also prints the load
average around each measurement and, per worker process, the CPU seconds of its runs and
their wall seconds: the CPU-time ratio (CPU seconds of all runs / the busiest worker's) is
the speedup the suite would get on idle cores, and CPU / wall says what share of a core each
worker actually got. Local workers run each in a session of their own (regress
``own_scheduling_group``: with Linux autogroup scheduling the CPU is shared per session, so
workers sharing the suite's session share one session's CPU); ``--shared-group`` also
measures ``--jobs`` workers left in the suite's session, the way they ran before.
``--full`` then runs ``kvcheck regress`` with its default budget. Exits 1 if a clean run was
not valid or the histories differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

from kvcheck.workloads.regress import FULL, make_plan, render_table, run_regress


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def autogroup() -> str:
    try:
        return "on" if Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1" else "off"
    except OSError:
        return "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=4, help="seeds per (workload, fault mix) cell")
    ap.add_argument("--time-limit", type=float, default=20.0, help="simulated seconds per run")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--shared-group", action="store_true",
                    help="also run --jobs workers left in the suite's session (as before)")
    ap.add_argument("--full", action="store_true", help="then run kvcheck regress with its full budget")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="kvcheck-regress-bench-"))
    budget = dataclasses.replace(FULL, clean_seeds=args.seeds, clean_time_limit=args.time_limit)
    print(f"{os.cpu_count()} cores, autogroup scheduling {autogroup()}")
    walls: dict[str, float] = {}
    cpu: dict[str, tuple[float, float]] = {}
    keys = []
    ok = True
    phases = [("1", 1, True), (str(args.jobs), args.jobs, True)]
    if args.shared_group:
        phases.append((f"{args.jobs} shared", args.jobs, False))
    for name, jobs, own in phases:
        plan = make_plan(budget, [], clean=True)
        before = loadavg()
        t0 = time.perf_counter()
        outcome = run_regress(plan, store / f"jobs{name.replace(' ', '-')}", jobs=jobs, progress=False,
                              own_groups=own)
        walls[name] = time.perf_counter() - t0
        runs = outcome.document["clean"]["runs"]
        ok &= outcome.document["clean"]["ok"]
        keys.append(outcome.seed_keys())
        results = [r for cell in plan.clean for r in cell.results]
        per_worker: dict[str, tuple[float, float, int]] = {}
        for r in results:
            c0, w0, n0 = per_worker.get(r.worker, (0.0, 0.0, 0))
            per_worker[r.worker] = (c0 + r.cpu_seconds, w0 + r.wall_seconds, n0 + 1)
        cpu[name] = (sum(w[0] for w in per_worker.values()), max((w[0] for w in per_worker.values()), default=0.0))
        label = f"{jobs} worker process{'es' if jobs > 1 else ''}" + ("" if own else " in the suite's session")
        print(f"clean matrix, {runs} runs, {label}: {walls[name]:.1f} s wall "
              f"({'all valid' if outcome.document['clean']['ok'] else 'NOT all valid'}); "
              f"load average {before} before, {loadavg()} after")
        for worker, (c, w, n) in sorted(per_worker.items()):
            print(f"  worker {worker}: {n} runs, {c:.1f} CPU s in {w:.1f} s of runs "
                  f"({c / w:.0%} of a core), {c / max(n, 1):.2f} CPU s per run" if w else f"  worker {worker}: {n} runs")
        print(f"  the suite got {cpu[name][0] / walls[name]:.2f} cores on average")
    same = all(k == keys[0] for k in keys)
    one, many = "1", str(args.jobs)
    total, busiest = cpu[many]
    print(f"CPU seconds of the runs: {cpu[one][0]:.1f} on 1 process; {total:.1f} on {args.jobs}, the busiest "
          f"process {busiest:.1f}: CPU-time ratio {cpu[one][0] / busiest:.2f}x (the speedup on idle cores)"
          if busiest else "no CPU time recorded")
    print(f"speedup with {args.jobs} processes: {walls[one] / walls[many]:.2f}x wall (target >= 1.8x with 2)")
    if args.shared_group:
        print(f"speedup with {args.jobs} processes in the suite's session: "
              f"{walls[one] / walls[f'{args.jobs} shared']:.2f}x wall")
    print(f"same histories with every worker count: {'yes' if same else 'NO'}")
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
