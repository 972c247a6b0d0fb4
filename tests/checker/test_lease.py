"""The lease checker on small hand-written histories (times in seconds; TTL 2, bound 1).
Reads and keepalives carry the answering member's raft ``term`` as the lease workload
records them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kvcheck.checker.api import CheckOptions
from kvcheck.checker.history import Op
from kvcheck.checker.lease import LeaseChecker
from kvcheck.checker.watch import WatchChecker

S = 1_000_000_000


def recorder() -> tuple[list[dict[str, Any]], Callable[..., None]]:
    """A history being written and the function that appends one op to it at ``t``
    seconds: ``op(t, process, type, f, value=None, **extra)``."""
    h: list[dict[str, Any]] = []

    def op(t: float, process: Any, typ: str, f: str, value: Any = None, **extra: Any) -> None:
        h.append({"time": int(t * S), "process": process, "type": typ, "f": f, "value": value, **extra})

    return h, op


def numbered(h: list[dict[str, Any]]) -> list[Op]:
    return [Op.from_dict({"index": i, **d}, position=i) for i, d in enumerate(h)]


def lease_7_renewed_at_1_1(op: Callable[..., None]) -> None:
    """Lease 7 (TTL 2) granted in term 2, its key l/a put at revision 2, renewed by a
    keepalive answered at 1.1 s in term 2."""
    op(0.1, 0, "invoke", "lease-grant", 2)
    op(0.2, 0, "ok", "lease-grant", 2, lease=7, revision=1, term=2)
    op(0.3, 0, "invoke", "put", 1, key="l/a", lease=7)
    op(0.4, 0, "ok", "put", 1, key="l/a", lease=7, revision=2)
    op(1.0, 0, "invoke", "lease-keepalive", 7)
    op(1.1, 0, "ok", "lease-keepalive", 2, term=2)


def history(*, keepalive_ttl_after_expiry: int = 0, expiry_seen_at: float = 3.5,
            final_read_at: float = 9.0, final_has_key: bool = False, revoke: bool = False,
            clock_fault: bool = False, revoke_timed_out: int | None = None,
            dead_put: tuple[float, str] | None = None) -> list[Op]:
    h, op = recorder()

    watch = {"key": "l/", "range_end": "l0", "start_revision": 0}
    op(0.0, 100, "invoke", "watch", watch)
    op(0.01, 100, "ok", "watch", {"watch_id": 1, "created": True, "canceled": False, "compact_revision": 0,
                                  "revision": 1, "events": []})
    op(0.1, 0, "invoke", "lease-grant", 2)
    op(0.2, 0, "ok", "lease-grant", 2, lease=7, revision=1)
    op(0.3, 0, "invoke", "put", 1, key="l/a", lease=7)
    op(0.4, 0, "ok", "put", 1, key="l/a", lease=7, revision=2)
    op(0.45, 100, "ok", "watch", {"watch_id": 1, "created": False, "canceled": False, "compact_revision": 0,
                                  "revision": 2, "events": [{"type": "put", "key": "l/a", "value": 1,
                                                             "create_revision": 2, "mod_revision": 2,
                                                             "version": 1}]})
    op(1.0, 0, "invoke", "lease-keepalive", 7)
    op(1.1, 0, "ok", "lease-keepalive", 2, term=2)
    if clock_fault:
        op(1.2, "nemesis", "invoke", "start-clock", {})
        op(1.2, "nemesis", "info", "start-clock", {})
        op(1.3, "nemesis", "invoke", "stop-clock", {})
        op(1.3, "nemesis", "info", "stop-clock", {})
    if revoke:
        op(1.5, 0, "invoke", "lease-revoke", 7)
        op(1.6, 0, "ok", "lease-revoke", 7, revision=3)
    if revoke_timed_out is not None:  # a revoke of that lease that timed out (it may have applied)
        op(1.5, 2, "invoke", "lease-revoke", revoke_timed_out)
        op(2.0, 2, "info", "lease-revoke", revoke_timed_out, error="timeout")
    delete = {"type": "delete", "key": "l/a", "value": None, "create_revision": 0, "mod_revision": 3, "version": 0}
    op(expiry_seen_at, 100, "ok", "watch", {"watch_id": 1, "created": False, "canceled": False,
                                            "compact_revision": 0, "revision": 3, "events": [delete]})
    op(6.0, 0, "invoke", "lease-keepalive", 7)
    op(6.1, 0, "ok", "lease-keepalive", keepalive_ttl_after_expiry, term=2)
    if dead_put is not None:  # (invoked at, answer): a put of l/b with lease 7 on another process
        at, typ = dead_put
        op(at, 3, "invoke", "put", 5, key="l/b", lease=7)
        op(at + 0.05, 3, typ, "put", 5, key="l/b", lease=7,
           **({"revision": 4} if typ == "ok" else {"error": "lease_not_found"}))
    op(8.0, 100, "ok", "watch", {"end": "closed"})
    kv = [{"key": "l/a", "value": 1, "create_revision": 2, "mod_revision": 2, "version": 1, "lease": 7}]
    op(final_read_at, 1, "invoke", "range", None)
    op(final_read_at + 0.01, 1, "ok", "range", {"l/a": 1} if final_has_key else {}, revision=3,
       kvs=kv if final_has_key else [], term=2)
    return numbered(h)


OPTS = CheckOptions(extra={"lease_bound": 1.0, "lease_bound_parts": {"leader_stall": 0.5, "check": 0.5,
                                                                      "bound": 1.0}})


def kinds(ops: list[Op]) -> set[str]:
    return {a.kind for a in LeaseChecker().check(ops, OPTS).anomalies}


def test_a_lease_that_expires_in_time_is_valid_for_both_checkers() -> None:
    ops = history()
    r = LeaseChecker().check(ops, OPTS)
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    assert r.detail["leases"] == 1 and r.detail["expiries_seen"] == 1 and r.detail["bound_seconds"] == 1.0
    w = WatchChecker().check(ops, OPTS)
    assert w.valid is True, [a.to_json() for a in w.anomalies]
    assert any("lease expiry" in p["how"] for p in w.detail["placements"])
    assert "TTL + 1 s" in LeaseChecker().summary_lines(r.to_json(), str)[0]


def test_an_expiry_before_ttl_is_early() -> None:
    assert "lease:early-expiry" in kinds(history(expiry_seen_at=2.5))  # last keepalive invoked at 1.0, TTL 2


def test_clock_faults_excuse_an_early_expiry() -> None:
    assert kinds(history(expiry_seen_at=2.5, clock_fault=True)) == set()


def test_a_keepalive_that_revives_an_expired_lease_is_reported() -> None:
    assert "lease:keepalive-after-expiry" in kinds(history(keepalive_ttl_after_expiry=2))


def test_a_key_still_there_long_after_its_lease_lapsed_is_late() -> None:
    assert "lease:late-expiry" in kinds(history(final_has_key=True, final_read_at=9.0))
    # within TTL + bound of the last keepalive (completed at 1.1): not late
    assert "lease:late-expiry" not in kinds(history(final_has_key=True, final_read_at=3.5))


def test_a_revoke_deletes_at_its_revision_and_stays_revoked() -> None:
    ops = history(revoke=True)
    assert WatchChecker().check(ops, OPTS).valid is True
    assert kinds(ops) == set()
    assert "lease:keepalive-after-revoke" in kinds(history(revoke=True, keepalive_ttl_after_expiry=2))
    assert "lease:revoked-key-present" in kinds(history(revoke=True, final_has_key=True, final_read_at=3.0))


def test_a_delete_a_timed_out_revoke_of_the_lease_may_have_made_is_not_an_early_expiry() -> None:
    """Clean lease swarm seed 111 (a false alarm): the watch saw lease 11's keys deleted 2.7 s
    after a keepalive (TTL 3), at a revision the timed-out revoke of lease 11 may have made."""
    ops = history(expiry_seen_at=2.5, revoke_timed_out=7)
    assert kinds(ops) == set()
    w = WatchChecker().check(ops, OPTS)
    assert w.valid is True, [a.to_json() for a in w.anomalies]
    # a timed-out revoke of another lease does not explain lease 7's keys going early
    assert "lease:early-expiry" in kinds(history(expiry_seen_at=2.5, revoke_timed_out=8))


def renewals(*, term_after: int = 2, in_flight: bool = False, clock_fault: bool = False,
             late_at: float = 3.5, renewed: bool = True) -> list[Op]:
    """A lease (TTL 2) granted and renewed in term 2; a keepalive invoked at ``late_at``
    answers TTL 2 in ``term_after``."""
    h, op = recorder()

    op(0.1, 0, "invoke", "lease-grant", 2)
    op(0.2, 0, "ok", "lease-grant", 2, lease=7, revision=1, term=2)
    if renewed:
        op(1.0, 0, "invoke", "lease-keepalive", 7)
        op(1.1, 0, "ok", "lease-keepalive", 2, term=2)
    if in_flight:  # a keepalive that timed out: it may have reached the leader at any time
        op(2.0, 1, "invoke", "lease-keepalive", 7)
        op(2.5, 1, "info", "lease-keepalive", 7, error="timeout")
    if clock_fault:
        op(1.5, "nemesis", "invoke", "start-clock", {})
        op(1.5, "nemesis", "info", "start-clock", {})
        op(2.5, "nemesis", "invoke", "stop-clock", {})
        op(2.5, "nemesis", "info", "stop-clock", {})
    op(late_at, 0, "invoke", "lease-keepalive", 7)
    op(late_at + 0.1, 0, "ok", "lease-keepalive", 2, term=term_after)
    return numbered(h)


def test_a_keepalive_that_revives_a_lapsed_lease_in_the_same_term_is_caught() -> None:
    r = LeaseChecker().check(renewals(), OPTS)
    found = [a for a in r.anomalies if a.kind == "lease:renewed-after-expiry"]
    assert r.valid is False and len(found) == 1, [a.to_json() for a in r.anomalies]
    assert "term 2" in found[0].explanation and found[0].ops == [renewals()[-2].id]


def test_a_late_keepalive_is_excused_by_a_new_term_an_in_flight_keepalive_or_a_clock_fault() -> None:
    assert "lease:renewed-after-expiry" not in kinds(renewals(term_after=3))  # a new leader restarts clocks
    assert "lease:renewed-after-expiry" not in kinds(renewals(in_flight=True))
    assert "lease:renewed-after-expiry" not in kinds(renewals(clock_fault=True))
    assert "lease:renewed-after-expiry" not in kinds(renewals(late_at=2.9))  # within TTL of the last renewal


def test_renewed_after_expiry_is_not_judged_on_a_members_term() -> None:
    """The real-etcd lease test (CI, kill of the leader n1 at 3.63 s, back at 5.82 s): a
    keepalive invoked at 4.99 s, 2.23 s after the last renewal of a TTL-2 lease, answered TTL 2
    at 6.20 s with term 2 -- the term restarted n1 filled in, not the new leader's, whose
    promotion restarted the lease's clock. With the receiving member's terms the same term
    does not mean one leadership: not judged."""
    member = CheckOptions(extra={**OPTS.extra, "keepalive_term": "member"})
    assert "lease:renewed-after-expiry" in kinds(renewals())
    assert "lease:renewed-after-expiry" not in {a.kind for a in LeaseChecker().check(renewals(), member).anomalies}


def test_a_grant_does_not_start_the_leaders_clock_for_renewed_after_expiry() -> None:
    """etcd answers a grant on any member once that member applied it; the leader's lessor
    starts the lease's clock when the leader applies it, which may be later (a paused or
    slow leader in the same term). So only a keepalive (renewed by the leader before it is
    answered) can show that the leader's clock must have lapsed; the real-etcd lease test
    once saw a keepalive 3.169 s after a TTL-3 grant answer TTL 3 in the grant's term."""
    assert "lease:renewed-after-expiry" not in kinds(renewals(renewed=False, late_at=3.5))
    # the same keepalive after an answered keepalive in that term is still caught
    assert "lease:renewed-after-expiry" in kinds(renewals(renewed=True, late_at=3.5))


