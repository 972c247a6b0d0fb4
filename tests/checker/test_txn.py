"""Oracle tests of the transactional checker: one hand-written history per anomaly class,
each detected with the right name (and nothing worse claimed of a clean history).

Histories are written as events ``(process, type, micro-ops)``; ``serial`` lays out
transactions one after another, ``concurrent`` invokes them all before completing any (so
real time orders none of them).
"""

from __future__ import annotations

from typing import Any

import pytest

from kvcheck.checker.api import CheckOptions, get_checker
from kvcheck.checker.history import HistoryError, Op
from kvcheck.checker.txn import lattice, prohibited

Mops = list[list[Any]]


def _inv(mops: Mops) -> Mops:
    return [[f, k, None if f == "r" else v] for f, k, v in mops]


def ops_of(events: list[tuple[int, str, Mops]]) -> list[Op]:
    return [Op(type=t, f="txn", value=v, process=p, index=i) for i, (p, t, v) in enumerate(events)]


def serial(*txns: tuple[int, str, Mops]) -> list[Op]:
    """Each (process, outcome, completed micro-ops) invoked and completed in turn."""
    events: list[tuple[int, str, Mops]] = []
    for p, outcome, mops in txns:
        events.append((p, "invoke", _inv(mops)))
        events.append((p, outcome, mops if outcome == "ok" else _inv(mops)))
    return ops_of(events)


def concurrent(*txns: tuple[int, str, Mops]) -> list[Op]:
    """All invoked, then all completed: no real-time order between them."""
    events: list[tuple[int, str, Mops]] = [(p, "invoke", _inv(m)) for p, _, m in txns]
    events += [(p, o, m if o == "ok" else _inv(m)) for p, o, m in txns]
    return ops_of(events)


def check(ops: list[Op], model: str | None = None) -> Any:
    return get_checker("txn").check(ops, CheckOptions(consistency_model=model))


def kinds(result: Any) -> set[str]:
    return set(result.detail["anomaly_counts"])


def test_serial_append_history_is_valid() -> None:
    r = check(serial(
        (0, "ok", [["append", "x", 1], ["r", "y", None]]),
        (1, "ok", [["r", "x", [1]], ["append", "y", 1], ["append", "x", 2]]),
        (0, "ok", [["r", "x", [1, 2]], ["r", "y", [1]]]),
    ))
    assert r.valid is True, r.anomalies
    assert r.detail["strongest_satisfied"] == ["strict-serializable"]
    assert r.detail["weakest_violated"] == []


def test_g0_write_cycle() -> None:
    ops = concurrent((0, "ok", [["append", "x", 1], ["append", "y", 1]]),
                     (1, "ok", [["append", "x", 2], ["append", "y", 2]]))
    ops += serial((2, "ok", [["r", "x", [1, 2]], ["r", "y", [2, 1]]]))
    ops = [Op(o.type, o.f, o.value, o.process, index=i) for i, o in enumerate(ops)]
    r = check(ops)
    assert r.valid is False
    assert "G0" in kinds(r)
    g0 = next(a for a in r.anomalies if a.kind == "G0")
    assert "appended 2 to key x right after T2's append of 1" in g0.explanation
    assert "a contradiction" in g0.explanation
    assert g0.detail["dot"].startswith("digraph")
    assert r.detail["weakest_violated"] == ["read-uncommitted"]


def test_g1a_aborted_read_and_dirty_update() -> None:
    r = check(serial(
        (0, "fail", [["append", "x", 1]]),
        (1, "ok", [["append", "x", 2]]),
        (2, "ok", [["r", "x", [1, 2]]]),
    ))
    assert {"G1a", "dirty-update"} <= kinds(r)
    assert r.valid is False


def test_g1b_intermediate_read() -> None:
    r = check(concurrent(
        (0, "ok", [["append", "x", 1], ["append", "x", 2]]),
        (1, "ok", [["r", "x", [1]]]),
    ))
    assert "G1b" in kinds(r)
    assert r.detail["weakest_violated"] == ["read-committed"]


