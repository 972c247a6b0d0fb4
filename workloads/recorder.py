"""The history recorder: every client and nemesis event of a run, in real-time order.

Clients call ``invoke`` before they send a request and ``complete`` when they know its
outcome; the nemesis records the start and end of each fault as its own invoke/info pairs
(process ``"nemesis"``, f ``"start-<kind>"`` / ``"stop-<kind>"``). Each event gets the next
``index`` and its ``time`` in integer nanoseconds since the run started, read from the clock
the recorder was given (the simulation's virtual time there, so the history is
deterministic). The order of the list is the real-time order the checkers use.

``write_jsonl`` writes one JSON object per line with Jepsen's field names in Jepsen's order
(``Op.to_dict``), compact separators and no trailing spaces: the same ops give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from kvcheck.checker.history import NEMESIS, Op

COMPLETIONS = ("ok", "fail", "info")


class Recorder:
    """Collects a run's history. ``clock`` returns seconds (any origin)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._origin = clock()
        self.ops: list[Op] = []
        self._open: dict[int | str, Op] = {}
        self._listeners: list[Callable[[Op], None]] = []

    def now(self) -> float:
        """Seconds since the recorder started."""
        return self._clock() - self._origin

    def on_event(self, listener: Callable[[Op], None]) -> None:
        """Call ``listener(op)`` after each recorded event (progress bars, counters)."""
        self._listeners.append(listener)

    def _append(self, op: Op) -> Op:
        op.index = len(self.ops)
        op.position = op.index
        op.time = round(self.now() * 1e9)
        self.ops.append(op)
        for listener in self._listeners:
            listener(op)
        return op

    def invoke(self, process: int | str, f: str, value: Any = None, *, key: Any = None,
               node: Any = None, extra: dict[str, Any] | None = None) -> Op:
        """Record an invocation; the process must have no open operation."""
        if process in self._open:
            raise ValueError(f"process {process!r} invokes {f!r} while op {self._open[process].index} is open")
        op = self._append(Op(type="invoke", f=f, value=value, process=process, key=key, node=node,
                             extra=dict(extra or {})))
        self._open[process] = op
        return op

    def complete(self, invocation: Op, type: str, value: Any = None, *, error: Any = None,
                 node: Any = None, extra: dict[str, Any] | None = None) -> Op:
        """Record the completion (ok, fail or info) of an open invocation. ``extra`` adds
        fields to the line (e.g. a write's response ``revision``)."""
        return self.respond(invocation, type, value, error=error, node=node, extra=extra, last=True)

    def respond(self, invocation: Op, type: str, value: Any = None, *, error: Any = None,
                node: Any = None, extra: dict[str, Any] | None = None, last: bool = False) -> Op:
        """Record one line answering an open invocation. A stream op (a watch) gets one
        line per response with ``last=False`` and stays open; its end line has
        ``last=True`` (or type ``info``, which always ends it)."""
        if type not in COMPLETIONS:
            raise ValueError(f"completion type must be one of {COMPLETIONS}, not {type!r}")
        proc = invocation.process
        assert proc is not None
        if self._open.get(proc) is not invocation:
            raise ValueError(f"op {invocation.index} of process {proc!r} is not open")
        if last or type == "info":
            del self._open[proc]
        return self._append(Op(type=type, f=invocation.f, value=value, process=proc,
                               key=invocation.key, node=node, error=error, extra=dict(extra or {})))

    def nemesis(self, f: str, value: Any = None) -> tuple[Op, Op]:
        """Record a nemesis action that has happened: an invoke and an info with its value."""
        inv = self.invoke(NEMESIS, f, value)
        done = self.complete(inv, "info", value)
        return inv, done

    def open_ops(self) -> list[Op]:
        return list(self._open.values())


def dumps_op(op: Op) -> str:
    return json.dumps(op.to_dict(), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def write_jsonl(ops: Iterable[Op], out: Path | IO[str]) -> None:
    """Write ops as JSON lines (deterministic bytes for the same ops)."""
    if isinstance(out, Path):
        with out.open("w", encoding="utf-8", newline="\n") as fh:
            write_jsonl(ops, fh)
        return
    for op in ops:
        out.write(dumps_op(op))
        out.write("\n")
