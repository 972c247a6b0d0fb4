"""``kvcheck shrink RUN_DIR``: turn a failing simulation run into a minimal reproducer that
fails with the same anomaly class.

The run's config.json holds everything a replay needs (seed, parameters, the fault schedule
as data), so a smaller run is a smaller config re-run by seed in the simulation. The
shrinker keeps a candidate when its checkers call it invalid with the original's first anomaly
(``checker:kind``, e.g. ``linearizable:nonlinearizable``), and tries, in rounds until a round
changes nothing or the budget (candidate runs, wall seconds) is spent:

1. fewer faults: delta debugging (Zeller's ddmin) over the recorded fault schedule;
2. a shorter time limit: the end of the original anomaly's ops plus a second, then halvings
   (faults starting after the new limit are dropped, the rest end by it);
   and if that fails to shorten it, the faults moved earlier with the limit shortened as much;
3. fewer nodes, client threads, keys and a lower request rate: the smallest value that still
   fails, smallest first.

A run is chaotic in its schedule: without one fault, every later message, election and
client retry happens at another moment, so a bug that needs some interleaving may vanish
with the original seed although the remaining faults can still produce it. So once the
rounds above are done and more than one fault is left, delta debugging over the faults runs
again with each candidate tried on ``seed_tries`` seeds (its own, then the next ones): a
candidate fails if any of them fails, and the reproducer takes that seed (its steps say so).
(A pinned no_session_dedup run stayed at 4 faults, each removal losing the anomaly on seed
0; with reseeding it shrinks to fewer.)

Every candidate runs into a scratch store; the minimal config is run once more into a new
run directory beside the original (with shrink.json: before/after sizes and the steps kept),
which ``kvcheck replay`` re-executes byte for byte.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvcheck.checker.formats import read_history
from kvcheck.exitcodes import ExitCode, KvcheckError, UsageError
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.nemesis import Fault
from kvcheck.workloads.regress import anomalies_of, checkers_verdict
from kvcheck.workloads.run import RunOutcome, read_config, run_once


@dataclass
class Size:
    """How big a run is."""

    faults: int
    ops: int  # client op completions
    simulated_seconds: float
    wall_seconds: float
    nodes: int
    concurrency: int
    keys: int
    time_limit: float
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def size_of(config: RunConfig, results: dict[str, Any], ops: int) -> Size:
    run = results.get("run", {})
    return Size(len(config.schedule), ops, float(run.get("simulated_seconds") or config.time_limit),
                float(run.get("wall_seconds") or 0.0), config.nodes, config.concurrency, config.keys,
                config.time_limit, config.seed)


def count_ops(history: Path) -> int:
    """The client ops a run completed (ok, fail or info): the nemesis's and the harness's own
    processes (hash checks) are left out by ``Op.is_nemesis``, the checkers' rule."""
    ops, _ = read_history(history)
    return sum(op.type != "invoke" and not op.is_nemesis for op in ops)


@dataclass
class ShrinkResult:
    original: Path
    run_dir: Path
    anomaly: str
    before: Size
    after: Size
    runs: int
    seconds: float
    steps: list[str] = field(default_factory=list)
    stopped: str = "minimal"  # or why it stopped early


