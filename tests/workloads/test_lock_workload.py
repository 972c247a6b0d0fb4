"""The lock workload and the client-pause fault end to end in the simulation: without
fencing a holder paused past its lease TTL writes the resource after the next holder
acquired (the lock checker names both; the paused one is the client the nemesis paused);
with fencing the same schedule is valid (the stale writes are refused); runs are
deterministic; client-pause is a known fault kind that ``all`` leaves out and an existing
etcd cluster allows."""

from __future__ import annotations

from typing import Any

import pytest

from kvcheck.checker.api import CheckOptions, run_checkers
from kvcheck.workloads.config import ConfigError, RunConfig
from kvcheck.workloads.nemesis import Fault, parse_faults
from kvcheck.workloads.recorder import write_jsonl
from kvcheck.workloads.run import Progress
from kvcheck.workloads.sim.cluster import execute_sim
from kvcheck.workloads.workload import make_workload


def run(workload: str, seed: int, faults: list[str], time_limit: float = 20.0) -> tuple[Any, Any]:
    cfg = RunConfig(workload=workload, faults=faults, seed=seed, time_limit=time_limit).with_schedule()
    ex = execute_sim(cfg, Progress(time_limit, enabled=False))
    w = make_workload(workload)
    return ex, run_checkers(list(w.checkers), ex.ops, CheckOptions(**w.check_options()))["lock"]


def paused_clients(ops: list[Any]) -> list[dict[str, Any]]:
    return [op.value for op in ops if op.is_nemesis and op.f == "start-client-pause" and op.type == "info"]


def test_without_fencing_a_paused_holder_breaks_mutual_exclusion() -> None:
    ex, r = run("lock", 1, ["client-pause"])
    assert r.valid is False
    assert {a.kind for a in r.anomalies} == {"lock:mutual-exclusion"}
    paused = paused_clients(ex.ops)
    assert paused and all(p["holding"] for p in paused), paused
    paused_leases = {p["lease"] for p in paused}
    for a in r.anomalies:
        first, second = a.detail["holders"]
        # the holder whose writes began first and resumed inside the other's is a paused one
        assert first["lease"] in paused_leases
        assert first["lease"] != second["lease"] and first["process"] != second["process"]
        revs = [w["revision"] for w in a.detail["interleaved"]]
        assert revs == sorted(revs)
        owners = [w["lease"] for w in a.detail["interleaved"]]
        assert set(owners) == {first["lease"], second["lease"]}
        # second's belief began while first still believed it held
        assert first["from"]["op"] < second["from"]["op"]
        assert first["to"] is None or first["to"]["op"] > second["from"]["op"]


def test_with_fencing_the_same_pauses_are_valid_and_the_stale_writes_refused() -> None:
    ex, r = run("lock-fenced", 1, ["client-pause"])
    assert r.valid is True, [a.explanation for a in r.anomalies]
    assert paused_clients(ex.ops)
    d = r.detail
    assert d["fenced"] and d["writes_refused"] >= 1 and d["belief_overlaps"] >= 1 and d["writes_ok"] >= 30
    refused = [op for op in ex.ops if op.f == "write" and op.type == "fail"]
    assert refused and all(op.error == "compare-failed" for op in refused)


@pytest.mark.parametrize("workload, faults", [("lock", []), ("lock", ["partition", "kill"]),
                                              ("lock-fenced", ["client-pause", "partition", "kill"])])
def test_clean_variants_are_valid(workload: str, faults: list[str]) -> None:
    for seed in (2, 3):
        _, r = run(workload, seed, faults)
        assert r.valid is True, (seed, [a.explanation for a in r.anomalies])
        assert r.detail["holders"] >= 8 and r.detail["writes_ok"] >= 25


def test_a_seed_gives_the_same_history(tmp_path: Any) -> None:
    paths = []
    for i in range(2):
        ex, _ = run("lock", 7, ["client-pause", "partition"], time_limit=12.0)
        p = tmp_path / f"h{i}.jsonl"
        write_jsonl(ex.ops, p)
        paths.append(p)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_client_pause_is_a_fault_kind_all_leaves_out() -> None:
    assert parse_faults("client-pause,partition") == ["client-pause", "partition"]
    assert "client-pause" not in parse_faults("all")
    f = Fault.from_json({"kind": "client-pause", "start": 1, "stop": 4, "params": {"target": "holder"}})
    assert f.kind == "client-pause"
    cfg = RunConfig(workload="lock", target="etcd", faults=["client-pause"])
    cfg.etcd["endpoints"] = ["127.0.0.1:2379"]
    cfg.validate()  # a client pause needs no control of the cluster's processes
    cfg.faults = ["client-pause", "kill"]
    with pytest.raises(ConfigError, match="kill need control"):
        cfg.validate()


def test_a_client_gate_stalls_its_tasks_until_resumed_and_picks_holders() -> None:
    import random

    import trio
    import trio.testing

    from kvcheck.workloads.clientpause import ClientGates

    async def main() -> None:
        gates = ClientGates()
        a, b = gates.gate("a"), gates.gate("b")
        assert gates.gate("a") is a
        done: list[float] = []

        async def client() -> None:
            await a.wait()  # open: returns at once
            a.pause()
            await a.wait()
            done.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(client)
            await trio.sleep(3)
            assert done == [] and a.paused
            a.resume()
        assert done == [3.0] and not a.paused
        # holder: waits (bounded) for a client that holds, else any client
        rng = random.Random(0)
        assert await gates.pick("any", rng, 1.0) in (a, b)
        t0 = trio.current_time()
        assert (await gates.pick("holder", rng, 1.0)) in (a, b) and trio.current_time() - t0 == 1.0

        async def hold_later() -> None:
            await trio.sleep(0.25)
            b.set_holding(True, lease=7)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_later)
            t0 = trio.current_time()
            assert await gates.pick("holder", rng, 1.0) is b
            assert trio.current_time() - t0 == 0.25 and b.info == {"lease": 7}

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_regress_clean_matrix_runs_the_fenced_lock_only() -> None:
    from kvcheck.workloads.regress import Budget, make_plan

    plan = make_plan(Budget(clean_seeds=1, bug_seeds=1, bug_wall=None, clean_time_limit=3.0), [])
    cells = {c.workload for c in plan.clean}
    assert "lock-fenced" in cells and "lock" not in cells and "register" in cells
