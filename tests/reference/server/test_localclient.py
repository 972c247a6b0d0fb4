"""The in-process client (what the simulation's workloads use) on a LocalCluster under MockClock."""

from __future__ import annotations

import random

import pytest
import trio

from kvcheck.reference.client import Failed, Indeterminate, KVClient
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.localclient import LocalClient
from kvcheck.reference.localnet import LocalCluster
from kvcheck.reference.wire import ErrorCode

pytestmark = pytest.mark.trio


def running(cluster: LocalCluster) -> dict[int, object]:
    return {i: n for i, n in cluster.network.nodes.items() if n.running}


async def test_writes_across_a_leader_crash_lose_nothing_acknowledged(autojump_clock: object) -> None:
    async with LocalCluster.open(3) as cluster:
        await cluster.leader()
        acked: dict[bytes, bytes] = {}
        unknown: set[bytes] = set()

        async def worker(w: int) -> None:
            client = LocalClient(lambda: running(cluster), client_id=100 + w, timeout=3)  # type: ignore[arg-type, return-value]
            assert isinstance(client, KVClient)
            for i in range(40):
                key = f"k/{w}/{i}".encode()
                try:
                    await client.put(key, b"v")
                    acked[key] = b"v"
                except Indeterminate:
                    unknown.add(key)
                except Failed:
                    pass
                await trio.sleep(0.05)

        async with trio.open_nursery() as nursery:
            for w in range(4):
                nursery.start_soon(worker, w)
            await trio.sleep(0.5)
            leader = await cluster.leader()
            cluster.crash(leader.id, random.Random(5))
            await trio.sleep(2)
            await cluster.start(leader.id)
        new = await cluster.leader()
        for node in running(cluster).values():
            await node.wait_applied(new.applied, timeout=10)  # type: ignore[attr-defined]
            for key in acked:
                resp = await node.range(kvr.RangeRequest(key=key, serializable=True))  # type: ignore[attr-defined]
                assert resp.kvs, (node, key)
        assert len(acked) > 100


async def test_a_watch_resumes_without_gaps_when_its_member_crashes(autojump_clock: object) -> None:
    async with LocalCluster.open(3) as cluster:
        leader = await cluster.leader()
        writer = LocalClient(lambda: running(cluster), client_id=1)  # type: ignore[arg-type, return-value]
        victim = next(i for i in sorted(cluster.network.nodes) if i != leader.id)
        watcher = LocalClient(lambda: running(cluster), client_id=2)  # type: ignore[arg-type, return-value]
        watcher.leader = victim  # the watch starts on the member about to crash
        start = (await writer.put(b"w/start", b"0")).header.revision
        keys: list[bytes] = []
        created = 0
        async with watcher.watch(b"w/", range_end=b"w0", start_revision=start + 1) as stream:
            for i in range(5):
                await writer.put(f"w/{i}".encode(), b"v")
            with trio.fail_after(10):
                async for resp in stream:
                    keys += [e.kv.key for e in resp.events]
                    created += resp.created
                    if len(keys) >= 5:
                        break
            cluster.crash(victim)
            for i in range(5, 10):
                await writer.put(f"w/{i}".encode(), b"v")
            with trio.fail_after(20):
                async for resp in stream:
                    keys += [e.kv.key for e in resp.events]
                    created += resp.created
                    if len(keys) >= 10:
                        break
        assert keys == [f"w/{i}".encode() for i in range(10)]
        assert created == 1


async def test_a_definite_error_is_failed(autojump_clock: object) -> None:
    async with LocalCluster.open(3) as cluster:
        await cluster.leader()
        client = LocalClient(lambda: running(cluster), client_id=9)  # type: ignore[arg-type, return-value]
        with pytest.raises(Failed) as info:
            await client.lease_revoke(12345)
        assert info.value.code is ErrorCode.LEASE_NOT_FOUND
