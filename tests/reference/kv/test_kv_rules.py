"""One test per etcd v3 rule of the key-value API: MVCC, range, put, delete, txn, compaction,
HashKV, quota. Each test is named after the rule it checks."""

from __future__ import annotations

from typing import Any

import pytest

from kvcheck.reference.kv.requests import (
    AlarmAction,
    AlarmMember,
    AlarmRequest,
    AlarmType,
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    ErrCompacted,
    ErrCorrupt,
    ErrDuplicateKey,
    ErrEmptyKey,
    ErrFutureRev,
    ErrKeyNotFound,
    ErrLeaseNotFound,
    ErrLeaseProvided,
    ErrNoSpace,
    ErrTooManyOps,
    ErrValueProvided,
    KeyValue,
    LeaseGrantRequest,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
)

EQ, GT, LT, NE = CompareResult.EQUAL, CompareResult.GREATER, CompareResult.LESS, CompareResult.NOT_EQUAL


def put(key: bytes, value: bytes = b"v", **kw: Any) -> PutRequest:
    return PutRequest(key, value, **kw)


# -- MVCC ------------------------------------------------------------------------------------


def test_empty_store_is_at_revision_1(kv: Any) -> None:
    assert kv.rev == 1
    assert kv.m.range(RangeRequest(b"a")).header.revision == 1


def test_each_write_creates_exactly_one_revision(kv: Any) -> None:
    assert kv.apply(put(b"a")).header.revision == 2
    assert kv.apply(put(b"b")).header.revision == 3
    assert kv.apply(DeleteRangeRequest(b"a")).header.revision == 4
    assert kv.rev == 4


def test_put_sets_create_revision_mod_revision_and_version(kv: Any) -> None:
    kv.apply(put(b"a", b"1"))
    kv.apply(put(b"b", b"x"))
    kv.apply(put(b"a", b"2"))
    assert kv.get(b"a") == KeyValue(b"a", create_revision=2, mod_revision=4, version=2, value=b"2")


def test_delete_ends_a_generation_and_recreate_starts_at_version_1(kv: Any) -> None:
    kv.apply(put(b"a"))
    kv.apply(put(b"a"))
    kv.apply(DeleteRangeRequest(b"a"))
    assert kv.get(b"a") is None
    kv.apply(put(b"a", b"new"))
    assert kv.get(b"a") == KeyValue(b"a", create_revision=5, mod_revision=5, version=1, value=b"new")


def test_old_versions_stay_readable_until_compaction(kv: Any) -> None:
    for i in range(5):
        kv.apply(put(b"a", str(i).encode()))
    assert [kv.get(b"a", rev).value for rev in range(2, 7)] == [b"0", b"1", b"2", b"3", b"4"]
    assert kv.get(b"a", 1) is None
    kv.apply(CompactionRequest(5))
    with pytest.raises(ErrCompacted):
        kv.get(b"a", 4)
    assert kv.get(b"a", 5).value == b"3"


# -- range -----------------------------------------------------------------------------------


@pytest.fixture
def abc(kv: Any) -> Any:
    for key in (b"a", b"ab", b"abc", b"b", b"c"):
        kv.apply(put(key, key.upper()))
    return kv


def test_range_with_empty_range_end_reads_the_single_key(abc: Any) -> None:
    assert abc.keys(b"ab", b"") == [b"ab"]
    assert abc.keys(b"zz", b"") == []


def test_range_end_key_plus_one_reads_the_prefix(abc: Any) -> None:
    assert abc.keys(b"a", b"b") == [b"a", b"ab", b"abc"]
    assert abc.keys(b"ab", b"ac") == [b"ab", b"abc"]


def test_range_end_zero_byte_reads_every_key_from_key(abc: Any) -> None:
    assert abc.keys(b"ab", b"\0") == [b"ab", b"abc", b"b", b"c"]


def test_range_key_and_end_zero_byte_reads_every_key(abc: Any) -> None:
    assert abc.keys(b"\0", b"\0") == [b"a", b"ab", b"abc", b"b", b"c"]


