"""etcdctl's txn and range syntax as `kvcheck ctl` parses it."""

from __future__ import annotations

import pytest

from kvcheck.exitcodes import UsageError
from kvcheck.reference.ctl import parse_compare, parse_op, parse_txn, prefix_end
from kvcheck.reference.kv import requests as kvr


def test_compares_in_etcdctl_syntax() -> None:
    c = parse_compare('mod("key1") > "0"')
    assert (c.target, c.result, c.key, c.mod_revision) == (kvr.CompareTarget.MOD, kvr.CompareResult.GREATER, b"key1", 0)
    c = parse_compare('value("k") = "v 1"')
    assert (c.target, c.value) == (kvr.CompareTarget.VALUE, b"v 1")
    c = parse_compare('version("k") != "3"')
    assert (c.result, c.version) == (kvr.CompareResult.NOT_EQUAL, 3)
    c = parse_compare('create("k") < "5"')
    assert (c.result, c.create_revision) == (kvr.CompareResult.LESS, 5)
    assert parse_compare('lease("k") = "1f"').lease == 0x1F
    with pytest.raises(UsageError, match="bad compare"):
        parse_compare('size("k") = "1"')
    with pytest.raises(UsageError, match="needs an integer"):
        parse_compare('version("k") = "x"')


def test_requests_and_blocks() -> None:
    put = parse_op('put k "a value"')
    assert isinstance(put, kvr.PutRequest) and put.value == b"a value"
    get = parse_op("get k --prefix")
    assert isinstance(get, kvr.RangeRequest) and get.range_end == b"l"
    dele = parse_op("del a c")
    assert isinstance(dele, kvr.DeleteRangeRequest) and dele.range_end == b"c"
    txn = parse_txn('value("a") = "1"\nmod("b") > "2"\n\nput a 2\n\nget a\n')
    assert len(txn.compare) == 2 and len(txn.success) == 1 and len(txn.failure) == 1
    with pytest.raises(UsageError, match="bad txn operation"):
        parse_op("frobnicate k")


def test_prefix_end_follows_etcd() -> None:
    assert prefix_end(b"a") == b"b"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