def test_a_timed_out_keepalive_may_have_renewed_the_lease_for_late_expiry() -> None:
    """Clean lease swarm seed 293 (a false alarm before): the lessor's keepalive at the expiry's
    edge timed out; the leader may have renewed the lease with it, so the key may live TTL +
    the bound after the client gave up, not after the last keepalive answered."""
    h, op = recorder()

    lease_7_renewed_at_1_1(op)
    op(3.1, 0, "invoke", "lease-keepalive", 7)
    op(4.1, 0, "info", "lease-keepalive", 7, error="timeout")
    kv = [{"key": "l/a", "value": 1, "create_revision": 2, "mod_revision": 2, "version": 1, "lease": 7}]
    op(6.5, 1, "invoke", "range", None)  # 5.4 s after the last ok keepalive: TTL 2 + bound 1 passed
    op(6.51, 1, "ok", "range", {"l/a": 1}, revision=2, kvs=kv, term=2)
    ops = numbered(h)
    assert "lease:late-expiry" not in kinds(ops)  # 2.4 s after the timed-out one ended
    late = [Op.from_dict({**o.to_dict(), "time": o.time + int(2 * S)}, position=o.position)
            if o.f == "range" else o for o in ops]
    assert "lease:late-expiry" in kinds(late)  # 4.4 s after it: beyond TTL + the bound


