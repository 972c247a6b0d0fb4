"""WAL appends per second on the real disk, with one fsync per batch of 1, 16 and 256 records.

Each record is one Raft entry (100-byte payload by default) saved through ``RaftWal.save``
with the hard state, as the node does per Ready; a batch ends with one ``sync()`` (fsync).
Runs in a temporary directory (``--dir`` to choose the disk) for a fixed time per batch
size and prints records/s, fsyncs/s and MB/s, and how fast reopening replays what was
written; then the same on the in-memory file system
(the storage layer's own CPU cost, which is what the simulation pays). ``main()`` returns the figures so
benchmarks/kv_apply.py can call it:

    python benchmarks/wal_append.py [--seconds 3] [--payload 100] [--batches 1,16,256] [--dir DIR] [--no-memory]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass

from kvcheck.reference.storage import FileSystem, MemoryFileSystem, OsFileSystem, RaftWal


@dataclass(frozen=True)
class Figure:
    disk: str  # "os" (fsync on the real disk) or "memory" (MemoryFileSystem: CPU cost only)
    batch: int
    records: int
    fsyncs: int
    seconds: float
    payload: int
    recovery_seconds: float  # RaftWal.open + load() of what was written

    @property
    def recovered_per_s(self) -> float:
        return self.records / self.recovery_seconds

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds

    @property
    def fsyncs_per_s(self) -> float:
        return self.fsyncs / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.records * self.payload / self.seconds / 1e6


def measure(batch: int, *, seconds: float, payload: int, directory: str | None, disk: str = "os") -> Figure:
    """Append records in batches of ``batch`` with one fsync each, for about ``seconds``."""
    with tempfile.TemporaryDirectory(prefix="wal-bench-", dir=directory) as tmp:
        fs: FileSystem = OsFileSystem(tmp) if disk == "os" else MemoryFileSystem()
        log = RaftWal.open(fs, "wal")
        data = bytes(payload)
        index = 0
        fsyncs = 0
        start = time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(batch):
                index += 1
                log.save((1, 1, index - 1), [(index, 1, 0, data)])
            log.sync()
            fsyncs += 1
            now = time.perf_counter()
            if now >= deadline:
                break
        log.close()
        began = time.perf_counter()
        recovered = RaftWal.open(fs, "wal").load()
        recovery = time.perf_counter() - began
        if len(recovered.entries) != index:
            raise AssertionError(f"recovered {len(recovered.entries)} entries, wrote {index}")
        return Figure(disk, batch, index, fsyncs, now - start, payload, recovery)


def main(argv: list[str] | None = None) -> list[Figure]:
    """Run the benchmark, print one line per batch size, return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per batch size")
    parser.add_argument("--payload", type=int, default=100, help="entry data bytes")
    parser.add_argument("--batches", default="1,16,256", help="comma-separated batch sizes")
    parser.add_argument("--dir", default=None, help="directory for the temporary WAL (default: system temp)")
    parser.add_argument("--no-memory", action="store_true", help="skip the in-memory (CPU-only) figures")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b]
    where = args.dir or tempfile.gettempdir()
    print(f"WAL appends (RaftWal.save per record, fsync per batch), {args.payload}-byte entries, in {where}")
    figures = []
    disks = ["os"] if args.no_memory else ["os", "memory"]
    for disk in disks:
        if disk == "memory":
            print("Same on MemoryFileSystem (no real I/O: the storage layer's CPU cost, as in the simulation)")
        for batch in batches:
            fig = measure(batch, seconds=args.seconds, payload=args.payload, directory=args.dir, disk=disk)
            figures.append(fig)
            print(
                f"  batch {batch:>4}: {fig.records_per_s:>10,.0f} records/s  {fig.fsyncs_per_s:>8,.0f} fsyncs/s"
                f"  {fig.mb_per_s:>7.2f} MB/s  ({fig.records} records in {fig.seconds:.2f} s;"
                f" reopened at {fig.recovered_per_s:,.0f} records/s)"
            )
    return figures


if __name__ == "__main__":
    main()
