"""The transactional checker (Elle-style): dependency cycles over multi-key transactions.

Why: a linearizability search over many keys at once does not scale, but transactions over
list-append keys (or registers with unique values) tell a checker almost everything without
any search. Following Elle (Kingsbury & Alvaro, VLDB 2020), the checker infers from what
clients read the order of versions of each key, derives the dependencies between
transactions (ww: wrote the next version; wr: read the version written; rw: read a version
that another overwrote), adds process and real-time order, and looks for cycles. A cycle is
an anomaly with a name (Adya's G0, G1c, G-single, G-nonadjacent, G2-item, with -process and
-realtime variants) and a plain-words explanation; non-cycle anomalies (aborted, intermediate
and garbage reads, dirty updates, duplicates, internal inconsistency, lost updates,
incompatible orders) are found on the way. The consistency models the anomalies rule out
give the verdict against the model asked for (strict-serializable by default).

How: history ops with ``f == "txn"`` carry a list of micro-ops ``[f, key, value]``:
``["r", k, None]`` / ``["append", k, v]`` (the completion has the list read) for the append
workload, ``["r", k, None]`` / ``["w", k, v]`` for the wr (read-write register) workload.
Appended and written values are unique per key. ``analyse_append``/``analyse_wr`` build the
graph (``kvcheck.checker.txngraph``) and the non-cycle anomalies; ``search_cycles`` finds
components and short cycles of each class, each component's search bounded (1 s by default,
``options.extra["cycle_search_seconds"]``); the whole check is bounded by ``options.timeout``
and ``options.memory_limit_mb`` (``unknown`` with the cause).
"""

from __future__ import annotations

import html
import json
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvcheck.checker.api import Anomaly, CheckerBase, CheckOptions, CheckResult, Verdict, op_links
from kvcheck.checker.bounds import Bounds
from kvcheck.checker.bounds import OutOfBounds as _OutOfBounds
from kvcheck.checker.history import INFINITY, HistoryError, Op, pair_calls
from kvcheck.checker.txngraph import (
    DATA,
    PROCESS,
    REALTIME,
    RW,
    WR,
    WW,
    Budget,
    Graph,
    OutOfTime,
    Step,
    any_cycle,
    find_cycle,
    tarjan,
)

TXN_F = "txn"
READ, APPEND, WRITE = "r", "append", "w"
MAX_PER_KIND = 20  # anomalies of one kind listed (all are counted)
DEFAULT_CYCLE_SECONDS = 1.0

# ---------------------------------------------------------------------------------------
# Consistency models (Elle's lattice, the part that item histories can tell apart)

CYCLE_CLASSES = ("G0", "G1c", "G-single", "G-nonadjacent", "G2-item")
VARIANTS = ("", "-process", "-realtime")
ALWAYS = ("garbage-read", "duplicate-elements", "incompatible-order", "internal")

# model -> (weaker models it implies, anomalies it rules out itself)
MODELS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "read-uncommitted": ((), ("G0", "dirty-update", *ALWAYS)),
    "read-committed": (("read-uncommitted",), ("G1a", "G1b", "G1c")),
    "cursor-stability": (("read-committed",), ("lost-update",)),
    "repeatable-read": (("cursor-stability",), ("G-single", "G-nonadjacent", "G2-item")),
    "snapshot-isolation": (("cursor-stability",), ("G-single", "G-nonadjacent")),
    "serializable": (("repeatable-read", "snapshot-isolation"), ()),
    "strong-session-serializable": (("serializable",), tuple(c + "-process" for c in CYCLE_CLASSES)),
    "strict-serializable": (("strong-session-serializable",), tuple(c + "-realtime" for c in CYCLE_CLASSES)),
}
CONSISTENCY_MODELS = tuple(MODELS)
DEFAULT_MODEL = "strict-serializable"


def _weaker(model: str) -> set[str]:
    out: set[str] = set()
    todo = list(MODELS[model][0])
    while todo:
        m = todo.pop()
        if m not in out:
            out.add(m)
            todo.extend(MODELS[m][0])
    return out


def prohibited(model: str) -> set[str]:
    """Every anomaly kind ``model`` rules out (its own and those of the models it implies)."""
    out = set(MODELS[model][1])
    for m in _weaker(model):
        out.update(MODELS[m][1])
    return out


def lattice(kinds: set[str]) -> tuple[list[str], list[str]]:
    """(strongest models satisfied, weakest models violated) by a set of anomaly kinds."""
    violated = {m for m in MODELS if prohibited(m) & kinds}
    satisfied = set(MODELS) - violated
    strongest = [m for m in MODELS if m in satisfied and not any(m in _weaker(o) for o in satisfied)]
    weakest = [m for m in MODELS if m in violated and not (_weaker(m) & violated)]
    return strongest, weakest


