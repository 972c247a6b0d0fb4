"""How `kvcheck regress` hands out its runs: the clean matrix longest-expected-first (the
estimate from a run's parameters, corrected per workload by what finished runs cost), the
time accounting of regress.json ``timing``, and that neither the order nor the executor
changes any seed's result. No wall-clock asserts: schedules are simulated with given costs."""

from __future__ import annotations

import heapq
import itertools
from pathlib import Path

import pytest

from kvcheck.workloads.regress import (
    QUICK,
    SWARM,
    Budget,
    LocalPool,
    Plan,
    Scheduler,
    SeedResult,
    SeedTask,
    make_plan,
    run_regress,
    run_seed,
    utilisation,
)
from kvcheck.workloads.runcost import CostModel, expected_cost


def result(task: SeedTask, cpu: float, *, worker: str = "w", started: float = 0.0,
           ended: float = 0.0) -> SeedResult:
    return SeedResult(task.row, task.seed, True, [], f"hash-{task.row}-{task.seed}", 10, cpu, "", [], 0, True,
                      cpu_seconds=cpu, worker=worker, started=started, ended=ended)


def handed_out(sched: Scheduler) -> list[SeedTask]:
    tasks = []
    while (task := sched.next_task()) is not None:
        tasks.append(task)
    return tasks


def test_the_expected_cost_grows_with_what_a_run_asks_for() -> None:
    base = {"workload": "kv", "faults": [], "seed": 1, "time_limit": 20.0, "bugs": []}
    cost = expected_cost(base)
    assert cost > 0
    assert expected_cost({**base, "time_limit": 40.0}) > cost
    assert expected_cost({**base, "rate": 200.0}) > cost
    assert expected_cost({**base, "nodes": 7}) > cost > expected_cost({**base, "nodes": 3})
    assert expected_cost({**base, "node": {"snapshot_count": 50}}) > cost
    # the clients cannot go faster than their round trips allow: on a 100x slower network
    # 2 clients ask for fewer ops than 200 ops/s
    slow = {**base, "rate": 200.0, "concurrency": 2, "network": {"base_latency": [0.02, 0.08]}}
    assert expected_cost(slow) < expected_cost({**base, "rate": 200.0, "concurrency": 2})
    # settings no worker could run cost nothing (the run fails at once)
    assert expected_cost({**base, "no_such_field": 1}) == 0.0


def test_a_swarm_seed_is_estimated_with_the_shape_it_draws() -> None:
    pytest.importorskip("kvcheck.workloads.swarm")
    from kvcheck.workloads.runcost import configured

    base = {"workload": "kv", "faults": ["partition", "kill"], "seed": 3, "time_limit": 20.0, "bugs": []}
    drawn = configured(base, swarm=True)
    assert drawn.swarm and set(drawn.faults) <= {"partition", "kill"}
    estimates = {seed: expected_cost({**base, "seed": seed}, swarm=True) for seed in range(12)}
    assert len(set(estimates.values())) > 6, "the seeds' shapes differ, and so do their costs"
    assert expected_cost(base, swarm=True) == expected_cost(base, swarm=True)  # a pure function of the seed


def test_clean_runs_go_longest_expected_first_and_none_is_lost() -> None:
    plan = make_plan(QUICK, [], workloads=["register", "kv"], fault_mixes=["none", "all", SWARM])
    sched = Scheduler(plan, Path("/nonexistent"))
    planned = list(sched.clean_queue)
    tasks = handed_out(sched)
    assert sorted((t.row, t.seed) for t in tasks) == sorted((t.row, t.seed) for t in planned)
    costs = [expected_cost(t.settings, t.swarm) for t in tasks]
    assert costs == sorted(costs, reverse=True)
    # equal estimates keep the plan's order (seed by seed)
    for a, b in itertools.pairwise(tasks):
        if expected_cost(a.settings, a.swarm) == expected_cost(b.settings, b.swarm):
            assert planned.index(a) < planned.index(b)


def test_plan_order_hands_the_clean_runs_out_seed_by_seed() -> None:
    plan = make_plan(QUICK, [], workloads=["register"], fault_mixes=["none", SWARM])
    sched = Scheduler(plan, Path("/nonexistent"), longest_first=False)
    planned = [(t.row, t.seed) for t in sched.clean_queue]
    assert [(t.row, t.seed) for t in handed_out(sched)] == planned