def election_chain(*, read_at: float, read_term: int | None = 4, later_term_at: float | None = None) -> list[Op]:
    """Lease 7 (TTL 2) renewed last at 1.1 in term 2; then new leaders: another lease's
    keepalives are answered in term 3 at 3.0 and in term 4 at 5.0; a read invoked at
    ``read_at`` in ``read_term`` still shows lease 7's key."""
    h, op = recorder()

    lease_7_renewed_at_1_1(op)
    op(0.5, 5, "invoke", "lease-grant", 3)
    op(0.6, 5, "ok", "lease-grant", 3, lease=8, revision=3, term=2)
    for t, term in ((2.9, 3), (4.9, 4)) + (((later_term_at - 0.1, 5),) if later_term_at is not None else ()):
        op(t, 5, "invoke", "lease-keepalive", 8)
        op(t + 0.1, 5, "ok", "lease-keepalive", 3, term=term)
    h.sort(key=lambda d: d["time"])
    kv = [{"key": "l/a", "value": 1, "create_revision": 2, "mod_revision": 2, "version": 1, "lease": 7}]
    op(read_at, 1, "invoke", "range", None)
    op(read_at + 0.01, 1, "ok", "range", {"l/a": 1}, revision=3, kvs=kv,
       **({"term": read_term} if read_term is not None else {}))
    return numbered(h)


