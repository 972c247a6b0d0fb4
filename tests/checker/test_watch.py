"""The watch checker on small hand-written histories: a valid one, then one mutation per
guarantee, each of which must be reported under its own name (and nothing else)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kvcheck.checker.api import CheckOptions, run_checkers
from kvcheck.checker.formats import read_history
from kvcheck.checker.history import Op
from kvcheck.checker.watch import WatchChecker


def ev(typ: str, key: str, value: Any, create: int, mod: int, version: int,
       prev: tuple[Any, int, int, int] | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"type": typ, "key": key, "value": value, "create_revision": create,
                         "mod_revision": mod, "version": version}
    if prev is not None:
        e["prev_kv"] = {"key": key, "value": prev[0], "create_revision": prev[1], "mod_revision": prev[2],
                        "version": prev[3]}
    return e


def resp(rev: int, events: list[dict[str, Any]], *, created: bool = False, canceled: bool = False,
         compact: int = 0) -> dict[str, Any]:
    return {"watch_id": 1, "created": created, "canceled": canceled, "compact_revision": compact,
            "revision": rev, "events": events}


# The writes: a=1 @2, a=2 @3, delete a @4, txn [b=3, a=4] @5, compaction at 3.
EVENTS = {
    2: ev("put", "a", 1, 2, 2, 1),
    3: ev("put", "a", 2, 2, 3, 2, prev=(1, 2, 2, 1)),
    4: ev("delete", "a", None, 0, 4, 0, prev=(2, 2, 3, 2)),
    "5b": ev("put", "b", 3, 5, 5, 1),
    "5a": ev("put", "a", 4, 5, 5, 1),
}


def recorder() -> tuple[list[dict[str, Any]], Callable[..., None]]:
    """A history being written (history.jsonl lines without index/time) and the function
    that appends one op to it: ``op(process, type, f, value=None, **extra)``."""
    h: list[dict[str, Any]] = []

    def op(process: Any, typ: str, f: str, value: Any = None, **extra: Any) -> None:
        h.append({"process": process, "type": typ, "f": f, "value": value, **extra})

    return h, op


def base() -> list[dict[str, Any]]:
    """Dicts (history.jsonl lines without index/time) of a valid history."""
    h, op = recorder()

    # stream 100: the whole space from now, with prev_kv
    op(100, "invoke", "watch", {"key": "a", "range_end": "\u0000", "start_revision": 0, "prev_kv": True})
    op(100, "ok", "watch", resp(1, [], created=True))
    op(0, "invoke", "put", 1, key="a")
    op(0, "ok", "put", 1, key="a", revision=2)
    op(100, "ok", "watch", resp(2, [EVENTS[2]]))
    op(0, "invoke", "put", 2, key="a")
    op(0, "ok", "put", 2, key="a", revision=3)
    op(100, "ok", "watch", resp(3, [EVENTS[3]]))
    op(1, "invoke", "delete", None, key="a")
    op(1, "ok", "delete", None, key="a", revision=4, deleted=1)
    op(100, "ok", "watch", resp(4, [EVENTS[4]]))
    op(9, "invoke", "compact", 3)
    op(9, "ok", "compact", 3, revision=4)
    op(1, "invoke", "txn", [["put", "b", 3], ["put", "a", 4]])
    op(1, "ok", "txn", [["put", "b", 3], ["put", "a", 4]], revision=5)
    op(100, "ok", "watch", resp(5, [EVENTS["5b"], EVENTS["5a"]]))
    op(100, "ok", "watch", {"progress_request": True})
    op(100, "ok", "watch", resp(5, []))
    op(100, "ok", "watch", {"end": "closed"})
    # stream 101: key a from revision 3, no prev_kv
    op(101, "invoke", "watch", {"key": "a", "range_end": "", "start_revision": 3, "prev_kv": False})
    op(101, "ok", "watch", resp(5, [], created=True))
    plain = [{k: v for k, v in EVENTS[i].items() if k != "prev_kv"} for i in (3, 4, "5a")]
    op(101, "ok", "watch", resp(5, plain))
    op(101, "info", "watch", {"end": "broken"}, error="stream broken")
    # stream 102: from revision 2, compacted at 3: canceled
    op(102, "invoke", "watch", {"key": "a", "range_end": "", "start_revision": 2})
    op(102, "ok", "watch", resp(5, [], created=True))
    op(102, "ok", "watch", resp(5, [], canceled=True, compact=3))
    op(102, "ok", "watch", {"end": "canceled"})
    op(2, "invoke", "range", None)
    op(2, "ok", "range", {"a": 4, "b": 3}, revision=5,
       kvs=[{"key": "a", "value": 4, "create_revision": 5, "mod_revision": 5, "version": 1},
            {"key": "b", "value": 3, "create_revision": 5, "mod_revision": 5, "version": 1}])
    return h


def to_ops(dicts: list[dict[str, Any]]) -> list[Op]:
    return [Op.from_dict({"index": i, "time": i, **d}, position=i) for i, d in enumerate(dicts)]


def check(dicts: list[dict[str, Any]], **extra: Any) -> Any:
    return WatchChecker().check(to_ops(dicts), CheckOptions(extra=extra))


def kinds(result: Any) -> set[str]:
    return {a.kind for a in result.anomalies}


def find(h: list[dict[str, Any]], process: int, pred: Any) -> dict[str, Any]:
    return next(d for d in h if d["process"] == process and pred(d))


def events_line(h: list[dict[str, Any]], process: int, rev: int) -> dict[str, Any]:
    return find(h, process, lambda d: isinstance(d["value"], dict) and d["value"].get("events")
                and d["value"]["events"][0]["mod_revision"] == rev)


def test_the_valid_history_is_valid_and_names_its_streams() -> None:
    r = check(base())
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    assert r.detail["streams"] == 3 and r.detail["final_revision"] == 5 and r.detail["events"] == 8


def test_a_watch_history_file_loads_and_checks_with_both_checkers(tmp_path: Path) -> None:
    # several ok lines answer one watch invocation: the loader pairs them as one stream
    path = tmp_path / "h.jsonl"
    path.write_text("".join(json.dumps({"index": i, **d}) + "\n" for i, d in enumerate(base())))
    ops, fmt = read_history(path)
    assert fmt == "jsonl"
    results = run_checkers(["linearizable", "watch"], ops,
                           CheckOptions(model="cas-register", extra={"kv_ops": True, "compare_failed": True}))
    assert results["watch"].valid is True and results["linearizable"].valid is True


def mutated(fn: Any) -> list[dict[str, Any]]:
    h = copy.deepcopy(base())
    fn(h)
    return h


def _filter(h: list[dict[str, Any]]) -> None:
    events_line(h, 101, 3)["value"]["events"].append(
        {k: v for k, v in EVENTS["5b"].items() if k != "prev_kv"})


def _ordered(h: list[dict[str, Any]]) -> None:
    line = events_line(h, 100, 5)
    line["value"]["events"].reverse()


def _unique(h: list[dict[str, Any]]) -> None:
    events_line(h, 100, 3)["value"]["events"].append(copy.deepcopy(EVENTS[3]))


def _atomic(h: list[dict[str, Any]]) -> None:
    line = events_line(h, 100, 5)
    second = copy.deepcopy(line)
    second["value"]["events"] = [line["value"]["events"].pop()]
    h.insert(h.index(line) + 1, second)


def _resumable(h: list[dict[str, Any]]) -> None:
    line = events_line(h, 101, 3)
    line["value"]["events"] = line["value"]["events"][1:]


def _reliable(h: list[dict[str, Any]]) -> None:
    h.remove(events_line(h, 100, 3))


def _phantom(h: list[dict[str, Any]]) -> None:
    events_line(h, 100, 2)["value"]["events"][0]["value"] = 99


def _bookmarkable(h: list[dict[str, Any]]) -> None:
    line = events_line(h, 100, 4)
    h.insert(h.index(line), {"process": 100, "type": "ok", "f": "watch", "value": resp(4, [])})


def _is_create(h: list[dict[str, Any]]) -> None:
    e = events_line(h, 100, 5)["value"]["events"][1]
    e["version"], e["create_revision"] = 2, 2


def _prev_kv(h: list[dict[str, Any]]) -> None:
    events_line(h, 100, 3)["value"]["events"][0]["prev_kv"]["value"] = 7


def _prev_kv_unasked(h: list[dict[str, Any]]) -> None:
    events_line(h, 101, 3)["value"]["events"][0]["prev_kv"] = {"key": "a", "value": 1, "create_revision": 2,
                                                               "mod_revision": 2, "version": 1}


def _delete_revision(h: list[dict[str, Any]]) -> None:
    events_line(h, 100, 4)["value"]["events"][0]["mod_revision"] = 6  # the delete of a happened at 4


def _compaction(h: list[dict[str, Any]]) -> None:
    find(h, 102, lambda d: isinstance(d["value"], dict) and d["value"].get("canceled"))["value"]["compact_revision"] = 2


@pytest.mark.parametrize("mutation, kind", [
    (_filter, "watch:filter"), (_ordered, "watch:ordered"), (_unique, "watch:unique"),
    (_atomic, "watch:atomic"), (_resumable, "watch:resumable"), (_reliable, "watch:reliable"),
    (_phantom, "watch:reliable"), (_bookmarkable, "watch:bookmarkable"), (_is_create, "watch:is-create"),
    (_prev_kv, "watch:prev-kv"), (_prev_kv_unasked, "watch:prev-kv"),
    (_delete_revision, "watch:delete-revision"), (_compaction, "watch:compaction"),
])
def test_each_guarantee_is_named_when_broken(mutation: Any, kind: str) -> None:
    r = check(mutated(mutation))
    assert r.valid is False
    assert kind in kinds(r), [a.to_json() for a in r.anomalies]
    a = next(a for a in r.anomalies if a.kind == kind)
    assert a.ops and "stream" in a.detail and a.explanation.startswith("stream p")


def test_the_phantom_is_called_one() -> None:
    r = check(mutated(_phantom))
    assert any(a.detail.get("phantom") for a in r.anomalies if a.kind == "watch:reliable")


def test_a_missing_event_names_the_write_and_the_window() -> None:
    r = check(mutated(_reliable))
    (a,) = [a for a in r.anomalies if a.kind == "watch:reliable"]
    assert a.detail["revisions"] == [3] and a.detail["window"] == [2, 5]
    assert 5 in a.ops  # the put that completed at revision 3


def test_reconstruction_failures_are_named() -> None:
    gap = mutated(lambda h: find(h, 0, lambda d: d["type"] == "ok" and d["value"] == 2).update(revision=6))
    assert "watch:revision-gap" in kinds(check(gap))
    dup = mutated(lambda h: find(h, 0, lambda d: d["type"] == "ok" and d["value"] == 2).update(revision=2))
    assert "watch:duplicate-revision" in kinds(check(dup))
    final = mutated(lambda h: h[-1]["kvs"][0].update(value=2))
    assert "watch:final-state" in kinds(check(final))


def test_an_info_write_is_placed_where_an_event_shows_its_value() -> None:
    def info_put(h: list[dict[str, Any]]) -> None:
        line = find(h, 0, lambda d: d["type"] == "ok" and d["value"] == 2)
        line.clear()
        line.update({"process": 0, "type": "info", "f": "put", "value": 2, "key": "a", "error": "timeout"})
        # the next op of that thread is a new process
        for d in h:
            if d["process"] == 1:
                d["process"] = 10

    h = mutated(info_put)
    r = check(h)
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    (p,) = r.detail["placements"]
    assert p["revision"] == 3 and "event" in p["how"]


def test_a_revision_nobody_saw_is_given_to_an_info_write_as_a_guess() -> None:
    # an info put nobody observed, then an ok put at revision 3: revision 2 is the info put's
    h = [{"process": 0, "type": "invoke", "f": "put", "value": 1, "key": "a"},
         {"process": 0, "type": "info", "f": "put", "value": 1, "key": "a"},
         {"process": 1, "type": "invoke", "f": "put", "value": 2, "key": "a"},
         {"process": 1, "type": "ok", "f": "put", "value": 2, "key": "a", "revision": 3},
         {"process": 2, "type": "invoke", "f": "range", "value": None},
         {"process": 2, "type": "ok", "f": "range", "value": {"a": 2}, "revision": 3}]
    r = check(h)
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    assert r.detail["placements"][0]["revision"] == 2 and "guess" in r.detail["placements"][0]["how"]


def test_created_behind_a_completed_write_is_reported_only_when_asked() -> None:
    def late(h: list[dict[str, Any]]) -> None:
        find(h, 101, lambda d: d["type"] == "ok" and d["value"].get("created"))["value"]["revision"] = 2
    h = mutated(late)
    assert check(h).valid is True
    assert "watch:created" in kinds(check(h, created_linearizable=True))


def test_the_check_is_bounded_in_time() -> None:
    r = WatchChecker().check(to_ops(base()), CheckOptions(timeout=0.0))
    assert r.valid == "unknown" and "within" in (r.unknown_cause or "")


def _write(path: Path, dicts: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps({"index": i, **d}) + "\n" for i, d in enumerate(dicts)))
    return path


def test_kvcheck_check_runs_the_watch_checker_on_a_bare_history_file(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from kvcheck.cli import main

    good = _write(tmp_path / "good.jsonl", base())
    bad = _write(tmp_path / "bad.jsonl", mutated(_reliable))

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["check", *args], catch_exceptions=False)

    r = run(str(good), "--checker", "watch")
    assert r.exit_code == 0, r.stdout
    r = run(str(good), "--checker", "linearizable,watch", "--model", "cas-register")
    assert r.exit_code == 0 and "watch" in r.stdout and "linearizable" in r.stdout, r.stdout
    r = run(str(bad), "--checker", "watch", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    watch = doc["files"][0]["checkers"]["watch"]
    assert watch["valid"] is False and watch["anomalies"][0]["kind"] == "watch:reliable"
    assert watch["anomalies"][0]["detail"]["stream"] == 100
    r = run(str(bad), "--checker", "watch", "--report", str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert "Watch streams" in page and "watch:reliable" in page


def test_a_prev_kv_dropped_by_a_compaction_at_that_revision_is_excused() -> None:
    # the compaction at 3 keeps a's version at 3 and drops its version at 2: no prev_kv for
    # the event at 3; the one at 4 (after the compaction too) still needs its prev_kv
    h = mutated(lambda h: events_line(h, 100, 3)["value"]["events"][0].pop("prev_kv"))
    assert check(h).valid is True
    h = mutated(lambda h: events_line(h, 100, 4)["value"]["events"][0].pop("prev_kv"))
    assert "watch:prev-kv" in kinds(check(h))


def _writes_after_the_final_read() -> list[dict[str, Any]]:
    """base() and then, after its range at revision 5, a stream that sees a=5 put at 6 (ok)
    and a last range that failed: the range at 5 is the last ok one (an etcd kubernetes run
    whose final range timed out after a kill looked like this)."""
    h = base()
    h += [{"process": 103, "type": "invoke", "f": "watch", "value": {"key": "a", "range_end": "", "start_revision": 0}},
          {"process": 103, "type": "ok", "f": "watch", "value": resp(5, [], created=True)},
          {"process": 0, "type": "invoke", "f": "put", "value": 5, "key": "a"},
          {"process": 0, "type": "ok", "f": "put", "value": 5, "key": "a", "revision": 6},
          {"process": 103, "type": "ok", "f": "watch", "value": resp(6, [ev("put", "a", 5, 5, 6, 2)])},
          {"process": 103, "type": "ok", "f": "watch", "value": {"end": "closed"}},
          {"process": 3, "type": "invoke", "f": "range", "value": None},
          {"process": 3, "type": "fail", "f": "range", "value": None, "error": "timeout"}]
    return h


def test_writes_after_the_last_ok_range_are_replayed_not_phantoms() -> None:
    r = check(_writes_after_the_final_read())
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    assert r.detail["final_revision"] == 6
    # the event past the final read is still checked against the write, and the final read
    # against the replay at its own revision
    h = _writes_after_the_final_read()
    events_line(h, 103, 6)["value"]["events"][0]["value"] = 99
    assert "watch:reliable" in kinds(check(h))
    h = _writes_after_the_final_read()
    final = next(d for d in h if d["process"] == 2 and d["type"] == "ok")
    final["kvs"][0]["value"] = final["value"]["a"] = 2
    assert "watch:final-state" in kinds(check(h))
def _resumed_after_a_delete(delete_known: bool) -> list[dict[str, Any]]:
    """a=1 @2; revision 3 deletes a; a=2 @4; a watch of a from revision 3. With
    ``delete_known`` the delete is an ok op at revision 3 and the watch's first event is the
    put at 4 (it skipped the delete); else revision 3 is made by one of two timed-out writes
    that delete a (a delete, and a txn deleting a and b: which one is unknown) and the watch
    starts with that delete."""
    h, op = recorder()

    op(0, "invoke", "put", 1, key="a")
    op(0, "ok", "put", 1, key="a", revision=2)
    if delete_known:
        op(1, "invoke", "delete", None, key="a")
        op(1, "ok", "delete", None, key="a", revision=3, deleted=1)
    else:
        op(1, "invoke", "delete", None, key="a")
        op(2, "invoke", "txn", [["delete", "a", None], ["delete", "b", None]])
        op(1, "info", "delete", None, key="a", error="timeout")
        op(2, "info", "txn", [["delete", "a", None], ["delete", "b", None]], error="timeout")
    op(3, "invoke", "put", 2, key="a")
    op(3, "ok", "put", 2, key="a", revision=4)
    op(200, "invoke", "watch", {"key": "a", "range_end": "", "start_revision": 3, "prev_kv": False})
    op(200, "ok", "watch", resp(4, [], created=True))
    first = [] if delete_known else [ev("delete", "a", None, 0, 3, 0)]
    op(200, "ok", "watch", resp(4, [*first, ev("put", "a", 2, 4, 4, 1)]))
    op(200, "ok", "watch", {"end": "closed"})
    op(4, "invoke", "range", None)
    op(4, "ok", "range", {"a": 2}, revision=4,
       kvs=[{"key": "a", "value": 2, "create_revision": 4, "mod_revision": 4, "version": 1}])
    return h


def test_a_resumed_watch_may_begin_with_an_event_of_a_revision_an_unknown_info_write_made() -> None:
    """Clean watch swarm seed 22 (a false alarm before): the first event of a watch from 3 is
    the delete at 3 that one of two timed-out writes made; the replay does not know which, so
    revision 3 is uncertain and the stream did not skip anything it is sure of."""
    r = check(_resumed_after_a_delete(delete_known=False))
    assert r.valid is True, [a.to_json() for a in r.anomalies]


def test_a_resumed_watch_that_skips_a_known_delete_is_not_resumable() -> None:
    r = check(_resumed_after_a_delete(delete_known=True))
    assert "watch:resumable" in kinds(r), [a.to_json() for a in r.anomalies]


def _unseen_revisions_with_a_revoke_among_the_candidates(b_version: int = 1) -> list[dict[str, Any]]:
    """a=1 @2, b=1 @3; two timed-out puts of a (2 and 4) and a timed-out revoke of lease 1
    (no keys); nobody sees revisions 4 and 5; a=3 @6. The store applied both puts, so a is at
    version 4 at 6, which the final read and a read at 6 show."""
    h, op = recorder()

    op(0, "invoke", "lease-grant", 3)
    op(0, "ok", "lease-grant", 3, lease=1, revision=1)
    op(1, "invoke", "put", 1, key="a")
    op(1, "ok", "put", 1, key="a", revision=2)
    op(1, "invoke", "put", 1, key="b")
    op(1, "ok", "put", 1, key="b", revision=3)
    op(2, "invoke", "put", 2, key="a")
    op(3, "invoke", "put", 4, key="a")
    op(4, "invoke", "lease-revoke", 1)
    op(2, "info", "put", 2, key="a", error="timeout")
    op(3, "info", "put", 4, key="a", error="timeout")
    op(4, "info", "lease-revoke", 1, error="timeout")
    op(5, "invoke", "put", 3, key="a")
    op(5, "ok", "put", 3, key="a", revision=6)
    op(6, "invoke", "read", None, key="a")
    op(6, "ok", "read", 3, key="a", revision=6,
       kv={"key": "a", "value": 3, "create_revision": 2, "mod_revision": 6, "version": 4})
    op(7, "invoke", "range", None)
    op(7, "ok", "range", {"a": 3, "b": 1}, revision=6,
       kvs=[{"key": "a", "value": 3, "create_revision": 2, "mod_revision": 6, "version": 4},
            {"key": "b", "value": 1, "create_revision": 3, "mod_revision": 3, "version": b_version}])
    return h


def test_a_revision_a_timed_out_put_or_revoke_made_leaves_the_puts_key_uncertain() -> None:
    """Clean lease swarm seed 105 (a false alarm before): the unseen revisions were given to
    "one of the info writes" with a revoke among them, and the revoke's presence dropped the
    puts' keys from the uncertain ones; the replay then had a at version 2 where the store
    (rightly: both timed-out puts took effect) had 4 (watch:final-state, kv:read-state)."""
    r = check(_unseen_revisions_with_a_revoke_among_the_candidates())
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    assert r.detail["uncertain_revisions"] == [4, 5]


def test_a_key_no_info_write_touched_stays_certain_beside_unseen_revisions() -> None:
    """b is touched by no timed-out write: its wrong version in the final range is still
    reported (by the final-state comparison and, as for any read, by kv:read-state)."""
    r = check(_unseen_revisions_with_a_revoke_among_the_candidates(b_version=2))
    assert kinds(r) == {"watch:final-state", "kv:read-state"}, [a.to_json() for a in r.anomalies]
    assert {a.detail.get("key") for a in r.anomalies} == {"b"}


def _revoke_after_an_unseen_leased_put(revoked: int) -> list[dict[str, Any]]:
    """Leases 1 and 2; s2 on lease 2 @2; timed-out puts of s1 (lease 1) and of a (no lease):
    nobody sees revisions 3 and 4; the revoke of lease ``revoked`` answers 5 and a watch from 5
    sees s1 deleted there (the store applied the put of s1, and revoking lease 1 deleted it)."""
    h, op = recorder()

    op(0, "invoke", "lease-grant", 3)
    op(0, "ok", "lease-grant", 3, lease=1, revision=1)
    op(1, "invoke", "lease-grant", 3)
    op(1, "ok", "lease-grant", 3, lease=2, revision=1)
    op(1, "invoke", "put", 1, key="s2", lease=2)
    op(1, "ok", "put", 1, key="s2", lease=2, revision=2)
    op(2, "invoke", "put", 5, key="s1", lease=1)
    op(3, "invoke", "put", 7, key="a")
    op(2, "info", "put", 5, key="s1", lease=1, error="timeout")
    op(3, "info", "put", 7, key="a", error="timeout")
    op(4, "invoke", "lease-revoke", revoked)
    op(4, "ok", "lease-revoke", revoked, revision=5)
    op(100, "invoke", "watch", {"key": "s", "range_end": "t", "start_revision": 5, "prev_kv": False})
    op(100, "ok", "watch", resp(5, [ev("delete", "s1", None, 0, 5, 0)], created=True))
    op(100, "ok", "watch", {"end": "closed"})
    return h


def test_a_revoke_may_delete_a_key_an_unseen_timed_out_put_attached_to_its_lease() -> None:
    """Clean lease seed 12008 (a false alarm before): a timed-out put of l/s0a with lease 8
    applied where nobody saw it; lease 8's revoke deleted the key and a watch showed the DELETE,
    which the replay (that never attached the key) called watch:delete-revision."""
    r = check(_revoke_after_an_unseen_leased_put(revoked=1))
    assert r.valid is True, [a.to_json() for a in r.anomalies]


def test_a_revoke_of_another_lease_does_not_explain_that_delete() -> None:
    r = check(_revoke_after_an_unseen_leased_put(revoked=2))
    assert r.valid is False, [a.to_json() for a in r.anomalies]


def _expiry_beside_a_timed_out_revoke(s1_in_final_read: bool = False) -> list[dict[str, Any]]:
    """Leases 1 and 2; s1 on lease 1 @2, s2 on lease 2 @3; a revoke of lease 2 times out; a
    watch without prev_kv sees s1 deleted at 4 (lease 1 expired); the final read at 4 shows
    s2 (the revoke did nothing) and, with ``s1_in_final_read``, s1 too (a contradiction)."""
    h, op = recorder()

    op(100, "invoke", "watch", {"key": "s", "range_end": "t", "start_revision": 2, "prev_kv": False})
    op(100, "ok", "watch", resp(1, [], created=True))
    op(0, "invoke", "lease-grant", 1)
    op(0, "ok", "lease-grant", 1, lease=1, revision=1)
    op(1, "invoke", "lease-grant", 3)
    op(1, "ok", "lease-grant", 3, lease=2, revision=1)
    op(0, "invoke", "put", 1, key="s1", lease=1)
    op(0, "ok", "put", 1, key="s1", lease=1, revision=2)
    op(1, "invoke", "put", 1, key="s2", lease=2)
    op(1, "ok", "put", 1, key="s2", lease=2, revision=3)
    op(2, "invoke", "lease-revoke", 2)
    op(2, "info", "lease-revoke", 2, error="timeout")
    op(100, "ok", "watch", resp(4, [ev("put", "s1", 1, 2, 2, 1), ev("put", "s2", 1, 3, 3, 1),
                                    ev("delete", "s1", None, 0, 4, 0)]))
    op(100, "ok", "watch", {"end": "closed"})
    kvs = [{"key": "s2", "value": 1, "create_revision": 3, "mod_revision": 3, "version": 1, "lease": 2}]
    if s1_in_final_read:
        kvs.insert(0, {"key": "s1", "value": 1, "create_revision": 2, "mod_revision": 2, "version": 1, "lease": 1})
    op(3, "invoke", "range", None)
    op(3, "ok", "range", {kv["key"]: kv["value"] for kv in kvs}, revision=4, kvs=kvs)
    return h


def test_a_delete_without_prev_kv_beside_a_timed_out_revoke_may_be_another_leases_expiry() -> None:
    """Clean lease swarm seed 106 (a false alarm before): the expiry of lease 1, seen without
    prev_kv, was given to the timed-out revoke of lease 2; the replay then deleted s2 instead
    of s1 (watch:reliable phantom, watch:final-state). It is replayed as the expiry of the seen
    key's lease, which is also what the revoke would have done had it made the revision."""
    r = check(_expiry_beside_a_timed_out_revoke())
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    (p,) = [p for p in r.detail["placements"] if p["revision"] == 4]
    assert "expiry" in p["how"]


