"""Simulation speed: simulated seconds per wall second and ops/s for 5 nodes, 10 clients,
register with partitions (the issue's figure), plus the wall time of a whole
`kvcheck run --workload register --faults partition` (30 s simulated, checked and reported).

    python benchmarks/sim_speed.py [--time-limit 30] [--seeds 3] [--rate 50] [--repeat K] [--steps]

Targets: >= 20x real time; the whole 30 s run in <= 10 s wall. The machine's load average is
printed with each row: on a shared machine wall time is noisy. sim/cpu (simulated seconds
per CPU second of this process) excludes waiting, but not a host that runs this VM slower;
``--repeat K`` runs each seed K times (the same history) and also reports the fastest, as
timeit does. ``--steps`` also counts trio scheduler batches, the scheduler's fired timers
and task steps per simulated second and per op (a second, instrumented execution of the
same seed; its timing is not reported).
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from kvcheck.checker.history import pair_calls
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.execution import Progress
from kvcheck.workloads.run import run_once
from kvcheck.workloads.sim.cluster import execute_sim


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=50.0, help="ops/s (0: as fast as the clients go)")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--steps", action="store_true", help="also count scheduler batches and task steps")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run each seed this many times (the same history each time) and also "
                         "report the fastest, as timeit does: slower repeats measure other load")
    args = ap.parse_args()
    print(f"register, partitions, {args.nodes} nodes, {args.concurrency} clients, "
          f"rate {args.rate or 'unlimited'}, {args.time_limit:g}s simulated per run")
    print(f"{'seed':>4} {'sim s':>7} {'exec wall':>9} {'cpu':>6} {'sim/wall':>8} {'sim/cpu':>7} "
          f"{'ops':>6} {'ops/wall s':>10} {'ops/sim s':>9} {'full run wall':>13} {'load avg':>9}")
    ratios = []
    bests: list[float] = []
    fulls = []
    for seed in range(args.seeds):
        cfg = RunConfig(workload="register", faults=["partition"], nodes=args.nodes,
                        concurrency=args.concurrency, time_limit=args.time_limit,
                        rate=args.rate or None, seed=seed).with_schedule()
        times = []
        for _ in range(max(1, args.repeat)):
            w0, c0 = time.perf_counter(), time.process_time()
            ex = execute_sim(cfg, Progress(cfg.time_limit, enabled=False))
            times.append((time.perf_counter() - w0, time.process_time() - c0))
        wall, cpu = times[0]
        sim = float(ex.info["simulated_seconds"])
        best = min(t[0] for t in times)
        bests.append(sim / best)
        ops = sum(1 for c in pair_calls(ex.ops) if c.completion is not None)
        with tempfile.TemporaryDirectory() as tmp:
            w1 = time.perf_counter()
            run_once(RunConfig(**{**cfg.to_json(), "schedule": []}), Path(tmp), progress=False)
            full = time.perf_counter() - w1
        ratios.append(sim / wall)
        fulls.append(full)
        print(f"{seed:>4} {sim:>7.1f} {wall:>9.2f} {cpu:>6.2f} {sim / wall:>7.1f}x {sim / cpu:>6.1f}x "
              f"{ops:>6} {ops / wall:>10.0f} {ops / sim:>9.1f} {full:>12.2f}s {os.getloadavg()[0]:>9.2f}")
        if args.steps:
            print_steps(cfg, ops)
    print(f"median: {sorted(ratios)[len(ratios) // 2]:.1f}x real time; "
          f"full `kvcheck run` (run + check + report) median {sorted(fulls)[len(fulls) // 2]:.2f}s wall")
    if args.repeat > 1:
        print(f"fastest of {args.repeat} per seed: median {sorted(bests)[len(bests) // 2]:.1f}x real time "
              f"(per seed: {', '.join(f'{b:.1f}x' for b in bests)})")


def print_steps(cfg: RunConfig, ops: int) -> None:
    """Re-run ``cfg`` with a trio Instrument that counts batches (waits for I/O, one per
    scheduler pass) and task steps by task name. The nodes' Ready passes run inline in the
    scheduler's clock hook (Node ready_soon), so they are not task steps; the count of
    timers the scheduler fired (deliveries, Ready passes, sleeps) is printed beside them."""
    import trio

    from kvcheck.workloads.sim import cluster as sim_cluster

    steps: collections.Counter[str] = collections.Counter()
    batches = 0

    class Count(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            steps[task.name.rsplit(".", 1)[-1]] += 1

        def before_io_wait(self, timeout: float) -> None:
            nonlocal batches
            batches += 1

    real_run = trio.run
    clocks: list[Any] = []

    def instrumented(fn: Any, *a: Any, **k: Any) -> Any:
        clocks.append(k.get("clock"))
        return real_run(fn, *a, instruments=[Count()], **k)

    sim_cluster.trio.run = instrumented  # type: ignore[assignment]
    try:
        ex = execute_sim(cfg, Progress(cfg.time_limit, enabled=False))
    finally:
        sim_cluster.trio.run = real_run  # type: ignore[assignment]
    sim = float(ex.info["simulated_seconds"])
    total = sum(steps.values())
    fired = getattr(clocks[0], "fired", 0) if clocks else 0
    print(f"      batches {batches / sim:.0f}/sim s ({batches / ops:.1f}/op), timers fired "
          f"{fired / sim:.0f}/sim s ({fired / ops:.1f}/op), task steps "
          f"{total / sim:.0f}/sim s ({total / ops:.1f}/op): " +
          ", ".join(f"{k} {v / sim:.0f}/s" for k, v in steps.most_common(6)))


if __name__ == "__main__":
    main()
