"""The simulation's parts: network fates, clocks, and the in-process client against real
nodes (the KVClient interface beyond what the register workload uses)."""

from __future__ import annotations

import random
from typing import Any

import trio

from kvcheck.reference.kv import requests as kvr
from kvcheck.workloads.client import home_member
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.determinism import deterministic_trio
from kvcheck.workloads.sim.clock import SimClock
from kvcheck.workloads.sim.cluster import SimClient, SimCluster
from kvcheck.workloads.sim.network import SimNetwork
from kvcheck.workloads.sim.scheduler import SimScheduler


def run(fn, seed: int = 1):  # type: ignore[no-untyped-def]
    with deterministic_trio(seed):
        return trio.run(fn, clock=SimScheduler())


def test_network_latency_blocking_loss_duplication() -> None:
    async def main() -> dict[str, list[tuple[float, int, object]]]:
        sched = SimScheduler.current()
        net = SimNetwork(random.Random(1), sched)
        got: dict[str, list[tuple[float, int, object]]] = {"2": [], "3": []}
        net.attach(2, lambda src, m: got["2"].append((trio.current_time(), src, m)))
        net.attach(3, lambda src, m: got["3"].append((trio.current_time(), src, m)))
        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)
            t0 = trio.current_time()
            for i in range(100):
                net.send(1, 2, i)
            net.block([[1, 3]])  # one way: 1 -> 3 cut, 3 -> 2 fine
            net.send(1, 3, "cut")
            net.send(3, 2, "ok")
            await trio.sleep(0.1)
            assert all(t - t0 >= 0.0002 for t, _, _ in got["2"])
            net.heal()
            net.set_packet_faults(1.0, 0.0, 0.0)
            net.send(1, 3, "lost")
            net.set_packet_faults(0.0, 0.0, 1.0)
            net.send(1, 3, "twice")
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        return got

    got = run(main)
    assert sorted(m for _, src, m in got["2"] if src == 1) == list(range(100))  # type: ignore[type-var]
    assert [m for _, src, m in got["2"] if src == 3] == ["ok"]
    assert [m for _, _, m in got["3"]] == ["twice", "twice"]


def test_clock_rate_offset_and_pause() -> None:
    async def main() -> list[float]:
        clock = SimClock(SimScheduler.current())
        out = [clock.now()]
        clock.set(2.0, 0.0)
        await trio.sleep(1.0)
        out.append(clock.now())  # ran twice as fast
        clock.set(1.0, 5.0)
        out.append(clock.now())  # bumped by 5 s, no jump from the rate change
        t = trio.current_time()
        clock.pause()

        async def resume_later() -> None:
            await trio.sleep(3.0)
            clock.resume()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(resume_later)
            await clock.sleep(0.5)  # a paused node's timer waits for the resume
        out.append(trio.current_time() - t)
        return out

    now0, after, bumped, slept = run(main)
    assert now0 == 0.0 and abs(after - 2.0) < 1e-9 and abs(bumped - 7.0) < 1e-9
    assert abs(slept - 3.0) < 1e-9


def test_sim_client_speaks_the_kv_client_interface() -> None:
    async def main() -> None:
        cluster = SimCluster(RunConfig(nodes=3, seed=4))
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            assert await cluster.wait_healthy(10.0)
            c = SimClient(cluster, 1, timeout=2.0)
            await c.put(b"a", b"1")
            assert (await c.get(b"a")).kvs[0].value == b"1"
            assert (await c.cas(b"a", b"1", b"2")).succeeded
            assert not (await c.cas(b"a", b"1", b"3")).succeeded
            assert (await c.cas(b"new", None, b"x")).succeeded
            grant = await c.lease_grant(10)
            assert await c.lease_keepalive(grant.id) > 0
            await c.lease_revoke(grant.id)
            assert await c.lease_keepalive(grant.id) == 0
            async with c.watch(b"w") as stream:
                await c.put(b"w", b"v")
                events = []
                async for resp in stream:
                    events.extend(resp.events)
                    if events:
                        break
            assert events[0].type is kvr.EventType.PUT and events[0].kv.value == b"v"
            assert (await c.delete(b"a")).deleted == 1
            assert (await c.get(b"a")).kvs == []
            nursery.cancel_scope.cancel()

    run(main)


