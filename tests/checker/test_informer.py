"""The informer checker on small hand-written histories: a list at revision 2, a watch from 3
with two events, conditional updates."""

from __future__ import annotations

import copy
from typing import Any

from kvcheck.checker.api import CheckOptions
from kvcheck.checker.history import Op
from kvcheck.checker.informer import InformerChecker

P = "/registry/pods/default/"
END = "/registry/pods/default0"


def ev(typ: str, key: str, value: Any, create: int, mod: int, version: int) -> dict[str, Any]:
    return {"type": typ, "key": P + key, "value": value, "create_revision": create, "mod_revision": mod,
            "version": version}


def base() -> list[dict[str, Any]]:
    h: list[dict[str, Any]] = []

    def op(process: Any, typ: str, f: str, value: Any = None, **extra: Any) -> None:
        h.append({"process": process, "type": typ, "f": f, "value": value, **extra})

    op(0, "invoke", "txn", [["put", P + "a", 1]])
    op(0, "ok", "txn", [["put", P + "a", 1]], compare=[["mod_revision", P + "a", 0]], revision=2)
    op(50, "invoke", "range", None, informer=0)
    kv = {"key": P + "a", "value": 1, "create_revision": 2, "mod_revision": 2, "version": 1}
    op(50, "ok", "range", {P + "a": 1}, informer=0, revision=2, kvs=[kv])
    op(100, "invoke", "watch", {"key": P, "range_end": END, "start_revision": 3, "prev_kv": True, "informer": 0})
    op(100, "ok", "watch", {"watch_id": 1, "created": True, "canceled": False, "compact_revision": 0,
                            "revision": 2, "events": []})
    op(1, "invoke", "txn", [["put", P + "a", 2]])
    op(1, "ok", "txn", [["put", P + "a", 2]], compare=[["mod_revision", P + "a", 2]], revision=3)
    op(100, "ok", "watch", {"watch_id": 1, "created": False, "canceled": False, "compact_revision": 0,
                            "revision": 3, "events": [ev("put", "a", 2, 2, 3, 2)]})
    op(2, "invoke", "txn", [["put", P + "b", 3]])
    op(2, "ok", "txn", [["put", P + "b", 3]], compare=[["mod_revision", P + "b", 0]], revision=4)
    op(100, "ok", "watch", {"watch_id": 1, "created": False, "canceled": False, "compact_revision": 0,
                            "revision": 4, "events": [ev("put", "b", 3, 4, 4, 1)]})
    op(100, "ok", "watch", {"watch_id": 1, "created": False, "canceled": False, "compact_revision": 0,
                            "revision": 4, "events": []})
    op(100, "ok", "watch", {"end": "closed"})
    op(3, "invoke", "range", None)
    op(3, "ok", "range", {P + "a": 2, P + "b": 3}, revision=4,
       kvs=[{"key": P + "a", "value": 2, "create_revision": 2, "mod_revision": 3, "version": 2},
            {"key": P + "b", "value": 3, "create_revision": 4, "mod_revision": 4, "version": 1}])
    return h


def check(h: list[dict[str, Any]]) -> Any:
    ops = [Op.from_dict({"index": i, **d}, position=i) for i, d in enumerate(h)]
    return InformerChecker().check(ops, CheckOptions())


def test_a_cache_that_follows_the_store_is_valid() -> None:
    r = check(base())
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    assert r.detail == {"informers": 1, "cache_checks": 3, "updates": 1}


def test_a_list_that_shows_a_key_the_store_never_had_leaves_the_cache_wrong() -> None:
    h = copy.deepcopy(base())
    h[3]["kvs"].append({"key": P + "ghost", "value": 9, "create_revision": 2, "mod_revision": 2, "version": 1})
    r = check(h)
    assert r.valid is False
    a = r.anomalies[0]
    assert a.kind == "informer:cache" and a.detail["revision"] == 3 and a.detail["keys"] == [P + "ghost"]


def test_two_updates_from_one_version_are_a_lost_update() -> None:
    h = copy.deepcopy(base())
    h[10]["compare"] = [["mod_revision", P + "a", 2]]  # the put of b claims to update a's version 2 too
    r = check(h)
    assert "informer:lost-update" in {a.kind for a in r.anomalies}
