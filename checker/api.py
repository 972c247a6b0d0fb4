"""One shape for every checker: what ``kvcheck check``, ``kvcheck run``, the summary,
results.json and report.html iterate over, so adding a checker adds a module, not edits in
five places.

A checker is an object with a ``name`` and a ``check(ops, options) -> CheckResult``. It reads
the whole history (``ops``, nemesis ops included, in file order) and picks the ops it cares
about itself (``reads(op)`` says which, for the report's row filters). Its result has one
verdict (``True``, ``False`` or ``"unknown"``), a list of ``Anomaly`` values (each with a
``kind``, a one-line ``explanation``, the op ids involved and free-form ``detail``: final
paths, a cycle, a stream ...), the seconds it took, the unknown cause, and ``detail``: the
checker's own JSON (e.g. the linearizability checker's per-key results).

Checkers are found by name through ``CHECKERS`` (name -> "module:Class", imported lazily so
``kvcheck check`` does not import every checker to run one). ``run_checkers`` runs several
on one history and combines them: the combined verdict is the worst (invalid, then unknown,
then valid). ``CheckerBase`` gives the text and HTML renderings a checker gets unless it
draws its own: one line per anomaly on the terminal, an anomaly table in the report.
"""

from __future__ import annotations

import html
import importlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from kvcheck.checker.history import Op

Verdict = bool | Literal["unknown"]
UNKNOWN: Literal["unknown"] = "unknown"


@dataclass
class Anomaly:
    """One thing a checker found wrong. ``kind`` is a stable name users can grep for
    (``nonlinearizable``, ``watch:reliable``, ``G-single`` ...); ``explanation`` is one line
    of plain words; ``ops`` the ids (``Op.id``) of the ops that show it, most telling first."""

    kind: str
    explanation: str
    ops: list[int] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "explanation": self.explanation, "ops": list(self.ops)}
        if self.detail:
            out["detail"] = self.detail
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Anomaly:
        return cls(str(d.get("kind", "")), str(d.get("explanation", "")), list(d.get("ops") or []),
                   dict(d.get("detail") or {}))


@dataclass
class CheckResult:
    """What one checker says of one history."""

    checker: str
    valid: Verdict
    anomalies: list[Anomaly] = field(default_factory=list)
    seconds: float = 0.0
    unknown_cause: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checker": self.checker, "valid": self.valid,
                               "anomalies": [a.to_json() for a in self.anomalies],
                               "seconds": round(self.seconds, 6)}
        if self.unknown_cause is not None:
            out["unknown_cause"] = self.unknown_cause
        # The checker's own fields sit beside the common ones (results.json readers of the
        # linearizability checker find "model" and "keys" where they always were).
        for k, v in self.detail.items():
            out.setdefault(k, v)
        return out


@dataclass
class CheckOptions:
    """Options every checker may read; each ignores what it does not use.

    ``model`` names the linearizability model (or is a model object); ``init`` its initial
    value; ``timeout`` and ``memory_limit_mb`` bound each checker's run (the checker returns
    ``unknown`` with the cause when hit); ``all_keys`` asks keyed checkers to decide every
    key even after one is invalid; ``consistency_model`` is the transactional checker's
    target; ``extra`` carries checker-specific settings from a run's config (e.g. the
    lease checker's bound)."""

    model: Any = None
    init: Any = None
    timeout: float | None = None
    memory_limit_mb: int | None = None
    all_keys: bool = False
    consistency_model: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Checker(Protocol):
    name: str
    description: str

    def reads(self, op: Op) -> bool:
        """Whether this checker looks at ``op`` (the report greys out the others)."""
        ...

    def check(self, ops: Sequence[Op], options: CheckOptions) -> CheckResult: ...

    def summary_lines(self, result: Mapping[str, Any], op_text: Callable[[Any], str]) -> list[str]:
        """Terminal lines under the checker's verdict line (results.json form)."""
        ...

    def html_section(self, result: Mapping[str, Any], ops: Sequence[Op]) -> str:
        """The report's section for this checker's anomalies (results.json form)."""
        ...


