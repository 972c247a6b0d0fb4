"""The members checker: final per-member reads of members that applied the same log agree."""

from __future__ import annotations

from typing import Any

import pytest

from kvcheck.checker.api import CheckOptions, get_checker, run_checkers
from kvcheck.checker.history import HistoryError, Op


def member_reads(rows: list[tuple[int, str | None, Any, int | None, dict[str, Any]]]) -> list[Op]:
    """(member, key, value read, applied index, more completion fields) -> invoke/ok pairs."""
    ops: list[Op] = []
    for n, (member, key, value, applied, more) in enumerate(rows):
        process = 200_000 + n
        extra: dict[str, Any] = {"member_read": True}
        ops.append(Op("invoke", "read", None, process, key=key, node=member, extra=dict(extra)))
        if applied is not None:
            extra["applied"] = applied
        ops.append(Op("ok", "read", value, process, key=key, node=member, extra={**extra, **more}))
    for i, op in enumerate(ops):
        op.index = op.position = i
    return ops


def check(ops: list[Op]) -> Any:
    return get_checker("members").check(ops, CheckOptions())


def test_members_that_agree_are_valid() -> None:
    ops = member_reads([(m, k, v, 40, {"revision": 17, "hash_kv": 99, "hash_revision": 17})
                        for m in (1, 2, 3) for k, v in (("k0", 5), ("k1", None))])
    result = check(ops)
    assert result.valid is True
    assert result.detail["member_reads"] == 6
    assert result.detail["applied_indexes"] == {"40": [1, 2, 3]}


def test_a_member_with_another_value_is_named_with_its_value() -> None:
    ops = member_reads([(1, "k0", 5, 40, {}), (2, "k0", 5, 40, {}), (3, "k0", 7, 40, {})])
    result = check(ops)
    assert result.valid is False
    (a,) = result.anomalies
    assert a.kind == "divergent-members"
    assert "key k0" in a.explanation and "n1, n2 read 5" in a.explanation and "n3 read 7" in a.explanation
    assert a.detail["values"] == {"1": 5, "2": 5, "3": 7}
    assert sorted(a.ops) == [1, 3, 5]  # the three completions


def test_different_revisions_or_hashes_at_one_applied_index_are_divergence() -> None:
    revs = member_reads([(1, "k0", 5, 40, {"revision": 17}), (2, "k0", 5, 40, {"revision": 18})])
    (a,) = check(revs).anomalies
    assert "different store revisions" in a.explanation and "n2 at revision 18" in a.explanation
    hashes = member_reads([(1, "k0", 5, 40, {"revision": 17, "hash_kv": 1, "hash_revision": 17}),
                           (2, "k0", 5, 40, {"revision": 17, "hash_kv": 2, "hash_revision": 17})])
    (b,) = check(hashes).anomalies
    assert "HashKV" in b.explanation and b.detail["hash_kv"] == {"1": [17, 1], "2": [17, 2]}


def test_members_at_different_applied_indexes_or_without_one_are_not_compared() -> None:
    ops = member_reads([(1, "k0", 5, 40, {}), (2, "k0", 7, 41, {}), (3, "k0", 9, None, {})])
    result = check(ops)
    assert result.valid is True
    assert result.detail["not_compared"] == 1


def test_register_key_and_failed_reads() -> None:
    ops = member_reads([(1, None, 5, 40, {}), (2, None, 6, 40, {})])
    ops.append(Op("invoke", "read", None, 300_000, node=3, extra={"member_read": True}))
    ops.append(Op("fail", "read", None, 300_000, node=3, extra={"member_read": True}))
    (a,) = check(ops).anomalies
    assert a.explanation.startswith("the register:")


def test_a_member_read_without_a_member_is_malformed() -> None:
    ops = member_reads([(1, "k0", 5, 40, {})])
    for op in ops:
        op.node = None
    with pytest.raises(HistoryError, match="names no member"):
        check(ops)


def test_histories_without_member_reads_are_valid_and_other_reads_ignored() -> None:
    ops = [Op("invoke", "read", None, 0, key="k0", index=0), Op("ok", "read", 3, 0, key="k0", node=2, index=1)]
    result = run_checkers(["linearizable", "members"], ops, CheckOptions(model="cas-register"))
    assert result["members"].valid is True and result["members"].detail["member_reads"] == 0


def asked(member: int, outcomes: list[tuple[float, float, str]], start: int = 0) -> list[Op]:
    """Linearizable member reads of ``member``: (invoked at s, completed at s, ok|fail|info)."""
    ops: list[Op] = []
    for n, (t0, t1, kind) in enumerate(outcomes):
        extra = {"member_read": True, "linearizable": True}
        process = 200_000 + member * 1000 + 10 + n
        ops.append(Op("invoke", "read", None, process, time=int(t0 * 1e9), key="k0", node=member, extra=dict(extra)))
        ops.append(Op(kind, "read", 3 if kind == "ok" else None, process, time=int(t1 * 1e9), key="k0",
                      node=member, error=None if kind == "ok" else "timeout", extra=dict(extra)))
    for i, op in enumerate(ops):
        op.index = op.position = start + i
    return ops


