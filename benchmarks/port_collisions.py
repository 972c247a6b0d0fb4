"""How often a cluster's handed-out ports collide: the kernel's bind(0) against free_port.

The flaky local-target start ("found no leader within 30 s") came from ports handed out by
binding port 0 and closing: the kernel picks each from the ephemeral range at random, so a
cluster's ports can repeat (two listeners on one port: one member cannot listen), and the
range is the one every process's bind(0) and outgoing connection draws from. This script
draws ``--batches`` batches of ``--ports`` ports (the local target takes 4 per member: 20
for 5 members) both ways and prints how many batches hold a repeated port, and where the
ports lie relative to /proc/sys/net/ipv4/ip_local_port_range.

    python benchmarks/port_collisions.py [--batches 2000] [--ports 20]
"""

from __future__ import annotations

import argparse
import socket

from kvcheck.reference import cluster as rc


def kernel_port() -> int:
    """The old free_port: bind port 0, close, hand the number out."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--ports", type=int, default=20)
    args = ap.parse_args()
    low, high = rc.ephemeral_range()
    print(f"ephemeral range {low}-{high}; pool {rc.port_pool().start}-{rc.port_pool().stop - 1}")
    for name, take in (("bind(0)", kernel_port), ("free_port", None)):
        repeated = in_ephemeral = 0
        for _ in range(args.batches):
            if take is None:  # a fresh allocator per batch, as one process starting one cluster
                allocator = rc.PortAllocator()
                ports = [allocator.take() for _ in range(args.ports)]
            else:
                ports = [take() for _ in range(args.ports)]
            repeated += len(set(ports)) < len(ports)
            in_ephemeral += sum(low <= p <= high for p in ports)
        total = args.batches * args.ports
        print(f"{name:>10}: {repeated}/{args.batches} batches of {args.ports} hold a repeated port "
              f"({100 * repeated / args.batches:.2f}%); {in_ephemeral}/{total} ports in the ephemeral range")


if __name__ == "__main__":
    main()
