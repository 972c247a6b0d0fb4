"""``kvcheck run`` and ``kvcheck replay``: the command-line face of kvcheck.workloads.run.

``run`` builds a RunConfig from the options (a random seed when none is given, printed and
saved), runs ``--test-count`` seeds in a row (seed, seed+1, ...) and exits with the worst
verdict (invalid 1, then unknown 2, else 0). ``replay RUN_DIR`` re-executes a run from its
config.json into a new run directory and fails with exit 70 if the new history differs from
the original by a single byte.
"""

from __future__ import annotations

import contextlib
import importlib
import secrets
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from kvcheck.exitcodes import ExitCode, KvcheckError, UsageError
from kvcheck.workloads.config import TARGETS, ConfigError, RunConfig
from kvcheck.workloads.nemesis import parse_faults
from kvcheck.workloads.workload import WORKLOADS


@contextlib.contextmanager
def _internal_errors() -> Iterator[None]:
    """A crash of the harness exits 70 (internal error) with its traceback, never 1, which
    would read as "invalid"."""
    try:
        yield
    except (KvcheckError, click.ClickException):
        raise
    except Exception as exc:
        traceback.print_exc()
        raise KvcheckError(f"internal error: {exc!r}", ExitCode.SOFTWARE) from exc


@click.command("run")
@click.option("--workload", "-w", type=click.Choice(WORKLOADS), default="register", show_default=True)
@click.option("--faults", default="none", show_default=True,
              help="Comma-separated: partition,kill,pause,clock,packet,disk,member (or all, none); "
                   "client-pause stalls a client (the lock workloads'), not in all.")
@click.option("--target", type=click.Choice(TARGETS), default="sim", show_default=True)
@click.option("--nodes", type=int, default=5, show_default=True, help="Cluster size (3 to 7).")
@click.option("--concurrency", type=int, default=10, show_default=True, help="Client threads.")
@click.option("--time-limit", type=float, default=30.0, show_default=True,
              help="Length of the run's main phase in seconds (simulated on --target sim).")
@click.option("--rate", type=float, default=50.0, show_default=True,
              help="Target ops/s over all clients; 0: as fast as the clients go.")
@click.option("--seed", type=int, default=None, help="Random seed (default: a fresh one, printed).")
@click.option("--test-count", type=int, default=1, show_default=True, help="Run this many seeds in a row.")
@click.option("--check-timeout", type=float, default=60.0, show_default=True,
              help="Seconds the checker may spend before answering unknown.")
@click.option("--client-timeout", type=float, default=2.0, show_default=True,
              help="An op still running after this many seconds is recorded as info.")
@click.option("--keys", type=int, default=8, show_default=True, help="Keys of the kv workload; active keys of append and wr.")
@click.option("--bug", "bugs", multiple=True, help="Turn on a deliberate store bug (e.g. local_reads).")
@click.option("--store", "store", type=click.Path(file_okay=False, path_type=Path), default=Path("store"),
              show_default=True, help="Directory that holds the run directories.")
@click.option("--etcd-endpoints", default="", metavar="HOST:PORT,...",
              help="--target etcd: test this existing cluster instead of starting one (no faults).")
@click.option("--etcd-pre-vote/--no-etcd-pre-vote", default=False, show_default=True,
              help="--target etcd: start members with --pre-vote (etcd 3.4's default is off).")
@click.option("--wall-budget", type=float, default=300.0, show_default=True,
              help="Wall-clock seconds a simulated run may take; then it stops and what it "
                   "recorded is checked (0: no limit).")
@click.option("--hash-check-interval", type=float, default=1.0, show_default=True,
              help="Seconds between the harness's HashKV checks of every member during the run "
                   "(etcd's corruption check; --swarm draws it unless given); 0: none.")
@click.option("--fail-on-findings/--no-fail-on-findings", default=True, show_default=True,
              help="Exit 1 when the store reports internal invariant findings or the cluster "
                   "does not recover, even if the history is valid.")