def test_g1c_circular_information_flow() -> None:
    r = check(concurrent(
        (0, "ok", [["append", "x", 1], ["r", "y", [1]]]),
        (1, "ok", [["append", "y", 1], ["r", "x", [1]]]),
    ))
    assert "G1c" in kinds(r)
    assert "G0" not in kinds(r)


def test_g_single_read_skew() -> None:
    ops = concurrent(
        (0, "ok", [["r", "x", []], ["r", "y", [1]]]),
        (1, "ok", [["append", "x", 1], ["append", "y", 1]]),
    )
    ops += serial((2, "ok", [["r", "x", [1]]]))
    ops = [Op(o.type, o.f, o.value, o.process, index=i) for i, o in enumerate(ops)]
    r = check(ops)
    assert kinds(r) == {"G-single"}
    a = r.anomalies[0]
    assert "without T" in a.explanation and "read T" in a.explanation
    assert "snapshot-isolation" in r.detail["weakest_violated"]
    assert r.detail["strongest_satisfied"] == ["cursor-stability"]
    # read committed allows it
    assert check(ops, "read-committed").valid is True


def test_g2_item_write_skew() -> None:
    ops = concurrent(
        (0, "ok", [["r", "x", []], ["append", "y", 1]]),
        (1, "ok", [["r", "y", []], ["append", "x", 1]]),
    )
    ops += serial((2, "ok", [["r", "x", [1]], ["r", "y", [1]]]))
    ops = [Op(o.type, o.f, o.value, o.process, index=i) for i, o in enumerate(ops)]
    r = check(ops)
    assert kinds(r) == {"G2-item"}
    assert r.detail["strongest_satisfied"] == ["snapshot-isolation"]
    assert r.detail["weakest_violated"] == ["repeatable-read"]
    assert check(ops, "snapshot-isolation").valid is True


def test_g_nonadjacent() -> None:
    ops = concurrent(
        (0, "ok", [["r", "a", []], ["r", "d", [1]]]),
        (1, "ok", [["append", "a", 1], ["append", "b", 1]]),
        (2, "ok", [["r", "b", [1]], ["r", "c", []]]),
        (3, "ok", [["append", "c", 1], ["append", "d", 1]]),
    )
    ops += serial((4, "ok", [["r", "a", [1]], ["r", "c", [1]]]))
    ops = [Op(o.type, o.f, o.value, o.process, index=i) for i, o in enumerate(ops)]
    r = check(ops)
    assert "G-nonadjacent" in kinds(r)
    assert not kinds(r) & {"G0", "G1c", "G-single"}
    assert "snapshot-isolation" in r.detail["weakest_violated"]


def test_g_single_process_and_realtime() -> None:
    # Same process: T1 appends, then T2 on the same process does not see it.
    ops = serial((0, "ok", [["append", "x", 1]]), (0, "ok", [["r", "x", []]]), (1, "ok", [["r", "x", [1]]]))
    r = check(ops)
    assert kinds(r) == {"G-single-process"}
    assert r.detail["strongest_satisfied"] == ["serializable"]
    assert check(ops, "serializable").valid is True
    # Different processes, but the append completed before the read began.
    ops = serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["r", "x", []]]), (2, "ok", [["r", "x", [1]]]))
    r = check(ops)
    assert kinds(r) == {"G-single-realtime"}
    assert "completed before" in r.anomalies[0].explanation
    assert r.detail["strongest_satisfied"] == ["strong-session-serializable"]
    assert check(ops, "strong-session-serializable").valid is True
    # Overlapping in real time: valid.
    ops = concurrent((0, "ok", [["append", "x", 1]]), (1, "ok", [["r", "x", []]]))
    ops += serial((2, "ok", [["r", "x", [1]]]))
    ops = [Op(o.type, o.f, o.value, o.process, index=i) for i, o in enumerate(ops)]
    assert check(ops).valid is True


def test_lost_update() -> None:
    ops = concurrent((0, "ok", [["r", "x", []], ["append", "x", 1]]),
                     (1, "ok", [["r", "x", []], ["append", "x", 2]]))
    ops += serial((2, "ok", [["r", "x", [1, 2]]]))
    ops = [Op(o.type, o.f, o.value, o.process, index=i) for i, o in enumerate(ops)]
    r = check(ops)
    assert "lost-update" in kinds(r)
    assert "cursor-stability" in r.detail["weakest_violated"]


