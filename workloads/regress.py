"""``kvcheck regress``: the regression suite for store changes — a clean matrix that must stay
valid and a bug matrix whose every switch must be caught from the client history alone.

Clean matrix: every registered workload (but those whose client recipe is unsafe by design,
``RECIPE_UNSAFE_WORKLOADS``) × each fault mix of ``CLEAN_FAULT_MIXES`` × seeds
0..N-1 on the clean store; every run must be valid. Bug matrix: each switch of
``Bugs.names()`` with its ``Exposure`` (workload, fault mix, settings: workloads/exposure.py),
seeds 0, 1, 2, ... until a run is invalid (caught) or the switch's budget (seeds, and wall
seconds summed over its runs) is spent. Internal invariant findings (the store's own
assertions) are reported beside each row and never count as a detection.

Each seed is one ``SeedTask``: a dict of ``RunConfig`` fields, run by ``run_seed`` in a
worker with ``run_once`` into ``STORE/regress/<stamp>/runs/``. Workers are local processes
(``LocalPool``: one simulation per process, a run past ``--run-timeout`` killed with its
worker) or, with ``--dask-scheduler``, a Dask distributed cluster (``Client.get_executor``,
behind the same ``concurrent.futures`` interface); a process-wide
lock keeps one simulation per worker process even when a Dask worker has several threads
(the simulation seeds trio's process-global scheduler randomness). The simulation is
deterministic, so a seed gives the same history (``history_sha256``) whichever executor runs
it. A bug row is deterministic too: seeds are submitted in order, and the row records seeds
0..first catching seed (a higher seed that finished first is dropped once a lower one is
known to catch); an uncaught row records the seeds its budget allowed, which with a wall
budget depends on the machine's speed.

The outcome is a terminal table, ``regress.json`` and ``regress.html`` (each caught switch
links to its failing run's report.html) in ``STORE/regress/<stamp>/``. ``ok`` (exit 0) only
when the clean matrix is all valid and every switch is caught.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import hashlib
import html
import itertools
import json
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kvcheck.workloads.exposure import exposure_for
from kvcheck.workloads.runcost import CostModel, expected_cost

# The clean matrix's fault mixes: none, two halves that together hold every kind, and all;
# and "swarm" (each seed draws its own kinds and run shape) when the harness has swarm runs.
SWARM = "swarm"


def swarm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("kvcheck.workloads.swarm") is not None


CLEAN_FAULT_MIXES: tuple[str, ...] = ("none", "partition,kill,pause,member", "clock,packet,disk", "all",
                                      *((SWARM,) if swarm_available() else ()))


@dataclass(frozen=True)
class Budget:
    """How much a run of the suite spends."""

    clean_seeds: int  # seeds per clean (workload, fault mix) cell
    bug_seeds: int  # most seeds per switch
    bug_wall: float | None  # most wall seconds per switch (summed over its runs); None: no bound
    clean_time_limit: float  # simulated seconds of a clean run
    run_timeout: float | None = None  # wall seconds before a local worker's run is killed
    # seeds per clean swarm cell when more than clean_seeds (None: clean_seeds): a swarm seed
    # draws its own run shape, and nearly every catch of benchmarks/mutants.py's source
    # mutations by the quick matrix came from a swarm cell, so they get the extra seeds (the
    # quick budget's 12: mutants caught by 6-13% of swarm seeds (benchmarks/mutants.py --full
    # --swarm-only rates) were missed by seeds 0-5 of every workload)
    swarm_seeds: int | None = None

    def seeds_for(self, faults: str) -> int:
        """Seeds of a clean cell with fault mix ``faults``."""
        return max(self.clean_seeds, self.swarm_seeds or 0) if faults == SWARM else self.clean_seeds

    def run_limits(self) -> dict[str, float]:
        """RunConfig fields that end a run by itself well inside ``run_timeout``: the
        simulation stops at half of it (what it recorded is still checked, results.json
        saying why it stopped) and the checkers answer unknown after a third of it, so a
        store that spins or a checker search that blows up is a finished, reported run
        rather than a killed worker with nothing to show."""
        if self.run_timeout is None:
            return {}
        return {"wall_budget": round(self.run_timeout / 2, 3), "check_timeout": round(self.run_timeout / 3, 3)}


FULL = Budget(clean_seeds=25, bug_seeds=40, bug_wall=300.0, clean_time_limit=30.0, run_timeout=300.0)
# The quick budget's 40 seeds per switch (20 until links delivered in order): on in-order links
# figure8_commit is caught by 5 of seeds 0-39 (11 on reordering links) and first at seed 18,
# so 20 seeds would miss it about one CI run in fifteen ((35/40)^20); a caught switch stops at
# its first catch, so only a lost detection pays for all 40.
QUICK = Budget(clean_seeds=2, bug_seeds=40, bug_wall=60.0, clean_time_limit=20.0, run_timeout=60.0,
               swarm_seeds=12)


@dataclass(frozen=True)
class SeedTask:
    """One run: ``settings`` are RunConfig fields (workload, faults, seed, bugs, ...)."""

    row: str  # the table row it belongs to ("clean register / all", or a switch name)
    seed: int
    settings: dict[str, Any]
    store: str
    swarm: bool = False  # draw this seed's run shape (kvcheck run --swarm), keeping ``settings``
    prune_valid: bool = False  # delete the run directory when the run is valid without findings


@dataclass
class SeedResult:
    row: str
    seed: int
    valid: Any  # True | False | "unknown"
    anomalies: list[dict[str, str]]  # [{"checker", "kind", "explanation"}] of invalid checkers
    history_sha256: str
    ops: int
    wall_seconds: float
    run_dir: str
    findings: list[str]  # distinct internal invariant findings, in first-seen order
    finding_count: int
    healthy: Any
    error: str | None = None  # the harness crashed (a bug of ours, or of the store's process)
    fired: int | None = None  # how often the run's switches changed behaviour (results.json bugs.fired)
    cpu_seconds: float = 0.0  # the worker's CPU time for this run (wall time depends on the machine's load)
    worker: str = ""  # which worker process ran it (host:pid)
    # when the worker began and ended the task (Unix time, the worker's clock): with
    # ``worker`` they show how busy each worker was (``utilisation``)
    started: float = 0.0
    ended: float = 0.0

    def key(self) -> tuple[str, int, Any, str]:
        """What must be equal whichever executor ran the seed."""
        return (self.row, self.seed, self.valid, self.history_sha256)


# One simulation per process at a time (see the module docstring).
_SIM_LOCK = threading.Lock()


def run_seed(task: SeedTask) -> SeedResult:
    """Run one seed (in a worker process) and say what came of it."""
    from kvcheck.workloads.config import RunConfig
    from kvcheck.workloads.run import run_once

    with _SIM_LOCK:
        started = time.time()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            config = RunConfig(**task.settings)
            if task.swarm:
                from kvcheck.workloads.swarm import draw_swarm

                draw_swarm(config, frozenset(task.settings) - {"workload", "faults", "seed", "bugs"})
            outcome = run_once(config, Path(task.store), progress=False)
        except Exception as exc:  # reported as an error row, never as a verdict
            return SeedResult(task.row, task.seed, "unknown", [], "", 0, round(time.perf_counter() - t0, 3),
                              "", [], 0, None, error=f"{type(exc).__name__}: {exc}",
                              worker=f"{socket.gethostname()}:{os.getpid()}", started=started, ended=time.time())
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    history = outcome.run_dir / "history.jsonl"
    digest = hashlib.sha256(history.read_bytes()).hexdigest()
    results = outcome.results
    findings, count = distinct_findings(results.get("findings") or results.get("run", {}).get("findings") or [])
    ops = sum(1 for op in outcome.execution.ops if op.type != "invoke" and not op.is_nemesis)
    fired = (results.get("bugs") or {}).get("fired")
    verdict = checkers_verdict(results)
    run_dir = str(outcome.run_dir)
    if task.prune_valid and verdict is True and count == 0:
        shutil.rmtree(outcome.run_dir)
        run_dir = ""
    return SeedResult(task.row, task.seed, verdict, anomalies_of(results), digest, ops,
                      round(wall, 3), run_dir, findings, count,
                      (results.get("run", {}).get("phases") or {}).get("healthy"),
                      fired=sum(fired.get(b, 0) for b in task.settings.get("bugs", []))
                      if isinstance(fired, dict) else None,
                      cpu_seconds=round(cpu, 3), worker=f"{socket.gethostname()}:{os.getpid()}",
                      started=started, ended=time.time())


def checkers_verdict(results: dict[str, Any]) -> Any:
    """The black-box verdict of a results.json: the worst of its checkers' verdicts (never
    the store's internal findings, which a run may also count against itself)."""
    from kvcheck.checker.api import worst_verdict

    checkers = results.get("checkers") or {}
    if not checkers:
        return "unknown"
    return worst_verdict(r.get("valid") if isinstance(r, dict) else None for r in checkers.values())


