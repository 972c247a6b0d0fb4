"""Hand-made histories for the linearizability checker: Jepsen's semantics of fail / info /
pending calls, per-key checking, counterexample fields, bounds and the JSON contract."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kvcheck.checker.history import HistoryError, Op, pair_calls
from kvcheck.checker.linearizable import check_history
from kvcheck.checker.models import get_model


def h(*events: tuple[Any, ...]) -> list[Op]:
    """Ops from (process, type, f, value[, key]) tuples, positions in order."""
    ops = []
    for i, ev in enumerate(events):
        p, t, f, v = ev[:4]
        ops.append(Op(type=t, f=f, value=v, process=p, key=ev[4] if len(ev) > 4 else None, position=i))
    return ops


def test_sequential_register_history_is_valid() -> None:
    ops = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
            (1, "invoke", "read", None), (1, "ok", "read", 1))
    r = check_history(ops, get_model("register"))
    assert r.valid is True
    assert r.to_json()["keys"]["null"]["valid"] is True


def test_stale_read_is_invalid_with_counterexample() -> None:
    ops = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
            (0, "invoke", "write", 2), (0, "ok", "write", 2),
            ("nemesis", "info", "start", None),
            (1, "invoke", "read", None), (1, "ok", "read", 1))
    r = check_history(ops, get_model("register"))
    assert r.valid is False
    k = r.keys["null"]
    assert k.op is not None and k.op["index"] == 6 and k.op["value"] == 1
    assert k.previous_ok is not None and k.previous_ok["index"] == 3
    assert k.final_paths == [[
        {"op": {"process": 0, "type": "ok", "f": "write", "value": 2, "index": 3}, "model": 2},
        {"op": {"process": 1, "type": "ok", "f": "read", "value": 1, "index": 6}, "model": None,
         "inconsistent": "can't read 1 from register 2"},
    ]]
    assert k.minimal_history is not None and k.minimal_is_1_minimal
    doc = json.loads(json.dumps(r.to_json()))
    assert set(doc) >= {"valid", "model", "check_seconds", "unknown_cause", "keys"}
    assert set(doc["keys"]["null"]) >= {"valid", "op", "previous_ok", "final_paths",
                                        "minimal_history", "unknown_cause"}


def test_concurrent_read_may_see_either_value() -> None:
    ops = h((0, "invoke", "write", 1), (1, "invoke", "read", None),
            (1, "ok", "read", None), (0, "ok", "write", 1),
            (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert check_history(ops, get_model("register")).valid is True


def test_failed_write_did_not_happen() -> None:
    ops = h((0, "invoke", "write", 1), (0, "fail", "write", 1),
            (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert check_history(ops, get_model("register")).valid is False


def test_info_write_may_take_effect_any_time_later() -> None:
    ops = h((0, "invoke", "write", 1), (0, "info", "write", 1),
            (1, "invoke", "read", None), (1, "ok", "read", None),
            (2, "invoke", "write", 2), (2, "ok", "write", 2),
            (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert check_history(ops, get_model("register")).valid is True  # w1 after w2
    ops = h((0, "invoke", "write", 1), (0, "info", "write", 1),
            (1, "invoke", "read", None), (1, "ok", "read", 1),
            (2, "invoke", "write", 2), (2, "ok", "write", 2),
            (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert check_history(ops, get_model("register")).valid is False  # it happened once
    # but not before its invocation
    ops = h((1, "invoke", "read", None), (1, "ok", "read", 1),
            (0, "invoke", "write", 1), (0, "info", "write", 1))
    assert check_history(ops, get_model("register")).valid is False


def test_never_completed_call_is_like_info() -> None:
    ops = h((0, "invoke", "cas", [None, 5]),
            (1, "invoke", "read", None), (1, "ok", "read", 5))
    assert check_history(ops, get_model("cas-register")).valid is True


def test_keys_are_checked_separately_and_any_invalid_key_decides() -> None:
    ops = h((0, "invoke", "put", "a", "k1"), (0, "ok", "put", "a", "k1"),
            (1, "invoke", "get", None, "k2"), (1, "ok", "get", "", "k2"),
            (1, "invoke", "get", None, "k1"), (1, "ok", "get", "a", "k1"),
            (2, "invoke", "append", "b", "k2"), (2, "ok", "append", "b", "k2"),
            (1, "invoke", "get", None, "k2"), (1, "ok", "get", "bb", "k2"))
    r = check_history(ops, get_model("kv"))
    assert r.valid is False
    assert r.keys["k1"].valid is True
    assert r.keys["k2"].valid is False
    assert r.keys["k2"].op is not None and r.keys["k2"].op["index"] == 9


def test_nemesis_only_history_is_valid() -> None:
    ops = h(("nemesis", "info", "start", None), ("nemesis", "info", "stop", None))
    r = check_history(ops, get_model("cas-register"))
    assert r.valid is True and list(r.keys) == ["null"]


def test_malformed_history_raises() -> None:
    with pytest.raises(HistoryError):
        check_history(h((0, "ok", "read", 1)), get_model("register"))
    with pytest.raises(HistoryError, match="no operation"):
        check_history(h((0, "invoke", "frob", 1), (0, "ok", "frob", 1)), get_model("register"))


def test_mutex_double_acquire_is_invalid() -> None:
    ops = h((0, "invoke", "acquire", None), (0, "ok", "acquire", None),
            (1, "invoke", "acquire", None), (1, "fail", "acquire", None),
            (1, "invoke", "acquire", None), (1, "ok", "acquire", None))
    r = check_history(ops, get_model("mutex"))
    assert r.valid is False and r.keys["null"].op is not None and r.keys["null"].op["index"] == 5


def test_compare_failed_cas_needs_a_different_value() -> None:
    ops = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
            (1, "invoke", "cas", [1, 2]), (1, "fail", "cas", [1, 2]))
    assert check_history(ops, get_model("cas-register")).valid is True
    strict = get_model("cas-register", fail_cas_means_compare_failed=True)
    assert check_history(ops, strict).valid is False


def hard_history(n: int = 22) -> list[Op]:
    """n concurrent writes of distinct values (one repeated, so the unique-value fast path
    does not apply), then a read of a value nobody wrote: the search must rule out every
    order of the writes (about 2^n configurations). Every value written is also read by a
    read open throughout, so no two writes are interchangeable (the search merges values
    nobody observes: ``merge_unobserved``)."""
    events: list[tuple[Any, ...]] = [(n + 1 + p, "invoke", "read", None) for p in range(n - 1)]
    events += [(p, "invoke", "write", p) for p in range(n)]
    events[-1] = (n - 1, "invoke", "write", 0)
    events.append((n, "invoke", "read", None))
    events.append((n, "ok", "read", -1))
    events += [(p, "ok", "write", p if p < n - 1 else 0) for p in range(n)]
    events += [(n + 1 + p, "ok", "read", p) for p in range(n - 1)]
    return h(*events)


def test_timeout_gives_unknown_with_cause() -> None:
    r = check_history(hard_history(), get_model("register"), timeout=0.2)
    assert r.valid == "unknown"
    assert r.unknown_cause is not None and "timeout" in r.unknown_cause
    # the key's cause: the file's, and how far this key's search got
    cause = r.keys["null"].unknown_cause
    assert cause is not None and cause.startswith(r.unknown_cause) and "states explored" in cause
    assert r.keys["null"].states_explored > 0 and r.keys["null"].max_frontier >= 1
    assert r.to_json()["valid"] == "unknown"


def test_memory_limit_gives_unknown_with_cause() -> None:
    r = check_history(hard_history(), get_model("register"), memory_limit_mb=1, timeout=30)
    assert r.valid == "unknown"
    assert r.unknown_cause is not None and "memory limit" in r.unknown_cause


def test_hard_key_does_not_hide_another_keys_violation() -> None:
    ops = [Op(type=o.type, f="put" if o.f == "write" else "get",
              value=str(o.value) if o.value is not None else None,
              process=o.process, key="hard", position=o.position) for o in hard_history()]
    base = len(ops)
    ops += h((100, "invoke", "put", "x", "easy"), (100, "ok", "put", "x", "easy"),
             (101, "invoke", "get", None, "easy"), (101, "ok", "get", "y", "easy"))
    for i, op in enumerate(ops[base:]):
        op.position = base + i
    r = check_history(ops, get_model("kv"), timeout=0.5)
    assert r.valid is False
    assert r.keys["easy"].valid is False
    assert r.keys["hard"].valid == "unknown"


def _timed_out_writes_and_compare_failed_cas(n: int, k: int, bad: bool = False) -> list[Op]:
    """write 100; n writes of distinct values nobody reads, all timed out (info); then k rounds
    of an ok write of a new value followed by a compare-failed cas against it: each cas needs
    one more of the timed-out writes between it and its round's write. With ``bad``, a
    compare-failed cas against 100 comes before any timed-out write is invoked: invalid."""
    ev: list[tuple[Any, ...]] = [(0, "invoke", "write", 100), (0, "ok", "write", 100)]
    if bad:
        ev += [(1, "invoke", "cas", [100, 999]), (1, "fail", "cas", [100, 999])]
    ev += [(10 + p, "invoke", "write", 1000 + p) for p in range(n)]
    for j in range(k):
        ev += [(2, "invoke", "write", 101 + j), (2, "ok", "write", 101 + j),
               (3, "invoke", "cas", [101 + j, 999]), (3, "fail", "cas", [101 + j, 999])]
    return h(*ev)


def test_writes_nobody_observes_are_one_value_to_the_search() -> None:
    """Clean watch swarm seed 1004 (unknown before: the search ran out of 100 s): hundreds of
    timed-out writes whose values nobody read, beside compare-failed cas (which keep
    ``droppable`` from dropping them). The search treats their values as one, so it no
    longer walks every subset of them in every order (16 writes, 8 rounds: 47,201 states
    explored before, tens now)."""
    from kvcheck.checker.linearizable import UNOBSERVED, build_entries, merge_unobserved

    model = get_model("cas-register", fail_cas_means_compare_failed=True)
    r = check_history(_timed_out_writes_and_compare_failed_cas(16, 8), model, timeout=60)
    assert r.valid is True
    assert r.keys["null"].states_explored < 1000
    # only values no read or cas observes are merged
    calls = pair_calls(h((0, "invoke", "write", 1), (0, "ok", "write", 1), (1, "invoke", "write", 2),
                         (2, "invoke", "read", None), (2, "ok", "read", 1), (3, "invoke", "cas", [1, 6]),
                         (3, "fail", "cas", [1, 6]), (4, "invoke", "cas", [1, 7])))
    entries = build_entries(model, calls)
    merged = [e.action.value for e in merge_unobserved(model, entries)]
    assert merged == [1, UNOBSERVED, 1, (1, 6), (1, UNOBSERVED)]


def test_merged_unobserved_writes_still_leave_a_violation_invalid() -> None:
    model = get_model("cas-register", fail_cas_means_compare_failed=True)
    r = check_history(_timed_out_writes_and_compare_failed_cas(16, 8, bad=True), model, timeout=60)
    assert r.valid is False
