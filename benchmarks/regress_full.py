"""The regression suite's benchmark: the clean matrix on 1 and on 2 local worker processes
(target: >= 1.8x faster with 2), then optionally the full ``kvcheck regress``.

    python benchmarks/regress_full.py [--seeds 4] [--time-limit 20] [--jobs 2] [--order longest-first|plan|both]
                                      [--shared-group] [--full]

Prints the wall time of the same clean matrix (every workload x fault mix x seeds) run with
1 worker process and with ``--jobs`` processes, the speedup, and whether every seed gave the
same history (sha256) every time. The machine may be shared, and then a wall-clock ratio
measures the neighbours as much as the suite, so it also prints, per measurement, the load
average around it, each worker's CPU and wall seconds of runs, the idle worker-seconds
(start-up, hand-overs between runs, the tail after a worker's last run: regress.json
``timing``) and the suite process's own CPU seconds; and it splits the wall speedup into
its factors (exactly: speedup = N x share x busy x CPU):

- share: the CPU share of a core each of the N workers got while running, over the single
  worker's (1.0 on idle cores; on a loaded machine the neighbours' doing, not the suite's);
- busy: the share of the N workers' time they spent in runs, over the single worker's (the
  schedule: start-up, hand-overs, the tail);
- CPU: the CPU seconds of all runs on 1 worker over those on N (runs that slow each other:
  shared caches and memory bandwidth; each run's work is the same, its history is).

N x busy x CPU is the speedup the suite would get on otherwise idle cores. The CPU-time
ratio (CPU seconds of all runs on 1 worker / the busiest of the N workers') is printed as
before. ``--order plan`` measures the clean runs handed out seed by seed (the order before
longest-expected-first), ``--order both`` the N workers both ways (plan order first).
Local workers run each in a session of their own (regress ``own_scheduling_group``);
``--shared-group`` also measures ``--jobs`` workers left in the suite's session.
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
from typing import Any

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


@dataclasses.dataclass
class Phase:
    name: str
    jobs: int
    own_groups: bool = True
    longest_first: bool = True
    wall: float = 0.0
    timing: dict[str, Any] = dataclasses.field(default_factory=dict)
    keys: set[Any] = dataclasses.field(default_factory=set)

    @property
    def cpu(self) -> float:
        return float(self.timing["runs_cpu_seconds"])

    @property
    def busy(self) -> float:
        return float(self.timing["busy_seconds"])

    @property
    def share(self) -> float:
        """CPU seconds per busy second of a worker: the share of a core it got."""
        return self.cpu / self.busy if self.busy else 0.0

    @property
    def utilisation(self) -> float:
        """Busy worker-seconds over all the workers' seconds."""
        capacity = self.timing["slots"] * self.timing["wall_seconds"]
        return self.busy / capacity if capacity else 0.0

    @property
    def busiest(self) -> float:
        return max((float(w["cpu_seconds"]) for w in self.timing["workers"]), default=0.0)


