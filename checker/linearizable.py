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
3. decides every key it can in about O(n log n) (``kvcheck.checker.zones``): register and
   cas-register keys whose written values are unique by Gibbons–Korach zones over cas
   chains; kv keys (get/put/append) whose put and append values are unique and prefix-free
   by their append chains;
4. with ``all_keys=False``, stops there when a key is invalid (so is the history): the keys
   left are "unknown", saying they were not finished and why. Otherwise runs the exact
   search on the other keys (``kvcheck.checker.search``: breadth-first over configurations,
   read-only greedy, dead-value pruning with unique values), joined by a depth-first WGL
   search (``kvcheck.checker.wgl``) on keys that take long; the keys are interleaved
   round-robin in small slices, so each key still searching gets an equal share of the
   time left and one hard key cannot hide another key's violation, under the file's
   deadline (``timeout``) and a memory bound (``memory_limit_mb``, the process's resident
   size); a key that runs out of either is ``"unknown"`` with the cause and how far its
   search got (seconds searched, frontier, states explored). With ``all_keys=False`` the
   search stops at the first key it finds invalid;
5. for an invalid key (only the first one with ``all_keys=False``): the op that cannot be
   linearized (its completion, as Knossos reports it: the first return no linearization of
   the history so far survives; from the fast path by binary search over prefixes,
   ``op_is_first`` saying whether the exact search confirmed no earlier op fails), the
   previous ok op of that key, final paths (from each configuration the search could reach
   just before that op's return: the last op linearized and the state after it, then the
   step the model rejects) and a minimal failing sub-history found by delta debugging
   (1-minimal: removing any one of its calls makes it linearizable), which starts from the
   ops the fast path names as its witness and keeps the failing op whenever some 1-minimal
   failing sub-history contains it. For registers with unique values and for kv append
   chains it is self-contained: it keeps the write behind every value its calls read or
   compared (info and compare-failed cas included) and the put and appends each get
   shows, and removing any one call together with the calls that observed its write makes
   it linearizable. Each phase (the op, the final paths, delta debugging) takes at most
   twice the key's verdict time (at least MIN_PHASE, at most EXPLAIN_BUDGET seconds, never
   past the deadline): a verdict found fast is never held up long by its explanation, and
   the result says how long the verdict and the explanation took.
