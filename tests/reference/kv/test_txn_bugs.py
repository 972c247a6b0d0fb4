"""The two transaction bug switches at the state machine: what each does to one txn, and
that the clean machine does neither."""

from __future__ import annotations

from typing import Any

from kvcheck.reference.bugs import Bugs
from kvcheck.reference.kv.requests import (
    Compare,
    CompareResult,
    CompareTarget,
    PutRequest,
    TxnRequest,
)


def _guarded(key: bytes, mod_revision: int, value: bytes) -> TxnRequest:
    return TxnRequest([Compare(CompareResult.EQUAL, CompareTarget.MOD, key, mod_revision=mod_revision)],
                      [PutRequest(key, value)])


def test_txn_read_stale_snapshot_passes_a_guard_on_the_previous_revision(make_kv: Any) -> None:
    for bugs, succeeds in ((Bugs(), False), (Bugs(txn_read_stale_snapshot=True), True)):
        kv = make_kv(bugs=bugs)
        kv.apply(PutRequest(b"a", b"1"))  # rev 2 (the machine starts at rev 1)
        first = kv.get(b"a").mod_revision
        kv.apply(PutRequest(b"a", b"1 2"))  # a concurrent writer moves a on
        resp = kv.apply(_guarded(b"a", first, b"1 3"))  # guarded on the old mod_revision
        assert resp.succeeded is succeeds
        assert kv.get(b"a").value == (b"1 3" if succeeds else b"1 2")


def test_txn_non_atomic_shows_half_a_txn_until_the_next_entry(make_kv: Any) -> None:
    txn = TxnRequest([], [PutRequest(b"a", b"1"), PutRequest(b"b", b"1")])
    clean = make_kv()
    clean.apply(txn)
    assert clean.get(b"a") is not None and clean.get(b"b") is not None
    kv = make_kv(bugs=Bugs(txn_non_atomic=True))
    assert kv.apply(txn).succeeded
    assert kv.get(b"a") is not None and kv.get(b"b") is None  # half of it is visible
    kv.apply(PutRequest(b"c", b"1"))
    assert kv.get(b"b") is not None  # the rest lands with the next entry, at its own revision
    assert kv.get(b"b").mod_revision == kv.get(b"a").mod_revision + 1