def test_a_ready_pass_that_would_wait_on_its_disk_crashes_that_node_loudly(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The nodes' Ready loops run inline (Node ready_soon): their Disk must never wait. One that
    # does is a crash of that node with the reason, never a silently skipped Ready.
    from kvcheck.workloads.sim import cluster as sim_cluster

    async def waiting_inline(self, fn):  # type: ignore[no-untyped-def]
        await trio.lowlevel.checkpoint()
        return fn()

    monkeypatch.setattr(sim_cluster.SimDisk, "_inline", waiting_inline)

    async def main() -> list[str]:
        cluster = SimCluster(RunConfig(nodes=3, seed=4))
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            await cluster.scheduler.sleep(3.0)
            nursery.cancel_scope.cancel()
        return cluster.findings

    findings = run(main)
    assert findings and all("crashed" in f and "waited on its Disk" in f for _, _, f in findings), findings


def test_recovery_counts_only_members_of_the_leaders_configuration() -> None:
    """A removal the harness asked for but whose answer it never saw (``shrink_member`` gives
    up after 5 s; clean register swarm seed 1004 with slow disks: a removal of n7 timed out
    during a split and applied 4 s later) leaves the removed member running in the harness's
    list. The leader sends it nothing more, so it never catches up; the cluster has still
    recovered once every member of the leader's configuration has. A member the leader still
    counts and that falls behind keeps the cluster unhealthy (the companion check)."""

    async def main() -> tuple[bool, bool, list[int]]:
        cluster = SimCluster(RunConfig(nodes=5, seed=4))
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            assert await cluster.wait_healthy(10.0)
            leader_id = await cluster.leader()
            assert leader_id is not None
            leader = cluster.slots[leader_id].node
            assert leader is not None
            victim = next(i for i in cluster.node_ids if i != leader_id)
            c = SimClient(cluster, 1, timeout=2.0)
            # a member the leader still counts, paused while the cluster writes: not recovered
            await cluster.pause(victim)
            for i in range(5):
                await c.put(b"k", str(i).encode())
            behind = await cluster.wait_healthy(1.0)
            await cluster.resume(victim)
            # its removal applies on the leader, the harness never hearing the answer
            await leader.member_remove(victim)
            for i in range(5):
                await c.put(b"k", str(10 + i).encode())
            healthy = await cluster.wait_healthy(3.0)
            ids = cluster.node_ids
            nursery.cancel_scope.cancel()
        return behind, healthy, ids

    behind, healthy, ids = run(main)
    assert not behind, "a paused member behind the leader's commit is not recovered"
    assert healthy, "the removed member is not waited for"
    assert len(ids) == 5, "the harness still lists the removed member (it was not told)"


def _deliveries(main_body, *, fifo: bool = True, jitter: float = 0.005,  # type: ignore[no-untyped-def]
                stall: float = 0.0):
    """Run ``main_body(net, sched)`` on a network whose receivers 2 and 3 record (time, src,
    payload); the records."""
    got: list[tuple[float, int, object]] = []

    async def main() -> None:
        sched = SimScheduler.current()
        net = SimNetwork(random.Random(7), sched, jitter=jitter, fifo=fifo, stall=stall,
                         stall_rng=random.Random(1))
        for node in (1, 2, 3):
            net.attach(node, lambda src, m: got.append((trio.current_time(), src, m)))
        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)
            await main_body(net, sched)
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()

    run(main)
    return got


def test_fifo_links_deliver_in_send_order_and_old_networks_reorder() -> None:
    """Jitter far above the messages' spacing: each link of a fifo network still delivers in
    the order it was sent (one TCP connection per peer, as the store's transport has), while
    the network of earlier versions (fifo=False) reorders them; the same seed gives the same
    deliveries."""
    async def body(net: SimNetwork, sched: SimScheduler) -> None:
        for i in range(200):
            net.send(1, 2, i)
            net.send(3, 2, 1000 + i)
            await trio.sleep(0.0005)

    fifo = _deliveries(body)
    for src in (1, 3):
        seq = [m for _, s, m in fifo if s == src]
        assert len(seq) == 200 and seq == sorted(seq)  # type: ignore[type-var]
    assert fifo == _deliveries(body)  # deterministic
    old = [m for _, s, m in _deliveries(body, fifo=False) if s == 1]
    assert sorted(old) == list(range(200)) and old != sorted(old)  # type: ignore[type-var]


def test_fifo_perturbed_copies_and_duplicates_leave_the_link_order() -> None:
    """A perturbation's extra delay (a reconnect window, a stale copy) and a duplicate (a
    stale retransmit) still reorder on a fifo link; the in-order stream is not held up by
    them."""
    async def body(net: SimNetwork, sched: SimScheduler) -> None:
        net.send(1, 2, "late", delay=0.2)
        for i in range(5):
            net.send(1, 2, i)
        net.set_packet_faults(0.0, 0.0, 1.0)
        net.send(1, 3, "dup")
        net.set_packet_faults(0.0, 0.0, 0.0)
        for i in range(20):
            net.send(1, 3, f"x{i}")

    got = _deliveries(body)
    to2 = [m for _, _, m in got if m == "late" or (isinstance(m, int) and m < 5)]
    assert to2[-1] == "late" and to2[:5] == [0, 1, 2, 3, 4]
    assert max(t for t, _, m in got if m == 4) < 0.1  # not queued behind the delayed copy
    assert [m for _, _, m in got].count("dup") == 2


def test_fifo_restart_gives_new_connections() -> None:
    """A member's restart (``attach`` again) gives its links new connections: what was sent to
    its previous process is lost; its new process's first messages may overtake its previous
    process's last ones still in flight (the receiver reads two connections)."""
    async def body(net: SimNetwork, sched: SimScheduler) -> None:
        net.link_latency[(1, 2)] = 0.001
        net.set_packet_faults(0.0, 0.3, 0.0)  # slow old messages (the packet-delay fault)
        net.send(1, 2, "old")
        net.send(2, 1, "to-old-process")
        net.set_packet_faults(0.0, 0.0, 0.0)
        net.detach(1)  # killed
        net.attach(1, lambda src, m: None)  # restarted: its new connections
        net.send(1, 2, "new")

    got = _deliveries(body, jitter=0.0001)
    assert [m for _, _, m in got] == ["new", "old"]


