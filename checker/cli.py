"""``kvcheck check``: check recorded histories for linearizability, offline.

    kvcheck check PATH... --model cas-register [--init 0] [--timeout S] [--json] [--out DIR]

Each PATH is a history file (JSONL, Jepsen EDN, EDN maps one per line, Jepsen log lines;
the format is detected from the content, ``--format`` overrides) or a directory, meaning
every .jsonl, .edn, .log and .txt file under it. Every file is read, split into independent
keys when the model is keyed and the ops carry Jepsen ``[k v]`` values, and checked on its
own with ``kvcheck.checker.linearizable.check_history``; ``--timeout`` bounds each file.

Output: a readable summary, or with ``--json`` one document
``{"valid", "files": [{"file", "format", "model", "valid", "parse_seconds",
"check_seconds", "unknown_cause", "keys": {...}}]}``. Nothing is written to disk unless
``--out DIR`` is given: then DIR/results.json holds that document and DIR/<file>/results.json
each file's entry.

Each file stops at its first invalid key (the file is invalid then; keys not finished say
so); ``--all-keys`` decides and explains every key. Each file's search is bounded by
``--timeout`` (keys share it) and by ``--memory-limit`` (default: the lower of 2 GiB and
half the machine's memory).

Exit code, when files disagree, the most important news wins: 1 when any file is invalid
(malformed files are still named on their own lines), else 65 when any file is malformed
(the other files are still checked and reported; a malformed file's entry has
``"valid": null`` and ``"error"``; an empty file has "no operations"), else 2 when any is
unknown, 0 when all are valid; 64 for a usage error, 66 for a missing path, 70 for an
internal error (never 1, which would read as "invalid").
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from kvcheck.checker.api import (
    CHECKERS,
    CheckOptions,
    get_checker,
    parse_checker_names,
    results_json,
    run_checkers,
)
from kvcheck.checker.edn import EdnError, parse_value
from kvcheck.checker.formats import (
    FORMATS,
    iter_history_files,
    read_history,
    split_independent_keys,
)
from kvcheck.checker.history import HistoryError, Op
from kvcheck.checker.text import compact as _compact
from kvcheck.checker.text import op_text
from kvcheck.checker.txn import CONSISTENCY_MODELS
from kvcheck.exitcodes import ExitCode, KvcheckError, MalformedInput, MissingInput, UsageError


@dataclass
class HistoryFile:
    """One history file to check: its path and where its results go under ``--out``."""

    path: Path
    out_name: str  # relative path under --out (unique)


@dataclass
class FileResult:
    file: HistoryFile
    entry: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    ops: list[Op] | None = None  # the history as checked, for the report


def parse_init(text: str) -> Any:
    """``--init``: a JSON value (``null``, ``0``, ``{"x": 0}``), or an EDN one (``{:x 0}``;
    keywords become strings, so both spellings give the same initial value)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return parse_value(text)
    except EdnError:
        raise UsageError(f"--init {text!r} is not a JSON value (e.g. null, 0, '{{\"x\": 0}}')") from None


def collect_files(paths: tuple[Path, ...]) -> list[HistoryFile]:
    """The history files the arguments name, in argument order (a directory's files sorted);
    raises MissingInput for a path that does not exist or a directory with no history file."""
    files: list[HistoryFile] = []
    used: set[str] = set()

    def add(path: Path, name: str) -> None:
        unique, n = name, 2
        while unique in used:
            unique, n = f"{name}-{n}", n + 1
        used.add(unique)
        files.append(HistoryFile(path, unique))

    for p in paths:
        if p.is_dir():
            found = list(iter_history_files(p))
            if not found:
                raise MissingInput(f"{p}: no history files (.jsonl, .edn, .log, .txt) in this directory")
            for f in found:
                add(f, f.relative_to(p).as_posix())
        elif p.exists():
            add(p, p.name)
        else:
            raise MissingInput(f"{p}: no such file or directory")
    return files