def test_a_member_that_answers_none_of_its_reads_for_the_recovery_bound_is_unavailable() -> None:
    """workloads.memberreads asks a member that is down or behind with linearizable reads for
    the run's recovery bound; none answered over at least that bound: member-unavailable."""
    options = CheckOptions(extra={"availability_bound": 5.0})
    tries = [(30.0 + i, 30.5 + i, "info") for i in range(6)]  # 30.0 .. 35.5: 5.5 s
    result = get_checker("members").check(asked(4, tries), options)
    assert result.valid is False
    [a] = result.anomalies
    assert a.kind == "member-unavailable" and "n4" in a.explanation and a.detail["reads"] == 6
    # one answered (even the last): available; the divergence checks ignore these reads
    late = [*tries[:-1], (35.0, 35.6, "ok")]
    assert get_checker("members").check(asked(4, late), options).valid is True
    # asked for less than the bound (the run ended, or an old history): nothing to say
    assert get_checker("members").check(asked(4, tries[:3]), options).valid is True
    # a member whose ordinary (caught-up) read was ok is not unavailable either
    ok = member_reads([(4, "k0", 3, 40, {})])
    assert get_checker("members").check(ok + asked(4, tries, start=len(ok)), options).valid is True


def hash_checks(rows: list[tuple[int, int, str, dict[str, int] | None]]) -> list[Op]:
    """The harness's periodic HashKV answers (workloads.hashcheck): (member, revision asked,
    outcome, ok value or None) -> invoke/completion pairs of process "hash-check"."""
    ops: list[Op] = []
    for member, rev, outcome, value in rows:
        ops.append(Op("invoke", "hash_kv", {"revision": rev}, "hash-check", node=member))
        ops.append(Op(outcome, "hash_kv", value, "hash-check", node=member,
                      error=None if outcome == "ok" else "future_rev"))
    for i, op in enumerate(ops):
        op.index = op.position = i
    return ops


def hkv(rev: int, compact: int, h: int) -> dict[str, int]:
    return {"revision": rev, "compact_revision": compact, "hash": h}


def test_hash_checks_that_agree_at_each_revision_and_compact_revision_are_valid() -> None:
    ops = hash_checks([
        (1, 50, "ok", hkv(50, 0, 7)), (2, 50, "ok", hkv(50, 0, 7)),
        (3, 50, "fail", None),  # n3 had not applied revision 50: an error, never a hash
        (1, 80, "ok", hkv(80, 60, 9)),
        (2, 80, "ok", hkv(80, 70, 11)),  # another compact revision: not comparable (etcd skips it)
        (3, 90, "ok", hkv(90, 70, 12)), (1, 90, "ok", hkv(90, 70, 12)),
    ])
    result = check(ops)
    assert result.valid is True
    assert result.detail["hash_kv_answers"] == 6
    assert get_checker("members").reads(ops[0])


def test_hash_checks_with_two_hashes_at_one_revision_and_compact_revision_are_a_mismatch() -> None:
    ops = hash_checks([
        (1, 50, "ok", hkv(50, 20, 7)), (2, 50, "ok", hkv(50, 20, 7)), (3, 50, "ok", hkv(50, 20, 8)),
        (1, 60, "ok", hkv(60, 20, 5)), (1, 60, "ok", hkv(60, 20, 6)),  # one member, two answers
    ])
    result = check(ops)
    assert result.valid is False
    a, b = result.anomalies
    assert a.kind == b.kind == "hash-mismatch"
    assert "revision 50 with compact revision 20" in a.explanation
    assert "n1, n2 HashKV 7 (op 1, 3)" in a.explanation and "n3 HashKV 8 (op 5)" in a.explanation
    assert a.detail == {"revision": 50, "compact_revision": 20, "hashes": {"7": ["1", "2"], "8": ["3"]}}
    assert sorted(a.ops) == [1, 3, 5]
    assert b.detail["hashes"] == {"5": ["1"], "6": ["1"]}


@pytest.mark.parametrize("value,match", [
    (7, "value must be an object"),
    ({"revision": 50, "hash": 7}, "compact_revision must be a non-negative integer"),
    ({"revision": 50, "compact_revision": 0, "hash": "x"}, "hash must be a non-negative integer"),
    ({"revision": -1, "compact_revision": 0, "hash": 7}, "revision must be a non-negative integer"),
])
def test_a_malformed_hash_check_answer_names_its_field(value: Any, match: str) -> None:
    ops = hash_checks([(1, 50, "ok", value)])
    with pytest.raises(HistoryError, match=match):
        check(ops)