# ---------------------------------------------------------------------------------------
# Transactions from the history


@dataclass(slots=True)
class Txn:
    """One transaction call. ``node`` is its graph node (-1 for failed ones)."""

    node: int
    id: int  # the op shown for it: its completion, or its invocation when it never completed
    process: Any
    outcome: str  # ok, info, fail (pending calls are info)
    mops: list[list[Any]]
    start: float
    end: float
    invoke_id: int
    op: Op | None = None  # the op the micro-ops come from (for error messages)

    @property
    def name(self) -> str:
        return f"T{self.id}"


def _check_mop(m: Any, op: Op, completed: bool) -> list[Any]:
    if not isinstance(m, list | tuple) or len(m) != 3:
        raise HistoryError(f"op {op.id}: micro-op {json.dumps(m, default=str)} is not [f, key, value]", op)
    f, k, v = m
    if f not in (READ, APPEND, WRITE):
        raise HistoryError(f"op {op.id}: micro-op f {f!r} is not r, append or w", op)
    if not isinstance(k, str | int) or isinstance(k, bool):
        raise HistoryError(f"op {op.id}: micro-op key {json.dumps(k, default=str)} is not a string or integer", op)
    if f != READ and (isinstance(v, list | dict) or v is None):
        raise HistoryError(f"op {op.id}: {f} of {json.dumps(v, default=str)} to key {k}: a written value must be a scalar", op)
    if f == READ and v is not None and not completed:
        v = None  # an invocation's read value means nothing
    return [f, k, v]


_FS = frozenset((READ, APPEND, WRITE))


def _mops(value: list[Any], op: Op, completed: bool) -> list[list[Any]]:
    """The micro-ops of a txn op, checked (fast path for well-formed ones)."""
    out = []
    for m in value:
        if (type(m) is list and len(m) == 3 and m[0] in _FS and type(m[1]) in (str, int)
                and ((m[0] == READ and (completed or m[2] is None)) or (m[0] != READ and type(m[2]) in (int, str)))):
            out.append(m)
        else:
            out.append(_check_mop(m, op, completed))
    return out


def txns_of(ops: Sequence[Op]) -> list[Txn]:
    """The transaction calls of a history (ops with f "txn"), in invocation order."""
    out: list[Txn] = []
    for call in pair_calls(ops):
        if call.f != TXN_F:
            continue
        inv = call.invoke
        c = call.completion
        outcome = call.outcome if call.outcome != "pending" else "info"
        src = c if c is not None and c.type == "ok" else inv
        value = src.value
        if not isinstance(value, list):
            raise HistoryError(f"op {src.id}: a txn's value must be a list of micro-ops, found {json.dumps(value, default=str)[:60]}", src)
        mops = _mops(value, src, src is not inv)
        if src is not inv:
            iv = inv.value
            if (not isinstance(iv, list) or len(iv) != len(mops)
                    or [m[:2] for m in iv if isinstance(m, list | tuple)] != [m[:2] for m in mops]):
                raise HistoryError(f"op {src.id}: the completion's micro-ops differ from its invocation's (op {inv.id})", src)
        out.append(Txn(-1, (c.id if c is not None else inv.id), inv.process, outcome, mops,
                       call.start, call.end, inv.id, src))
    return out


# ---------------------------------------------------------------------------------------
# Analysis


@dataclass
class Found:
    """Anomalies of one kind: the count and the first few."""

    count: int = 0
    items: list[Anomaly] = field(default_factory=list)


