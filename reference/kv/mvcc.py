"""The MVCC key store: every version of every key under one global revision, until compaction.

Why: etcd's data model. Each write (a put, a delete that deleted something, a txn that
wrote) creates exactly one new store revision; a key's versions carry create_revision,
mod_revision and version; reads can name any revision not yet compacted.

How: ``_hist`` maps each key to the list of its versions in revision order. A deletion is a
tombstone: a ``KeyValue`` with version 0 (and create_revision 0), exactly etcd's DELETE
event kv. ``_revs`` lists, per revision from ``_revs_base`` on, the versions written at that
revision in write order: the change log the watch hub catches up from. Keys are kept sorted
lazily: single-key reads are dict lookups; a range scan first merges the keys created since
the last scan (timsort on a sorted list plus a short tail is linear).

Writes happen in a write batch: ``begin()``, then ``put``/``delete`` (all at revision
``revision + 1``; reads in between see them), then ``end()``, which advances the revision
only when something was written.

Compaction at revision c keeps, per key, every version with mod_revision >= c, plus the
latest version before c when it is live and no version sits exactly at c; so a range at c
still works, every change at revisions >= c (deletes included) stays available to watches,
and the history left depends only on the applied log, never on when compaction ran.
"""

from __future__ import annotations

import struct
import zlib
from bisect import bisect_left, bisect_right
from operator import attrgetter

from kvcheck.reference.kv.requests import ErrCompacted, ErrFutureRev, KeyValue

KV_OVERHEAD = 256  # bytes charged per stored version on top of key and value (quota), as etcd
_mod_rev = attrgetter("mod_revision")
_HASH_REC = struct.Struct(">qqqqI")


def in_range(k: bytes, key: bytes, range_end: bytes) -> bool:
    """Whether k is in etcd's range [key, range_end): empty end = key only, b"\\0" = k >= key."""
    if not range_end:
        return k == key
    if range_end == b"\0":
        return k >= key
    return key <= k < range_end


def version_cost(kv: KeyValue) -> int:
    return len(kv.key) + len(kv.value) + KV_OVERHEAD