def test_range_end_not_after_key_is_empty(abc: Any) -> None:
    assert abc.keys(b"b", b"a") == []
    assert abc.keys(b"b", b"b") == []


def test_range_limit_truncates_sets_more_and_count_stays_the_total(abc: Any) -> None:
    resp = abc.m.range(RangeRequest(b"a", b"\0", limit=2))
    assert [kv.key for kv in resp.kvs] == [b"a", b"ab"]
    assert resp.more is True and resp.count == 5
    resp = abc.m.range(RangeRequest(b"a", b"\0", limit=5))
    assert resp.more is False and resp.count == 5


def test_range_at_a_revision_reads_that_revision(abc: Any) -> None:
    abc.apply(DeleteRangeRequest(b"a", b"b"))
    assert abc.keys(revision=3) == [b"a", b"ab"]
    assert abc.keys() == [b"b", b"c"]


def test_range_beyond_the_current_revision_is_err_future_rev(abc: Any) -> None:
    with pytest.raises(ErrFutureRev):
        abc.m.range(RangeRequest(b"a", revision=abc.rev + 1))


def test_range_below_the_compacted_revision_is_err_compacted_and_at_it_works(abc: Any) -> None:
    abc.apply(CompactionRequest(4))
    with pytest.raises(ErrCompacted):
        abc.m.range(RangeRequest(b"a", b"\0", revision=3))
    assert abc.keys(revision=4) == [b"a", b"ab", b"abc"]


def test_range_sorts_by_target_and_order(kv: Any) -> None:
    kv.apply(put(b"a", b"3"))
    kv.apply(put(b"b", b"1"))
    kv.apply(put(b"c", b"2"))
    kv.apply(put(b"a", b"4"))

    def order(**kw: Any) -> list[bytes]:
        return [x.key for x in kv.m.range(RangeRequest(b"a", b"\0", **kw)).kvs]

    assert order(sort_target=SortTarget.VALUE, sort_order=SortOrder.ASCEND) == [b"b", b"c", b"a"]
    assert order(sort_target=SortTarget.MOD, sort_order=SortOrder.DESCEND) == [b"a", b"c", b"b"]
    assert order(sort_target=SortTarget.VERSION, sort_order=SortOrder.DESCEND)[0] == b"a"
    assert order(sort_target=SortTarget.CREATE, sort_order=SortOrder.DESCEND) == [b"c", b"b", b"a"]
    assert order(sort_target=SortTarget.KEY, sort_order=SortOrder.DESCEND) == [b"c", b"b", b"a"]
    # a target without an order sorts ascending, as etcd
    assert order(sort_target=SortTarget.VALUE) == [b"b", b"c", b"a"]
    # sorting happens before the limit
    resp = kv.m.range(RangeRequest(b"a", b"\0", limit=1, sort_target=SortTarget.VALUE,
                                   sort_order=SortOrder.DESCEND))
    assert [x.key for x in resp.kvs] == [b"a"] and resp.more


def test_range_keys_only_omits_values(abc: Any) -> None:
    kvs = abc.m.range(RangeRequest(b"a", b"b", keys_only=True)).kvs
    assert [x.value for x in kvs] == [b"", b"", b""]
    assert [x.version for x in kvs] == [1, 1, 1]


def test_range_count_only_returns_the_count_without_kvs(abc: Any) -> None:
    resp = abc.m.range(RangeRequest(b"a", b"b", count_only=True))
    assert resp.kvs == [] and resp.count == 3 and resp.more is False


def test_range_min_and_max_mod_and_create_revision_filter_results(kv: Any) -> None:
    kv.apply(put(b"a"))  # rev 2
    kv.apply(put(b"b"))  # rev 3
    kv.apply(put(b"c"))  # rev 4
    kv.apply(put(b"a"))  # rev 5: a mod 5 create 2

    def keys(**kw: Any) -> list[bytes]:
        return [x.key for x in kv.m.range(RangeRequest(b"a", b"\0", **kw)).kvs]

    assert keys(min_mod_revision=4) == [b"a", b"c"]
    assert keys(max_mod_revision=3) == [b"b"]
    assert keys(min_create_revision=3) == [b"b", b"c"]
    assert keys(max_create_revision=2) == [b"a"]
    # count stays the number of keys in the range, as etcd
    assert kv.m.range(RangeRequest(b"a", b"\0", max_mod_revision=3)).count == 3


