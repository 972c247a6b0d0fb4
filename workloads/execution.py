"""What a target's execution returns (``Execution``) and the progress bar it drives
(``Progress``): the types shared by ``workloads.run`` and the targets (``workloads.sim``,
``workloads.local``), kept below both so neither imports the other."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import trio

from kvcheck.checker.history import Op
from kvcheck.workloads.config import RunConfig


@dataclass
class Execution:
    """What a target returns: the history and facts about the run."""

    ops: list[Op]
    info: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)  # file name -> text


Executor = Callable[[RunConfig, "Progress"], Execution]


class Progress:
    """A tqdm bar over simulated (or real) seconds with op and fault counts; silent when
    stderr is not a terminal or ``enabled`` is False."""

    def __init__(self, total: float, *, enabled: bool = True, desc: str = "run") -> None:
        self.total = total
        self.run_dir: Path | None = None  # the run directory, for targets that write into it
        self.ops = 0
        self.faults = 0
        self.shown = 0.0
        self.bar: Any = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=round(total, 1), desc=desc, unit="s", leave=False,
                            bar_format="{desc} {bar} {n:.1f}/{total:.1f}s simulated{postfix}")

    def event(self, op: Op, now: float) -> None:
        if op.type == "invoke":
            return
        if op.is_nemesis:
            self.faults += op.f.startswith("start-")
        else:
            self.ops += 1
        if self.bar is not None:
            wall = time.monotonic()
            if wall - self.shown >= 0.1:  # redraw at most ten times a (wall) second
                self.bar.n = round(min(now, self.total), 1)
                self.bar.set_postfix_str(f"{self.ops} ops, {self.faults} faults", refresh=False)
                self.bar.refresh()
                self.shown = wall

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def group_findings(events: Sequence[tuple[float, int, str]]) -> list[dict[str, Any]]:
    """A store's internal invariant findings, each distinct one once: ``{"finding", "count",
    "first_time" (seconds on the history's clock), "members"}``, in order of first
    appearance. Findings that differ only in the member they name ("node 3") are one."""
    grouped: dict[str, dict[str, Any]] = {}
    for t, member, text in events:
        key = _MEMBER.sub("node N", text)
        g = grouped.get(key)
        if g is None:
            g = grouped[key] = {"finding": text, "count": 0, "first_time": round(t, 4), "members": []}
        g["count"] += 1
        if member not in g["members"]:
            g["members"].append(member)
    return list(grouped.values())


_MEMBER = re.compile(r"\bnode \d+\b")


class StopOnSigint:
    """Ctrl-C stops a real-time run where it is instead of killing the process, so what was
    recorded is still written and checked. Inside ``with StopOnSigint() as sigint:`` (around
    ``trio.run``) the first SIGINT sets ``interrupted`` and cancels the scope last given to
    ``watch`` (through the run's trio token: safe from a signal handler); a second SIGINT
    raises ``KeyboardInterrupt`` as usual. Installed only in the main thread (a worker
    thread's run keeps the default behaviour). The simulation has its own handler: it stops
    at the next idle moment of virtual time, so that the stop point is deterministic."""

    def __init__(self) -> None:
        self.interrupted = False
        self._scope: trio.CancelScope | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._old: Any = None
        self._installed = False

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._old)
            self._installed = False

    def watch(self, scope: trio.CancelScope) -> trio.CancelScope:
        """From now on Ctrl-C cancels ``scope`` (at once if it was already pressed)."""
        self._token = trio.lowlevel.current_trio_token()
        self._scope = scope
        if self.interrupted:
            scope.cancel()
        return scope

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.interrupted = True
        if self._token is not None and self._scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self._scope.cancel)
