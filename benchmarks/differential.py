"""The reference store against real etcd, op by op, for long runs (workloads/etcd/differential.py).

Starts a 3-member reference cluster and a 3-member etcd cluster (Debian's etcd-server) on
127.0.0.1, runs ``--sequences`` random single-client sequences (Hypothesis's generator, no
shrinking) on both and compares every response field by field. Prints the number of
sequences and operations compared and every difference (the first of each sequence);
exits 1 if there was any.

    python benchmarks/differential.py [--sequences 200] [--max-ops 16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings

from kvcheck.reference import cluster as rc
from kvcheck.reference.client import open_client
from kvcheck.workloads.etcd.client import EtcdClient
from kvcheck.workloads.etcd.cluster import plain_cluster
from kvcheck.workloads.etcd.differential import (
    Difference,
    EtcdStore,
    Op,
    RefStore,
    compare_sequence,
    sequences,
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sequences", type=int, default=200)
    ap.add_argument("--max-ops", type=int, default=16)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kvcheck-differential-"))
    info = rc.start_cluster(base / "reference", 3)
    counts = {"sequences": 0, "ops": 0}
    differences: list[Difference] = []
    t0 = time.perf_counter()
    try:
        with plain_cluster(base / "etcd", 3) as etcd_endpoints:

            async def one(ops: list[Op]) -> None:
                async with open_client(info.endpoints()) as ref:
                    etcd = EtcdClient(etcd_endpoints)
                    try:
                        n, diff = await compare_sequence(RefStore(ref), EtcdStore(etcd), ops, tag="bench")
                    finally:
                        await etcd.aclose()
                counts["sequences"] += 1
                counts["ops"] += n
                if diff is not None:
                    differences.append(diff)
                    print(diff, flush=True)

            @settings(max_examples=args.sequences, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))
            @given(ops=sequences(args.max_ops))
            def run(ops: list[Op]) -> None:
                trio.run(one, ops)

            run()
    finally:
        rc.stop_cluster(info)
    print(f"{counts['sequences']} sequences, {counts['ops']} operations compared in "
          f"{time.perf_counter() - t0:.0f}s; {len(differences)} sequences with a difference")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