def measure(phase: Phase, budget: Any, store: Path) -> bool:
    plan = make_plan(budget, [], clean=True)
    before = loadavg()
    outcome = run_regress(plan, store / phase.name.replace(" ", "-"), jobs=phase.jobs, progress=False,
                          own_groups=phase.own_groups, longest_first=phase.longest_first)
    phase.timing = outcome.document["timing"]
    phase.wall = float(phase.timing["wall_seconds"])  # the workers' start to the last run's result
    phase.keys = outcome.seed_keys()
    doc, t = outcome.document, phase.timing
    label = (f"{phase.jobs} worker process{'es' if phase.jobs > 1 else ''}"
             + ("" if phase.own_groups else " in the suite's session")
             + ("" if phase.jobs == 1 else ", longest first" if phase.longest_first else ", plan order"))
    print(f"clean matrix, {doc['clean']['runs']} runs, {label}: {phase.wall:.1f} s wall "
          f"({'all valid' if doc['clean']['ok'] else 'NOT all valid'}); "
          f"load average {before} before, {loadavg()} after")
    for w in t["workers"]:
        busy, cpu, n = w["busy_seconds"], w["cpu_seconds"], w["runs"]
        print(f"  worker {w['worker']}: {n} runs, {cpu:.1f} CPU s in {busy:.1f} s of runs "
              f"({cpu / busy if busy else 0:.0%} of a core), {cpu / max(n, 1):.2f} CPU s per run; "
              f"idle {w['startup_seconds']:.1f} s starting, {w['between_seconds']:.1f} s between runs, "
              f"{w['tail_seconds']:.1f} s at the end")
    capacity = t["slots"] * t["wall_seconds"]
    print(f"  idle worker-seconds: {t['idle_seconds']:.1f} of {capacity:.1f} ({t['idle_seconds'] / capacity:.1%}): "
          f"start-up {t['startup_seconds']:.1f}, between runs {t['between_seconds']:.1f} "
          f"({1000 * (t['overhead_per_task'] or 0):.1f} ms per hand-over), tail {t['tail_seconds']:.1f}; "
          f"the suite's own CPU {t['parent_cpu_seconds']:.2f} s, the workers' {t['workers_cpu_seconds']:.1f} s "
          f"(runs {phase.cpu:.1f})")
    print(f"  the suite got {phase.cpu / phase.wall:.2f} cores on average", flush=True)
    return bool(doc["clean"]["ok"])


def compare(one: Phase, many: Phase) -> None:
    n = many.jobs
    wall = one.wall / many.wall
    share = many.share / one.share if one.share else 0.0
    busy = many.utilisation / one.utilisation if one.utilisation else 0.0
    cpu = one.cpu / many.cpu if many.cpu else 0.0
    what = "" if many.own_groups else " in the suite's session"
    what += ", longest first" if many.longest_first else ", plan order"
    print(f"speedup with {n} processes{what}: {wall:.2f}x wall (target >= 1.8x with 2; "
          f"{one.wall:.1f} s on 1, {many.wall:.1f} s on {n})")
    print(f"  = {n} x {share:.3f} share (each worker's CPU share {many.share:.2f} of a core vs "
          f"{one.share:.2f} alone: the machine's load) x {busy:.3f} busy (share of worker time in runs "
          f"{many.utilisation:.3f} vs {one.utilisation:.3f}) x {cpu:.3f} CPU (CPU s of the runs {one.cpu:.1f} "
          f"on 1, {many.cpu:.1f} on {n})")
    print(f"  on idle cores ({n} x busy x CPU): {n * busy * cpu:.2f}x; CPU-time ratio (CPU s on 1 / the busiest "
          f"worker's {many.busiest:.1f}): {one.cpu / many.busiest if many.busiest else 0:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=4, help="seeds per (workload, fault mix) cell")
    ap.add_argument("--time-limit", type=float, default=20.0, help="simulated seconds per run")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--order", choices=("longest-first", "plan", "both"), default="longest-first",
                    help="how the clean runs are handed to the --jobs workers")
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--shared-group", action="store_true",
                    help="also run --jobs workers left in the suite's session (as before)")
    ap.add_argument("--full", action="store_true", help="then run kvcheck regress with its full budget")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="kvcheck-regress-bench-"))
    budget = dataclasses.replace(FULL, clean_seeds=args.seeds, clean_time_limit=args.time_limit)
    print(f"{os.cpu_count()} cores, autogroup scheduling {autogroup()}")
    one = Phase("jobs1", 1)
    phases = [one]
    if args.order in ("plan", "both"):
        phases.append(Phase(f"jobs{args.jobs} plan", args.jobs, longest_first=False))
    if args.order in ("longest-first", "both"):
        phases.append(Phase(f"jobs{args.jobs}", args.jobs))
    if args.shared_group:
        phases.append(Phase(f"jobs{args.jobs} shared", args.jobs, own_groups=False))
    ok = True
    for phase in phases:
        ok &= measure(phase, budget, store)
    for many in phases[1:]:
        compare(one, many)
    same = all(p.keys == one.keys for p in phases)
    print(f"same histories with every worker count and order: {'yes' if same else 'NO'}")
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