"""
from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kvcheck.checker.api import Anomaly, CheckerBase, CheckOptions, CheckResult
from kvcheck.checker.bounds import Bounds as _Bounds
from kvcheck.checker.bounds import OutOfBounds as _OutOfBounds
from kvcheck.checker.history import Call, Op, pair_calls
from kvcheck.checker.models import INCONSISTENT, KV, CasRegister, Model, Register
from kvcheck.checker.search import Entry, Search, SearchOutcome, run_to_end
from kvcheck.checker.wgl import DepthFirstSearch
from kvcheck.checker.zones import (
    INITIAL_GENERATION,
    AppendState,
    append_parses,
    check_appends,
    check_unique,
    first_failing_end,
    observers_if_unique,
    reduce_appends,
    truncate,
    unique_writers,
)

Verdict = bool | Literal["unknown"]
NULL_KEY = "null"  # the report key of ops without a key field
MAX_FINAL_PATHS = 16
_GRAVEYARD: list[Any] = []  # abandoned searches, freed at the start of the next check
EXPLAIN_BUDGET = 5.0  # seconds each phase of a counterexample may take at most
MIN_PHASE = 0.25  # ... and at least (see _explain_invalid)
PORTFOLIO_AFTER = 20_000  # breadth-first steps on one key before the depth-first search joins


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
    # False when ``op`` is only the first op the fast path proves cannot be linearized: the
    # exact search could not confirm within its budget that no earlier op fails
    op_is_first: bool | None = None
    unknown_cause: str | None = None
    calls: int = 0
    max_frontier: int = 0
    method: str = "search"  # "zones" when the polynomial fast path decided
    reason: str | None = None  # the fast path's account of the violation
    seconds: float = 0.0  # time spent deciding this key (fast path and search)
    explain_seconds: float = 0.0  # time spent on its counterexample
    states_explored: int = 0  # search steps (configurations tried), when searched

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "op": self.op,
            "previous_ok": self.previous_ok,
            "final_paths": self.final_paths,
            "minimal_history": self.minimal_history,
            "minimal_is_1_minimal": self.minimal_is_1_minimal,
            "op_is_first": self.op_is_first,
            "unknown_cause": self.unknown_cause,
            "calls": self.calls,
            "max_frontier": self.max_frontier,
            "method": self.method,
            "reason": self.reason,
            "seconds": round(self.seconds, 6),
            "explain_seconds": round(self.explain_seconds, 6),
            "states_explored": self.states_explored,
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
    verdict_seconds: float = 0.0  # until the verdict was known (before any explanation)
    explain_seconds: float = 0.0  # spent on counterexamples
    stopped_at: str | None = None  # the invalid key that stopped the others (all_keys=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "model": self.model,
            "check_seconds": round(self.check_seconds, 6),
            "verdict_seconds": round(self.verdict_seconds, 6),
            "explain_seconds": round(self.explain_seconds, 6),
            "stopped_at": self.stopped_at,
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


def new_search(model: Model, entries: list[Entry], *, keep_last: bool = False,
               prune: bool = True, merge: bool = False) -> Search:
    """The exact search for one key, with dead-value pruning when values are unique and
    ``prune``. Pruning uses future observers, so it can fail at an earlier return than the
    first op that cannot be linearized: counterexamples are searched without it. With
    ``merge``, the search runs on ``merge_unobserved(model, entries)`` (same indices)."""
    observers = None
    if prune and type(model) in (Register, CasRegister):
        observers = observers_if_unique(entries, model.initial())
    if merge:
        entries = merge_unobserved(model, entries)
    return Search(model, entries, model.initial(), keep_last=keep_last, observers=observers)


class _Unobserved:
    """The one value that stands for every written value no call observes (see
    ``merge_unobserved``); equal only to itself."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<a value nobody observes>"

    def __reduce__(self) -> str:
        return "UNOBSERVED"


UNOBSERVED = _Unobserved()


def merge_unobserved(model: Model, entries: list[Entry]) -> list[Entry]:
    """For registers: ``entries`` (same order, same indices) with every written value that
    no call observes -- no read returns it, no cas (ok, failed or unknown) compares against
    it, and it is not the initial value -- replaced by one stand-in, ``UNOBSERVED``. Exact:
    every step of a register model only tests the state for equality with a value some
    call observes (a read's result, a cas's old value), so two states both outside those
    values allow the same steps and lead to the same states; the search may treat them as
    one. It then merges configurations that differ only in which unobserved write was last
    (and, with dominance and identical-call ordering, which of them it linearized): the
    frontier of a key with hundreds of timed-out writes stays small (clean watch swarm seed
    1004 with slow disks: 317 of 452 puts timed out over two keys whose 42 compare-failed
    cas keep ``droppable`` from dropping them; the search ran out of its 100 s). Keeps
    written values unique where they are observed, so dead-value pruning (computed on the
    original entries) still applies to them; ``UNOBSERVED`` has no observers."""
    if type(model) not in (Register, CasRegister):
        return entries
    observed: set[Any] = {model.initial()}
    for e in entries:
        a = e.action
        if a.f == "read":
            observed.add(a.value)
        elif a.f == "cas":
            observed.add(a.value[0])
    out: list[Entry] = []
    for e in entries:
        a = e.action
        if a.f == "write" and a.value not in observed:
            e = Entry(e.call, a._replace(value=UNOBSERVED), e.start, e.end, e.read_only)
        elif a.f == "cas" and a.outcome != "fail" and a.value[1] not in observed:
            e = Entry(e.call, a._replace(value=(a.value[0], UNOBSERVED)), e.start, e.end, e.read_only)
        out.append(e)
    return out