def test_a_final_read_that_contradicts_the_seen_expiry_is_still_reported() -> None:
    r = check(_expiry_beside_a_timed_out_revoke(s1_in_final_read=True))
    assert "watch:final-state" in kinds(r), [a.to_json() for a in r.anomalies]
    assert {a.detail.get("key") for a in r.anomalies if a.kind == "watch:final-state"} == {"s1"}


def _two_timed_out_txns_delete_a_and_b(orders: list[list[str]]) -> list[dict[str, Any]]:
    """a=1 @2, b=1 @3; timed-out txns deleting a and b, one per entry of ``orders`` (in that
    order); revision 4, which no ok write made, deletes b then a, as a watch of everything
    shows; the final range reads nothing at 4."""
    h, op = recorder()

    op(100, "invoke", "watch", {"key": "a", "range_end": "\u0000", "start_revision": 0, "prev_kv": True})
    op(100, "ok", "watch", resp(1, [], created=True))
    op(0, "invoke", "put", 1, key="a")
    op(0, "ok", "put", 1, key="a", revision=2)
    op(0, "invoke", "put", 1, key="b")
    op(0, "ok", "put", 1, key="b", revision=3)
    for i, order in enumerate(orders):
        op(10 + i, "invoke", "txn", [["delete", k, None] for k in order])
    for i, order in enumerate(orders):
        op(10 + i, "info", "txn", [["delete", k, None] for k in order], error="timeout")
    op(100, "ok", "watch", resp(3, [ev("put", "a", 1, 2, 2, 1), ev("put", "b", 1, 3, 3, 1)]))
    op(100, "ok", "watch", resp(4, [ev("delete", "b", None, 0, 4, 0, prev=(1, 3, 3, 1)),
                                    ev("delete", "a", None, 0, 4, 0, prev=(1, 2, 2, 1))]))
    op(100, "ok", "watch", {"end": "closed"})
    op(2, "invoke", "range", None)
    op(2, "ok", "range", {}, revision=4, kvs=[])
    return h