class MVCCStore:
    """Key histories under one revision counter (see the module docstring)."""

    __slots__ = ("_batch", "_batch_rev", "_hist", "_pending_keys", "_revs", "_revs_base",
                 "_sorted_keys", "compact_revision", "revision", "size")

    def __init__(self) -> None:
        self._hist: dict[bytes, list[KeyValue]] = {}
        self._sorted_keys: list[bytes] = []
        self._pending_keys: list[bytes] = []  # keys created since the last sort
        self._revs: list[list[KeyValue]] = []  # _revs[i]: versions written at _revs_base + i
        self._revs_base = 2
        self.revision = 1  # as etcd: an empty store is at revision 1, the first write makes 2
        self.compact_revision = 0
        self.size = 0  # bytes of stored versions (key + value + KV_OVERHEAD each)
        self._batch: list[KeyValue] | None = None
        self._batch_rev = 0

    # -- reads -------------------------------------------------------------------------------

    def check_revision(self, revision: int) -> int:
        """The revision a read names: 0 (or less) is current; raises ErrFutureRev/ErrCompacted."""
        if revision > self.revision:
            raise ErrFutureRev()
        if revision <= 0:
            return self.revision
        if revision < self.compact_revision:
            raise ErrCompacted()
        return revision

    def keys_in(self, key: bytes, range_end: bytes) -> list[bytes]:
        """Every key with stored history in [key, range_end), in key order."""
        if not range_end:
            return [key] if key in self._hist else []
        if self._pending_keys:
            self._sorted_keys.extend(self._pending_keys)
            self._sorted_keys.sort()
            self._pending_keys.clear()
        keys = self._sorted_keys
        lo = bisect_left(keys, key)
        if range_end == b"\0":
            return keys[lo:]
        hi = bisect_left(keys, range_end, lo)
        return keys[lo:hi]

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        """The live version of key at revision (0: current, or the batch being written)."""
        hist = self._hist.get(key)
        if hist is None:
            return None
        kv = hist[-1]
        if revision > 0 and kv.mod_revision > revision:
            return self._at(hist, revision)
        return kv if kv.version else None

    @staticmethod
    def _at(hist: list[KeyValue], revision: int) -> KeyValue | None:
        i = bisect_right(hist, revision, key=_mod_rev)
        if i == 0:
            return None
        kv = hist[i - 1]
        return kv if kv.version else None

    def range(self, key: bytes, range_end: bytes, revision: int = 0) -> list[KeyValue]:
        """Live versions at revision (already checked; 0: current) of keys in the range."""
        if not range_end:
            kv = self.get(key, revision)
            return [kv] if kv is not None else []
        get = self.get
        out = []
        for k in self.keys_in(key, range_end):
            kv = get(k, revision)
            if kv is not None:
                out.append(kv)
        return out

    def previous(self, kv: KeyValue) -> KeyValue | None:
        """The live version of kv's key just before kv, if still stored (for prev_kv)."""
        hist = self._hist.get(kv.key)
        if hist is None:
            return None
        i = bisect_left(hist, kv.mod_revision, key=_mod_rev)
        if i == 0:
            return None
        prev = hist[i - 1]
        return prev if prev.version else None

    def changes(self, revision: int) -> list[KeyValue]:
        """Versions written at revision (>= compact_revision), in write order."""
        i = revision - self._revs_base
        if i < 0 or i >= len(self._revs):
            return []
        return self._revs[i]

    # -- writes ------------------------------------------------------------------------------

    def begin(self) -> None:
        assert self._batch is None, "write batch already open"
        self._batch = []
        self._batch_rev = self.revision + 1

    def put(self, key: bytes, value: bytes, lease: int) -> KeyValue | None:
        """Write key in the open batch; returns the previous live version (None if none)."""
        batch = self._batch
        assert batch is not None, "put outside a write batch"
        rev = self._batch_rev
        hist = self._hist.get(key)
        if hist is None:
            hist = self._hist[key] = []
            self._pending_keys.append(key)
            prev = None
        else:
            prev = hist[-1]
            if not prev.version:
                prev = None
        if prev is None:
            kv = KeyValue(key, rev, rev, 1, value, lease)
        else:
            kv = KeyValue(key, prev.create_revision, rev, prev.version + 1, value, lease)
        hist.append(kv)
        batch.append(kv)
        self.size += len(key) + len(value) + KV_OVERHEAD
        return prev

    def delete(self, key: bytes) -> KeyValue | None:
        """Delete key in the open batch if live; returns the deleted version."""
        batch = self._batch
        assert batch is not None, "delete outside a write batch"
        hist = self._hist.get(key)
        if hist is None or not hist[-1].version:
            return None
        prev = hist[-1]
        tomb = KeyValue(key, 0, self._batch_rev, 0, b"", 0)
        hist.append(tomb)
        batch.append(tomb)
        self.size += len(key) + KV_OVERHEAD
        return prev

    def delete_range(self, key: bytes, range_end: bytes) -> list[KeyValue]:
        """Delete every live key in the range (key order); returns the deleted versions."""
        out = []
        for k in self.keys_in(key, range_end):
            prev = self.delete(k)
            if prev is not None:
                out.append(prev)
        return out

    def end(self) -> list[KeyValue]:
        """Close the batch: one new revision if anything was written. Returns the changes."""
        batch = self._batch
        assert batch is not None, "no write batch open"
        self._batch = None
        if batch:
            self.revision = self._batch_rev
            if not self._revs:
                self._revs_base = self.revision
            self._revs.append(batch)
        return batch

    # -- compaction and hashing --------------------------------------------------------------

    def compact(self, revision: int) -> None:
        """Discard history before revision (checked by the caller: compact < revision <= current)."""
        assert self.compact_revision < revision <= self.revision
        self.compact_revision = revision
        dropped_keys = False
        for key in list(self._hist):
            hist = self._hist[key]
            i = bisect_left(hist, revision, key=_mod_rev)
            if i < len(hist) and hist[i].mod_revision == revision:
                keep = i
            elif i > 0 and hist[i - 1].version:
                keep = i - 1
            else:
                keep = i
            if keep == 0:
                continue
            for kv in hist[:keep]:
                self.size -= version_cost(kv)
            if keep == len(hist):
                del self._hist[key]
                dropped_keys = True
            else:
                del hist[:keep]
        if dropped_keys:
            self._sorted_keys = sorted(self._hist)
            self._pending_keys.clear()
        drop = revision - self._revs_base
        if drop > 0:
            del self._revs[:drop]
            self._revs_base = revision

    def hash(self, revision: int) -> int:
        """CRC-32 of every stored version with mod_revision <= revision, in (key, revision)
        order, and of the compacted revision. Equal on members that applied the same log."""
        crc = zlib.crc32(struct.pack(">q", self.compact_revision))
        for key in self.keys_in(b"\0", b"\0"):
            for kv in self._hist[key]:
                if kv.mod_revision > revision:
                    break
                crc = zlib.crc32(key, crc)
                crc = zlib.crc32(_HASH_REC.pack(kv.create_revision, kv.mod_revision, kv.version,
                                                kv.lease, len(kv.value)), crc)
                crc = zlib.crc32(kv.value, crc)
        return crc

    # -- snapshot support --------------------------------------------------------------------

    def dump(self) -> dict[str, object]:
        """Plain data for a snapshot: histories in key order and the per-revision write order."""
        keys = self.keys_in(b"\0", b"\0")  # every key: empty keys are refused by the API
        hist = [[k, [[kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease]
                     for kv in self._hist[k]]] for k in keys]
        return {
            "revision": self.revision,
            "compact_revision": self.compact_revision,
            "revs_base": self._revs_base,
            "hist": hist,
            "revs": [[kv.key for kv in changes] for changes in self._revs],
        }

    @classmethod
    def load(cls, d: dict[str, object]) -> MVCCStore:
        """Inverse of dump (the data comes from our own snapshot; shape errors raise ValueError)."""
        store = cls()
        store.revision = _int(d["revision"])
        store.compact_revision = _int(d["compact_revision"])
        store._revs_base = _int(d["revs_base"])
        hist_data = d["hist"]
        if not isinstance(hist_data, list):
            raise ValueError("snapshot: hist must be a list")
        for key, versions in hist_data:
            hist = [KeyValue(key, cr, mr, ver, value, lease) for cr, mr, ver, value, lease in versions]
            store._hist[key] = hist
            for kv in hist:
                store.size += version_cost(kv)
        store._sorted_keys = sorted(store._hist)
        revs = d["revs"]
        if not isinstance(revs, list):
            raise ValueError("snapshot: revs must be a list")
        for i, keys in enumerate(revs):
            rev = store._revs_base + i
            changes = []
            for k in keys:
                hist = store._hist[k]
                j = bisect_left(hist, rev, key=_mod_rev)
                if j >= len(hist) or hist[j].mod_revision != rev:
                    raise ValueError(f"snapshot: no version of {k!r} at revision {rev}")
                changes.append(hist[j])
            store._revs.append(changes)
        return store


def _int(v: object) -> int:
    if type(v) is not int:
        raise ValueError(f"snapshot: expected an integer, got {v!r}")
    return v
