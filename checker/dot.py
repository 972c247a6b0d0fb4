"""The minimal failing sub-history as a graphviz graph.

Why: a failing sub-history of a dozen ops is easier to understand as a picture of what had to
come before what than as a table. The checker's delta debugging hands us such a sub-history
(a list of op dicts, invocations and completions in history order); this module turns it into
DOT text, and into SVG when graphviz's ``dot`` program is installed.

How: each call (an invocation and its process's next completion) is a node, coloured by
outcome like the report's timeline. Two kinds of edges:

- real-time order, solid: A -> B when A completed before B was invoked. Only the transitive
  reduction is drawn (no edge A -> B when some C has A -> C -> B), computed in O(n^2) with
  the interval-order shortcut: A -> C -> B exists iff some call invoked after A completed
  also completed before B was invoked.
- value dependencies, dashed: the write (or cas) that put value v -> each read (or cas)
  that observed v, matched within a key. A read of nil depends on the initial state.

The op the model cannot linearize gets a red double border and a "cannot be linearized"
line: the key result's ``minimal_op`` when the checker names the op that fails within the
minimal history, else its ``op`` when that is part of the minimal history; an ``op`` outside
the minimal history is drawn apart with a dashed border. Several failing keys become one
cluster each in the same graph.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import graphviz

# Fill colours, the same as the timeline's (report_assets/report.css).
OUTCOME_FILL = {"ok": "#9be29b", "fail": "#f4a8a8", "info": "#f7cf7a", "pending": "#d4d4d4"}
WRITE_FS = ("write", "put")
READ_FS = ("read", "get")
CAS_FS = ("cas",)
MAX_CALLS = 300  # past this the graph is unreadable and layout slow; we say so in the graph
DOT_HEADER = "// kvcheck: minimal failing sub-history"


@dataclass
class DotCall:
    """A call of the minimal history, as the graph draws it."""

    invoke: Mapping[str, Any]
    completion: Mapping[str, Any] | None
    start: int  # position in the minimal history
    end: float  # position of the completion; inf for info and pending calls
    ids: set[Any] = field(default_factory=set)

    @property
    def node_id(self) -> str:
        index = _op_index(self.invoke)
        return f"op{index}" if index is not None else f"at{self.start}"  # unique either way

    @property
    def outcome(self) -> str:
        return str(self.completion.get("type")) if self.completion is not None else "pending"

    @property
    def f(self) -> Any:
        return self.invoke.get("f")


def _op_index(op: Mapping[str, Any]) -> Any:
    return op.get("index")


def _canon(value: Any) -> str:
    """A hashable, order-stable form of a JSON value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr)


def _short(value: Any, limit: int = 40) -> str:
    """A value as label text: shortened, with backslashes doubled for DOT (the graphviz
    package escapes double quotes but keeps backslashes as DOT escape sequences)."""
    text = "nil" if value is None else (value if isinstance(value, str) else _canon(value))
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("\\", "\\\\").replace("\n", " ")


def pair_op_dicts(ops: Sequence[Mapping[str, Any]]) -> list[DotCall]:
    """Pair invocations with their process's next completion (nemesis ops are skipped).

    A completion with no open invocation becomes a call of its own (the minimal history
    may have been cut that way); nothing is dropped silently.
    """
    open_calls: dict[str, DotCall] = {}
    calls: list[DotCall] = []
    for pos, op in enumerate(ops):
        if not isinstance(op, Mapping):
            raise ValueError(f"minimal history entry {pos} is not an op object: {op!r}")
        proc = op.get("process")
        if proc == "nemesis":
            continue
        pkey = _canon(proc)
        kind = op.get("type")
        if kind == "invoke":
            call = DotCall(invoke=op, completion=None, start=pos, end=float("inf"))
            call.ids.add(_op_index(op))
            open_calls[pkey] = call
            calls.append(call)
        else:
            opened = open_calls.pop(pkey, None)
            if opened is None:
                lone = DotCall(invoke=op, completion=op, start=pos, end=pos if kind != "info" else float("inf"))
                lone.ids.add(_op_index(op))
                calls.append(lone)
                continue
            opened.completion = op
            opened.ids.add(_op_index(op))
            if kind != "info":
                opened.end = pos
    return calls


