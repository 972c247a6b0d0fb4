"""What a target's execution returns (``Execution``) and the progress bar it drives
(``Progress``): the types shared by ``workloads.run`` and the targets (``workloads.sim``,
``workloads.local``), kept below both so neither imports the other."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
