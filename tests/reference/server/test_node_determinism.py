"""Canary for the simulation: the node driver on a LocalCluster under MockClock, with trio's
scheduler seeded, gives the same run twice — in two processes with different PYTHONHASHSEED."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = r'''
import hashlib, random, sys
import trio, trio.testing
import trio._core._run as trio_run
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.localclient import LocalClient
from kvcheck.reference.localnet import LocalCluster
from kvcheck.reference.client import ClientError

trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True
trio_run._r.seed(1234)
trail = []

async def main():
    async with LocalCluster.open(3, seed=7) as cluster:
        running = lambda: {i: n for i, n in cluster.network.nodes.items() if n.running}
        leader = await cluster.leader()
        trail.append(("leader", leader.id, leader.term))

        async def worker(w):
            client = LocalClient(running, client_id=10 + w, timeout=2)
            for i in range(15):
                try:
                    resp = await client.put(f"k{w}/{i}".encode(), b"v")
                    trail.append(("put", w, i, resp.header.revision))
                except ClientError as exc:
                    trail.append(("err", w, i, type(exc).__name__, exc.code.value))
                await trio.sleep(0.03 * (w + 1))

        async with trio.open_nursery() as nursery:
            for w in range(3):
                nursery.start_soon(worker, w)
            await trio.sleep(0.2)
            victim = (await cluster.leader()).id
            cluster.crash(victim, random.Random(3))
            trail.append(("crash", victim))
            await trio.sleep(1.5)
            await cluster.start(victim)
        new = await cluster.leader()
        for node in running().values():
            await node.wait_applied(new.applied, timeout=10)
        for i, node in sorted(running().items()):
            trail.append(("node", i, node.applied, node.term, node.leader, node.hash_kv(0).hash))

trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
print(hashlib.sha256(repr(trail).encode()).hexdigest())
print(len(trail))
'''


def run_once(hashseed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hashseed}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_same_seed_same_run_across_processes() -> None:
    first, second = run_once("1"), run_once("2")
    assert first == second
    assert int(first.split()[1]) > 40
