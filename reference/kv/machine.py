"""KVStateMachine: the deterministic state machine applied to committed Raft entries.

Why: every member applies the same committed entries in the same order and must reach the
same state, so this module is pure: no trio, no I/O, no wall clock, no global random, and
iteration only over ordered containers. Time enters only as an argument (``now``, seconds on
the caller's clock) to the leader-side lease methods.

How: ``apply(index, data)`` decodes an ``Envelope`` (``requests.decode_entry``), answers a
retried ``(client_id, seq)`` from the session table, otherwise executes the request against
the MVCC store (``mvcc.MVCCStore``: key histories, one global revision), the lessor (leases
and which keys they hold) and the quota/alarms, records the outcome in the session table
and hands the changes of the new revision to the watch hub (``watch.WatchHub``).

Leases: expiry is never acted on locally. The leader (``promote(now)``) keeps the lease
clocks; ``expired_leases(now)`` names the leases it must revoke by proposing a
``LeaseExpireRequest`` through the log; followers (``demote()``) keep no clocks.

Snapshots capture keys with history, leases, sessions, alarms, the applied index and the
compacted revision as one msgpack document.
"""

from __future__ import annotations

from kvcheck.reference.kv.requests import (
    HashKVResponse,
    LeaseLeasesResponse,
    LeaseTimeToLiveResponse,
    Message,
    RangeRequest,
    RangeResponse,
    WatchCreateRequest,
    WatchResponse,
)

DEFAULT_QUOTA_BYTES = 2 * 1024**3  # etcd's default backend quota (2 GiB)
DEFAULT_MAX_TXN_OPS = 128
DEFAULT_MAX_REQUEST_BYTES = 1536 * 1024  # etcd's --max-request-bytes default
MAX_LEASE_TTL = 9_000_000_000  # etcd's MaxLeaseTTL, seconds
DEFAULT_SESSION_WINDOW = 64


def min_lease_ttl(election_ticks: int, heartbeat_interval: float) -> int:
    """etcd's minimum lease TTL in seconds: ceil(3 * election_ticks / 2 * heartbeat_interval)."""
    raise NotImplementedError


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
    ) -> None:
        raise NotImplementedError

    # -- applying the log --------------------------------------------------------------------

    @property
    def applied_index(self) -> int:
        """Index of the last entry applied (0 before any)."""
        raise NotImplementedError

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
        raise NotImplementedError

    # -- reads outside the log ---------------------------------------------------------------

    def range(self, req: RangeRequest) -> RangeResponse:
        """Serve a read at the applied state (after ReadIndex, or serializable). Raises KVError."""
        raise NotImplementedError

    @property
    def revision(self) -> int:
        raise NotImplementedError

    @property
    def compact_revision(self) -> int:
        raise NotImplementedError

    def hash_kv(self, revision: int = 0) -> HashKVResponse:
        """Hash of every key version with mod_revision <= revision (0: current) since the
        compacted revision; equal on members with the same applied log. Raises ErrCompacted,
        ErrFutureRev."""
        raise NotImplementedError

    # -- leader-side lessor (time is an argument) --------------------------------------------

    @property
    def is_primary(self) -> bool:
        raise NotImplementedError

    def promote(self, now: float) -> None:
        """Become the primary lessor: every lease's expiry restarts at now + ttl."""
        raise NotImplementedError

    def demote(self) -> None:
        """Stop keeping lease clocks (followers never expire leases)."""
        raise NotImplementedError

    def lease_keepalive(self, lease_id: int, now: float) -> int:
        """Renew a lease: returns its TTL, or 0 when unknown or already expired. Raises
        ErrNotPrimary on a non-leader."""
        raise NotImplementedError

    def expired_leases(self, now: float) -> list[int]:
        """Ids of leases whose expiry passed, for the leader to propose a LeaseExpireRequest.

        An id is named again only after ``lease_revoke_retry`` seconds, in case the proposal
        was lost. Empty on a non-leader."""
        raise NotImplementedError

    def lease_time_to_live(self, lease_id: int, keys: bool, now: float) -> LeaseTimeToLiveResponse:
        """Remaining whole seconds (-1 for an unknown lease), granted TTL and optionally keys."""
        raise NotImplementedError

    def lease_leases(self) -> LeaseLeasesResponse:
        raise NotImplementedError

    # -- watches -----------------------------------------------------------------------------

    def create_watch(self, req: WatchCreateRequest) -> tuple[int, list[WatchResponse]]:
        """Register a watch; returns its id and the responses to send now (created, catch-up
        events, or a compaction cancel)."""
        raise NotImplementedError

    def cancel_watch(self, watch_id: int) -> WatchResponse | None:
        """Remove a watch; returns the canceled response (None for an unknown id)."""
        raise NotImplementedError

    def take_watch_responses(self) -> list[tuple[int, WatchResponse]]:
        """Responses produced by applies since the last call, in order, per watch id."""
        raise NotImplementedError

    def progress(self, watch_id: int | None = None) -> list[tuple[int, WatchResponse]]:
        """Progress notifications (one watch, or all); never ahead of the events taken."""
        raise NotImplementedError

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state (keys with history, leases, sessions, alarms, applied index,
        compacted revision) as one document."""
        raise NotImplementedError

    @classmethod
    def restore(cls, data: bytes, **options: object) -> KVStateMachine:
        """A state machine from a snapshot (constructor options as keyword arguments)."""
        raise NotImplementedError