class Analysis:
    """The graph, the anomalies found and what explanations need."""

    def __init__(self, txns: list[Txn], kind: str, bounds: _Bounds) -> None:
        self.txns = txns
        self.kind = kind  # "append" or "wr"
        self.bounds = bounds
        self.nodes: list[Txn] = [t for t in txns if t.outcome != "fail"]
        for i, t in enumerate(self.nodes):
            t.node = i
        self.graph = Graph(len(self.nodes))
        self.found: dict[str, Found] = {}
        # explanations
        self.ext_reads: list[dict[Any, Any]] = [{} for _ in self.nodes]
        self.order: dict[Any, list[Any]] = {}   # append: key -> version order
        self.pos: dict[Any, dict[Any, int]] = {}
        self.wl: dict[Any, list[int]] = {}      # append: key -> writer node per position
        self.writer: dict[tuple[Any, Any], int] = {}
        self.overwrites: dict[int, list[tuple[Any, Any, Any]]] = defaultdict(list)  # wr: node -> (k, read, written)

    def add(self, kind: str, explanation: str, txns: Sequence[Txn], detail: dict[str, Any] | None = None) -> None:
        f = self.found.setdefault(kind, Found())
        f.count += 1
        if len(f.items) < MAX_PER_KIND:
            f.items.append(Anomaly(kind, explanation, [t.id for t in txns], detail or {}))

    # ---- order edges

    def add_order_edges(self) -> None:
        """Process order (consecutive txns of one process) and real time through a chain of
        time points."""
        g = self.graph
        last_of: dict[Any, Txn] = {}
        events: list[tuple[float, int, Txn]] = []
        for t in self.nodes:
            prev = last_of.get(t.process)
            if prev is not None:
                g.add(prev.node, t.node, PROCESS)
            last_of[t.process] = t
            events.append((t.start, 1, t))
            if t.end != INFINITY:
                events.append((t.end, 0, t))
        events.sort(key=lambda e: (e[0], e[1]))
        point = -1
        fresh = False  # whether the current point has been followed by an invocation
        for _, is_invoke, t in events:
            if is_invoke:
                if point >= 0:
                    g.add(point, t.node, REALTIME)
                    fresh = False
            else:
                if point < 0 or not fresh:
                    p = g.add_node()
                    if point >= 0:
                        g.add(point, p, REALTIME)
                    point = p
                    fresh = True
                g.add(t.node, point, REALTIME)


def _show(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, list):
        if len(v) > 8:
            return "[" + " ".join(_show(x) for x in v[:3]) + " … " + " ".join(_show(x) for x in v[-3:]) + "]"
        return "[" + " ".join(_show(x) for x in v) + "]"
    return str(v)


def analyse_append(a: Analysis) -> None:
    """List-append: version orders from the longest read, non-cycle anomalies, ww/wr/rw."""
    g = a.graph
    bounds = a.bounds
    failed_writer: dict[tuple[Any, Any], Txn] = {}
    last_append: list[dict[Any, Any]] = [{} for _ in a.nodes]
    for t in a.txns:
        for f, k, v in t.mops:
            if f == APPEND:
                if t.outcome == "fail":
                    failed_writer[(k, v)] = t
                    continue
                other = a.writer.get((k, v))
                if other is not None:
                    raise HistoryError(f"{_show(v)} is appended to key {k} twice (ops {a.nodes[other].id} and {t.id}): "
                                       "appended values must be unique per key", t.op)
                a.writer[(k, v)] = t.node
                last_append[t.node][k] = v
    reads: dict[Any, list[tuple[Txn, list[Any]]]] = defaultdict(list)
    lost: dict[tuple[Any, Any], list[Txn]] = defaultdict(list)
    for t in a.nodes:
        if t.outcome != "ok":
            continue
        bounds.tick()
        state: dict[Any, tuple[list[Any] | None, list[Any]]] = {}  # key -> (known list, own appends since)
        ext = a.ext_reads[t.node]
        appended: set[Any] = set()
        for f, k, v in t.mops:
            if f == APPEND:
                known, mine = state.get(k, (None, []))
                state[k] = (known, [*mine, v])
                appended.add(k)
                continue
            if v is None:
                v = []
            if not isinstance(v, list):
                raise HistoryError(f"op {t.id}: read of key {k} returned {json.dumps(v, default=str)}, not a list", t.op)
            reads[k].append((t, v))
            known, mine = state.get(k, (None, []))
            if k not in state:
                ext[k] = v
            elif known is not None:
                if v != known + mine:
                    a.add("internal", f"{t.name} read key {k} as {_show(v)}, but its own earlier read and appends make it {_show(known + mine)}", [t],
                          {"key": k, "read": v, "expected": known + mine})
            elif mine and v[-len(mine):] != mine:
                a.add("internal", f"{t.name} read key {k} as {_show(v)}, which does not end with its own appends {_show(mine)}", [t],
                      {"key": k, "read": v, "expected_suffix": mine})
            state[k] = (v, [])
        for k in appended:
            if k in ext:
                r = ext[k]
                lost[(k, r[-1] if r else None)].append(t)
    for (k, last), group in lost.items():
        if len(group) > 1:
            names = ", ".join(t.name for t in group[:6])
            a.add("lost-update", f"{names} all read key {k} at {_show(last) if last is not None else 'its empty list'} and all appended to it: "
                  "each one's append is lost to the others' reads", group, {"key": k, "read_last": last})
    for k, rs in reads.items():
        bounds.tick()
        longest_t, longest = max(rs, key=lambda tr: len(tr[1]))
        compatible = True
        for t, r in rs:
            if len(r) and r != longest[: len(r)]:
                compatible = False
                a.add("incompatible-order", f"{t.name} read key {k} as {_show(r)}, but {longest_t.name} read it as {_show(longest)}: "
                      "no single order of appends gives both", [t, longest_t], {"key": k, "reads": [r, longest]})
                if len(set(r)) != len(r):
                    _duplicates(a, t, k, r)
        if len(set(longest)) != len(longest):
            _duplicates(a, longest_t, k, longest)
        if not compatible:
            continue  # no version order for this key
        seen: set[Any] = set()
        order = [x for x in longest if not (x in seen or seen.add(x))]  # type: ignore[func-returns-value]
        pos = {x: i for i, x in enumerate(order)}
        wl = [a.writer.get((k, x), -1) for x in order]
        a.order[k], a.pos[k], a.wl[k] = order, pos, wl
        # reads of values nobody (committed) appended
        for i, x in enumerate(order):
            if wl[i] >= 0:
                continue
            reader = next(t for t, r in rs if len(r) > i)
            fw = failed_writer.get((k, x))
            if fw is not None:
                a.add("G1a", f"{reader.name} read {fw.name}'s append of {_show(x)} to key {k}, but {fw.name} failed (aborted)",
                      [reader, fw], {"key": k, "value": x})
                later = [wl[j] for j in range(i + 1, len(order)) if wl[j] >= 0]
                if later:
                    w2 = a.nodes[later[0]]
                    a.add("dirty-update", f"{w2.name} appended to key {k} after {fw.name}'s aborted append of {_show(x)} in the version order {_show(order)}",
                          [fw, w2], {"key": k, "value": x})
            else:
                a.add("garbage-read", f"{reader.name} read {_show(x)} in key {k}, a value no transaction appended", [reader], {"key": k, "value": x})
        # ww between consecutive versions
        for i in range(len(order) - 1):
            u, w = wl[i], wl[i + 1]
            if u >= 0 and w >= 0:
                g.add(u, w, WW)
        # wr and rw from external reads; G1b from any read ending in an intermediate append
        n = len(order)
        for t, r in rs:
            if r:
                last = r[-1]
                w = wl[pos[last]] if last in pos else -1
                if w >= 0 and w != t.node:
                    if k in a.ext_reads[t.node] and a.ext_reads[t.node][k] is r:
                        g.add(w, t.node, WR)
                    if last_append[w].get(k) != last:
                        wt = a.nodes[w]
                        a.add("G1b", f"{t.name} read key {k} as {_show(r)}, ending in {wt.name}'s append of {_show(last)}, "
                              f"but {wt.name} went on to append {_show(last_append[w][k])}: an intermediate state", [t, wt],
                              {"key": k, "value": last})
            if k in a.ext_reads[t.node] and a.ext_reads[t.node][k] is r and len(r) < n:
                w = wl[len(r)]
                if w >= 0:
                    g.add(t.node, w, RW)


