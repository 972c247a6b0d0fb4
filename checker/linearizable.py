"""Linearizability checking of a whole history: preprocessing, the fast path, per-key
scheduling of the exact searches, bounds and counterexamples.

``check_history(ops, model)`` does, per history:

1. pairs invocations with completions (``pair_calls``; nemesis ops are ignored) and splits
   the calls by ``op.key`` (P-compositionality: each key is an independent object; ops with
   no key form the key ``None``, reported as ``"null"``);
2. turns each call into the model's action and applies the exact reductions of
   CHECKER-ALGORITHMS §1: failed calls did not happen (dropped, unless the model keeps them,
   e.g. a compare-failed cas); read-only calls with unknown outcome observed nothing (dropped);
   ``model.droppable`` drops writes with unknown outcome whose value nobody observes and
   compare-failed cas from a value never written;
3. for register and cas-register keys whose written values are unique, decides the key in
   O(n log n) with Gibbons–Korach zones over cas chains (``kvcheck.checker.zones``);
4. otherwise runs the exact search (``kvcheck.checker.search``: breadth-first over
   configurations, read-only greedy, dead-value pruning with unique values), joined by a
   depth-first WGL search (``kvcheck.checker.wgl``) on keys that take long; all keys are
   interleaved round-robin in small slices so one hard key cannot hide another key's
   violation, under a shared deadline (``timeout``) and a memory bound (``memory_limit_mb``,
   the process's resident size); a key that runs out of either is ``"unknown"`` with the
   cause;
5. for an invalid key: the op that cannot be linearized (its completion, as Knossos reports
   it: the first return no linearization of the history so far survives), the previous ok op
   of that key, final paths (from each configuration the search could reach just before that
   op's return: the last op linearized and the state after it, then the step the model
   rejects) and a minimal failing sub-history found by delta debugging (1-minimal: removing
   any one of its calls makes it linearizable), which keeps the failing op whenever some
   1-minimal failing sub-history contains it. For registers with unique values it is
   self-contained: it keeps the write behind every value its calls read or compared, and
   removing any one call together with the calls that observed its write makes it
   linearizable. Finding the op and the final paths, and delta
   debugging, each take at most EXPLAIN_BUDGET seconds more (and never pass the deadline):
   a verdict found fast is never held up long by its explanation.
"""
from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kvcheck.checker.api import Anomaly, CheckerBase, CheckOptions, CheckResult
from kvcheck.checker.history import Call, Op, pair_calls
from kvcheck.checker.models import INCONSISTENT, CasRegister, Model, Register
from kvcheck.checker.search import Entry, Search, SearchOutcome, run_to_end
from kvcheck.checker.wgl import DepthFirstSearch
from kvcheck.checker.zones import (
    check_unique,
    first_failing_end,
    observers_if_unique,
    unique_writers,
)

Verdict = bool | Literal["unknown"]
NULL_KEY = "null"  # the report key of ops without a key field
MAX_FINAL_PATHS = 16
_GRAVEYARD: list[Any] = []  # abandoned searches, freed at the start of the next check
EXPLAIN_BUDGET = 5.0
PORTFOLIO_AFTER = 20_000  # breadth-first steps on one key before the depth-first search joins  # seconds a counterexample's searches may take beyond the verdict


class _OutOfBounds(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def op_json(op: Op) -> dict[str, Any]:
    """An op as it appears inside results: its JSON form plus ``index`` = its identity."""
    d = op.to_dict()
    d["index"] = op.id
    return d


def _call_op(call: Call) -> Op:
    """The op that names a call in reports: its completion when it has one."""
    return call.completion if call.completion is not None else call.invoke


@dataclass
class KeyResult:
    """The verdict for one key, with a counterexample when invalid."""

    valid: Verdict
    op: dict[str, Any] | None = None
    previous_ok: dict[str, Any] | None = None
    final_paths: list[list[dict[str, Any]]] = field(default_factory=list)
    minimal_history: list[dict[str, Any]] | None = None
    minimal_is_1_minimal: bool | None = None
    unknown_cause: str | None = None
    calls: int = 0
    max_frontier: int = 0
    method: str = "search"  # "zones" when the polynomial fast path decided
    reason: str | None = None  # the fast path's account of the violation

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "op": self.op,
            "previous_ok": self.previous_ok,
            "final_paths": self.final_paths,
            "minimal_history": self.minimal_history,
            "minimal_is_1_minimal": self.minimal_is_1_minimal,
            "unknown_cause": self.unknown_cause,
            "calls": self.calls,
            "max_frontier": self.max_frontier,
            "method": self.method,
            "reason": self.reason,
        }