def anomalies_of(results: dict[str, Any]) -> list[dict[str, str]]:
    """(checker, anomaly kind, explanation) of every invalid checker in results.json."""
    out: list[dict[str, str]] = []
    for name, r in (results.get("checkers") or {}).items():
        if not isinstance(r, dict) or r.get("valid") is not False:
            continue
        anomalies = r.get("anomalies") or []
        if not anomalies:
            out.append({"checker": name, "kind": "invalid", "explanation": "(the checker lists no anomaly)"})
        seen: set[str] = set()
        for a in anomalies:
            kind = str(a.get("kind"))
            if kind not in seen:
                seen.add(kind)
                out.append({"checker": name, "kind": kind, "explanation": str(a.get("explanation", ""))})
    return out


def distinct_findings(raw: Sequence[Any]) -> tuple[list[str], int]:
    """Distinct finding texts (first-seen order) and the total count. A finding is a line of
    text, or an object with ``text``/``finding`` and ``count``."""
    seen: dict[str, None] = {}
    total = 0
    for f in raw:
        if isinstance(f, dict):
            text = str(f.get("text") or f.get("finding") or f.get("message") or json.dumps(f, sort_keys=True))
            total += int(f.get("count", 1))
        else:
            text = str(f)
            total += 1
        seen.setdefault(text, None)
    return list(seen), total


# ---------------------------------------------------------------------------------------
# The plan: which seeds to run


@dataclass
class CleanCell:
    workload: str
    faults: str
    results: list[SeedResult] = field(default_factory=list)

    @property
    def row(self) -> str:
        return f"clean {self.workload} / {self.faults}"