def _duplicates(a: Analysis, t: Txn, k: Any, r: list[Any]) -> None:
    counts: dict[Any, int] = defaultdict(int)
    for x in r:
        counts[x] += 1
    dups = {x: c for x, c in counts.items() if c > 1}
    a.add("duplicate-elements", f"{t.name} read key {k} as {_show(r)}, holding " + ", ".join(f"{_show(x)} {c} times" for x, c in list(dups.items())[:5]),
          [t], {"key": k, "duplicates": {str(x): c for x, c in dups.items()}})


def analyse_wr(a: Analysis) -> None:
    """Read-write registers with unique values (Elle's rw-register inference): wr edges
    from values read; a version order only where a txn read a key and then wrote it
    (the value it read precedes the one it wrote; nil precedes every write)."""
    g = a.graph
    failed_writer: dict[tuple[Any, Any], Txn] = {}
    last_write: list[dict[Any, Any]] = [{} for _ in a.nodes]
    writers_of: dict[Any, list[int]] = defaultdict(list)
    for t in a.txns:
        for f, k, v in t.mops:
            if f == WRITE:
                if t.outcome == "fail":
                    failed_writer[(k, v)] = t
                    continue
                other = a.writer.get((k, v))
                if other is not None and other != t.node:
                    raise HistoryError(f"{_show(v)} is written to key {k} twice (ops {a.nodes[other].id} and {t.id}): "
                                       "written values must be unique per key", t.op)
                if other is None:
                    writers_of[k].append(t.node)
                a.writer[(k, v)] = t.node
                last_write[t.node][k] = v
    readers: dict[tuple[Any, Any], list[int]] = defaultdict(list)  # (k, version) -> external readers
    successors: dict[tuple[Any, Any], list[int]] = defaultdict(list)  # (k, version) -> txns that overwrote it
    for t in a.nodes:
        if t.outcome != "ok":
            continue
        a.bounds.tick()
        expect: dict[Any, Any] = {}  # key -> the value this txn must read next
        wrote: set[Any] = set()
        ext = a.ext_reads[t.node]
        for f, k, v in t.mops:
            if f == WRITE:
                if k in ext and k not in wrote:
                    successors[(k, ext[k])].append(t.node)
                    a.overwrites[t.node].append((k, ext[k], v))
                wrote.add(k)
                expect[k] = v
                continue
            if k in expect:
                if v != expect[k]:
                    a.add("internal", f"{t.name} read key {k} = {_show(v)}, but it had just read or written {_show(expect[k])}", [t],
                          {"key": k, "read": v, "expected": expect[k]})
                continue
            expect[k] = v
            ext[k] = v
            readers[(k, v)].append(t.node)
            if v is None:
                continue
            w = a.writer.get((k, v), -1)
            if w < 0:
                fw = failed_writer.get((k, v))
                if fw is not None:
                    a.add("G1a", f"{t.name} read key {k} = {_show(v)}, written by {fw.name} which failed (aborted)", [t, fw], {"key": k, "value": v})
                else:
                    a.add("garbage-read", f"{t.name} read key {k} = {_show(v)}, a value no transaction wrote", [t], {"key": k, "value": v})
                continue
            if w == t.node:
                continue
            g.add(w, t.node, WR)
            if last_write[w].get(k) != v:
                wt = a.nodes[w]
                a.add("G1b", f"{t.name} read key {k} = {_show(v)}, {wt.name}'s intermediate write (it went on to write {_show(last_write[w][k])})",
                      [t, wt], {"key": k, "value": v})
    for (k, v), succ in successors.items():
        a.bounds.tick()
        if len(succ) > 1:
            group = [a.nodes[i] for i in succ]
            a.add("lost-update", f"{', '.join(t.name for t in group[:6])} all read key {k} = {_show(v)} and all wrote it: each one's write is lost to the others' reads",
                  group, {"key": k, "read": v})
        if v is not None:
            w = a.writer.get((k, v), -1)
            if w >= 0:
                for s in succ:
                    g.add(w, s, WW)
        for r in readers.get((k, v), ()):
            for s in succ:
                g.add(r, s, RW)
    # nil precedes every write of the key
    for (k, v), rs in readers.items():
        if v is None:
            for r in rs:
                a.bounds.tick()
                for s in writers_of.get(k, ()):
                    g.add(r, s, RW)