def test_range_with_empty_key_is_err_empty_key(kv: Any) -> None:
    with pytest.raises(ErrEmptyKey):
        kv.m.range(RangeRequest(b""))


# -- put -------------------------------------------------------------------------------------


def test_put_prev_kv_returns_the_previous_version(kv: Any) -> None:
    assert kv.apply(put(b"a", b"1", prev_kv=True)).prev_kv is None
    prev = kv.apply(put(b"a", b"2", prev_kv=True)).prev_kv
    assert prev == KeyValue(b"a", 2, 2, 1, b"1")
    assert kv.apply(put(b"a", b"3")).prev_kv is None  # only when asked


def test_put_ignore_value_keeps_the_current_value(kv: Any) -> None:
    lease = kv.apply(LeaseGrantRequest(60)).id
    kv.apply(put(b"a", b"keep"))
    kv.apply(PutRequest(b"a", lease=lease, ignore_value=True))
    assert kv.get(b"a").value == b"keep" and kv.get(b"a").lease == lease and kv.get(b"a").version == 2


def test_put_ignore_lease_keeps_the_current_lease(kv: Any) -> None:
    lease = kv.apply(LeaseGrantRequest(60)).id
    kv.apply(put(b"a", b"1", lease=lease))
    kv.apply(PutRequest(b"a", b"2", ignore_lease=True))
    assert kv.get(b"a").lease == lease and kv.get(b"a").value == b"2"


def test_put_ignore_value_with_a_value_is_err_value_provided(kv: Any) -> None:
    kv.apply(put(b"a"))
    with pytest.raises(ErrValueProvided):
        kv.apply(PutRequest(b"a", b"x", ignore_value=True))


def test_put_ignore_lease_with_a_lease_is_err_lease_provided(kv: Any) -> None:
    kv.apply(put(b"a"))
    with pytest.raises(ErrLeaseProvided):
        kv.apply(PutRequest(b"a", b"x", lease=5, ignore_lease=True))


def test_put_ignore_value_or_lease_on_a_missing_key_is_err_key_not_found(kv: Any) -> None:
    with pytest.raises(ErrKeyNotFound):
        kv.apply(PutRequest(b"a", ignore_value=True))
    with pytest.raises(ErrKeyNotFound):
        kv.apply(PutRequest(b"a", b"x", ignore_lease=True))
    assert kv.rev == 1


def test_put_with_an_unknown_lease_is_err_lease_not_found(kv: Any) -> None:
    with pytest.raises(ErrLeaseNotFound):
        kv.apply(put(b"a", lease=12345))
    assert kv.rev == 1 and kv.get(b"a") is None


def test_put_with_empty_key_is_err_empty_key(kv: Any) -> None:
    with pytest.raises(ErrEmptyKey):
        kv.apply(put(b""))


# -- delete ----------------------------------------------------------------------------------


def test_delete_range_deletes_every_key_at_one_revision_with_prev_kvs(abc: Any) -> None:
    resp = abc.apply(DeleteRangeRequest(b"a", b"b", prev_kv=True))
    assert resp.deleted == 3 and [x.key for x in resp.prev_kvs] == [b"a", b"ab", b"abc"]
    assert resp.header.revision == 7 and abc.keys() == [b"b", b"c"]
    assert abc.apply(DeleteRangeRequest(b"b")).prev_kvs == []  # only when asked


def test_delete_that_deletes_nothing_creates_no_revision(abc: Any) -> None:
    resp = abc.apply(DeleteRangeRequest(b"zz", b"\0"))
    assert resp.deleted == 0 and resp.header.revision == 6 and abc.rev == 6


# -- txn -------------------------------------------------------------------------------------


def cmp(target: CompareTarget, result: CompareResult, key: bytes, **kw: Any) -> Compare:
    return Compare(result, target, key, **kw)


