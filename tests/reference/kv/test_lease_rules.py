"""One test per etcd lease rule: grant, revoke, keepalive, time-to-live, list, and expiry as a
log entry the leader proposes (time is only ever an argument)."""

from __future__ import annotations

from typing import Any

import pytest

from kvcheck.reference.kv import min_lease_ttl
from kvcheck.reference.kv.machine import MAX_LEASE_TTL
from kvcheck.reference.kv.requests import (
    ErrBadRequest,
    ErrLeaseExist,
    ErrLeaseNotFound,
    ErrLeaseTTLTooLarge,
    ErrNotPrimary,
    LeaseExpireRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LeaseStatus,
    PutRequest,
)


def test_min_lease_ttl_is_etcds_formula() -> None:
    # etcd: ceil(((3 * election_ticks) / 2) * heartbeat), the division in integers
    assert min_lease_ttl(10, 0.1) == 2  # 15 ticks * 100 ms = 1.5 s -> 2
    assert min_lease_ttl(5, 0.1) == 1  # 7 ticks * 100 ms = 0.7 s -> 1
    assert min_lease_ttl(10, 1.0) == 15
    with pytest.raises(ValueError):
        min_lease_ttl(0, 0.1)


def test_lease_grant_raises_the_ttl_to_the_minimum(make_kv: Any) -> None:
    kv = make_kv(min_lease_ttl=5)
    assert kv.apply(LeaseGrantRequest(2)).ttl == 5
    assert kv.apply(LeaseGrantRequest(0)).ttl == 5
    assert kv.apply(LeaseGrantRequest(9)).ttl == 9


def test_lease_grant_with_client_chosen_id_and_existing_id_is_err_lease_exist(kv: Any) -> None:
    assert kv.apply(LeaseGrantRequest(60, id=42)).id == 42
    with pytest.raises(ErrLeaseExist):
        kv.apply(LeaseGrantRequest(60, id=42))
    with pytest.raises(ErrBadRequest):
        kv.apply(LeaseGrantRequest(60, id=-1))


def test_lease_grant_chooses_fresh_ids_deterministically(make_kv: Any) -> None:
    a, b = make_kv(), make_kv()
    for kv in (a, b):
        kv.apply(LeaseGrantRequest(60, id=2))
    ids_a = [a.apply(LeaseGrantRequest(60)).id for _ in range(3)]
    ids_b = [b.apply(LeaseGrantRequest(60)).id for _ in range(3)]
    assert ids_a == ids_b == [1, 3, 4]


def test_lease_grant_ttl_above_the_maximum_is_err_lease_ttl_too_large(kv: Any) -> None:
    with pytest.raises(ErrLeaseTTLTooLarge):
        kv.apply(LeaseGrantRequest(MAX_LEASE_TTL + 1))


def test_lease_grant_creates_no_revision(kv: Any) -> None:
    resp = kv.apply(LeaseGrantRequest(60))
    assert resp.header.revision == 1 and kv.rev == 1


def test_lease_revoke_deletes_every_attached_key_at_one_revision(kv: Any) -> None:
    lease = kv.apply(LeaseGrantRequest(60)).id
    for key in (b"c", b"a", b"b"):
        kv.apply(PutRequest(key, b"v", lease=lease))
    kv.apply(PutRequest(b"free", b"v"))
    resp = kv.apply(LeaseRevokeRequest(lease))
    assert resp.header.revision == 6 == kv.rev
    assert kv.keys() == [b"free"]
    assert kv.m.lease_leases().leases == []


def test_lease_revoke_of_a_lease_without_keys_creates_no_revision(kv: Any) -> None:
    lease = kv.apply(LeaseGrantRequest(60)).id
    assert kv.apply(LeaseRevokeRequest(lease)).header.revision == 1


def test_lease_revoke_of_an_unknown_lease_is_err_lease_not_found(kv: Any) -> None:
    with pytest.raises(ErrLeaseNotFound):
        kv.apply(LeaseRevokeRequest(77))


def test_key_moves_between_leases_and_a_delete_detaches_it(kv: Any) -> None:
    one = kv.apply(LeaseGrantRequest(60)).id
    two = kv.apply(LeaseGrantRequest(60)).id
    kv.apply(PutRequest(b"a", b"v", lease=one))
    kv.apply(PutRequest(b"a", b"v", lease=two))
    kv.apply(PutRequest(b"b", b"v", lease=one))
    kv.apply(PutRequest(b"b", b"v"))  # a put without a lease detaches
    kv.m.promote(0.0)
    assert kv.m.lease_time_to_live(one, True, 0.0).keys == []
    assert kv.m.lease_time_to_live(two, True, 0.0).keys == [b"a"]
    kv.apply(LeaseRevokeRequest(one))
    assert kv.keys() == [b"a", b"b"]


def test_lease_keepalive_of_an_unknown_or_expired_lease_answers_ttl_0(kv: Any) -> None:
    kv.m.promote(0.0)
    assert kv.m.lease_keepalive(99, 1.0) == 0
    lease = kv.apply(LeaseGrantRequest(10), now=0.0).id
    assert kv.m.lease_keepalive(lease, 5.0) == 10  # now expires at 15
    assert kv.m.lease_keepalive(lease, 14.0) == 10  # now expires at 24
    assert kv.m.lease_keepalive(lease, 24.0) == 0  # expired, waiting for its revocation
    assert kv.m.lease_keepalive(lease, 30.0) == 0  # and a late keepalive does not revive it


