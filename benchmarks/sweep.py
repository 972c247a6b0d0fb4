"""The acceptance sweep: many seeds of a workload (register, kv, watch, lease: each checked
by its own checkers) with every fault kind on the clean store. Every run must be valid
(0 invalid, 0 unknown), have >= 200 ok ops, and show each requested fault kind started and
healed.

    python benchmarks/sweep.py [--seeds 200] [--workloads register,kv,watch,lease]
                               [--time-limit 30] [--faults all] [--store DIR] [--bug NAME]
                               [--target sim|local|etcd] [--nodes 5] [-j 1] [--min-ok 200]

``--faults all`` means every kind the target supports (real-process targets cannot inject
clock and disk faults).

``-j N`` runs N seeds at a time, each in its own process (a real target's runs mostly wait on
real time; keep N small on a shared machine). Prints one line per run, in seed order, and a
summary per workload; exits 1 if any run broke the rule. An invalid run against etcd whose
every anomaly is a known etcd defect (kvcheck.workloads.etcd.known) is still invalid, and
the line and the summary name the defect. With ``--bug``
it reports how many seeds it took to catch the bug instead.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kvcheck.checker.history import pair_calls
from kvcheck.workloads.config import TARGETS, RunConfig
from kvcheck.workloads.etcd.known import PROGRESS_RACE, progress_race
from kvcheck.workloads.nemesis import SIM_ONLY_KINDS, parse_faults
from kvcheck.workloads.run import run_once


def one_run(workload: str, seed: int, kinds: list[str], args: argparse.Namespace, store: Path) -> dict[str, Any]:
    """One seed: its verdict, ok ops, wall time, anomaly kinds and what broke the rule."""
    cfg = RunConfig(workload=workload, faults=kinds, time_limit=args.time_limit, seed=seed,
                    bugs=args.bug, target=args.target, nodes=args.nodes)
    w0 = time.perf_counter()
    try:
        out = run_once(cfg, store, progress=False)
    except Exception as exc:  # a harness error is a result of the sweep too, not the end of it
        return {"workload": workload, "seed": seed, "verdict": "error", "ok": 0, "wall": time.perf_counter() - w0,
                "problems": [f"error: {type(exc).__name__}: {exc}"[:500]], "found": [], "known": "", "run_dir": ""}
    wall = time.perf_counter() - w0
    valid = out.results["valid"]
    verdict = {True: "valid", False: "invalid"}.get(valid, "unknown")
    ok = sum(1 for c in pair_calls(out.execution.ops) if c.outcome == "ok")
    run = out.results["run"]
    healed = all(run["faults_started"].get(k, 0) >= 1 and
                 run["faults_healed"].get(k, 0) == run["faults_started"].get(k, 0) for k in kinds)
    problems = []
    if not args.bug:
        if verdict != "valid":
            problems.append(verdict)
        if ok < args.min_ok:
            problems.append(f"only {ok} ok ops")
        if not healed:
            problems.append(f"faults started {run['faults_started']} healed {run['faults_healed']}")
        if out.results.get("findings"):
            problems.append(f"findings: {out.results['findings'][:2]}")
    found = sorted({a.get("kind") for c in out.results["checkers"].values()
                    for a in c.get("anomalies") or []})
    # an invalid etcd run whose every anomaly is a known etcd defect is named (still invalid)
    known = PROGRESS_RACE if verdict == "invalid" and progress_race(out.results, out.execution.ops) else ""
    return {"workload": workload, "seed": seed, "verdict": verdict, "ok": ok, "wall": wall,
            "problems": problems, "found": found, "known": known, "run_dir": str(out.run_dir)}


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
    ap.add_argument("--min-ok", type=int, default=200, help="ok ops a run must have (the liveness rule)")
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="runs at a time, each in its own process (real targets wait on real time)")
    args = ap.parse_args()
    kinds = parse_faults(args.faults)
    if args.target != "sim" and args.faults == "all":
        kinds = [k for k in kinds if k not in SIM_ONLY_KINDS]
    store = args.store or Path(tempfile.mkdtemp(prefix="kvcheck-sweep-"))
    bad = 0
    t_start = time.perf_counter()
    workloads = args.workloads.split(",")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    with contextlib.ExitStack() as stack:
        if args.jobs > 1:
            pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(args.jobs))
            futures = {(w, s): pool.submit(one_run, w, s, kinds, args, store) for w in workloads for s in seeds}

            def result(w: str, s: int) -> dict[str, Any]:
                return futures[w, s].result()
        else:
            def result(w: str, s: int) -> dict[str, Any]:
                return one_run(w, s, kinds, args, store)
        for workload in workloads:
            verdicts: collections.Counter[str] = collections.Counter()
            known: collections.Counter[str] = collections.Counter()
            min_ok = None
            walls = []
            caught_at = None
            for seed in seeds:
                r = result(workload, seed)
                walls.append(r["wall"])
                verdicts[r["verdict"]] += 1
                min_ok = r["ok"] if min_ok is None else min(min_ok, r["ok"])
                problems, found = r["problems"], r["found"]
                if args.bug and r["verdict"] == "invalid" and caught_at is None:
                    caught_at = seed
                bad += bool(problems)
                if r["known"]:
                    known[r["known"]] += 1
                print(f"{workload:8} seed {seed:4} {r['verdict']:8} ok ops {r['ok']:5} wall {r['wall']:6.2f}s "
                      f"{'PROBLEM: ' + '; '.join(problems) if problems else ''} "
                      f"{'anomalies: ' + ','.join(found) + ' ' if found else ''}"
                      f"{'known etcd defect: ' + r['known'] + ' ' if r['known'] else ''}{r['run_dir']}", flush=True)
                if args.bug and caught_at is not None:
                    break
            explained = "".join(f"; {n} invalid explained by {k}" for k, n in known.items())
            print(f"== {workload}: {sum(verdicts.values())} runs: {dict(verdicts)}{explained}; min ok ops {min_ok}; "
                  f"wall per run median {sorted(walls)[len(walls) // 2]:.2f}s", flush=True)
            if args.bug:
                print(f"== {workload}: bug {','.join(args.bug)} "
                      f"{'caught at seed ' + str(caught_at) if caught_at is not None else 'NOT caught'}")
        if args.jobs > 1:
            for f in futures.values():
                f.cancel()
    print(f"total wall {time.perf_counter() - t_start:.0f}s; runs breaking the rule: {bad}; store {store}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
