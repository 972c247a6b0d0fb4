"""The watch hub: turns each new store revision into events for the watches whose range it touches.

Why: etcd's watch guarantees (ordered, unique, atomic per revision, reliable, resumable from a
revision) are properties of this code; progress notifications must never claim a revision
whose events have not been handed out yet.

How: the hub is synchronous, like the rest of the state machine. ``create`` catches a watch
up from the store's change log at once (or cancels it with ``compact_revision`` when its
start revision was compacted), so every registered watch is synced: after each write the
machine calls ``notify(changes)`` and matching events are queued on the watch. ``take``
turns each watch's queue into responses (never splitting a revision; a batch holds at most
``max_events`` events unless one revision alone is larger), the last one carrying the
current revision in its header. ``progress`` answers with the revision up to which a watch's
events have been taken: the current revision when nothing is queued, else the revision
just before the first queued event. Watch ids are the hub's own (1, 2, ...) unless the
request names one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvcheck.reference.bugs import NO_BUGS, Bugs
from kvcheck.reference.kv.mvcc import MVCCStore, in_range
from kvcheck.reference.kv.requests import (
    ErrBadRequest,
    ErrCompacted,
    ErrEmptyKey,
    ErrWatchIDExists,
    Event,
    EventType,
    FilterType,
    KeyValue,
    ResponseHeader,
    WatchCreateRequest,
    WatchResponse,
)

DEFAULT_MAX_EVENTS = 1000
EMPTY_WATCH_RANGE = "mvcc: watcher range is empty"  # etcd's cancel reason for key >= range_end


@dataclass(slots=True)
class Watcher:
    id: int
    key: bytes
    range_end: bytes
    no_put: bool
    no_delete: bool
    prev_kv: bool
    progress_notify: bool
    next_rev: int  # the next revision whose events this watch has not been given yet
    queued: list[Event] = field(default_factory=list)

    def wants(self, kv: KeyValue) -> bool:
        if kv.version:
            if self.no_put:
                return False
        elif self.no_delete:
            return False
        end = self.range_end
        k = kv.key
        if not end:
            return k == self.key
        if end == b"\0":
            return k >= self.key
        return self.key <= k < end


class WatchHub:
    """Watches over one MVCCStore (see the module docstring)."""

    def __init__(self, store: MVCCStore, max_events: int = DEFAULT_MAX_EVENTS,
                 bugs: Bugs = NO_BUGS) -> None:
        self.store = store
        self.bugs = bugs
        self.max_events = max_events
        self._watchers: dict[int, Watcher] = {}
        self._next_id = 1
        self._outbox: list[tuple[int, WatchResponse]] = []  # non-event responses (cancels)

    def __len__(self) -> int:
        return len(self._watchers)

    def ids(self) -> list[int]:
        return list(self._watchers)

    def progress_notify_ids(self) -> list[int]:
        """Watches that asked for periodic progress notifications (the server times them)."""
        return [w.id for w in self._watchers.values() if w.progress_notify]

    def _header(self, revision: int | None = None) -> ResponseHeader:
        return ResponseHeader(revision=self.store.revision if revision is None else revision)

    # -- lifecycle ---------------------------------------------------------------------------

    def create(self, req: WatchCreateRequest) -> tuple[int, list[WatchResponse]]:
        if not req.key:
            raise ErrEmptyKey()
        if req.start_revision < 0:
            raise ErrBadRequest(f"WatchCreateRequest.start_revision: {req.start_revision} is negative")
        if req.watch_id < 0:
            raise ErrBadRequest(f"WatchCreateRequest.watch_id: {req.watch_id} is negative")
        if req.watch_id:
            if req.watch_id in self._watchers:
                raise ErrWatchIDExists()
            wid = req.watch_id
        else:
            while self._next_id in self._watchers:
                self._next_id += 1
            wid = self._next_id
            self._next_id += 1
        store = self.store
        if req.range_end and req.range_end != b"\0" and req.key >= req.range_end:
            # etcd: an empty range is answered with one created-and-canceled response
            return wid, [WatchResponse(header=self._header(), watch_id=wid, created=True, canceled=True,
                                       cancel_reason=EMPTY_WATCH_RANGE)]
        created = WatchResponse(header=self._header(), watch_id=wid, created=True)
        start = req.start_revision or store.revision + 1
        if self.bugs.fire("watch_resume_gap", bool(req.start_revision) and start <= store.revision):
            start += 1
        if req.start_revision and start < store.compact_revision:
            cancel = WatchResponse(header=self._header(), watch_id=wid, canceled=True,
                                   compact_revision=store.compact_revision,
                                   cancel_reason=ErrCompacted.default_message)
            return wid, [created, cancel]
        w = Watcher(wid, req.key, req.range_end, FilterType.NOPUT in req.filters,
                    FilterType.NODELETE in req.filters, req.prev_kv, req.progress_notify, start)
        self._watchers[wid] = w
        self._catch_up(w)
        return wid, [created, *self._drain(w)]

    def cancel(self, watch_id: int) -> WatchResponse | None:
        w = self._watchers.pop(watch_id, None)
        if w is None:
            return None
        return WatchResponse(header=self._header(), watch_id=watch_id, canceled=True)

    def _catch_up(self, w: Watcher) -> None:
        """Queue the events of revisions [w.next_rev, current] from the change log."""
        store = self.store
        for rev in range(max(w.next_rev, store.compact_revision), store.revision + 1):
            self._match(w, store.changes(rev))
        w.next_rev = max(w.next_rev, store.revision + 1)

    def _match(self, w: Watcher, changes: list[KeyValue]) -> None:
        for kv in changes:
            if w.wants(kv):
                prev = self.store.previous(kv) if w.prev_kv else None
                w.queued.append(Event(EventType.PUT if kv.version else EventType.DELETE,
                                      kv, prev))

    # -- delivery ----------------------------------------------------------------------------

    def notify(self, revision: int, changes: list[KeyValue]) -> None:
        """The store just wrote ``changes`` at ``revision``: queue them for matching watches."""
        store = self.store
        prev_cache: dict[int, KeyValue | None] = {}
        for w in self._watchers.values():
            if w.next_rev > revision:
                continue
            w.next_rev = revision + 1
            no_put, no_delete, key, end = w.no_put, w.no_delete, w.key, w.range_end
            for kv in changes:
                if kv.version:
                    if no_put:
                        continue
                elif no_delete:
                    continue
                k = kv.key
                if not end:
                    if k != key:
                        continue
                elif end == b"\0":
                    if k < key:
                        continue
                elif not key <= k < end:
                    continue
                prev = None
                if w.prev_kv:
                    ident = id(kv)
                    if ident in prev_cache:
                        prev = prev_cache[ident]
                    else:
                        prev = prev_cache[ident] = store.previous(kv)
                w.queued.append(Event(EventType.PUT if kv.version else EventType.DELETE, kv, prev))

    def _drain(self, w: Watcher) -> list[WatchResponse]:
        """w's queued events as responses, revisions whole, the last at the current revision."""
        events = w.queued
        if not events:
            return []
        w.queued = []
        out: list[WatchResponse] = []
        batch: list[Event] = []
        for i, ev in enumerate(events):
            batch.append(ev)
            rev = ev.kv.mod_revision
            last_of_rev = i + 1 == len(events) or events[i + 1].kv.mod_revision != rev
            if last_of_rev and len(batch) >= self.max_events and i + 1 < len(events):
                out.append(WatchResponse(header=self._header(rev), watch_id=w.id, events=batch))
                batch = []
        out.append(WatchResponse(header=self._header(), watch_id=w.id, events=batch))
        return out

    def take(self) -> list[tuple[int, WatchResponse]]:
        """Every response produced since the last take, in order per watch."""
        out: list[tuple[int, WatchResponse]] = []
        if self._outbox:  # set aside by resync: older than anything queued since
            out.extend(self._outbox)
            self._outbox = []
        for w in self._watchers.values():
            if w.queued:
                out.extend((w.id, r) for r in self._drain(w))
        return out

    def progress(self, watch_id: int | None = None) -> list[tuple[int, WatchResponse]]:
        """Progress notifications: header.revision = the revision up to which this watch's
        events have been taken (never ahead of them). Unknown watch id: empty list."""
        if watch_id is None:
            watchers = list(self._watchers.values())
        else:
            one = self._watchers.get(watch_id)
            watchers = [one] if one is not None else []
        out = []
        for w in watchers:
            rev = w.queued[0].kv.mod_revision - 1 if w.queued else self.store.revision
            out.append((w.id, WatchResponse(header=self._header(rev), watch_id=w.id)))
        return out

    # -- snapshot install --------------------------------------------------------------------

    def resync(self, store: MVCCStore) -> None:
        """The state was replaced by a snapshot: bring every watch up to the new store, or
        cancel it with compact_revision when the revisions it still needs were compacted."""
        self._outbox.extend(self.take())  # queued events are true of the old store: hand out first
        self.store = store
        for w in list(self._watchers.values()):
            if w.next_rev <= store.revision and w.next_rev < store.compact_revision:
                del self._watchers[w.id]
                self._outbox.append((w.id, WatchResponse(
                    header=self._header(), watch_id=w.id, canceled=True,
                    compact_revision=store.compact_revision,
                    cancel_reason=ErrCompacted.default_message)))
            else:
                self._catch_up(w)


__all__ = ["DEFAULT_MAX_EVENTS", "WatchHub", "Watcher", "in_range"]
