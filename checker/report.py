"""report.html: one self-contained page that explains a checked history.

Why: a verdict alone says nothing about *what* went wrong. The report shows the whole history
as a timeline (one row per client process, ops as boxes coloured by outcome, fault intervals
as bands), a summary of the verdicts, and, when the history is not linearizable, the op the
model rejects, the final paths (longest linearizable prefixes) and the minimal failing
sub-history, highlighted on the timeline and drawn with graphviz.

How: Python turns the history and the results dict into compact column-oriented JSON (one
entry per call, delta-encoded times, interned f names and keys, so the file grows linearly
in the ops and stays around a few dozen bytes per op), renders the static parts (summary,
anomaly tables, DOT graph) as escaped HTML, and inlines the JSON, CSS and JavaScript from
``report_assets/``. No network, no CDN. The script draws the timeline on a canvas with a
virtual viewport: only the rows and the time range in view are drawn, and boxes narrower
than a pixel are merged per pixel column, so 100,000 ops stay interactive. Hover shows an
op's details; wheel/drag/buttons scroll and zoom; links from the anomaly tables focus the
op on the timeline.

The results dict is the checker contract (results.json): ``{"valid", "checkers":
{"linearizable": {"valid", "model", "check_seconds", "unknown_cause", "keys": {KEY:
{"valid", "op", "previous_ok", "final_paths", "minimal_history", "unknown_cause"}}}}}``
(optionally ``minimal_op``: the op that fails within the minimal history, marked in the graph);
a bare linearizable result (``keys`` at the top) is accepted too. Optional fields may be
missing; a verdict that is not true/false/"unknown", or a counterexample field of the wrong
type, is a ``ReportError`` naming the field. Also shown when present: the top-level
``check_seconds``, ``findings`` (the store's internal invariant findings) and ``run`` facts,
other checkers' verdicts and timings (an invalid one without key results as its JSON).

The page exposes ``window.kvcheckReport`` (view, hit-testing, focus helpers) for the
browser tests and for poking at a report from the console.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from kvcheck.checker import dot as dotmod
from kvcheck.checker.history import Op, pair_calls
from kvcheck.checker.members import HASH_KV_F

VALUE_CHARS = 80  # values on the timeline are cut to this many characters
TABLE_VALUE_CHARS = 200
MAX_PATHS = 10  # final paths shown per key
MAX_PATH_STEPS = 200  # steps shown per final path (the last ones)
MAX_MINIMAL_ROWS = 500
OUTCOME_CODE = {"ok": "o", "fail": "f", "info": "i", "pending": "p"}
VERDICTS = (True, False, "unknown")


class ReportError(ValueError):
    """Results or history the report cannot draw; the message names what was wrong."""


# ---------------------------------------------------------------------------------------
# Results


def _check_verdict(value: Any, where: str) -> bool | str:
    if value is True or value is False or value == "unknown":
        return value
    raise ReportError(f"{where}: 'valid' must be true, false or \"unknown\", got {value!r}")


def _check_shapes(res: Mapping[str, Any], where: str) -> None:
    """The counterexample fields, when present, have the contract's types."""
    for name in ("op", "previous_ok", "minimal_op"):
        v = res.get(name)
        if v is not None and not isinstance(v, Mapping):
            raise ReportError(f"{where}: {name!r} must be an op object, got {type(v).__name__}")
    for name in ("minimal_history", "final_paths"):
        v = res.get(name)
        if v is not None and not isinstance(v, list):
            raise ReportError(f"{where}: {name!r} must be a list, got {type(v).__name__}")
    for i, d in enumerate(res.get("minimal_history") or []):
        if not isinstance(d, Mapping):
            raise ReportError(f"{where}: minimal_history[{i}] must be an op object, got {type(d).__name__}")


def _worst(verdicts: Sequence[bool | str]) -> bool | str | None:
    if not verdicts:
        return None
    if any(v is False for v in verdicts):
        return False
    if any(v == "unknown" for v in verdicts):
        return "unknown"
    return True


