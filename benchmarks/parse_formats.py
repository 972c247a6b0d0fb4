"""Parse-time figures for the history readers: a generated 100,000-op history written as
JSONL, Jepsen EDN (a vector), EDN maps one per line, and Jepsen log lines, plus the Knossos
corpus. Prints seconds and ops per second for each; fixed seed, so runs are comparable.

    python benchmarks/parse_formats.py [--ops N]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from kvcheck.checker.edn import dumps_value
from kvcheck.checker.formats import read_history, write_edn, write_jsonl
from kvcheck.checker.history import Op

ROOT = Path(__file__).resolve().parent.parent
KNOSSOS = ROOT.parent / "shared" / "corpora" / "knossos"


def generate(n: int, seed: int = 1) -> list[Op]:
    """A cas-register-shaped history: 10 processes, 5% info, reads, writes and cas."""
    rng = random.Random(seed)
    ops: list[Op] = []
    open_: dict[int, Op] = {}
    next_proc = 10
    procs = list(range(10))
    t = 0
    while len(ops) < n:
        t += rng.randint(1, 1000)
        i = rng.randrange(len(procs))
        p = procs[i]
        if p in open_:
            inv = open_.pop(p)
            r = rng.random()
            kind = "info" if r < 0.05 else "fail" if r < 0.2 and inv.f == "cas" else "ok"
            value = rng.randint(0, 4) if inv.f == "read" and kind == "ok" else inv.value
            ops.append(Op(type=kind, f=inv.f, value=value, process=p, time=t, index=len(ops)))
            if kind == "info":
                procs[i] = next_proc
                next_proc += 1
        else:
            f = rng.choice(["read", "write", "cas"])
            value = None if f == "read" else rng.randint(0, 4) if f == "write" else [rng.randint(0, 4), rng.randint(0, 4)]
            op = Op(type="invoke", f=f, value=value, process=p, time=t, index=len(ops))
            open_[p] = op
            ops.append(op)
    return ops


def write_edn_lines(ops: list[Op], path: Path) -> None:
    with open(path, "w") as out:
        for op in ops:
            out.write("{" + ", ".join(
                f":{k} {':' + v if k in ('type', 'f') else dumps_value(v)}" for k, v in op.to_dict().items()
            ) + "}\n")


def write_log(ops: list[Op], path: Path) -> None:
    with open(path, "w") as out:
        for op in ops:
            out.write(f"INFO  jepsen.util - {op.process}\t:{op.type}\t:{op.f}\t{dumps_value(op.value)}\n")


def timed(path: Path) -> tuple[float, float, int, str]:
    t0, c0 = time.perf_counter(), time.process_time()
    ops, fmt = read_history(path)
    return time.perf_counter() - t0, time.process_time() - c0, len(ops), fmt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ops", type=int, default=100_000)
    args = ap.parse_args()
    ops = generate(args.ops)
    with tempfile.TemporaryDirectory() as d:
        files = {
            "history.jsonl": lambda p: write_jsonl(ops, p),
            "history.edn": lambda p: write_edn(ops, p),
            "history-lines.edn": lambda p: write_edn_lines(ops, p),
            "jepsen.log": lambda p: write_log(ops, p),
        }
        print(f"{'file':24} {'format':11} {'ops':>8} {'MB':>6} {'wall s':>8} {'cpu s':>8} {'ops/cpu s':>10}")
        for name, write in files.items():
            path = Path(d) / name
            write(path)
            secs, cpu, n, fmt = timed(path)
            mb = path.stat().st_size / 1e6
            print(f"{name:24} {fmt:11} {n:8d} {mb:6.1f} {secs:8.3f} {cpu:8.3f} {n / cpu:10.0f}")
    if KNOSSOS.is_dir():
        t0, c0 = time.perf_counter(), time.process_time()
        total = 0
        files_ = sorted(KNOSSOS.rglob("*.edn"))
        for p in files_:
            total += len(read_history(p)[0])
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        mb = sum(p.stat().st_size for p in files_) / 1e6
        print(f"{'knossos corpus':24} {'edn':11} {total:8d} {mb:6.1f} {secs:8.3f} {cpu:8.3f} "
              f"{total / cpu:10.0f}   ({len(files_)} files)")


if __name__ == "__main__":
    main()