@dataclass
class LinearizabilityResult:
    """The verdict for a history: ``valid`` is False when any key is invalid, else "unknown"
    when any key is undecided, else True. ``keys`` maps str(key) ("null" for ops without a
    key) to that key's result."""

    valid: Verdict
    model: str
    check_seconds: float
    keys: dict[str, KeyResult]
    unknown_cause: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "model": self.model,
            "check_seconds": round(self.check_seconds, 6),
            "unknown_cause": self.unknown_cause,
            "keys": {k: r.to_json() for k, r in self.keys.items()},
        }


def key_name(key: Any) -> str:
    if key is None:
        return NULL_KEY
    return key if isinstance(key, str) else str(key)


def build_entries(model: Model, calls: Sequence[Call]) -> list[Entry]:
    """The reduced entries of one key's calls (CHECKER-ALGORITHMS §1.2, §1.3)."""
    entries: list[Entry] = []
    action_of = model.action
    read_only = model.read_only
    inf = math.inf
    for call in calls:
        action = action_of(call)
        if action is None:
            continue
        ro = read_only(action)
        completion = call.completion
        end = call.end if completion is not None and completion.type != "info" else inf
        if ro and end == inf:
            continue  # observed nothing and changed nothing
        entries.append(Entry(call, action, float(call.start), float(end), ro))
    drop = model.droppable([e.action for e in entries])
    if drop:
        entries = [e for i, e in enumerate(entries) if i not in drop]
    return entries


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # not Linux: peak RSS is the best we have
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _Bounds:
    """The shared deadline and memory limit; ``check()`` raises _OutOfBounds."""

    def __init__(self, timeout: float | None, memory_limit_mb: int | None) -> None:
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout if timeout is not None else math.inf
        self.timeout = timeout
        self.memory_limit_mb = memory_limit_mb
        self.calls = 0

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise _OutOfBounds(f"timeout: the {self.timeout:g} s limit ran out")
        self.calls += 1
        if self.memory_limit_mb is not None and self.calls % 16 == 0:
            rss = _rss_mb()
            if rss > self.memory_limit_mb:
                raise _OutOfBounds(
                    f"memory limit: resident size {rss:.0f} MB exceeds {self.memory_limit_mb} MB"
                )


def new_search(model: Model, entries: list[Entry], *, keep_last: bool = False,
               prune: bool = True) -> Search:
    """The exact search for one key, with dead-value pruning when values are unique and
    ``prune``. Pruning uses future observers, so it can fail at an earlier return than the
    first op that cannot be linearized: counterexamples are searched without it."""
    observers = None
    if prune and type(model) in (Register, CasRegister):
        observers = observers_if_unique(entries, model.initial())
    return Search(model, entries, model.initial(), keep_last=keep_last, observers=observers)


class _KeyRun:
    """One key's exact check: the breadth-first search, joined by the depth-first one (a
    portfolio, CHECKER-ALGORITHMS §7.7) once it has taken PORTFOLIO_AFTER steps; slices
    alternate between them and the first answer wins (both are exact)."""

    def __init__(self, model: Model, entries: list[Entry]) -> None:
        self.model = model
        self.entries = entries
        self.bfs = new_search(model, entries)
        self.bfs_gen: Generator[None, None, SearchOutcome] | None = self.bfs.run()
        self.dfs: DepthFirstSearch | None = None
        self.dfs_gen: Generator[None, None, SearchOutcome] | None = None
        self.turn = 0
        self.method = "search"
        self.exact_failed = self.bfs.observers is None  # a failing op Knossos would name

    def advance(self) -> SearchOutcome | None:
        """Run one slice; the outcome when decided."""
        if self.dfs_gen is None and self.bfs.steps >= PORTFOLIO_AFTER:
            self.dfs = DepthFirstSearch(self.model, self.entries, self.model.initial())
            self.dfs_gen = self.dfs.run()
        use_dfs = self.dfs_gen is not None and (self.turn % 2 == 1 or self.bfs_gen is None)
        self.turn += 1
        gen = self.dfs_gen if use_dfs else self.bfs_gen
        assert gen is not None
        try:
            next(gen)
        except StopIteration as stop:
            outcome: SearchOutcome = stop.value
            if use_dfs:
                self.method = "search (depth-first)"
                self.exact_failed = False
            return outcome
        return None