class Shrinker:
    def __init__(self, config: RunConfig, anomaly: tuple[str, str], scratch: Path, *,
                 max_runs: int, max_seconds: float, echo: Callable[[str], None] | None = None) -> None:
        self.best = config
        self.failing = config  # the last candidate that failed (with the seed it failed on)
        self.anomaly = anomaly
        self.scratch = scratch
        self.max_runs = max_runs
        self.deadline = time.monotonic() + max_seconds
        self.runs = 0
        self.steps: list[str] = []
        self.echo = echo
        self.stopped = "minimal"

    def exhausted(self) -> bool:
        if self.runs >= self.max_runs:
            self.stopped = f"run budget ({self.max_runs} candidate runs) spent"
            return True
        if time.monotonic() >= self.deadline:
            self.stopped = "wall budget spent"
            return True
        return False

    def fails(self, config: RunConfig, *, seeds: int = 1) -> bool:
        """Whether ``config`` still fails with the anomaly (one simulation run), or, with
        ``seeds`` > 1, whether it does with its own seed or one of the next ``seeds`` - 1;
        ``self.failing`` is then the config (and seed) that failed."""
        for i in range(seeds):
            if self.exhausted():
                return False
            self.runs += 1
            cand = dataclasses.replace(config, schedule=list(config.schedule), seed=config.seed + i)
            outcome = run_once(dataclasses.replace(cand, schedule=list(cand.schedule)), self.scratch, progress=False)
            kinds = {(a["checker"], a["kind"]) for a in anomalies_of(outcome.results)}
            if checkers_verdict(outcome.results) is False and self.anomaly in kinds:
                self.failing = cand
                return True
        return False

    def keep(self, config: RunConfig, what: str) -> None:
        self.best = config
        self.steps.append(what)
        if self.echo is not None:
            self.echo(f"  kept: {what} (candidate run {self.runs})")

    # -- the fault schedule ------------------------------------------------------------

    def with_schedule(self, schedule: list[Fault]) -> RunConfig:
        kinds = list(dict.fromkeys(f.kind for f in schedule))
        return dataclasses.replace(self.best, schedule=list(schedule), faults=kinds)

    def ddmin_faults(self, seeds: int = 1) -> bool:
        """Zeller's ddmin over the schedule: the smallest subsequence of faults (1-minimal)
        that still fails (each candidate tried on ``seeds`` seeds, see the module doc).
        Returns whether it removed any."""
        faults = list(self.best.schedule)
        if not faults:
            return False
        before, seed = len(faults), self.best.seed

        def note() -> str:
            return f" (seed {seed} -> {self.best.seed})" if self.best.seed != seed else ""

        if self.fails(self.with_schedule([]), seeds=seeds):
            self.best = self.failing
            self.keep(self.best, f"faults {before} -> 0{note()}")
            return True
        n = 2
        while len(faults) >= 2 and not self.exhausted():
            chunk = math.ceil(len(faults) / n)
            parts = [faults[i:i + chunk] for i in range(0, len(faults), chunk)]
            reduced = False
            for part in parts:  # a part alone
                if self.fails(self.with_schedule(part), seeds=seeds):
                    faults, n, reduced = part, 2, True
                    break
            if not reduced and len(parts) > 2:  # with two parts the complements are the parts
                for i in range(len(parts)):
                    rest = [f for j, p in enumerate(parts) if j != i for f in p]
                    if self.fails(self.with_schedule(rest), seeds=seeds):
                        faults, n, reduced = rest, max(n - 1, 2), True
                        break
            if reduced:
                self.best = self.failing  # later candidates build on it (and on its seed)
            elif n >= len(faults):
                break
            else:
                n = min(len(faults), 2 * n)
        if len(faults) < before:
            self.keep(self.with_schedule(faults), f"faults {before} -> {len(faults)}{note()}")
            return True
        return False

    # -- the run's parameters ----------------------------------------------------------

    def clipped(self, limit: float) -> RunConfig:
        schedule = [dataclasses.replace(f, stop=min(f.stop, limit)) for f in self.best.schedule if f.start < limit]
        kinds = list(dict.fromkeys(f.kind for f in schedule))
        return dataclasses.replace(self.best, time_limit=limit, schedule=schedule, faults=kinds)

    def shorter(self, anomaly_end: float | None) -> bool:
        """The shortest time limit that still fails, trying the anomaly's end + 1 s and halvings."""
        limit = self.best.time_limit
        candidates = {round(limit / d, 3) for d in (8, 4, 2)}
        if anomaly_end is not None:
            candidates.add(float(math.ceil(anomaly_end + 1.0)))
        for c in sorted(x for x in candidates if 0.5 <= x < limit):
            if self.fails(self.clipped(c)):
                self.keep(self.clipped(c), f"time limit {limit:g} -> {c:g} s")
                return True
        return self.earlier()

    def earlier(self) -> bool:
        """The same faults moved earlier: the first starts after 1 s, the time limit shrinks by
        as much (a late fault otherwise keeps the run long)."""
        schedule = self.best.schedule
        shift = round(min((f.start for f in schedule), default=0.0) - 1.0, 3)
        if shift < 1.0:
            return False
        moved = [dataclasses.replace(f, start=round(f.start - shift, 3), stop=round(f.stop - shift, 3))
                 for f in schedule]
        limit = round(self.best.time_limit - shift, 3)
        cand = dataclasses.replace(self.best, schedule=moved, time_limit=limit)
        if self.fails(cand):
            self.keep(cand, f"faults {shift:g} s earlier, time limit {self.best.time_limit:g} -> {limit:g} s")
            return True
        return False

    def smaller(self, name: str, values: list[int]) -> bool:
        current = getattr(self.best, name)
        for v in sorted(set(values)):
            if v >= current:
                break
            cand = dataclasses.replace(self.best, schedule=list(self.best.schedule))
            setattr(cand, name, v)
            if self.fails(cand):
                self.keep(cand, f"{name} {current} -> {v}")
                return True
        return False


    def lower_rate(self) -> bool:
        """Fewer ops: the lowest request rate (ops/s over all clients) that still fails."""
        current = self.best.rate
        for v in (2.0, 5.0, 10.0, 20.0):
            if current is not None and v >= current:
                break
            cand = dataclasses.replace(self.best, rate=v, schedule=list(self.best.schedule))
            if self.fails(cand):
                self.keep(cand, f"rate {current or 'unbounded'} -> {v:g} ops/s")
                return True
        return False


