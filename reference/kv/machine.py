"""KVStateMachine: the deterministic state machine applied to committed Raft entries.

Why: every member applies the same committed entries in the same order and must reach the
same state, so this module is pure: no trio, no I/O, no wall clock, no global random, and
iteration only over ordered containers. Time enters only as an argument (``now``, seconds on
the caller's clock) to the leader-side lease methods.

How: ``apply(index, data)`` decodes an ``Envelope`` (``requests.decode_entry``), answers a
retried ``(client_id, seq)`` from the session table, otherwise executes the request against
the MVCC store (``mvcc.MVCCStore``: key histories, one global revision), the lessor (leases
and the keys they hold) and the quota/alarms, records the outcome in the session table and
hands the changes of the new revision to the watch hub (``watch.WatchHub``).

Request checks follow etcd's order: shape (empty key, too many txn ops, a key written twice
in a txn), then alarms (CORRUPT refuses everything; NOSPACE refuses puts, txns containing a
put, and lease grants), then state (leases exist, revisions not compacted or in the future),
then quota (a write that would exceed ``quota_bytes`` raises the NOSPACE alarm and is
refused). A request that fails any check changes nothing but the alarm list.

Leases: expiry is never acted on locally. The leader (``promote(now)``) keeps the lease
clocks; ``expired_leases(now)`` names the leases it must revoke by proposing a
``LeaseExpireRequest`` through the log; followers (``demote()``) keep no clocks.

Sessions: per client, the outcomes of its last ``session_window`` sequence numbers. A retry
of a stored one gets that outcome again; an older one gets ErrStaleSequence; neither is
applied again. Sessions never expire (a test run has few clients).

Snapshots capture keys with history, leases, sessions, alarms, the applied index and the
compacted revision as one msgpack document.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack

from kvcheck.reference.bugs import NO_BUGS, Bugs
from kvcheck.reference.kv.mvcc import KV_OVERHEAD, MVCCStore, in_range
from kvcheck.reference.kv.requests import (
    LOG_REQUESTS,
    AlarmAction,
    AlarmMember,
    AlarmRequest,
    AlarmResponse,
    AlarmType,
    CompactionRequest,
    CompactionResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    ErrBadRequest,
    ErrCompacted,
    ErrCorrupt,
    ErrDuplicateKey,
    ErrEmptyKey,
    ErrFutureRev,
    ErrKeyNotFound,
    ErrLeaseExist,
    ErrLeaseNotFound,
    ErrLeaseProvided,
    ErrLeaseTTLTooLarge,
    ErrNoSpace,
    ErrNotPrimary,
    ErrRequestTooLarge,
    ErrStaleSequence,
    ErrTooManyOps,
    ErrValueProvided,
    HashKVResponse,
    KeyValue,
    KVError,
    LeaseExpireRequest,
    LeaseExpireResponse,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseStatus,
    LeaseTimeToLiveResponse,
    Message,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RequestOp,
    ResponseHeader,
    ResponseOp,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
    WatchCreateRequest,
    WatchResponse,
    decode_entry,
    error_from_wire,
    error_to_wire,
    from_tagged,
    to_tagged,
)
from kvcheck.reference.kv.watch import DEFAULT_MAX_EVENTS, WatchHub

DEFAULT_QUOTA_BYTES = 2 * 1024**3  # etcd's default backend quota (2 GiB)
DEFAULT_MAX_TXN_OPS = 128
DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024  # etcd's --max-request-bytes default
MAX_LEASE_TTL = 9_000_000_000  # etcd's MaxLeaseTTL, seconds
DEFAULT_SESSION_WINDOW = 64
LEASE_OVERHEAD = 64  # bytes charged per lease (quota)
SNAPSHOT_FORMAT = 1


def min_lease_ttl(election_ticks: int, heartbeat_interval: float) -> int:
    """etcd's minimum lease TTL in whole seconds: ceil(((3 * election_ticks) // 2) * heartbeat).

    A lease must outlive a leader election, or it could expire while no leader can renew it.
    """
    if election_ticks <= 0 or heartbeat_interval <= 0:
        raise ValueError("election_ticks and heartbeat_interval must be positive")
    return math.ceil(((3 * election_ticks) // 2) * heartbeat_interval)


@dataclass(slots=True)
class Lease:
    id: int
    ttl: int  # granted TTL in seconds (after raising to the minimum)
    keys: dict[bytes, None] = field(default_factory=dict)  # attached keys (sorted when listed)
    expiry: float | None = None  # leader's clock only; None: not running (follower, or not yet started)


@dataclass(slots=True)
class Session:
    max_seq: int = 0
    outcomes: dict[int, Message | KVError] = field(default_factory=dict)


@dataclass(slots=True)
class _Plan:
    """A txn's path, decided before any write: which branch runs, and nested txns' paths."""

    succeeded: bool
    ops: list[RequestOp]
    children: list[_Plan | None]


_COMPARE_FIELD = {
    CompareTarget.VERSION: "version", CompareTarget.CREATE: "create_revision",
    CompareTarget.MOD: "mod_revision", CompareTarget.VALUE: "value", CompareTarget.LEASE: "lease",
}
_SORT_KEY = {
    SortTarget.KEY: lambda kv: kv.key, SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision, SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}
_ZERO_KV = KeyValue(b"")


class KVStateMachine:
    """The key-value store every member applies committed entries to."""

    def __init__(
        self,
        *,
        min_lease_ttl: int = 1,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        max_txn_ops: int = DEFAULT_MAX_TXN_OPS,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        session_window: int = DEFAULT_SESSION_WINDOW,
        lease_revoke_retry: float = 3.0,
        max_watch_events: int = DEFAULT_MAX_EVENTS,
        bugs: Bugs = NO_BUGS,
    ) -> None:
        if min_lease_ttl < 1 or quota_bytes < 1 or max_txn_ops < 1 or session_window < 1:
            raise ValueError("min_lease_ttl, quota_bytes, max_txn_ops and session_window must be >= 1")
        self.min_lease_ttl = min_lease_ttl
        self.quota_bytes = quota_bytes
        self.max_txn_ops = max_txn_ops
        self.max_request_bytes = max_request_bytes
        self.session_window = session_window
        self.lease_revoke_retry = lease_revoke_retry
        self.bugs = bugs
        self.store = MVCCStore()
        self.hub = WatchHub(self.store, max_watch_events, bugs)
        self._applied = 0
        self._leases: dict[int, Lease] = {}
        self._next_lease_id = 1
        self._primary = False
        self._revoke_proposed: dict[int, float] = {}  # lease id -> when expired_leases named it
        self._sessions: dict[int, Session] = {}
        self._alarms: dict[tuple[int, AlarmType], None] = {}
        self._deferred_puts: list[PutRequest] = []  # see Bugs.txn_non_atomic
        self._handlers: dict[type, Any] = {
            RangeRequest: self._apply_range, PutRequest: self._apply_put,
            DeleteRangeRequest: self._apply_delete_range, TxnRequest: self._apply_txn,
            CompactionRequest: self._apply_compaction, LeaseGrantRequest: self._apply_lease_grant,
            LeaseRevokeRequest: self._apply_lease_revoke, LeaseExpireRequest: self._apply_lease_expire,
            AlarmRequest: self._apply_alarm,
        }
        assert set(self._handlers) == set(LOG_REQUESTS)

    # -- applying the log --------------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        """Index of the last entry applied (0 before any)."""
        return self._applied

    def apply(self, index: int, data: bytes, now: float | None = None) -> Message | None:
        """Apply the committed entry at ``index``; return its response or raise its KVError.

        An entry at an index <= applied_index is ignored (returns None). Empty ``data`` (the
        leader's no-op entry) only advances the applied index and returns None. A request
        whose ``(client_id, seq)`` was already applied gets the stored outcome (the same
        response, or the same error raised again) without being applied again. The applied
        index advances even when the entry's outcome is an error. ``now`` (leader only)
        starts the clock of a lease the entry grants; without it the clock starts at the next
        leader-side call (a lease never expires early).
        """
        if index <= self._applied:
            return None
        self._applied = index
        if self._deferred_puts:  # only ever filled under the txn_non_atomic bug
            self._apply_deferred_puts()
        if not data:
            return None
        env = decode_entry(data)
        cid, seq = env.client_id, env.seq
        session = self._sessions.get(cid) if cid else None
        if session is not None and self.bugs.fire("no_session_dedup", seq in session.outcomes or seq <= session.max_seq - self.session_window):
            session = None  # BUG no_session_dedup: apply a retried (client_id, seq) again
        if session is not None:
            outcome = session.outcomes.get(seq)
            if outcome is not None:
                if isinstance(outcome, KVError):
                    raise type(outcome)(outcome.message)  # a fresh raise: no traceback pile-up
                return outcome
            if seq <= session.max_seq - self.session_window:
                raise ErrStaleSequence()
        try:
            if len(data) > self.max_request_bytes:
                raise ErrRequestTooLarge()
            request = env.request
            if self._alarms and self._has_alarm(AlarmType.CORRUPT) and type(request) is not AlarmRequest:
                raise ErrCorrupt()
            response: Message = self._handlers[type(request)](request, now)
        except KVError as err:
            if cid:
                self._record(cid, seq, err)
            raise
        if cid:
            self._record(cid, seq, response)
        return response

    def _apply_deferred_puts(self) -> None:
        puts, self._deferred_puts = self._deferred_puts, []
        self.store.begin()
        try:
            for op in puts:
                self._do_put(op)
        finally:
            self._commit()

    def _record(self, cid: int, seq: int, outcome: Message | KVError) -> None:
        session = self._sessions.get(cid)
        if session is None:
            session = self._sessions[cid] = Session()
        session.outcomes[seq] = outcome
        if seq > session.max_seq:
            session.max_seq = seq
        outcomes = session.outcomes
        if len(outcomes) > self.session_window:
            # forget outcomes below the window; they arrive mostly in order, so oldest first
            floor = session.max_seq - self.session_window
            while outcomes:
                oldest = next(iter(outcomes))
                if oldest > floor:
                    break
                del outcomes[oldest]
            if len(outcomes) > 2 * self.session_window:  # far out of order: sweep them all
                for old in [s for s in outcomes if s <= floor]:
                    del outcomes[old]

    def _has_alarm(self, alarm: AlarmType) -> bool:
        """Whether any member raised ``alarm`` (one member's alarm holds for the cluster)."""
        return any(a == alarm for _m, a in self._alarms)

    def _header(self) -> ResponseHeader:
        return ResponseHeader(revision=self.store.revision)

    def _commit(self) -> None:
        """Close the store's write batch and give the new revision's changes to the watches."""
        changes = self.store.end()
        if changes and len(self.hub):
            self.hub.notify(self.store.revision, changes)

    # -- range -------------------------------------------------------------------------------

    def range(self, req: RangeRequest) -> RangeResponse:
        """Serve a read at the applied state (after ReadIndex, or serializable). Raises KVError."""
        if self._alarms and self._has_alarm(AlarmType.CORRUPT):
            raise ErrCorrupt()
        return self._apply_range(req, None)

    def _apply_range(self, req: RangeRequest, now: float | None) -> RangeResponse:
        self._check_range_shape(req)
        self.store.check_revision(req.revision)
        return self._do_range(req)

    @staticmethod
    def _check_range_shape(req: RangeRequest) -> None:
        if not req.key:
            raise ErrEmptyKey()
        if (req.limit < 0 or req.revision < 0 or req.min_mod_revision < 0 or req.max_mod_revision < 0
                or req.min_create_revision < 0 or req.max_create_revision < 0):
            for name in ("limit", "revision", "min_mod_revision", "max_mod_revision",
                         "min_create_revision", "max_create_revision"):
                if getattr(req, name) < 0:
                    raise ErrBadRequest(f"RangeRequest.{name}: {getattr(req, name)} is negative")

    def _do_range(self, req: RangeRequest) -> RangeResponse:
        """The read itself (revision already checked). Inside a txn, revision 0 sees its writes."""
        kvs = self.store.range(req.key, req.range_end, req.revision)
        count = len(kvs)
        if req.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision >= req.min_mod_revision]
        if req.max_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision <= req.max_mod_revision]
        if req.min_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision >= req.min_create_revision]
        if req.max_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision <= req.max_create_revision]
        order, target = req.sort_order, req.sort_target
        if order == SortOrder.NONE and target != SortTarget.KEY:
            order = SortOrder.ASCEND  # as etcd: a sort target without an order sorts ascending
        if order != SortOrder.NONE and not (order == SortOrder.ASCEND and target == SortTarget.KEY):
            # stable: ties keep key order, either way (etcd leaves the order of ties open)
            kvs = sorted(kvs, key=_SORT_KEY[target], reverse=order == SortOrder.DESCEND)
        more = False
        if req.count_only:
            kvs = []
        elif req.limit and len(kvs) > req.limit:
            kvs = kvs[: req.limit]
            more = True
        if req.keys_only:
            kvs = [KeyValue(kv.key, kv.create_revision, kv.mod_revision, kv.version, b"", kv.lease)
                   for kv in kvs]
        return RangeResponse(self._header(), kvs, more, count)

    # -- put and delete ----------------------------------------------------------------------

    @staticmethod
    def _check_put_shape(req: PutRequest) -> None:
        if not req.key:
            raise ErrEmptyKey()
        if req.ignore_value and req.value:
            raise ErrValueProvided()
        if req.ignore_lease and req.lease:
            raise ErrLeaseProvided()

    def _check_put_state(self, req: PutRequest) -> None:
        if req.lease and req.lease not in self._leases:
            raise ErrLeaseNotFound()
        if (req.ignore_value or req.ignore_lease) and self.store.get(req.key) is None:
            raise ErrKeyNotFound()

    def _check_space(self, cost: int) -> None:
        """Refuse a write of ``cost`` bytes under the NOSPACE alarm, or raise the alarm."""
        if self._alarms and self._has_alarm(AlarmType.NOSPACE):
            raise ErrNoSpace()
        if self.db_size + cost > self.quota_bytes:
            self._alarms[(0, AlarmType.NOSPACE)] = None
            raise ErrNoSpace()

    def _apply_put(self, req: PutRequest, now: float | None) -> PutResponse:
        self._check_put_shape(req)
        if self._alarms and self._has_alarm(AlarmType.NOSPACE):
            raise ErrNoSpace()
        self._check_put_state(req)
        self._check_space(len(req.key) + len(req.value) + KV_OVERHEAD)
        self.store.begin()
        try:
            prev = self._do_put(req)
        finally:
            self._commit()
        return PutResponse(self._header(), prev if req.prev_kv else None)

    def _do_put(self, req: PutRequest) -> KeyValue | None:
        key, value, lease = req.key, req.value, req.lease
        if req.ignore_value or req.ignore_lease:
            cur = self.store.get(key)
            assert cur is not None  # checked before the batch opened
            if req.ignore_value:
                value = cur.value
            if req.ignore_lease:
                lease = cur.lease
        prev = self.store.put(key, value, lease)
        if prev is not None and prev.lease and prev.lease != lease:
            old = self._leases.get(prev.lease)
            if old is not None:
                old.keys.pop(key, None)
        if lease:
            self._leases[lease].keys[key] = None
        return prev

    def _apply_delete_range(self, req: DeleteRangeRequest, now: float | None) -> DeleteRangeResponse:
        if not req.key:
            raise ErrEmptyKey()
        self.store.begin()
        try:
            prevs = self._do_delete_range(req)
        finally:
            self._commit()
        return DeleteRangeResponse(self._header(), len(prevs), prevs if req.prev_kv else [])

    def _do_delete_range(self, req: DeleteRangeRequest) -> list[KeyValue]:
        prevs = self.store.delete_range(req.key, req.range_end)
        for prev in prevs:
            if prev.lease:
                lease = self._leases.get(prev.lease)
                if lease is not None:
                    lease.keys.pop(prev.key, None)
        return prevs

    # -- txn ---------------------------------------------------------------------------------

    def _apply_txn(self, req: TxnRequest, now: float | None) -> TxnResponse:
        cost = self._check_txn_shape(req)
        if cost and self._alarms and self._has_alarm(AlarmType.NOSPACE):
            raise ErrNoSpace()
        plan = self._plan(req)
        self._check_plan_state(plan)
        if cost:
            self._check_space(cost)
        begin = self.store.revision
        self.store.begin()
        try:
            resp = self._exec_plan(plan, begin, [False])
        finally:
            self._commit()
        resp.header = ResponseHeader(revision=self.store.revision)
        return resp

    def _check_txn_shape(self, txn: TxnRequest) -> int:
        """Check what needs no state (op counts, empty keys, a key written twice); return the
        bytes the txn may write (quota): the larger branch's puts, nested txns included.
        As etcd, every op of both branches (nested txns included) is checked before any
        branch is checked for a key written twice."""
        cost = self._check_ops_shape(txn)
        for ops in (txn.success, txn.failure):
            if len(ops) > 1 or (ops and type(ops[0]) is TxnRequest):
                _check_intervals(ops)
        return cost

    def _check_ops_shape(self, txn: TxnRequest) -> int:
        limit = self.max_txn_ops
        if len(txn.compare) > limit or len(txn.success) > limit or len(txn.failure) > limit:
            raise ErrTooManyOps()
        for c in txn.compare:
            if not c.key:
                raise ErrEmptyKey()
        costs = [0, 0]
        for branch, ops in enumerate((txn.success, txn.failure)):
            cost = 0
            for op in ops:
                if isinstance(op, PutRequest):
                    self._check_put_shape(op)
                    cost += len(op.key) + len(op.value) + KV_OVERHEAD
                elif isinstance(op, RangeRequest):
                    self._check_range_shape(op)
                elif isinstance(op, DeleteRangeRequest):
                    if not op.key:
                        raise ErrEmptyKey()
                elif isinstance(op, TxnRequest):
                    cost += self._check_ops_shape(op)
                else:
                    raise ErrBadRequest(f"TxnRequest: {type(op).__name__} is not a request op")
            costs[branch] = cost
        return max(costs)

    def _compare(self, c: Compare) -> bool:
        rev = 0  # the head; a stale snapshot under the bug below
        if self.bugs.fire("txn_read_stale_snapshot", self.store.revision - 1 > self.store.compact_revision):
            rev = self.store.revision - 1
        if c.range_end:
            kvs = self.store.range(c.key, c.range_end, rev)
        else:
            one = self.store.get(c.key, rev)
            kvs = [one] if one is not None else []
        if not kvs:
            if c.target == CompareTarget.VALUE:
                return False  # as etcd: a value compare on a missing key (or empty range) fails
            kvs = [_ZERO_KV]
        name = _COMPARE_FIELD[c.target]
        want = getattr(c, name)
        result = c.result
        for kv in kvs:
            have = getattr(kv, name)
            if result == CompareResult.EQUAL:
                ok = have == want
            elif result == CompareResult.NOT_EQUAL:
                ok = have != want
            elif result == CompareResult.GREATER:
                ok = have > want
            else:
                ok = have < want
            if not ok:
                return False
        return True

    def _plan(self, txn: TxnRequest) -> _Plan:
        ok = all(self._compare(c) for c in txn.compare)
        ops = txn.success if ok else txn.failure
        return _Plan(ok, ops, [self._plan(op) if isinstance(op, TxnRequest) else None for op in ops])

    def _check_plan_state(self, plan: _Plan) -> None:
        """As etcd: every put of the chosen path first (nested txns included), then every
        range, so a txn with both kinds of error fails with the put's."""
        self._check_plan_puts(plan)
        self._check_plan_ranges(plan)

    def _check_plan_puts(self, plan: _Plan) -> None:
        for op, child in zip(plan.ops, plan.children, strict=True):
            if child is not None:
                self._check_plan_puts(child)
            elif isinstance(op, PutRequest):
                # inside a txn etcd asks for the key of an ignore_value/ignore_lease put
                # before it looks the lease up (a lone put does it the other way round)
                if (op.ignore_value or op.ignore_lease) and self.store.get(op.key) is None:
                    raise ErrKeyNotFound()
                self._check_put_state(op)

    def _check_plan_ranges(self, plan: _Plan) -> None:
        for op, child in zip(plan.ops, plan.children, strict=True):
            if child is not None:
                self._check_plan_ranges(child)
            elif isinstance(op, RangeRequest):
                self.store.check_revision(op.revision)

    def _exec_plan(self, plan: _Plan, begin: int, changed: list[bool]) -> TxnResponse:
        """Run a txn's chosen branch. Each response's header revision is etcd's: ``begin``
        (the revision before the txn) until the txn has changed something, ``begin + 1``
        from then on; a put always has ``begin + 1``, a delete that deleted nothing and
        follows no change has ``begin``; a nested txn's own header is empty (revision 0)."""
        responses: list[ResponseOp] = []
        for op, child in zip(plan.ops, plan.children, strict=True):
            if child is not None:
                responses.append(self._exec_plan(child, begin, changed))
            elif isinstance(op, RangeRequest):
                resp = self._do_range(op)
                resp.header = ResponseHeader(revision=begin + 1 if changed[0] else begin)
                responses.append(resp)
            elif isinstance(op, PutRequest):
                if self.bugs.fire("txn_non_atomic", any(type(r) is PutResponse for r in responses)):
                    self._deferred_puts.append(op)  # applied when the next entry is (apply)
                    responses.append(PutResponse(ResponseHeader(), None))
                    continue
                prev = self._do_put(op)
                changed[0] = True
                responses.append(PutResponse(ResponseHeader(revision=begin + 1), prev if op.prev_kv else None))
            else:
                assert isinstance(op, DeleteRangeRequest)
                prevs = self._do_delete_range(op)
                changed[0] = changed[0] or bool(prevs)
                responses.append(DeleteRangeResponse(ResponseHeader(revision=begin + 1 if changed[0] else begin),
                                                     len(prevs), prevs if op.prev_kv else []))
        return TxnResponse(ResponseHeader(), plan.succeeded, responses)

    # -- compaction and hash -----------------------------------------------------------------

    def _apply_compaction(self, req: CompactionRequest, now: float | None) -> CompactionResponse:
        if req.revision <= self.store.compact_revision:
            raise ErrCompacted()
        if req.revision > self.store.revision:
            raise ErrFutureRev()
        self.store.compact(req.revision)
        return CompactionResponse(self._header())

    @property
    def revision(self) -> int:
        return self.store.revision

    @property
    def compact_revision(self) -> int:
        return self.store.compact_revision

    @property
    def db_size(self) -> int:
        """Bytes the quota counts: stored versions (key + value + overhead) and leases."""
        return self.store.size + LEASE_OVERHEAD * len(self._leases)

    def hash_kv(self, revision: int = 0) -> HashKVResponse:
        """Hash of every stored key version with mod_revision <= revision (0: current); equal on
        members with the same applied log. Raises ErrCompacted, ErrFutureRev."""
        if revision < 0:
            raise ErrBadRequest(f"HashKVRequest.revision: {revision} is negative")
        rev = self.store.check_revision(revision)
        return HashKVResponse(self._header(), self.store.hash(rev), self.store.compact_revision, rev)

    # -- alarms ------------------------------------------------------------------------------

    def _apply_alarm(self, req: AlarmRequest, now: float | None) -> AlarmResponse:
        if req.action == AlarmAction.GET:
            members = self.alarms()
        elif req.alarm == AlarmType.NONE:
            members = []
        elif req.action == AlarmAction.ACTIVATE:
            self._alarms[(req.member_id, req.alarm)] = None
            members = [AlarmMember(req.member_id, req.alarm)]
        else:
            existed = self._alarms.pop((req.member_id, req.alarm), "absent") is None
            members = [AlarmMember(req.member_id, req.alarm)] if existed else []
        return AlarmResponse(self._header(), members)

    def alarms(self) -> list[AlarmMember]:
        """Active alarms, ordered by member id then type."""
        return [AlarmMember(m, a) for m, a in sorted(self._alarms)]

    # -- leases: applied through the log -----------------------------------------------------

    def _apply_lease_grant(self, req: LeaseGrantRequest, now: float | None) -> LeaseGrantResponse:
        if req.ttl > MAX_LEASE_TTL:
            raise ErrLeaseTTLTooLarge()
        if req.id < 0:
            raise ErrBadRequest(f"LeaseGrantRequest.id: {req.id} is negative")
        if req.id and req.id in self._leases:
            raise ErrLeaseExist()
        self._check_space(LEASE_OVERHEAD)
        lease_id = req.id
        if not lease_id:
            while self._next_lease_id in self._leases:
                self._next_lease_id += 1
            lease_id = self._next_lease_id
            self._next_lease_id += 1
        ttl = max(req.ttl, self.min_lease_ttl)
        lease = self._leases[lease_id] = Lease(lease_id, ttl)
        if self._primary and now is not None:
            lease.expiry = now + ttl
        return LeaseGrantResponse(self._header(), lease_id, ttl)

    def _apply_lease_revoke(self, req: LeaseRevokeRequest, now: float | None) -> LeaseRevokeResponse:
        lease = self._leases.get(req.id)
        if lease is None:
            raise ErrLeaseNotFound()
        self._revoke(lease)
        return LeaseRevokeResponse(self._header())

    def _apply_lease_expire(self, req: LeaseExpireRequest, now: float | None) -> LeaseExpireResponse:
        revoked = []
        for lease_id in req.ids:
            lease = self._leases.get(lease_id)
            if lease is not None:
                self._revoke(lease)
                revoked.append(lease_id)
        return LeaseExpireResponse(self._header(), revoked)

    def _revoke(self, lease: Lease) -> None:
        """Delete the lease's keys at one revision (none if it holds no key), then the lease."""
        self.store.begin()
        try:
            for key in sorted(lease.keys):
                self.store.delete(key)
        finally:
            self._commit()
        del self._leases[lease.id]
        self._revoke_proposed.pop(lease.id, None)

    # -- leases: the leader's clocks (time is an argument) -----------------------------------

    @property
    def is_primary(self) -> bool:
        return self._primary

    def promote(self, now: float) -> None:
        """Become the primary lessor: every lease's expiry restarts at now + ttl."""
        self._primary = True
        self._revoke_proposed.clear()
        for lease in self._leases.values():
            lease.expiry = now + lease.ttl

    def demote(self) -> None:
        """Stop keeping lease clocks (followers never expire leases)."""
        self._primary = False
        self._revoke_proposed.clear()
        for lease in self._leases.values():
            lease.expiry = None

    def _running(self, lease: Lease, now: float) -> float:
        if lease.expiry is None:  # granted without a clock reading: start it now
            lease.expiry = now + lease.ttl
        return lease.expiry

    def lease_keepalive(self, lease_id: int, now: float) -> int:
        """Renew a lease: returns its TTL, or 0 when unknown or already expired. Raises
        ErrNotPrimary on a non-leader."""
        if not self._primary:
            raise ErrNotPrimary()
        lease = self._leases.get(lease_id)
        if lease is None:
            return 0
        if self._running(lease, now) <= now and not self.bugs.fire("lease_renew_after_expiry"):
            return 0
        lease.expiry = now + lease.ttl
        return lease.ttl

    def expired_leases(self, now: float) -> list[int]:
        """Ids of leases whose expiry passed, for the leader to propose a LeaseExpireRequest.

        An id is named again only after ``lease_revoke_retry`` seconds, in case the proposal
        was lost. Empty on a non-leader."""
        if not self._primary:
            return []
        out = []
        for lease in self._leases.values():
            if self._running(lease, now) > now:
                continue
            named = self._revoke_proposed.get(lease.id)
            if named is None or now >= named + self.lease_revoke_retry:
                self._revoke_proposed[lease.id] = now
                out.append(lease.id)
        if self.bugs.fire("lease_expiry_local", bool(out)):
            self._revoke_locally(out)
        return out

    def _revoke_locally(self, lease_ids: list[int]) -> None:
        """Only under the lease_expiry_local bug: delete on this member's timer, outside the log."""
        for lease_id in lease_ids:
            self._revoke(self._leases[lease_id])

    def lease_time_to_live(self, lease_id: int, keys: bool, now: float) -> LeaseTimeToLiveResponse:
        """Remaining whole seconds (-1 for an unknown lease, as etcd), granted TTL and
        optionally the attached keys. Raises ErrNotPrimary on a non-leader."""
        if not self._primary:
            raise ErrNotPrimary()
        lease = self._leases.get(lease_id)
        if lease is None:
            return LeaseTimeToLiveResponse(self._header(), lease_id, -1, 0, [])
        remaining = max(0, math.floor(self._running(lease, now) - now))
        return LeaseTimeToLiveResponse(self._header(), lease_id, remaining, lease.ttl,
                                       sorted(lease.keys) if keys else [])

    def lease_leases(self) -> LeaseLeasesResponse:
        return LeaseLeasesResponse(self._header(), [LeaseStatus(i) for i in sorted(self._leases)])

    # -- watches -----------------------------------------------------------------------------

    def create_watch(self, req: WatchCreateRequest) -> tuple[int, list[WatchResponse]]:
        """Register a watch; returns its id and the responses to send now (created, catch-up
        events, or a compaction cancel)."""
        return self.hub.create(req)

    def cancel_watch(self, watch_id: int) -> WatchResponse | None:
        """Remove a watch; returns the canceled response (None for an unknown id)."""
        return self.hub.cancel(watch_id)

    def take_watch_responses(self) -> list[tuple[int, WatchResponse]]:
        """Responses produced by applies since the last call, in order per watch id."""
        return self.hub.take()

    def progress(self, watch_id: int | None = None) -> list[tuple[int, WatchResponse]]:
        """Progress notifications (one watch, or all); never ahead of the events taken."""
        return self.hub.progress(watch_id)

    def progress_notify_ids(self) -> list[int]:
        """Watches created with progress_notify: the server sends them progress periodically."""
        return self.hub.progress_notify_ids()

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state (keys with history, leases, sessions, alarms, applied index,
        compacted revision) as one msgpack document. Watches and lease clocks are not state."""
        sessions = [
            [cid, s.max_seq, [[seq, _outcome_to_wire(o)] for seq, o in sorted(s.outcomes.items())]]
            for cid, s in sorted(self._sessions.items())
        ]
        doc = {
            "format": SNAPSHOT_FORMAT,
            "applied_index": self._applied,
            "store": self.store.dump(),
            "leases": [[lease.id, lease.ttl] for lease in self._leases.values()],
            "next_lease_id": self._next_lease_id,
            "sessions": sessions,
            "alarms": [[m, int(a)] for m, a in sorted(self._alarms)],
        }
        return cast(bytes, msgpack.packb(doc, use_bin_type=True))

    @classmethod
    def restore(cls, data: bytes, **options: Any) -> KVStateMachine:
        """A state machine from a snapshot (constructor options as keyword arguments)."""
        machine = cls(**options)
        machine._load(data)
        machine.hub.store = machine.store
        return machine

    def install_snapshot(self, data: bytes) -> None:
        """Replace the state with a snapshot in place (a follower catching up), keeping the
        options, the watches (resynced from the new state or canceled as compacted) and the
        lessor role (a primary's lease clocks restart at its next clock reading)."""
        primary = self._primary
        self._load(data)
        self._primary = primary
        self.hub.resync(self.store)

    def _load(self, data: bytes) -> None:
        try:
            doc = msgpack.unpackb(data, raw=False, strict_map_key=False)
            if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
                raise ValueError(f"not a kv snapshot of format {SNAPSHOT_FORMAT}")
            store = MVCCStore.load(doc["store"])
            leases: dict[int, Lease] = {}
            for lease_id, ttl in doc["leases"]:
                leases[int(lease_id)] = Lease(int(lease_id), int(ttl))
            for key in store.keys_in(b"\0", b"\0"):
                kv = store.get(key)
                if kv is not None and kv.lease:
                    leases[kv.lease].keys[key] = None
            sessions: dict[int, Session] = {}
            for cid, max_seq, outcomes in doc["sessions"]:
                sessions[cid] = Session(max_seq, {seq: _outcome_from_wire(o) for seq, o in outcomes})
            alarms = {(int(m), AlarmType(a)): None for m, a in doc["alarms"]}
            applied = int(doc["applied_index"])
            next_lease_id = int(doc["next_lease_id"])
        except (ValueError, KeyError, TypeError, KVError, msgpack.UnpackException) as exc:
            raise ValueError(f"kv snapshot is malformed: {type(exc).__name__}: {exc}") from None
        self.store = store
        self._leases = leases
        self._sessions = sessions
        self._alarms = alarms
        self._applied = applied
        self._next_lease_id = next_lease_id
        self._primary = False
        self._revoke_proposed = {}


def _outcome_to_wire(outcome: Message | KVError) -> dict[str, Any]:
    if isinstance(outcome, KVError):
        return {"err": error_to_wire(outcome)}
    return {"ok": to_tagged(outcome)}


def _outcome_from_wire(d: Any) -> Message | KVError:
    if isinstance(d, dict) and set(d) == {"err"}:
        return error_from_wire(d["err"])
    if isinstance(d, dict) and set(d) == {"ok"}:
        return from_tagged(d["ok"])
    raise ValueError(f"session outcome must be {{'ok': ...}} or {{'err': ...}}, got {d!r:.100}")


def _check_intervals(ops: list[RequestOp]) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """etcd's rule against writing one key twice in a txn branch: returns (puts, deletes).

    A put may not repeat another put's key or fall in a delete's range at the same level or
    in a nested txn; a nested txn's success and failure branches may put the same key (only
    one runs). Deletes may overlap each other.
    """
    dels = [(op.key, op.range_end) for op in ops if isinstance(op, DeleteRangeRequest)]
    puts: set[bytes] = set()

    def covered(k: bytes) -> bool:
        return any(in_range(k, key, end) for key, end in dels)

    for op in ops:
        if isinstance(op, TxnRequest):
            then_puts, then_dels = _check_intervals(op.success)
            else_puts, else_dels = _check_intervals(op.failure)
            for k in then_puts:
                if k in puts or covered(k):
                    raise ErrDuplicateKey()
            earlier = set(puts)
            puts |= then_puts
            for k in else_puts:
                if k in earlier or covered(k):
                    raise ErrDuplicateKey()
            puts |= else_puts
            dels.extend(then_dels)
            dels.extend(else_dels)
    for op in ops:
        if isinstance(op, PutRequest):
            if op.key in puts or covered(op.key):
                raise ErrDuplicateKey()
            puts.add(op.key)
    return puts, dels
