"""The run store as rows for the web UI: every ``kvcheck run`` directory under a store root.

Why: a person wants to see hundreds of runs at once, sorted and filtered, without the page
taking seconds and without a broken run breaking the list. How: ``RunIndex.rows()`` walks the
store (a run directory is one holding config.json; symlinks such as ``latest`` are not
followed, so each run appears once) and builds one ``RunRow`` per run from config.json,
results.json and history.jsonl. Each row is cached under the (mtime, size) of its files, so a
listing reads only what changed since the last one: new runs appear without a restart and a
re-check shows its new verdict. Any problem reading a file (missing, not JSON, a malformed
history line) becomes the row's ``error`` instead of an exception.

Reading a history with the checker's own reader (so a bad line is reported as ``kvcheck
check`` reports it) costs milliseconds per run, which would make the first listing of a
large store take seconds; so histories are read in the background (``background=True``, what
the server uses: a thread hands them in batches to one child process, so the parsing does not
hold this process's GIL) and a row shows ``history_pending`` until its history has been read,
then its op count (the history's client invocations) or the history's error.

``resolve_run`` and ``run_file`` turn URL parts into paths and refuse (None) anything that
would leave the store: absolute paths, ``..`` parts, symlinks pointing outside, and names that
are not plain files of a known run directory.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUN_MARKER = "config.json"
MAX_DEPTH = 6  # store/<workload>/<timestamp>/ is depth 2; sweeps nest a little deeper


def verdict_name(valid: Any) -> str:
    if valid is True:
        return "valid"
    if valid is False:
        return "invalid"
    if valid == "unknown":
        return "unknown"
    return "none"


@dataclass
class RunRow:
    """One run as the list shows it (``to_json`` is what /api/runs sends)."""

    id: str  # the run directory relative to the store, with '/' separators
    time: str = ""
    workload: str = ""
    target: str = ""
    faults: list[str] = field(default_factory=list)
    nodes: int | None = None
    seed: int | None = None
    bugs: list[str] = field(default_factory=list)
    ops: int | None = None
    verdict: str = "none"
    checkers: dict[str, str] = field(default_factory=dict)
    anomalies: int = 0
    sim_seconds: float | None = None
    wall_seconds: float | None = None
    error: str | None = None
    history_pending: bool = False
    base_errors: list[str] = field(default_factory=list)  # config.json's and results.json's
    # not listed, but used by the plots and the compare page
    config: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "workload": self.workload, "target": self.target,
                "faults": self.faults, "nodes": self.nodes, "seed": self.seed, "bugs": self.bugs,
                "ops": self.ops, "verdict": self.verdict, "checkers": self.checkers,
                "anomalies": self.anomalies, "sim_seconds": self.sim_seconds,
                "wall_seconds": self.wall_seconds, "error": self.error,
                "history_pending": self.history_pending}


def checker_anomalies(name: str, result: dict[str, Any]) -> list[dict[str, Any]]:
    """A checker's anomalies from results.json. Results written before checkers reported
    anomalies (the linearizability checker's per-key results only) are read as one
    ``nonlinearizable`` anomaly per invalid key, so older stores show what they found."""
    anomalies = result.get("anomalies")
    if isinstance(anomalies, list):
        return [a for a in anomalies if isinstance(a, dict)]
    out: list[dict[str, Any]] = []
    keys = result.get("keys")
    if isinstance(keys, dict):
        for key, kres in keys.items():
            if isinstance(kres, dict) and kres.get("valid") is False:
                op = kres.get("op") or {}
                index = op.get("index") if isinstance(op, dict) else None
                where = "" if key in ("null", "None") else f"key {key}: "
                out.append({"kind": "nonlinearizable",
                            "explanation": f"{where}op {index} cannot be linearized",
                            "ops": [index] if isinstance(index, int) else []})
    return out


def _run_time(run_dir: Path) -> str:
    try:
        stamp = datetime.strptime(run_dir.name, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        try:
            stamp = datetime.fromtimestamp((run_dir / RUN_MARKER).stat().st_mtime, UTC)
        except OSError:
            return ""
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ValueError(f"{path.name}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name}: cannot read: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path.name}: not a JSON object")
    return doc


def _history_ops(path: Path) -> int:
    """Client operations (invocations) in a history, read with the checker's own reader so a
    malformed line is reported exactly as ``kvcheck check`` reports it."""
    from kvcheck.checker.formats import read_history

    ops, _ = read_history(path)
    return sum(1 for op in ops if op.type == "invoke" and not op.is_nemesis)


def build_row(store: Path, run_dir: Path) -> RunRow:
    """The row from config.json and results.json (the history is read separately)."""
    row = RunRow(id=run_dir.relative_to(store).as_posix(), time=_run_time(run_dir))
    errors: list[str] = []
    try:
        config = _read_json(run_dir / "config.json")
        row.config = config
        row.workload = str(config.get("workload", ""))
        row.target = str(config.get("target", ""))
        row.faults = [str(f) for f in config.get("faults") or []]
        row.nodes = config.get("nodes") if isinstance(config.get("nodes"), int) else None
        row.seed = config.get("seed") if isinstance(config.get("seed"), int) else None
        row.bugs = [str(b) for b in config.get("bugs") or []]
    except ValueError as exc:
        errors.append(str(exc))
    results_path = run_dir / "results.json"
    if results_path.exists():
        try:
            results = _read_json(results_path)
            row.results = results
            row.verdict = verdict_name(results.get("valid"))
            checkers = results.get("checkers")
            if isinstance(checkers, dict):
                for name, res in checkers.items():
                    if isinstance(res, dict):
                        row.checkers[str(name)] = verdict_name(res.get("valid"))
                        row.anomalies += len(checker_anomalies(str(name), res))
            run = results.get("run") if isinstance(results.get("run"), dict) else {}
            assert isinstance(run, dict)
            row.sim_seconds = run.get("simulated_seconds")
            row.wall_seconds = run.get("wall_seconds")
        except ValueError as exc:
            errors.append(str(exc))
    row.base_errors = errors
    return row


def read_history_ops(run_dir: Path) -> tuple[int | None, str | None]:
    """(client invocations, None) or (None, the problem) for a run's history.jsonl."""
    history = run_dir / "history.jsonl"
    if not history.exists():
        return None, "history.jsonl: missing"
    try:
        return _history_ops(history), None
    except Exception as exc:  # MalformedInput, or anything else the reader trips on
        return None, f"history: {exc}"


def read_history_batch(run_dirs: list[Path]) -> list[tuple[int | None, str | None]]:
    return [read_history_ops(run_dir) for run_dir in run_dirs]


Signature = tuple[tuple[int, int], ...]
HISTORY_BATCH = 50


def _signature(run_dir: Path, names: tuple[str, ...]) -> Signature:
    sig = []
    for name in names:
        try:
            st = os.stat(run_dir / name)
            sig.append((st.st_mtime_ns, st.st_size))
        except OSError:
            sig.append((0, -1))
    return tuple(sig)


ROW_FILES = ("config.json", "results.json")
HISTORY_FILES = ("history.jsonl",)


class RunIndex:
    """The runs under ``root``, rebuilt per listing from caches keyed by file mtimes."""

    def __init__(self, root: Path, *, background: bool = False) -> None:
        self.root = root.resolve()
        self.background = background
        self._rows: dict[Path, tuple[Signature, RunRow]] = {}
        self._histories: dict[Path, tuple[Signature, int | None, str | None]] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[Path] = queue.Queue()
        self._queued: set[Path] = set()
        self._worker: threading.Thread | None = None

    def run_dirs(self) -> list[Path]:
        found: list[Path] = []

        def walk(path: Path, depth: int) -> None:
            try:
                entries = list(os.scandir(path))
            except OSError:
                return
            if any(e.name == RUN_MARKER and e.is_file(follow_symlinks=False) for e in entries):
                found.append(path)
                return
            if depth >= MAX_DEPTH:
                return
            for e in entries:
                if e.is_dir(follow_symlinks=False) and not e.name.startswith("."):
                    walk(Path(e.path), depth + 1)

        walk(self.root, 0)
        return found

    def _row(self, run_dir: Path, background: bool) -> RunRow:
        """The cached row of ``run_dir`` brought up to date (call with the lock held)."""
        sig = _signature(run_dir, ROW_FILES)
        cached = self._rows.get(run_dir)
        if cached is None or cached[0] != sig:
            cached = (sig, build_row(self.root, run_dir))
            self._rows[run_dir] = cached
        row = cached[1]
        hsig = _signature(run_dir, HISTORY_FILES)
        hist = self._histories.get(run_dir)
        if hist is None or hist[0] != hsig:
            if background:
                self._enqueue(run_dir)
                row.history_pending = True
                row.ops = None
                row.error = "; ".join(row.base_errors) or None
                return row
            ops, err = read_history_ops(run_dir)
            hist = (hsig, ops, err)
            self._histories[run_dir] = hist
        row.history_pending = False
        row.ops = hist[1]
        row.error = "; ".join([*row.base_errors, *([hist[2]] if hist[2] else [])]) or None
        return row

    def _enqueue(self, run_dir: Path) -> None:
        if run_dir in self._queued:
            return
        self._queued.add(run_dir)
        self._queue.put(run_dir)

    def _start_worker(self) -> None:
        """Start the history reader once a listing is done (so it does not slow that one)."""
        if self._worker is None and self._queued:
            self._worker = threading.Thread(target=self._read_histories, name="kvcheck-serve-histories",
                                            daemon=True)
            self._worker.start()

    def _read_histories(self) -> None:
        """Read queued histories in batches in a child process (parsing is CPU-bound Python:
        in this process it would hold the GIL and slow every listing while it runs)."""
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            while True:
                batch = [self._queue.get()]
                while len(batch) < HISTORY_BATCH and not self._queue.empty():
                    batch.append(self._queue.get())
                sigs = [_signature(run_dir, HISTORY_FILES) for run_dir in batch]
                try:
                    results = pool.submit(read_history_batch, batch).result()
                except Exception as exc:  # the child died (e.g. out of memory): say so per run
                    results = [(None, f"history: not read: {type(exc).__name__}: {exc}")] * len(batch)
                with self._lock:
                    for run_dir, hsig, (ops, err) in zip(batch, sigs, results, strict=True):
                        self._histories[run_dir] = (hsig, ops, err)
                        self._queued.discard(run_dir)

    def rows(self) -> list[RunRow]:
        with self._lock:
            out: list[RunRow] = []
            seen: set[Path] = set()
            for run_dir in self.run_dirs():
                seen.add(run_dir)
                out.append(self._row(run_dir, self.background))
            for gone in set(self._rows) - seen:
                del self._rows[gone]
                self._histories.pop(gone, None)
            self._start_worker()
        out.sort(key=lambda r: (r.time, r.id), reverse=True)
        return out

    def row(self, run_id: str) -> RunRow | None:
        """One run's row, its history read now if it has not been (a run page needs it)."""
        run_dir = self.resolve_run(run_id)
        if run_dir is None:
            return None
        with self._lock:
            return self._row(run_dir, False)

    def resolve_run(self, run_id: str) -> Path | None:
        """The run directory named by ``run_id`` (relative to the store), or None when it is
        not one: absolute, with ``..`` or empty parts, outside the store, or no run there."""
        if not run_id or "\\" in run_id or "\0" in run_id:
            return None
        parts = run_id.split("/")
        if run_id.startswith("/") or any(p in ("", ".", "..") for p in parts):
            return None
        candidate = self.root.joinpath(*parts)
        try:
            real = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        if real == self.root or not real.is_relative_to(self.root) or real != candidate:
            return None  # outside the store, or reached through a symlink
        if not (real / RUN_MARKER).is_file():
            return None
        return real

    def run_file(self, run_id: str, name: str) -> Path | None:
        """A plain file directly inside a run directory, or None."""
        run_dir = self.resolve_run(run_id)
        if run_dir is None or not name or "/" in name or "\\" in name or name in (".", ".."):
            return None
        path = run_dir / name
        if path.is_symlink() or not path.is_file():
            return None
        return path

    def files(self, run_id: str) -> list[tuple[str, int]]:
        run_dir = self.resolve_run(run_id)
        if run_dir is None:
            return []
        out = []
        for e in sorted(os.scandir(run_dir), key=lambda e: e.name):
            if e.is_file(follow_symlinks=False):
                out.append((e.name, e.stat().st_size))
        return out
