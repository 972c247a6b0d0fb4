"""One test per etcd watch rule: start revision (now or past), prev_kv, filters, ranges,
compaction cancel, progress notifications, cancel, atomic revisions."""

from __future__ import annotations

from typing import Any

import pytest

from kvcheck.reference.kv.requests import (
    CompactionRequest,
    DeleteRangeRequest,
    ErrEmptyKey,
    ErrWatchIDExists,
    EventType,
    FilterType,
    PutRequest,
    TxnRequest,
    WatchCreateRequest,
    WatchResponse,
)


def events(responses: list[Any]) -> list[tuple[str, bytes, int]]:
    """(type, key, mod_revision) of every event in responses ((id, resp) pairs or resps)."""
    out = []
    for r in responses:
        resp = r[1] if isinstance(r, tuple) else r
        for ev in resp.events:
            out.append((EventType(ev.type).name, ev.kv.key, ev.kv.mod_revision))
    return out


def test_watch_from_now_sends_created_then_only_later_events(kv: Any) -> None:
    kv.apply(PutRequest(b"a", b"old"))
    wid, now = kv.m.create_watch(WatchCreateRequest(b"a"))
    assert len(now) == 1 and now[0].created and now[0].watch_id == wid and now[0].header.revision == 2
    kv.apply(PutRequest(b"a", b"new"))
    kv.apply(PutRequest(b"b", b"other"))
    taken = kv.m.take_watch_responses()
    assert events(taken) == [("PUT", b"a", 3)]
    assert taken[-1][1].header.revision == 4  # every event up to 4 has been sent
    assert kv.m.take_watch_responses() == []


def test_watch_from_a_past_revision_catches_up_from_history(kv: Any) -> None:
    for i in range(3):
        kv.apply(PutRequest(b"a", b"%d" % i))  # revs 2, 3, 4
    kv.apply(DeleteRangeRequest(b"a"))  # 5
    _, now = kv.m.create_watch(WatchCreateRequest(b"a", start_revision=3))
    assert now[0].created
    assert events(now[1:]) == [("PUT", b"a", 3), ("PUT", b"a", 4), ("DELETE", b"a", 5)]
    assert now[-1].header.revision == 5


def test_watch_prev_kv_attaches_the_previous_version(kv: Any) -> None:
    kv.apply(PutRequest(b"a", b"1"))
    kv.m.create_watch(WatchCreateRequest(b"a", prev_kv=True))
    kv.apply(PutRequest(b"a", b"2"))
    kv.apply(DeleteRangeRequest(b"a"))
    kv.apply(PutRequest(b"a", b"3"))
    evs = [ev for _, r in kv.m.take_watch_responses() for ev in r.events]
    assert [ev.prev_kv.value if ev.prev_kv else None for ev in evs] == [b"1", b"2", None]
    assert evs[1].type == EventType.DELETE and evs[1].kv.value == b"" and evs[1].kv.version == 0


def test_watch_without_prev_kv_sends_none(kv: Any) -> None:
    kv.apply(PutRequest(b"a", b"1"))
    kv.m.create_watch(WatchCreateRequest(b"a"))
    kv.apply(PutRequest(b"a", b"2"))
    assert kv.m.take_watch_responses()[0][1].events[0].prev_kv is None


def test_watch_filters_drop_puts_or_deletes(kv: Any) -> None:
    no_put, _ = kv.m.create_watch(WatchCreateRequest(b"a", filters=[FilterType.NOPUT]))
    no_del, _ = kv.m.create_watch(WatchCreateRequest(b"a", filters=[FilterType.NODELETE]))
    kv.apply(PutRequest(b"a", b"1"))
    kv.apply(DeleteRangeRequest(b"a"))
    taken = kv.m.take_watch_responses()
    assert events([r for w, r in taken if w == no_put]) == [("DELETE", b"a", 3)]
    assert events([r for w, r in taken if w == no_del]) == [("PUT", b"a", 2)]


def test_watch_on_a_range_sees_every_key_in_it(kv: Any) -> None:
    kv.m.create_watch(WatchCreateRequest(b"p/", b"p0"))
    kv.apply(PutRequest(b"p/1", b"x"))
    kv.apply(PutRequest(b"q", b"x"))
    kv.apply(PutRequest(b"p/2", b"x"))
    kv.apply(PutRequest(b"p", b"x"))
    assert [k for _, k, _ in events(kv.m.take_watch_responses())] == [b"p/1", b"p/2"]


def test_watch_events_of_one_revision_arrive_in_one_response(make_kv: Any) -> None:
    kv = make_kv(max_watch_events=2)
    kv.m.create_watch(WatchCreateRequest(b"a", b"\0"))
    kv.apply(TxnRequest([], [PutRequest(b"a", b"1"), PutRequest(b"b", b"1"), PutRequest(b"c", b"1")]))
    kv.apply(PutRequest(b"d", b"1"))
    kv.apply(PutRequest(b"e", b"1"))
    taken = [r for _, r in kv.m.take_watch_responses()]
    # the txn's three events stay together though a batch holds two; the rest fill batches
    assert [[ev.kv.mod_revision for ev in r.events] for r in taken] == [[2, 2, 2], [3, 4]]
    assert [r.header.revision for r in taken] == [2, 4]


def test_watch_from_a_compacted_revision_is_canceled_with_the_compact_revision(kv: Any) -> None:
    for i in range(4):
        kv.apply(PutRequest(b"a", b"%d" % i))  # 2..5
    kv.apply(CompactionRequest(4))
    wid, now = kv.m.create_watch(WatchCreateRequest(b"a", start_revision=3))
    assert now[0].created
    assert now[1].canceled and now[1].compact_revision == 4 and now[1].watch_id == wid
    assert "compacted" in now[1].cancel_reason
    kv.apply(PutRequest(b"a", b"later"))
    assert kv.m.take_watch_responses() == []  # a canceled watch gets nothing more


