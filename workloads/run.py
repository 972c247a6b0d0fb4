"""``kvcheck run`` end to end: run directory, execution on a target, check, report, summary.

A run writes ``store/<workload>/<timestamp>/``:
- config.json — the ``RunConfig`` with its fault schedule (all a replay needs), written first;
- history.jsonl — the recorded history (``Recorder``), written when the run ends;
- results.json — ``{"valid", "checkers": {"linearizable": ...}, "run": {...}}``;
- report.html (+ its DOT file) from ``kvcheck.checker.report``;
- node logs (one file per node, from the target).
``store/latest`` is a relative symlink to the newest run directory.

``execute`` runs the workload on the configured target (the simulation, or real processes)
and returns the history; ``check_and_report`` checks it with the config's model and writes
results and report; ``recheck_run_dir`` does that again for an existing run directory (used
by ``kvcheck check RUN_DIR``); ``replay_run_dir`` re-executes a run from its config.json into
a new run directory and compares the two histories byte for byte.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kvcheck.checker.history import Op
from kvcheck.exitcodes import ExitCode, KvcheckError, MalformedInput, MissingInput
from kvcheck.workloads.config import ConfigError, RunConfig
from kvcheck.workloads.recorder import write_jsonl
from kvcheck.workloads.runner import summarize


@dataclass
class Execution:
    """What a target returns: the history and facts about the run."""

    ops: list[Op]
    info: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)  # file name -> text


Executor = Callable[[RunConfig, "Progress"], Execution]


class Progress:
    """A tqdm bar over simulated (or real) seconds with op and fault counts; silent when
    stderr is not a terminal or ``enabled`` is False."""

    def __init__(self, total: float, *, enabled: bool = True, desc: str = "run") -> None:
        self.total = total
        self.ops = 0
        self.faults = 0
        self.shown = 0.0
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=round(total, 1), desc=desc, unit="s", leave=False,
                            bar_format="{desc} {bar} {n:.1f}/{total:.1f}s simulated{postfix}")

    def event(self, op: Op, now: float) -> None:
        if op.type == "invoke":
            return
        if op.is_nemesis:
            self.faults += op.f.startswith("start-")
        else:
            self.ops += 1
        if self.bar is not None:
            wall = time.monotonic()
            if wall - self.shown >= 0.1:  # redraw at most ten times a (wall) second
                self.bar.n = round(min(now, self.total), 1)
                self.bar.set_postfix_str(f"{self.ops} ops, {self.faults} faults", refresh=False)
                self.bar.refresh()
                self.shown = wall

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def default_executor(config: RunConfig, progress: Progress) -> Execution:
    if config.target == "sim":
        from kvcheck.workloads.sim.cluster import execute_sim

        return execute_sim(config, progress)
    from kvcheck.workloads.local import execute_local

    return execute_local(config, progress)


def new_run_dir(store: Path, workload: str) -> Path:
    """store/<workload>/<UTC timestamp>/, unique even for runs in the same millisecond."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
    base = store / workload
    base.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = base / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise KvcheckError(f"could not create a run directory under {base}")


def point_latest(store: Path, run_dir: Path) -> None:
    link = store / "latest"
    tmp = store / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(run_dir.relative_to(store))
    os.replace(tmp, link)


def verdict_code(valid: Any) -> ExitCode:
    if valid is True:
        return ExitCode.VALID
    if valid is False:
        return ExitCode.INVALID
    return ExitCode.UNKNOWN


def worst(codes: list[int]) -> int:
    """Jepsen's worst verdict of several runs: invalid, then unknown, then valid."""
    for code in (ExitCode.INVALID, ExitCode.UNKNOWN):
        if code in codes:
            return int(code)
    return max(codes, default=0)


COMPARE_FAILED = "compare-failed"


