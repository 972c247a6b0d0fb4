"""How fast is the Raft core itself (no disk, no network, no trio)?

Runs a 3-node in-memory cluster (kvcheck.reference.raft.testing.Cluster, the synchronous
driver that follows the Ready contract) and prints:
- committed entries per second when the leader gets proposals one at a time and the cluster
  settles after each (a lower bound: one Ready cycle per entry on every node);
- committed entries per second with batches of 16 and 64 proposals per cycle;
- the cost of one tick on an idle 3-node cluster, and of a full fuzz schedule step.
All figures are CPU-bound wall-clock measurements on this machine; run it on a quiet machine.

    python benchmarks/raft_core.py [--seconds 2]
"""

from __future__ import annotations

import argparse
import time

from kvcheck.reference.raft.testing import Cluster, fuzz


def committed_per_second(batch: int, seconds: float) -> float:
    c = Cluster(checks=False)
    c.add_nodes(3)
    c.stabilize()
    c.elect(1)
    start_commit = c.raw(1).status().commit
    payload = b"x" * 100
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(batch):
            c.raw(1).propose(payload)
        c.stabilize()
    elapsed = time.perf_counter() - t0
    return (c.raw(1).status().commit - start_commit) / elapsed


def tick_cost(ticks: int) -> float:
    c = Cluster(checks=False)
    c.add_nodes(3)
    c.stabilize()
    c.elect(1)
    t0 = time.perf_counter()
    for _ in range(ticks):
        for nid in (1, 2, 3):
            c.tick(nid)
        c.stabilize()
    return (time.perf_counter() - t0) / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    for batch in (1, 16, 64):
        rate = committed_per_second(batch, args.seconds)
        print(f"3 nodes, batch {batch:>2}: {rate:10,.0f} committed entries/s (100-byte entries)")
    per_tick = tick_cost(2000)
    print(f"3 nodes idle, one tick on each + heartbeat round: {per_tick * 1e6:8.1f} us")
    t0 = time.perf_counter()
    steps = 0
    for seed in range(5):
        steps += fuzz(seed, 400).steps
    print(f"fuzz schedule with safety checks: {(time.perf_counter() - t0) / steps * 1e3:.2f} ms/step")


if __name__ == "__main__":
    main()
