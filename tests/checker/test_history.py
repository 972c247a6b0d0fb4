"""The history model: op identity, nemesis ops, pairing invocations with completions."""

from __future__ import annotations

import pytest

from kvcheck.checker.history import INFINITY, HistoryError, Op, client_ops, pair_calls


def op(process: int | str, type_: str, f: str = "read", value: object = None, **kw: object) -> Op:
    return Op(type=type_, f=f, value=value, process=process, **kw)  # type: ignore[arg-type]


def history(*ops: Op) -> list[Op]:
    out = list(ops)
    for i, o in enumerate(out):
        o.position = i
    return out


def test_identity_is_index_else_position() -> None:
    a = op(0, "invoke", index=7, position=0)
    b = op(0, "ok", position=1)
    assert (a.id, b.id) == (7, 1)


def test_nemesis_ops_are_kept_but_not_paired() -> None:
    h = history(
        op(0, "invoke", "write", 1),
        op("nemesis", "info", "start"),
        op(0, "ok", "write", 1),
        op("nemesis", "info", "stop"),
    )
    calls = pair_calls(h)
    assert len(calls) == 1
    assert (calls[0].start, calls[0].end, calls[0].outcome) == (0, 2, "ok")
    assert [o.f for o in client_ops(h)] == ["write", "write"]
    assert h[1].is_nemesis and not h[0].is_nemesis


def test_outcomes_and_values() -> None:
    h = history(
        op(0, "invoke", "read"),
        op(1, "invoke", "write", 3),
        op(2, "invoke", "cas", [1, 2]),
        op(3, "invoke", "write", 4),
        op(0, "ok", "read", 3),
        op(1, "info", "write", "timed-out"),
        op(2, "fail", "cas", [1, 2]),
    )
    calls = {c.process: c for c in pair_calls(h)}
    assert calls[0].value == 3 and calls[0].end == 4  # a read's value is its completion's
    assert calls[1].outcome == "info" and calls[1].end == INFINITY and calls[1].value == 3
    assert calls[2].outcome == "fail" and calls[2].end == 6
    assert calls[3].outcome == "pending" and calls[3].end == INFINITY


@pytest.mark.parametrize(
    ("ops", "message", "bad"),
    [
        ([op(0, "ok")], "no open invocation", 0),
        ([op(0, "invoke"), op(0, "invoke")], "invokes while", 1),
        ([op(0, "invoke"), op(0, "info"), op(0, "invoke")], "retired", 2),
        ([op(0, "invoke"), op(0, "done")], "unknown op type", 1),
    ],
)
def test_pairing_errors_name_the_op(ops: list[Op], message: str, bad: int) -> None:
    h = history(*ops)
    with pytest.raises(HistoryError, match=message) as info:
        pair_calls(h)
    assert info.value.op is h[bad]


def test_dict_round_trip_keeps_extra_fields() -> None:
    d = {"index": 3, "time": 10, "process": 1, "type": "ok", "f": "read", "value": [1, 2],
         "key": "k", "node": "n1", "error": "e", "revision": 12}
    o = Op.from_dict(d, position=5, line=9)
    assert o.extra == {"revision": 12} and o.id == 3 and o.line == 9
    assert o.to_dict() == d