# ---------------------------------------------------------------------------------------
# Bounds


class _Bounds(Bounds):
    """The checker's bounds, read every 1024 steps of its loops (``tick``)."""

    def __init__(self, timeout: float | None, memory_limit_mb: int | None) -> None:
        super().__init__(timeout, memory_limit_mb, memory_every=1)
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if not self.steps & 1023:
            self.check()


# ---------------------------------------------------------------------------------------
# Cycles


# (class, special edge kinds, allowed path kinds before order edges, nonadjacent, >= 2 rw)
_SEARCHES: tuple[tuple[str, int, int, bool, bool], ...] = (
    ("G0", WW, WW, False, False),
    ("G1c", WR, WW | WR, False, False),
    ("G-single", RW, WW | WR, False, False),
    ("G-nonadjacent", RW, DATA, True, True),
    ("G2-item", RW, DATA, False, True),
)
_LEVELS = (("", 0), ("-process", PROCESS), ("-realtime", PROCESS | REALTIME))


def classify(steps: list[Step]) -> str:
    """The anomaly a cycle shows, from its edge kinds (order edges give the suffix)."""
    kinds = [s.kind for s in steps]
    suffix = "-realtime" if REALTIME in kinds else "-process" if PROCESS in kinds else ""
    data = [k for k in kinds if k & DATA]
    rw = [i for i, k in enumerate(kinds) if k == RW]
    if not rw:
        base = "G0" if all(k == WW for k in data) else "G1c"
    elif len(rw) == 1:
        base = "G-single"
    else:
        n = len(kinds)
        adjacent = any(kinds[(i + 1) % n] == RW for i in rw)
        base = "G2-item" if adjacent else "G-nonadjacent"
    return base + suffix


@dataclass
class CycleSearch:
    cycles: list[tuple[str, list[Step]]] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)  # causes
    components: int = 0
    largest: int = 0