def check_file(hf: HistoryFile, checkers: list[str], options: CheckOptions, fmt: str | None,
               independent: bool = False) -> FileResult:
    """Read one file and run each checker on it; a malformed file gives a FileResult with
    ``error`` set. The entry has the common fields, ``checkers`` (each checker's result) and,
    when the linearizability checker ran, its ``model``, ``unknown_cause`` and ``keys`` at
    the top as well (the shape ``--json`` readers had before other checkers existed)."""
    from kvcheck.checker.linearizable import release_abandoned

    release_abandoned()  # the previous file's abandoned search is not charged to this parse
    name = str(hf.path)
    t0 = time.perf_counter()
    model = options.model
    try:
        ops, found_fmt = read_history(hf.path, fmt)
        parse_seconds = time.perf_counter() - t0
        keyed = model is not None and not isinstance(model, str) and model.keyed
        if (independent or keyed) and not any(op.key is not None for op in ops if not op.is_nemesis):
            ops = _split_keys(ops, name)
        try:
            results = run_checkers(checkers, ops, options)
        except HistoryError as exc:
            raise MalformedInput(name, exc.line, str(exc)) from None
    except MalformedInput as exc:
        return FileResult(hf, {"file": name, "format": fmt, "valid": None, "error": str(exc)},
                          error=str(exc))
    combined = results_json(results)
    entry: dict[str, Any] = {
        "file": name, "format": found_fmt, "valid": combined["valid"], "ops": len(ops),
        "parse_seconds": round(parse_seconds, 6),
        "check_seconds": round(sum(r.seconds for r in results.values()), 6),
    }
    lin = combined["checkers"].get("linearizable")
    if lin is not None:
        entry.update({"model": lin.get("model"), "unknown_cause": lin.get("unknown_cause"),
                      "verdict_seconds": lin.get("verdict_seconds"),
                      "explain_seconds": lin.get("explain_seconds"),
                      "stopped_at": lin.get("stopped_at"), "keys": lin.get("keys", {})})
    elif combined["valid"] == "unknown":
        entry["unknown_cause"] = "; ".join(f"{n}: {r.unknown_cause}" for n, r in results.items()
                                           if r.unknown_cause)
    entry["checkers"] = combined["checkers"]
    return FileResult(hf, entry, ops=ops)


def _split_keys(ops: list[Op], name: str) -> list[Op]:
    try:
        return split_independent_keys(ops)
    except HistoryError as exc:
        raise MalformedInput(
            name, exc.line, f"{exc} (the model is keyed: ops need a key field or [key value] values)"
        ) from None


def overall(results: list[FileResult]) -> tuple[bool | str, int]:
    """The document's ``valid`` and the exit code: invalid (1) wins over malformed (65),
    which wins over unknown (2); the summary's verdict says the same."""
    verdicts = [r.entry.get("valid") for r in results if r.error is None]
    valid: bool | str
    if any(v is False for v in verdicts):
        valid = False
    elif any(v == "unknown" for v in verdicts) or any(r.error for r in results):
        valid = "unknown"
    else:
        valid = True
    if valid is False:
        return valid, ExitCode.INVALID
    if any(r.error for r in results):
        return valid, ExitCode.DATAERR
    if valid == "unknown":
        return valid, ExitCode.UNKNOWN
    return valid, ExitCode.VALID


# ---------------------------------------------------------------------------------------
# The readable summary


def _label(valid: Any) -> str:
    return "valid" if valid is True else "invalid" if valid is False else "unknown"


def _seconds(entry: dict[str, Any]) -> str:
    parse = entry.get("parse_seconds")
    check = entry.get("check_seconds")
    return f"parse {parse:.3f} s, check {check:.3f} s" if parse is not None and check is not None else ""