def test_what_finished_runs_cost_moves_their_workload_ahead() -> None:
    """Two workloads whose runs have the same parameters tie on the estimate; once a run of
    the second has cost three times what the first's did, its other seeds go first."""
    plan = make_plan(Budget(clean_seeds=3, bug_seeds=1, bug_wall=None, clean_time_limit=5.0), [],
                     workloads=["register", "kv"], fault_mixes=["none"])
    sched = Scheduler(plan, Path("/nonexistent"))
    first = sched.next_task()
    second = sched.next_task()
    assert first is not None and second is not None
    assert (first.row, second.row) == ("clean register / none", "clean kv / none")  # a tie: plan order
    sched.take(result(first, 1.0))
    sched.take(result(second, 3.0))
    assert [t.row for t in handed_out(sched)] == ["clean kv / none"] * 2 + ["clean register / none"] * 2


def test_the_cost_model_scales_a_workload_by_its_own_runs_else_by_everyones() -> None:
    model = CostModel()
    assert model.cost("kv", 10.0) == 10.0
    model.learn("kv", 10.0, 30.0)
    model.learn("kv", 10.0, 10.0)
    model.learn("kv", 10.0, 20.0)
    assert model.scale("kv") == 2.0 and model.cost("register", 10.0) == 20.0
    model.learn("kv", 0.0, 5.0)  # no estimate: nothing learnt
    model.learn("register", 10.0, 5.0)
    assert model.scale("register") == 0.5 and model.scale("kv") == 2.0


def simulate(sched: Scheduler, cost: dict[tuple[str, int], float], workers: int) -> tuple[float, float]:
    """Run ``sched`` on ``workers`` simulated workers whose runs take ``cost``: the makespan
    and the workers' idle time after their last run."""
    clock, free_at = 0.0, [0.0] * workers
    running: list[tuple[float, int, SeedTask]] = []
    free = list(range(workers))
    while True:
        while free and (task := sched.next_task()) is not None:
            w = free.pop()
            heapq.heappush(running, (clock + cost[(task.row, task.seed)], w, task))
        if not running:
            break
        clock, w, task = heapq.heappop(running)
        free_at[w] = clock
        free.append(w)
        sched.take(result(task, cost[(task.row, task.seed)]))
    return clock, sum(clock - t for t in free_at)


def test_longest_first_leaves_no_long_run_for_the_end() -> None:
    """Runs that cost what they are expected to, the last seed of each cell 8x the others
    (the way swarm seeds' shapes vary): handed out seed by seed, the three long runs come
    last and one worker runs two of them while the other idles; longest first, the short
    runs fill in beside them."""
    plan = make_plan(Budget(clean_seeds=3, bug_seeds=1, bug_wall=None, clean_time_limit=5.0), [],
                     workloads=["register", "kv", "watch"], fault_mixes=["none"])

    def cost(task: SeedTask) -> float:
        return 8.0 if task.seed == 2 else 1.0

    costs = {(t.row, t.seed): cost(t) for t in Scheduler(plan, Path("/nonexistent")).clean_queue}
    outcome = {lf: simulate(Scheduler(plan, Path("/nonexistent"), longest_first=lf, estimate=cost), costs, 2)
               for lf in (False, True)}
    (plan_makespan, plan_tail), (lpt_makespan, lpt_tail) = outcome[False], outcome[True]
    assert (plan_makespan, plan_tail) == (19.0, 8.0)
    assert lpt_makespan < plan_makespan and lpt_tail < plan_tail
    lower_bound = max(sum(costs.values()) / 2, max(costs.values()))
    assert lpt_makespan <= 4 / 3 * lower_bound  # Graham's bound for longest-first


def test_the_default_estimate_is_the_runs_expected_cost() -> None:
    plan = make_plan(QUICK, [], workloads=["kv"], fault_mixes=["none", SWARM])
    sched = Scheduler(plan, Path("/nonexistent"))
    assert {k: c for k, (_, c) in sched.estimates.items()} == {
        (t.row, t.seed): expected_cost(t.settings, t.swarm) for t in sched.clean_queue}