def test_a_revision_of_several_deletes_goes_to_a_timed_out_txn_with_their_order() -> None:
    """Clean watch swarm seed 1004 (a false alarm before): revision 392 deleted w/k1 then w/k0;
    of the timed-out txns deleting both keys, the first one had them the other way round, and
    given the revision it made every stream that saw both keys out of order."""
    r = check(_two_timed_out_txns_delete_a_and_b([["a", "b"], ["b", "a"]]))
    assert r.valid is True, [a.to_json() for a in r.anomalies]


def test_deletes_delivered_in_an_order_no_candidate_has_are_not_ordered() -> None:
    r = check(_two_timed_out_txns_delete_a_and_b([["a", "b"]]))
    assert kinds(r) == {"watch:ordered"}, [a.to_json() for a in r.anomalies]


def _resumed_at_a_txn_after_an_unsure_write(txn: list[str], shown: list[str]) -> list[dict[str, Any]]:
    """a=1 @2, b=1 @3; revision 4, which nobody saw, is a timed-out put a=7 (so a's state is
    a guess from there); a timed-out txn deleting ``txn``'s keys in that order makes revision 5;
    a deletes-only watch from 5 shows the deletes of ``shown`` there."""
    h, op = recorder()

    op(0, "invoke", "put", 1, key="a")
    op(0, "ok", "put", 1, key="a", revision=2)
    op(0, "invoke", "put", 1, key="b")
    op(0, "ok", "put", 1, key="b", revision=3)
    op(5, "invoke", "put", 7, key="a")
    op(6, "invoke", "txn", [["delete", k, None] for k in txn])
    op(5, "info", "put", 7, key="a", error="timeout")
    op(6, "info", "txn", [["delete", k, None] for k in txn], error="timeout")
    op(200, "invoke", "watch", {"key": "a", "range_end": "\u0000", "start_revision": 5, "prev_kv": False,
                                "filters": ["noput"]})
    op(200, "ok", "watch", resp(5, [], created=True))
    op(200, "ok", "watch", resp(5, [ev("delete", k, None, 0, 5, 0) for k in shown]))
    op(200, "ok", "watch", {"end": "closed"})
    op(2, "invoke", "range", None)
    op(2, "ok", "range", {}, revision=5, kvs=[])
    return h


