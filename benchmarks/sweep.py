"""The acceptance sweep: many seeds of a workload (register, kv, watch, lease: each checked
by its own checkers) with every fault kind on the clean store. Every run must be valid
(0 invalid, 0 unknown), have >= 200 ok ops, and show each requested fault kind started and
healed.

    python benchmarks/sweep.py [--seeds 200] [--workloads register,kv,watch,lease]
                               [--time-limit 30] [--faults all] [--store DIR] [--bug NAME]
                               [--target sim|local|etcd] [--nodes 5]

``--faults all`` means every kind the target supports (real-process targets cannot inject
clock and disk faults).

Prints one line per run and a summary; exits 1 if any run broke the rule. With ``--bug``
it reports how many seeds it took to catch the bug instead.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

from kvcheck.checker.history import pair_calls
from kvcheck.workloads.config import TARGETS, RunConfig
from kvcheck.workloads.nemesis import SIM_ONLY_KINDS, parse_faults
from kvcheck.workloads.run import run_once


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--workloads", default="register,kv")
    ap.add_argument("--faults", default="all")
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--store", type=Path, default=None, help="keep run directories here")
    ap.add_argument("--bug", action="append", default=[])
    ap.add_argument("--target", choices=TARGETS, default="sim")
    ap.add_argument("--nodes", type=int, default=5)
    args = ap.parse_args()
    kinds = parse_faults(args.faults)
    if args.target != "sim" and args.faults == "all":
        kinds = [k for k in kinds if k not in SIM_ONLY_KINDS]
    store = args.store or Path(tempfile.mkdtemp(prefix="kvcheck-sweep-"))
    bad = 0
    t_start = time.perf_counter()
    for workload in args.workloads.split(","):
        verdicts: collections.Counter[str] = collections.Counter()
        min_ok = None
        walls = []
        caught_at = None
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            cfg = RunConfig(workload=workload, faults=kinds, time_limit=args.time_limit, seed=seed,
                            bugs=args.bug, target=args.target, nodes=args.nodes)
            w0 = time.perf_counter()
            out = run_once(cfg, store, progress=False)
            walls.append(time.perf_counter() - w0)
            valid = out.results["valid"]
            verdict = {True: "valid", False: "invalid"}.get(valid, "unknown")
            verdicts[verdict] += 1
            ok = sum(1 for c in pair_calls(out.execution.ops) if c.outcome == "ok")
            min_ok = ok if min_ok is None else min(min_ok, ok)
            run = out.results["run"]
            healed = all(run["faults_started"].get(k, 0) >= 1 and
                         run["faults_healed"].get(k, 0) == run["faults_started"].get(k, 0) for k in kinds)
            problems = []
            if not args.bug:
                if verdict != "valid":
                    problems.append(verdict)
                if ok < 200:
                    problems.append(f"only {ok} ok ops")
                if not healed:
                    problems.append(f"faults started {run['faults_started']} healed {run['faults_healed']}")
                if out.results.get("findings"):
                    problems.append(f"findings: {out.results['findings'][:2]}")
            elif verdict == "invalid" and caught_at is None:
                caught_at = seed
            bad += bool(problems)
            found = sorted({a.get("kind") for c in out.results["checkers"].values()
                            for a in c.get("anomalies") or []})
            print(f"{workload:8} seed {seed:4} {verdict:8} ok ops {ok:5} wall {walls[-1]:6.2f}s "
                  f"{'PROBLEM: ' + '; '.join(problems) if problems else ''} "
                  f"{'anomalies: ' + ','.join(found) + ' ' if found else ''}{out.run_dir}", flush=True)
            if args.bug and caught_at is not None:
                break
        print(f"== {workload}: {sum(verdicts.values())} runs: {dict(verdicts)}; min ok ops {min_ok}; "
              f"wall per run median {sorted(walls)[len(walls) // 2]:.2f}s", flush=True)
        if args.bug:
            print(f"== {workload}: bug {','.join(args.bug)} "
                  f"{'caught at seed ' + str(caught_at) if caught_at is not None else 'NOT caught'}")
    print(f"total wall {time.perf_counter() - t_start:.0f}s; runs breaking the rule: {bad}; store {store}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