@dataclass
class BugRow:
    bug: str
    workload: str
    faults: str
    time_limit: float
    settings: dict[str, Any]
    from_table: bool
    swarm: bool = False
    runnable: str | None = None  # why it cannot run (unknown workload), else None
    results: dict[int, SeedResult] = field(default_factory=dict)
    submitted: int = 0  # seeds 0..submitted-1 have been handed out
    first: int | None = None  # lowest catching seed known so far
    stopped: str = ""

    def wall_spent(self) -> float:
        return sum(r.wall_seconds for r in self.results.values())

    def recorded(self) -> list[SeedResult]:
        """The seeds the row reports: 0..first if caught, else all that ran."""
        last = self.first if self.first is not None else max(self.results, default=-1)
        return [self.results[s] for s in sorted(self.results) if s <= last]


@dataclass
class Plan:
    clean: list[CleanCell]
    bugs: list[BugRow]
    budget: Budget
    seed_base: int = 0
    prune_valid: bool = False  # keep only the run directories worth reading (see SeedTask)


def make_plan(budget: Budget, bugs: Sequence[str] | None, *, clean: bool = True,
              workloads: Sequence[str] | None = None, fault_mixes: Sequence[str] = CLEAN_FAULT_MIXES) -> Plan:
    from kvcheck.reference.bugs import Bugs
    from kvcheck.workloads.workload import RECIPE_UNSAFE_WORKLOADS, WORKLOADS

    names = Bugs.names() if bugs is None else list(bugs)
    unknown = sorted(set(names) - set(Bugs.names()))
    if unknown:
        from kvcheck.exitcodes import UsageError

        raise UsageError(f"--bug: unknown switch(es) {', '.join(unknown)}; known: {', '.join(Bugs.names())}")
    clean_workloads = workloads or [w for w in WORKLOADS if w not in RECIPE_UNSAFE_WORKLOADS]
    cells = [CleanCell(w, f) for w in clean_workloads for f in fault_mixes] if clean else []
    rows = []
    for name in names:
        exp, from_table = exposure_for(name)
        row = BugRow(name, exp.workload, exp.faults, exp.time_limit, dict(exp.settings), from_table, exp.swarm)
        if exp.workload not in WORKLOADS:
            row.runnable = f"workload {exp.workload!r} is not registered (known: {', '.join(WORKLOADS)})"
        elif exp.swarm and not swarm_available():
            row.runnable = "swarm runs need kvcheck.workloads.swarm, which this kvcheck lacks"
        if row.runnable is not None:
            row.stopped = "not run"
        rows.append(row)
    return Plan(cells, rows, budget)


def _settings(workload: str, faults: str, seed: int, time_limit: float, bugs: list[str],
              extra: dict[str, Any]) -> dict[str, Any]:
    from kvcheck.workloads.nemesis import parse_faults

    return {"workload": workload, "faults": parse_faults(faults), "seed": seed, "time_limit": time_limit,
            "bugs": bugs, **extra}


def _bounded(settings: dict[str, Any], budget: Budget) -> dict[str, Any]:
    """``settings`` with the budget's run limits, each no looser than the one already set
    (or RunConfig's default)."""
    from kvcheck.workloads.config import RunConfig

    out = dict(settings)
    for name, limit in budget.run_limits().items():
        given = out.get(name, getattr(RunConfig, name, None))
        if given is None or limit < given:
            out[name] = limit
    return out


def _task_cost(task: SeedTask) -> float:
    return expected_cost(task.settings, task.swarm)