def test_each_new_leader_restarts_the_lease_so_an_election_chain_postpones_expiry() -> None:
    """Clean lease swarm seeds 217, 241 and 287 (false alarms before): stalled leaders (the
    sim's stall perturbation) lost their leadership one after another before their expiry
    proposals went out, and each new leader restarted every lease's clock at TTL (etcd's
    Promote: TTL + an election timeout), so the keys lived 8.5 to 8.9 s after the last
    keepalive. The read in term 4 came 6.4 s after lease 7's last keepalive (TTL 2 + bound 1
    passed) but only 2.5 s after a keepalive was first answered in term 4: its leader took
    over by then, and its own clock for lease 7 started then."""
    r = LeaseChecker().check(election_chain(read_at=7.5), OPTS)
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    # a read in a term no keepalive had been answered in yet (its leader may be brand new)
    assert kinds(election_chain(read_at=8.5, read_term=5, later_term_at=9.0)) == set()
    assert kinds(election_chain(read_at=8.5, read_term=5)) == set()


def test_a_key_outliving_its_leaders_clock_is_still_late() -> None:
    """The companion: the read's own leader (term 4) led from 5.0 at the latest; 3.5 s later
    (TTL 2 + bound 1 passed) its lessor must have expired lease 7."""
    r = LeaseChecker().check(election_chain(read_at=8.5), OPTS)
    late = [a for a in r.anomalies if a.kind == "lease:late-expiry"]
    assert r.valid is False and len(late) == 1, [a.to_json() for a in r.anomalies]
    assert "term 4" in late[0].explanation and "first answered in a term >= 4" in late[0].explanation
    # an earlier term's read is judged from that term's first keepalive (3.0): late already at 6.5
    assert "lease:late-expiry" in kinds(election_chain(read_at=6.5, read_term=3))
    assert "lease:late-expiry" not in kinds(election_chain(read_at=5.5, read_term=3))


def test_a_read_without_a_term_cannot_bound_the_elections_and_is_not_judged() -> None:
    r = LeaseChecker().check(election_chain(read_at=12.0, read_term=None), OPTS)
    assert r.valid is True and r.detail["reads_without_term"] == 1
    assert "without a raft term" in LeaseChecker().summary_lines(r.to_json(), str)[1]