def test_utilisation_splits_idle_worker_time_into_start_up_hand_overs_and_tail() -> None:
    task = SeedTask("clean register / none", 0, {}, "/nonexistent")
    results = [result(task, 2.0, worker="a", started=101.0, ended=104.0),
               result(task, 2.0, worker="a", started=104.5, ended=110.0),
               result(task, 3.0, worker="b", started=102.0, ended=106.0)]
    t = utilisation(results, 100.0, 110.0, slots=3)
    assert t["wall_seconds"] == 10.0 and t["busy_seconds"] == 12.5 and t["idle_seconds"] == 17.5
    assert (t["startup_seconds"], t["between_seconds"], t["tail_seconds"], t["unused_seconds"]) == (3.0, 0.5, 4.0, 10.0)
    assert t["overhead_per_task"] == 0.5 and t["runs_cpu_seconds"] == 7.0
    assert [(w["worker"], w["runs"], w["cpu_seconds"]) for w in t["workers"]] == [("a", 2, 4.0), ("b", 1, 3.0)]


def test_a_worker_that_cannot_start_fails_its_task_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: LocalPool) -> None:
        raise RuntimeError("cannot start a worker here")

    monkeypatch.setattr(LocalPool, "_start", broken)
    pool = LocalPool(1, run_timeout=None)
    try:
        fut = pool.submit(run_seed, SeedTask("clean register / none", 0, {}, "/nonexistent"))
        with pytest.raises(RuntimeError, match="cannot start"):
            fut.result(timeout=60)
    finally:
        pool.shutdown()


def small_plan() -> Plan:
    return make_plan(Budget(clean_seeds=2, bug_seeds=2, bug_wall=None, clean_time_limit=3.0), ["local_reads"],
                     workloads=["register", "kv"], fault_mixes=["none", "partition,kill"])


def test_the_order_changes_no_seeds_result_and_regress_json_says_where_the_time_went(tmp_path: Path) -> None:
    plan_order = run_regress(small_plan(), tmp_path / "plan", jobs=1, progress=False, longest_first=False)
    longest = run_regress(small_plan(), tmp_path / "longest", jobs=2, progress=False)
    assert longest.seed_keys() == plan_order.seed_keys()
    assert all(k[3] for k in longest.seed_keys()), "every seed has a history hash"
    timing = longest.document["timing"]
    runs = longest.document["clean"]["runs"] + sum(r["seeds_run"] for r in longest.document["bugs"]["rows"])
    assert timing["slots"] == 2 and sum(w["runs"] for w in timing["workers"]) >= runs
    assert timing["busy_seconds"] + timing["idle_seconds"] == pytest.approx(2 * timing["wall_seconds"], abs=0.01)
    assert timing["workers_cpu_seconds"] >= timing["runs_cpu_seconds"] > 0
    assert timing["parent_cpu_seconds"] >= 0


def test_a_switchs_runs_do_not_reorder_the_clean_matrix() -> None:
    """A bug may make a run spin until its wall budget: what a switch's runs cost says
    nothing about the clean runs of their workload (register, here)."""
    plan = make_plan(Budget(clean_seeds=2, bug_seeds=3, bug_wall=None, clean_time_limit=5.0), ["local_reads"],
                     workloads=["register", "kv"], fault_mixes=["none"])
    assert plan.bugs[0].workload == "register"
    sched = Scheduler(plan, Path("/nonexistent"))
    first = [sched.next_task() for _ in range(3)]
    assert [(t.row, t.seed) for t in first if t is not None] == [
        ("clean register / none", 0), ("local_reads", 0), ("clean kv / none", 0)]
    register, bug, kv = first
    assert register is not None and bug is not None and kv is not None
    estimate = sched.estimates[(kv.row, kv.seed)][1]
    sched.take(result(register, estimate))
    sched.take(result(kv, 2 * estimate))  # kv's runs cost twice register's
    sched.take(result(bug, 1000 * estimate))
    assert set(sched.costs.ratios) == {"register", "kv"} and len(sched.costs.ratios["register"]) == 1
    assert [(t.row, t.seed) for t in handed_out(sched) if t.row != "local_reads"] == [
        ("clean kv / none", 1), ("clean register / none", 1)]
