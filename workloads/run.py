"""``kvcheck run`` end to end: run directory, execution on a target, check, report, summary.

A run writes ``store/<workload>/<timestamp>/``:
- config.json — the ``RunConfig`` with its fault schedule (all a replay needs), written first;
- history.jsonl — the recorded history (``Recorder``), written when the run ends;
- results.json — ``{"valid", "checkers_valid", "internal", "checkers": {...}, "run": {...},
  "findings", "bugs"}``: ``checkers_valid`` is the checkers' verdict on the history alone;
  ``internal`` what the store showed from inside (internal invariant findings, a liveness
  anomaly when the cluster did not recover after the final heal, ``internal_problems``);
  ``valid`` is false when either is (``--no-fail-on-findings`` exits on the checkers'
  verdict only); ``findings`` each distinct finding once with count, first time and
  members; ``bugs`` how often each enabled bug switch fired; ``run.stopped`` why a run ended
  early (its wall-clock budget, Ctrl-C);
- report.html (+ its DOT file) from ``kvcheck.checker.report``;
- node logs (one file per node, from the target).
``store/latest`` is a relative symlink to the newest run directory with results (it moves
only once history.jsonl and results.json are written).

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kvcheck.checker.history import Op
from kvcheck.exitcodes import ExitCode, KvcheckError, MalformedInput, MissingInput
from kvcheck.workloads.config import ConfigError, RunConfig
from kvcheck.workloads.execution import Execution, Executor, Progress
from kvcheck.workloads.recorder import write_jsonl
from kvcheck.workloads.runner import summarize


def default_executor(config: RunConfig, progress: Progress) -> Execution:
    if config.target == "sim":
        from kvcheck.workloads.sim.cluster import execute_sim

        return execute_sim(config, progress)
    if config.target == "etcd":
        from kvcheck.workloads.etcd.cluster import execute_etcd

        return execute_etcd(config, progress)
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


def check_ops(ops: list[Op], config: RunConfig, info: dict[str, Any]) -> dict[str, Any]:
    """Check a run's history with every checker its workload names (``checker.api``), each
    deciding everything it can (a run's report wants every anomaly, not just the first)."""
    from kvcheck.checker.api import CheckOptions, results_json, run_checkers
    from kvcheck.workloads.workload import make_workload

    workload = make_workload(config.workload, keys=config.keys, config=config)
    settings = workload.check_options()
    # Every run's history is also checked for availability: once no fault has been active
    # for the run's recovery bound, the store must answer (checker.availability), for longer
    # than one leader change may keep it from answering.
    settings["extra"] = {"availability_bound": config.recovery_bound(),
                         "availability_span": config.leader_change_bound(), **settings.get("extra", {})}
    options = CheckOptions(timeout=config.check_timeout, all_keys=True, **settings)
    checkers = tuple(dict.fromkeys((*workload.checkers, "availability")))
    results = results_json(run_checkers(checkers, ops, options))
    findings = info.get("findings", [])
    internal = internal_problems(ops, config, info)
    checkers_valid = results["valid"]
    valid = False if internal["problems"] else checkers_valid
    return {**results, "valid": valid, "checkers_valid": checkers_valid, "internal": internal,
            "run": {**info, "summary": summarize(ops)}, "findings": findings,
            "bugs": info.get("bugs", {"enabled": list(config.bugs)})}


def internal_problems(ops: list[Op], config: RunConfig, info: dict[str, Any]) -> dict[str, Any]:
    """What the run saw besides the history: the store's internal invariant findings and
    whether the cluster recovered after the final heal (a liveness anomaly: no leader with
    every member caught up within ``config.recovery_bound()``; keys none of whose final reads
    succeeded are listed beside it). Either makes the run invalid, apart from the checkers'
    verdicts."""
    findings = info.get("findings") or []
    total = sum(f.get("count", 1) if isinstance(f, dict) else 1 for f in findings)
    out: dict[str, Any] = {"findings": total, "distinct_findings": len(findings), "liveness": None,
                           "problems": []}
    if total:
        out["problems"].append(f"{total} internal invariant finding{'s' if total != 1 else ''}")
    phases = info.get("phases")
    if info.get("stopped") or not isinstance(phases, dict):
        return out  # the run never reached its final phase: nothing to say about recovery
    bound = config.recovery_bound()
    took = phases["recovered"] - config.recovery_quiet - phases["healed"]
    problems: list[str] = []
    if not phases.get("healthy") or took > bound + 1e-6:
        nodes = info.get("nodes") or {}
        stuck = [f"n{i} {s.get('state')}" + (f" {s.get('role', '?').lower()} commit {s.get('commit')} "
                                                f"applied {s.get('applied')}" if "commit" in s else "")
                 for i, s in sorted(nodes.items(), key=lambda kv: int(kv[0])) if s.get("state") != "removed"]
        problems.append(f"no leader with every member caught up within {bound:g}s of the final heal "
                        f"({'never, in ' + format(config.recovery_timeout, 'g') + 's' if not phases.get('healthy') else format(took, '.3g') + 's'}): "
                        + "; ".join(stuck))
    start = phases["recovered"] * 1e9
    final: dict[str, bool] = {}
    for op in ops:
        if op.is_nemesis or op.time is None or op.time < start or op.f != "read" or op.type == "invoke" \
                or op.extra.get("member_read"):
            continue
        key = str(op.key)
        final[key] = final.get(key, False) or op.type == "ok"
    # A key none of whose final reads succeeded is noted, not counted as a liveness anomaly:
    # each final read is one call bounded by the client timeout (0.5 s in some swarm runs),
    # too little to tell a stuck read path from a slow first read (clean swarm register seed
    # 34: two final reads timed out after 0.5 s on a healthy cluster).
    out["final_reads_unanswered"] = sorted(k for k, ok in final.items() if not ok)
    if problems:
        out["liveness"] = {"bound_seconds": bound, "recovery_seconds": round(took, 3),
                           "healthy": bool(phases.get("healthy")), "explanation": problems}
        out["problems"].append("liveness: " + "; ".join(problems))
    return out


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


def interrupted_check_results(run_dir: Path, ops: list[Op], config: RunConfig,
                              info: dict[str, Any]) -> dict[str, Any]:
    """results.json of a run whose check was stopped by Ctrl-C: verdict unknown, saying why,
    so the directory is still a usable run (``kvcheck check RUN_DIR`` checks it again)."""
    stopped = info.get("stopped")
    why = "interrupted (Ctrl-C) while checking"
    results: dict[str, Any] = {
        "valid": "unknown", "checkers_valid": "unknown", "unknown_cause": why, "checkers": {},
        "internal": {"findings": 0, "distinct_findings": 0, "liveness": None, "problems": []},
        "run": {**info, "stopped": f"{stopped}; {why}" if stopped else why, "interrupted": True,
                "summary": summarize(ops)},
        "findings": info.get("findings", []),
        "bugs": info.get("bugs", {"enabled": list(config.bugs)})}
    (run_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
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
    bar = Progress(config.time_limit, enabled=progress, desc=f"{config.workload} seed {config.seed}")
    bar.run_dir = run_dir
    t0 = time.perf_counter()
    try:
        execution = (executor or default_executor)(config, bar)
    finally:
        bar.close()
    # a target may record what it learned while starting (the etcd target: version, flags)
    (run_dir / "config.json").write_text(json.dumps(config.to_json(), indent=1) + "\n")
    wall = time.perf_counter() - t0
    write_jsonl(execution.ops, run_dir / "history.jsonl")
    for name, text in execution.logs.items():
        (run_dir / name).write_text(text)
    info = {**execution.info, "wall_seconds": round(wall, 3)}
    try:
        results = check_and_report(run_dir, execution.ops, config, info)
    except KeyboardInterrupt:  # Ctrl-C while checking: the history is kept, the verdict unknown
        results = interrupted_check_results(run_dir, execution.ops, config, info)
    point_latest(store, run_dir)  # only a directory with its history and results
    code = int(verdict_code(results["valid"]))
    outcome = RunOutcome(run_dir, code, results, execution, wall)
    if echo is not None:
        echo(render_summary(outcome, config))
    return outcome


def render_summary(outcome: RunOutcome, config: RunConfig) -> str:

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
    describe = op_describer(outcome.execution.ops)
    for name, res in r["checkers"].items():
        lines.extend(checker_summary(name, res, describe))
    if r["run"].get("stopped"):
        lines.append(f"  STOPPED EARLY: {r['run']['stopped']} (what was recorded is checked)")
    lines.extend(internal_summary(r))
    lines.append(f"  wall {outcome.wall_seconds:.2f}s; report {outcome.run_dir / 'report.html'}")
    return "\n".join(lines)


def internal_summary(r: dict[str, Any]) -> list[str]:
    """The summary's lines on what the store and the cluster showed besides the history."""
    lines: list[str] = []
    internal = r.get("internal") or {}
    findings = r.get("findings") or []
    if findings:
        members = sorted({m for f in findings if isinstance(f, dict) for m in f.get("members", [])})
        logs = ", ".join(f"node{m}.log" for m in members) or "the node logs"
        total = internal.get("findings", len(findings))
        lines.append(f"  INTERNAL: {total} internal invariant finding{'s' if total != 1 else ''} "
                     f"(see {logs}), {len(findings)} distinct:")
        for f in findings[:5]:
            if isinstance(f, dict):
                lines.append(f"    x{f['count']} from {f['first_time']:g}s on n{','.join(map(str, f['members']))}: "
                             f"{f['finding']}")
            else:
                lines.append(f"    {f}")
        if len(findings) > 5:
            lines.append(f"    … {len(findings) - 5} more in results.json")
    if internal.get("liveness"):
        for text in internal["liveness"]["explanation"]:
            lines.append(f"  LIVENESS: {text}")
    fired = (r.get("bugs") or {}).get("fired") or {}
    if fired:
        lines.append("  bug switches: " + ", ".join(f"{k} fired {v} time{'s' if v != 1 else ''}"
                                                   for k, v in fired.items()))
    if internal.get("problems") and r.get("checkers_valid") is True:
        lines.append("  verdict: INVALID from inside the store (the history itself is valid)")
    return lines


def checker_summary(name: str, res: dict[str, Any], describe: Callable[[Any], str]) -> list[str]:
    """One checker's verdict line and its own account of what it found."""
    from kvcheck.checker.api import CHECKERS, get_checker

    valid = res.get("valid")
    verdict = "valid" if valid is True else "INVALID" if valid is False else "unknown"
    cause = res.get("unknown_cause")
    extra = f" ({cause})" if res.get("valid") == "unknown" and cause else ""
    keys = res.get("keys") or {}
    what = name
    if res.get("model"):
        what += f" ({res['model']}, {len(keys)} keys)" if len(keys) > 1 else f" ({res['model']})"
    seconds = res.get("check_seconds", res.get("seconds", 0)) or 0
    lines = [f"  {what}: {verdict}{extra}, checked in {seconds:.3g}s"]
    if name in CHECKERS:
        lines.extend(get_checker(name).summary_lines(res, describe))
    return lines


def op_describer(ops: list[Op]) -> Callable[[Any], str]:
    """``op_text`` plus where the op happened: when it was invoked (seconds on the history's
    clock), the member that answered it, and the faults active at its invocation — the
    clues to an anomaly (a write invoked before the first read of its value, a read served
    by an isolated member)."""
    from kvcheck.checker.history import pair_calls
    from kvcheck.checker.text import op_text

    calls = {}
    for call in pair_calls(ops):
        calls[call.invoke.id] = call
        if call.completion is not None:
            calls[call.completion.id] = call
    active: dict[str, int] = {}
    faults_at: dict[int, list[str]] = {}  # invoke op id -> faults active then
    for op in ops:
        if op.is_nemesis:
            if op.type == "info":
                what, _, kind = str(op.f).partition("-")
                if what == "start":
                    active[kind] = active.get(kind, 0) + 1
                elif what == "stop" and active.get(kind):
                    active[kind] -= 1
        elif op.type == "invoke":
            faults_at[op.id] = [k for k, n in sorted(active.items()) if n]

    def describe(d: Any) -> str:
        text = op_text(d)
        index = d.get("index") if isinstance(d, dict) else None
        call = calls.get(index) if isinstance(index, int) else None
        if call is None:
            return text
        facts = []
        if call.invoke.time is not None:
            facts.append(f"invoked {call.invoke.time / 1e9:.3f}s")
        node = (call.completion.node if call.completion is not None else None) or call.invoke.node
        if node is not None:
            facts.append(f"served by n{node}")
        faults = faults_at.get(call.invoke.id)
        facts.append(f"during {', '.join(faults)}" if faults else "no fault active")
        return f"{text} [{'; '.join(facts)}]"

    return describe


def _ms(v: float) -> str:
    """Milliseconds, three significant digits without an exponent: 0.512, 4.17, 56.5, 1570."""
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"




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
    from kvcheck.checker.history import HistoryError

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
    try:
        results = check_and_report(run_dir, ops, config, info)
    except HistoryError as exc:  # well-formed lines that do not make a history (exit 65)
        raise MalformedInput(str(hist), exc.line, str(exc)) from None
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