def _reads(call: DotCall) -> tuple[bool, Any]:
    """(observes a value?, the value) for reads and cas."""
    if call.outcome != "ok":
        return False, None
    if call.f in READ_FS:
        comp = call.completion or {}
        return True, comp.get("value")
    if call.f in CAS_FS:
        v = call.invoke.get("value")
        if isinstance(v, list | tuple) and len(v) == 2:
            return True, v[0]
    return False, None


def _writes(call: DotCall) -> tuple[bool, Any]:
    """(may have written a value?, the value): ok or info writes and cas; not fail."""
    if call.outcome == "fail":
        return False, None
    v = call.invoke.get("value")
    if call.f in WRITE_FS:
        return True, v
    if call.f in CAS_FS and isinstance(v, list | tuple) and len(v) == 2:
        return True, v[1]
    return False, None


def realtime_edges(calls: Sequence[DotCall]) -> list[tuple[DotCall, DotCall]]:
    """The transitive reduction of the real-time order over ``calls``."""
    n = len(calls)
    # min_end_after[a] = the earliest completion among calls invoked after a completed.
    min_end_after: list[float] = []
    for a in calls:
        m = float("inf")
        for c in calls:
            if c.start > a.end and c.end < m:
                m = c.end
        min_end_after.append(m)
    edges = []
    for i in range(n):
        a = calls[i]
        for b in calls:
            if a.end < b.start and not min_end_after[i] < b.start:
                edges.append((a, b))
    return edges


def value_edges(calls: Sequence[DotCall]) -> list[tuple[DotCall | None, DotCall, Any]]:
    """(writer or None for the initial state, reader, value) for each observed value."""
    writers: dict[tuple[str, str], list[DotCall]] = {}
    for c in calls:
        ok, v = _writes(c)
        if ok:
            writers.setdefault((_canon(c.invoke.get("key")), _canon(v)), []).append(c)
    edges: list[tuple[DotCall | None, DotCall, Any]] = []
    for r in calls:
        ok, v = _reads(r)
        if not ok:
            continue
        found = [w for w in writers.get((_canon(r.invoke.get("key")), _canon(v)), []) if w is not r]
        if found:
            edges.extend((w, r, v) for w in found)
        elif v is None:
            edges.append((None, r, v))
    return edges


def _node_label(call: DotCall, failing: bool) -> str:
    inv, comp = call.invoke, call.completion
    ids = f"#{_op_index(inv)}" if _op_index(inv) is not None else "#?"
    if comp is not None and comp is not inv and _op_index(comp) is not None:
        ids += f"→#{_op_index(comp)}"
    value = call.invoke.get("value")
    if comp is not None and comp.get("type") == "ok" and comp.get("value") is not None:
        value = comp.get("value")
    lines = [f"{ids} p{_short(inv.get('process'), 12)}", f"{_short(call.f, 20)} {_short(value)}", call.outcome]
    if failing:
        lines.append("cannot be linearized")
    return "\\n".join(lines)


@dataclass
class FailingKey:
    """One failing key's minimal history and the op the model rejects."""

    key: str
    minimal_history: Sequence[Mapping[str, Any]]
    failing_op: Mapping[str, Any] | None = None  # the op the search rejected
    minimal_op: Mapping[str, Any] | None = None  # the op that fails within the minimal history