def test_fifo_held_messages_come_before_what_is_sent_after_the_heal() -> None:
    """A partition with ``hold`` keeps the connection: its held messages are delivered in
    order, before what is sent after the heal, once TCP's retransmission timer fires (first
    held at 0, timeouts 0.2, 0.4, 0.8 s: retransmissions at 0.2, 0.6, 1.4 s; healed at 0.7 s,
    the link resumes at 1.4 s) while another link carries on at once."""
    async def body(net: SimNetwork, sched: SimScheduler) -> None:
        net.block([[1, 2]], hold=True)
        for i in range(50):
            net.send(1, 2, i)
        await trio.sleep(0.7)
        net.heal()
        for i in range(50, 60):
            net.send(1, 2, i)
        net.send(3, 2, "other")

    got = _deliveries(body, jitter=0.01)
    assert [m for _, src, m in got if src == 1] == list(range(60))
    assert min(t for t, src, _ in got if src == 1) >= 1.4
    assert next(t for t, src, _ in got if src == 3) < 0.8


def test_a_stalled_path_forwards_what_it_held_at_the_heal_in_order() -> None:
    """A held cut that is a stalled path (``stall``: here every one) queues the frames and
    forwards them when it recovers: the same messages as above arrive in order right after
    the heal at 0.7 s, not at TCP's retransmission (1.4 s), and before what is sent after it;
    the next held cut draws again (share 1: stalled again)."""
    async def body(net: SimNetwork, sched: SimScheduler) -> None:
        net.block([[1, 2]], hold=True)
        assert net.stalled
        for i in range(50):
            net.send(1, 2, i)
        await trio.sleep(0.7)
        net.heal()
        assert not net.stalled
        for i in range(50, 60):
            net.send(1, 2, i)
        net.block([[1, 3]], hold=True)
        assert net.stalled
        net.heal()

    got = _deliveries(body, jitter=0.01, stall=1.0)
    assert [m for _, src, m in got if src == 1] == list(range(60))
    first = min(t for t, src, _ in got if src == 1)
    assert 0.7 <= first < 1.0


def test_tcp_resume_is_the_first_retransmission_after_the_heal() -> None:
    from kvcheck.workloads.sim.network import tcp_resume

    assert tcp_resume(0.0, 0.0) == 0.0
    assert abs(tcp_resume(0.0, 0.1) - 0.2) < 1e-9
    assert abs(tcp_resume(1.0, 3.0) - 4.0) < 1e-9  # retransmissions at 1.2, 1.6, 2.4, 4.0
    assert tcp_resume(0.0, 1000.0) >= 1000.0


def test_sticky_keepalives_stay_on_their_streams_member_until_it_fails() -> None:
    """``sticky_keepalives`` (etcd clientv3's one LeaseKeepAlive stream, the lease workload's
    sticky holders): keepalives go to the member that answered the last one, not to the
    client's own member first, a read elsewhere does not move them, a paused member holds them
    (no per-attempt cut) and answers once it resumes, and a successor client that adopts the
    stream (``adopt_stream``) goes on there; a member that refuses the connection moves it."""

    async def main() -> dict[str, Any]:
        cluster = SimCluster(RunConfig(nodes=3, seed=4))
        out: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            assert await cluster.wait_healthy(10.0)
            leader = await cluster.leader()
            assert leader is not None
            cid = next(i for i in range(1, 10) if home_member(i - 1, cluster.node_ids) != leader)
            sticky = SimClient(cluster, cid, timeout=3.0, attempt_timeout=0.2)
            sticky.sticky_keepalives = True
            grant = await sticky.lease_grant(10)
            out["first"] = (await sticky.lease_keepalive_response(grant.id)).header.member_id
            out["read"] = (await sticky.get(b"x")).header.member_id  # on the client's own member
            await cluster.pause(leader)  # shorter than an election timeout: it still leads after

            async def resume_later() -> None:
                await trio.sleep(0.6)
                await cluster.resume(leader)

            nursery.start_soon(resume_later)
            t = trio.current_time()
            out["held"] = (await sticky.lease_keepalive_response(grant.id)).header.member_id
            out["waited"] = trio.current_time() - t
            successor = SimClient(cluster, cid + 10, timeout=3.0, attempt_timeout=0.2)
            successor.sticky_keepalives = True
            successor.adopt_stream(sticky)
            out["adopted"] = (await successor.lease_keepalive_response(grant.id)).header.member_id
            await cluster.kill(leader)
            out["moved"] = (await successor.lease_keepalive_response(grant.id)).header.member_id
            nursery.cancel_scope.cancel()
        return out

    out = run(main)
    assert out["read"] != out["first"]
    assert out["held"] == out["adopted"] == out["first"] and out["waited"] >= 0.5, out
    assert out["moved"] != out["first"], out
