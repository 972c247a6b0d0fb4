"""`kvcheck regress`: the scheduler's bookkeeping (which seeds a switch records, budgets),
the same results on local processes and on a Dask cluster, and the command end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kvcheck.workloads.regress import (
    FULL,
    QUICK,
    Budget,
    Plan,
    Scheduler,
    SeedResult,
    make_plan,
    run_regress,
)


def fake_result(row: str, seed: int, valid: bool, wall: float = 1.0) -> SeedResult:
    return SeedResult(row, seed, valid, [] if valid else [{"checker": "c", "kind": "k", "explanation": ""}],
                      f"hash-{row}-{seed}", 10, wall, "", [], 0, True)


def bug_only_plan(bug: str, seeds: int, wall: float | None = None) -> Plan:
    return make_plan(Budget(clean_seeds=1, bug_seeds=seeds, bug_wall=wall, clean_time_limit=5.0), [bug],
                     clean=False)


def test_a_switch_records_seeds_up_to_its_lowest_catching_seed_whatever_finishes_first() -> None:
    plan = bug_only_plan("local_reads", seeds=10)
    sched = Scheduler(plan, Path("/nonexistent"))
    tasks = [sched.next_task() for _ in range(4)]
    assert [t.seed for t in tasks if t is not None] == [0, 1, 2, 3]
    # seed 3 catches first; seeds 0-2 are still running: no new seed is handed out
    sched.take(fake_result("local_reads", 3, False))
    assert sched.next_task() is None
    sched.take(fake_result("local_reads", 0, True))
    # seed 1 also catches, later: the row's first catching seed is 1, and seed 3 is dropped
    sched.take(fake_result("local_reads", 1, False))
    sched.take(fake_result("local_reads", 2, True))
    sched.finish()
    row = plan.bugs[0]
    assert row.first == 1 and row.stopped == "caught"
    assert [r.seed for r in row.recorded()] == [0, 1]


def test_budgets_stop_a_switch_that_is_never_caught() -> None:
    plan = bug_only_plan("local_reads", seeds=3)
    sched = Scheduler(plan, Path("/nonexistent"))
    seeds = []
    while (task := sched.next_task()) is not None:
        seeds.append(task.seed)
        sched.take(fake_result(task.row, task.seed, True))
    sched.finish()
    assert seeds == [0, 1, 2] and plan.bugs[0].stopped == "seed budget (3) spent"

    plan = bug_only_plan("local_reads", seeds=100, wall=2.5)
    sched = Scheduler(plan, Path("/nonexistent"))
    seeds = []
    while (task := sched.next_task()) is not None:
        seeds.append(task.seed)
        sched.take(fake_result(task.row, task.seed, True, wall=1.0))
    sched.finish()
    assert seeds == [0, 1, 2] and plan.bugs[0].stopped.startswith("wall budget")


def test_switches_come_from_the_bugs_class_and_unknown_ones_are_usage_errors() -> None:
    from kvcheck.exitcodes import UsageError
    from kvcheck.reference.bugs import Bugs

    plan = make_plan(Budget(1, 1, None, 5.0), None, clean=False)
    assert [r.bug for r in plan.bugs] == Bugs.names()
    with pytest.raises(UsageError, match="unknown switch"):
        make_plan(Budget(1, 1, None, 5.0), ["no_such_switch"])


def small_plan() -> Plan:
    """Two clean seeds and up to two seeds of local_reads, all short runs."""
    plan = make_plan(Budget(clean_seeds=2, bug_seeds=2, bug_wall=None, clean_time_limit=4.0),
                     ["local_reads"], workloads=["register"], fault_mixes=["partition,kill"])
    plan.bugs[0].time_limit = 8.0
    return plan


def test_dask_cluster_gives_the_same_results_as_local_processes(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    local = run_regress(small_plan(), tmp_path / "local", jobs=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        dask = run_regress(small_plan(), tmp_path / "dask", dask_scheduler=cluster.scheduler_address,
                           progress=False)
    assert dask.document["executor"].startswith("dask")
    keys = local.seed_keys()
    assert len({k[:2] for k in keys}) >= 3, keys  # two clean seeds and at least one bug seed
    assert all(k[3] for k in keys), "every seed has a history hash"
    assert dask.seed_keys() == keys
    assert local.document["clean"]["ok"] is True


def test_regress_command_writes_its_table_json_and_html(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "kvcheck", "regress", "--no-clean", "--bug", "local_reads",
                        "--bug-seeds", "4", "--jobs", "1", "--store", str(tmp_path / "store"), "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    out_dirs = list((tmp_path / "store" / "regress").iterdir())
    assert len(out_dirs) == 1
    doc = json.loads((out_dirs[0] / "regress.json").read_text())
    row = doc["bugs"]["rows"][0]
    assert row["bug"] == "local_reads"
    # the exit code is the suite's verdict: 0 exactly when the switch was caught
    # local_reads is caught within 4 seeds: the suite exits 0 and links the failing run
    assert row["caught"] is True and p.returncode == 0, p.stdout + p.stderr
    assert "bug matrix: 1 of 1 switches caught" in p.stdout and "local_reads" in p.stdout
    assert row["caught_by"] and (out_dirs[0] / row["report"]).is_file()
    assert row["seeds_to_detection"] == row["first_seed"] + 1
    html = (out_dirs[0] / "regress.html").read_text()
    assert f'href="{row["report"]}"' in html
    assert doc["clean"]["runs"] == 0 and "clean matrix: not run" in p.stdout


def test_regress_usage_errors(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "kvcheck", "regress", "--bug", "nope", "--store", str(tmp_path)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 64 and "unknown switch" in p.stderr


def test_a_local_run_past_its_wall_timeout_is_killed_and_its_worker_replaced(tmp_path: Path) -> None:
    from kvcheck.workloads.regress import LocalPool, SeedTask, run_seed

    def task(seed: int, time_limit: float) -> SeedTask:
        return SeedTask("clean register / none", seed, {"workload": "register", "faults": [], "seed": seed,
                                                        "time_limit": time_limit, "bugs": []}, str(tmp_path))

    pool = LocalPool(1, run_timeout=5.0)
    try:
        endless = pool.submit(run_seed, task(0, 100_000.0)).result(timeout=300)  # days, simulated
        short = pool.submit(run_seed, task(1, 0.5)).result(timeout=300)
    finally:
        pool.shutdown()
    assert endless.valid == "unknown" and endless.error is not None and "killed after 5 s wall" in endless.error
    assert short.error is None and short.valid is True and short.history_sha256


def test_a_swarm_exposure_draws_each_seeds_run_shape(tmp_path: Path) -> None:
    pytest.importorskip("kvcheck.workloads.swarm")
    from kvcheck.workloads.regress import SeedTask, run_seed

    settings = {"workload": "register", "faults": ["partition", "kill"], "seed": 3, "time_limit": 3.0,
                "bugs": [], "nodes": 3}
    result = run_seed(SeedTask("clean register / swarm", 3, settings, str(tmp_path), swarm=True))
    config = json.loads((Path(result.run_dir) / "config.json").read_text())
    assert config["swarm"], "the seed's draw is recorded"
    assert config["nodes"] == 3, "settings the exposure gives are kept"
    assert set(config["faults"]) <= {"partition", "kill"}


def test_prune_valid_deletes_valid_runs_but_keeps_their_hashes_and_the_failing_runs(tmp_path: Path) -> None:
    plan = make_plan(Budget(clean_seeds=1, bug_seeds=6, bug_wall=None, clean_time_limit=3.0), ["local_reads"],
                     workloads=["register"], fault_mixes=["none"])
    plan.bugs[0].time_limit = 10.0
    plan.prune_valid = True
    outcome = run_regress(plan, tmp_path, jobs=1, progress=False)
    clean = outcome.plan.clean[0].results[0]
    assert clean.valid is True and clean.run_dir == "" and clean.history_sha256
    row = outcome.plan.bugs[0]
    assert row.first is not None, "local_reads is caught within 6 seeds"
    kept = [r for r in row.recorded() if r.run_dir]
    assert [r.seed for r in kept] == [row.first] and (Path(kept[0].run_dir) / "report.html").is_file()


def test_local_workers_run_in_sessions_of_their_own_and_die_with_the_suite(tmp_path: Path) -> None:
    """Each local worker is in a session of its own (so Linux autogroup scheduling gives it
    its own CPU share: regress.own_scheduling_group), and when the suite's process ends
    abruptly its workers end with it, mid-run."""
    import time

    script = """
