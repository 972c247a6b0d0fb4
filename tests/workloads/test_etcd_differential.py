"""The reference store against real etcd, op by op (workloads/etcd/differential.py): every
response of a random single-client sequence is compared field by field after normalising
only what must differ (relative revisions, lease ids by slot, member/cluster ids, terms)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings

from kvcheck.reference import cluster as rc
from kvcheck.reference.client import open_client
from kvcheck.workloads.etcd.client import EtcdClient
from kvcheck.workloads.etcd.cluster import plain_cluster
from kvcheck.workloads.etcd.differential import EtcdStore, Op, RefStore, compare_sequence, sequences

pytestmark = [pytest.mark.etcd,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="needs Debian's etcd-server")]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], list[str]]]:
    base = tmp_path_factory.mktemp("differential")
    info = rc.start_cluster(base / "reference", 3)
    try:
        with plain_cluster(base / "etcd", 3) as etcd:
            yield info.endpoints(), etcd
    finally:
        rc.stop_cluster(info)


def compare(endpoints: tuple[list[str], list[str]], ops: list[Op]) -> tuple[int, object]:
    async def main() -> tuple[int, object]:
        async with open_client(endpoints[0]) as ref:
            etcd = EtcdClient(endpoints[1])
            try:
                return await compare_sequence(RefStore(ref), EtcdStore(etcd), ops, tag="t")
            finally:
                await etcd.aclose()

    return trio.run(main)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=sequences())
def test_reference_matches_etcd(stores: tuple[list[str], list[str]], ops: list[Op]) -> None:
    _, difference = compare(stores, ops)
    assert difference is None, str(difference)


def test_differential_runs_every_kind(stores: tuple[list[str], list[str]], tmp_path: Path) -> None:
    """A fixed sequence touching every op kind compares equal (and is not vacuous)."""
    from kvcheck.reference.kv import requests as kvr

    ops = [Op("grant", {"slot": 0, "ttl": 60, "explicit": True}),
           Op("put", {"key": b"a", "value": b"1", "lease": 0, "prev_kv": False, "ignore_value": False,
                      "ignore_lease": False}),
           Op("put", {"key": b"a", "value": b"", "lease": None, "prev_kv": True, "ignore_value": True,
                      "ignore_lease": False}),
           Op("txn", {"compare": [{"result": kvr.CompareResult.EQUAL, "target": kvr.CompareTarget.LEASE,
                                   "key": b"a", "end": b"", "operand": 0}],
                      "success": [Op("delete", {"key": b"a", "end": b"\0", "prev_kv": True})], "failure": []}),
           Op("ttl", {"slot": 0, "keys": True}),
           # found by the differential test: sub-response header revisions (see
           # tests/reference/kv/test_kv_rules.py::test_txn_sub_response_revisions_are_etcds)
           Op("txn", {"compare": [], "failure": [], "success": [
               Op("delete", {"key": b"z", "end": b"", "prev_kv": False}),
               Op("txn", {"compare": [], "success": [], "failure": []}),
               Op("put", {"key": b"b", "value": b"2", "lease": None, "prev_kv": False, "ignore_value": False,
                          "ignore_lease": False}),
               Op("delete", {"key": b"z", "end": b"", "prev_kv": False})]}),
           Op("range", {"key": b"a", "end": b"\0", "limit": 0, "revision": 3, "sort_order": kvr.SortOrder.DESCEND,
                        "sort_target": kvr.SortTarget.MOD, "keys_only": False, "count_only": False,
                        "min_mod_revision": 0, "max_mod_revision": 0, "min_create_revision": 0,
                        "max_create_revision": 0}),
           Op("watch", {"key": b"a", "end": b"", "start": 1, "prev_kv": True}),
           Op("compact", {"revision": 4}),
           Op("watch", {"key": b"a", "end": b"", "start": 2, "prev_kv": False}),
           Op("bigtxn", {"n": 129}),
           # found by the differential test: error precedence (see tests/reference/kv/
           # test_kv_rules.py::test_txn_error_precedence_is_etcds)
           Op("txn", {"compare": [], "success": [
               Op("range", {"key": b"a", "end": b"", "limit": 0, "revision": 99, "sort_order": kvr.SortOrder.NONE,
                            "sort_target": kvr.SortTarget.KEY, "keys_only": False, "count_only": False,
                            "min_mod_revision": 0, "max_mod_revision": 0, "min_create_revision": 0,
                            "max_create_revision": 0}),
               Op("put", {"key": b"b", "value": b"x", "lease": 2, "prev_kv": False, "ignore_value": False,
                          "ignore_lease": False})], "failure": []}),
           Op("txn", {"compare": [], "success": [
               Op("put", {"key": b"c", "value": b"", "lease": None, "prev_kv": False, "ignore_value": False,
                          "ignore_lease": False}),
               Op("delete", {"key": b"c", "end": b"\0", "prev_kv": False})], "failure": [
               Op("put", {"key": b"d", "value": b"", "lease": 0, "prev_kv": False, "ignore_value": True,
                          "ignore_lease": True})]}),
           Op("put", {"key": b"zz", "value": b"", "lease": 2, "prev_kv": False, "ignore_value": True,
                      "ignore_lease": False}),
           Op("txn", {"compare": [], "failure": [], "success": [
               Op("put", {"key": b"zz", "value": b"", "lease": 2, "prev_kv": False, "ignore_value": True,
                          "ignore_lease": False})]}),
           # found by the differential test: a watch of an empty range (key >= range_end) is
           # created and canceled at once in etcd; the reference store used to leave it open
           Op("watch", {"key": b"c", "end": b"c", "start": 1, "prev_kv": False}),
           Op("revoke", {"slot": 0})]
    n, difference = compare(stores, ops)
    assert difference is None, str(difference)
    assert n == len(ops)
