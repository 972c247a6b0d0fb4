"""Property: every message survives to_wire -> msgpack -> from_wire unchanged, and a log entry
survives encode_entry -> decode_entry; the compiled codecs agree with the field specs."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kvcheck.reference.kv.requests import (
    INT64_MAX,
    INT64_MIN,
    LOG_REQUESTS,
    MESSAGES_BY_NAME,
    Compare,
    CompareTarget,
    Envelope,
    Message,
    decode_entry,
    decode_message,
    encode_entry,
    encode_message,
)

ints = st.one_of(st.integers(-3, 3), st.integers(INT64_MIN, INT64_MAX))
small_bytes = st.binary(max_size=6)
_CACHE: dict[str, st.SearchStrategy[Any]] = {}


def spec_strategy(spec: Any, depth: int) -> st.SearchStrategy[Any]:
    from kvcheck.reference.kv import requests as r

    if spec.kind == "bytes":
        return small_bytes
    if spec.kind == "int":
        return ints
    if spec.kind == "bool":
        return st.booleans()
    if spec.kind == "str":
        return st.text(max_size=5)
    if spec.kind == "enum":
        return st.sampled_from(list(spec.enum))
    if spec is r.LIST_INT:
        return st.lists(ints, max_size=3)
    if spec is r.LIST_BYTES:
        return st.lists(small_bytes, max_size=3)
    if spec is r.LIST_ENUM_FILTER:
        return st.lists(st.sampled_from(list(r.FilterType)), max_size=2)
    if spec is r.REQUEST_OPS:
        ops = [message(n, depth + 1) for n in ("RangeRequest", "PutRequest", "DeleteRangeRequest")]
        if depth < 2:
            ops.append(message("TxnRequest", depth + 1))
        return st.lists(st.one_of(ops), max_size=3)
    if spec is r.RESPONSE_OPS:
        ops = [message(n, depth + 1) for n in ("RangeResponse", "PutResponse", "DeleteRangeResponse")]
        if depth < 2:
            ops.append(message("TxnResponse", depth + 1))
        return st.lists(st.one_of(ops), max_size=3)
    # nested messages: find the class name from the decoder's closure
    name = _nested_name(spec)
    if spec.enc is r._enc_msg:
        return message(name, depth + 1)
    if spec.enc is r._enc_opt_msg:
        return st.none() | message(name, depth + 1)
    assert spec.enc is r._enc_list_msg, spec
    return st.lists(message(name, depth + 1), max_size=3)


def _nested_name(spec: Any) -> str:
    fn = spec.dec
    while fn.__closure__:
        cells = [c.cell_contents for c in fn.__closure__]
        names = [c for c in cells if isinstance(c, str) and c in MESSAGES_BY_NAME]
        if names:
            return names[0]
        fn = next(c for c in cells if callable(c))
    raise AssertionError(f"no message name in {spec}")


def compare_strategy() -> st.SearchStrategy[Compare]:
    def build(target: CompareTarget, result: Any, key: bytes, end: bytes, n: int, v: bytes) -> Compare:
        own = Compare._TARGET_FIELD[target]
        return Compare(result, target, key, end, **{own: v if own == "value" else n})

    from kvcheck.reference.kv.requests import CompareResult

    return st.builds(build, st.sampled_from(list(CompareTarget)), st.sampled_from(list(CompareResult)),
                     small_bytes, small_bytes, ints, small_bytes)


def message(name: str, depth: int = 0) -> st.SearchStrategy[Any]:
    key = f"{name}/{depth}"
    if key not in _CACHE:
        if name == "Compare":
            _CACHE[key] = compare_strategy()
        else:
            cls = MESSAGES_BY_NAME[name]
            _CACHE[key] = st.builds(cls, *[spec_strategy(spec, depth) for _, spec in cls.WIRE])
    return _CACHE[key]


any_message = st.sampled_from(sorted(MESSAGES_BY_NAME)).flatmap(message)


@settings(max_examples=150, deadline=None)
@given(any_message)
def test_every_message_round_trips(msg: Message) -> None:
    assert type(msg).from_wire(msg.to_wire()) == msg
    if msg.KIND:
        assert decode_message(encode_message(msg)) == msg


@settings(max_examples=80, deadline=None)
@given(st.integers(0, INT64_MAX), st.integers(0, INT64_MAX),
       st.sampled_from([c.__name__ for c in LOG_REQUESTS]).flatmap(message))
def test_every_log_entry_round_trips(client_id: int, seq: int, req: Any) -> None:
    env = Envelope(client_id, seq, req)
    assert decode_entry(encode_entry(env)) == env