import os, sys, time
from kvcheck.workloads.regress import LocalPool, SeedTask, run_seed
pool = LocalPool(2, run_timeout=None)
for seed in (0, 1):
    pool.submit(run_seed, SeedTask("clean register / none", seed, {"workload": "register", "faults": [],
        "seed": seed, "time_limit": 100000.0, "bugs": []}, sys.argv[1]))
deadline = time.monotonic() + 120
def settled():  # both started and past their first lines (a worker calls setsid first)
    return len(pool.procs) == 2 and all(os.getsid(w.pid) == w.pid for w in pool.procs)
while not settled() and time.monotonic() < deadline:
    time.sleep(0.1)
print(" ".join(f"{w.pid}:{os.getsid(w.pid)}" for w in pool.procs), os.getsid(0), flush=True)
time.sleep(2.0)  # the workers are inside their runs
os._exit(0)  # no shutdown, no cleanup
"""
    p = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    *pairs, suite = p.stdout.split()
    assert len(pairs) == 2, p.stdout + p.stderr
    workers = [int(pair.split(":")[0]) for pair in pairs]
    sessions = {int(pair.split(":")[1]) for pair in pairs}
    assert len(sessions) == 2 and int(suite) not in sessions
    assert sessions == set(workers)  # each worker leads its own session
    deadline = time.monotonic() + 30
    alive = list(workers)
    while alive and time.monotonic() < deadline:
        alive = [w for w in alive if Path(f"/proc/{w}").exists()
                 and Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")]
        time.sleep(0.1)
    assert not alive, f"workers {alive} outlived the suite"


def test_regress_runs_end_by_themselves_inside_the_run_timeout() -> None:
    """A seed's simulation stops at half the run timeout and its checkers answer unknown
    after a third, so a spinning store is a finished, checked run, not a killed worker."""
    from kvcheck.workloads.regress import _bounded

    assert QUICK.run_limits() == {"wall_budget": 30.0, "check_timeout": 20.0}
    assert _bounded({"seed": 1}, QUICK) == {"seed": 1, "wall_budget": 30.0, "check_timeout": 20.0}
    assert _bounded({"check_timeout": 5.0}, QUICK)["check_timeout"] == 5.0  # a tighter one is kept
    assert _bounded({}, FULL) == {"wall_budget": 150.0}  # 100 s would loosen the 60 s default
    assert Budget(1, 1, None, 1.0).run_limits() == {}


def test_quick_swarm_cells_get_more_seeds(tmp_path: Path) -> None:
    from kvcheck.workloads.regress import SWARM, Scheduler

    assert QUICK.seeds_for(SWARM) == 12 and QUICK.seeds_for("all") == 2
    plan = make_plan(QUICK, [], workloads=["register"], fault_mixes=["none", SWARM])
    tasks = Scheduler(plan, tmp_path).clean_queue
    assert [(t.row, t.seed, t.swarm) for t in tasks] == [
        ("clean register / none", 0, False), ("clean register / swarm", 0, True),
        ("clean register / none", 1, False), ("clean register / swarm", 1, True),
        *((("clean register / swarm", s, True)) for s in range(2, 12))]
    assert Budget(1, 1, None, 5.0).seeds_for(SWARM) == 1  # without swarm_seeds: clean_seeds