def test_duplicate_elements() -> None:
    r = check(serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["r", "x", [1, 1]]])))
    assert "duplicate-elements" in kinds(r)
    assert r.valid is False


def test_internal() -> None:
    r = check(serial((0, "ok", [["append", "x", 1], ["r", "x", []]])))
    assert kinds(r) == {"internal"}
    r = check(serial((0, "ok", [["r", "x", []], ["append", "x", 1], ["r", "x", [1]]])))
    assert r.valid is True


def test_garbage_read() -> None:
    r = check(serial((0, "ok", [["r", "x", [9]]])))
    assert kinds(r) == {"garbage-read"}


def test_incompatible_order_names_both_reads() -> None:
    ops = concurrent((0, "ok", [["append", "x", 1]]), (1, "ok", [["append", "x", 2]]))
    ops += serial((2, "ok", [["r", "x", [1, 2]]]), (3, "ok", [["r", "x", [2]]]))
    ops = [Op(o.type, o.f, o.value, o.process, index=i) for i, o in enumerate(ops)]
    r = check(ops)
    a = next(a for a in r.anomalies if a.kind == "incompatible-order")
    assert len(a.ops) == 2 and "[2]" in a.explanation and "[1 2]" in a.explanation


def test_info_txn_may_or_may_not_have_happened() -> None:
    # An info append seen by a later read is fine; unseen is fine too.
    ops = serial((0, "info", [["append", "x", 1]]), (1, "ok", [["r", "x", [1]]]))
    assert check(ops).valid is True
    ops = serial((0, "info", [["append", "x", 1]]), (1, "ok", [["r", "x", []]]))
    assert check(ops).valid is True


# ---- rw-register (wr workload)


def test_wr_valid_and_anomalies() -> None:
    ok = serial((0, "ok", [["w", "x", 1], ["r", "y", None]]),
                (1, "ok", [["r", "x", 1], ["w", "x", 2]]),
                (0, "ok", [["r", "x", 2], ["r", "y", None]]))
    assert check(ok).valid is True
    r = check(concurrent((0, "ok", [["w", "x", 1], ["r", "y", 1]]), (1, "ok", [["w", "y", 1], ["r", "x", 1]])))
    assert "G1c" in kinds(r)
    r = check(concurrent((0, "ok", [["r", "x", None], ["r", "y", 1]]), (1, "ok", [["w", "x", 1], ["w", "y", 1]])))
    assert "G-single" in kinds(r)
    r = check(concurrent((0, "ok", [["r", "x", None], ["w", "x", 1]]), (1, "ok", [["r", "x", None], ["w", "x", 2]])))
    assert "lost-update" in kinds(r)
    assert "G1a" in kinds(check(serial((0, "fail", [["w", "x", 1]]), (1, "ok", [["r", "x", 1]]))))
    assert "G1b" in kinds(check(concurrent((0, "ok", [["w", "x", 1], ["w", "x", 2]]), (1, "ok", [["r", "x", 1]]))))
    assert "garbage-read" in kinds(check(serial((0, "ok", [["r", "x", 5]]))))
    assert "internal" in kinds(check(serial((0, "ok", [["w", "x", 5], ["r", "x", 4]]))))
    # a stale read in real time
    r = check(serial((0, "ok", [["w", "x", 1]]), (1, "ok", [["r", "x", None]])))
    assert kinds(r) == {"G-single-realtime"}


def test_malformed_micro_ops_are_errors() -> None:
    with pytest.raises(HistoryError):
        check(ops_of([(0, "invoke", [["inc", "x", 1]]), (0, "ok", [["inc", "x", 1]])]))
    with pytest.raises(HistoryError):
        check(ops_of([(0, "invoke", "x"), (0, "ok", "x")]))
    with pytest.raises(HistoryError):
        check(serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["append", "x", 1]])))