def test_lease_keepalive_extends_the_expiry(kv: Any) -> None:
    kv.m.promote(0.0)
    lease = kv.apply(LeaseGrantRequest(10), now=0.0).id
    assert kv.m.expired_leases(9.0) == []
    kv.m.lease_keepalive(lease, 9.0)
    assert kv.m.expired_leases(18.0) == []
    assert kv.m.expired_leases(19.0) == [lease]


def test_lease_expiry_is_a_log_entry_never_a_local_timer(kv: Any) -> None:
    kv.m.promote(0.0)
    lease = kv.apply(LeaseGrantRequest(10), now=0.0).id
    kv.apply(PutRequest(b"a", b"v", lease=lease))
    expired = kv.m.expired_leases(100.0)
    assert expired == [lease]
    assert kv.keys() == [b"a"]  # nothing is deleted until the expiry is applied from the log
    resp = kv.apply(LeaseExpireRequest(expired))
    assert resp.revoked == [lease] and kv.keys() == []
    # an expiry proposed twice (e.g. by two leaders) revokes once
    assert kv.apply(LeaseExpireRequest(expired)).revoked == []


def test_expired_lease_is_named_again_only_after_the_retry_interval(make_kv: Any) -> None:
    kv = make_kv(lease_revoke_retry=3.0)
    kv.m.promote(0.0)
    lease = kv.apply(LeaseGrantRequest(10), now=0.0).id
    assert kv.m.expired_leases(10.0) == [lease]
    assert kv.m.expired_leases(12.0) == []
    assert kv.m.expired_leases(13.0) == [lease]


def test_a_new_leader_restarts_the_lease_clocks(kv: Any) -> None:
    kv.m.promote(0.0)
    lease = kv.apply(LeaseGrantRequest(10), now=0.0).id
    kv.m.demote()
    kv.m.promote(50.0)  # a later term: the clock restarts at now + ttl
    assert kv.m.expired_leases(59.0) == []
    assert kv.m.lease_time_to_live(lease, False, 52.0).ttl == 8
    assert kv.m.expired_leases(60.0) == [lease]


def test_a_follower_keeps_no_lease_clocks(kv: Any) -> None:
    lease = kv.apply(LeaseGrantRequest(10), now=0.0).id
    assert not kv.m.is_primary
    assert kv.m.expired_leases(1e9) == []
    with pytest.raises(ErrNotPrimary):
        kv.m.lease_keepalive(lease, 1.0)
    with pytest.raises(ErrNotPrimary):
        kv.m.lease_time_to_live(lease, False, 1.0)


def test_lease_granted_without_a_clock_reading_starts_at_the_next_one(kv: Any) -> None:
    kv.m.promote(0.0)
    lease = kv.apply(LeaseGrantRequest(10)).id  # no now: the clock starts at the next call
    assert kv.m.expired_leases(100.0) == []
    assert kv.m.expired_leases(109.0) == []
    assert kv.m.expired_leases(110.0) == [lease]


def test_lease_time_to_live_reports_remaining_granted_and_keys(kv: Any) -> None:
    kv.m.promote(0.0)
    lease = kv.apply(LeaseGrantRequest(30), now=0.0).id
    kv.apply(PutRequest(b"b", b"v", lease=lease))
    kv.apply(PutRequest(b"a", b"v", lease=lease))
    resp = kv.m.lease_time_to_live(lease, True, 10.5)
    assert (resp.id, resp.ttl, resp.granted_ttl, resp.keys) == (lease, 19, 30, [b"a", b"b"])
    assert kv.m.lease_time_to_live(lease, False, 10.5).keys == []
    assert kv.m.lease_time_to_live(lease, False, 40.0).ttl == 0


def test_lease_time_to_live_of_an_unknown_lease_is_minus_1(kv: Any) -> None:
    kv.m.promote(0.0)
    assert kv.m.lease_time_to_live(5, True, 0.0).ttl == -1


def test_lease_leases_lists_every_lease_by_id(kv: Any) -> None:
    kv.apply(LeaseGrantRequest(60, id=9))
    kv.apply(LeaseGrantRequest(60, id=3))
    assert kv.m.lease_leases().leases == [LeaseStatus(3), LeaseStatus(9)]


def test_bug_lease_expiry_local_deletes_keys_outside_the_log(make_kv: Any) -> None:
    from kvcheck.reference.bugs import Bugs

    kv = make_kv(bugs=Bugs(lease_expiry_local=True))
    kv.m.promote(0.0)
    lease = kv.apply(LeaseGrantRequest(10), now=0.0).id
    kv.apply(PutRequest(b"a", b"v", lease=lease))
    applied = kv.m.applied_index
    assert kv.m.expired_leases(100.0) == [lease]
    assert kv.keys() == [] and kv.m.applied_index == applied  # deleted with no entry applied