def summary(results: list[FileResult], valid: bool | str, checked_against: str, max_paths: int = 4) -> str:
    lines: list[str] = []
    for r in results:
        e = r.entry
        if r.error is not None:
            lines.append(f"MALFORMED {r.error}")
            continue
        label = _label(e["valid"]).upper()
        lines.append(f"{label:9} {e['file']}  ({e['format']}, {e['ops']} ops; {_seconds(e)})")
        if e.get("unknown_cause") and e["valid"] == "unknown":
            lines.append(f"  unknown: {e['unknown_cause']}")
        checkers = e.get("checkers") or {}
        for cname, cres in checkers.items():
            if cname == "linearizable":
                continue
            if len(checkers) > 1 or cres.get("valid") is not True:
                cause = f" ({cres['unknown_cause']})" if cres.get("valid") == "unknown" and cres.get("unknown_cause") else ""
                lines.append(f"  {cname}: {_label(cres.get('valid'))}{cause}, {len(cres.get('anomalies') or [])} anomalies")
            if cres.get("valid") is not True:
                lines.extend(get_checker(cname).summary_lines(cres, op_text))
        if len(checkers) > 1 and "linearizable" in checkers:
            lines.append(f"  linearizable: {_label(checkers['linearizable'].get('valid'))}")
        keys = e.get("keys", {})
        stopped = e.get("stopped_at")
        not_finished = [key for key, k in keys.items()
                        if k.get("valid") == "unknown" and stopped is not None]
        if not_finished:
            lines.append(f"  stopped at key {stopped}, which is invalid; not finished "
                         f"(--all-keys decides every key): {', '.join(map(str, not_finished))}")
        for key, k in keys.items():
            if k.get("valid") is True:
                continue
            where = f"key {key}: " if len(keys) > 1 or key != "null" else ""
            if k.get("valid") == "unknown":
                if (stopped is None and k.get("unknown_cause")
                        and k["unknown_cause"] != e.get("unknown_cause")):
                    lines.append(f"  {where}unknown: {k['unknown_cause']}")
                continue
            if k.get("op") is None:
                lines.append(f"  {where}invalid: {k.get('reason') or 'no linearization'}"
                             + (f" ({k['unknown_cause']})" if k.get("unknown_cause") else ""))
                continue
            first = "" if k.get("op_is_first") is not False else (
                " (the first op the fast path proves; an earlier one may fail too)")
            lines.append(f"  {where}{op_text(k.get('op'))} cannot be linearized{first}")
            if k.get("reason"):
                lines.append(f"    why: {k['reason']}")
            lines.append(f"    previous ok: {op_text(k.get('previous_ok'))}")
            paths = k.get("final_paths") or []
            if paths:
                lines.append(f"    final paths ({len(paths)}):")
                for path in paths[:max_paths]:
                    steps = []
                    for step in path:
                        if step.get("op") is None:
                            steps.append(f"start -> {_compact(step.get('model'))}")
                        elif "inconsistent" in step:
                            steps.append(f"{op_text(step['op'])}: {step['inconsistent']}")
                        else:
                            steps.append(f"{op_text(step['op'])} -> {_compact(step.get('model'))}")
                    lines.append("      " + ", then ".join(steps))
                if len(paths) > max_paths:
                    lines.append(f"      ... {len(paths) - max_paths} more (see --json)")
            minimal = k.get("minimal_history")
            if minimal:
                lines.append(f"    minimal failing history ({len(minimal)} ops):")
                lines.extend(f"      {op_text(op)}" for op in minimal)
    counts = {label: 0 for label in ("valid", "invalid", "unknown", "malformed")}
    for r in results:
        if r.error is not None:
            counts["malformed"] += 1
        else:
            v = r.entry["valid"]
            counts["valid" if v is True else "invalid" if v is False else "unknown"] += 1
    verdict = _label(valid)
    if valid == "unknown" and counts["malformed"]:
        verdict += f" ({counts['malformed']} malformed)"
    tally = ", ".join(f"{n} {label}" for label, n in counts.items() if n)
    noun = "file" if len(results) == 1 else "files"
    lines.append("")
    lines.append(f"{len(results)} {noun} checked against {checked_against}: {tally}. Verdict: {verdict}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------


def write_out(out: Path, document: dict[str, Any], results: list[FileResult]) -> None:
    """``--out DIR``: DIR/results.json (the whole document) and DIR/<file>/results.json."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        for r in results:
            d = out / r.file.out_name
            d.mkdir(parents=True, exist_ok=True)
            (d / "results.json").write_text(json.dumps(r.entry, indent=2, default=str) + "\n")
        (out / "results.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write results: {exc.strerror or exc}") from None


def write_file_report(r: FileResult, out_path: Path) -> None:
    """report.html for one checked file (its ops and its entry as the linearizable result)."""
    from kvcheck.checker.report import write_report

    assert r.ops is not None
    title = r.entry["file"] + (f" ({r.entry['model']})" if r.entry.get("model") else "")
    try:
        write_report(r.ops, {"valid": r.entry["valid"], "checkers": r.entry["checkers"]}, out_path, title=title)
    except OSError as exc:
        raise UsageError(f"{out_path}: cannot write the report: {exc.strerror or exc}") from None


@click.command("check")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--checker", "checker_names", default="linearizable", show_default=True, metavar="A,B",
              help=f"Checkers to run, comma-separated: {', '.join(CHECKERS)}.")
@click.option("--model", "model_spec", metavar="M",
              help="register, cas-register, multi-register, kv, mutex, set, or package.module:Class. "
                   "Required for history files when the linearizable checker runs; a run "
                   "directory names its own.")
@click.option("--init", "init_text", metavar="JSON",
              help="The initial value, as JSON (null, 0, '{\"x\": 0}'); default: the model's own.")
@click.option("--consistency-model", "consistency_model", metavar="M",
              type=click.Choice(CONSISTENCY_MODELS),
              help="For the txn checker: the model the history must satisfy "
                   "(default strict-serializable).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Give up on a file after S seconds: its verdict is unknown.")
@click.option("--memory-limit", type=click.IntRange(min=1), metavar="MB",
              help="Give up when the process grows past MB megabytes: the verdict is unknown. "
                   "Default: the lower of 2048 and half the machine's memory.")
@click.option("--all-keys", is_flag=True,
              help="Decide and explain every key, instead of stopping at the first invalid one.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of a summary.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), metavar="DIR",
              help="Write DIR/results.json and DIR/<file>/results.json and report.html.")
@click.option("--report", "report_path", type=click.Path(path_type=Path, dir_okay=False),
              metavar="OUT.html", help="Draw the HTML report for the (one) history file checked.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="The history format (default: detected).")
@click.option("--independent", is_flag=True,
              help="Values are Jepsen independent-key pairs [k v]: split them and check each key "
                   "on its own, whatever the model (keyed models such as kv always split).")
@click.option("--fail-cas-means-compare-failed", is_flag=True,
              help="Read a failed cas as 'the compare failed' (as etcd tests record it), "
                   "not as 'did not happen'.")
def check(paths: tuple[Path, ...], checker_names: str, model_spec: str | None, init_text: str | None,
          consistency_model: str | None, timeout: float | None, memory_limit: int | None,
          all_keys: bool, as_json: bool, out: Path | None,
          report_path: Path | None, fmt: str | None, independent: bool,
          fail_cas_means_compare_failed: bool) -> int:
    """Check history files (or directories of them): for linearizability, or with the
    checkers --checker names.

    A ``kvcheck run`` directory (config.json + history.jsonl) is re-checked with the checkers
    its workload names, and its results.json and report.html are rewritten.

    Exit codes: 0 all valid, 1 any invalid, 65 any malformed (none invalid), 2 any unknown
    (none invalid or malformed), 64 usage error, 66 missing input.
    """
    from kvcheck.checker.bounds import default_memory_limit_mb
    from kvcheck.checker.models import DEFAULT, get_model

    try:
        checkers = parse_checker_names(checker_names)
    except ValueError as exc:
        raise UsageError(f"--checker: {exc}") from None
    model = None
    if "linearizable" in checkers:
        if model_spec is None:
            raise UsageError("Missing option '--model' (needed for history files)")
        init = parse_init(init_text) if init_text is not None else DEFAULT
        model = get_model(model_spec, init, fail_cas_means_compare_failed=fail_cas_means_compare_failed)
    elif model_spec is not None or init_text is not None:
        raise UsageError("--model and --init are for the linearizable checker, which --checker leaves out")
    if consistency_model is not None and "txn" not in checkers:
        raise UsageError("--consistency-model is for the txn checker, which --checker leaves out")
    files = collect_files(paths)
    if report_path is not None and len(files) != 1:
        raise UsageError(f"--report draws one history: {len(files)} files given (use --out DIR for many)")
    options = CheckOptions(model=model, timeout=timeout, all_keys=all_keys,
                           memory_limit_mb=memory_limit if memory_limit is not None
                           else default_memory_limit_mb(),
                           consistency_model=consistency_model)
    results = []
    for hf in files:
        try:
            r = check_file(hf, checkers, options, fmt, independent)
        except KvcheckError:
            raise
        except Exception:  # a bug: say so, and never exit 1, which would read as "invalid"
            traceback.print_exc()
            click.echo(f"kvcheck: internal error while checking {hf.path} (a bug in kvcheck)", err=True)
            return int(ExitCode.SOFTWARE)
        if r.error is not None:
            click.echo(f"kvcheck: {r.error}", err=True)
        results.append(r)
    valid, code = overall(results)
    document = {"valid": valid, "files": [r.entry for r in results]}
    if out is not None:
        write_out(out, document, results)
        for r in results:
            if r.error is None:
                write_file_report(r, out / r.file.out_name / "report.html")
    if report_path is not None and results[0].error is None:
        write_file_report(results[0], report_path)
    if as_json:
        click.echo(json.dumps(document, indent=2, default=str))
    else:
        against = ", ".join(model.name if c == "linearizable" and model is not None else c for c in checkers)
        click.echo(summary(results, valid, against))
    sys.stdout.flush()
    return int(code)