@pytest.mark.parametrize(
    ("target", "field", "below", "same", "above"),
    [
        (CompareTarget.VERSION, "version", 1, 2, 3),
        (CompareTarget.CREATE, "create_revision", 1, 2, 3),
        (CompareTarget.MOD, "mod_revision", 2, 3, 4),
        (CompareTarget.VALUE, "value", b"a", b"b", b"c"),
        (CompareTarget.LEASE, "lease", 0, 1, 2),
    ],
)
def test_txn_compare_on_each_target_with_each_result(
    kv: Any, target: CompareTarget, field: str, below: Any, same: Any, above: Any
) -> None:
    lease = kv.apply(LeaseGrantRequest(60)).id
    assert lease == 1
    kv.apply(put(b"k", b"a"))
    kv.apply(put(b"k", b"b", lease=lease))  # k: create 2, mod 3, version 2, value b, lease 1

    def holds(result: CompareResult, operand: Any) -> bool:
        return kv.apply(TxnRequest([cmp(target, result, b"k", **{field: operand})])).succeeded  # type: ignore[no-any-return]

    assert [holds(EQ, x) for x in (below, same, above)] == [False, True, False]
    assert [holds(NE, x) for x in (below, same, above)] == [True, False, True]
    assert [holds(GT, x) for x in (below, same, above)] == [True, False, False]
    assert [holds(LT, x) for x in (below, same, above)] == [False, False, True]


def test_txn_compares_are_anded(kv: Any) -> None:
    kv.apply(put(b"a", b"1"))
    both = [cmp(CompareTarget.VALUE, EQ, b"a", value=b"1"), cmp(CompareTarget.VERSION, EQ, b"a", version=1)]
    assert kv.apply(TxnRequest(both)).succeeded
    one_false = [both[0], cmp(CompareTarget.VERSION, EQ, b"a", version=2)]
    assert not kv.apply(TxnRequest(one_false)).succeeded


def test_txn_missing_key_compares_as_zero_values(kv: Any) -> None:
    for target, field in ((CompareTarget.VERSION, "version"), (CompareTarget.CREATE, "create_revision"),
                          (CompareTarget.MOD, "mod_revision"), (CompareTarget.LEASE, "lease")):
        assert kv.apply(TxnRequest([cmp(target, EQ, b"missing", **{field: 0})])).succeeded
        assert not kv.apply(TxnRequest([cmp(target, GT, b"missing", **{field: 0})])).succeeded


def test_txn_value_compare_on_a_missing_key_is_false_whatever_the_result(kv: Any) -> None:
    for result in (EQ, NE, GT, LT):
        assert not kv.apply(TxnRequest([cmp(CompareTarget.VALUE, result, b"missing", value=b"")])).succeeded


def test_txn_compare_over_a_range_must_hold_for_every_key(kv: Any) -> None:
    kv.apply(put(b"p/1", b"x"))
    kv.apply(put(b"p/2", b"x"))
    all_x = cmp(CompareTarget.VALUE, EQ, b"p/", range_end=b"p0", value=b"x")
    assert kv.apply(TxnRequest([all_x])).succeeded
    kv.apply(put(b"p/3", b"y"))
    assert not kv.apply(TxnRequest([all_x])).succeeded


def test_txn_runs_success_or_failure_ops(kv: Any) -> None:
    guard = [cmp(CompareTarget.CREATE, EQ, b"lock", create_revision=0)]
    first = kv.apply(TxnRequest(guard, [put(b"lock", b"me")], [RangeRequest(b"lock")]))
    assert first.succeeded and kv.get(b"lock").value == b"me"
    second = kv.apply(TxnRequest(guard, [put(b"lock", b"you")], [RangeRequest(b"lock")]))
    assert not second.succeeded and second.responses[0].kvs[0].value == b"me"