def test_watch_from_the_compact_revision_still_sees_its_changes(kv: Any) -> None:
    kv.apply(PutRequest(b"a", b"1"))  # 2
    kv.apply(DeleteRangeRequest(b"a"))  # 3
    kv.apply(PutRequest(b"b", b"1"))  # 4
    kv.apply(CompactionRequest(3))
    _, now = kv.m.create_watch(WatchCreateRequest(b"a", b"\0", start_revision=3))
    assert events(now[1:]) == [("DELETE", b"a", 3), ("PUT", b"b", 4)]


def test_progress_notification_never_leads_the_events_taken(kv: Any) -> None:
    wid, _ = kv.m.create_watch(WatchCreateRequest(b"a"))
    kv.apply(PutRequest(b"b", b"x"))  # 2: not watched
    [(pid, progress)] = kv.m.progress(wid)
    assert pid == wid and progress.header.revision == 2 and progress.events == []
    kv.apply(PutRequest(b"a", b"x"))  # 3: watched, not yet taken
    kv.apply(PutRequest(b"b", b"y"))  # 4
    assert kv.m.progress(wid)[0][1].header.revision == 2
    kv.m.take_watch_responses()
    assert kv.m.progress()[0][1].header.revision == 4
    assert kv.m.progress(999) == []
    notified, _ = kv.m.create_watch(WatchCreateRequest(b"a", progress_notify=True))
    assert kv.m.progress_notify_ids() == [notified]


def test_watch_cancel_stops_events(kv: Any) -> None:
    wid, _ = kv.m.create_watch(WatchCreateRequest(b"a"))
    resp = kv.m.cancel_watch(wid)
    assert isinstance(resp, WatchResponse) and resp.canceled and resp.watch_id == wid
    kv.apply(PutRequest(b"a", b"x"))
    assert kv.m.take_watch_responses() == []
    assert kv.m.cancel_watch(wid) is None


def test_watch_ids_are_chosen_or_given_and_a_given_id_in_use_is_an_error(kv: Any) -> None:
    first, _ = kv.m.create_watch(WatchCreateRequest(b"a"))
    given, _ = kv.m.create_watch(WatchCreateRequest(b"a", watch_id=2))
    third, _ = kv.m.create_watch(WatchCreateRequest(b"a"))
    assert (first, given, third) == (1, 2, 3)
    with pytest.raises(ErrWatchIDExists):
        kv.m.create_watch(WatchCreateRequest(b"a", watch_id=3))
    with pytest.raises(ErrEmptyKey):
        kv.m.create_watch(WatchCreateRequest(b""))


def test_watch_from_a_future_revision_waits_for_it(kv: Any) -> None:
    _, now = kv.m.create_watch(WatchCreateRequest(b"a", start_revision=4))
    assert len(now) == 1
    for i in range(4):
        kv.apply(PutRequest(b"a", b"%d" % i))  # 2..5
    assert events(kv.m.take_watch_responses()) == [("PUT", b"a", 4), ("PUT", b"a", 5)]


def test_install_snapshot_resyncs_watches_or_cancels_them_as_compacted(make_kv: Any) -> None:
    leader, follower = make_kv(), make_kv()
    follower.m.create_watch(WatchCreateRequest(b"a", b"\0"))
    for i in range(3):
        leader.apply(PutRequest(b"k%d" % i, b"v"))  # 2..4
    follower.m.install_snapshot(leader.m.snapshot())
    assert events(follower.m.take_watch_responses()) == [("PUT", b"k0", 2), ("PUT", b"k1", 3),
                                                         ("PUT", b"k2", 4)]
    lagging, _ = follower.m.create_watch(WatchCreateRequest(b"a", b"\0"))
    for i in range(3):
        leader.apply(PutRequest(b"j%d" % i, b"v"))  # 5..7
    leader.apply(CompactionRequest(7))
    follower.m.install_snapshot(leader.m.snapshot())
    taken = follower.m.take_watch_responses()
    assert all(r.canceled and r.compact_revision == 7 for _, r in taken)
    assert sorted(w for w, _ in taken) == [1, lagging]


def test_bug_watch_resume_gap_skips_the_resumed_revision(make_kv: Any) -> None:
    from kvcheck.reference.bugs import Bugs

    kv = make_kv(bugs=Bugs(watch_resume_gap=True))
    for i in range(3):
        kv.apply(PutRequest(b"a", b"%d" % i))  # 2..4
    _, now = kv.m.create_watch(WatchCreateRequest(b"a", start_revision=3))
    assert events(now[1:]) == [("PUT", b"a", 4)]  # revision 3 is missing


def test_install_snapshot_hands_out_queued_events_before_the_new_state(make_kv: Any) -> None:
    leader, follower = make_kv(), make_kv()
    follower.m.create_watch(WatchCreateRequest(b"a", b"\0"))
    for kv in (leader, follower):
        kv.apply(PutRequest(b"a", b"1"))  # 2, applied on both
    leader.apply(PutRequest(b"b", b"1"))  # 3, only in the snapshot
    follower.m.install_snapshot(leader.m.snapshot())
    taken = [r for _, r in follower.m.take_watch_responses()]
    assert [(r.header.revision, [ev.kv.mod_revision for ev in r.events]) for r in taken] == [
        (2, [2]), (3, [3])]