def test_a_resumed_watch_may_begin_with_an_unsure_change_ahead_of_a_sure_one_in_its_revision() -> None:
    """Clean watch swarm seed 1001 (a false alarm before): the replay was not sure a key was
    there for the timed-out txn to delete; a watch from that revision began with that delete,
    ahead of the delete the replay was sure of."""
    r = check(_resumed_at_a_txn_after_an_unsure_write(["a", "b"], ["a", "b"]))
    assert r.valid is True, [a.to_json() for a in r.anomalies]


def test_a_resumed_watch_that_skips_the_sure_change_ahead_in_its_revision_is_not_resumable() -> None:
    r = check(_resumed_at_a_txn_after_an_unsure_write(["b", "a"], ["a"]))
    assert "watch:resumable" in kinds(r), [a.to_json() for a in r.anomalies]


def test_the_order_within_a_revision_several_timed_out_txns_may_have_made_is_unknown() -> None:
    """Clean watch swarm seed 1012 (a false alarm before): revision 204 deleted w/k1 then w/k0,
    and three timed-out txns deleting different sets of keys could each have made it; the
    replay lists an ambiguous revision's keys sorted, which is no order to hold a stream to."""
    h = _two_timed_out_txns_delete_a_and_b([["a", "b"], ["b", "a", "c"]])
    r = check(h)
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    # the same stream delivering the revision's events twice is still reported
    line = next(d for d in h if d["process"] == 100 and isinstance(d["value"], dict)
                and d["value"].get("revision") == 4)
    line["value"]["events"].append(copy.deepcopy(line["value"]["events"][0]))
    assert "watch:unique" in kinds(check(h))


