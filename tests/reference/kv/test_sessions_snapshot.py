"""Client sessions (a retried request is answered, never applied twice), the apply-index rules,
snapshot/restore of the whole state as one unit, and the log-entry and message wire forms."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from kvcheck.reference.bugs import Bugs
from kvcheck.reference.kv import KVStateMachine
from kvcheck.reference.kv.requests import (
    CLIENT_REQUESTS,
    AlarmAction,
    AlarmRequest,
    AlarmType,
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    Envelope,
    ErrBadRequest,
    ErrCompacted,
    ErrLeaseNotFound,
    ErrRequestTooLarge,
    ErrStaleSequence,
    Event,
    EventType,
    FilterType,
    KeyValue,
    LeaseGrantRequest,
    LeaseGrantResponse,
    Message,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
    WatchCreateRequest,
    WatchResponse,
    decode_entry,
    decode_message,
    encode_entry,
    encode_message,
    error_from_wire,
    error_to_wire,
)

# -- sessions --------------------------------------------------------------------------------


def test_retry_of_an_applied_request_gets_the_stored_response_and_is_not_applied_again(kv: Any) -> None:
    first = kv.apply(PutRequest(b"a", b"1"), client_id=3, seq=1)
    kv.apply(PutRequest(b"a", b"2"), client_id=4, seq=1)
    again = kv.apply(PutRequest(b"a", b"1"), client_id=3, seq=1)
    assert again is first and again.header.revision == 2
    assert kv.rev == 3 and kv.get(b"a").value == b"2"


def test_retry_of_a_failed_request_gets_the_same_error(kv: Any) -> None:
    with pytest.raises(ErrLeaseNotFound):
        kv.apply(PutRequest(b"a", b"1", lease=5), client_id=3, seq=1)
    kv.apply(LeaseGrantRequest(60, id=5), client_id=9, seq=1)
    with pytest.raises(ErrLeaseNotFound):  # the outcome stands even though it would now succeed
        kv.apply(PutRequest(b"a", b"1", lease=5), client_id=3, seq=1)
    assert kv.get(b"a") is None


def test_sequence_numbers_within_the_window_may_apply_out_of_order(make_kv: Any) -> None:
    kv = make_kv(session_window=4)
    kv.apply(PutRequest(b"a", b"5"), client_id=1, seq=5)
    kv.apply(PutRequest(b"a", b"3"), client_id=1, seq=3)
    assert kv.get(b"a").value == b"3" and kv.rev == 3


def test_retry_older_than_the_session_window_is_err_stale_sequence(make_kv: Any) -> None:
    kv = make_kv(session_window=4)
    for seq in range(1, 11):
        kv.apply(PutRequest(b"a", b"%d" % seq), client_id=1, seq=seq)
    with pytest.raises(ErrStaleSequence):
        kv.apply(PutRequest(b"a", b"2"), client_id=1, seq=2)
    assert kv.get(b"a").value == b"10"
    assert kv.apply(PutRequest(b"a", b"9"), client_id=1, seq=9).header.revision == 10  # stored


def test_client_id_0_has_no_session(kv: Any) -> None:
    kv.apply(PutRequest(b"a", b"1"), client_id=0, seq=0)
    kv.apply(PutRequest(b"a", b"1"), client_id=0, seq=0)
    assert kv.get(b"a").version == 2


def test_bug_no_session_dedup_applies_a_retry_twice(make_kv: Any) -> None:
    kv = make_kv(bugs=Bugs(no_session_dedup=True))
    kv.apply(PutRequest(b"a", b"1"), client_id=3, seq=1)
    kv.apply(PutRequest(b"a", b"1"), client_id=3, seq=1)
    assert kv.get(b"a").version == 2


def test_apply_ignores_an_index_at_or_below_the_applied_index(kv: Any) -> None:
    m = kv.m
    data = encode_entry(Envelope(0, 0, PutRequest(b"a", b"1")))
    assert m.apply(5, data) is not None and m.applied_index == 5
    assert m.apply(5, data) is None and m.apply(3, data) is None
    assert kv.get(b"a").version == 1


def test_an_empty_entry_only_advances_the_applied_index(kv: Any) -> None:
    assert kv.m.apply(1, b"") is None
    assert kv.m.applied_index == 1 and kv.rev == 1


def test_a_malformed_entry_is_err_bad_request_and_still_applied(kv: Any) -> None:
    with pytest.raises(ErrBadRequest, match="msgpack"):
        kv.m.apply(1, b"\xc1garbage")
    with pytest.raises(ErrBadRequest, match="'watch_create' is not a log request kind"):
        kv.m.apply(2, msgpack.packb([1, 1, "watch_create", {"key": b"a"}]))
    with pytest.raises(ErrBadRequest, match="client_id and seq"):
        kv.m.apply(3, msgpack.packb([-1, 1, "put", {"key": b"a"}]))
    with pytest.raises(ErrBadRequest, match=r"PutRequest.value: must be bytes"):
        kv.m.apply(4, msgpack.packb([1, 1, "put", {"key": b"a", "value": 5}]))
    assert kv.m.applied_index == 4 and kv.rev == 1


def test_a_request_over_max_request_bytes_is_err_request_too_large(make_kv: Any) -> None:
    kv = make_kv(max_request_bytes=100)
    with pytest.raises(ErrRequestTooLarge):
        kv.apply(PutRequest(b"a", b"x" * 200))
    assert kv.get(b"a") is None


# -- snapshots -------------------------------------------------------------------------------


def build_state(kv: Any) -> None:
    kv.apply(LeaseGrantRequest(60, id=11))
    kv.apply(PutRequest(b"a", b"1"))
    kv.apply(PutRequest(b"a", b"2", lease=11))
    kv.apply(PutRequest(b"b", b"1"))
    kv.apply(DeleteRangeRequest(b"b"))
    kv.apply(PutRequest(b"c", b"1"))
    kv.apply(CompactionRequest(3))
    kv.apply(PutRequest(b"a", b"3", lease=11))
    kv.apply(AlarmRequest(AlarmAction.ACTIVATE, 4, AlarmType.NOSPACE))
    kv.apply(AlarmRequest(AlarmAction.DEACTIVATE, 4, AlarmType.NOSPACE))
    with pytest.raises(ErrLeaseNotFound):
        kv.apply(PutRequest(b"x", b"1", lease=99), client_id=5, seq=1)


def test_snapshot_and_restore_carry_the_whole_state_as_one_unit(kv: Any) -> None:
    build_state(kv)
    snap = kv.m.snapshot()
    restored = KVStateMachine.restore(snap)
    assert restored.snapshot() == snap
    assert restored.applied_index == kv.m.applied_index
    assert (restored.revision, restored.compact_revision) == (kv.rev, 3)
    assert restored.hash_kv() == kv.m.hash_kv()
    with pytest.raises(ErrCompacted):
        restored.range(RangeRequest(b"a", revision=2))
    assert restored.range(RangeRequest(b"a", revision=4)).kvs[0].value == b"2"
    restored.promote(0.0)
    assert restored.lease_time_to_live(11, True, 0.0).keys == [b"a"]
    # the session table came along: the retry answers from it
    with pytest.raises(ErrLeaseNotFound):
        restored.apply(restored.applied_index + 1, encode_entry(Envelope(5, 1, PutRequest(b"x", b"1"))))
    # both continue identically
    entry = encode_entry(Envelope(1, 100, LeaseGrantRequest(5)))
    next_index = kv.m.applied_index + 1
    assert kv.m.apply(next_index, entry) == restored.apply(next_index + 1, entry)
    assert kv.m.hash_kv() == restored.hash_kv()


def test_restored_watch_history_matches_the_original(kv: Any) -> None:
    build_state(kv)
    restored = KVStateMachine.restore(kv.m.snapshot())
    req = WatchCreateRequest(b"\0", b"\0", start_revision=3, prev_kv=True)
    assert kv.m.create_watch(req)[1][1:] == restored.create_watch(req)[1][1:]


def test_a_malformed_snapshot_is_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="kv snapshot is malformed"):
        KVStateMachine.restore(b"not a snapshot")
    with pytest.raises(ValueError, match="format"):
        KVStateMachine.restore(msgpack.packb({"format": 99}))


# -- wire forms ------------------------------------------------------------------------------

KV1 = KeyValue(b"k", 2, 3, 1, b"v", 7)
EXAMPLES: list[Message] = [
    RangeRequest(b"a", b"b", limit=3, revision=2, sort_order=SortOrder.DESCEND,
                 sort_target=SortTarget.MOD, serializable=True, keys_only=True, min_mod_revision=1),
    PutRequest(b"k", b"v", lease=7, prev_kv=True),
    DeleteRangeRequest(b"a", b"\0", prev_kv=True),
    TxnRequest([Compare(CompareResult.LESS, CompareTarget.MOD, b"k", mod_revision=5)],
               [PutRequest(b"k", b"v"), TxnRequest([], [RangeRequest(b"k")])], [DeleteRangeRequest(b"k")]),
    WatchCreateRequest(b"a", b"b", start_revision=4, filters=[FilterType.NODELETE], prev_kv=True),
    RangeResponse(ResponseHeader(5, 2, 1, 9), [KV1], True, 10),
    PutResponse(ResponseHeader(5), KV1),
    TxnResponse(ResponseHeader(5), True, [PutResponse(ResponseHeader(5), None),
                                          RangeResponse(ResponseHeader(5), [KV1])]),
    WatchResponse(ResponseHeader(5), 3, events=[Event(EventType.DELETE, KeyValue(b"k", mod_revision=5), KV1)]),
    LeaseGrantResponse(ResponseHeader(1), 7, 60),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_messages_round_trip_through_the_wire(msg: Message) -> None:
    assert decode_message(encode_message(msg)) == msg
    assert type(msg).from_wire(msg.to_wire()) == msg


def test_every_client_request_has_a_kind() -> None:
    kinds = [cls.KIND for cls in CLIENT_REQUESTS]
    assert all(kinds) and len(set(kinds)) == len(kinds)


def test_log_entries_round_trip() -> None:
    env = Envelope(3, 9, EXAMPLES[3])  # type: ignore[arg-type]
    assert decode_entry(encode_entry(env)) == env


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"key": "text"}, "PutRequest.key: must be bytes"),
        ({"key": b"k", "lease": "7"}, "PutRequest.lease: must be an integer"),
        ({"key": b"k", "lease": 2**63}, "does not fit in int64"),
        ({"key": b"k", "prev_kv": 1}, "PutRequest.prev_kv: must be a boolean"),
        ({"key": b"k", "colour": 1}, "unknown field 'colour'"),
        ({"value": b"v"}, "missing required field(s) key"),
        ([b"k"], "PutRequest: must be a map"),
    ],
)
def test_malformed_requests_are_err_bad_request_naming_the_field(body: Any, problem: str) -> None:
    with pytest.raises(ErrBadRequest) as info:
        decode_message(msgpack.packb({"kind": "put", "body": body}))
    assert problem in str(info.value)


def test_malformed_nested_values_name_their_path() -> None:
    bad_enum = {"compare": [{"result": 9, "target": 0, "key": b"k"}]}
    with pytest.raises(ErrBadRequest, match=r"TxnRequest.compare\[0\].result: 9 is not a CompareResult"):
        TxnRequest.from_wire(bad_enum)
    bad_op = {"success": [{"request_watch": {}}]}
    with pytest.raises(ErrBadRequest, match=r"TxnRequest.success\[0\]: unknown request op"):
        TxnRequest.from_wire(bad_op)
    wrong_field = {"result": 0, "target": 0, "key": b"k", "value": b"v"}
    with pytest.raises(ErrBadRequest, match="target is VERSION but value is set"):
        Compare.from_wire(wrong_field)


def test_errors_round_trip_with_their_code() -> None:
    err = ErrCompacted()
    assert error_from_wire(error_to_wire(err)) == err
    assert error_to_wire(err)["code"] == "compacted"
    with pytest.raises(ErrBadRequest, match="unknown error code"):
        error_from_wire({"code": "nope", "message": "x"})
