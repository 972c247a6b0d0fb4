"""Port collisions of real-process clusters: how often handed-out ports repeat, and whether
back-to-back cluster starts ever fail on a port.

The flaky local-target start ("found no leader within 30 s", "cannot listen ... Address
already in use") came from ports handed out by binding port 0 and closing: the kernel picks
each from the ephemeral range at random, so a cluster's ports could repeat, and until the
member bound its port any process's bind(0) or outgoing connection could take it. Ports are
now held (reference/cluster.py ``PortHold``) from the moment they are chosen until the
member owns them, outside the ephemeral range.

``--batches`` draws batches of ``--ports`` ports (the local target takes 3 per member plus
a proxy on port 0: 15 for 5 members) both ways and prints how many batches hold a repeated
port. ``--starts`` then starts and stops that many clusters back to back (``--target
cluster``: ``kvcheck cluster``'s start_cluster; ``local``: the local target's LocalCluster
with its fault proxies) and prints how many failed; ``--rival`` runs a thread meanwhile
that listens on random ports of the same pool: ``kvcheck`` as a second kvcheck process
starting its own members would (it cannot take a held port), ``reuseaddr`` as a program
binding ports of its own choosing with SO_REUSEADDR would (it can bind beside a held port
that has no listener yet: the limit of holding, see reference/cluster.py).

    python benchmarks/port_collisions.py [--batches 2000] [--ports 15] [--starts 200]
        [--nodes 3] [--target cluster|local] [--rival kvcheck|reuseaddr]
"""

from __future__ import annotations

import argparse
import random
import socket
import tempfile
import threading
import time
import traceback
from pathlib import Path

import trio

from kvcheck.reference import cluster as rc


def kernel_port() -> int:
    """The old free_port: bind port 0, close, hand the number out."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def batches(count: int, size: int) -> None:
    low, high = rc.ephemeral_range()
    print(f"ephemeral range {low}-{high}; pool {rc.port_pool().start}-{rc.port_pool().stop - 1}")
    for name in ("bind(0)", "PortHold"):
        repeated = in_ephemeral = 0
        for _ in range(count):
            if name == "PortHold":  # a fresh allocator per batch, as one process starting one cluster
                with rc.PortHold(rc.PortAllocator()) as hold:
                    ports = [hold.take() for _ in range(size)]
            else:
                ports = [kernel_port() for _ in range(size)]
            repeated += len(set(ports)) < len(ports)
            in_ephemeral += sum(low <= p <= high for p in ports)
        total = count * size
        print(f"{name:>10}: {repeated}/{count} batches of {size} hold a repeated port "
              f"({100 * repeated / count:.2f}%); {in_ephemeral}/{total} ports in the ephemeral range")


class Rival(threading.Thread):
    """Takes random pool ports meanwhile. ``kvcheck``: as a second kvcheck process starting
    members does (its own PortHold, then its member's SO_REUSEADDR listener on the port,
    for a moment). ``reuseaddr``: as any program that binds a port of its choosing with
    SO_REUSEADDR does, without asking anyone: it can bind beside a held port (see the
    module text of reference/cluster.py)."""

    def __init__(self, mode: str) -> None:
        super().__init__(daemon=True)
        self.mode = mode
        self.stopping = threading.Event()
        self.taken = 0
        self.refused = 0

    def run(self) -> None:
        pool = rc.port_pool()
        rng = random.Random(7)
        hold = rc.PortHold(rc.PortAllocator(rng=random.Random(8)))  # another process's allocator
        held: list[tuple[socket.socket, int | None]] = []
        while not self.stopping.is_set():
            try:
                port = hold.take() if self.mode == "kvcheck" else rng.choice(pool)
            except OSError:  # its pool ran dry: start over, as a new process would
                hold = rc.PortHold(rc.PortAllocator(rng=random.Random(rng.random())))
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a member's listener
            try:
                s.bind(("127.0.0.1", port))
                s.listen()
                held.append((s, port if self.mode == "kvcheck" else None))
                self.taken += 1
            except OSError:
                s.close()
                self.refused += 1
            if len(held) > 200:
                old, old_port = held.pop(0)
                old.close()
                if old_port is not None:
                    hold.release(f"127.0.0.1:{old_port}")
            time.sleep(0.0005)
        for s, _ in held:
            s.close()
        hold.close()


def start_once(target: str, nodes: int, path: Path) -> None:
    path.mkdir(parents=True)
    if target == "cluster":
        info = rc.start_cluster(path, nodes, wait=60)
        rc.stop_cluster(info)
        return
    from kvcheck.workloads.config import RunConfig
    from kvcheck.workloads.local.cluster import LocalCluster

    config = RunConfig(workload="kv", target="local", nodes=nodes, seed=1)

    async def main() -> None:
        async with LocalCluster.running(config, path, 60.0):
            pass

    trio.run(main)


def starts(count: int, nodes: int, target: str, rival: str | None) -> None:
    rival_thread = Rival(rival) if rival else None
    if rival_thread is not None:
        rival_thread.start()
    failures: list[str] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kvcheck-ports-") as tmp:
        for i in range(count):
            try:
                start_once(target, nodes, Path(tmp) / f"c{i}")
            except Exception as exc:  # a failed start is the figure this script counts
                failures.append(f"start {i}: {type(exc).__name__}: {exc}")
                traceback.print_exc()
            if (i + 1) % 25 == 0:
                print(f"  {i + 1} starts, {len(failures)} failed", flush=True)
    seconds = time.monotonic() - began
    if rival_thread is not None:
        rival_thread.stopping.set()
        rival_thread.join()
    rival_text = (f"; a {rival} rival bound {rival_thread.taken} pool ports meanwhile "
                  f"({rival_thread.refused} binds refused)" if rival_thread else "")
    print(f"{count} back-to-back starts of {nodes}-member clusters (--target {target}): "
          f"{len(failures)} failed; {seconds / count:.2f} s per start{rival_text}")
    for f in failures:
        print("  " + f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--ports", type=int, default=15)
    ap.add_argument("--starts", type=int, default=0, help="cluster starts to run back to back")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--target", choices=["cluster", "local"], default="cluster")
    ap.add_argument("--rival", choices=["kvcheck", "reuseaddr"], default=None,
                    help="take random pool ports meanwhile, as another kvcheck or any program would")
    args = ap.parse_args()
    if args.batches:
        batches(args.batches, args.ports)
    if args.starts:
        starts(args.starts, args.nodes, args.target, args.rival)


if __name__ == "__main__":
    main()
