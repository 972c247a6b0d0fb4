"""Ops as one line of text, the way every terminal summary names them
(``op 491 (p70 ok read 0)``): used by ``kvcheck check``, the run summary and the checkers'
own summary lines, so an op reads the same everywhere."""

from __future__ import annotations

import json
from typing import Any


def op_text(op: dict[str, Any] | None) -> str:
    """An op as one line: ``op 491 (p70 ok read 0)``, with its key when it has one."""
    if op is None:
        return "(none)"
    proc = op.get("process")
    who = f"p{proc}" if isinstance(proc, int) else str(proc)
    parts = [who, str(op.get("type")), str(op.get("f"))]
    if op.get("key") is not None:
        parts.append(f"key={compact(op['key'])}")
    parts.append(compact(op.get("value")))
    return f"op {op.get('index')} ({' '.join(parts)})"


def compact(v: Any) -> str:
    s = json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)
    return s if len(s) <= 80 else s[:77] + "..."
