"""Real etcd as a target (needs Debian's etcd-server; .ci/run installs it).

The JSON-gateway client against a real 3-member cluster (every call the workloads use,
decoded into the reference response types; errors and outcome classes), and bounded
``kvcheck run --target etcd`` runs with every fault kind the target supports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from kvcheck.reference.client import Failed, Indeterminate
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.wire import ErrorCode
from kvcheck.workloads.client import DefiniteFailure
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.etcd.client import EtcdClient
from kvcheck.workloads.etcd.cluster import plain_cluster
from kvcheck.workloads.etcd.known import progress_race
from kvcheck.workloads.kvclient import KVRegisterClient
from kvcheck.workloads.run import run_once

pytestmark = [pytest.mark.etcd,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="needs Debian's etcd-server")]


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    with plain_cluster(tmp_path_factory.mktemp("etcd"), 3) as endpoints:
        yield endpoints


def run(fn: object, *args: object) -> object:
    return trio.run(fn, *args)  # type: ignore[arg-type]


def test_kv_calls_decode_into_reference_types(etcd: list[str]) -> None:
    async def main() -> None:
        c = EtcdClient(etcd, home=etcd[1])
        try:
            p = await c.put(b"t1/a", b"1")
            base = p.header.revision
            assert p.prev_kv is None and base > 1
            p2 = await c.put(b"t1/a", b"2", prev_kv=True)
            assert p2.header.revision == base + 1
            assert p2.prev_kv == kvr.KeyValue(key=b"t1/a", create_revision=base, mod_revision=base,
                                              version=1, value=b"1")
            await c.put(b"t1/b", b"")  # an empty value: omitted by the gateway, decoded as b""
            r = await c.get(b"t1/", range_end=b"t1/\xff", limit=1)
            assert (r.count, r.more, len(r.kvs)) == (2, True, 1)
            assert r.kvs[0] == kvr.KeyValue(key=b"t1/a", create_revision=base, mod_revision=base + 1,
                                            version=2, value=b"2")
            r = await c.get(b"t1/b")
            assert r.kvs[0].value == b"" and r.kvs[0].version == 1
            r = await c.get(b"t1/a", revision=base)
            assert r.kvs[0].value == b"1"
            counted = await c.get(b"t1/", range_end=b"t1/\xff", count_only=True)
            assert counted.count == 2 and counted.kvs == []
            d = await c.delete(b"t1/", range_end=b"t1/\xff", prev_kv=True)
            assert d.deleted == 2 and [kv.key for kv in d.prev_kvs] == [b"t1/a", b"t1/b"]
            assert (await c.get(b"t1/a")).kvs == []
        finally:
            await c.aclose()

    run(main)


def test_txn_cas_and_the_register_client(etcd: list[str]) -> None:
    async def main() -> None:
        c = EtcdClient(etcd)
        reg = KVRegisterClient(EtcdClient(etcd, home=etcd[2]))
        try:
            assert await reg.read("t2") is None
            assert await reg.cas("t2", 0, 5) is False  # absent: the compare fails, nothing written
            await reg.write("t2", 3)
            assert await reg.cas("t2", 3, 4) is True
            assert await reg.read("t2") == 4
            t = await c.txn([kvr.Compare(result=kvr.CompareResult.GREATER, target=kvr.CompareTarget.VERSION,
                                         key=b"t2", version=1)],
                            [kvr.RangeRequest(key=b"t2"), kvr.PutRequest(key=b"t2x", value=b"y")],
                            [kvr.DeleteRangeRequest(key=b"t2")])
            assert t.succeeded is True
            rng, put = t.responses
            assert isinstance(rng, kvr.RangeResponse) and rng.kvs[0].value == b"4"
            assert isinstance(put, kvr.PutResponse) and put.header.revision == t.header.revision
            t = await c.txn([kvr.Compare(result=kvr.CompareResult.EQUAL, target=kvr.CompareTarget.VALUE,
                                         key=b"t2", value=b"nope")], [], [kvr.DeleteRangeRequest(key=b"t2x")])
            assert t.succeeded is False
            assert isinstance(t.responses[0], kvr.DeleteRangeResponse) and t.responses[0].deleted == 1
        finally:
            await c.aclose()
            await reg.close()

    run(main)


def test_etcd_errors_map_to_the_reference_codes(etcd: list[str]) -> None:
    async def main() -> None:
        c = EtcdClient(etcd)
        try:
            rev = (await c.put(b"t3", b"x")).header.revision
            await c.put(b"t3", b"y")
            with pytest.raises(Failed) as exc:
                await c.get(b"t3", revision=rev + 100)
            assert exc.value.code is ErrorCode.FUTURE_REV
            await c.compact(rev + 1)
            with pytest.raises(Failed) as exc:
                await c.get(b"t3", revision=rev)
            assert exc.value.code is ErrorCode.COMPACTED
            with pytest.raises(Failed) as exc:  # a definite error on a write is Failed, not Indeterminate
                await c.txn([], [kvr.PutRequest(key=b"d", value=b"1"), kvr.PutRequest(key=b"d", value=b"2")])
            assert exc.value.code is ErrorCode.DUPLICATE_KEY
            with pytest.raises(Failed) as exc:
                await c.txn([], [kvr.PutRequest(key=f"m{i}".encode()) for i in range(129)])
            assert exc.value.code is ErrorCode.TOO_MANY_OPS
            with pytest.raises(Failed) as exc:
                await c.lease_revoke(123456789)
            assert exc.value.code is ErrorCode.LEASE_NOT_FOUND
        finally:
            await c.aclose()

    run(main)


def test_leases(etcd: list[str]) -> None:
    async def main() -> None:
        c = EtcdClient(etcd)
        try:
            g = await c.lease_grant(60, 4242)
            assert (g.id, g.ttl) == (4242, 60)
            await c.put(b"t4/a", b"1", lease=4242)
            assert (await c.get(b"t4/a")).kvs[0].lease == 4242
            ttl = await c.lease_time_to_live(4242, keys=True)
            assert ttl.granted_ttl == 60 and 50 <= ttl.ttl <= 60 and ttl.keys == [b"t4/a"]
            assert 50 <= await c.lease_keepalive(4242) <= 60
            assert 4242 in [s.id for s in (await c.lease_leases()).leases]
            await c.lease_revoke(4242)
            assert (await c.get(b"t4/a")).kvs == []
            assert await c.lease_keepalive(4242) == 0
            assert (await c.lease_time_to_live(4242)).ttl == -1
            auto = await c.lease_grant(30)
            assert auto.id != 0 and auto.ttl == 30
            await c.lease_revoke(auto.id)
        finally:
            await c.aclose()

    run(main)


def test_watch_from_the_past_with_progress_and_compaction(etcd: list[str]) -> None:
    async def main() -> None:
        c = EtcdClient(etcd, home=etcd[0])
        try:
            first = (await c.put(b"t5/a", b"1")).header.revision
            await c.put(b"t5/a", b"2")
            last = (await c.delete(b"t5/a")).header.revision
            async with c.watch(b"t5/", range_end=b"t5/\xff", start_revision=first, prev_kv=True) as stream:
                created = await stream.__anext__()
                assert created.created and not created.events
                events: list[kvr.Event] = []
                while len(events) < 3:
                    events.extend((await stream.__anext__()).events)
                assert [(e.type, e.kv.mod_revision) for e in events] == [
                    (kvr.EventType.PUT, first), (kvr.EventType.PUT, first + 1), (kvr.EventType.DELETE, last)]
                assert events[1].prev_kv is not None and events[1].prev_kv.value == b"1"
                assert events[2].kv.version == 0 and events[2].kv.create_revision == 0
                await stream.request_progress()
                progress = await stream.__anext__()
                assert progress.watch_id == -1 and progress.header.revision >= last and not progress.events
                await c.put(b"t5/b", b"live")
                live = await stream.__anext__()
                assert live.events[0].kv.key == b"t5/b"
            await c.compact(last)
            async with c.watch(b"t5/", range_end=b"t5/\xff", start_revision=first) as stream:
                responses = [await stream.__anext__(), await stream.__anext__()]
            assert responses[0].created
            assert responses[1].canceled and responses[1].compact_revision >= last
        finally:
            await c.aclose()

    run(main)


def test_outcome_classes_without_etcd() -> None:
    """Connection refused: Failed (nothing was sent). A write that reached a member that never
    answers: Indeterminate; a read: Failed. A txn whose compare failed is not an error."""

    async def main() -> None:
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        accepted: list[trio.SocketStream] = []

        async def hold(stream: trio.SocketStream) -> None:
            accepted.append(stream)
            await trio.sleep_forever()

        closed = trio.socket.socket()
        await closed.bind(("127.0.0.1", 0))
        refused = f"127.0.0.1:{closed.getsockname()[1]}"
        closed.close()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, hold, [listener])
            c = EtcdClient([refused], timeout=0.5)
            with pytest.raises(Failed) as exc:
                await c.put(b"k", b"v")
            assert exc.value.code is ErrorCode.UNAVAILABLE
            await c.aclose()
            c = EtcdClient([f"127.0.0.1:{port}"], timeout=0.5)
            with pytest.raises(Indeterminate):
                await c.put(b"k", b"v")
            with pytest.raises(Failed):
                await c.get(b"k")
            reg = KVRegisterClient(c)
            with pytest.raises(DefiniteFailure):
                await reg.read("k")
            await c.aclose()
            nursery.cancel_scope.cancel()

    run(main)


def _check_run(out: object, kinds: list[str]) -> None:
    results = out.results  # type: ignore[attr-defined]
    assert results["valid"] is True, results["checkers"]["linearizable"]
    run_info = results["run"]
    for kind in kinds:
        assert run_info["faults_started"].get(kind, 0) >= 1, run_info["faults_started"]
        assert run_info["faults_healed"][kind] == run_info["faults_started"][kind]
    assert run_info["phases"]["healthy"] is True
    assert run_info["unexpected_exits"] == []


def test_register_run_with_process_and_network_faults(tmp_path: Path) -> None:
    kinds = ["partition", "kill", "pause", "packet"]
    cfg = RunConfig(workload="register", faults=kinds, target="etcd", nodes=3, time_limit=16.0,
                    seed=5, recovery_quiet=0.5, final_read_time=5.0)
    out = run_once(cfg, tmp_path, progress=False)
    _check_run(out, kinds)
    run_dir = out.run_dir
    proxy = out.results["run"]["proxy"]
    partition = next(op for op in out.execution.ops if op.f == "start-partition" and op.type == "info")
    if partition.value["blocked"]:
        assert proxy["cut"] + proxy["held"] > 0  # the proxy really cut the links
    assert {"node1.log", "node2.log", "node3.log", "cluster-events.log"} <= {p.name for p in run_dir.iterdir()}
    assert not (run_dir / "etcd-data").exists()
    config = (run_dir / "config.json").read_text()
    assert '"version": "3.4' in config and "--initial-cluster-token" in config
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(run_dir) not in ps  # no member survives the run


def test_kv_run_with_membership_changes(tmp_path: Path) -> None:
    cfg = RunConfig(workload="kv", faults=["member"], target="etcd", nodes=5, time_limit=12.0, seed=7,
                    recovery_quiet=0.5, final_read_time=5.0, keys=4)
    out = run_once(cfg, tmp_path, progress=False)
    _check_run(out, ["member"])
    stop = next(op for op in out.execution.ops if op.f == "stop-member" and op.type == "info")
    start = next(op for op in out.execution.ops if op.f == "start-member" and op.type == "info")
    assert start.value["removed"] is True and stop.value["added"] == 6


def kvcheck(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kvcheck", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_usage_errors(tmp_path: Path, etcd: list[str]) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # no etcd on PATH
    p = kvcheck("run", "--target", "etcd", "--store", str(tmp_path), env=env)
    assert p.returncode == 64 and "etcd-server" in p.stderr
    p = kvcheck("run", "--target", "etcd", "--faults", "clock", "--store", str(tmp_path))
    assert p.returncode == 64 and "simulation" in p.stderr
    p = kvcheck("run", "--target", "etcd", "--etcd-endpoints", etcd[0], "--faults", "kill",
                "--store", str(tmp_path))
    assert p.returncode == 64 and "existing cluster" in p.stderr


def test_existing_cluster_and_replay(tmp_path: Path, etcd: list[str]) -> None:
    p = kvcheck("run", "--target", "etcd", "--etcd-endpoints", ",".join(etcd), "--time-limit", "3",
                "--seed", "9", "--no-progress", "--store", str(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    p = kvcheck("replay", str(tmp_path / "latest"), "--no-progress")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not byte-identical" in p.stdout
    # a recorded etcd run is re-checked anywhere, etcd installed or not
    p = kvcheck("check", str(tmp_path / "latest"), env={**os.environ, "PATH": str(tmp_path)})
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("workload", ["append", "wr"])
def test_txn_workloads_run_against_etcd(tmp_path: Path, workload: str) -> None:
    """The transactional workloads (list append, write/read registers) on real etcd: their
    checker finds no anomaly under a partition and a kill."""
    kinds = ["partition", "kill"]
    cfg = RunConfig(workload=workload, faults=kinds, target="etcd", nodes=3, time_limit=8.0, seed=3,
                    recovery_quiet=0.5, final_read_time=3.0)
    out = run_once(cfg, tmp_path, progress=False)
    _check_run(out, kinds)
    assert sum(1 for op in out.execution.ops if op.type == "ok" and op.process != "nemesis") > 20


def test_watch_without_resume_stays_on_its_home_member(etcd: list[str]) -> None:
    """``resume=False`` (what the watch, lease and kubernetes workloads ask for: they record
    each stream as its own process and re-open it themselves): a home member that cannot be
    reached ends the iteration at once instead of failing over; with ``resume`` the watch is
    created on another member."""

    async def main() -> None:
        closed = trio.socket.socket()
        await closed.bind(("127.0.0.1", 0))
        refused = f"127.0.0.1:{closed.getsockname()[1]}"
        closed.close()
        c = EtcdClient([refused, etcd[0]], home=refused, dial_timeout=0.5)
        try:
            with trio.fail_after(10):
                async with c.watch(b"t6/", range_end=b"t6/\xff", resume=False) as stream:
                    assert [r async for r in stream] == []
                async with c.watch(b"t6/", range_end=b"t6/\xff") as stream:
                    created = await stream.__anext__()
            assert created.created and not created.canceled
        finally:
            await c.aclose()

    run(main)


# the workloads that keep watch streams (with progress requests), leases with keepalives,
# informers (list, then watch from the list's revision) and serializable txn reads, each
# with two fault kinds; benchmarks/sweep.py --target etcd runs them with every kind
ETCD_WORKLOAD_RUNS = {"watch": ["partition", "pause"], "lease": ["kill", "packet"],
                      "kubernetes": ["member", "kill"], "append-serializable-reads": ["partition", "kill"]}


def etcd_progress_race(out: object) -> list[str]:
    """Why a run's only anomalies are etcd 3.4's unsynchronised progress responses
    (``kvcheck.workloads.etcd.known``), or [] when anything else is wrong."""
    return progress_race(out.results, out.execution.ops)  # type: ignore[attr-defined]


@pytest.mark.parametrize("workload", sorted(ETCD_WORKLOAD_RUNS))
def test_stream_lease_and_serializable_workloads_run_against_etcd(tmp_path: Path, workload: str) -> None:
    kinds = ETCD_WORKLOAD_RUNS[workload]
    cfg = RunConfig(workload=workload, faults=kinds, target="etcd", nodes=3, time_limit=6.0, seed=11,
                    recovery_quiet=0.5, final_read_time=3.0)
    out = run_once(cfg, tmp_path, progress=False)
    results = out.results
    # valid, or invalid only by etcd 3.4's known progress-response race (real time decides
    # whether a run meets it; every other anomaly fails the test)
    assert results["valid"] is True or etcd_progress_race(out), \
        {k: c.get("anomalies") for k, c in results["checkers"].items()}
    run_info = results["run"]
    for kind in kinds:
        assert run_info["faults_started"].get(kind, 0) >= 1, run_info["faults_started"]
        assert run_info["faults_healed"][kind] == run_info["faults_started"][kind]
    assert run_info["unexpected_exits"] == []
    ops = out.execution.ops
    # the history's node is the target's node number, never etcd's 64-bit member id
    assert {op.node for op in ops if op.node is not None} <= set(range(1, 7))
    responses = [op.value for op in ops if op.f == "watch" and op.type == "ok" and isinstance(op.value, dict)]
    if workload == "append-serializable-reads":
        assert results["checkers"]["txn"]["ok"] > 20
        return
    assert sum(len(v.get("events") or ()) for v in responses) > 0  # the streams delivered events
    if workload == "lease":
        lease = results["checkers"]["lease"]
        assert lease["leases"] >= 2 and lease["keepalives"] >= 1
        # some lessor keeps its first lease alive in every run (LeaseWorkload.first_mode)
        assert any(op.f == "lease-keepalive" and op.type == "ok" and op.value > 0 for op in ops)
    else:  # progress requests were sent on open streams and answered (etcd: watch_id -1)
        assert any(v.get("progress_request") for v in responses)
        assert any(v.get("watch_id") == -1 for v in responses)
    if workload == "kubernetes":
        assert results["checkers"]["informer"]["cache_checks"] > 0
        # the optimistic-concurrency txns record their compare outcome, judged against the replay
        assert any(op.f == "txn" and isinstance(op.extra.get("succeeded"), bool) for op in ops)
        assert results["checkers"]["watch"]["compares_checked"] > 0
