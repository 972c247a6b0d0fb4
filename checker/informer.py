"""The informer checker: are Kubernetes-style caches built from list + watch right, and does
optimistic concurrency lose no update?

Why: a Kubernetes informer lists a prefix at revision R, watches from R + 1 with prev_kv and
applies the events to its cache; controllers act on that cache. If a list and a watch do not
fit together (a watch that skips or repeats what the list covered, events out of place) the
cache silently differs from the store. And the API server's updates are compare-and-swap
on mod_revision: two updates that both succeed against the same mod_revision are a lost
update.

How: the committed order of writes is rebuilt as the watch checker does (kvcheck.checker.
watch). For each informer (ops and watch requests carrying ``informer`` = n), in history
order: an ok ``range`` resets its cache to what the list returned; each response of its
watch streams applies its events (PUT sets the key, DELETE removes it); after each response
with events (at its last event's revision) and after each progress notification (at its
revision, unless the cache is already past it: a stream resumed on a member still catching
up may report progress behind it) the cache must equal the replayed store at that revision,
restricted to the watched prefix (``informer:cache``, naming the keys that differ). Every ``ok`` txn whose
``compare`` is ``[["mod_revision", key, m]]`` with m > 0 is an update of the version made at
m: two of them on one key and m (``informer:lost-update``), or one that completed at a
revision not above m (``informer:update-order``), is an anomaly.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Sequence
from typing import Any

from kvcheck.checker.api import UNKNOWN, Anomaly, CheckerBase, CheckOptions, CheckResult
from kvcheck.checker.history import Op
from kvcheck.checker.watch import Change, _OutOfTime, _Run


class InformerChecker(CheckerBase):
    name = "informer"
    description = "informer caches (list + watch) equal the store at every revision they reach; no lost update"

    def reads(self, op: Op) -> bool:
        return not op.is_nemesis and (op.f == "txn" or "informer" in op.extra or op.f == "watch")

    def check(self, ops: Sequence[Op], options: CheckOptions) -> CheckResult:
        t0 = time.perf_counter()
        deadline = None if options.timeout is None else t0 + options.timeout
        run = _Run(ops, options, deadline)
        try:
            run.reconstruct()
        except _OutOfTime:
            return CheckResult(self.name, UNKNOWN, [], time.perf_counter() - t0,
                               f"the informer check did not finish within {options.timeout} s")
        anomalies: list[Anomaly] = []
        hist: dict[str, list[int]] = {}
        at: dict[str, list[Change]] = {}
        for rev in sorted(run.changes):
            for c in run.changes[rev]:
                hist.setdefault(c.key, []).append(rev)
                at.setdefault(c.key, []).append(c)

        def store_at(rev: int, start: str, end: str) -> tuple[dict[str, Any], bool]:
            """The replayed store's values under [start, end) at ``rev``; False if uncertain."""
            out: dict[str, Any] = {}
            for key, revs in hist.items():
                if not start <= key < end:
                    continue
                i = bisect.bisect_right(revs, rev) - 1
                if i < 0:
                    continue
                c = at[key][i]
                if not c.certain:
                    return out, False
                if c.type == "put":
                    out[key] = c.value
            return out, True

        caches: dict[Any, dict[str, Any]] = {}
        cache_rev: dict[Any, int] = {}  # the revision each cache is at (list, then events)
        streams: dict[Any, tuple[Any, str, str]] = {}  # watch process -> (informer, start, end)
        checks = 0
        shown = 0
        for op in ops:
            if op.is_nemesis:
                continue
            if op.f == "range" and op.type == "ok" and "informer" in op.extra:
                caches[op.extra["informer"]] = {str(kv.get("key")): kv.get("value")
                                                for kv in op.extra.get("kvs") or () if isinstance(kv, dict)}
                cache_rev[op.extra["informer"]] = int(op.extra.get("revision") or 0)
                continue
            if op.f != "watch":
                continue
            if op.type == "invoke":
                req = op.value if isinstance(op.value, dict) else {}
                if "informer" in req:
                    streams[op.process] = (req["informer"], str(req.get("key", "")), str(req.get("range_end", "")))
                continue
            if op.process not in streams or not isinstance(op.value, dict):
                continue
            n, start, end = streams[op.process]
            v = op.value
            if "end" in v or v.get("progress_request") or v.get("created") or v.get("canceled"):
                continue
            cache = caches.setdefault(n, {})
            events = v.get("events") or []
            for ev in events:
                if ev.get("type") == "put":
                    cache[str(ev.get("key"))] = ev.get("value")
                else:
                    cache.pop(str(ev.get("key")), None)
            reached = int(events[-1].get("mod_revision") or 0) if events else int(v.get("revision") or 0)
            if reached < cache_rev.get(n, 0):
                continue  # a bookmark behind the cache (a resumed stream's member still catching up)
            cache_rev[n] = reached
            if reached > run.final_revision or reached in run.uncertain_revisions:
                continue
            want, certain = store_at(reached, start, end)
            if not certain:
                continue
            checks += 1
            if cache != want:
                keys = sorted(k for k in set(cache) | set(want) if cache.get(k) != want.get(k))
                if shown < 20:
                    shown += 1
                    diff = {k: [cache.get(k), want.get(k)] for k in keys[:5]}
                    anomalies.append(Anomaly(
                        "informer:cache",
                        f"informer {n}'s cache at revision {reached} (after op {op.id}) differs from the store "
                        f"there in {len(keys)} key(s): {diff} (cache, store)", [op.id],
                        {"informer": n, "revision": reached, "keys": keys[:20], "stream": op.process}))
        # optimistic concurrency
        updates: dict[tuple[str, int], Op] = {}
        for op in ops:
            if op.f != "txn" or op.type != "ok" or op.is_nemesis:
                continue
            for cmp in op.extra.get("compare") or ():
                if not (isinstance(cmp, list) and len(cmp) == 3 and cmp[0] == "mod_revision"):
                    continue
                key, m = str(cmp[1]), cmp[2]
                if not isinstance(m, int) or m <= 0:
                    continue
                other = updates.setdefault((key, m), op)
                if other is not op:
                    anomalies.append(Anomaly(
                        "informer:lost-update", f"ops {other.id} and {op.id} both updated {key} from the version "
                        f"at revision {m}: one of the two updates is lost", [other.id, op.id],
                        {"key": key, "revision": m}))
                done_at = op.extra.get("revision")
                if isinstance(done_at, int) and done_at <= m:
                    anomalies.append(Anomaly(
                        "informer:update-order", f"op {op.id} updated {key} from revision {m} but completed at "
                        f"revision {done_at}", [op.id], {"key": key, "revision": m}))
        detail = {"informers": len(caches), "cache_checks": checks, "updates": len(updates)}
        return CheckResult(self.name, not anomalies, anomalies, time.perf_counter() - t0, None, detail)

    def summary_lines(self, result: Any, op_text: Any) -> list[str]:
        head = (f"    {result.get('informers', 0)} informers, {result.get('cache_checks', 0)} cache checks, "
                f"{result.get('updates', 0)} conditional updates")
        return [head, *super().summary_lines(result, op_text)]