def compare_failed_ops(ops: list[Op]) -> list[Op]:
    """The history with every failed cas meaning "the compare failed".

    Our clients record a cas whose compare failed as ``fail`` with error "compare-failed": it
    happened and read a value other than ``old``, which the cas-register model checks with
    fail_cas_means_compare_failed (a stronger check than Jepsen's "a failed op did not
    happen"). A cas refused for any other reason (not leader, no space, ...) certainly did not
    happen, so its invocation and completion are dropped, which is exact.
    """
    from kvcheck.checker.history import pair_calls

    refused: set[int] = set()
    for call in pair_calls(ops):
        c = call.completion
        if call.f == "cas" and c is not None and c.type == "fail" and c.error != COMPARE_FAILED:
            refused.update((id(call.invoke), id(c)))
    return [op for op in ops if id(op) not in refused] if refused else ops


def check_ops(ops: list[Op], config: RunConfig, info: dict[str, Any]) -> dict[str, Any]:
    from kvcheck.checker.linearizable import check_history
    from kvcheck.checker.models import get_model

    if config.model == "cas-register":
        model = get_model(config.model, fail_cas_means_compare_failed=True)
        ops = compare_failed_ops(ops)
    else:
        model = get_model(config.model)
    result = check_history(ops, model, timeout=config.check_timeout)
    lin = result.to_json()
    verdict: Any = lin["valid"]
    findings = info.get("findings", [])
    return {"valid": verdict, "checkers": {"linearizable": lin}, "run": {**info, "summary": summarize(ops)},
            "findings": findings, "bugs": info.get("bugs", {"enabled": list(config.bugs)})}


def write_report(run_dir: Path, ops: list[Op], results: dict[str, Any], config: RunConfig) -> Path:
    from kvcheck.checker.report import write_report as draw

    title = f"{config.workload} / {','.join(config.faults) or 'no faults'} / seed {config.seed}"
    logs = {p.name: p.read_text(encoding="utf-8", errors="replace") for p in sorted(run_dir.glob("*.log"))}
    return draw(ops, results, run_dir / "report.html", title=title, config=config.to_json(), logs=logs)