def _optimistic_updates(*, failed_compare_at: int = 3, update_succeeded: bool = True,
                        timed_out_put: bool = False) -> list[dict[str, Any]]:
    """The kubernetes workload's optimistic concurrency: p=1 @2 (a create: compare
    mod_revision == 0), an update from revision 2 (compare mod_revision == 2) that succeeds
    @3, then a txn comparing mod_revision == ``failed_compare_at`` that fails at header 3
    (right only if the compared revision is not 3). With ``update_succeeded`` False the
    update is recorded as failed at header 2 although p's mod_revision there was 2. With
    ``timed_out_put`` a put of p that nothing shows (the final read lists no key) is given
    revision 4 as a guess, and the failed txn answered at 4."""
    h, op = recorder()

    op(0, "invoke", "txn", [["put", "p", 1]])
    op(0, "ok", "txn", [["put", "p", 1]], revision=2, compare=[["mod_revision", "p", 0]], succeeded=True)
    op(1, "invoke", "txn", [["put", "p", 2]])
    if update_succeeded:
        op(1, "ok", "txn", [["put", "p", 2]], revision=3, compare=[["mod_revision", "p", 2]], succeeded=True)
        final = (2, 2, 3, 2)
        last = 3
    else:
        op(1, "fail", "txn", [["put", "p", 2]], revision=2, compare=[["mod_revision", "p", 2]],
           succeeded=False, error="compare-failed")
        final = (1, 2, 2, 1)
        last = 2
    header = last
    if timed_out_put:
        op(3, "invoke", "put", 9, key="p")
        op(3, "info", "put", 9, key="p", error="timeout")
        header = last + 1
    op(2, "invoke", "txn", [["put", "p", 5]])
    op(2, "fail", "txn", [["put", "p", 5]], revision=header, compare=[["mod_revision", "p", failed_compare_at]],
       succeeded=False, error="compare-failed")
    op(4, "invoke", "range", None)
    kvs = [] if timed_out_put else [{"key": "p", "value": final[0], "create_revision": final[1],
                                    "mod_revision": final[2], "version": final[3]}]
    op(4, "ok", "range", {kv["key"]: kv["value"] for kv in kvs}, revision=header, kvs=kvs)
    return h