class Scheduler:
    """Hands out tasks round-robin over the clean matrix and the switches, and takes results.
    A switch gets its next seed only while it is not caught and within its budget (its
    seeds in order). The clean matrix's runs go longest-expected-first (``estimate``, by
    default ``runcost.expected_cost``: from each run's parameters; scaled per workload by
    what its finished runs cost), so no long run is left for the end while the other
    workers idle; ``longest_first=False`` hands them out in the plan's order (seed by seed:
    ``clean_queue``)."""

    def __init__(self, plan: Plan, store: Path, *, longest_first: bool = True,
                 estimate: Callable[[SeedTask], float] = _task_cost) -> None:
        self.plan = plan
        self.store = str(store)
        b = plan.budget
        tasks = [
            SeedTask(cell.row, plan.seed_base + s,
                     _bounded(_settings(cell.workload, "all" if cell.faults == SWARM else cell.faults,
                                        plan.seed_base + s, b.clean_time_limit, [], {}), b),
                     self.store, swarm=cell.faults == SWARM, prune_valid=plan.prune_valid)
            for s in range(max((b.seeds_for(c.faults) for c in plan.clean), default=0))
            for cell in plan.clean if s < b.seeds_for(cell.faults)]
        self._clean: dict[int, SeedTask] = dict(enumerate(tasks))  # not handed out yet, by plan position
        self.cells = {cell.row: cell for cell in plan.clean}
        self.rows = {row.bug: row for row in plan.bugs}
        self.in_flight: dict[str, int] = {}
        self._turn = 0
        self.longest_first = longest_first
        self.estimate = estimate
        self.costs = CostModel()
        # (row, seed) -> (workload, estimate) of each clean run (a switch's runs teach nothing
        # about clean ones: a bug may make a run spin until its wall budget)
        self.estimates: dict[tuple[str, int], tuple[str, float]] = {}
        # per workload, its clean runs' (estimate, -plan position), ascending: the last is the
        # dearest (the first in the plan among equals). One scale per workload keeps each
        # list's order, so picking the next run compares only each workload's dearest.
        self._ranked: dict[str, list[tuple[float, int]]] = {}
        if longest_first:
            for i, t in enumerate(tasks):
                workload, cost = t.settings["workload"], estimate(t)
                self.estimates[(t.row, t.seed)] = (workload, cost)
                self._ranked.setdefault(workload, []).append((cost, -i))
            for ranked in self._ranked.values():
                ranked.sort()

    @property
    def clean_queue(self) -> list[SeedTask]:
        """The clean runs not handed out yet, in the plan's order (seed by seed)."""
        return list(self._clean.values())

    def total(self) -> int:
        """Tasks still to expect (for the progress bar): done + in flight + still allowed."""
        n = sum(len(c.results) for c in self.plan.clean) + len(self._clean) + sum(
            self.in_flight.get(c.row, 0) for c in self.plan.clean)
        for row in self.plan.bugs:
            n += len(row.results) + self.in_flight.get(row.bug, 0)
            if self._may_submit(row):
                n += self.plan.budget.bug_seeds - row.submitted
        return n

    def _may_submit(self, row: BugRow) -> bool:
        b = self.plan.budget
        if row.runnable is not None or row.first is not None or row.submitted >= b.bug_seeds:
            return False
        return not (b.bug_wall is not None and row.wall_spent() >= b.bug_wall)

    def next_task(self) -> SeedTask | None:
        """The next task to run, alternating between the clean matrix and the switches."""
        sources: list[Callable[[], SeedTask | None]] = [self._next_clean, *(
            (lambda row=row: self._next_bug(row)) for row in self.plan.bugs)]
        for i in range(len(sources)):
            task = sources[(self._turn + i) % len(sources)]()
            if task is not None:
                self._turn = (self._turn + i + 1) % len(sources)
                self.in_flight[task.row] = self.in_flight.get(task.row, 0) + 1
                return task
        return None

    def _next_clean(self) -> SeedTask | None:
        if not self._clean:
            return None
        if not self.longest_first:
            return self._clean.pop(next(iter(self._clean)))
        _, _, workload = max((self.costs.cost(w, ranked[-1][0]), ranked[-1][1], w)
                             for w, ranked in self._ranked.items() if ranked)
        _, position = self._ranked[workload].pop()
        return self._clean.pop(-position)

    def _next_bug(self, row: BugRow) -> SeedTask | None:
        if not self._may_submit(row):
            return None
        seed = self.plan.seed_base + row.submitted
        row.submitted += 1
        return SeedTask(row.bug, seed, _bounded(_settings(row.workload, row.faults, seed, row.time_limit, [row.bug],
                                                          row.settings), self.plan.budget),
                        self.store, swarm=row.swarm,
                        prune_valid=self.plan.prune_valid)

    def take(self, result: SeedResult) -> None:
        self.in_flight[result.row] -= 1
        known = self.estimates.get((result.row, result.seed))
        if known is not None and result.error is None:
            self.costs.learn(known[0], known[1], result.cpu_seconds)
        if result.row in self.cells:
            self.cells[result.row].results.append(result)
            return
        row = self.rows[result.row]
        row.results[result.seed] = result
        if result.valid is False and (row.first is None or result.seed < row.first):
            row.first = result.seed

    def finish(self) -> None:
        """Say why each switch stopped, and order the clean results by seed."""
        for cell in self.plan.clean:
            cell.results.sort(key=lambda r: r.seed)
        b = self.plan.budget
        for row in self.plan.bugs:
            if row.runnable is not None:
                continue
            if row.first is not None:
                row.stopped = "caught"
            elif row.submitted >= b.bug_seeds:
                row.stopped = f"seed budget ({b.bug_seeds}) spent"
            else:
                row.stopped = f"wall budget ({b.bug_wall:g} s) spent"


# ---------------------------------------------------------------------------------------
# Executors


class LocalPool(cf.Executor):
    """``jobs`` worker processes (started fresh: spawn), one simulation each at a time, each
    run bounded in wall time: a run still going after ``run_timeout`` seconds has its worker
    killed (and replaced) and is recorded as an error, so one store that loops cannot hold
    the suite. (A run's own wall budget, when the runner has one, ends it more gracefully.)

    Only ``run_seed`` tasks are accepted: each slot is a thread that hands a task to its
    worker over a pipe and waits for the answer."""

    def __init__(self, jobs: int, run_timeout: float | None, *, own_groups: bool = True) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.run_timeout = run_timeout
        self.own_groups = own_groups  # each worker in a session of its own (own_scheduling_group)
        self.queue: queue.SimpleQueue[tuple[cf.Future[SeedResult], SeedTask] | None] = queue.SimpleQueue()
        self.procs: set[Any] = set()  # live worker processes
        self.threads = [threading.Thread(target=self._slot, daemon=True, name=f"regress-slot-{i}")
                        for i in range(jobs)]
        for t in self.threads:
            t.start()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        if fn is not run_seed or len(args) != 1 or kwargs:
            raise TypeError("LocalPool runs run_seed(task) only")
        fut: cf.Future[SeedResult] = cf.Future()
        self.queue.put((fut, args[0]))
        return fut

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if cancel_futures:
            pending = []
            while True:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
                    pending.append(item)
            for proc in list(self.procs):  # runs still going are abandoned (Ctrl-C, an error)
                proc.kill()
        for _ in self.threads:
            self.queue.put(None)
        if wait:
            for t in self.threads:
                t.join()

    def _start(self) -> tuple[Any, Any]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker_main, args=(child, self.own_groups), daemon=True)
        proc.start()
        self.procs.add(proc)
        child.close()
        parent.recv()  # "ready": imported, so run_timeout bounds the run, not the start-up
        return proc, parent

    def _stop(self, proc: Any) -> None:
        if proc is not None:
            proc.kill()
            proc.join()
            self.procs.discard(proc)

    def _slot(self) -> None:
        proc, conn = None, None
        try:
            while (item := self.queue.get()) is not None:
                fut, task = item
                if not fut.set_running_or_notify_cancel():
                    continue
                t0 = time.perf_counter()
                try:
                    if proc is None or conn is None or not proc.is_alive():
                        proc, conn = self._start()
                    t0 = time.perf_counter()
                    conn.send(task)
                    if conn.poll(self.run_timeout):
                        fut.set_result(conn.recv())
                        continue
                    why = f"killed after {self.run_timeout:g} s wall (the run did not finish)"
                except (EOFError, OSError) as exc:
                    why = f"worker process died: {exc!r}"
                except Exception as exc:
                    # the suite's own error (e.g. a worker that cannot start): raised where the
                    # result is awaited, instead of a dead slot leaving it waiting forever
                    self._stop(proc)
                    proc, conn = None, None
                    fut.set_exception(exc)
                    continue
                self._stop(proc)
                proc, conn = None, None
                wall = round(time.perf_counter() - t0, 3)
                fut.set_result(SeedResult(task.row, task.seed, "unknown", [], "", 0, wall, "", [], 0, None,
                                          error=why))
        finally:
            if proc is not None and conn is not None:
                with contextlib.suppress(OSError):
                    conn.send(None)
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                self.procs.discard(proc)