def test_txn_writes_all_at_one_revision(kv: Any) -> None:
    resp = kv.apply(TxnRequest([], [put(b"a"), put(b"b"), DeleteRangeRequest(b"zz")]))
    assert resp.header.revision == 2 and kv.rev == 2
    assert kv.get(b"a").mod_revision == kv.get(b"b").mod_revision == 2
    assert all(r.header.revision == 2 for r in resp.responses)


def test_txn_without_writes_creates_no_revision(kv: Any) -> None:
    kv.apply(put(b"a"))
    resp = kv.apply(TxnRequest([], [RangeRequest(b"a"), DeleteRangeRequest(b"missing")]))
    assert resp.header.revision == 2 and kv.rev == 2


def test_txn_reads_see_earlier_writes_of_the_same_txn(kv: Any) -> None:
    kv.apply(put(b"b", b"old"))
    resp = kv.apply(TxnRequest([], [put(b"a", b"1"), RangeRequest(b"a"), DeleteRangeRequest(b"b"),
                                    RangeRequest(b"a", b"\0")]))
    assert resp.responses[1].kvs[0].value == b"1"
    assert [x.key for x in resp.responses[3].kvs] == [b"a"]


@pytest.mark.parametrize(
    "ops",
    [
        [put(b"a"), put(b"a")],
        [DeleteRangeRequest(b"a", b"c"), put(b"b")],
        [put(b"b"), DeleteRangeRequest(b"a", b"\0")],
        [put(b"a"), TxnRequest([], [put(b"a")])],
        [DeleteRangeRequest(b"a"), TxnRequest([], [], [put(b"a")])],
        [TxnRequest([], [put(b"a")]), TxnRequest([], [put(b"a")])],
        [TxnRequest([], [DeleteRangeRequest(b"a")]), put(b"a")],
    ],
    ids=["put-put", "delete-then-put", "put-then-delete", "nested-put", "nested-else-put",
         "two-nested", "nested-delete"],
)
def test_txn_writing_one_key_twice_is_err_duplicate_key(kv: Any, ops: list[Any]) -> None:
    with pytest.raises(ErrDuplicateKey, match="duplicate key given in txn request"):
        kv.apply(TxnRequest([], ops))
    assert kv.rev == 1


def test_txn_may_delete_overlapping_ranges_and_put_one_key_in_both_nested_branches(kv: Any) -> None:
    kv.apply(TxnRequest([], [DeleteRangeRequest(b"a", b"c"), DeleteRangeRequest(b"b", b"d"),
                             TxnRequest([], [put(b"x", b"1")], [put(b"x", b"2")])]))
    assert kv.get(b"x").value == b"1"


def test_txn_success_and_failure_may_write_the_same_key(kv: Any) -> None:
    kv.apply(TxnRequest([], [put(b"a", b"s")], [put(b"a", b"f")]))
    assert kv.get(b"a").value == b"s"


def test_txn_has_at_most_128_ops_per_branch(kv: Any) -> None:
    ops = [put(b"k%d" % i) for i in range(128)]
    assert kv.apply(TxnRequest([], ops)).header.revision == 2
    with pytest.raises(ErrTooManyOps):
        kv.apply(TxnRequest([], [*ops, put(b"one-more")]))
    with pytest.raises(ErrTooManyOps):
        kv.apply(TxnRequest([cmp(CompareTarget.VERSION, EQ, b"k", version=0)] * 129))
    with pytest.raises(ErrTooManyOps):
        kv.apply(TxnRequest([], [], [RangeRequest(b"a")] * 129))


def test_txn_that_fails_a_check_writes_nothing(kv: Any) -> None:
    with pytest.raises(ErrLeaseNotFound):
        kv.apply(TxnRequest([], [put(b"a"), put(b"b", lease=99)]))
    with pytest.raises(ErrFutureRev):
        kv.apply(TxnRequest([], [put(b"a"), RangeRequest(b"a", revision=50)]))
    assert kv.rev == 1 and kv.keys() == []


def test_nested_txn_evaluates_its_compares_before_the_outer_writes(kv: Any) -> None:
    inner = TxnRequest([cmp(CompareTarget.VERSION, EQ, b"a", version=0)], [put(b"b", b"then")],
                       [put(b"b", b"else")])
    resp = kv.apply(TxnRequest([], [put(b"a"), inner]))
    assert resp.responses[1].succeeded and kv.get(b"b").value == b"then"