def anomaly_end_seconds(run_dir: Path, results: dict[str, Any], anomaly: tuple[str, str]) -> float | None:
    """The time (seconds) of the last op of the original's first such anomaly."""
    checker = (results.get("checkers") or {}).get(anomaly[0]) or {}
    ids: set[int] = set()
    for a in checker.get("anomalies") or []:
        if a.get("kind") == anomaly[1]:
            ids = {int(i) for i in a.get("ops") or []}
            break
    if not ids:
        return None
    ops, _ = read_history(run_dir / "history.jsonl")
    times = [op.time for op in ops if op.index in ids and op.time is not None]
    return max(times) / 1e9 if times else None


def shrink_run(path: Path | str, *, max_runs: int = 150, max_seconds: float = 600.0, seed_tries: int = 8,
               echo: Callable[[str], None] | None = None) -> ShrinkResult:
    """Shrink a failing run directory; returns where the minimal run went and the sizes."""
    run_dir = Path(path)
    config = read_config(run_dir)
    if config.target != "sim":
        raise UsageError(f"{run_dir}: only simulation runs can be shrunk (re-run by seed); this run used "
                         f"--target {config.target}")
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise UsageError(f"{run_dir}: no results.json (check it first: kvcheck check {run_dir})")
    results = json.loads(results_path.read_text())
    found = anomalies_of(results)
    if checkers_verdict(results) is not False or not found:
        raise UsageError(f"{run_dir}: the run is not invalid; only a failing run can be shrunk")
    anomaly = (found[0]["checker"], found[0]["kind"])
    before = size_of(config, results, count_ops(run_dir / "history.jsonl"))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kvcheck-shrink-") as scratch:
        s = Shrinker(config, anomaly, Path(scratch), max_runs=max_runs, max_seconds=max_seconds, echo=echo)
        if not s.fails(config):
            raise UsageError(f"{run_dir}: re-running its config does not fail with {anomaly[0]}:{anomaly[1]} "
                             "(was it recorded by another kvcheck version?)")
        end = anomaly_end_seconds(run_dir, results, anomaly)
        first = True
        seeds = 1  # then seed_tries, once the rounds on the original seed change nothing
        while not s.exhausted():
            changed = s.ddmin_faults(seeds)
            changed = s.shorter(end if first else None) or changed
            first = False
            changed = s.smaller("nodes", [3, 4]) or changed
            changed = s.smaller("concurrency", [1, 2, 3, 4, 6, 8]) or changed
            changed = s.smaller("keys", [1, 2, 4]) or changed
            changed = s.lower_rate() or changed
            if not changed:
                if seeds >= seed_tries or not s.best.schedule:
                    break
                seeds = seed_tries
        stopped = s.stopped if s.exhausted() else "minimal"
        best = s.best
    store = run_dir.resolve().parent.parent
    outcome: RunOutcome = run_once(best, store, progress=False)
    kinds = {(a["checker"], a["kind"]) for a in anomalies_of(outcome.results)}
    if checkers_verdict(outcome.results) is not False or anomaly not in kinds:  # deterministic: cannot happen
        raise KvcheckError(f"the shrunk config did not fail again in {outcome.run_dir}: the simulation is "
                           "not deterministic for this run (a bug in kvcheck)", ExitCode.SOFTWARE)
    after = size_of(best, outcome.results, count_ops(outcome.run_dir / "history.jsonl"))
    result = ShrinkResult(run_dir, outcome.run_dir, f"{anomaly[0]}:{anomaly[1]}", before, after, s.runs,
                          time.perf_counter() - t0, s.steps, stopped)
    (outcome.run_dir / "shrink.json").write_text(json.dumps({
        "original": str(run_dir), "anomaly": result.anomaly, "before": before.to_json(),
        "after": after.to_json(), "candidate_runs": s.runs, "seconds": round(result.seconds, 3),
        "steps": s.steps, "stopped": stopped}, indent=1) + "\n")
    return result


def render(result: ShrinkResult) -> str:
    b, a = result.before, result.after
    lines = [f"shrunk {result.original} -> {result.run_dir}",
             f"  anomaly kept: {result.anomaly}; {result.runs} candidate runs in {result.seconds:.1f}s ({result.stopped})",
             f"  {'':18} {'before':>10} {'after':>10}",
             f"  {'faults':18} {b.faults:>10} {a.faults:>10}",
             f"  {'ops':18} {b.ops:>10} {a.ops:>10}",
             f"  {'simulated s':18} {b.simulated_seconds:>10.1f} {a.simulated_seconds:>10.1f}",
             f"  {'wall s':18} {b.wall_seconds:>10.2f} {a.wall_seconds:>10.2f}",
             f"  {'time limit s':18} {b.time_limit:>10g} {a.time_limit:>10g}",
             f"  {'nodes':18} {b.nodes:>10} {a.nodes:>10}",
             f"  {'client threads':18} {b.concurrency:>10} {a.concurrency:>10}",
             f"  {'keys':18} {b.keys:>10} {a.keys:>10}",
             f"  {'seed':18} {b.seed:>10} {a.seed:>10}"]
    if result.steps:
        lines.append("  steps: " + "; ".join(result.steps))
    lines.append(f"reproduce: kvcheck replay {result.run_dir}")
    return "\n".join(lines)