def normalise_results(results: Mapping[str, Any]) -> dict[str, Any]:
    """The full results form, ``{"valid", "checkers": {...}}``, from either accepted form.

    A bare linearizable result (with ``keys`` or ``model`` at the top) becomes the
    ``linearizable`` checker. A missing top-level verdict is derived from the checkers.
    """
    if not isinstance(results, Mapping):
        raise ReportError(f"results must be a JSON object, got {type(results).__name__}")
    if "checkers" in results:
        checkers = results["checkers"]
        if not isinstance(checkers, Mapping):
            raise ReportError(f"results: 'checkers' must be an object, got {type(checkers).__name__}")
        out = dict(results)
    elif "keys" in results or "model" in results or "op" in results:
        checkers = {"linearizable": dict(results)}
        out = {"checkers": checkers}
        if "valid" in results:
            out["valid"] = results["valid"]
    else:
        raise ReportError("results has neither 'checkers' nor a linearizable result ('keys' or 'model')")
    checked: dict[str, Any] = {}
    for name, res in checkers.items():
        if not isinstance(res, Mapping):
            raise ReportError(f"results: checker {name!r} must be an object, got {type(res).__name__}")
        res = dict(res)
        keys = res.get("keys")
        if keys is not None and not isinstance(keys, Mapping):
            raise ReportError(f"results: checker {name!r}: 'keys' must be an object, got {type(keys).__name__}")
        for key, kres in (keys or {}).items():
            if not isinstance(kres, Mapping):
                raise ReportError(f"results: checker {name!r} key {key!r} must be an object")
            if "valid" in kres:
                _check_verdict(kres["valid"], f"results: checker {name!r} key {key!r}")
            _check_shapes(kres, f"results: checker {name!r} key {key!r}")
        _check_shapes(res, f"results: checker {name!r}")
        if "valid" in res:
            res["valid"] = _check_verdict(res["valid"], f"results: checker {name!r}")
        else:
            derived = _worst([k["valid"] for k in (keys or {}).values() if "valid" in k])
            if derived is None:
                raise ReportError(f"results: checker {name!r} has no 'valid' verdict and no key results")
            res["valid"] = derived
        checked[name] = res
    out["checkers"] = checked
    if "valid" in out:
        out["valid"] = _check_verdict(out["valid"], "results")
    else:
        derived = _worst([c["valid"] for c in checked.values()])
        if derived is None:
            raise ReportError("results has no 'valid' verdict and no checker results")
        out["valid"] = derived
    return out


# ---------------------------------------------------------------------------------------
# Timeline data


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=repr, ensure_ascii=False)