def test_txn_compares_that_match_the_replayed_state_are_valid() -> None:
    r = check(_optimistic_updates(failed_compare_at=2))
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    assert r.detail["compares_checked"] == 3


def test_a_failed_compare_that_the_replayed_state_satisfies_is_a_compare_state_anomaly() -> None:
    r = check(_optimistic_updates(failed_compare_at=3))
    assert kinds(r) == {"kv:compare-state"}, [a.to_json() for a in r.anomalies]
    a = r.anomalies[0]
    assert a.detail["revision"] == 3 and a.detail["key"] == "p" and a.detail["expected"] is True
    assert a.detail["replayed"] == {"p": [2, 2, 3, 2]}


def test_a_succeeded_txn_is_checked_at_the_revision_before_its_own_write() -> None:
    # the update @3 compared mod_revision == 2: true at 2 (its own write made 3, where it is false)
    h = _optimistic_updates(failed_compare_at=2)
    assert check(h).valid is True
    # a create that succeeded although the key existed (mod_revision 2 at revision 2)
    h2 = copy.deepcopy(h)
    upd = find(h2, 1, lambda d: d["type"] == "ok")
    upd["compare"] = [["mod_revision", "p", 0]]
    r = check(h2)
    assert kinds(r) == {"kv:compare-state"}, [a.to_json() for a in r.anomalies]
    assert r.anomalies[0].detail["revision"] == 2 and r.anomalies[0].detail["expected"] is False


def test_a_failed_update_whose_compare_held_is_a_compare_state_anomaly() -> None:
    r = check(_optimistic_updates(update_succeeded=False, failed_compare_at=1))
    assert kinds(r) == {"kv:compare-state"}, [a.to_json() for a in r.anomalies]
    assert {a.detail["revision"] for a in r.anomalies} == {2}


def test_a_compare_at_an_uncertain_revision_is_not_judged() -> None:
    # revision 4 is a guess (a timed-out put of p): the failed txn at 4 compared mod_revision == 4,
    # which holds in the replay but may not have held in the store; nothing is reported
    r = check(_optimistic_updates(failed_compare_at=4, timed_out_put=True))
    assert r.detail["uncertain_revisions"] == [4]
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    assert r.detail["compares_checked"] == 2  # the create and the update, not the txn at 4
    # without a recorded outcome (older histories) the compare is not judged either
    h = _optimistic_updates(failed_compare_at=3)
    for d in h:
        d.pop("succeeded", None)
    r = check(h)
    assert r.valid is True and r.detail["compares_checked"] == 0


def _cas_history(failed_old: int) -> list[dict[str, Any]]:
    """a=1 @2; cas a 1 -> 2 succeeds @3; a cas a ``failed_old`` -> 3 fails at header 3 (right
    unless ``failed_old`` is 2, a's value there)."""
    h, op = recorder()

    op(0, "invoke", "put", 1, key="a")
    op(0, "ok", "put", 1, key="a", revision=2)
    op(1, "invoke", "cas", [1, 2], key="a")
    op(1, "ok", "cas", [1, 2], key="a", revision=3, succeeded=True, compare=[["value", "a", 1]])
    op(2, "invoke", "cas", [failed_old, 3], key="a")
    op(2, "fail", "cas", [failed_old, 3], key="a", revision=3, succeeded=False, compare=[["value", "a", failed_old]],
       error="compare-failed")
    op(3, "invoke", "range", None)
    op(3, "ok", "range", {"a": 2}, revision=3,
       kvs=[{"key": "a", "value": 2, "create_revision": 2, "mod_revision": 3, "version": 2}])
    return h


def test_a_cas_outcome_is_checked_against_the_replayed_value() -> None:
    r = check(_cas_history(failed_old=1))
    assert r.valid is True and r.detail["compares_checked"] == 2, [a.to_json() for a in r.anomalies]
    r = check(_cas_history(failed_old=2))
    assert kinds(r) == {"kv:compare-state"}, [a.to_json() for a in r.anomalies]
    assert r.anomalies[0].detail["replayed"] == {"a": [2, 2, 3, 2]}


def _with_past_read(read_revision: int, kvs: list[dict[str, Any]], *, after_compaction: bool = True,
                    last: bool = False) -> list[dict[str, Any]]:
    """base() plus a range of the whole space at the past revision ``read_revision`` answering
    ``kvs``: begun after the compaction at 3 completed (or before it), or as the last op."""
    h = base()
    inv = {"process": 7, "type": "invoke", "f": "range", "value": None, "read_revision": read_revision}
    done = {"process": 7, "type": "ok", "f": "range", "value": {kv["key"]: kv["value"] for kv in kvs},
            "read_revision": read_revision, "revision": 4, "kvs": kvs}
    if last:
        h += [inv, {**done, "revision": 5}]
        return h
    at = h.index(find(h, 9, lambda d: d["type"] == "ok")) + (1 if after_compaction else 0)
    h[at:at] = [inv, done]
    return h


