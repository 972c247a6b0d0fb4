"""The recorder: indexes, times, pairing, deterministic JSONL bytes."""

from __future__ import annotations

import io
import json

import pytest

from kvcheck.checker.history import pair_calls
from kvcheck.workloads.recorder import Recorder, write_jsonl


def test_events_get_index_and_ns_time_and_pair() -> None:
    now = [10.0]
    rec = Recorder(lambda: now[0])
    a = rec.invoke(0, "write", 1)
    now[0] = 10.5
    rec.invoke(1, "read", None, key="k")
    rec.complete(a, "ok", 1, node=2)
    rec.nemesis("start-partition", {"blocked": [[1, 2]]})
    assert [op.index for op in rec.ops] == [0, 1, 2, 3, 4]
    assert [op.time for op in rec.ops] == [0, 500_000_000, 500_000_000, 500_000_000, 500_000_000]
    calls = pair_calls(rec.ops)
    assert [c.outcome for c in calls] == ["ok", "pending"]
    assert [op.key for op in rec.open_ops()] == ["k"]


def test_invoking_twice_or_completing_a_closed_op_is_an_error() -> None:
    rec = Recorder(lambda: 0.0)
    a = rec.invoke(0, "write", 1)
    with pytest.raises(ValueError, match="while op 0 is open"):
        rec.invoke(0, "read")
    rec.complete(a, "info", 1, error="timeout")
    with pytest.raises(ValueError, match="is not open"):
        rec.complete(a, "ok")
    with pytest.raises(ValueError, match="completion type"):
        rec.complete(rec.invoke(1, "read"), "done")


def test_jsonl_has_jepsen_fields_and_is_byte_stable() -> None:
    rec = Recorder(lambda: 0.0)
    rec.complete(rec.invoke(3, "cas", [1, 2], key="k1"), "fail", [1, 2], error="compare-failed")
    out1, out2 = io.StringIO(), io.StringIO()
    write_jsonl(rec.ops, out1)
    write_jsonl(rec.ops, out2)
    assert out1.getvalue() == out2.getvalue()
    lines = out1.getvalue().splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["index", "time", "process", "type", "f", "value", "key"]
    assert json.loads(lines[1])["error"] == "compare-failed"