def _linearizable(model: Model, entries: list[Entry], bounds: _Bounds) -> bool:
    """Decide a (sub-)history exactly; raises _OutOfBounds."""
    return run_to_end(new_search(model, entries).run(), bounds.check).valid


def ddmin(items: list[Any], fails: Callable[[list[Any]], bool]) -> tuple[list[Any], bool]:
    """Zeller's delta debugging: a sub-list of ``items`` that still ``fails``. Returns it and
    whether it is known 1-minimal (False when ``fails`` raised _OutOfBounds midway)."""
    n = 2
    try:
        if items and fails([]):
            return [], True
        while len(items) >= 2:
            size = len(items)
            chunks = [items[i * size // n:(i + 1) * size // n] for i in range(n)]
            reduced = False
            for c in chunks:
                if fails(c):
                    items, n, reduced = c, 2, True
                    break
            if not reduced and n > 2:
                for i in range(n):
                    comp = [x for j, ch in enumerate(chunks) if j != i for x in ch]
                    if fails(comp):
                        items, n, reduced = comp, max(n - 1, 2), True
                        break
            if not reduced:
                if n >= size:
                    return items, True
                n = min(size, 2 * n)
        return items, True
    except _OutOfBounds:
        return items, False


class _ValueSources:
    """Which call wrote the value another call observed, for registers whose written values
    are unique (and differ from the initial value): an ok read of v and an ok cas from v
    observed the one write or successful cas that wrote v. A sub-history that keeps an
    observer keeps its source too (``close``), so a minimal counterexample shows where
    the values it reads came from — a stale read comes with the write it saw and the write
    that overwrote it — instead of a read of a value nothing in it wrote."""

    def __init__(self, entries: Sequence[Entry], writers: dict[Any, int], initial: Any) -> None:
        self.order = {id(e): i for i, e in enumerate(entries)}
        self.source: dict[int, Entry] = {}
        for e in entries:
            a = e.action
            if e.end == math.inf:
                continue  # an info call observed nothing we know
            v = a.value if a.f == "read" else a.value[0] if a.f == "cas" and a.outcome == "ok" else initial
            if v != initial and v in writers:
                self.source[id(e)] = entries[writers[v]]

    @classmethod
    def of(cls, model: Model, entries: Sequence[Entry]) -> _ValueSources | None:
        if not _fast_applies(model):
            return None
        try:
            writers = unique_writers(entries, model.initial())
        except TypeError:  # unhashable values: no single source
            return None
        return None if writers is None else cls(entries, writers, model.initial())

    def close(self, calls: Sequence[Entry]) -> list[Entry]:
        """``calls`` with the sources of what they observed, transitively, in history order."""
        keep = {id(e): e for e in calls}
        todo = list(calls)
        while todo:
            src = self.source.get(id(todo.pop()))
            if src is not None and id(src) not in keep:
                keep[id(src)] = src
                todo.append(src)
        return sorted(keep.values(), key=lambda e: self.order[id(e)])

    def without(self, calls: Sequence[Entry], drop: Entry) -> list[Entry]:
        """``calls`` less ``drop`` and every call that observed what it wrote, transitively."""
        gone = {id(drop)}
        changed = True
        while changed:
            changed = False
            for e in calls:
                src = self.source.get(id(e))
                if id(e) not in gone and src is not None and id(src) in gone:
                    gone.add(id(e))
                    changed = True
        return [e for e in calls if id(e) not in gone]


def _drop_while_failing(calls: list[Entry], sources: _ValueSources,
                        fails: Callable[[list[Entry]], bool], keep_first: Entry) -> list[Entry]:
    """Drop single calls (each with the calls that observed its write) while the rest still
    fails, trying ``keep_first`` last; raises _OutOfBounds."""
    while True:
        for e in sorted(calls, key=lambda c: c is keep_first):
            smaller = sources.without(calls, e)
            if fails(smaller):
                calls = smaller
                break
        else:
            return calls


def _final_paths(model: Model, entries: list[Entry], outcome: SearchOutcome,
                 bounds: _Bounds) -> list[list[dict[str, Any]]]:
    """Final paths: for each configuration just before the failing return, the last op it
    linearized (with the state after it), then each open call (as Knossos, info calls too)
    that the model rejects in that state."""
    assert outcome.failed is not None
    fail_end = entries[outcome.failed].end
    paths: list[list[dict[str, Any]]] = []
    seen: set[tuple[Any, ...]] = set()
    for lin, state, last in outcome.frontier:
        bounds.check()
        head: dict[str, Any] = {
            "op": op_json(_call_op(entries[last].call)) if last is not None else None,
            "model": model.describe(state),
        }
        order = [outcome.failed] + [i for i in range(len(entries)) if i != outcome.failed]
        for i in order:
            e = entries[i]
            if i in lin or e.start >= fail_end or e.end < fail_end:
                continue  # linearized, not yet invoked or already returned
            if model.step(state, e.action) is not INCONSISTENT:
                continue
            sig = (last, repr(state), i)
            if sig in seen:
                continue
            seen.add(sig)
            paths.append([
                head,
                {"op": op_json(_call_op(e.call)), "model": None,
                 "inconsistent": model.explain(state, e.action)},
            ])
            if len(paths) >= MAX_FINAL_PATHS:
                return paths
    return paths


def _fast_applies(model: Model) -> bool:
    return type(model) in (Register, CasRegister)


def _decide(model: Model, entries: list[Entry], bounds: _Bounds) -> bool:
    """Is this (sub-)history linearizable? The zone check when it decides, else the exact
    search; raises _OutOfBounds."""
    if _fast_applies(model):
        res = check_unique(entries, model.initial())
        if res is not None:
            return res[0]
    return _linearizable(model, entries, bounds)


def _explain_invalid(model: Model, entries: list[Entry], failed: int | None,
                     bounds: _Bounds, result: KeyResult, minimize: bool) -> None:
    """Fill ``result`` with the counterexample of an invalid key. ``failed`` is the entry
    whose return cannot be linearized, when already known. The explanation's searches are
    bounded by ``bounds`` and by EXPLAIN_BUDGET seconds, so a verdict found by the fast path
    is never held up by an exponential search."""
    sub = _Bounds(None, bounds.memory_limit_mb)
    sub.deadline = min(bounds.deadline, time.monotonic() + EXPLAIN_BUDGET)
    sub.timeout = sub.deadline - time.monotonic()
    detailed: SearchOutcome | None = None
    try:
        if failed is None:
            search = new_search(model, entries, keep_last=True, prune=False)
            detailed = run_to_end(search.run(), sub.check)
            failed = detailed.failed
    except _OutOfBounds:
        pass
    if failed is None:
        result.unknown_cause = "invalid, but finding the first op that cannot be linearized ran out of bounds"
        return
    x = entries[failed]
    result.op = op_json(_call_op(x.call))
    prev: Call | None = None
    for e in entries:
        if e.call.outcome == "ok" and e.end < x.end and (prev is None or e.end > prev.end):
            prev = e.call
    result.previous_ok = op_json(_call_op(prev)) if prev is not None else None
    where = [i for i, e in enumerate(entries) if e.start < x.end]
    prefix = [entries[i] for i in where]
    try:
        if detailed is None:  # re-run the failing prefix remembering each configuration's last op
            search = new_search(model, prefix, keep_last=True, prune=False)
            detailed = run_to_end(search.run(), sub.check)
            remap = dict(enumerate(where))
            detailed.frontier = [
                (frozenset(remap[i] for i in lin), st, remap[lk] if lk is not None else None)
                for lin, st, lk in detailed.frontier
            ]
            if detailed.failed is not None:
                detailed.failed = remap[detailed.failed]
        if not detailed.valid and detailed.failed == failed:
            result.final_paths = _final_paths(model, entries, detailed, sub)
    except _OutOfBounds:
        pass
    if not minimize:
        return

    def fails(candidate: list[Entry]) -> bool:
        return not _decide(model, candidate, sub)

    sub.deadline = min(bounds.deadline, time.monotonic() + EXPLAIN_BUDGET)
    # Keep the failing op, so the minimal history explains the op reported above: shrink the
    # other calls while they still fail together with it. If what remains fails without it
    # too, shrink on without it, so the result is always 1-minimal. With unique register
    # values every candidate keeps the sources of the values it observed (_ValueSources),
    # and a last pass makes the result 1-minimal in that sense: dropping any one call
    # together with the calls that observed its write leaves a linearizable history.
    sources = _ValueSources.of(model, entries)
    close: Callable[[list[Entry]], list[Entry]] = sources.close if sources is not None else list
    others = [e for e in prefix if e is not x]
    rest, complete = ddmin(others, lambda cand: fails(close([*cand, x])))
    minimal = close([*rest, x])
    if complete:
        try:
            if fails(close(rest)):
                found, complete = ddmin(rest, lambda cand: fails(close(cand)))
                minimal = close(found)
            if complete and sources is not None:
                minimal = _drop_while_failing(minimal, sources, fails, keep_first=x)
        except _OutOfBounds:
            complete = False
    ops: list[Op] = []
    for e in minimal:
        ops.append(e.call.invoke)
        if e.call.completion is not None:
            ops.append(e.call.completion)
    ops.sort(key=lambda o: o.position)
    result.minimal_history = [op_json(o) for o in ops]
    result.minimal_is_1_minimal = complete


def check_history(ops: Sequence[Op], model: Model, *, timeout: float | None = None,
                  memory_limit_mb: int | None = None, minimize: bool = True) -> LinearizabilityResult:
    """Check a whole history (nemesis ops included; they are ignored) against ``model``.

    ``timeout`` (seconds) is shared by all keys of the history; ``memory_limit_mb`` bounds the
    process's resident size. Either bound makes undecided keys "unknown" with the cause.
    ``minimize=False`` skips delta debugging of counterexamples. Raises HistoryError when
    the history is malformed (a completion with no invocation, a value the model cannot read).
    """
    _GRAVEYARD.clear()  # free the previous timed-out search before this one's clock starts
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the search allocates millions of acyclic objects: no cyclic GC pauses
    try:
        return _check(ops, model, timeout, memory_limit_mb, minimize)
    finally:
        if gc_was_enabled:
            gc.enable()


def _check(ops: Sequence[Op], model: Model, timeout: float | None, memory_limit_mb: int | None,
           minimize: bool) -> LinearizabilityResult:
    bounds = _Bounds(timeout, memory_limit_mb)
    calls = pair_calls(ops)
    by_key: dict[Any, list[Call]] = {}
    for call in calls:
        k = call.key
        try:
            by_key.setdefault(k, []).append(call)
        except TypeError:  # an unhashable key (e.g. a list): key by its text
            by_key.setdefault(repr(k), []).append(call)
    if not by_key:
        by_key[None] = []

    keys: dict[str, KeyResult] = {}
    entries_of: dict[str, list[Entry]] = {}
    running: dict[str, _KeyRun] = {}
    invalid_fast: list[str] = []
    for k, kcalls in by_key.items():
        name = key_name(k)
        entries = build_entries(model, kcalls)
        entries_of[name] = entries
        res = keys[name] = KeyResult(valid="unknown", calls=len(entries))
        if _fast_applies(model):
            fast = check_unique(entries, model.initial())
            if fast is not None:
                res.method = "zones"
                if fast[0]:
                    res.valid = True
                else:
                    res.valid = False
                    res.reason = fast[1]
                    invalid_fast.append(name)
                continue
        running[name] = _KeyRun(model, entries)

    cause: str | None = None
    try:
        for name in invalid_fast:
            entries = entries_of[name]
            failed = first_failing_end(entries, model.initial())
            _explain_invalid(model, entries, failed, bounds, keys[name], minimize)
            bounds.check()
        while running:
            for name in list(running):
                run = running[name]
                outcome = run.advance()
                if outcome is not None:
                    del running[name]
                    res = keys[name]
                    res.max_frontier = outcome.max_frontier
                    res.method = run.method
                    if outcome.valid:
                        res.valid = True
                    else:
                        res.valid = False
                        failed = outcome.failed if run.exact_failed else None
                        _explain_invalid(model, entries_of[name], failed, bounds, res, minimize)
                bounds.check()
    except _OutOfBounds as exc:
        cause = exc.cause
        for name in running:
            keys[name].unknown_cause = cause
        # Freeing a large frontier takes tens of milliseconds: keep the abandoned searches
        # until the next call (or exit) so a timed-out check returns promptly.
        _GRAVEYARD.extend(running.values())
        running.clear()

    verdicts = [r.valid for r in keys.values()]
    valid: Verdict
    if any(v is False for v in verdicts):
        valid = False
    elif any(v == "unknown" for v in verdicts):
        valid = "unknown"
    else:
        valid = True
    return LinearizabilityResult(
        valid=valid,
        model=model.name,
        check_seconds=time.monotonic() - bounds.t0,
        keys=keys,
        unknown_cause=cause if valid == "unknown" else None,
    )


class LinearizableChecker(CheckerBase):
    """The linearizability checker behind the one checker interface (``checker.api``).

    ``options.model`` is a model name or a ``Model``; with ``options.extra["compare_failed"]``
    a ``fail`` cas with error "compare-failed" means the compare failed (the kvcheck
    recorders' convention) and any other failed cas is dropped as certainly not applied.
    Each invalid key becomes one ``nonlinearizable`` anomaly naming the op that cannot be
    linearized and the ops of its minimal failing sub-history."""

    name = "linearizable"
    description = "linearizability against a model, key by key (Wing–Gong search with zones)"

    def check(self, ops: Sequence[Op], options: CheckOptions) -> CheckResult:
        from kvcheck.checker.models import DEFAULT, get_model

        compare_failed = bool(options.extra.get("compare_failed"))
        model = options.model
        if model is None or isinstance(model, str):
            init = DEFAULT if options.init is None else options.init
            model = get_model(model or "cas-register", init,
                              fail_cas_means_compare_failed=compare_failed)
        if compare_failed:
            ops = compare_failed_ops(ops)
        result = check_history(ops, model, timeout=options.timeout,
                               memory_limit_mb=options.memory_limit_mb)
        detail = result.to_json()
        anomalies = []
        for name, key in result.keys.items():
            if key.valid is False and key.op is not None:
                ids = [key.op.get("index", -1)]
                ids += [o.get("index", -1) for o in key.minimal_history or []
                        if o.get("type") != "invoke" and o.get("index") not in ids]
                where = "" if name == "null" else f"key {name}: "
                anomalies.append(Anomaly(
                    "nonlinearizable",
                    f"{where}op {key.op.get('index')} cannot be linearized"
                    + (f" ({key.reason})" if key.reason else ""),
                    [int(i) for i in ids if isinstance(i, int) and i >= 0],
                    {"key": name}))
        return CheckResult(self.name, result.valid, anomalies, result.check_seconds,
                           result.unknown_cause, detail)

    minimal_shown = 8  # calls of a minimal failing sub-history the summary lists

    def summary_lines(self, result: Mapping[str, Any], op_text: Callable[[Any], str]) -> list[str]:
        """For each invalid key: the op that cannot be linearized and the completions of its
        minimal failing sub-history, one per line (the whole history has no key line)."""
        lines: list[str] = []
        for name, key in (result.get("keys") or {}).items():
            if key.get("valid") is not False or not key.get("op"):
                continue
            indent = "    "
            if name != "null":
                lines.append(f"    key {name}:")
                indent = "      "
            lines.append(f"{indent}{op_text(key['op'])} cannot be linearized")
            minimal = [op for op in key.get("minimal_history") or [] if op.get("type") != "invoke"]
            if minimal:
                lines.append(f"{indent}minimal failing sub-history ({len(minimal)} calls):")
                lines.extend(f"{indent}  {op_text(op)}" for op in minimal[: self.minimal_shown])
                if len(minimal) > self.minimal_shown:
                    lines.append(f"{indent}  … {len(minimal) - self.minimal_shown} more (results.json)")
        return lines


COMPARE_FAILED = "compare-failed"


def compare_failed_ops(ops: Sequence[Op]) -> list[Op]:
    """The history with every failed cas meaning "the compare failed".

    kvcheck's clients record a cas whose compare failed as ``fail`` with error
    "compare-failed": it happened and read a value other than ``old``, which the
    cas-register model checks with fail_cas_means_compare_failed (a stronger check than
    Jepsen's "a failed op did not happen"). A cas refused for any other reason (not leader,
    no space, ...) certainly did not happen, so its invocation and completion are dropped,
    which is exact.
    """
    refused: set[int] = set()
    for call in pair_calls(ops):
        c = call.completion
        if call.f == "cas" and c is not None and c.type == "fail" and c.error != COMPARE_FAILED:
            refused.update((id(call.invoke), id(c)))
    return [op for op in ops if id(op) not in refused] if refused else list(ops)