def own_scheduling_group() -> None:
    """Put this worker process in a session of its own, and have it killed when the suite
    dies. On Linux with autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``,
    on by default on desktops and on this project's 2-core machine) the CPU is shared
    fairly between sessions, not processes: workers left in the suite's session share one
    session's share, so on a busy machine 2 workers ran the clean matrix no faster than 1
    (measured: 0.93x, while the runs' CPU time split evenly over the two workers). A
    session per worker gives each its own share, which is what ``--jobs N`` asks for. Being
    outside the terminal's process group, a worker no longer gets the terminal's Ctrl-C or
    hang-up (it ignores Ctrl-C anyway): the parent-death signal kills it when the suite's
    process ends, however it ends."""
    with contextlib.suppress(OSError):
        os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)


def _worker_main(conn: Any, own_group: bool = True) -> None:
    """A LocalPool worker: run the tasks it is sent until it is sent None."""
    if own_group:
        own_scheduling_group()
    import kvcheck.workloads.run  # noqa: F401  (the simulation's imports, before "ready")

    # Ctrl-C is the suite's to handle: it kills the workers (trio keeps an ignored SIGINT).
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    try:
        conn.send("ready")
        while (task := conn.recv()) is not None:
            conn.send(run_seed(task))
    except (EOFError, BrokenPipeError):  # the suite is gone (interrupted): so is its worker
        return


def local_executor(jobs: int, run_timeout: float | None = None, *, own_groups: bool = True) -> cf.Executor:
    return LocalPool(jobs, run_timeout, own_groups=own_groups)


class DaskExecutor:
    """An existing Dask distributed cluster behind the concurrent.futures interface."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            from kvcheck.exitcodes import UsageError

            raise UsageError("--dask-scheduler needs the distributed package: pip install 'kvcheck[dask]'") from None
        self.client = Client(address)
        self.executor = self.client.get_executor(pure=False)

    def slots(self) -> int:
        """Worker processes of the cluster (one simulation per process at a time)."""
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def close(self) -> None:
        self.executor.shutdown(wait=False)
        self.client.close()


def execute(sched: Scheduler, executor: cf.Executor, slots: int,
            on_result: Callable[[SeedResult], None] | None = None) -> None:
    """Keep ``slots`` tasks in flight until the scheduler has none left."""
    pending: set[cf.Future[SeedResult]] = set()

    def fill() -> None:
        while len(pending) < slots:
            task = sched.next_task()
            if task is None:
                return
            pending.add(executor.submit(run_seed, task))

    fill()
    try:
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                pending.discard(fut)
                result = fut.result()
                sched.take(result)
                if on_result is not None:
                    on_result(result)
            fill()
    finally:
        for fut in pending:
            fut.cancel()


# ---------------------------------------------------------------------------------------
# Where the suite's time went


def utilisation(results: Sequence[SeedResult], start: float, end: float, slots: int) -> dict[str, Any]:
    """How busy ``slots`` workers were between ``start`` and ``end`` (Unix times) running
    ``results``: a worker is busy from a task's ``started`` to its ``ended``. The idle
    worker-seconds (``slots`` x wall - busy) are split into ``startup`` (before a worker's
    first task: process start, imports), ``between`` (between two tasks of one worker: the
    hand-over through the parent, per-task overhead) and ``tail`` (after a worker's last
    task while others still ran: the schedule's imbalance); slots that never ran a task
    are idle from start to end (``unused``). Wall time is the machine's to give on a shared
    host, so each worker's CPU seconds are given too."""
    by_worker: dict[str, list[SeedResult]] = {}
    for r in results:
        if r.worker and r.ended >= r.started > 0:
            by_worker.setdefault(r.worker, []).append(r)
    wall = max(end - start, 0.0)
    workers = []
    startup = between = tail = busy = 0.0
    for name, rs in sorted(by_worker.items()):
        rs.sort(key=lambda r: r.started)
        w_busy = sum(r.ended - r.started for r in rs)
        w_startup = max(rs[0].started - start, 0.0)
        w_between = sum(max(b.started - a.ended, 0.0) for a, b in itertools.pairwise(rs))
        w_tail = max(end - rs[-1].ended, 0.0)
        workers.append({"worker": name, "runs": len(rs), "busy_seconds": round(w_busy, 3),
                        "cpu_seconds": round(sum(r.cpu_seconds for r in rs), 3),
                        "startup_seconds": round(w_startup, 3), "between_seconds": round(w_between, 3),
                        "tail_seconds": round(w_tail, 3)})
        busy += w_busy
        startup += w_startup
        between += w_between
        tail += w_tail
    unused = max(slots - len(by_worker), 0) * wall
    handovers = sum(max(len(rs) - 1, 0) for rs in by_worker.values())
    return {"wall_seconds": round(wall, 3), "slots": slots, "busy_seconds": round(busy, 3),
            "idle_seconds": round(max(slots * wall - busy, 0.0), 3),
            "startup_seconds": round(startup, 3), "between_seconds": round(between, 3),
            "tail_seconds": round(tail, 3), "unused_seconds": round(unused, 3),
            "overhead_per_task": round(between / handovers, 4) if handovers else None,
            "runs_cpu_seconds": round(sum(r.cpu_seconds for r in results), 3),
            "workers": workers}


# ---------------------------------------------------------------------------------------
# The outcome


def regress_dir(store: Path) -> Path:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
    base = store / "regress"
    for n in range(1000):
        path = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    from kvcheck.exitcodes import KvcheckError

    raise KvcheckError(f"could not create a regress directory under {base}")


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 3) if xs else None


