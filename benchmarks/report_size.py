"""How big report.html gets and how long it takes to write, for 1k/10k/100k-op histories.

Why: the report must scale to 100,000 ops with a file size linear in the ops. This script
builds synthetic register histories (10 concurrent clients, seeded latencies, 1% info ops
that retire their process, 2% failures, a rotating fault schedule, and an invalid result
with a minimal history and a final path), writes the report, and prints bytes/op and the
generation time. With ``--browser`` (Debian's chromium) it also prints chromium's wall time
to load and dump the page, and the page's own time from script start to its first drawn frame
(JSON parse, decode, per-row index, draw) and for one frame.

    python benchmarks/report_size.py [--sizes 1000,10000,100000] [--browser]
"""

from __future__ import annotations

import argparse
import heapq
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from kvcheck.checker.history import Op
from kvcheck.checker.report import write_report

FAULTS = ("partition", "kill", "pause", "clock")


def synthetic(n_events: int, *, seed: int = 1, concurrency: int = 10) -> tuple[list[Op], dict[str, Any]]:
    """A register history of about ``n_events`` events, and an invalid results dict."""
    rng = random.Random(seed)
    heap: list[tuple[int, int, int, str]] = []  # (time ns, tiebreak, slot, what)
    procs = list(range(concurrency))
    next_proc = concurrency
    pending: dict[int, tuple[str, Any, str]] = {}
    ops: list[Op] = []
    seq = 0
    for slot in range(concurrency):
        heapq.heappush(heap, (rng.randrange(1_000_000), seq, slot, "invoke"))
        seq += 1
    fault_at, fault_on, fault_n = 500_000_000, False, 0
    value = 0
    while len(ops) < n_events:
        t, _, slot, what = heapq.heappop(heap)
        while fault_at <= t:
            kind = FAULTS[fault_n % len(FAULTS)]
            edge = "stop" if fault_on else "start"
            ops.append(Op(type="info", f=f"{edge}-{kind}", value=None, process="nemesis", time=fault_at))
            ops.append(Op(type="info", f=f"{edge}-{kind}", value=f"n{fault_n % 5 + 1}" if edge == "start" else "healed",
                          process="nemesis", time=fault_at + 1000))
            if fault_on:
                fault_n += 1
                fault_at += 1_000_000_000
            else:
                fault_at += 1_000_000_000
            fault_on = not fault_on
        p = procs[slot]
        if what == "invoke":
            f = rng.choice(("read", "write", "cas"))
            v: Any = None
            if f == "write":
                value += 1
                v = value
            elif f == "cas":
                v = [rng.randrange(value + 1), value + 1]
                value += 1
            ops.append(Op(type="invoke", f=f, value=v, process=p, time=t))
            outcome = "ok"
            roll = rng.random()
            if roll < 0.01:
                outcome = "info"
            elif roll < 0.03 or (f == "cas" and roll < 0.5):
                outcome = "fail"
            pending[slot] = (f, v, outcome)
            heapq.heappush(heap, (t + int(rng.lognormvariate(14.0, 0.6)), seq, slot, "complete"))
        else:
            f, v, outcome = pending.pop(slot)
            shown = rng.randrange(value + 1) if f == "read" and outcome == "ok" else v
            op = Op(type=outcome, f=f, value=shown, process=p, time=t)
            if outcome == "fail":
                op.error = "timeout" if f != "cas" else None
            ops.append(op)
            if outcome == "info":
                procs[slot] = next_proc
                next_proc += 1
            heapq.heappush(heap, (t + rng.randrange(50_000, 400_000), seq, slot, "invoke"))
        seq += 1
    for i, op in enumerate(ops):
        op.index = i
        op.position = i

    def d(op: Op) -> dict[str, Any]:
        return {**op.to_dict(), "index": op.id}

    reads = [i for i, op in enumerate(ops) if op.f == "read" and op.type == "ok"]
    failing = ops[reads[len(reads) * 3 // 4]]
    inv = next(op for op in reversed(ops[: failing.id]) if op.process == failing.process and op.type == "invoke")
    writes = [op for op in ops[: inv.id] if op.f == "write" and op.type in ("invoke", "ok")][-6:]
    minimal = sorted([*writes, inv, failing], key=lambda o: o.id)
    results = {"valid": False, "checkers": {"linearizable": {
        "valid": False, "model": "cas-register", "check_seconds": 1.5,
        "keys": {"r": {"valid": False, "op": d(failing), "previous_ok": d(writes[-1]),
                       "final_paths": [[{"op": d(o), "model": f"register {o.value}"} for o in writes if o.type == "ok"]
                                       + [{"op": d(failing), "model": f"can't read {failing.value}"}]],
                       "minimal_history": [d(o) for o in minimal]}}}}}
    return ops, results


def browser_ms(page: Path) -> tuple[float, float, float]:
    """(chromium's wall seconds to load and dump the page, the page's own milliseconds from
    script start to its first drawn frame, the last frame's draw milliseconds)."""
    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("--browser needs Debian's chromium on PATH")
    with tempfile.TemporaryDirectory() as profile:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--virtual-time-budget=1000", "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=600, check=False)
        elapsed = time.perf_counter() - t0
    first = re.search(r'data-first-draw-ms="([0-9.]+)"', proc.stdout)
    frame = re.search(r'data-draw-ms="([0-9.]+)"', proc.stdout)
    if proc.returncode != 0 or first is None or frame is None:
        raise SystemExit(f"chromium did not render {page}: {proc.stderr[-2000:]}")
    return elapsed, float(first.group(1)), float(frame.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--browser", action="store_true", help="also time headless chromium's first draw")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        head = f"{'ops':>8} {'calls':>7} {'bytes':>11} {'bytes/op':>9} {'marginal':>8} {'write s':>8}"
        if args.browser:
            head += f" {'chromium s':>10} {'1st draw ms':>11} {'frame ms':>8}"
        print(head)
        empty = write_report([], {"valid": True, "checkers": {"linearizable": {"valid": True}}},
                             Path(tmp) / "empty.html", title="empty")
        prev = (0, empty.stat().st_size)  # the fixed part: CSS, JS, page structure
        for n in sizes:
            ops, results = synthetic(n)
            out = Path(tmp) / f"report-{n}.html"
            t0 = time.perf_counter()
            write_report(ops, results, out, title=f"synthetic {n}")
            took = time.perf_counter() - t0
            size = out.stat().st_size
            calls = sum(1 for op in ops if op.type == "invoke" and op.process != "nemesis")
            marginal = (size - prev[1]) / (len(ops) - prev[0])  # bytes per added op
            prev = (len(ops), size)
            line = f"{len(ops):>8} {calls:>7} {size:>11} {size / len(ops):>9.1f} {marginal:>8.1f} {took:>8.3f}"
            if args.browser:
                wall, first, frame = browser_ms(out)
                line += f" {wall:>10.2f} {first:>11.1f} {frame:>8.1f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