def test_lattice_is_monotone() -> None:
    assert prohibited("read-committed") < prohibited("serializable") < prohibited("strict-serializable")
    assert lattice(set()) == (["strict-serializable"], [])
    assert lattice({"G2-item"}) == (["snapshot-isolation"], ["repeatable-read"])


# ---- generated histories (Hypothesis)

from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kvcheck.checker.txnsim import corrupt_one_read, simulate  # noqa: E402

_histories = st.builds(
    lambda n, seed, clients, kind, conc, keys: simulate(
        n, seed=seed, clients=clients, kind=kind, concurrency=conc, active_keys=keys, key_bound=6, info_rate=0.1),
    st.integers(1, 60), st.integers(0, 2**32), st.integers(1, 6), st.sampled_from(["append", "wr"]),
    st.floats(0.0, 0.9), st.integers(1, 6))


@settings(max_examples=150, deadline=None)
@given(_histories)
def test_sequential_store_histories_are_valid(ops: list[Op]) -> None:
    r = check(ops)
    assert r.valid is True, [a.explanation for a in r.anomalies]


@settings(max_examples=150, deadline=None)
@given(_histories, st.integers(0, 2**32))
def test_one_impossible_read_makes_it_invalid(ops: list[Op], seed: int) -> None:
    import random

    bad = corrupt_one_read(ops, random.Random(seed))
    assume(bad is not None)
    assert bad is not None
    r = check(bad)
    assert r.valid is False


def test_one_component_with_several_classes_names_each() -> None:
    # A read skew (G-single) between T_a and T_b, and a G-nonadjacent cycle through T_b.
    ops = concurrent(
        (0, "ok", [["r", "a", []], ["r", "d", [1]], ["r", "e", [1]]]),
        (1, "ok", [["append", "a", 1], ["append", "b", 1], ["append", "e", 1]]),
        (2, "ok", [["r", "b", [1]], ["r", "c", []]]),
        (3, "ok", [["append", "c", 1], ["append", "d", 1]]),
    )
    ops += serial((4, "ok", [["r", "a", [1]], ["r", "c", [1]]]))
    ops = [Op(o.type, o.f, o.value, o.process, index=i) for i, o in enumerate(ops)]
    r = check(ops)
    assert r.detail["components"] == 1
    assert {"G-single", "G-nonadjacent"} <= kinds(r)


def test_bounds_give_unknown_with_the_cause() -> None:
    from kvcheck.checker.txnsim import simulate

    ops = simulate(3000, seed=3)
    r = get_checker("txn").check(ops, CheckOptions(timeout=1e-9))
    assert r.valid == "unknown" and r.unknown_cause and "timeout" in r.unknown_cause
    r = get_checker("txn").check(ops, CheckOptions(memory_limit_mb=1))
    assert r.valid == "unknown" and r.unknown_cause and "memory" in r.unknown_cause


def test_cycle_search_bound_is_reported() -> None:
    # One big component (every read misses the previous append: stale reads in real time)
    # with a zero search budget: still invalid (a cycle is always named), and the cause says
    # the search stopped.
    txns = [(i % 3, "ok", [["append", "x", i + 1], ["r", "y", []]]) for i in range(30)]
    txns += [(5, "ok", [["append", "y", 1]])]
    txns += [(i % 3, "ok", [["r", "y", []], ["r", "x", list(range(1, 31))]]) for i in range(30)]
    txns += [(6, "ok", [["r", "y", [1]]])]
    ops = serial(*txns)
    r = get_checker("txn").check(ops, CheckOptions(extra={"cycle_search_seconds": 0.0}))
    assert r.valid is False
    assert any("stopped" in c for c in r.detail.get("search_causes", []))


def test_html_section_draws_each_cycle() -> None:
    ops = serial((0, "ok", [["append", "x", 1]]), (1, "ok", [["r", "x", []]]), (2, "ok", [["r", "x", [1]]]))
    r = check(ops)
    html = get_checker("txn").html_section(r.to_json(), ops)
    assert "G-single-realtime" in html and "digraph" in html
    import shutil

    if shutil.which("dot"):
        assert "<svg" in html