def short_value(value: Any, limit: int = VALUE_CHARS) -> str:
    """A value as display text, cut to ``limit`` characters ("nil" for None)."""
    if value is None:
        return "nil"
    if type(value) is int:  # the common case, without json.dumps
        text = str(value)
    else:
        text = _json_text(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fault_name(f: Any) -> tuple[str, str] | None:
    """("start"|"stop", fault name) for fault f names, else None."""
    if not isinstance(f, str):
        return None
    name = f.lstrip(":")
    for edge in ("start", "stop"):
        if name == edge:
            return edge, "fault"
        if name.startswith(edge + "-") or name.startswith(edge + "_"):
            return edge, name[len(edge) + 1 :] or "fault"
    return None


@dataclass
class _Interner:
    names: list[str]
    index: dict[str, int]

    @classmethod
    def new(cls) -> _Interner:
        return cls([], {})

    def __call__(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            i = self.index[name] = len(self.names)
            self.names.append(name)
        return i


def _op_ids(ops: Sequence[Op]) -> list[int]:
    """Each op's report identity: Op.id, or its list position when it has neither an index
    field nor a file position (ops built by hand)."""
    return [op.id if (op.index is not None or op.position >= 0) else i for i, op in enumerate(ops)]


def build_timeline(ops: Sequence[Op]) -> tuple[dict[str, Any], dict[int, int]]:
    """The timeline's embedded data (processes, calls column-oriented, faults), and a map
    from op id (invocation's and completion's) to call number, for the highlights.

    x is the op's ``time`` (ns) when every op has one, else its position in the history.
    Calls are in invocation order; per call: ``r`` row, ``s`` start as a delta from the
    previous call's start, ``d`` duration to the completion (null when never completed),
    ``o`` one outcome letter each (o/f/i/p), ``f``/``k`` indices into ``fNames``/``keyNames``
    (k = -1: no key), ``v`` value shown (the completion's for ok calls), ``iv`` the
    invocation's value when it differs (else ""), ``id`` the invocation's op id, ``c`` the
    completion's op id minus ``id`` (null when none), ``err`` {call index: error}.
    """
    ids = _op_ids(ops)
    by_obj = {id(op): i for i, op in enumerate(ops)}
    use_time = bool(ops) and all(isinstance(op.time, int) and not isinstance(op.time, bool) for op in ops)

    def x_of(i: int) -> int:
        t = ops[i].time
        return t if use_time and t is not None else i

    calls = pair_calls(ops)
    # Client processes are ints (history.Op.is_nemesis); order by number, any other by text.
    procs = sorted({c.process for c in calls}, key=lambda p: (0, p, "") if isinstance(p, int) else (1, 0, str(p)))
    row_of = {p: r for r, p in enumerate(procs)}
    f_names = _Interner.new()
    key_names = _Interner.new()
    has_keys = any(c.key is not None for c in calls)
    col_r: list[int] = []
    col_s: list[int] = []
    col_d: list[int | None] = []
    outcomes: list[str] = []
    col_f: list[int] = []
    col_k: list[int] = []
    col_v: list[str] = []
    col_iv: list[str] = []
    col_id: list[int] = []
    col_c: list[int | None] = []
    errors: dict[str, str] = {}
    call_of_op: dict[int, int] = {}
    prev_s = 0
    f_index: dict[Any, int] = {}
    for n, call in enumerate(calls):
        inv_pos = by_obj[id(call.invoke)]
        s = x_of(inv_pos)
        col_r.append(row_of[call.process])
        col_s.append(s - prev_s)
        prev_s = s
        comp = call.completion
        if comp is not None:
            comp_pos = by_obj[id(comp)]
            col_d.append(x_of(comp_pos) - s)
            col_c.append(ids[comp_pos] - ids[inv_pos])
            call_of_op[ids[comp_pos]] = n
            if comp.error is not None:
                errors[str(n)] = short_value(comp.error, TABLE_VALUE_CHARS)
        else:
            col_d.append(None)
            col_c.append(None)
        outcomes.append(OUTCOME_CODE[call.outcome])
        f = call.f
        fi = f_index.get(f) if isinstance(f, str) else None
        if fi is None:
            fi = f_names(short_value(f, 40))
            if isinstance(f, str):
                f_index[f] = fi
        col_f.append(fi)
        col_k.append(key_names(short_value(call.key, 200)) if has_keys and call.key is not None else -1)
        shown = short_value(call.value)
        col_v.append(shown)
        inv_shown = short_value(call.invoke.value)
        col_iv.append(inv_shown if inv_shown != shown else "")
        col_id.append(ids[inv_pos])
        call_of_op[ids[inv_pos]] = n
    x_min = x_of(0) if ops else 0
    x_max = max((x_of(i) for i in range(len(ops))), default=0)
    if use_time:
        x_min = min(x_of(i) for i in range(len(ops)))
    faults, events = _faults(ops, ids, x_of, x_max)
    return {
        "axis": "time" if use_time else "position",
        "xMin": x_min,
        "xMax": x_max,
        "processes": [p if isinstance(p, int) else str(p) for p in procs],
        "fNames": f_names.names,
        "keyNames": key_names.names,
        "calls": {
            "r": col_r, "s": col_s, "d": col_d, "o": "".join(outcomes), "f": col_f, "k": col_k,
            "v": col_v, "iv": col_iv, "id": col_id, "c": col_c, "err": errors,
        },
        "faults": faults,
        "nemesisEvents": events,
    }, call_of_op


def fault_text(value: Any, limit: int = VALUE_CHARS) -> str:
    """A fault's value as a label: an object as "k: v" pairs in its own order, a bulky
    field (longer than 40 characters, e.g. a partition's blocked links) as "k: …"."""
    if isinstance(value, Mapping):
        parts = []
        for k, v in value.items():
            text = short_value(v, 10_000)
            parts.append(f"{k}: {text if len(text) <= 40 else '…'}")
        return short_value(", ".join(parts), limit)
    return short_value(value, limit)


def _faults(ops: Sequence[Op], ids: Sequence[int], x_of: Any, x_max: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fault bands from nemesis ops, and the other nemesis ops as instant events.

    A nemesis event is an invocation and the next nemesis completion with the same f (or,
    in Jepsen's style, two info ops with the same f); a lone op is an event of its own. Its
    value is the last non-nil one. A band runs from the first op of a "start-X" event to the
    last op of the next "stop-X" event; one never stopped runs to the end of the history
    and is marked open. Labels use ``fault_text``; ``full`` keeps more for the tooltip.
    """
    groups: list[list[int]] = []
    waiting: dict[Any, list[int]] = {}  # f -> the event still expecting its completion
    for i, op in enumerate(ops):
        if not op.is_nemesis or op.f == HASH_KV_F:  # the periodic hash checks: no fault
            continue
        try:
            f_key: Any = op.f
            hash(f_key)
        except TypeError:
            f_key = repr(op.f)
        if op.type != "invoke" and f_key in waiting:
            waiting.pop(f_key).append(i)
            continue
        group = [i]
        groups.append(group)
        if op.type in ("invoke", "info"):
            waiting[f_key] = group
    lanes: dict[str, int] = {}
    open_faults: dict[str, dict[str, Any]] = {}
    faults: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for g in groups:
        first, last = g[0], g[-1]
        value = next((ops[i].value for i in reversed(g) if ops[i].value is not None), None)
        kind = _fault_name(ops[first].f)
        if kind is None:
            events.append({"f": short_value(ops[first].f, 40), "value": fault_text(value, 400),
                           "x": x_of(first), "id": ids[first]})
            continue
        edge, name = kind
        if edge == "start":
            if name in open_faults:  # started again while on: note the new value
                open_faults[name]["value"] += " ⟶ " + fault_text(value)
                open_faults[name]["full"] += " ⟶ " + short_value(value, 400)
                continue
            lane = lanes.setdefault(name, len(lanes))
            band = {"name": name, "value": fault_text(value), "full": short_value(value, 400),
                    "s": x_of(first), "e": x_max, "open": True, "lane": lane, "startId": ids[first],
                    "endId": None}
            open_faults[name] = band
            faults.append(band)
        else:
            band_or_none = open_faults.pop(name, None)
            if band_or_none is None:
                events.append({"f": short_value(ops[first].f, 40),
                               "value": fault_text(value, 400) + " (stop with no start)",
                               "x": x_of(first), "id": ids[first]})
                continue
            band_or_none["e"] = x_of(last)
            band_or_none["open"] = False
            band_or_none["endId"] = ids[last]
            if value is not None:
                band_or_none["stopValue"] = fault_text(value, 400)
    return faults, events


# ---------------------------------------------------------------------------------------
# Anomalies


# Bits of a call's role in the anomaly (several may hold: the last ok op is usually also in
# the minimal history).
ROLE_MINIMAL, ROLE_FAILING, ROLE_PREVIOUS = 1, 2, 4


@dataclass
class KeyFailure:
    checker: str
    key: str
    result: Mapping[str, Any]


def _failures(results: Mapping[str, Any]) -> tuple[list[KeyFailure], list[tuple[str, str, str]], list[tuple[str, Any]]]:
    """(invalid keys, (checker, key, cause) for undecided keys, other invalid checkers)."""
    failures: list[KeyFailure] = []
    unknown: list[tuple[str, str, str]] = []
    other: list[tuple[str, Any]] = []
    for name, res in results["checkers"].items():
        keys = res.get("keys")
        if keys is None:
            if res["valid"] is False:
                if "op" in res or "minimal_history" in res or "final_paths" in res:
                    failures.append(KeyFailure(name, "", res))
                else:
                    other.append((name, res))
            elif res["valid"] == "unknown":
                unknown.append((name, "", str(res.get("unknown_cause") or "no cause given")))
            continue
        for key, kres in keys.items():
            v = kres.get("valid", res["valid"])
            if v is False:
                failures.append(KeyFailure(name, str(key), kres))
            elif v == "unknown":
                unknown.append((name, str(key), str(kres.get("unknown_cause") or res.get("unknown_cause") or "no cause given")))
        if res["valid"] is False and not any(f.checker == name for f in failures):
            other.append((name, res))
        if res["valid"] == "unknown" and not keys:
            unknown.append((name, "", str(res.get("unknown_cause") or "no cause given")))
    return failures, unknown, other


def _op_dict_id(d: Any) -> Any:
    return d.get("index") if isinstance(d, Mapping) else None


def highlights(failures: Sequence[KeyFailure], call_of_op: Mapping[int, int]) -> tuple[dict[str, int], list[Any]]:
    """({call index: role bits}, op ids named by the results but absent from the history)."""
    roles: dict[str, int] = {}
    missing: list[Any] = []

    def mark(d: Any, role: int) -> None:
        oid = _op_dict_id(d)
        if oid is None:
            if "an op without an index" not in missing:
                missing.append("an op without an index")
            return
        n = call_of_op.get(oid) if isinstance(oid, int) else None
        if n is None:
            if oid not in missing:
                missing.append(oid)
            return
        roles[str(n)] = roles.get(str(n), 0) | role
    for f in failures:
        for d in f.result.get("minimal_history") or []:
            mark(d, ROLE_MINIMAL)
        if f.result.get("previous_ok") is not None:
            mark(f.result["previous_ok"], ROLE_PREVIOUS)
        if f.result.get("op") is not None:
            mark(f.result["op"], ROLE_FAILING)
    return roles, missing


# ---------------------------------------------------------------------------------------
# HTML


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _op_ref(d: Mapping[str, Any]) -> str:
    oid = d.get("index")
    return f'<a class="op-ref" href="#timeline-section" data-op="{_e(oid)}">#{_e(oid)}</a>'


def describe_op_html(d: Any) -> str:
    """One op dict as a line of HTML: id link, process, key, f, value, type, error."""
    if not isinstance(d, Mapping):
        return f'<span class="op">{_e(short_value(d, TABLE_VALUE_CHARS))}</span>'
    parts = [_op_ref(d), f'<span class="proc">p{_e(d.get("process"))}</span>']
    if d.get("key") is not None:
        parts.append(f'<span class="key">key {_e(short_value(d["key"], 60))}</span>')
    parts.append(f'<span class="f">{_e(short_value(d.get("f"), 40))}</span>')
    parts.append(f'<span class="value">{_e(short_value(d.get("value"), TABLE_VALUE_CHARS))}</span>')
    kind = str(d.get("type", "?"))
    parts.append(f'<span class="type t-{_e(kind)}">{_e(kind)}</span>')
    if d.get("error") is not None:
        parts.append(f'<span class="error">error {_e(short_value(d["error"], TABLE_VALUE_CHARS))}</span>')
    return '<span class="op">' + " ".join(parts) + "</span>"


def _verdict_html(v: Any) -> str:
    text = {True: "valid", False: "invalid"}.get(v, "unknown") if isinstance(v, bool) else "unknown"
    return f'<span class="verdict verdict-{text}">{text}</span>'


def _seconds(v: Any) -> str:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return f"{v:.3f} s"
    return "—"


def _summary_html(results: Mapping[str, Any], timeline: Mapping[str, Any], n_events: int,
                  n_nemesis: int, has_anomaly: bool, title: str) -> str:
    calls = timeline["calls"]
    outcome_counts = Counter(calls["o"])
    f_out: Counter[tuple[str, str]] = Counter(zip((timeline["fNames"][i] for i in calls["f"]), calls["o"], strict=True))
    letters = {v: k for k, v in OUTCOME_CODE.items()}
    fault_kinds = Counter(f["name"] for f in timeline["faults"])
    verdict = results["valid"]
    rows = []
    for name, res in results["checkers"].items():
        keys = res.get("keys") or {}
        kc = Counter({True: "valid", False: "invalid"}.get(k.get("valid"), "unknown") if isinstance(k.get("valid"), bool) else "unknown" for k in keys.values())
        keytext = ", ".join(f"{kc[w]} {w}" for w in ("valid", "invalid", "unknown") if kc[w]) if keys else "—"
        rows.append(
            f'<tr data-checker="{_e(name)}"><td>{_e(name)}</td><td>{_verdict_html(res["valid"])}</td>'
            f'<td>{_e(res.get("model") or "—")}</td><td>{_e(len(keys)) if keys else "—"}</td><td>{_e(keytext)}</td>'
            f'<td>{_seconds(res.get("check_seconds", res.get("seconds")))}</td><td>{_e(res.get("unknown_cause") or "")}</td></tr>'
        )
    f_rows = []
    for fname in timeline["fNames"]:
        cells = "".join(f"<td>{f_out[(fname, c)] or ''}</td>" for c in "ofip")
        f_rows.append(f"<tr><td>{_e(fname)}</td>{cells}</tr>")
    total = len(calls["o"])
    outcome_text = ", ".join(f'<span class="count c-{letters[c]}">{outcome_counts[c]} {letters[c]}</span>' for c in "ofip")
    faults_text = ", ".join(f"{n} {_e(k)}" for k, n in sorted(fault_kinds.items())) or "none"
    extra = ""
    if _seconds(results.get("check_seconds")) != "—":
        extra += f'<dt>check time</dt><dd id="check-seconds">{_seconds(results["check_seconds"])}</dd>'
    findings = results.get("findings")
    if isinstance(findings, list) and findings:
        n = _findings_total(findings)
        logs = _findings_logs(findings)
        extra += (f'<dt>findings</dt><dd><a href="#findings">{n} internal invariant '
                  f'finding{"s" if n != 1 else ""}</a>{" (see " + _e(logs) + ")" if logs else ""}</dd>')
    internal = results.get("internal")
    if isinstance(internal, dict) and isinstance(internal.get("liveness"), dict):
        extra += ('<dt>liveness</dt><dd class="v-invalid">'
                  + "<br>".join(_e(str(t)) for t in internal["liveness"].get("explanation", [])) + "</dd>")
    stopped = (results.get("run") or {}).get("stopped") if isinstance(results.get("run"), dict) else None
    if stopped:
        extra += f"<dt>stopped early</dt><dd>{_e(str(stopped))}</dd>"
    jump = ""
    if has_anomaly:
        jump = '<p class="jump"><a id="jump-to-anomaly" href="#anomaly">Jump to the anomaly ↓</a></p>'
    return f"""<header id="summary">
<h1>{_e(title)} {_verdict_html(verdict)}</h1>
{jump}
<dl class="facts">
<dt>events</dt><dd id="count-events">{n_events} ({n_nemesis} nemesis)</dd>
<dt>client calls</dt><dd id="count-calls">{total}: {outcome_text}</dd>
<dt>processes</dt><dd id="count-processes">{len(timeline["processes"])}</dd>
<dt>fault intervals</dt><dd id="count-faults">{faults_text}</dd>
{extra}
</dl>
<table class="checkers"><thead><tr><th>checker</th><th>verdict</th><th>model</th><th>keys</th><th>key verdicts</th><th>check time</th><th>unknown cause</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<details class="by-f"><summary>calls by function and outcome</summary>
<table><thead><tr><th>f</th><th>ok</th><th>fail</th><th>info</th><th>pending</th></tr></thead><tbody>{"".join(f_rows)}</tbody></table>
</details>
{_latency_html(results)}
</header>"""


def _latency_html(results: Mapping[str, Any]) -> str:
    """The run's latency quantiles of ok calls by f (results["run"]["summary"]), if any."""
    run = results.get("run")
    summary = run.get("summary") if isinstance(run, Mapping) else None
    latency = summary.get("latency_ms") if isinstance(summary, Mapping) else None
    if not isinstance(latency, Mapping) or not latency:
        return ""
    cols = ("p50", "p95", "p99", "max")
    rows = "".join(
        f"<tr><td>{_e(f)}</td>" + "".join(f"<td>{_e(q.get(c, ''))}</td>" for c in cols) + "</tr>"
        for f, q in latency.items() if isinstance(q, Mapping))
    return ('<details class="latency"><summary>latency of ok calls (ms)</summary><table><thead><tr><th>f</th>'
            + "".join(f"<th>{c}</th>" for c in cols) + f"</tr></thead><tbody>{rows}</tbody></table></details>")


def _paths_html(paths: Any) -> str:
    if not isinstance(paths, list) or not paths:
        return '<p class="none">No final paths in the results.</p>'
    out = []
    for n, path in enumerate(paths[:MAX_PATHS]):
        if not isinstance(path, list):
            raise ReportError(f"final path {n} must be a list of steps, got {type(path).__name__}")
        skipped = max(0, len(path) - MAX_PATH_STEPS)
        steps = path[skipped:]
        rows = []
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping):
                raise ReportError(f"final path {n} step {skipped + i} must be an object with 'op' and 'model'")
            last = i == len(steps) - 1
            cls = ' class="rejected"' if last else ""
            op = step.get("op")
            op_html = describe_op_html(op) if op is not None else '<span class="note">(initial state)</span>'
            if step.get("inconsistent") is not None:  # the step the model rejects, and why
                state = "rejected: " + short_value(step["inconsistent"], TABLE_VALUE_CHARS)
            elif last and step.get("model") is None:
                state = "rejected"
            else:
                state = ("rejected: " if last else "") + short_value(step.get("model"), TABLE_VALUE_CHARS)
            rows.append(f"<tr{cls}><td>{skipped + i + 1}</td><td>{op_html}</td><td>{_e(state)}</td></tr>")
        note = f'<p class="note">… {skipped} earlier steps not shown.</p>' if skipped else ""
        out.append(f'<div class="final-path"><h4>path {n + 1} ({len(path)} steps)</h4>{note}'
                   f'<table><thead><tr><th>step</th><th>op</th><th>model state after</th></tr></thead>'
                   f'<tbody>{"".join(rows)}</tbody></table></div>')
    if len(paths) > MAX_PATHS:
        out.append(f'<p class="note">… {len(paths) - MAX_PATHS} more final paths not shown.</p>')
    return "".join(out)


def _minimal_html(minimal: Any, failing_id: Any) -> str:
    if not isinstance(minimal, list) or not minimal:
        return '<p class="none">No minimal failing sub-history in the results.</p>'
    rows = []
    for d in minimal[:MAX_MINIMAL_ROWS]:
        cls = ' class="failing"' if failing_id is not None and _op_dict_id(d) == failing_id else ""
        rows.append(f"<tr{cls}><td>{describe_op_html(d)}</td></tr>")
    more = len(minimal) - MAX_MINIMAL_ROWS
    note = f'<p class="note">… {more} more ops not shown.</p>' if more > 0 else ""
    return f'<table class="minimal-history"><tbody>{"".join(rows)}</tbody></table>{note}'


def _anomaly_html(failures: Sequence[KeyFailure], unknown: Sequence[tuple[str, str, str]],
                  other: Sequence[tuple[str, Any]], missing: Sequence[Any], dot_source: str | None,
                  svg: str | None, svg_note: str, dot_name: str | None, no_keys: bool,
                  ops: Sequence[Op] = ()) -> str:
    """The anomaly section (when anything is invalid) and the undecided keys. ``no_keys``:
    the history has no key field, so the checker's "null" key is the whole history."""
    parts: list[str] = []
    if failures or other:
        parts.append('<section id="anomaly"><h2>Anomaly</h2>')
        parts.append('<p><button type="button" id="show-anomaly">Show the minimal failing sub-history on the timeline</button></p>')
        if missing:
            parts.append(f'<p class="warning" id="missing-ops">The results name ops that are not in this history: '
                         f'{_e(", ".join(map(str, missing[:20])))}{" …" if len(missing) > 20 else ""}. '
                         'They cannot be highlighted on the timeline.</p>')
        for f in failures:
            res = f.result
            label = f"key {f.key}" if f.key and not (f.key == "null" and no_keys) else "whole history"
            op = res.get("op")
            parts.append(f'<div class="failure" data-key="{_e(f.key)}"><h3>{_e(f.checker)}: {_e(label)}</h3>')
            if op is not None:
                parts.append(f'<p class="failing-op">Cannot be linearized: {describe_op_html(op)}</p>')
            if res.get("previous_ok") is not None:
                parts.append(f'<p class="previous-ok">Last ok op before it: {describe_op_html(res["previous_ok"])}</p>')
            minimal = res.get("minimal_history")
            title = "Minimal failing sub-history"
            if res.get("minimal_is_1_minimal") is False:
                title += " (minimisation stopped at the bounds: it may not be minimal)"
            parts.append(f"<h4>{_e(title)}</h4>")
            parts.append(_minimal_html(minimal, _op_dict_id(res.get("minimal_op") or op)))
            if isinstance(minimal, list) and minimal and op is not None \
                    and _op_dict_id(op) not in {_op_dict_id(d) for d in minimal}:
                parts.append(f'<p class="note" id="failing-op-outside-minimal">The op the search rejected '
                             f'(#{_e(_op_dict_id(op))}) is not in this sub-history: delta debugging found a '
                             'smaller set of ops that cannot be linearized either.</p>')
            parts.append("<details open><summary>Final paths (longest linearizable prefixes; the last step is rejected)</summary>")
            parts.append(_paths_html(res.get("final_paths")))
            parts.append("</details></div>")
        for name, res in other:
            parts.append(f'<div class="failure" data-checker="{_e(name)}"><h3>{_e(name)}</h3>'
                         f'{_checker_section(name, res, ops)}</div>')
        if dot_source is not None:
            parts.append('<div id="graph"><h3>Minimal failing sub-history as a graph</h3>'
                         '<p class="legend">Solid edges: real-time order (A completed before B was invoked; '
                         'transitive edges omitted). Dashed: value dependencies. Red double border: the op '
                         'that cannot be linearized.'
                         + (f' DOT file: <code>{_e(dot_name)}</code>.' if dot_name else "") + "</p>")
            if svg is not None:
                parts.append(f'<div class="svg">{svg}</div>')
            else:
                parts.append(f'<p class="note" id="no-svg">{_e(svg_note)}</p>')
            parts.append(f'<details><summary>DOT source</summary><pre id="dot-source">{_e(dot_source)}</pre></details></div>')
        parts.append("</section>")
    if unknown:
        def key_label(k: str) -> str:
            return "whole history" if not k or (k == "null" and no_keys) else k

        rows = "".join(f"<tr><td>{_e(c)}</td><td>{_e(key_label(k))}</td><td>{_e(cause)}</td></tr>"
                       for c, k, cause in unknown[:1000])
        parts.append(f'<section id="undecided"><h2>Undecided</h2><table><thead><tr><th>checker</th><th>key</th>'
                     f'<th>cause</th></tr></thead><tbody>{rows}</tbody></table></section>')
    return "\n".join(parts)


def _checker_section(name: str, res: Mapping[str, Any], ops: Sequence[Op]) -> str:
    """An invalid checker's own account (``Checker.html_section``); a checker this version
    does not know is shown as its JSON."""
    from kvcheck.checker.api import CHECKERS, get_checker

    section = ""
    if name in CHECKERS:
        section = get_checker(name).html_section(res, ops)
    if section:
        return section
    text = json.dumps(res, indent=1, default=repr, ensure_ascii=False)
    if len(text) > 20000:
        text = text[:20000] + "\n…"
    return f"<pre>{_e(text)}</pre>"


def _asset(name: str) -> str:
    return (resources.files("kvcheck.checker") / "report_assets" / name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON safe inside a <script type="application/json"> element."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=repr, allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def dot_path_for(out_path: Path) -> Path:
    """Where the DOT file of a report goes: beside it, same stem, ``.dot``."""
    return out_path.with_suffix(".dot")


def render_report(ops: Sequence[Op], results: Mapping[str, Any], *, title: str,
                  config: Mapping[str, Any] | None = None, dot_name: str | None = None,
                  logs: Mapping[str, str] | None = None) -> tuple[str, str | None]:
    """(the report's HTML, the DOT source or None when there is no minimal failing sub-history).
    ``logs`` (file name -> text: a run's node logs) are embedded, collapsed, at the end."""
    norm = normalise_results(results)
    timeline, call_of_op = build_timeline(ops)
    failures, unknown, other = _failures(norm)
    roles, missing = highlights(failures, call_of_op)
    def op_or_none(d: Any) -> Mapping[str, Any] | None:
        return d if isinstance(d, Mapping) else None

    dot_failures = [dotmod.FailingKey(key=f.key or f.checker, minimal_history=f.result["minimal_history"],
                                      failing_op=op_or_none(f.result.get("op")),
                                      minimal_op=op_or_none(f.result.get("minimal_op")))
                    for f in failures if isinstance(f.result.get("minimal_history"), list) and f.result["minimal_history"]]
    dot_source = svg = None
    svg_note = ""
    if dot_failures:
        dot_source = dotmod.minimal_history_dot(dot_failures, title=f"{title}: minimal failing sub-history")
        svg, svg_note = dotmod.render_svg(dot_source)
    n_nemesis = sum(1 for op in ops if op.is_nemesis)
    data = {
        "title": title,
        "verdict": norm["valid"],
        "timeline": timeline,
        "highlight": roles,
        "anomalyOps": [_op_dict_id(f.result.get("op")) for f in failures if _op_dict_id(f.result.get("op")) is not None],
    }
    css = _asset("report.css")
    js = _asset("report.js")
    config_html = _findings_html(norm.get("findings")) + _json_details("run", "Run facts", norm.get("run"))
    if config is not None:
        config_html += _json_details("config", "Run configuration", config)
    config_html += _logs_html(logs or {})
    body = "\n".join([
        _summary_html(norm, timeline, len(ops), n_nemesis, bool(failures or other), title),
        _timeline_html(),
        _anomaly_html(failures, unknown, other, missing, dot_source, svg, svg_note, dot_name,
                      no_keys=not timeline["keyNames"], ops=ops),
        config_html,
    ])
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="kvcheck">
<title>{_e(title)} — kvcheck report</title>
<style>{css}</style></head>
<body class="page-{_e({True: "valid", False: "invalid"}.get(norm["valid"], "unknown") if isinstance(norm["valid"], bool) else "unknown")}">
{body}
<script type="application/json" id="kvcheck-data">{_script_json(data)}</script>
<script>{js}</script>
</body></html>
"""
    return page, dot_source


def _json_details(section_id: str, summary: str, value: Any) -> str:
    """A collapsed section showing ``value`` as indented JSON (nothing for None)."""
    if value is None:
        return ""
    text = json.dumps(value, indent=2, default=repr, ensure_ascii=False)
    if len(text) > 200_000:
        text = text[:200_000] + "\n…"
    return (f'<section id="{section_id}"><details><summary>{_e(summary)}</summary>'
            f"<pre>{_e(text)}</pre></details></section>")


LOG_CHARS = 200_000  # per embedded log file; the rest stays in the file beside the report


def _logs_html(logs: Mapping[str, str]) -> str:
    """The run's log files, each collapsed; a long one is cut to its last LOG_CHARS."""
    if not logs:
        return ""
    parts = []
    for name, text in logs.items():
        if len(text) > LOG_CHARS:
            text = f"… ({len(text) - LOG_CHARS} characters before this are in {name})\n" + text[-LOG_CHARS:]
        lines = text.count("\n") + (not text.endswith("\n"))
        parts.append(f'<details class="log" data-log="{_e(name)}"><summary>{_e(name)} '
                     f'<span class="note">({lines} lines)</span></summary><pre>{_e(text)}</pre></details>')
    return ('<section id="logs"><h2>Logs</h2><p class="note">The run\'s log files as written beside '
            "this report: each member's elections, leader changes, recoveries and the faults it "
            "suffered.</p>" + "".join(parts) + "</section>")


def _findings_total(findings: list[Any]) -> int:
    """Findings counted one per occurrence (a grouped finding is ``{"finding", "count", ...}``)."""
    return sum(f.get("count", 1) if isinstance(f, dict) else 1 for f in findings)


def _findings_logs(findings: list[Any]) -> str:
    members = sorted({m for f in findings if isinstance(f, dict) for m in f.get("members", [])
                      if isinstance(m, int)})
    return ", ".join(f"node{m}.log" for m in members)


def _finding_text(f: Any) -> str:
    if isinstance(f, dict) and "finding" in f:
        members = ",".join(f"n{m}" for m in f.get("members", []))
        return f"x{f.get('count', 1)} from {f.get('first_time')}s on {members}: {f['finding']}"
    return short_value(f, 2000)


def _findings_html(findings: Any) -> str:
    """Internal invariant findings the store reported during the run (results["findings"]):
    each distinct one once, with how often, from when and on which members."""
    if not isinstance(findings, list) or not findings:
        return ""
    items = "".join(f"<li><code>{_e(_finding_text(f))}</code></li>" for f in findings[:500])
    more = f'<p class="note">… {len(findings) - 500} more in results.json.</p>' if len(findings) > 500 else ""
    return (f'<section id="findings"><h2>Internal invariant findings</h2><p class="note">Reported by the '
            f"store's own checks during the run; the verdict above comes from the history alone.</p>"
            f"<ul>{items}</ul>{more}</section>")


def _timeline_html() -> str:
    return """<section id="timeline-section"><h2>Timeline</h2>
<div class="toolbar">
<button type="button" id="zoom-in" title="zoom in (ctrl+wheel, +)">+</button>
<button type="button" id="zoom-out" title="zoom out (ctrl+wheel, -)">−</button>
<button type="button" id="zoom-fit" title="show the whole history (0)">fit</button>
<span class="legend"><span class="sw ok"></span>ok <span class="sw fail"></span>fail <span class="sw info"></span>info
<span class="sw pending"></span>pending <span class="sw fault"></span>fault (a colour per kind) <span class="sw minimal"></span>minimal failing sub-history
<span class="sw failing"></span>cannot be linearized</span>
<span class="hint">wheel: scroll rows · shift+wheel or drag: pan · ctrl+wheel: zoom · click the overview to jump</span>
</div>
<canvas id="overview" height="36"></canvas>
<div id="timeline"><div id="gutter"><div id="gutter-head"></div><div id="labels"></div></div>
<div id="plot"><canvas id="timeline-canvas"></canvas></div></div>
<div id="tooltip" hidden></div>
<noscript><p>The timeline needs JavaScript.</p></noscript>
</section>"""


def write_report(ops: Sequence[Op], results: Mapping[str, Any], out_path: Path, *, title: str,
                 config: dict[str, Any] | None = None, logs: Mapping[str, str] | None = None) -> Path:
    """Write report.html to ``out_path`` and, when the results hold a minimal failing
    sub-history, its DOT graph beside it (``dot_path_for(out_path)``). Returns out_path.

    Raises ``HistoryError`` for a history whose calls do not pair (see ``pair_calls``) and
    ``ReportError`` for results the report cannot read; the message names what was wrong.
    A DOT file left beside the report by an earlier kvcheck report whose results were
    invalid is removed when the new results have no minimal history, so the directory
    never shows a graph that the report does not explain.
    """
    out_path = Path(out_path)
    dot_file = dot_path_for(out_path)
    page, dot_source = render_report(ops, results, title=title, config=config, dot_name=dot_file.name,
                                     logs=logs)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if dot_source is not None:
        dot_file.write_text(dot_source + "\n", encoding="utf-8")
    elif dot_file.exists():
        with dot_file.open(encoding="utf-8", errors="replace") as fh:
            ours = fh.readline().startswith(dotmod.DOT_HEADER)
        if ours:
            dot_file.unlink()
    out_path.write_text(page, encoding="utf-8")
    return out_path