def summarize_plan(plan: Plan, out_dir: Path, *, executor: str, jobs: int, wall: float, quick: bool,
                   timing: dict[str, Any] | None = None) -> dict[str, Any]:
    """regress.json's document."""
    def rel(run_dir: str) -> str | None:
        if not run_dir:
            return None
        try:
            return os.path.relpath(run_dir, out_dir)
        except ValueError:
            return run_dir

    def seed_json(r: SeedResult) -> dict[str, Any]:
        d = asdict(r)
        d.pop("row")
        d["run_dir"] = rel(r.run_dir)
        return d

    cells = []
    for cell in plan.clean:
        rs = cell.results
        cells.append({
            "workload": cell.workload, "faults": cell.faults, "runs": len(rs),
            "valid": sum(r.valid is True for r in rs), "invalid": sum(r.valid is False for r in rs),
            "unknown": sum(r.valid not in (True, False) for r in rs),
            "errors": sum(r.error is not None for r in rs),
            "unhealthy": sum(r.healthy is False for r in rs),
            "runs_with_findings": sum(r.finding_count > 0 for r in rs),
            "median_wall_seconds": _median([r.wall_seconds for r in rs]),
            "seeds": [seed_json(r) for r in rs]})
    clean_ok = all(c["valid"] == c["runs"] for c in cells)
    rows = []
    for row in plan.bugs:
        rec = row.recorded()
        caught = row.first is not None
        first = row.results[row.first] if caught and row.first is not None else None
        distinct: dict[str, None] = {}
        for r in rec:
            for f in r.findings:
                distinct.setdefault(f, None)
        rows.append({
            "bug": row.bug, "workload": row.workload, "faults": row.faults, "time_limit": row.time_limit,
            "settings": row.settings, "exposure": "table" if row.from_table else "default",
            "caught": caught, "stopped": row.stopped, "not_run": row.runnable,
            "first_seed": row.first, "seeds_run": len(rec),
            "seeds_to_detection": len(rec) if caught else None,
            "wall_to_detection": round(sum(r.wall_seconds for r in rec), 3) if caught else None,
            "caught_by": first.anomalies if first else [],
            "report": _report_of(rel(first.run_dir)) if first else None,
            "median_wall_seconds": _median([r.wall_seconds for r in rec]),
            "findings": {"runs_with_findings": sum(r.finding_count > 0 for r in rec),
                         "total": sum(r.finding_count for r in rec), "distinct": list(distinct)[:20],
                         "distinct_count": len(distinct)},
            "fired": sum(r.fired for r in rec if r.fired is not None)
            if any(r.fired is not None for r in rec) else None,
            "swarm": row.swarm,
            "unhealthy_runs": sum(r.healthy is False for r in rec),
            "errors": sum(r.error is not None for r in rec),
            "seeds": [seed_json(r) for r in rec]})
    bugs_ok = all(r["caught"] for r in rows)
    return {"version": 1, "started": out_dir.name, "quick": quick, "executor": executor, "jobs": jobs,
            "budget": asdict(plan.budget), "first_seed": plan.seed_base, "wall_seconds": round(wall, 3),
            "ok": clean_ok and bugs_ok,
            "clean": {"ok": clean_ok, "fault_mixes": list(dict.fromkeys(c.faults for c in plan.clean)),
                      "runs": sum(c["runs"] for c in cells), "cells": cells},
            "bugs": {"ok": bugs_ok, "caught": sum(r["caught"] for r in rows), "switches": len(rows), "rows": rows},
            **({"timing": timing} if timing is not None else {})}


def _report_of(run_dir: str | None) -> str | None:
    return None if run_dir is None else f"{run_dir}/report.html"