def early_answer(*, answered_at: float = 1.6, ttl_answer: int = 0, clock_fault: bool = False,
                 concurrent: bool = False, revoke: str | None = None) -> list[Op]:
    """Lease 7 (TTL 2) granted and renewed at 1.0-1.1 s; then a keepalive answered
    ``ttl_answer`` at ``answered_at`` (invoked 0.1 s before; ``concurrent``: invoked before the
    renewal completed). ``revoke``: another client (an admin) revoked lease 7 at 1.2-1.3 s
    (``"ok"``) or its revoke invoked at 1.2 s timed out (``"info"``, at 1.9 s)."""
    h, op = recorder()
    lease_7_renewed_at_1_1(op)
    if revoke is not None:
        op(1.2, 9, "invoke", "lease-revoke", 7)
        op(1.3 if revoke == "ok" else 1.9, 9, revoke, "lease-revoke", 7, revision=3)
    if clock_fault:
        op(1.2, "nemesis", "invoke", "start-clock", {})
        op(1.2, "nemesis", "info", "start-clock", {})
        op(1.3, "nemesis", "invoke", "stop-clock", {})
        op(1.3, "nemesis", "info", "stop-clock", {})
    op(1.05 if concurrent else answered_at - 0.1, 1, "invoke", "lease-keepalive", 7)
    op(answered_at, 1, "ok", "lease-keepalive", ttl_answer, term=2)
    return numbered(h)


def test_a_keepalive_answered_expired_before_ttl_since_a_completed_renewal_is_caught() -> None:
    """A keepalive renewed lease 7 (TTL 2) at 1.0-1.1 s; another, invoked at 1.5 s, answered 0
    (expired or unknown) at 1.6 s: the lease lives until 3.0 s at the earliest, so the answer
    came from a lessor that is not the cluster's (a deposed leader, a leader that had not
    applied the grant)."""
    r = LeaseChecker().check(early_answer(), OPTS)
    found = [a for a in r.anomalies if a.kind == "lease:keepalive-early-expiry"]
    assert r.valid is False and len(found) == 1, [a.to_json() for a in r.anomalies]
    assert found[0].ops == [early_answer()[-2].id] and "0.600 s after" in found[0].explanation


def test_a_keepalive_answered_expired_after_ttl_concurrent_or_across_a_clock_fault_is_not_judged() -> None:
    assert "lease:keepalive-early-expiry" not in kinds(early_answer(answered_at=3.05))  # TTL has run out
    assert "lease:keepalive-early-expiry" not in kinds(early_answer(ttl_answer=2))  # renewed, not expired
    assert "lease:keepalive-early-expiry" not in kinds(early_answer(clock_fault=True))
    # invoked before the renewal completed: only the grant (invoked at 0.1 s) precedes it... and
    # TTL from the grant runs until 2.1 s, so an answer at 1.6 s is still early
    assert "lease:keepalive-early-expiry" in kinds(early_answer(concurrent=True))
    assert "lease:keepalive-early-expiry" not in kinds(early_answer(concurrent=True, answered_at=2.2))


def test_a_keepalive_after_a_revoke_by_another_client_must_answer_ttl_0() -> None:
    """The holder's keepalive loop runs on after an admin revoked its lease (etcd's clientv3
    stops only at an answer of TTL <= 0): TTL 0 then is right, before TTL had run out since the
    last renewal too, also after a revoke that timed out (it may have applied); TTL > 0 after
    the revoke completed is a renewal of a revoked lease."""
    for outcome in ("ok", "info"):
        r = LeaseChecker().check(early_answer(revoke=outcome), OPTS)
        assert r.valid is True, [a.to_json() for a in r.anomalies]
    renewed = early_answer(revoke="ok", ttl_answer=2)
    assert "lease:keepalive-after-revoke" in kinds(renewed)
    assert "lease:keepalive-after-revoke" not in kinds(early_answer(revoke="info", ttl_answer=2))


def _time_to_live(*, ttl: int = 2, granted: int = 2, keys: list[str] | None = None, after_revoke: bool = False,
                  before_put_done: bool = False) -> list[Op]:
    """Lease 7 (TTL 2) with l/a put on it, then a LeaseTimeToLive (keys) answering ``ttl``,
    ``granted`` and ``keys``: while the lease lives, after its revoke completed, or while its
    put is still in flight."""
    h, op = recorder()
    op(0.1, 0, "invoke", "lease-grant", 2)
    op(0.2, 0, "ok", "lease-grant", 2, lease=7, revision=1, term=2)
    op(0.3, 0, "invoke", "put", 1, key="l/a", lease=7)
    if before_put_done:
        op(0.35, 1, "invoke", "lease-timetolive", 7)
        op(0.36, 1, "ok", "lease-timetolive", ttl, granted_ttl=granted, keys=keys if keys is not None else [], term=2)
    op(0.4, 0, "ok", "put", 1, key="l/a", lease=7, revision=2)
    if after_revoke:
        op(0.5, 0, "invoke", "lease-revoke", 7)
        op(0.6, 0, "ok", "lease-revoke", 7, revision=3)
    if not before_put_done:
        op(0.7, 0, "invoke", "lease-timetolive", 7)
        op(0.8, 0, "ok", "lease-timetolive", ttl, granted_ttl=granted, keys=["l/a"] if keys is None else keys, term=2)
    return numbered(h)