class CheckerBase:
    """Default renderings; a checker overrides what it can show better."""

    name = ""
    description = ""
    max_shown = 10  # anomalies listed on the terminal

    def reads(self, op: Op) -> bool:
        return not op.is_nemesis

    def summary_lines(self, result: Mapping[str, Any], op_text: Callable[[Any], str]) -> list[str]:
        anomalies = result.get("anomalies") or []
        lines = [f"    {a.get('kind')}: {a.get('explanation')}" for a in anomalies[: self.max_shown]]
        if len(anomalies) > self.max_shown:
            lines.append(f"    … {len(anomalies) - self.max_shown} more anomalies (results.json)")
        return lines

    def html_section(self, result: Mapping[str, Any], ops: Sequence[Op]) -> str:
        anomalies = result.get("anomalies") or []
        if not anomalies:
            return ""
        rows = "".join(
            f"<tr><td><code>{html.escape(str(a.get('kind')))}</code></td>"
            f"<td>{html.escape(str(a.get('explanation')))}</td>"
            f"<td>{op_links(a.get('ops') or [])}</td></tr>"
            for a in anomalies)
        return (f"<table class=\"anomalies\"><thead><tr><th>kind</th><th>what</th><th>ops</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>")


def op_links(ids: Iterable[Any]) -> str:
    """Op ids as the report's op links (a click focuses the op on the timeline)."""
    return " ".join(f'<a class="op-ref" href="#timeline-section" data-op="{int(i)}">#{int(i)}</a>'
                    for i in ids)


# name -> "module:Class". Add a line here with a new checker module.
CHECKERS: dict[str, str] = {
    "linearizable": "kvcheck.checker.linearizable:LinearizableChecker",
    "watch": "kvcheck.checker.watch:WatchChecker",
    "lease": "kvcheck.checker.lease:LeaseChecker",
    "informer": "kvcheck.checker.informer:InformerChecker",
    "txn": "kvcheck.checker.txn:TxnChecker",
    "lock": "kvcheck.checker.lock:LockChecker",
    "members": "kvcheck.checker.members:MembersChecker",
    "availability": "kvcheck.checker.availability:AvailabilityChecker",
}


def checker_names() -> list[str]:
    return list(CHECKERS)


def get_checker(name: str) -> Checker:
    """The checker called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        target = CHECKERS[name]
    except KeyError:
        raise ValueError(f"unknown checker {name!r}; known: {', '.join(CHECKERS)}") from None
    module, _, cls = target.partition(":")
    checker = getattr(importlib.import_module(module), cls)()
    return checker


def parse_checker_names(text: str | Iterable[str]) -> list[str]:
    """``"linearizable,watch"`` (or a list of names) -> checked, de-duplicated names."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    names: list[str] = []
    for p in parts:
        p = p.strip()
        if not p:
            continue
        if p not in CHECKERS:
            raise ValueError(f"unknown checker {p!r}; known: {', '.join(CHECKERS)}")
        if p not in names:
            names.append(p)
    if not names:
        raise ValueError("no checker named")
    return names


def worst_verdict(verdicts: Iterable[Any]) -> Verdict:
    """Invalid if any is invalid, else unknown if any is not valid, else valid (also for
    no verdicts at all: nothing was found wrong)."""
    vs = list(verdicts)
    if any(v is False for v in vs):
        return False
    if any(v is not True for v in vs):
        return UNKNOWN
    return True


def run_checkers(names: Sequence[str], ops: Sequence[Op], options: CheckOptions) -> dict[str, CheckResult]:
    """Run each named checker on the history, in order; a checker's own timing is measured
    here so every result has one."""
    out: dict[str, CheckResult] = {}
    for name in names:
        checker = get_checker(name)
        t0 = time.perf_counter()
        result = checker.check(ops, options)
        if not result.seconds:
            result.seconds = time.perf_counter() - t0
        out[name] = result
    return out


def results_json(results: Mapping[str, CheckResult]) -> dict[str, Any]:
    """``{"valid": worst, "checkers": {name: result}}`` — the part of results.json (and of
    ``kvcheck check --json``'s per-file entries) that the checkers own."""
    return {"valid": worst_verdict(r.valid for r in results.values()),
            "checkers": {name: r.to_json() for name, r in results.items()}}
