"""The availability checker: once no fault has been active for the bound, clients get answers."""

from __future__ import annotations

from typing import Any

from kvcheck.checker.api import CheckOptions, get_checker
from kvcheck.checker.availability import quiet_windows
from kvcheck.checker.history import Op

S = 1_000_000_000


def history(rows: list[tuple[float, Any, str, str, float]]) -> list[Op]:
    """(invoke time s, process, f, completion type, completion time s) -> ops in time order;
    process "nemesis" rows are a fault's start or stop (f start-x / stop-x)."""
    events: list[tuple[float, int, Op]] = []
    for n, (t, proc, f, typ, done) in enumerate(rows):
        events.append((t, 2 * n, Op("invoke", f, None, proc, time=int(t * S))))
        events.append((done, 2 * n + 1, Op(typ, f, None, proc, time=int(done * S))))
    ops = [op for _, _, op in sorted(events, key=lambda e: (e[0], e[1]))]
    for i, op in enumerate(ops):
        op.index = op.position = i
    return ops


def check(ops: list[Op], bound: float = 5.0, **extra: Any) -> Any:
    return get_checker("availability").check(ops, CheckOptions(extra={"availability_bound": bound, **extra}))


def writes(start: float, end: float, typ: str, step: float = 1.0, timeout: float = 2.0) -> list[tuple[float, Any, str, str, float]]:
    rows = []
    t, p = start, 0
    while t < end:
        rows.append((t, p, "write", typ, t + (timeout if typ == "info" else 0.01)))
        p += 1  # an info retires its process
        t += step
    return rows


def test_a_store_that_never_answers_after_the_bound_is_unavailable() -> None:
    result = check(history(writes(0.0, 20.0, "info")))
    assert result.valid is False
    [a] = result.anomalies
    assert a.kind == "unavailable" and a.detail["f"] == "write"
    assert "no write invoked between 5.00s and" in a.explanation


def test_one_answer_in_the_window_is_enough() -> None:
    rows = writes(0.0, 20.0, "info")
    rows.append((12.0, 500, "write", "ok", 12.01))
    assert check(history(rows)).valid is True
    rows[-1] = (12.0, 500, "write", "fail", 12.01)  # a definite failure is an answer too
    assert check(history(rows)).valid is True


def test_timeouts_during_faults_and_within_the_bound_are_not_judged() -> None:
    # faults from 0 to 10 and 11 to 20: no quiet window lasts the bound
    rows = [(0.0, "nemesis", "start-partition", "info", 0.0), (10.0, "nemesis", "stop-partition", "info", 10.0),
            (11.0, "nemesis", "start-kill", "info", 11.0), (20.0, "nemesis", "stop-kill", "info", 20.0)]
    result = check(history(rows + writes(0.0, 20.0, "info")))
    assert result.valid is True
    # the same timeouts well after the last heal are an anomaly
    result = check(history(rows + writes(0.0, 40.0, "info")))
    assert result.valid is False
    assert result.anomalies[0].detail["window"] == [20.0, None]


def test_too_few_ops_prove_nothing_and_exempt_ops_are_skipped() -> None:
    assert check(history(writes(10.0, 12.0, "info"))).valid is True  # two ops
    assert check(history(writes(0.0, 20.0, "info")), availability_exempt=["write"]).valid is True


def test_overlapping_faults_of_one_kind_are_counted() -> None:
    rows = [(0.0, "nemesis", "start-kill", "info", 0.0), (1.0, "nemesis", "start-kill", "info", 1.0),
            (2.0, "nemesis", "stop-kill", "info", 2.0), (9.0, "nemesis", "stop-kill", "info", 9.0)]
    assert quiet_windows(history(rows)) == [(9.0, float("inf"))]


def test_an_answer_of_another_kind_is_a_bad_response() -> None:
    ops = history([(1.0, 0, "write", "ok", 1.01), (2.0, 1, "write", "info", 2.01)])
    ops[-1].error = "bad-response: PutRequest answered with NoneType, not PutResponse: None"
    result = check(ops)
    assert result.valid is False
    [a] = result.anomalies
    assert a.kind == "bad-response" and "answered with NoneType" in a.explanation
    assert a.ops == [ops[2].id, ops[3].id]


def test_no_longer_silent_than_one_leader_change_is_no_anomaly() -> None:
    # watch swarm seed 138 on ordered links: the leader's Ready pass stalled (perturbation)
    # 0.1 s before the history's end, 8 s after the last heal; the five writes invoked in
    # those 0.12 s timed out 1 s later. One leader change (2 election timeouts + a client
    # timeout, 2.4 s there) may be that silent: Raft promises progress, not every answer.
    fault = [(19.5, "nemesis", "start-clock", "info", 19.5), (21.9, "nemesis", "stop-clock", "info", 21.9)]
    rows = fault + writes(0.0, 29.9, "ok", step=0.1) + writes(29.9, 30.05, "info", step=0.03, timeout=1.0)
    assert check(history(rows), bound=8.0).valid is False  # no span given: any stretch counts
    result = check(history(rows), bound=8.0, availability_span=2.4)
    assert result.valid is True and result.detail["span"] == 2.4
    # a cluster that answers nothing for longer than that has lost progress
    rows = fault + writes(0.0, 29.9, "ok", step=0.1) + writes(29.9, 32.0, "info", step=0.03, timeout=1.0)
    [a] = check(history(rows), bound=8.0, availability_span=2.4).anomalies
    assert a.kind == "unavailable" and a.detail["silent"] > 2.4
