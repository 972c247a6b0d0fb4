"""The history model: Jepsen-style operations and their pairing into calls.

A history is the ordered list of events a test recorded: each client process invokes an
operation (``type: "invoke"``) and later completes it with ``ok`` (it happened), ``fail``
(it certainly did not happen) or ``info`` (unknown: it may take effect at any later time).
Real-time order is the order of the list, never the ``time`` field. A process that saw
``info`` is retired; its next invocation would be an error in the history.

``pair_calls`` turns events into ``Call`` values (one per invocation) with the event
positions the checkers compare: ``start`` (position of the invoke) and ``end`` (position of
the completion, or ``INFINITY`` for info and never-completed calls).

File formats (JSONL, EDN, Jepsen logs) are read and written by ``kvcheck.checker.formats``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

OpType = Literal["invoke", "ok", "fail", "info"]
OP_TYPES: tuple[str, ...] = ("invoke", "ok", "fail", "info")
NEMESIS = "nemesis"
INFINITY = math.inf

# Stream ops: one invocation answered by any number of completion lines (a watch: one ``ok``
# line per response received, then an end line, ``ok`` or ``info``). See pair_calls.
STREAM_FS: frozenset[str] = frozenset({"watch"})

# Fields with a meaning of their own; anything else is kept in Op.extra.
KNOWN_FIELDS = ("index", "time", "process", "type", "f", "value", "key", "node", "error")


@dataclass(slots=True)
class Op:
    """One event of a history, with Jepsen's field names."""

    type: str
    f: Any
    value: Any = None
    process: int | str | None = None
    time: int | None = None
    index: int | None = None  # the file's own index field, when it has one
    key: Any = None
    node: Any = None
    error: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    position: int = -1  # 0-based place in the file, counting every op (nemesis included)
    line: int | None = None  # source line, for error messages

    @property
    def id(self) -> int:
        """The op's identity in every report: its index field, else its file position."""
        return self.index if self.index is not None else self.position

    @property
    def is_nemesis(self) -> bool:
        return self.process == NEMESIS or not isinstance(self.process, int)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (history.jsonl line), fields in Jepsen's order."""
        out: dict[str, Any] = {}
        if self.index is not None:
            out["index"] = self.index
        if self.time is not None:
            out["time"] = self.time
        out["process"] = self.process
        out["type"] = self.type
        out["f"] = self.f
        out["value"] = self.value
        for name in ("key", "node", "error"):
            v = getattr(self, name)
            if v is not None:
                out[name] = v
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], position: int = -1, line: int | None = None) -> Op:
        extra = {k: v for k, v in d.items() if k not in KNOWN_FIELDS}
        return cls(
            type=d["type"],
            f=d.get("f"),
            value=d.get("value"),
            process=d.get("process"),
            time=d.get("time"),
            index=d.get("index"),
            key=d.get("key"),
            node=d.get("node"),
            error=d.get("error"),
            extra=extra,
            position=position,
            line=line,
        )


@dataclass(slots=True)
class Call:
    """An invocation and its completion, as the linearizability checker sees it.

    ``start``/``end`` are event positions in the history (real-time order); ``end`` is
    ``INFINITY`` for info and never-completed calls. ``value`` is the completion's value for
    ok calls (a read's result) and the invocation's otherwise.
    """

    invoke: Op
    completion: Op | None
    start: float
    end: float

    @property
    def outcome(self) -> str:
        """"ok", "fail", "info", or "pending" (never completed)."""
        return self.completion.type if self.completion is not None else "pending"

    @property
    def f(self) -> Any:
        return self.invoke.f

    @property
    def process(self) -> int | str | None:
        return self.invoke.process

    @property
    def key(self) -> Any:
        return self.invoke.key

    @property
    def value(self) -> Any:
        c = self.completion
        if c is not None and c.type == "ok" and c.value is not None:
            return c.value
        return self.invoke.value

    @property
    def id(self) -> int:
        return self.invoke.id


class HistoryError(ValueError):
    """A history that is well-formed as a file but not as a history (e.g. a completion
    with no invocation). ``op`` is the offending event."""

    def __init__(self, message: str, op: Op | None = None) -> None:
        super().__init__(message)
        self.op = op

    @property
    def line(self) -> int | None:
        """The file line of the offending event, for a ``MalformedInput`` (None if unknown)."""
        return self.op.line if self.op is not None else None


def pair_calls(ops: Sequence[Op], *, include_nemesis: bool = False) -> list[Call]:
    """Pair each invocation with its process's next completion, in history order.

    A stream op (f in ``STREAM_FS``, e.g. ``watch``) is answered by several lines: every
    completion after the first joins the same call (its ``completion`` and ``end`` are the
    latest line) until an ``info`` line ends the stream and retires the process.

    Raises HistoryError for a completion without an invocation, a second invocation while
    one is open, or an invocation by a process that already saw ``info``.
    """
    open_calls: dict[Any, Call] = {}
    streams: dict[Any, Call] = {}  # process -> its stream call still answering
    retired: set[Any] = set()
    calls: list[Call] = []
    for pos, op in enumerate(ops):
        if op.is_nemesis and not include_nemesis:
            continue
        proc = op.process
        if op.type == "invoke":
            if proc in streams:
                raise HistoryError(f"process {proc!r} invokes while its stream op {streams[proc].id} is open", op)
            if proc in open_calls:
                raise HistoryError(f"process {proc!r} invokes while its op {open_calls[proc].id} is open", op)
            if proc in retired and not op.is_nemesis:
                raise HistoryError(f"process {proc!r} invokes after an info completion retired it", op)
            call = Call(invoke=op, completion=None, start=pos, end=INFINITY)
            open_calls[proc] = call
            calls.append(call)
        elif op.type in ("ok", "fail", "info"):
            call_or_none = open_calls.pop(proc, None)
            if call_or_none is None:
                call_or_none = streams.get(proc)
            if call_or_none is None:
                if op.is_nemesis:
                    continue  # nemesis info ops often stand alone
                raise HistoryError(f"process {proc!r} completes ({op.type}) with no open invocation", op)
            call_or_none.completion = op
            if call_or_none.f in STREAM_FS:
                streams[proc] = call_or_none
            if op.type == "info":
                retired.add(proc)
                streams.pop(proc, None)
                call_or_none.end = INFINITY
            else:
                call_or_none.end = pos
        else:
            raise HistoryError(f"unknown op type {op.type!r}", op)
    return calls


def client_ops(ops: Iterable[Op]) -> list[Op]:
    """The ops models see: every op except nemesis ops."""
    return [op for op in ops if not op.is_nemesis]