def search_cycles(a: Analysis, seconds: float | None, bounds: _Bounds) -> CycleSearch:
    out = CycleSearch()
    comps = tarjan(a.graph, None)
    n_txn = len(a.nodes)
    comps = [c for c in comps if any(x < n_txn for x in c)]
    out.components = len(comps)
    for comp in comps:
        txn_count = sum(1 for x in comp if x < n_txn)
        out.largest = max(out.largest, txn_count)
        if time.monotonic() > bounds.deadline:
            raise _OutOfBounds(f"timeout: the {bounds.timeout:g} s limit ran out (cycle search)")
        members = set(comp)
        starts = sorted(x for x in comp if x < n_txn)
        budget = Budget(seconds, bounds.deadline)
        found_here: dict[str, list[Step]] = {}
        try:
            for _cls, special, allowed, nonadj, more_rw in _SEARCHES:
                for _suffix, extra in _LEVELS:
                    steps = find_cycle(a.graph, members, special, allowed | extra, budget,
                                       nonadjacent_rw=nonadj, more_rw=more_rw, start_nodes=starts)
                    if steps is not None:
                        name = classify(steps)
                        if name not in found_here:
                            found_here[name] = steps
                        break
                # a search that found nothing at any level proves that class absent here
        except OutOfTime:
            out.stopped.append(f"cycle search in a component of {txn_count} transactions stopped after "
                               f"{seconds:g} s (set cycle_search_seconds); its cycles may be of worse kinds than those named")
        if not found_here:
            steps2 = any_cycle(a.graph, members, starts[0])
            if steps2 is not None:
                found_here[classify(steps2)] = steps2
        for name, steps in found_here.items():
            out.cycles.append((name, steps))
    return out


def compress(a: Analysis, steps: list[Step]) -> list[Step]:
    """The cycle over transactions only: runs through time points become one rt step,
    rotated to start at its smallest transaction."""
    n = len(a.nodes)
    # rotate so the cycle starts at a transaction
    i0 = next(i for i, s in enumerate(steps) if s.src < n)
    steps = steps[i0:] + steps[:i0]
    out: list[Step] = []
    src = -1
    for s in steps:
        if s.src < n and s.dst < n:
            out.append(s)
        elif s.src < n:
            src = s.src
        elif s.dst < n:
            out.append(Step(src, s.dst, REALTIME))
    j = min(range(len(out)), key=lambda i: out[i].src)
    return out[j:] + out[:j]


def explain_step(a: Analysis, s: Step) -> tuple[str, dict[str, Any]]:
    """Why ``s.src`` precedes ``s.dst``: words and the key/value behind it."""
    t, u = a.nodes[s.src], a.nodes[s.dst]
    if s.kind == PROCESS:
        return f"process {t.process} ran {t.name} before {u.name}", {}
    if s.kind == REALTIME:
        return f"{t.name} completed before {u.name} was invoked (op {u.invoke_id})", {}
    if a.kind == "append":
        if s.kind == WW:
            for f, k, v in t.mops:
                if f == APPEND and k in a.pos and v in a.pos[k]:
                    i = a.pos[k][v]
                    if i + 1 < len(a.order[k]) and a.wl[k][i + 1] == u.node:
                        return (f"{u.name} appended {_show(a.order[k][i + 1])} to key {k} right after {t.name}'s append of {_show(v)}",
                                {"key": k, "value": v, "next": a.order[k][i + 1]})
        if s.kind == WR:
            for k, r in a.ext_reads[u.node].items():
                if r and k in a.pos and r[-1] in a.pos[k] and a.wl[k][a.pos[k][r[-1]]] == t.node:
                    return f"{u.name} read {t.name}'s append of {_show(r[-1])} to key {k}", {"key": k, "value": r[-1]}
        if s.kind == RW:
            for k, r in a.ext_reads[t.node].items():
                if k in a.order and len(r) < len(a.order[k]) and a.wl[k][len(r)] == u.node:
                    v = a.order[k][len(r)]
                    return (f"{t.name} read key {k} as {_show(r)}, without {u.name}'s append of {_show(v)} that came next",
                            {"key": k, "value": v})
    else:
        if s.kind == WW:
            for k, old, new in a.overwrites.get(u.node, ()):
                if old is not None and a.writer.get((k, old)) == t.node:
                    return f"{u.name} read {t.name}'s write of {_show(old)} to key {k} and overwrote it with {_show(new)}", {"key": k, "value": old}
        if s.kind == WR:
            for k, v in a.ext_reads[u.node].items():
                if v is not None and a.writer.get((k, v)) == t.node:
                    return f"{u.name} read {t.name}'s write of {_show(v)} to key {k}", {"key": k, "value": v}
        if s.kind == RW:
            for k, v in a.ext_reads[t.node].items():
                for k2, old, new in a.overwrites.get(u.node, ()):
                    if k2 == k and old == v:
                        return f"{t.name} read key {k} = {_show(v)}, which {u.name} overwrote with {_show(new)}", {"key": k, "value": new}
                if v is None:
                    for f, k2, w in u.mops:
                        if f == WRITE and k2 == k:
                            return f"{t.name} read key {k} before any write (nil), and {u.name} wrote {_show(w)} to it", {"key": k, "value": w}
    return f"{t.name} precedes {u.name}", {}


