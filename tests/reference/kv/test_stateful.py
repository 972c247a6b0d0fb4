"""Hypothesis stateful test: KVStateMachine against a plain model of etcd's semantics.

The model keeps a full copy of the key space at every revision (a dict per revision), the
changes of each revision, leases with expiry times on the test's clock, and the compacted
revision. After every step the machine must answer a range at every revision exactly as the
model (ErrCompacted below the compacted revision), and every watch must have delivered
exactly the model's changes in its window. Rules cover put (with leases, prev_kv), delete
ranges, txns, lease grant/keepalive/revoke/expiry through the log, compaction, watches
created in the past, retried requests and snapshot/restore onto a new leader.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kvcheck.reference.kv import KVStateMachine
from kvcheck.reference.kv.mvcc import in_range
from kvcheck.reference.kv.requests import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    Envelope,
    ErrCompacted,
    ErrDuplicateKey,
    ErrLeaseNotFound,
    EventType,
    KeyValue,
    KVError,
    LeaseExpireRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LogRequest,
    Message,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
    WatchCreateRequest,
    encode_entry,
)

KEYS = [b"a", b"ab", b"b", b"c"]
keys = st.sampled_from(KEYS)
values = st.sampled_from([b"", b"x", b"y", b"zz"])
range_ends = st.sampled_from([b"", b"\0", b"b", b"c", b"a\xff"])

# A model kv: (create_revision, mod_revision, version, value, lease)
State = dict[bytes, tuple[int, int, int, bytes, int]]
Change = tuple[str, bytes, bytes, int, bytes | None]  # (type, key, value, mod_rev, prev value)


class KVModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.m = KVStateMachine(min_lease_ttl=1, lease_revoke_retry=0.0)
        self.index = 0
        self.seq = 0
        self.now = 0.0
        self.rev = 1
        self.compact = 0
        self.states: dict[int, State] = {1: {}}
        self.changes: dict[int, list[Change]] = {}
        self.leases: dict[int, tuple[int, float]] = {}  # id -> (ttl, expiry)
        # id -> (start, prev_kv, revision whose prev_kv was compacted away or -1, changes received)
        self.watches: dict[int, tuple[int, bool, int, list[Change]]] = {}
        self.last: tuple[bytes, Message | KVError] | None = None

    # -- driving the machine -----------------------------------------------------------------

    def apply(self, req: LogRequest) -> Message | KVError:
        self.index += 1
        self.seq += 1
        data = encode_entry(Envelope(1, self.seq, req))
        try:
            out: Message | KVError = self.m.apply(self.index, data, self.now)  # type: ignore[assignment]
        except KVError as err:
            out = err
        self.last = (data, out)
        return out

    @property
    def state(self) -> State:
        return self.states[self.rev]

    def write(self, ops: list[tuple[str, bytes, Any, int]]) -> None:
        """Apply ("put", key, value, lease) / ("del", key, range_end, 0) to the model at one revision."""
        new = dict(self.state)
        rev = self.rev + 1
        changes: list[Change] = []
        for kind, key, arg, lease in ops:
            if kind == "put":
                prev = new.get(key)
                create, version = (prev[0], prev[2] + 1) if prev else (rev, 1)
                new[key] = (create, rev, version, arg, lease)
                changes.append(("PUT", key, arg, rev, prev[3] if prev else None))
            else:
                for k in sorted(k for k in new if in_range(k, key, arg)):
                    changes.append(("DELETE", k, b"", rev, new.pop(k)[3]))
        if changes:
            self.rev = rev
            self.states[rev] = new
            self.changes[rev] = changes

    def kvs(self, state: State, key: bytes = b"\0", end: bytes = b"\0") -> list[KeyValue]:
        return [KeyValue(k, *state[k]) for k in sorted(state) if in_range(k, key, end)]

    # -- rules -------------------------------------------------------------------------------

    @initialize()
    def start_leader(self) -> None:
        self.m.promote(self.now)

    @rule(key=keys, value=values, use_lease=st.booleans(), prev_kv=st.booleans())
    def put(self, key: bytes, value: bytes, use_lease: bool, prev_kv: bool) -> None:
        lease = min(self.leases) if use_lease and self.leases else (999 if use_lease else 0)
        out = self.apply(PutRequest(key, value, lease=lease, prev_kv=prev_kv))
        if lease and lease not in self.leases:
            assert out == ErrLeaseNotFound()
            return
        prev = self.state.get(key)
        self.write([("put", key, value, lease)])
        assert not isinstance(out, KVError), out
        assert out.header.revision == self.rev  # type: ignore[attr-defined]
        expected_prev = KeyValue(key, *prev) if prev and prev_kv else None
        assert out.prev_kv == expected_prev  # type: ignore[attr-defined]

    @rule(key=keys, end=range_ends)
    def delete(self, key: bytes, end: bytes) -> None:
        deleted = self.kvs(self.state, key, end)
        out = self.apply(DeleteRangeRequest(key, end, prev_kv=True))
        self.write([("del", key, end, 0)])
        assert out.deleted == len(deleted) and out.prev_kvs == deleted  # type: ignore[union-attr]
        assert out.header.revision == self.rev  # type: ignore[union-attr]

    @rule(ckey=keys, cvalue=values, by_version=st.booleans(), version=st.integers(0, 3),
          put_key=keys, put_value=values, del_key=keys)
    def txn(self, ckey: bytes, cvalue: bytes, by_version: bool, version: int, put_key: bytes,
            put_value: bytes, del_key: bytes) -> None:
        if by_version:
            compare = Compare(CompareResult.EQUAL, CompareTarget.VERSION, ckey, version=version)
            cur = self.state.get(ckey)
            holds = (cur[2] if cur else 0) == version
        else:
            compare = Compare(CompareResult.EQUAL, CompareTarget.VALUE, ckey, value=cvalue)
            cur = self.state.get(ckey)
            holds = cur is not None and cur[3] == cvalue
        success = [PutRequest(put_key, put_value), DeleteRangeRequest(del_key)]
        out = self.apply(TxnRequest([compare], success, [RangeRequest(ckey)]))  # type: ignore[list-item]
        if put_key == del_key:
            assert out == ErrDuplicateKey()
            return
        assert not isinstance(out, KVError), out
        assert out.succeeded == holds  # type: ignore[attr-defined]
        if holds:
            self.write([("put", put_key, put_value, 0), ("del", del_key, b"", 0)])
        else:
            assert out.responses[0].kvs == self.kvs(self.state, ckey, b"")  # type: ignore[attr-defined]
        assert out.header.revision == self.rev  # type: ignore[attr-defined]

    @rule(outer_key=keys, inner_key=keys, version=st.integers(0, 2), put_key=keys, inner_put=keys,
          value=values)
    def nested_txn(self, outer_key: bytes, inner_key: bytes, version: int, put_key: bytes,
                   inner_put: bytes, value: bytes) -> None:
        """Both levels' compares see the state before the txn; one revision for all writes."""
        inner = TxnRequest([Compare(CompareResult.EQUAL, CompareTarget.VERSION, inner_key, version=version)],
                           [PutRequest(inner_put, value)], [DeleteRangeRequest(inner_put)])
        outer = TxnRequest([Compare(CompareResult.GREATER, CompareTarget.VERSION, outer_key, version=0)],
                           [PutRequest(put_key, value), inner], [RangeRequest(outer_key)])
        out = self.apply(outer)
        outer_holds = outer_key in self.state
        if put_key == inner_put:  # checked on both branches, whichever runs (as etcd)
            assert out == ErrDuplicateKey()
            return
        assert not isinstance(out, KVError), out
        assert out.succeeded == outer_holds  # type: ignore[attr-defined]
        if outer_holds:
            cur = self.state.get(inner_key)
            inner_holds = (cur[2] if cur else 0) == version
            assert out.responses[1].succeeded == inner_holds  # type: ignore[attr-defined]
            self.write([("put", put_key, value, 0),
                        ("put", inner_put, value, 0) if inner_holds else ("del", inner_put, b"", 0)])
        assert out.header.revision == self.rev  # type: ignore[attr-defined]

    @rule(ttl=st.integers(1, 5), explicit=st.booleans())
    def lease_grant(self, ttl: int, explicit: bool) -> None:
        want = 100 + len(self.leases) if explicit else 0
        if want in self.leases:
            return
        out = self.apply(LeaseGrantRequest(ttl, id=want))
        assert not isinstance(out, KVError), out
        lease_id = out.id  # type: ignore[attr-defined]
        assert lease_id not in self.leases and (not explicit or lease_id == want)
        self.leases[lease_id] = (ttl, self.now + ttl)

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def lease_keepalive(self, data: st.DataObject) -> None:
        lease_id = data.draw(st.sampled_from(sorted(self.leases)))
        ttl, expiry = self.leases[lease_id]
        got = self.m.lease_keepalive(lease_id, self.now)
        if expiry <= self.now:
            assert got == 0
        else:
            assert got == ttl
            self.leases[lease_id] = (ttl, self.now + ttl)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.5]))
    def advance_clock(self, dt: float) -> None:
        self.now += dt

    def revoke_in_model(self, lease_id: int) -> None:
        del self.leases[lease_id]
        held = [k for k in sorted(self.state) if self.state[k][4] == lease_id]
        self.write([("del", k, b"", 0) for k in held])

    @rule()
    def expire_leases(self) -> None:
        due = self.m.expired_leases(self.now)
        assert sorted(due) == sorted(i for i, (_t, e) in self.leases.items() if e <= self.now)
        if due:
            out = self.apply(LeaseExpireRequest(due))
            assert out.revoked == due  # type: ignore[union-attr]
            for lease_id in due:
                self.revoke_in_model(lease_id)

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def lease_revoke(self, data: st.DataObject) -> None:
        lease_id = data.draw(st.sampled_from(sorted(self.leases)))
        self.apply(LeaseRevokeRequest(lease_id))
        self.revoke_in_model(lease_id)

    @rule(data=st.data())
    def compaction(self, data: st.DataObject) -> None:
        rev = data.draw(st.integers(self.compact, self.rev + 1))
        out = self.apply(CompactionRequest(rev))
        if rev <= self.compact or rev > self.rev:
            assert isinstance(out, KVError)
            return
        assert not isinstance(out, KVError), out
        self.compact = rev

    @rule(data=st.data(), prev_kv=st.booleans())
    def watch_from_the_past(self, data: st.DataObject, prev_kv: bool) -> None:
        start = data.draw(st.integers(1, self.rev + 1))
        wid, now = self.m.create_watch(WatchCreateRequest(b"\0", b"\0", start_revision=start,
                                                          prev_kv=prev_kv))
        assert now[0].created
        if start < self.compact:
            assert now[1].canceled and now[1].compact_revision == self.compact
            return
        # prev_kv of a change at the compacted revision itself was compacted away, as in etcd
        no_prev_rev = self.compact if start == self.compact else -1
        self.watches[wid] = (start, prev_kv, no_prev_rev, self.events(now[1:], prev_kv))

    @rule(data=st.data(), key=keys, end=range_ends, limit=st.sampled_from([0, 1, 2, 3]),
          order=st.sampled_from(list(SortOrder)), by=st.sampled_from(list(SortTarget)),
          keys_only=st.booleans(), count_only=st.booleans(),
          min_mod=st.sampled_from([0, 3, 6]), max_create=st.sampled_from([0, 4, 8]))
    def range_query(self, data: st.DataObject, key: bytes, end: bytes, limit: int,
                    order: SortOrder, by: SortTarget, keys_only: bool, count_only: bool,
                    min_mod: int, max_create: int) -> None:
        rev = data.draw(st.sampled_from([0, *range(max(self.compact, 1), self.rev + 1)]))
        resp = self.m.range(RangeRequest(key, end, limit=limit, revision=rev, sort_order=order,
                                         sort_target=by, keys_only=keys_only,
                                         count_only=count_only, min_mod_revision=min_mod,
                                         max_create_revision=max_create))
        kvs = self.kvs(self.states[rev or self.rev], key, end)
        count = len(kvs)
        kvs = [kv for kv in kvs if kv.mod_revision >= min_mod
               and (not max_create or kv.create_revision <= max_create)]
        if by != SortTarget.KEY or order != SortOrder.NONE:
            field = {SortTarget.KEY: "key", SortTarget.VERSION: "version",
                     SortTarget.CREATE: "create_revision", SortTarget.MOD: "mod_revision",
                     SortTarget.VALUE: "value"}[by]
            sign = -1 if order == SortOrder.DESCEND else 1

            def cmp(x: KeyValue, y: KeyValue) -> int:  # by target, ties in key order
                a, b = getattr(x, field), getattr(y, field)
                return sign * ((a > b) - (a < b)) or (x.key > y.key) - (x.key < y.key)

            kvs.sort(key=functools.cmp_to_key(cmp))
        more = bool(limit) and len(kvs) > limit and not count_only
        kvs = [] if count_only else kvs[:limit] if limit else kvs
        if keys_only:
            kvs = [KeyValue(kv.key, kv.create_revision, kv.mod_revision, kv.version, b"", kv.lease)
                   for kv in kvs]
        assert (resp.kvs, resp.more, resp.count) == (kvs, more, count)

    @rule()
    def retry_last_request(self) -> None:
        if self.last is None:
            return
        data, before = self.last
        self.index += 1
        try:
            out: Any = self.m.apply(self.index, data, self.now)
        except KVError as err:
            out = err
        assert out == before

    @rule()
    def snapshot_restore_on_a_new_leader(self) -> None:
        snap = self.m.snapshot()
        restored = KVStateMachine.restore(snap, min_lease_ttl=1, lease_revoke_retry=0.0)
        assert restored.snapshot() == snap
        assert restored.hash_kv() == self.m.hash_kv()
        self.take_watch_events()
        for wid in list(self.watches):
            prev_kv = self.watches[wid][1]
            restored.create_watch(WatchCreateRequest(b"\0", b"\0", start_revision=self.rev + 1,
                                                     prev_kv=prev_kv, watch_id=wid))
        self.m = restored
        self.m.promote(self.now)
        self.leases = {i: (ttl, self.now + ttl) for i, (ttl, _e) in self.leases.items()}

    # -- checks ------------------------------------------------------------------------------

    def events(self, responses: list[Any], prev_kv: bool) -> list[Change]:
        out: list[Change] = []
        for resp in responses:
            for ev in resp.events:
                prev = ev.prev_kv.value if ev.prev_kv is not None else None
                out.append((EventType(ev.type).name, ev.kv.key, ev.kv.value, ev.kv.mod_revision,
                            prev if prev_kv else None))
        return out

    def expected(self, start: int, prev_kv: bool, no_prev_rev: int) -> list[Change]:
        return [c if prev_kv and rev != no_prev_rev else (*c[:4], None)
                for rev in range(start, self.rev + 1) for c in self.changes.get(rev, [])]

    def take_watch_events(self) -> None:
        last_header: dict[int, int] = {}
        for wid, resp in self.m.take_watch_responses():
            prev_kv, got = self.watches[wid][1], self.watches[wid][3]
            got.extend(self.events([resp], prev_kv))
            assert resp.header.revision >= last_header.get(wid, 0)
            last_header[wid] = resp.header.revision
        for rev in last_header.values():
            assert rev == self.rev

    @invariant()
    def range_at_every_revision_matches_the_model(self) -> None:
        assert self.m.revision == self.rev and self.m.compact_revision == self.compact
        for rev in range(max(self.compact, 1), self.rev + 1):
            resp = self.m.range(RangeRequest(b"\0", b"\0", revision=rev))
            assert resp.kvs == self.kvs(self.states[rev]), rev
            assert resp.count == len(resp.kvs) and resp.header.revision == self.rev
        if self.compact > 1:
            with pytest.raises(ErrCompacted):
                self.m.range(RangeRequest(b"a", revision=self.compact - 1))

    @invariant()
    def watches_saw_exactly_the_model_changes(self) -> None:
        self.take_watch_events()
        for start, prev_kv, no_prev_rev, got in self.watches.values():
            assert got == self.expected(start, prev_kv, no_prev_rev)

    @invariant()
    def leases_match(self) -> None:
        assert [s.id for s in self.m.lease_leases().leases] == sorted(self.leases)
        for lease_id, (ttl, _expiry) in self.leases.items():
            resp = self.m.lease_time_to_live(lease_id, True, self.now)
            held = [k for k in sorted(self.state) if self.state[k][4] == lease_id]
            assert resp.granted_ttl == ttl and resp.keys == held


TestKVModel = KVModel.TestCase
TestKVModel.settings = settings(max_examples=100, stateful_step_count=40, deadline=None,
                                suppress_health_check=[HealthCheck.too_slow])


class LongKVModel(KVModel):
    pass


@pytest.mark.slow
class TestKVModelLong(LongKVModel.TestCase):  # type: ignore[name-defined,misc]
    settings = settings(max_examples=400, stateful_step_count=80, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])
