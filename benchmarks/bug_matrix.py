"""Detection power of the harness, measured as a user runs it: each bug switch x workload
over a few seeds of ``kvcheck run``, each run in its own process under a wall-clock limit.

    python benchmarks/bug_matrix.py [--bugs a,b] [--workloads register,kv] [--seeds 5]
        [--first-seed 0] [--faults partition,kill,pause,clock,packet,disk,member]
        [--extra "--swarm"] [--timeout 120] [--jobs 2] [--out FILE.json] [--stop-when-caught]

For every (switch, workload) it prints seeds run, caught (exit 1 from the checkers' verdict,
not from internal findings), the first catching seed, the median wall seconds per run, how
many histories were byte-identical to the clean run of the same seed (``same``: the bug
never reached the clients), and, when results.json has them, how often the switch fired
and how many internal invariant findings the runs had. ``--bugs clean`` runs the clean
store. A run killed by ``--timeout`` counts as not caught and is marked ``timeout``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ALL_FAULTS = "partition,kill,pause,clock,packet,disk,member"


def one_run(bug: str, workload: str, seed: int, faults: str, extra: list[str], timeout: float,
            store: Path) -> dict[str, Any]:
    run_store = store / f"{bug}-{workload}-{seed}"
    cmd = [sys.executable, "-m", "kvcheck", "run", "--workload", workload, "--faults", faults,
           "--seed", str(seed), "--store", str(run_store), "--no-progress", *extra]
    if bug != "clean":
        cmd += ["--bug", bug]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        code: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"bug": bug, "workload": workload, "seed": seed, "code": code,
                           "wall": round(wall, 2)}
    if code not in (0, 1, 2, "timeout"):
        out["stderr"] = proc.stderr[-400:]
    latest = run_store / "latest"
    hist = latest / "history.jsonl"
    if hist.is_file():
        out["hash"] = hashlib.sha256(hist.read_bytes()).hexdigest()[:16]
    res = latest / "results.json"
    if res.is_file():
        r = json.loads(res.read_text())
        out["checkers_valid"] = r.get("checkers_valid", r.get("valid"))
        findings = r.get("findings") or []
        out["findings"] = sum(f.get("count", 1) if isinstance(f, dict) else 1 for f in findings)
        out["fired"] = (r.get("bugs") or {}).get("fired", {}).get(bug)
        out["stopped"] = r.get("run", {}).get("stopped")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bugs", default="figure8_commit,stale_term_append,eager_truncation,"
                    "follower_commit_overrun,read_index_before_commit,unsafe_conf_change,"
                    "no_session_dedup")
    ap.add_argument("--workloads", default="register,kv")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--faults", default=ALL_FAULTS)
    ap.add_argument("--extra", default="", help="more kvcheck run options, e.g. --swarm")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--compare-clean", action="store_true",
                    help="also run the clean store on the same seeds and count identical histories")
    ap.add_argument("--stop-when-caught", action="store_true",
                    help="run a switch's seeds in order and stop at the first that catches it")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    bugs = args.bugs.split(",")
    workloads = args.workloads.split(",")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    extra = args.extra.split()
    store = Path(tempfile.mkdtemp(prefix="kvcheck-bugmatrix-"))
    names = bugs + (["clean"] if args.compare_clean and "clean" not in bugs else [])
    rows: list[dict[str, Any]] = []

    def group(bug: str, workload: str) -> None:
        """One switch x workload: its seeds in order (until the first catch, with
        --stop-when-caught)."""
        for seed in seeds:
            row = one_run(bug, workload, seed, args.faults, extra, args.timeout, store)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.stop_when_caught and row.get("checkers_valid") is False:
                return

    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futs = [pool.submit(group, b, w) for b in names for w in workloads]
        for fut in concurrent.futures.as_completed(futs):
            fut.result()
    clean = {(r["workload"], r["seed"]): r.get("hash") for r in rows if r["bug"] == "clean"}
    print(f"\n{'switch':26} {'workload':8} {'seeds':>5} {'caught':>6} {'first':>5} {'med wall':>8} "
          f"{'same':>4} {'fired':>10} {'findings':>8} timeouts")
    table = []
    for b in names:
        for w in workloads:
            rs = sorted((r for r in rows if r["bug"] == b and r["workload"] == w), key=lambda r: r["seed"])
            caught = [r for r in rs if r.get("checkers_valid") is False]
            same = sum(1 for r in rs if clean.get((w, r["seed"])) and r.get("hash") == clean[(w, r["seed"])])
            fired = [r["fired"] for r in rs if isinstance(r.get("fired"), int)]
            line = {"switch": b, "workload": w, "seeds": len(rs), "caught": len(caught),
                    "first": caught[0]["seed"] if caught else None,
                    "median_wall": round(statistics.median(r["wall"] for r in rs), 2) if rs else None,
                    "same_as_clean": same if b != "clean" else None,
                    "fired_runs": sum(1 for f in fired if f > 0) if fired else None,
                    "findings": sum(r.get("findings") or 0 for r in rs),
                    "timeouts": sum(1 for r in rs if r["code"] == "timeout")}
            table.append(line)
            print(f"{b:26} {w:8} {line['seeds']:5} {line['caught']:6} {line['first']!s:>5} "
                  f"{line['median_wall']:8} {line['same_as_clean']!s:>4} "
                  f"{(str(line['fired_runs']) + '/' + str(len(fired))) if fired else '-':>10} "
                  f"{line['findings']:8} {line['timeouts']}")
    if args.out:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows,
                                        "table": table}, indent=1, default=str) + "\n")
    print(f"store {store}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
