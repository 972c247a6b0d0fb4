"""An in-process cluster: several Nodes joined by an in-memory Transport in one trio run.

Why: the node driver's logic (proposals, ReadIndex, leases, watches, membership, snapshots,
crash and restart from the Disk) is tested fastest and deterministically without sockets,
under trio's MockClock. The deterministic simulation builds a richer network (latency, loss,
partitions, clock skew) on the same protocols; this one only delivers, drops across a cut,
and crashes/restarts members.

How: ``LocalNetwork.send`` hands each message to the target Node's ``receive`` after a
checkpoint (a delivery task per batch, so no sender runs receiver code inline); links in
``cut`` drop messages. ``LocalCluster`` owns the nursery: ``start(id)`` runs a Node on its
Disk (``StorageDisk`` over storage's in-memory file system, so ``crash(id)`` loses what was
not fsynced), ``crash(id)`` cancels it, ``leader()`` finds the agreed leader.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

import trio

from kvcheck.reference import raft
from kvcheck.reference.bugs import NO_BUGS, Bugs
from kvcheck.reference.disk import StorageDisk
from kvcheck.reference.node import Member, Node, NodeConfig, TrioClock
from kvcheck.reference.storage import DataDir, MemoryFileSystem


class LocalNetwork:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.nodes: dict[int, Node] = {}
        self.cut: set[tuple[int, int]] = set()  # (from, to) pairs that drop messages

    def transport(self, node_id: int) -> LocalTransport:
        return LocalTransport(self, node_id)

    def isolate(self, node_id: int) -> None:
        for other in sorted(self.nodes):
            if other != node_id:
                self.cut.add((node_id, other))
                self.cut.add((other, node_id))

    def heal(self) -> None:
        self.cut.clear()

    def deliver(self, from_id: int, messages: Sequence[raft.Message]) -> None:
        batch = [m for m in messages if (from_id, m.to) not in self.cut]
        if batch:
            self.nursery.start_soon(self._deliver, batch)

    async def _deliver(self, batch: list[raft.Message]) -> None:
        await trio.lowlevel.checkpoint()
        for m in batch:
            node = self.nodes.get(m.to)
            if node is not None and node.running:
                node.receive(m)


class LocalTransport:
    def __init__(self, network: LocalNetwork, node_id: int) -> None:
        self.network = network
        self.node_id = node_id

    def send(self, messages: Sequence[raft.Message]) -> None:
        self.network.deliver(self.node_id, messages)

    def update_members(self, members: Mapping[int, Member]) -> None:
        pass


class LocalCluster:
    """``async with LocalCluster.open(3) as cluster:`` — members 1..n, started and electing."""

    def __init__(self, nursery: trio.Nursery, size: int, *, config: NodeConfig | None = None,
                 bugs: Bugs = NO_BUGS, seed: int = 0) -> None:
        self.nursery = nursery
        self.network = LocalNetwork(nursery)
        self.base = config or NodeConfig(id=1)
        self.bugs = bugs
        self.seed = seed
        self.members = [Member(i, f"node{i}", client=f"local:{i}") for i in range(1, size + 1)]
        self.fs: dict[int, MemoryFileSystem] = {}
        self.scopes: dict[int, trio.CancelScope] = {}
        self.nodes: dict[int, Node] = {}
        self.joined: set[int] = set()
        self.restarts = 0

    @classmethod
    def open(cls, size: int, **kwargs: object) -> _ClusterContext:
        return _ClusterContext(size, kwargs)

    def config_for(self, node_id: int) -> NodeConfig:
        from dataclasses import replace

        return replace(self.base, id=node_id, name=f"node{node_id}")

    async def start(self, node_id: int, *, join: bool = False) -> Node:
        fs = self.fs.setdefault(node_id, MemoryFileSystem())
        disk = StorageDisk(DataDir(fs, "data"), offload=False)
        self.restarts += 1
        rng = random.Random(self.seed * 1000 + node_id * 10 + self.restarts)
        join = join or node_id in self.joined
        if join:
            self.joined.add(node_id)
        node = Node(self.config_for(node_id), self.network.transport(node_id), disk, TrioClock(), rng,
                    initial_members=self.members, join=join, bugs=self.bugs)
        self.nodes[node_id] = node
        self.network.nodes[node_id] = node
        scope = trio.CancelScope()
        self.scopes[node_id] = scope

        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await node.run(task_status=task_status)

        await self.nursery.start(run)
        return node

    def crash(self, node_id: int, rng: random.Random | None = None) -> None:
        """Stop a member abruptly; its disk loses whatever was not fsynced."""
        self.scopes.pop(node_id).cancel()
        self.network.nodes.pop(node_id, None)
        self.fs[node_id].crash(rng or random.Random(node_id))

    async def leader(self, timeout: float = 30.0) -> Node:
        with trio.fail_after(timeout):
            while True:
                running = [n for n in self.network.nodes.values() if n.running]
                leaders = [n for n in running if n.is_leader]
                if len(leaders) == 1 and all(n.leader == leaders[0].id for n in running):
                    return leaders[0]
                await trio.sleep(0.05)


class _ClusterContext:
    def __init__(self, size: int, kwargs: dict[str, object]) -> None:
        self.size = size
        self.kwargs = kwargs
        self._nursery_cm: trio.Nursery | None = None
        self._cm = trio.open_nursery()

    async def __aenter__(self) -> LocalCluster:
        nursery = await self._cm.__aenter__()
        cluster = LocalCluster(nursery, self.size, **self.kwargs)  # type: ignore[arg-type]
        for m in cluster.members:
            await cluster.start(m.id)
        self.cluster = cluster
        return cluster

    async def __aexit__(self, *exc: object) -> bool | None:
        self.cluster.nursery.cancel_scope.cancel()
        return await self._cm.__aexit__(*exc)  # type: ignore[arg-type]