A2 = {"key": "a", "value": 2, "create_revision": 2, "mod_revision": 3, "version": 2}
A1 = {"key": "a", "value": 1, "create_revision": 2, "mod_revision": 2, "version": 1}


def test_a_read_at_a_past_revision_is_checked_against_the_replay_there() -> None:
    assert check(_with_past_read(3, [A2])).valid is True
    assert check(_with_past_read(2, [A1], after_compaction=False)).valid is True
    r = check(_with_past_read(3, [A1]))
    assert kinds(r) == {"kv:read-state"}, [a.to_json() for a in r.anomalies]
    assert r.anomalies[0].detail["revision"] == 3
    # a past read that comes last is not the final read (it would be compared with the final state)
    assert check(_with_past_read(3, [A2], last=True)).valid is True


def test_an_answered_read_below_a_completed_compaction_is_a_compacted_read() -> None:
    r = check(_with_past_read(2, [A1]))
    assert kinds(r) == {"kv:compacted-read"}, [a.to_json() for a in r.anomalies]
    assert r.anomalies[0].detail == {"revision": 2, "compacted": 3}
    # failing with compacted is the right answer
    h = _with_past_read(2, [A1])
    done = find(h, 7, lambda d: d["type"] == "ok")
    done.update(type="fail", value=None, error="compacted")
    for k in ("revision", "kvs"):
        done.pop(k)
    assert check(h).valid is True


def test_a_past_read_is_not_a_linearizable_read_of_the_current_value() -> None:
    # a at revision 2 (value 1) read after a = 2 completed: fine at a past revision
    h = _with_past_read(2, [A1], after_compaction=False)
    opts = CheckOptions(model="cas-register", extra={"kv_ops": True, "compare_failed": True})
    assert run_checkers(["linearizable"], to_ops(h), opts)["linearizable"].valid is True
    for d in h:  # read as a read of the current value, it is stale
        d.pop("read_revision", None)
    assert run_checkers(["linearizable"], to_ops(h), opts)["linearizable"].valid is False


A4 = {"key": "a", "value": 4, "create_revision": 5, "mod_revision": 5, "version": 1}
B3 = {"key": "b", "value": 3, "create_revision": 5, "mod_revision": 5, "version": 1}


def _with_partial_range(key: str, end: str, limit: int, kvs: list[dict[str, Any]], count: int, more: bool,
                        read_revision: int = 0) -> list[dict[str, Any]]:
    """base() plus, last, a range of part of the space (the watch workload's ``_range``: the
    request is the invocation's value and the completion's ``range``) answering ``kvs``,
    ``count`` and ``more`` at revision 5 (or at the past ``read_revision``)."""
    h = base()
    request = {"key": key, "range_end": end, "limit": limit, "revision": read_revision}
    done: dict[str, Any] = {"process": 8, "type": "ok", "f": "range", "value": {kv["key"]: kv["value"] for kv in kvs},
                            "revision": 5, "kvs": kvs, "count": count, "more": more,
                            "range": {"key": key, "range_end": end, "limit": limit}}
    if read_revision:
        done["read_revision"] = read_revision
    h += [{"process": 8, "type": "invoke", "f": "range", "value": request}, done]
    return h


def test_a_range_of_part_of_the_space_with_a_limit_is_valid_when_it_shows_the_first_keys() -> None:
    assert check(_with_partial_range("a", "b", 0, [A4], 1, False)).valid is True
    assert check(_with_partial_range("a", "\u0000", 1, [A4], 2, True)).valid is True  # b lies past the limit
    assert check(_with_partial_range("a", "\u0000", 2, [A4, B3], 2, False)).valid is True
    assert check(_with_partial_range("b", "c", 0, [B3], 1, False)).valid is True
    assert check(_with_partial_range("a", "b", 1, [A2], 1, False, read_revision=3)).valid is True
    assert check(_with_partial_range("c", "\u0000", 0, [], 0, False)).valid is True
    # the last ok range is a partial one: the final read stays the whole-space range before it
    assert check(_with_partial_range("b", "c", 0, [B3], 1, False)).detail["final_read"] != len(base()) + 1


def test_a_range_that_shows_a_key_outside_its_bounds_or_past_its_limit_is_range_bounds() -> None:
    r = check(_with_partial_range("a", "b", 0, [A4, B3], 2, False))  # b is its range_end: excluded
    assert kinds(r) == {"kv:range-bounds"}, [a.to_json() for a in r.anomalies]
    r = check(_with_partial_range("a", "\u0000", 1, [A4, B3], 2, False))
    assert kinds(r) == {"kv:range-bounds"}, [a.to_json() for a in r.anomalies]
    r = check(_with_partial_range("a", "\u0000", 0, [B3, A4], 2, False))  # not in key order
    assert kinds(r) == {"kv:range-bounds"}, [a.to_json() for a in r.anomalies]


def test_a_range_whose_count_or_more_disagrees_with_the_write_order_is_range_count() -> None:
    r = check(_with_partial_range("a", "\u0000", 1, [A4], 1, True))  # count is unaffected by the limit
    assert kinds(r) == {"kv:range-count"}, [a.to_json() for a in r.anomalies]
    assert r.anomalies[0].detail["present"] == ["a", "b"]
    r = check(_with_partial_range("a", "\u0000", 2, [A4, B3], 2, True))  # no key past the two returned
    assert kinds(r) == {"kv:range-count"}, [a.to_json() for a in r.anomalies]
    # b is past the limit: more (and without more, the response claims b absent)
    r = check(_with_partial_range("a", "\u0000", 1, [A4], 2, False))
    assert kinds(r) == {"kv:range-count", "kv:read-state"}, [a.to_json() for a in r.anomalies]
    # skipping the first key of the range: a shown absent where it is present
    r = check(_with_partial_range("a", "\u0000", 1, [B3], 2, True))
    assert kinds(r) == {"kv:read-state"}, [a.to_json() for a in r.anomalies]


def test_a_partial_range_is_not_a_read_of_every_key_for_the_linearizable_checker() -> None:
    h = _with_partial_range("a", "\u0000", 1, [A4], 2, True)
    opts = CheckOptions(model="cas-register", extra={"kv_ops": True, "compare_failed": True})
    assert run_checkers(["linearizable"], to_ops(h), opts)["linearizable"].valid is True