def minimal_history_dot(failures: Sequence[FailingKey], *, title: str = "") -> str:
    """DOT text for the minimal failing sub-histories, one cluster per key when several."""
    g = graphviz.Digraph("minimal_failing_history")
    g.attr(rankdir="LR", fontname="Helvetica", labelloc="t",
           label=_short(title or "minimal failing sub-history", 200))
    g.attr("node", shape="box", style="filled,rounded", fontname="Helvetica", fontsize="10")
    g.attr("edge", fontname="Helvetica", fontsize="9")
    for n, failure in enumerate(failures):
        calls = pair_op_dicts(failure.minimal_history)
        clipped = len(calls) - MAX_CALLS
        calls = calls[:MAX_CALLS]
        failing_ids: set[Any] = set()
        if failure.minimal_op is not None:
            failing_ids.add(_op_index(failure.minimal_op))
        elif failure.failing_op is not None:
            failing_ids.add(_op_index(failure.failing_op))
        sub = graphviz.Digraph(name=f"cluster_{n}") if len(failures) > 1 else g
        if len(failures) > 1:
            sub.attr(label=f"key {_short(failure.key)}", style="dashed", color="#888888")
        prefix = f"k{n}_"
        for c in calls:
            failing = bool(c.ids & failing_ids)
            attrs = {"fillcolor": OUTCOME_FILL.get(c.outcome, "#ffffff")}
            if failing:
                attrs.update(color="#d00000", penwidth="3", peripheries="2", fontcolor="#900000")
            sub.node(prefix + c.node_id, _node_label(c, failing), **attrs)
        if failure.failing_op is not None and _op_index(failure.failing_op) not in {i for c in calls for i in c.ids}:
            # The op the search rejected in the full history is not part of this sub-history
            # (delta debugging found a different failing subset): show it apart, dashed.
            for lone in pair_op_dicts([failure.failing_op])[:1]:
                label = _node_label(lone, False) + "\\nrejected in the full history,\\nnot part of this sub-history"
                sub.node(prefix + "failing", label, color="#d00000", penwidth="2", style="filled,rounded,dashed",
                         fillcolor=OUTCOME_FILL.get(lone.outcome, "#ffffff"), fontcolor="#900000")
        for a, b in realtime_edges(calls):
            sub.edge(prefix + a.node_id, prefix + b.node_id, color="#555555")
        need_init = False
        for w, r, v in value_edges(calls):
            src = prefix + (w.node_id if w is not None else "init")
            need_init = need_init or w is None
            sub.edge(src, prefix + r.node_id, label=f"value {_short(v, 20)}", style="dashed",
                     color="#1f5fbf", fontcolor="#1f5fbf", constraint="false")
        if need_init:
            sub.node(prefix + "init", "initial state\\n(nil)", shape="ellipse", style="dashed", fillcolor="#ffffff")
        if clipped > 0:
            sub.node(prefix + "clipped", f"… {clipped} more calls not drawn", shape="plaintext", style="")
        if sub is not g:
            g.subgraph(sub)
    return f"{DOT_HEADER}\n{g.source}"


def dot_available() -> bool:
    return shutil.which("dot") is not None


def render_svg(dot_source: str, *, timeout: float = 60.0) -> tuple[str | None, str]:
    """(SVG text, "") from graphviz's ``dot``, or (None, why not) when ``dot`` is absent or
    fails; the report shows the reason beside the DOT source.

    The XML prologue and DOCTYPE are dropped so the SVG can be inlined in HTML.
    """
    exe = shutil.which("dot")
    if exe is None:
        return None, "graphviz's dot is not installed, so the graph is not drawn; the DOT source is below"
    try:
        proc = subprocess.run([exe, "-Tsvg"], input=dot_source.encode(), capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None, f"dot did not finish within {timeout:g} s"
    except OSError as exc:
        return None, f"dot could not run: {exc}"
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", errors="replace").strip()
        return None, f"dot exited with status {proc.returncode}: {err[:500]}"
    svg = proc.stdout.decode("utf-8", errors="replace")
    at = svg.find("<svg")
    if at < 0:
        return None, "dot produced no <svg> element"
    return svg[at:], ""