# -- compaction and HashKV ------------------------------------------------------------------


def test_compaction_at_or_below_the_compacted_revision_is_err_compacted(kv: Any) -> None:
    kv.apply(put(b"a"))
    kv.apply(put(b"a"))
    kv.apply(CompactionRequest(2))
    with pytest.raises(ErrCompacted):
        kv.apply(CompactionRequest(2))
    with pytest.raises(ErrCompacted):
        kv.apply(CompactionRequest(1))


def test_compaction_beyond_the_current_revision_is_err_future_rev(kv: Any) -> None:
    with pytest.raises(ErrFutureRev):
        kv.apply(CompactionRequest(2))


def test_compaction_keeps_the_latest_version_of_each_live_key_and_creates_no_revision(kv: Any) -> None:
    kv.apply(put(b"a", b"1"))  # 2
    kv.apply(put(b"b", b"1"))  # 3
    kv.apply(DeleteRangeRequest(b"b"))  # 4
    kv.apply(put(b"a", b"2"))  # 5
    kv.apply(put(b"c", b"1"))  # 6
    resp = kv.apply(CompactionRequest(5))
    assert resp.header.revision == 6 and kv.m.compact_revision == 5
    assert kv.keys(revision=5) == [b"a"] and kv.get(b"a", 5).value == b"2"
    assert kv.keys() == [b"a", b"c"]


def test_hash_kv_is_equal_for_the_same_log_and_differs_for_another(make_kv: Any) -> None:
    one, two, other = make_kv(), make_kv(), make_kv()
    for m in (one, two, other):
        m.apply(put(b"a", b"1"))
        m.apply(put(b"b", b"2"))
        m.apply(CompactionRequest(2))
    other.apply(put(b"c"))
    one.apply(put(b"c", b"different"))
    two.apply(put(b"c", b"different"))
    assert one.m.hash_kv() == two.m.hash_kv()
    assert one.m.hash_kv().hash != other.m.hash_kv().hash
    assert one.m.hash_kv().compact_revision == 2 and one.m.hash_kv().hash_revision == 4


def test_hash_kv_at_a_revision_ignores_later_writes(kv: Any) -> None:
    kv.apply(put(b"a"))
    before = kv.m.hash_kv(2).hash
    kv.apply(put(b"b"))
    assert kv.m.hash_kv(2).hash == before != kv.m.hash_kv().hash
    with pytest.raises(ErrFutureRev):
        kv.m.hash_kv(4)


# -- quota and alarms -----------------------------------------------------------------------


def test_quota_exceeded_raises_the_nospace_alarm_and_refuses_the_put(make_kv: Any) -> None:
    kv = make_kv(quota_bytes=2000)
    kv.apply(put(b"a", b"x" * 500))
    assert kv.m.db_size == 1 + 500 + 256  # key + value + per-version overhead, as etcd counts
    with pytest.raises(ErrNoSpace):
        kv.apply(put(b"b", b"x" * 1500))
    assert kv.m.alarms() == [AlarmMember(0, AlarmType.NOSPACE)]
    with pytest.raises(ErrNoSpace):  # while the alarm is on, even a small put
        kv.apply(put(b"c", b"y"))
    assert kv.keys() == [b"a"]


def test_nospace_refuses_writing_txns_and_lease_grants_but_not_reads_deletes_or_compaction(make_kv: Any) -> None:
    kv = make_kv(quota_bytes=2000)
    kv.apply(put(b"a", b"x"))
    kv.apply(put(b"a", b"y"))
    kv.apply(AlarmRequest(AlarmAction.ACTIVATE, 0, AlarmType.NOSPACE))
    with pytest.raises(ErrNoSpace):
        kv.apply(TxnRequest([], [RangeRequest(b"a")], [put(b"b")]))  # a put in either branch
    with pytest.raises(ErrNoSpace):
        kv.apply(LeaseGrantRequest(60))
    assert kv.apply(TxnRequest([], [RangeRequest(b"a"), DeleteRangeRequest(b"zz")])).succeeded
    assert kv.get(b"a").value == b"y"
    kv.apply(CompactionRequest(3))
    assert kv.apply(DeleteRangeRequest(b"a")).deleted == 1