def cycle_anomaly(a: Analysis, name: str, raw: list[Step]) -> Anomaly:
    steps = compress(a, raw)
    parts = []
    edges = []
    for i, s in enumerate(steps):
        why, info = explain_step(a, s)
        t, u = a.nodes[s.src], a.nodes[s.dst]
        lead = "but " if i == len(steps) - 1 and len(steps) > 1 else ""
        parts.append(f"{lead}{t.name} < {u.name} because {why}")
        edges.append({"from": t.id, "to": u.id, "type": _kind_name(s.kind), "why": why, **info})
    text = "; ".join(parts) + ": a contradiction"
    txns = [a.nodes[s.src] for s in steps]
    detail = {"cycle": edges, "dot": cycle_dot(name, txns, edges),
              "txns": {str(t.id): {"process": t.process, "type": t.outcome, "value": t.mops} for t in txns}}
    return Anomaly(name, text, [t.id for t in txns], detail)


def _kind_name(kind: int) -> str:
    return {WW: "ww", WR: "wr", RW: "rw", PROCESS: "process", REALTIME: "rt"}[kind]


_EDGE_STYLE = {"ww": "color=\"#1f77b4\"", "wr": "color=\"#2ca02c\"", "rw": "color=\"#d62728\" style=dashed",
               "process": "color=\"#7f7f7f\"", "rt": "color=\"#9467bd\" style=dotted"}