def check_and_report(run_dir: Path, ops: list[Op], config: RunConfig, info: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    results = check_ops(ops, config, info)
    results["check_seconds"] = round(time.perf_counter() - t0, 3)
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    write_report(run_dir, ops, results, config)
    return results


@dataclass
class RunOutcome:
    run_dir: Path
    code: int
    results: dict[str, Any]
    execution: Execution
    wall_seconds: float


def run_once(config: RunConfig, store: Path, *, executor: Executor | None = None,
             progress: bool = True, echo: Callable[[str], None] | None = None) -> RunOutcome:
    """Execute one run, write its directory, check and report it; returns the outcome."""
    config.validate()
    config.with_schedule()
    run_dir = new_run_dir(store, config.workload)
    (run_dir / "config.json").write_text(json.dumps(config.to_json(), indent=1) + "\n")
    point_latest(store, run_dir)
    bar = Progress(config.time_limit, enabled=progress, desc=f"{config.workload} seed {config.seed}")
    t0 = time.perf_counter()
    try:
        execution = (executor or default_executor)(config, bar)
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    write_jsonl(execution.ops, run_dir / "history.jsonl")
    for name, text in execution.logs.items():
        (run_dir / name).write_text(text)
    info = {**execution.info, "wall_seconds": round(wall, 3)}
    results = check_and_report(run_dir, execution.ops, config, info)
    code = int(verdict_code(results["valid"]))
    outcome = RunOutcome(run_dir, code, results, execution, wall)
    if echo is not None:
        echo(render_summary(outcome, config))
    return outcome


def render_summary(outcome: RunOutcome, config: RunConfig) -> str:
    from kvcheck.checker.cli import op_text

    r = outcome.results
    s = r["run"]["summary"]
    lines = [f"run {outcome.run_dir}"]
    lines.append(f"  {config.workload} on {config.target} ({config.nodes} nodes), seed {config.seed}, "
                 f"{config.time_limit:g}s simulated" if config.target == "sim" else
                 f"  {config.workload} on {config.target} ({config.nodes} nodes), {config.time_limit:g}s")
    lines.append("  ops:      " + "; ".join(
        f"{f} " + " ".join(f"{k} {v}" for k, v in row.items()) for f, row in sorted(s["ops"].items())))
    if s.get("latency_ms"):
        lines.append("  latency:  " + "; ".join(
            f"{f} p50 {_ms(q['p50'])} p99 {_ms(q['p99'])} max {_ms(q['max'])}" for f, q in s["latency_ms"].items())
            + " ms (ok calls)")
    if s["faults"]:
        lines.append("  faults:   " + ", ".join(
            f"{k} x{v['start']} (healed {v['stop']})" for k, v in sorted(s["faults"].items())))
    else:
        lines.append("  faults:   none")
    lin = r["checkers"]["linearizable"]
    verdict = {True: "valid", False: "INVALID"}.get(lin["valid"], "unknown")
    extra = f" ({lin.get('unknown_cause')})" if lin["valid"] == "unknown" and lin.get("unknown_cause") else ""
    keys = lin.get("keys") or {}
    model = f"{lin.get('model')}, {len(keys)} keys" if len(keys) > 1 else lin.get("model")
    lines.append(f"  linearizable ({model}): {verdict}{extra}, checked in {r.get('check_seconds', 0):g}s")
    for name, key in keys.items():
        if key.get("valid") is False and key.get("op"):
            lines.append(f"    key {name}: {op_text(key['op'])} cannot be linearized")
            minimal = [op for op in key.get("minimal_history") or [] if op.get("type") != "invoke"]
            if minimal:
                shown = "; ".join(op_text(op) for op in minimal[:MINIMAL_SHOWN])
                more = f"; … {len(minimal) - MINIMAL_SHOWN} more" if len(minimal) > MINIMAL_SHOWN else ""
                lines.append(f"      minimal failing sub-history: {shown}{more}")
    if r.get("findings"):
        lines.append(f"  internal invariant findings: {len(r['findings'])} (see results.json)")
    lines.append(f"  wall {outcome.wall_seconds:.2f}s; report {outcome.run_dir / 'report.html'}")
    return "\n".join(lines)


def _ms(v: float) -> str:
    """Milliseconds, three significant digits without an exponent: 0.512, 4.17, 56.5, 1570."""
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


MINIMAL_SHOWN = 8  # calls of a minimal failing sub-history the summary lists


def read_config(run_dir: Path) -> RunConfig:
    path = run_dir / "config.json"
    if not run_dir.is_dir():
        raise MissingInput(f"{run_dir}: not a run directory")
    if not path.is_file():
        raise MissingInput(f"{path}: missing (a run directory has config.json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise MalformedInput(str(path), exc.lineno, f"not JSON: {exc.msg}") from None
    try:
        return RunConfig.from_json(data)
    except ConfigError as exc:
        raise MalformedInput(str(path), None, str(exc)) from None


def recheck_run_dir(path: Path | str) -> int:
    """Re-check a run directory with the model its config names; rewrites results.json and
    report.html there. Returns the exit code (0 valid, 1 invalid, 2 unknown)."""
    from kvcheck.checker.formats import read_history

    run_dir = Path(path)
    config = read_config(run_dir)
    hist = run_dir / "history.jsonl"
    if not hist.is_file():
        raise MissingInput(f"{hist}: missing")
    ops, _ = read_history(hist, "jsonl")
    old: dict[str, Any] = {}
    results_path = run_dir / "results.json"
    if results_path.is_file():
        try:
            old = json.loads(results_path.read_text()).get("run", {})
        except (json.JSONDecodeError, AttributeError):
            old = {}
    info = {k: v for k, v in old.items() if k != "summary"}
    results = check_and_report(run_dir, ops, config, info)
    return int(verdict_code(results["valid"]))


def replay_run_dir(path: Path | str, store: Path | None = None, *, executor: Executor | None = None,
                   progress: bool = True, echo: Callable[[str], None] | None = None) -> tuple[RunOutcome, bool]:
    """Re-execute a run from its config.json alone into a new run directory (beside the
    original, in the same store unless ``store`` is given). Returns the new outcome and
    whether its history.jsonl equals the original byte for byte."""
    run_dir = Path(path)
    config = read_config(run_dir)
    original = run_dir / "history.jsonl"
    if not original.is_file():
        raise MissingInput(f"{original}: missing")
    if store is None:
        store = run_dir.resolve().parent.parent
    outcome = run_once(config, store, executor=executor, progress=progress, echo=echo)
    same = (outcome.run_dir / "history.jsonl").read_bytes() == original.read_bytes()
    return outcome, same