def test_alarm_get_lists_and_deactivate_disarms(make_kv: Any) -> None:
    kv = make_kv(quota_bytes=1000)
    with pytest.raises(ErrNoSpace):
        kv.apply(put(b"a", b"x" * 1000))
    assert kv.apply(AlarmRequest(AlarmAction.GET)).alarms == [AlarmMember(0, AlarmType.NOSPACE)]
    resp = kv.apply(AlarmRequest(AlarmAction.DEACTIVATE, 0, AlarmType.NOSPACE))
    assert resp.alarms == [AlarmMember(0, AlarmType.NOSPACE)]
    assert kv.apply(AlarmRequest(AlarmAction.GET)).alarms == []
    kv.apply(put(b"a", b"small"))
    assert kv.get(b"a").value == b"small"


def test_corrupt_alarm_refuses_every_kv_request(kv: Any) -> None:
    kv.apply(put(b"a"))
    kv.apply(AlarmRequest(AlarmAction.ACTIVATE, 3, AlarmType.CORRUPT))
    for req in (put(b"b"), RangeRequest(b"a"), DeleteRangeRequest(b"a"), CompactionRequest(2)):
        with pytest.raises(ErrCorrupt):
            kv.apply(req)
    with pytest.raises(ErrCorrupt):
        kv.m.range(RangeRequest(b"a"))
    kv.apply(AlarmRequest(AlarmAction.DEACTIVATE, 3, AlarmType.CORRUPT))
    assert kv.get(b"a") is not None


def test_txn_sub_response_revisions_are_etcds(kv: Any) -> None:
    """etcd 3.4 (checked against it by tests/workloads/test_etcd_differential.py): a sub-op's
    header has the revision before the txn until the txn changed something, the new one
    after; a put always the new one; a nested txn's own header is empty."""
    kv.apply(put(b"x"))  # revision 2
    resp = kv.apply(TxnRequest(success=[
        RangeRequest(b"x"), DeleteRangeRequest(b"nothing"), TxnRequest(success=[RangeRequest(b"x")]),
        put(b"a"), DeleteRangeRequest(b"nothing"), RangeRequest(b"x"),
        TxnRequest(success=[RangeRequest(b"x")])]))
    revs = [r.header.revision for r in resp.responses]
    assert resp.header.revision == 3
    assert revs == [2, 2, 0, 3, 3, 3, 0]
    assert [r.header.revision for r in resp.responses[2].responses] == [2]
    assert [r.header.revision for r in resp.responses[6].responses] == [3]
    read_only = kv.apply(TxnRequest(success=[RangeRequest(b"x"), DeleteRangeRequest(b"nothing")]))
    assert read_only.header.revision == 3 and [r.header.revision for r in read_only.responses] == [3, 3]


def test_txn_error_precedence_is_etcds(kv: Any) -> None:
    """etcd 3.4 (found by the differential test against it): every op of both branches is
    checked for shape before any branch for a key written twice; on the chosen path every
    put is checked before any range; inside a txn an ignore_value put asks for its key
    before its lease (a lone put the other way round)."""
    with pytest.raises(ErrLeaseProvided):
        kv.apply(TxnRequest([], [put(b"x"), put(b"x")], [put(b"y", b"", ignore_lease=True, lease=5)]))
    with pytest.raises(ErrLeaseNotFound):
        kv.apply(TxnRequest([], [RangeRequest(b"x", revision=100), put(b"x", lease=999)]))
    with pytest.raises(ErrKeyNotFound):
        kv.apply(TxnRequest([], [put(b"none", b"", ignore_value=True, lease=999)]))
    with pytest.raises(ErrLeaseNotFound):
        kv.apply(put(b"none", b"", ignore_value=True, lease=999))
    assert kv.rev == 1