def _caught_by(row: dict[str, Any]) -> str:
    """``checker:kind`` of each anomaly that caught the switch (a kind already named after
    its checker, such as ``watch:reliable``, is not prefixed twice)."""
    names = (a["kind"] if str(a["kind"]).startswith(f"{a['checker']}:") else f"{a['checker']}:{a['kind']}"
             for a in row["caught_by"])
    return ", ".join(dict.fromkeys(names)) or "-"


def _why_not(row: dict[str, Any]) -> str:
    """Why a switch was not caught, telling "never fired" (the faults must reach it) from
    "fired and missed" (a checker must see it) when the runs counted firings."""
    if row["not_run"]:
        return f"not run: {row['not_run']}"
    why = row["stopped"]
    if row["fired"] == 0:
        why += "; never fired (the faults never reached its line)"
    elif row["fired"]:
        why += f"; fired {row['fired']} times, not detected"
    if row["errors"]:
        why += f"; {row['errors']} runs failed or were killed"
    return why


def render_table(doc: dict[str, Any]) -> str:
    """The terminal table."""
    lines = []
    c = doc["clean"]
    if not c["cells"]:
        lines.append("clean matrix: not run")
    else:
        lines.append(f"clean matrix: {c['runs']} runs, {'all valid' if c['ok'] else 'NOT all valid'}")
    lines.append(f"  {'workload':10} {'faults':30} {'runs':>4} {'valid':>5} {'invalid':>7} {'unknown':>7} "
                 f"{'findings':>8} {'wall p50':>8}")
    for cell in c["cells"]:
        med = cell["median_wall_seconds"]
        lines.append(f"  {cell['workload']:10} {cell['faults']:30} {cell['runs']:>4} {cell['valid']:>5} "
                     f"{cell['invalid']:>7} {cell['unknown']:>7} {cell['runs_with_findings']:>8} "
                     f"{'-' if med is None else f'{med:.2f}s':>8}")
        for s in cell["seeds"]:
            if s["valid"] is not True:
                lines.append(f"    seed {s['seed']}: {'INVALID' if s['valid'] is False else 'unknown'}"
                             f"{' ' + s['error'] if s.get('error') else ''} {s['run_dir'] or ''}")
    b = doc["bugs"]
    lines.append("")
    lines.append(f"bug matrix: {b['caught']} of {b['switches']} switches caught from the history")
    lines.append(f"  {'switch':26} {'workload':9} {'faults':22} {'caught':6} {'seeds':>5} {'seed':>4} "
                 f"{'wall':>7} {'fired':>6} {'findings':>8}  caught by / why not")
    for r in b["rows"]:
        wall = r["wall_to_detection"] if r["caught"] else sum(s["wall_seconds"] for s in r["seeds"])
        faults = ("swarm " if r["swarm"] else "") + r["faults"]
        faults = faults if len(faults) <= 22 else faults[:21] + "…"
        why = _caught_by(r) if r["caught"] else _why_not(r)
        exposure = "" if r["exposure"] == "table" else " (default exposure)"
        lines.append(f"  {r['bug']:26} {r['workload']:9} {faults:22} {'yes' if r['caught'] else 'NO':6} "
                     f"{r['seeds_run']:>5} {'-' if r['first_seed'] is None else r['first_seed']:>4} "
                     f"{wall:>6.1f}s {'-' if r['fired'] is None else r['fired']:>6} "
                     f"{r['findings']['runs_with_findings']:>8}  {why}{exposure}")
    lines.append("")
    clean = "not run" if not c["cells"] else "valid" if c["ok"] else "NOT valid"
    lines.append(f"{'OK' if doc['ok'] else 'FAILED'}: clean matrix {clean}, "
                 f"{b['caught']}/{b['switches']} switches caught; {doc['wall_seconds']:.1f}s wall "
                 f"on {doc['executor']}")
    return "\n".join(lines)


def render_html(doc: dict[str, Any]) -> str:
    e = html.escape

    def link(path: str | None, text: str) -> str:
        return f'<a href="{e(path)}">{e(text)}</a>' if path else e(text)

    clean_rows = []
    for cell in doc["clean"]["cells"]:
        bad = " ".join(link((s["run_dir"] or "") + "/report.html" if s["run_dir"] else None,
                            f"seed {s['seed']}") for s in cell["seeds"] if s["valid"] is not True)
        clean_rows.append(
            f"<tr class=\"{'ok' if cell['valid'] == cell['runs'] else 'bad'}\"><td>{e(cell['workload'])}</td>"
            f"<td>{e(cell['faults'])}</td><td>{cell['runs']}</td><td>{cell['valid']}</td><td>{cell['invalid']}</td>"
            f"<td>{cell['unknown']}</td><td>{cell['runs_with_findings']}</td>"
            f"<td>{cell['median_wall_seconds'] or '-'}</td><td>{bad}</td></tr>")
    bug_rows = []
    for r in doc["bugs"]["rows"]:
        findings = r["findings"]
        ftext = (f"{findings['runs_with_findings']} runs, {findings['distinct_count']} distinct"
                 + (f": {e(findings['distinct'][0])}" if findings["distinct"] else "")) if findings["total"] else "none"
        bug_rows.append(
            f"<tr class=\"{'ok' if r['caught'] else 'bad'}\"><td><code>{e(r['bug'])}</code></td>"
            f"<td>{e(r['workload'])}</td><td>{'swarm ' if r['swarm'] else ''}{e(r['faults'])}"
            f"{'' if r['exposure'] == 'table' else ' (default)'}</td>"
            f"<td>{'yes' if r['caught'] else 'no'}</td><td>{r['seeds_run']}</td>"
            f"<td>{'-' if r['first_seed'] is None else r['first_seed']}</td>"
            f"<td>{'-' if r['wall_to_detection'] is None else r['wall_to_detection']}</td>"
            f"<td>{'-' if r['fired'] is None else r['fired']}</td>"
            f"<td>{e(_caught_by(r)) if r['caught'] else e(_why_not(r))}</td>"
            f"<td>{link(r['report'], 'report') if r['report'] else ''}</td><td>{ftext}</td></tr>")
    title = f"kvcheck regress {doc['started']}: {'OK' if doc['ok'] else 'FAILED'}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }}
