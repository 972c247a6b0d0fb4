"""Acknowledged puts/s of a 3-member reference-store cluster on loopback, and of etcd.

Starts a real cluster (``kvcheck cluster`` machinery: one process per member, the same
durability as everywhere: nothing is acknowledged before it is fsynced on a majority), then
for 1, 16 and 64 concurrent clients runs 100-byte puts for a fixed time and prints the
acknowledged ops/s and the p50/p99 latency. Each client has its own connection(s), all in
one trio process.

``--target etcd`` measures a 3-member etcd cluster (Debian's etcd-server) too, with the
same load generator (same loop, same concurrency, same keys and value sizes; the client is
each store's own: the reference TCP client, etcd's JSON gateway through
``workloads/etcd/client.py``) in the same run, and prints both and the ratio
reference/etcd per concurrency.

    python benchmarks/store_throughput.py [--seconds 10] [--clients 1,16,64] [--keep DIR]
                                          [--target reference|etcd]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import trio

from kvcheck.reference.client import ClientError, open_client
from kvcheck.reference.cluster import ClusterInfo, start_cluster, stop_cluster

ClientFactory = Callable[[], contextlib.AbstractAsyncContextManager[Any]]


def reference_clients(endpoints: list[str]) -> ClientFactory:
    return lambda: open_client(endpoints, timeout=5.0)


def etcd_clients(endpoints: list[str]) -> ClientFactory:
    from kvcheck.workloads.etcd.client import EtcdClient

    @contextlib.asynccontextmanager
    async def factory() -> AsyncIterator[EtcdClient]:
        client = EtcdClient(endpoints, timeout=5.0)
        try:
            yield client
        finally:
            await client.aclose()

    return factory


async def run_load(clients_of: ClientFactory, clients: int, seconds: float) -> tuple[int, int, list[float]]:
    latencies: list[float] = []
    errors = 0
    value = b"v" * 100

    async def worker(n: int) -> None:
        nonlocal errors
        async with clients_of() as client:
            for attempt in range(5):  # find the leader (open the connection) before the clock starts
                try:
                    await client.get(b"warmup")
                    break
                except ClientError:
                    if attempt == 4:
                        raise
            await ready.wait()
            i = 0
            while trio.current_time() < deadline:
                started = time.perf_counter()
                try:
                    await client.put(f"bench/{n}/{i % 1000}".encode(), value)
                except ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                i += 1

    ready = trio.Event()
    deadline = float("inf")
    async with trio.open_nursery() as nursery:
        for n in range(clients):
            nursery.start_soon(worker, n)
        await trio.sleep(1.0 if clients < 32 else 3.0)
        deadline = trio.current_time() + seconds
        ready.set()
    return len(latencies), errors, latencies


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(name: str, clients_of: ClientFactory, pids: list[int], levels: list[int],
            seconds: float) -> dict[int, float]:
    """Print one row per concurrency; returns ops/s per concurrency."""
    print(f"-- {name}")
    print(f"{'clients':>8} {'acked':>8} {'errors':>7} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'member CPU ms/op':>17} {'client CPU ms/op':>17} {'load':>5}")
    rates: dict[int, float] = {}
    for clients in levels:
        cpu_before = sum(cpu_seconds(p) for p in pids)
        self_before = resource.getrusage(resource.RUSAGE_SELF)
        acked, errors, lat = trio.run(run_load, clients_of, clients, seconds)
        cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
        self_after = resource.getrusage(resource.RUSAGE_SELF)
        client_cpu = (self_after.ru_utime + self_after.ru_stime
                      - self_before.ru_utime - self_before.ru_stime)
        lat.sort()
        p50 = statistics.median(lat) * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
        cpu_per_op = cpu * 1000 / acked if acked else float("nan")
        client_per_op = client_cpu * 1000 / acked if acked else float("nan")
        rates[clients] = acked / seconds
        print(f"{clients:>8} {acked:>8} {errors:>7} {acked / seconds:>9.1f} {p50:>8.2f} {p99:>8.2f}"
              f" {cpu_per_op:>17.2f} {client_per_op:>17.2f} {os.getloadavg()[0]:>5.1f}", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--keep", type=Path, default=None, help="Use (and keep) this cluster directory.")
    parser.add_argument("--target", choices=("reference", "etcd"), default="reference",
                        help="etcd: measure etcd too, with the same load, and print the ratio.")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    base = args.keep or Path(tempfile.mkdtemp(prefix="kvcheck-bench-"))
    info: ClusterInfo | None = None
    try:
        info = start_cluster(base / "reference" if args.target == "etcd" else base, 3)
        print(f"3-member clusters in {base}; {args.seconds:.0f}s per run, 100-byte puts, fsync on a majority")
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        ref = measure("reference store", reference_clients(info.endpoints()), [n.pid for n in info.nodes],
                      levels, args.seconds)
        stop_cluster(info)
        info = None
        if args.target == "etcd":
            from kvcheck.workloads.etcd.cluster import plain_cluster

            pids: list[int] = []
            with plain_cluster(base / "etcd", 3, pids=pids) as endpoints:
                etcd = measure("etcd", etcd_clients(endpoints), pids, levels, args.seconds)
            print("-- reference / etcd (acknowledged puts/s)")
            for clients in levels:
                ratio = ref[clients] / etcd[clients] if etcd[clients] else float("nan")
                print(f"{clients:>8} clients: {ref[clients]:9.1f} / {etcd[clients]:9.1f} = {ratio:.2f}")
    finally:
        if info is not None:
            stop_cluster(info)
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