def _dot_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def cycle_dot(name: str, txns: Sequence[Txn], edges: Sequence[Mapping[str, Any]]) -> str:
    """The cycle as DOT: one node per transaction (its micro-ops), edges labelled."""
    lines = [f"digraph {_dot_str(name)} {{", "  rankdir=LR;", "  node [shape=box fontname=\"monospace\" fontsize=10];",
             f"  label={_dot_str(name)}; labelloc=t;"]
    for t in txns:
        mops = [" ".join(_show(x) if i else str(x) for i, x in enumerate(m)) for m in t.mops[:6]]
        if len(t.mops) > 6:
            mops.append(f"… {len(t.mops) - 6} more")
        label = f"{t.name} (p{t.process}, {t.outcome})\n" + "\n".join(mops)
        lines.append(f"  {_dot_str(t.name)} [label={_dot_str(label)}];")
    for e in edges:
        lab = e["type"] + (f" {e['key']}" if "key" in e else "")
        lines.append(f"  {_dot_str('T' + str(e['from']))} -> {_dot_str('T' + str(e['to']))} "
                     f"[label={_dot_str(lab)} {_EDGE_STYLE[e['type']]}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------
# The checker


def infer_kind(txns: Sequence[Txn]) -> str:
    """"append" or "wr" from the micro-ops (reads alone: the shape of the values read)."""
    has_append = has_write = scalar_read = False
    for t in txns:
        for f, _k, v in t.mops:
            if f == APPEND:
                has_append = True
            elif f == WRITE:
                has_write = True
            elif v is not None and not isinstance(v, list):
                scalar_read = True
    if has_append and has_write:
        raise HistoryError("the history mixes append and w micro-ops: check list-append and read-write register histories apart")
    if has_write or (scalar_read and not has_append):
        return "wr"
    return "append"


def check_txns(ops: Sequence[Op], options: CheckOptions) -> CheckResult:
    t0 = time.monotonic()
    model = options.consistency_model or DEFAULT_MODEL
    if model not in MODELS:
        raise ValueError(f"unknown consistency model {model!r}; known: {', '.join(MODELS)}")
    seconds = options.extra.get("cycle_search_seconds", DEFAULT_CYCLE_SECONDS)
    bounds = _Bounds(options.timeout, options.memory_limit_mb)
    txns = txns_of(ops)
    kind = options.extra.get("txn_kind") or infer_kind(txns)
    a = Analysis(txns, kind, bounds)
    detail: dict[str, Any] = {"consistency_model": model, "workload": kind, "txns": len(txns),
                              "ok": sum(t.outcome == "ok" for t in txns),
                              "info": sum(t.outcome == "info" for t in txns),
                              "fail": sum(t.outcome == "fail" for t in txns)}
    causes: list[str] = []
    try:
        (analyse_append if kind == "append" else analyse_wr)(a)
        a.add_order_edges()
        detail["edges"] = a.graph.edge_count()
        cs = search_cycles(a, seconds, bounds)
        detail["components"] = cs.components
        detail["largest_component"] = cs.largest
        causes.extend(cs.stopped)
        for name, steps in cs.cycles:
            anomaly = cycle_anomaly(a, name, steps)
            f = a.found.setdefault(name, Found())
            f.count += 1
            if len(f.items) < MAX_PER_KIND:
                f.items.append(anomaly)
    except _OutOfBounds as exc:
        causes.insert(0, str(exc))
        bounded = True
    else:
        bounded = False
    kinds = {k for k, f in a.found.items() if f.count}
    strongest, weakest = lattice(kinds)
    bad = prohibited(model)
    anomalies = [an for k, f in sorted(a.found.items(), key=lambda kv: _severity(kv[0])) if k in bad for an in f.items]
    allowed = sorted(kinds - bad)
    valid: Verdict
    if anomalies:
        valid = False
    elif bounded or causes:
        valid = "unknown"
    else:
        valid = True
    detail.update({
        "anomaly_counts": {k: f.count for k, f in sorted(a.found.items(), key=lambda kv: _severity(kv[0]))},
        "strongest_satisfied": [] if causes else strongest,  # undecided when a search stopped
        "weakest_violated": weakest,
        "not_prohibited": allowed,
        "ruled_out_by": {m: sorted(prohibited(m) & kinds, key=_severity) for m in weakest},
    })
    if allowed:
        detail["allowed_anomalies"] = [an.to_json() for k in allowed for an in a.found[k].items[:3]]
    cause = "; ".join(causes) if valid == "unknown" else None
    if causes:
        detail["search_causes"] = causes
    return CheckResult("txn", valid, anomalies, time.monotonic() - t0, cause, detail)


_ORDER = [*(c + v for v in VARIANTS for c in CYCLE_CLASSES)]


def _severity(kind: str) -> tuple[int, str]:
    head = ["duplicate-elements", "garbage-read", "incompatible-order", "internal", "G1a", "G1b", "dirty-update", "lost-update"]
    if kind in head:
        return (head.index(kind), kind)
    if kind in _ORDER:
        return (len(head) + _ORDER.index(kind), kind)
    return (100, kind)


class TxnChecker(CheckerBase):
    """Elle-style transactional checker behind the one checker interface."""

    name = "txn"
    description = "transactional consistency (Elle-style dependency cycles over list-append or rw-register txns)"

    def reads(self, op: Op) -> bool:
        return op.f == TXN_F and not op.is_nemesis

    def check(self, ops: Sequence[Op], options: CheckOptions) -> CheckResult:
        return check_txns(ops, options)

    def summary_lines(self, result: Mapping[str, Any], op_text: Callable[[Any], str]) -> list[str]:
        lines = []
        model = result.get("consistency_model")
        strongest = ", ".join(result.get("strongest_satisfied") or []) or "none decided"
        weakest = ", ".join(result.get("weakest_violated") or []) or "none"
        lines.append(f"    model {model}: strongest satisfied {strongest}; weakest violated {weakest}")
        counts = result.get("anomaly_counts") or {}
        if counts:
            lines.append("    anomalies: " + ", ".join(f"{k} ×{n}" for k, n in counts.items()))
        lines.extend(super().summary_lines(result, op_text))
        return lines

    def html_section(self, result: Mapping[str, Any], ops: Sequence[Op]) -> str:
        from kvcheck.checker.dot import render_svg

        parts = []
        model = html.escape(str(result.get("consistency_model")))
        strongest = html.escape(", ".join(result.get("strongest_satisfied") or []) or "none decided")
        weakest = html.escape(", ".join(result.get("weakest_violated") or []) or "none")
        parts.append(f"<p>Checked against <b>{model}</b>: strongest model satisfied: {strongest}; "
                     f"weakest violated: {weakest}.</p>")
        counts = result.get("anomaly_counts") or {}
        if counts:
            parts.append("<p>Anomalies: " + ", ".join(f"<code>{html.escape(k)}</code> ×{n}" for k, n in counts.items()) + "</p>")
        drawn = 0
        for an in result.get("anomalies") or []:
            parts.append(f"<div class=\"txn-anomaly\"><p><code>{html.escape(str(an.get('kind')))}</code> "
                         f"{html.escape(str(an.get('explanation')))} (ops {op_links(an.get('ops') or [])})</p>")
            dot_src = (an.get("detail") or {}).get("dot")
            if dot_src:
                svg, why = render_svg(dot_src, timeout=20) if drawn < 20 else (None, "only the first 20 cycles are drawn")
                drawn += 1
                if svg is not None:
                    parts.append(f"<div class=\"txn-cycle\">{svg}</div>")
                else:
                    parts.append(f"<p>{html.escape(why)}</p>")
                parts.append(f"<details><summary>DOT</summary><pre>{html.escape(dot_src)}</pre></details>")
            parts.append("</div>")
        return "\n".join(parts)