def _guarded_txn(compare: list[list[Any]], succeeded: bool) -> list[dict[str, Any]]:
    """a=1 @2, a=2 @3 (a: create 2, mod 3, version 2; b never written), then a txn guarded by
    ``compare`` that puts b=9: at revision 4 if it ``succeeded``, else failed at header 3."""
    h, op = recorder()
    op(0, "invoke", "put", 1, key="a")
    op(0, "ok", "put", 1, key="a", revision=2)
    op(0, "invoke", "put", 2, key="a")
    op(0, "ok", "put", 2, key="a", revision=3)
    op(1, "invoke", "txn", [["put", "b", 9]])
    if succeeded:
        op(1, "ok", "txn", [["put", "b", 9]], revision=4, succeeded=True, compare=compare)
        kvs = [{"key": "a", "value": 2, "create_revision": 2, "mod_revision": 3, "version": 2},
               {"key": "b", "value": 9, "create_revision": 4, "mod_revision": 4, "version": 1}]
    else:
        op(1, "fail", "txn", [["put", "b", 9]], revision=3, succeeded=False, compare=compare)
        kvs = [{"key": "a", "value": 2, "create_revision": 2, "mod_revision": 3, "version": 2}]
    op(3, "invoke", "range", None)
    op(3, "ok", "range", {kv["key"]: kv["value"] for kv in kvs}, revision=4 if succeeded else 3, kvs=kvs)
    return h


@pytest.mark.parametrize("compare, holds", [
    ([["version", "a", 1, ">"]], True),
    ([["version", "a", 2, ">"]], False),
    ([["version", "a", 3, "<"]], True),
    ([["mod_revision", "a", 3, "!="]], False),
    ([["create_revision", "a", 2, "="], ["mod_revision", "a", 4, "<"]], True),
    ([["version", "b", 0, "="]], True),  # a missing key compares with zeros
    ([["create_revision", "b", 1, "<"]], True),
    ([["mod_revision", "b", 0, ">"]], False),
    ([["value", "a", 1, "!="]], True),
    ([["value", "b", 1, "!="]], False),  # a value compare on a missing key fails, whatever the result
    ([["value", "a", 2, "="], ["version", "b", 0, "!="]], False),
])
def test_a_guarded_txn_outcome_follows_its_compares_on_the_replayed_state(compare: list[list[Any]],
                                                                          holds: bool) -> None:
    r = check(_guarded_txn(compare, holds))
    assert r.valid is True and r.detail["compares_checked"] == 1, [a.to_json() for a in r.anomalies]
    r = check(_guarded_txn(compare, not holds))
    assert kinds(r) == {"kv:compare-state"}, [a.to_json() for a in r.anomalies]


def test_a_value_compare_by_order_is_not_judged() -> None:
    # etcd orders values as bytes: the history's numbers do not tell the outcome
    r = check(_guarded_txn([["value", "a", 10, "<"]], False))
    assert r.valid is True and r.detail["compares_checked"] == 0, [a.to_json() for a in r.anomalies]


def _with_delete_range(key: str, end: str, names: list[str], keys: list[str] | None = None) -> list[dict[str, Any]]:
    """base() plus, last, a delete of ``[key, end)`` (the watch workload's ``delete-range``)
    whose response names ``names`` as deleted, at revision 6 (at header 5 if none)."""
    h = base()
    request = {"key": key, "range_end": end, "keys": keys if keys is not None else ["a", "b"]}
    h += [{"process": 8, "type": "invoke", "f": "delete-range", "value": request},
          {"process": 8, "type": "ok", "f": "delete-range", "value": request, "revision": 6 if names else 5,
           "deleted": len(names), "deleted_keys": names}]
    return h


def test_a_delete_of_a_range_deletes_exactly_the_keys_present_in_it() -> None:
    assert check(_with_delete_range("a", "\u0000", ["a", "b"])).valid is True
    assert check(_with_delete_range("a", "b", ["a"], keys=["a"])).valid is True
    assert check(_with_delete_range("c", "\u0000", [], keys=[])).valid is True
    opts = CheckOptions(model="cas-register", extra={"kv_ops": True, "compare_failed": True})
    h = _with_delete_range("a", "\u0000", ["a", "b"])
    h += [{"process": 9, "type": "invoke", "f": "read", "value": None, "key": "b"},
          {"process": 9, "type": "ok", "f": "read", "value": None, "key": "b", "revision": 6}]
    assert run_checkers(["linearizable"], to_ops(h), opts)["linearizable"].valid is True
    assert check(h).valid is True
    h[-1]["value"] = 3  # b read after the delete of its range completed
    assert run_checkers(["linearizable"], to_ops(h), opts)["linearizable"].valid is False


def test_a_delete_of_a_range_that_misses_a_key_or_takes_its_end_is_delete_range() -> None:
    r = check(_with_delete_range("a", "\u0000", ["a"]))  # b was in the range, and present
    assert "kv:delete-range" in kinds(r), [a.to_json() for a in r.anomalies]
    r = check(_with_delete_range("a", "b", ["a", "b"], keys=["a"]))  # b is its range_end: kept
    assert "kv:delete-range" in kinds(r), [a.to_json() for a in r.anomalies]
    r = check(_with_delete_range("a", "\u0000", []))  # deleted nothing while a and b were there
    assert kinds(r) == {"kv:delete-range"}, [a.to_json() for a in r.anomalies]


def _with_compaction(revision: int, typ: str, answered: int = 4) -> list[dict[str, Any]]:
    """base() plus a compaction at ``revision`` begun after the one at 3 completed, answered
    ``typ`` (ok at header revision ``answered``, or fail)."""
    h = base()
    done: dict[str, Any] = {"process": 8, "type": typ, "f": "compact", "value": revision}
    done.update({"revision": answered} if typ == "ok" else {"error": "compacted"})
    at = h.index(find(h, 9, lambda d: d["type"] == "ok")) + 1
    h[at:at] = [{"process": 8, "type": "invoke", "f": "compact", "value": revision}, done]
    return h


def test_a_compaction_the_store_must_refuse_when_applied_is_judged() -> None:
    """etcd refuses a compaction at a revision already compacted (ErrCompacted) or beyond the
    store's (ErrFutureRev) when it applies it; refused, or at a revision in between, is right."""
    assert check(_with_compaction(3, "fail")).valid is True
    assert check(_with_compaction(4, "ok")).valid is True
    r = check(_with_compaction(3, "ok"))
    assert kinds(r) == {"kv:compaction-not-refused"}, [a.to_json() for a in r.anomalies]
    assert r.anomalies[0].detail == {"revision": 3, "compacted": 3}
    r = check(_with_compaction(1004, "ok", answered=4))
    assert kinds(r) == {"kv:compaction-future"}, [a.to_json() for a in r.anomalies]