@click.option("--swarm", is_flag=True, default=False,
              help="Each seed draws its own fault kinds (from --faults, or all), fault rate, "
                   "durations and overlaps, timeouts, network, perturbations, clients and keys; "
                   "options given explicitly are kept.")
@click.option("--ordered-links/--unordered-links", default=True, show_default=True,
              help="Simulation: each link delivers in the order it sent, as the store's one TCP "
                   "connection per peer does (network.fifo), or (--unordered-links, the network "
                   "of earlier versions) a link's messages reorder when jitter exceeds their "
                   "spacing.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.pass_context
def run_command(ctx: click.Context, workload: str, faults: str, target: str, nodes: int, concurrency: int,
                time_limit: float, rate: float | None, seed: int | None, test_count: int,
                check_timeout: float, client_timeout: float, keys: int, bugs: tuple[str, ...],
                store: Path, etcd_endpoints: str, etcd_pre_vote: bool, wall_budget: float,
                hash_check_interval: float, fail_on_findings: bool, swarm: bool, ordered_links: bool, progress: bool) -> int:
    """Run a workload against a cluster under faults, check the history, write a report.

    Writes STORE/<workload>/<timestamp>/ (config.json, history.jsonl, results.json,
    report.html, node logs); STORE/latest points to the newest run.
    """
    from kvcheck.workloads.run import run_once, verdict_code, worst

    if test_count < 1:
        raise UsageError(f"--test-count must be at least 1, not {test_count}")
    if seed is None:
        seed = secrets.randbelow(1 << 31)
    kinds = parse_faults(faults)
    endpoints = [e.strip() for e in etcd_endpoints.split(",") if e.strip()]
    if endpoints and target != "etcd":
        raise UsageError("--etcd-endpoints needs --target etcd")
    pinned = {name for name in ("nodes", "concurrency", "rate", "client_timeout", "keys", "hash_check_interval")
              if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}
    codes: list[int] = []
    for i in range(test_count):
        config = RunConfig(workload=workload, faults=kinds, target=target, nodes=nodes,
                           concurrency=concurrency, time_limit=time_limit, rate=rate or None,
                           seed=seed + i,
                           check_timeout=check_timeout, client_timeout=client_timeout, keys=keys,
                           bugs=list(bugs), wall_budget=wall_budget or None,
                           hash_check_interval=hash_check_interval or None)
        config.network["fifo"] = ordered_links
        if target == "etcd":
            config.etcd.update(endpoints=endpoints, pre_vote=etcd_pre_vote)
            if nodes != 5 and endpoints:
                raise UsageError("--nodes does not apply to an existing cluster (--etcd-endpoints)")
            if not endpoints:
                from kvcheck.workloads.etcd.cluster import etcd_binary

                etcd_binary()  # exit 64 naming the package when etcd is not installed
        if swarm:
            from kvcheck.workloads.swarm import draw_swarm

            draw_swarm(config, pinned)
        try:
            config.validate()
        except ConfigError as exc:
            field_name, _, problem = str(exc).partition(":")
            raise UsageError(f"--{field_name.replace('_', '-')}:{problem}") from None
        with _internal_errors():
            outcome = run_once(config, store, progress=progress, echo=click.echo)
        if outcome.results["run"].get("interrupted"):
            raise KvcheckError(f"interrupted; what was recorded is checked in {outcome.run_dir}",
                               ExitCode.INTERRUPTED)
        codes.append(outcome.code if fail_on_findings else
                     int(verdict_code(outcome.results.get("checkers_valid", outcome.results["valid"]))))
    if test_count > 1:
        counts = {name: codes.count(int(code)) for name, code in
                  (("valid", ExitCode.VALID), ("invalid", ExitCode.INVALID), ("unknown", ExitCode.UNKNOWN))}
        click.echo(f"{test_count} runs: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return worst(codes)


@click.command("replay")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--store", "store", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to put the new run directory (default: the original's store).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def replay_command(run_dir: Path, store: Path | None, progress: bool) -> int:
    """Re-execute RUN_DIR from its config.json into a new run directory; the new history
    must equal the original byte for byte (exit 70 if it does not)."""
    from kvcheck.workloads.run import read_config, replay_run_dir

    config = read_config(run_dir)
    if config.target == "etcd":
        # real processes on real time: the same schedule and seeds, not the same history
        with _internal_errors():
            outcome, _ = replay_run_dir(run_dir, store, progress=progress, echo=click.echo)
        click.echo(f"replay: re-ran the schedule of {run_dir} against a fresh etcd cluster; a real "
                   "cluster's history is not byte-identical to the original, so it was checked, not compared")
        return outcome.code
    if config.target != "sim":
        raise UsageError(f"{run_dir}: only simulation runs replay exactly (this run used --target {config.target})")
    with _internal_errors():
        outcome, same = replay_run_dir(run_dir, store, progress=progress, echo=click.echo)
    if not same:
        raise KvcheckError(f"replay of {run_dir} produced a different history: "
                           f"{outcome.run_dir / 'history.jsonl'} differs from {run_dir / 'history.jsonl'}",
                           ExitCode.SOFTWARE)
    click.echo(f"replay: history identical to {run_dir / 'history.jsonl'}")
    return outcome.code


def is_run_dir(path: Path) -> bool:
    """A ``kvcheck run`` directory: config.json beside history.jsonl."""
    return path.is_dir() and (path / "config.json").is_file() and (path / "history.jsonl").is_file()


def recheck_run_dirs(run_dirs: list[Path]) -> int:
    """``kvcheck check RUN_DIR...``: the worst exit code over the runs."""
    from kvcheck.workloads.run import recheck_run_dir, worst

    codes = []
    for run_dir in run_dirs:
        code = recheck_run_dir(run_dir)
        label = {0: "valid", 1: "invalid"}.get(code, "unknown")
        click.echo(f"{label.upper():9} {run_dir}  (results.json and report.html rewritten)")
        codes.append(code)
    return worst(codes)


def _check_files_or_runs(**kwargs: Any) -> int:
    """``kvcheck check``: run directories are re-checked here, by the harness that wrote them
    (the checker never imports the harness); history files go to the checker's command."""
    from kvcheck.checker.cli import check as check_files

    paths: tuple[Path, ...] = kwargs["paths"]
    run_dirs = [p for p in paths if is_run_dir(p)]
    if run_dirs:
        given = [opt for opt, name in (("--model", "model_spec"), ("--init", "init_text"),
                                       ("--report", "report_path")) if kwargs.get(name) is not None]
        if kwargs.get("checker_names") != "linearizable":
            given.append("--checker")
        if len(run_dirs) != len(paths) or given:
            raise UsageError("a run directory is re-checked on its own, with the checkers its "
                             "workload names: give only run directories, without --model, "
                             "--init, --checker or --report" + (f" (given: {', '.join(given)})" if given else ""))
        return recheck_run_dirs(run_dirs)
    assert check_files.callback is not None
    return check_files.callback(**kwargs)


# The checker's ``check`` command with run directories handled by the harness.
_files_command: click.Command = importlib.import_module("kvcheck.checker.cli").check
check_command = click.Command(
    "check", params=_files_command.params, callback=_check_files_or_runs, help=_files_command.help,
    context_settings=_files_command.context_settings)


@click.command("regress")
@click.option("--quick", is_flag=True, help="A budget that fits CI (<= 10 minutes on 2 cores).")
@click.option("--bug", "bugs", multiple=True, metavar="NAME",
              help="Run only this switch in the bug matrix (repeatable; default: every switch).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, metavar="N",
              help="Seeds per clean (workload, fault mix) cell (default 25; --quick 2, and 6 for "
                   "the swarm cells).")
@click.option("--bug-seeds", type=click.IntRange(min=1), default=None, metavar="N",
              help="Most seeds per switch (default 40; --quick 20).")
@click.option("--bug-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="Most wall seconds per switch, summed over its runs (default 300; --quick 40).")
@click.option("--first-seed", type=click.IntRange(min=0), default=0, show_default=True, metavar="N",
              help="Seeds run from N (clean cells: N..N+seeds-1; switches: N, N+1, ...).")
@click.option("--run-timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="Kill a local run still going after S wall seconds (default 300; --quick 60).")
@click.option("--prune-valid", is_flag=True,
              help="Delete the directory of every valid run without internal findings (a long sweep "
                   "keeps only the runs worth reading; regress.json still has each seed's history hash).")
@click.option("--clean/--no-clean", "clean", default=True, show_default=True, help="Run the clean matrix.")
@click.option("--bugs/--no-bugs", "run_bugs", default=True, show_default=True, help="Run the bug matrix.")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, metavar="N",
              help="Local worker processes (default: every core).")
@click.option("--dask-scheduler", metavar="ADDRESS", default=None,
              help="Run the seeds on this Dask distributed scheduler (tcp://host:8786) instead of "
                   "local processes; needs kvcheck[dask] and a store path the workers share.")
@click.option("--store", "store", type=click.Path(file_okay=False, path_type=Path), default=Path("store"),
              show_default=True, help="regress.json, regress.html and the runs go to STORE/regress/<time>/.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def regress_command(quick: bool, bugs: tuple[str, ...], seeds: int | None, bug_seeds: int | None,
                    bug_budget: float | None, first_seed: int, run_timeout: float | None,
                    prune_valid: bool, clean: bool, run_bugs: bool,
                    jobs: int | None,
                    dask_scheduler: str | None, store: Path, progress: bool) -> int:
    """The regression suite: a clean matrix (every workload x fault mix x seeds) that must be
    valid, and a bug matrix whose every switch must be caught from the client history.

    Exit 0 only when the clean matrix is all valid and every switch run is caught (each one
    --bug names; every switch without --bug), else 1.
    """
    import dataclasses

    from kvcheck.workloads.regress import FULL, QUICK, make_plan, render_table, run_regress

    if jobs is not None and dask_scheduler is not None:
        raise UsageError("--jobs sets local worker processes; with --dask-scheduler the cluster's workers run the seeds")
    budget = QUICK if quick else FULL
    budget = dataclasses.replace(
        budget, clean_seeds=seeds or budget.clean_seeds, bug_seeds=bug_seeds or budget.bug_seeds,
        bug_wall=bug_budget if bug_budget is not None else budget.bug_wall,
        run_timeout=run_timeout if run_timeout is not None else budget.run_timeout)
    if not run_bugs and bugs:
        raise UsageError("--bug names a switch to run, but --no-bugs skips the bug matrix")
    plan = make_plan(budget, list(bugs) if bugs else None, clean=clean)
    if not run_bugs:
        plan.bugs = []
    plan.seed_base = first_seed
    plan.prune_valid = prune_valid
    with _internal_errors():
        outcome = run_regress(plan, store, jobs=jobs, dask_scheduler=dask_scheduler, progress=progress,
                              quick=quick)
    click.echo(render_table(outcome.document))
    click.echo(f"regress.json and regress.html in {outcome.out_dir}")
    return 0 if outcome.ok else 1


@click.command("shrink")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--max-runs", type=click.IntRange(min=1), default=150, show_default=True,
              help="Most candidate runs to try.")
@click.option("--seed-tries", type=click.IntRange(min=1), default=8, show_default=True,
              help="Once the original seed shrinks no further, try each smaller fault schedule on "
                   "this many seeds (its own and the next ones); 1: the original seed only.")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Most wall seconds to spend.")
def shrink_command(run_dir: Path, max_runs: int, max_seconds: float, seed_tries: int) -> int:
    """Shrink a failing simulation run to a minimal one failing with the same anomaly: fewer
    faults, a shorter time limit, fewer nodes, client threads and keys. Writes a new run
    directory beside RUN_DIR and prints the sizes before and after and the command that
    reproduces it. Exit 1 (the new run is invalid, as RUN_DIR was)."""
    from kvcheck.workloads.shrink import render, shrink_run

    with _internal_errors():
        result = shrink_run(run_dir, max_runs=max_runs, max_seconds=max_seconds, seed_tries=seed_tries,
                            echo=click.echo)
    click.echo(render(result))
    return int(ExitCode.INVALID)