tr.ok td:first-child {{ border-left: 4px solid #2a2; }}
tr.bad td:first-child {{ border-left: 4px solid #c22; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>{e(doc['executor'])}, {doc['jobs']} workers, {doc['wall_seconds']} s wall{', --quick' if doc['quick'] else ''}.
Internal invariant findings are the store's own assertions: shown, never counted as a detection.</p>
<h2>Clean matrix: {'all valid' if doc['clean']['ok'] else 'NOT all valid'}</h2>
<table><thead><tr><th>workload</th><th>faults</th><th>runs</th><th>valid</th><th>invalid</th><th>unknown</th>
<th>runs with findings</th><th>median wall s</th><th>not valid</th></tr></thead>
<tbody>{''.join(clean_rows)}</tbody></table>
<h2>Bug matrix: {doc['bugs']['caught']} of {doc['bugs']['switches']} caught</h2>
<table><thead><tr><th>switch</th><th>workload</th><th>faults</th><th>caught</th><th>seeds</th><th>first seed</th>
<th>wall s to detection</th><th>fired</th><th>caught by / why not</th><th>failing run</th><th>internal findings</th></tr></thead>
<tbody>{''.join(bug_rows)}</tbody></table>
</body></html>
"""


@dataclass
class RegressOutcome:
    out_dir: Path
    document: dict[str, Any]
    plan: Plan

    @property
    def ok(self) -> bool:
        return bool(self.document["ok"])

    def seed_keys(self) -> set[tuple[str, int, Any, str]]:
        keys = {r.key() for cell in self.plan.clean for r in cell.results}
        keys |= {r.key() for row in self.plan.bugs for r in row.recorded()}
        return keys


def run_regress(plan: Plan, store: Path, *, jobs: int | None = None, dask_scheduler: str | None = None,
                progress: bool = True, quick: bool = False, own_groups: bool = True,
                longest_first: bool = True) -> RegressOutcome:
    """Run the plan's seeds on local processes or a Dask cluster; write regress.json/html.
    ``own_groups=False`` leaves the local workers in the suite's session (see
    ``own_scheduling_group``), ``longest_first=False`` hands the clean runs out seed by seed
    (see ``Scheduler``; the benchmark measures both)."""
    out_dir = regress_dir(store.resolve())  # absolute: workers may run elsewhere
    runs = out_dir / "runs"
    runs.mkdir()
    sched = Scheduler(plan, runs, longest_first=longest_first)
    t0, start, usage0 = time.perf_counter(), time.time(), _rusage()
    dask: DaskExecutor | None = None
    if dask_scheduler is not None:
        dask = DaskExecutor(dask_scheduler)
        executor: cf.Executor = dask.executor
        slots = dask.slots()
        label = f"dask {dask_scheduler} ({slots} workers)"
    else:
        slots = jobs or os.cpu_count() or 1
        executor = local_executor(slots, plan.budget.run_timeout, own_groups=own_groups)
        label = f"local ({slots} processes)"
    bar = _bar(sched, progress)
    try:
        def on_result(r: SeedResult) -> None:
            if bar is not None:
                bar.total = sched.total()
                bar.update(1)
                caught = sum(row.first is not None for row in plan.bugs)
                bad = sum(x.valid is not True for c in plan.clean for x in c.results)
                bar.set_postfix_str(f"clean not valid {bad}, caught {caught}/{len(plan.bugs)}")

        execute(sched, executor, slots, on_result)
        done = time.time()
    finally:
        if bar is not None:
            bar.close()
        if dask is not None:
            dask.close()
        else:
            executor.shutdown(wait=True, cancel_futures=True)
    sched.finish()
    wall, usage1 = time.perf_counter() - t0, _rusage()
    results = [r for c in plan.clean for r in c.results] + [r for row in plan.bugs for r in row.results.values()]
    timing = utilisation(results, start, done, slots)
    timing["teardown_seconds"] = round(max(wall - (done - start), 0.0), 3)
    # the suite's own CPU (scheduling, bookkeeping, progress bar: it competes with the workers
    # for the same cores) and, for local workers, their whole CPU (start-up and imports too)
    timing["parent_cpu_seconds"] = round(usage1[0] - usage0[0], 3)
    timing["workers_cpu_seconds"] = round(usage1[1] - usage0[1], 3) if dask is None else None
    doc = summarize_plan(plan, out_dir, executor=label, jobs=slots, wall=wall, quick=quick, timing=timing)
    (out_dir / "regress.json").write_text(json.dumps(doc, indent=1, default=str) + "\n")
    (out_dir / "regress.html").write_text(render_html(doc))
    return RegressOutcome(out_dir, doc, plan)


def _rusage() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its waited-for children."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def _bar(sched: Scheduler, enabled: bool) -> Any:
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=sched.total(), desc="regress", unit="run", leave=False)