def test_time_to_live_of_a_live_lease_names_its_ttl_and_keys_and_of_a_revoked_one_minus_one() -> None:
    assert kinds(_time_to_live()) == set()
    assert kinds(_time_to_live(ttl=1)) == set()  # floor(0.1 + 2 - 0.8): at least 1 s left
    assert kinds(_time_to_live(ttl=-1, keys=[], after_revoke=True)) == set()
    assert kinds(_time_to_live(ttl=1, before_put_done=True, keys=[])) == set()  # the put may come later
    assert kinds(_time_to_live(ttl=1, before_put_done=True, keys=["l/a"])) == set()  # or first


def test_time_to_live_that_contradicts_the_writes_is_reported() -> None:
    assert kinds(_time_to_live(ttl=1, after_revoke=True)) == {"lease:timetolive-after-revoke"}
    assert kinds(_time_to_live(granted=5)) == {"lease:timetolive-granted"}
    assert kinds(_time_to_live(keys=[])) == {"lease:timetolive-keys"}  # l/a's put completed before
    assert kinds(_time_to_live(keys=["l/a", "l/b"])) == {"lease:timetolive-keys"}  # l/b never put on it
    # the grant invoked at 0.1 s (TTL 2) keeps it alive until 2.1 s at least: at 0.8 s, 1 s is left
    assert kinds(_time_to_live(ttl=0)) == {"lease:timetolive-remaining"}
    assert kinds(_time_to_live(ttl=-1, keys=[])) == {"lease:timetolive-remaining"}


def test_a_put_with_a_revoked_or_expired_lease_must_fail_when_applied() -> None:
    """etcd refuses a put attached to a lease that is gone when it applies it ("requested lease
    not found"): after the revoke completed (1.6 s) or a watch saw the expiry (3.5 s), a put
    with the lease answered ok is an anomaly; refused, it is not (nor is the put of l/a with
    the lease at 0.3 s, invoked before either)."""
    assert kinds(history(revoke=True, dead_put=(6.5, "fail"))) == set()
    assert kinds(history(dead_put=(6.5, "fail"))) == set()
    assert "lease:put-after-revoke" in kinds(history(revoke=True, dead_put=(6.5, "ok")))
    assert "lease:put-after-expiry" in kinds(history(dead_put=(6.5, "ok")))


def test_a_revoke_of_a_lease_without_keys_makes_no_revision() -> None:
    """Lease 8's only put timed out unapplied; its revoke deleted nothing and answered the
    current revision, 2, which the put of l/a made (clean lease swarm seed 2 with the refused
    compactions: watch:duplicate-revision before). Valid; a second put at revision 2 is not."""
    def ops(second_put: bool) -> list[Op]:
        h, op = recorder()
        op(0.1, 0, "invoke", "lease-grant", 2)
        op(0.2, 0, "ok", "lease-grant", 2, lease=8, revision=1)
        op(0.3, 0, "invoke", "put", 1, key="l/b", lease=8)
        op(0.8, 0, "info", "put", 1, key="l/b", lease=8, error="timeout")
        op(0.9, 1, "invoke", "put", 2, key="l/a")
        op(1.0, 1, "ok", "put", 2, key="l/a", revision=2)
        op(1.1, 2, "invoke", "lease-revoke", 8)
        op(1.2, 2, "ok", "lease-revoke", 8, revision=2)
        if second_put:
            op(1.3, 1, "invoke", "put", 3, key="l/c")
            op(1.4, 1, "ok", "put", 3, key="l/c", revision=2)
        op(2.0, 1, "invoke", "range", None)
        kvs = [{"key": "l/a", "value": 2, "create_revision": 2, "mod_revision": 2, "version": 1}]
        op(2.1, 1, "ok", "range", {"l/a": 2}, revision=2, kvs=kvs, term=2)
        return numbered(h)

    r = WatchChecker().check(ops(False), OPTS)
    assert r.valid is True, [a.to_json() for a in r.anomalies]
    assert "watch:duplicate-revision" in {a.kind for a in WatchChecker().check(ops(True), OPTS).anomalies}