class _KeyRun:
    """One key's exact check: the breadth-first search, joined by the depth-first one (a
    portfolio, CHECKER-ALGORITHMS §7.7) once it has taken PORTFOLIO_AFTER steps; slices
    alternate between them and the first answer wins (both are exact)."""

    def __init__(self, model: Model, entries: list[Entry]) -> None:
        self.model = model
        self.entries = entries
        self.bfs = new_search(model, entries, merge=True)
        self.bfs_gen: Generator[None, None, SearchOutcome] | None = self.bfs.run()
        self.dfs: DepthFirstSearch | None = None
        self.dfs_gen: Generator[None, None, SearchOutcome] | None = None
        self.turn = 0
        self.method = "search"
        self.exact_failed = self.bfs.observers is None  # a failing op Knossos would name

    def advance(self) -> SearchOutcome | None:
        """Run one slice; the outcome when decided."""
        if self.dfs_gen is None and self.bfs.steps >= PORTFOLIO_AFTER:
            self.dfs = DepthFirstSearch(self.model, self.bfs.entries, self.model.initial())
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
    are unique (and differ from the initial value), and for kv keys through their append
    chains (``_of_appends``): an ok read of v observed the one write
    or cas that wrote v, and a cas from v (ok, info or compare-failed: whether and how it
    took effect depends on v) compared against it. A sub-history that keeps an
    observer keeps its source too (``close``), so a minimal counterexample shows where
    the values it reads came from — a stale read comes with the write it saw and the write
    that overwrote it — instead of a read of a value nothing in it wrote."""

    def __init__(self, entries: Sequence[Entry], writers: dict[Any, int], initial: Any) -> None:
        self.order = {id(e): i for i, e in enumerate(entries)}
        self.source: dict[int, list[Entry]] = {}
        for e in entries:
            a = e.action
            if a.f == "read":
                if e.end == math.inf:
                    continue  # an info read observed nothing we know
                v = a.value
            elif a.f == "cas":  # ok, info or compare-failed: what it did depends on old
                v = a.value[0]
            else:
                continue
            if v != initial and v in writers:
                self.source[id(e)] = [entries[writers[v]]]

    @classmethod
    def of(cls, model: Model, entries: Sequence[Entry]) -> _ValueSources | None:
        if type(model) is KV:
            return cls._of_appends(entries, model.initial())
        if type(model) not in (Register, CasRegister):
            return None
        try:
            writers = unique_writers(entries, model.initial())
        except TypeError:  # unhashable values: no single source
            return None
        return None if writers is None else cls(entries, writers, model.initial())

    @classmethod
    def _of_appends(cls, entries: Sequence[Entry], initial: Any) -> _ValueSources | None:
        """For kv keys the append chains decide: a get's source is the last append (or the
        put) its value shows, an append's the one before it, so a kept get keeps the put
        and every append it read."""
        reduced = reduce_appends(entries, initial)
        if isinstance(reduced, tuple):  # the gets disagree: each get keeps what it shows
            parses = append_parses(entries, initial)
            if parses is None:
                return None
            out = cls(entries, {}, initial)
            for i, parts in parses.items():
                if parts:
                    out.source[id(entries[i])] = [entries[j] for j in parts]
            return out
        if reduced is None:
            return None
        start = AppendState(INITIAL_GENERATION, 0)
        writers = unique_writers(reduced, start)
        if writers is None:
            return None
        on_reduced = cls(reduced, writers, start)
        original = {id(e.call): e for e in entries}
        out = cls(entries, {}, initial)
        for r in reduced:
            srcs = on_reduced.source.get(id(r), ())
            if srcs:
                out.source[id(original[id(r.call)])] = [original[id(x.call)] for x in srcs]
        return out

    def close(self, calls: Sequence[Entry]) -> list[Entry]:
        """``calls`` with the sources of what they observed, transitively, in history order."""
        keep = {id(e): e for e in calls}
        todo = list(calls)
        while todo:
            for src in self.source.get(id(todo.pop()), ()):
                if id(src) not in keep:
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
                if id(e) not in gone and any(id(x) in gone for x in self.source.get(id(e), ())):
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
    return type(model) in (Register, CasRegister, KV)


def fast_check(model: Model, entries: Sequence[Entry]) -> tuple[bool, str | None] | None:
    """The polynomial check of one key when it applies and decides: zones over cas chains
    for registers, append chains for kv; None otherwise (then: the exact search)."""
    t = type(model)
    if t is KV:
        return check_appends(entries, model.initial())
    if t in (Register, CasRegister):
        return check_unique(entries, model.initial())
    return None


def _fast_failing_end(model: Model, entries: list[Entry], bounds: _Bounds) -> tuple[int | None, bool]:
    """The op that cannot be linearized, by binary search over prefixes (linearizability is
    prefix-closed) for the shortest one the fast path proves invalid, and whether it is
    certainly the first: (entry, True) when the prefix just before it is proven
    linearizable, by the fast path or else by the exact search within ``bounds``;
    (entry, False) when neither can (with compare-failed cas the fast path may leave a
    prefix undecided; its "invalid" is always sound). (None, False) when no prefix is
    proven invalid."""
    decide = check_appends if type(model) is KV else check_unique
    initial = model.initial()

    def proven_invalid(sub: Sequence[Entry], init: Any) -> tuple[bool, str | None] | None:
        res = decide(sub, init, prove_valid=False)
        return (False, None) if res is not None and not res[0] else (True, None)

    bound = first_failing_end(entries, initial, proven_invalid)
    if bound is None:
        return None, False
    ends = sorted(e.end for e in entries if e.end < entries[bound].end)
    if not ends:
        return bound, True
    before = truncate(entries, ends[-1])
    if decide(before, initial) is not None:  # decided, and not invalid (else bound is earlier)
        return bound, True
    try:
        return bound, _linearizable(model, before, bounds)
    except _OutOfBounds:
        return bound, False


def _decide(model: Model, entries: list[Entry], bounds: _Bounds) -> bool:
    """Is this (sub-)history linearizable? The zone check when it decides, else the exact
    search; raises _OutOfBounds."""
    res = fast_check(model, entries)
    if res is not None:
        return res[0]
    return _linearizable(model, entries, bounds)


def _explain_invalid(model: Model, entries: list[Entry], failed: int | None,
                     bounds: _Bounds, result: KeyResult, minimize: bool) -> None:
    """Fill ``result`` with the counterexample of an invalid key. ``failed`` is the entry
    whose return cannot be linearized, when already known. Each phase (the failing op, the
    final paths, delta debugging) is bounded by ``bounds`` and by its own budget: twice the
    time the key's verdict took, at least MIN_PHASE and at most EXPLAIN_BUDGET seconds, so
    explaining costs about what deciding did and a verdict found by the fast path is never
    held up by an exponential search."""
    phase = min(EXPLAIN_BUDGET, max(MIN_PHASE, 2 * result.seconds))
    sub = _Bounds(None, bounds.memory_limit_mb)

    def start_phase() -> None:
        sub.deadline = min(bounds.deadline, time.monotonic() + phase)
        sub.timeout = phase

    start_phase()
    detailed: SearchOutcome | None = None
    result.op_is_first = True
    if failed is None and result.method == "zones" and _fast_applies(model):
        failed, result.op_is_first = _fast_failing_end(model, entries, sub)
        start_phase()
    try:
        if failed is None:
            search = new_search(model, entries, keep_last=True, prune=False)
            detailed = run_to_end(search.run(), sub.check)
            failed = detailed.failed
    except _OutOfBounds:
        pass
    if failed is None:
        result.op_is_first = None
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
    start_phase()
    try:
        if result.op_is_first is False:
            pass  # the exact search just ran out of its budget on this prefix: no final paths
        elif detailed is None:  # re-run the failing prefix remembering each configuration's last op
            search = new_search(model, prefix, keep_last=True, prune=False)
            detailed = run_to_end(search.run(), sub.check)
            remap = dict(enumerate(where))
            detailed.frontier = [
                (frozenset(remap[i] for i in lin), st, remap[lk] if lk is not None else None)
                for lin, st, lk in detailed.frontier
            ]
            if detailed.failed is not None:
                detailed.failed = remap[detailed.failed]
        if detailed is not None and not detailed.valid and detailed.failed == failed:
            result.final_paths = _final_paths(model, entries, detailed, sub)
    except _OutOfBounds:
        pass
    if not minimize:
        return

    def fails(candidate: list[Entry]) -> bool:
        return not _decide(model, candidate, sub)

    start_phase()
    # Keep the failing op, so the minimal history explains the op reported above: shrink the
    # other calls while they still fail together with it. If what remains fails without it
    # too, shrink on without it, so the result is always 1-minimal. With unique register
    # values every candidate keeps the sources of the values it observed (_ValueSources),
    # and a last pass makes the result 1-minimal in that sense: dropping any one call
    # together with the calls that observed its write leaves a linearizable history.
    # Delta debugging starts from the ops the fast path named as its witness when they fail
    # on their own (a handful instead of the whole prefix).
    sources = _ValueSources.of(model, entries)
    close: Callable[[list[Entry]], list[Entry]] = sources.close if sources is not None else list
    others = [e for e in prefix if e is not x]
    seed = _witness_seed(model, prefix)
    try:
        if seed is not None and fails(close([*seed, x])):
            others = [e for e in close(seed) if e is not x]
    except _OutOfBounds:
        pass
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


def _witness_seed(model: Model, entries: list[Entry]) -> list[Entry] | None:
    """The entries the fast path names when it proves ``entries`` not linearizable."""
    witness: list[int] = []
    t = type(model)
    if t is KV:
        res = check_appends(entries, model.initial(), witness)
    elif t in (Register, CasRegister):
        res = check_unique(entries, model.initial(), witness)
    else:
        return None
    if res is None or res[0] or not witness:
        return None
    return [entries[i] for i in sorted(set(witness))]


def check_history(ops: Sequence[Op], model: Model, *, timeout: float | None = None,
                  memory_limit_mb: int | None = None, minimize: bool = True,
                  all_keys: bool = True) -> LinearizabilityResult:
    """Check a whole history (nemesis ops included; they are ignored) against ``model``.

    ``timeout`` (seconds) is shared by all keys of the history; ``memory_limit_mb`` bounds the
    process's resident size. Either bound makes undecided keys "unknown" with the cause.
    ``minimize=False`` skips delta debugging of counterexamples. ``all_keys=False`` stops at
    the first invalid key (the history is invalid then): keys not decided yet are
    "unknown" saying so, and only that key is explained. Raises HistoryError when the
    history is malformed (a completion with no invocation, a value the model cannot read).
    """
    release_abandoned()  # free the previous timed-out search before this one's clock starts
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the search allocates millions of acyclic objects: no cyclic GC pauses
    try:
        return _check(ops, model, timeout, memory_limit_mb, minimize, all_keys)
    finally:
        if gc_was_enabled:
            gc.enable()


def release_abandoned() -> None:
    """Free the searches a timed-out check left behind (callers that time their own work,
    e.g. the next file's parse, call this first so that work is not charged for it)."""
    _GRAVEYARD.clear()


def _search_cause(run: _KeyRun, spent: float, why: str) -> str:
    search = run.bfs
    queued = f", {search.pending} queued at one return" if search.pending else ""
    ends = [e.end for e in run.entries]
    done = sum(1 for t in ends if t <= search.events_done)
    return (f"{why}; this key was searched for {spent:.2f} s: {done} of its {len(ends)} calls "
            f"linearized for sure, frontier {search.frontier_size} configurations (largest "
            f"{search.max_frontier}){queued}, {search.steps} states explored")


def _check(ops: Sequence[Op], model: Model, timeout: float | None, memory_limit_mb: int | None,
           minimize: bool, all_keys: bool) -> LinearizabilityResult:
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
    invalid: list[str] = []  # decided invalid, in the order found
    failed_at: dict[str, int | None] = {}  # invalid key -> its failing entry when known
    clock = time.monotonic
    # 1. every key's polynomial check (the zones, append chains): milliseconds per key
    for k, kcalls in by_key.items():
        t0 = clock()
        name = key_name(k)
        entries = build_entries(model, kcalls)
        entries_of[name] = entries
        res = keys[name] = KeyResult(valid="unknown", calls=len(entries))
        fast = fast_check(model, entries) if _fast_applies(model) else None
        if fast is not None:
            res.method = "zones"
            res.valid = fast[0]
            if not fast[0]:
                res.reason = fast[1]
                invalid.append(name)
                failed_at[name] = None
        else:
            running[name] = _KeyRun(model, entries)
        res.seconds = clock() - t0

    explaining = 0.0

    def explain(name: str) -> None:
        nonlocal explaining
        t0 = clock()
        res = keys[name]
        entries = entries_of[name]
        _explain_invalid(model, entries, failed_at[name], bounds, res, minimize)
        res.explain_seconds = clock() - t0
        explaining += res.explain_seconds

    # 2. counterexamples of the keys found invalid so far (only the first when stopping),
    # then the exact search on the other keys, interleaved, unless the history is invalid
    # already; each key found invalid there is explained at once
    stopped_at: str | None = None
    for name in invalid if all_keys else invalid[:1]:
        explain(name)
    if invalid and not all_keys:
        stopped_at = invalid[0]
    cause: str | None = None
    try:
        while running and stopped_at is None:
            for name in list(running):
                run = running[name]
                t0 = clock()
                outcome = run.advance()
                res = keys[name]
                res.seconds += clock() - t0
                if outcome is not None:
                    del running[name]
                    res.max_frontier = outcome.max_frontier
                    res.states_explored = outcome.steps
                    res.method = run.method
                    res.valid = outcome.valid
                    if not outcome.valid:
                        invalid.append(name)
                        failed_at[name] = outcome.failed if run.exact_failed else None
                        explain(name)
                        if not all_keys:
                            stopped_at = name
                            break
                bounds.check()
    except _OutOfBounds as exc:
        cause = exc.cause
        for name, run in running.items():
            keys[name].unknown_cause = _search_cause(run, keys[name].seconds, cause)
    for name, run in running.items():
        res = keys[name]
        res.max_frontier = run.bfs.max_frontier
        res.states_explored = run.bfs.steps
        if stopped_at is not None:
            res.unknown_cause = _search_cause(
                run, res.seconds, f"not finished: key {stopped_at} is invalid, so the history "
                "is (--all-keys decides every key)")
    if not all_keys:
        for name in invalid[1:]:
            keys[name].unknown_cause = (f"invalid, not explained: the check stopped at key "
                                        f"{invalid[0]} (--all-keys explains every key)")
    # Freeing a large frontier takes tens of milliseconds: keep the abandoned searches until
    # the next call (or exit) so a stopped or timed-out check returns promptly.
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
    now = clock()
    return LinearizabilityResult(
        valid=valid,
        model=model.name,
        check_seconds=now - bounds.t0,
        keys=keys,
        unknown_cause=cause if valid == "unknown" else None,
        verdict_seconds=now - bounds.t0 - explaining,
        explain_seconds=explaining,
        stopped_at=stopped_at,
    )


class LinearizableChecker(CheckerBase):
    """The linearizability checker behind the one checker interface (``checker.api``).

    ``options.model`` is a model name or a ``Model``; with ``options.extra["compare_failed"]``
    a ``fail`` cas with error "compare-failed" means the compare failed (the kvcheck
    recorders' convention) and any other failed cas is dropped as certainly not applied.
    A key-value history (any put, delete, txn or range op) checked with a register model, or
    with ``options.extra["kv_ops"]``, is checked as one register per key
    (``checker.kvops.register_view``).
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
        from kvcheck.checker.kvops import is_kv_history, register_view

        # put/delete/txn/range histories under a register model: one register per key
        if options.extra.get("kv_ops") or (model.name in ("register", "cas-register") and is_kv_history(ops)):
            ops = register_view(ops)
        if compare_failed:
            ops = compare_failed_ops(ops)
        result = check_history(ops, model, timeout=options.timeout,
                               memory_limit_mb=options.memory_limit_mb,
                               all_keys=options.all_keys)
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