def cut_off_leader(*, renewal: str = "deposed", newer_done_at: float = 2.5, opts: CheckOptions = OPTS) -> set[str]:
    """The leader of term 2 cut off with a minority at 1.5 s while a watch on the majority side
    looks on; the majority elects a leader of term 3, which answers a keepalive of another
    lease (8) at ``newer_done_at``. The holder of lease 7 (TTL 2), renewed at 1.0-1.1 s in term
    2, keeps its keepalive stream on its member: a keepalive invoked at 2.6 s answered by
    ``renewal``: ``"deposed"`` (TTL 2 in term 2: the old leader, from its own lessor),
    ``"new"`` (TTL 2 in term 3) or ``"timeout"`` (no answer). The new leader expires lease 7
    (its clock restarted at its election, about 2.3 s): a watch sees l/a deleted at 4.3 s."""
    h, op = recorder()
    watch = {"key": "l/", "range_end": "l0", "start_revision": 0}
    op(0.0, 100, "invoke", "watch", watch)
    op(0.01, 100, "ok", "watch", {"watch_id": 1, "created": True, "canceled": False, "compact_revision": 0,
                                  "revision": 1, "events": []})
    lease_7_renewed_at_1_1(op)
    op(0.45, 100, "ok", "watch", {"watch_id": 1, "created": False, "canceled": False, "compact_revision": 0,
                                  "revision": 2, "events": [{"type": "put", "key": "l/a", "value": 1,
                                                             "create_revision": 2, "mod_revision": 2,
                                                             "version": 1}]})
    op(1.5, "nemesis", "invoke", "start-partition", {})
    op(1.5, "nemesis", "info", "start-partition", {})
    op(newer_done_at - 0.1, 5, "invoke", "lease-keepalive", 8)
    op(newer_done_at, 5, "ok", "lease-keepalive", 3, term=3)
    op(2.6, 0, "invoke", "lease-keepalive", 7)
    if renewal == "timeout":
        op(3.6, 0, "info", "lease-keepalive", 7, error="timeout")
    else:
        op(2.7, 0, "ok", "lease-keepalive", 2, term=2 if renewal == "deposed" else 3)
    delete = {"type": "delete", "key": "l/a", "value": None, "create_revision": 0, "mod_revision": 3, "version": 0}
    op(4.3, 100, "ok", "watch", {"watch_id": 1, "created": False, "canceled": False,
                                 "compact_revision": 0, "revision": 3, "events": [delete]})
    op(6.0, "nemesis", "invoke", "stop-partition", {})
    op(6.0, "nemesis", "info", "stop-partition", {})
    op(8.0, 100, "ok", "watch", {"end": "closed"})
    h.sort(key=lambda d: d["time"])  # history order is real-time order
    return {a.kind for a in LeaseChecker().check(numbered(h), opts).anomalies}


def test_a_keepalive_answered_by_a_deposed_leader_is_caught_with_the_early_expiry_it_hides() -> None:
    """The cut-off leader of term 2 renews lease 7 at 2.6-2.7 s, after a keepalive was answered
    in term 3: no majority can confirm the leader of term 2 any more (lease:deposed-leader). Its
    answer (TTL 2) promises the lease until 4.6 s at least, yet the real leader's expiry
    deleted l/a at 4.3 s: lease:early-expiry, partition or not."""
    found = cut_off_leader()
    assert {"lease:deposed-leader", "lease:early-expiry"} <= found, found


def test_answers_of_the_new_leader_or_concurrent_with_the_newer_term_are_valid() -> None:
    assert cut_off_leader(renewal="timeout") == set()  # last renewal 1.0 s: gone by 3.0 s, seen 4.3 s
    # renewed by the new leader at 2.6 s (term 3): the expiry at 4.3 s is early, not a deposed answer
    assert cut_off_leader(renewal="new") == {"lease:early-expiry"}
    # the term-3 answer completed after the keepalive was invoked: term 2 may still have led then
    assert "lease:deposed-leader" not in cut_off_leader(newer_done_at=2.65)
    # a real etcd fills the header's term on the member that took the stream: not judged
    member = CheckOptions(extra={**OPTS.extra, "keepalive_term": "member"})
    assert "lease:deposed-leader" not in cut_off_leader(opts=member)
