"""The lock checker: did two lock holders act on the protected resource at once?

Why: a lock is for mutual exclusion of what its holders do. Holders' beliefs may overlap
without harm (a holder whose lease expired while it was paused still believes it holds, but
a fenced resource refuses its writes); what must never overlap is the resource's effects.
Jepsen found etcd 3.4's lock recipe breaks this when a client pauses past its lease TTL.

How (black-box: the history only; format in README "Lock histories"):
- a holder is an ``acquire`` that completed ``ok`` (its ``lease`` and ``lock_revision``, the
  create revision of its lock key, i.e. its fencing token); it believes it holds from that
  completion to the invocation of its ``release`` (same lease), or to the end of the
  history if it never released;
- a resource effect is a ``write`` that completed ``ok``, with the ``revision`` the store
  gave it (one total order of effects); it belongs to the holder with its ``lease`` whose
  acquire completed last before the write was invoked. ``fail`` writes (e.g. refused by the
  fence: ``compare-failed``) had no effect; ``info`` writes are counted as unknown and never
  used as evidence;
- ``lock:mutual-exclusion``: two holders whose effects interleave, i.e. the revision ranges
  [first, last] of their ok writes intersect (one holder wrote, the other wrote, the first
  wrote again); or, without trusting the revisions, in real time: one holder's ok write
  completed before the other's was invoked, and that one completed before the first
  holder's later ok write was invoked (``evidence: real-time``). The anomaly names both
  holders (process, lease, lock revision), their belief intervals (times and op indices)
  and the writes that interleaved.
Also counted (not anomalies): pairs of holders whose belief intervals overlap in time, and
writes the fence refused. Malformed lock ops (an acquire or write without an integer
``lease``, an ok acquire without ``lock_revision``, an ok write without ``revision``, a
write by a lease that holds no lock, or after its release) raise ``HistoryError`` (exit 65
naming the file and line). The pair searches run under the check's time and memory bounds
(kvcheck.checker.bounds): past either the verdict is ``unknown`` with the cause.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvcheck.checker.api import UNKNOWN, Anomaly, CheckerBase, CheckOptions, CheckResult
from kvcheck.checker.bounds import Bounds, OutOfBounds, default_memory_limit_mb
from kvcheck.checker.history import Call, HistoryError, Op, pair_calls

LOCK_FS = ("acquire", "release", "write")
MAX_LISTED = 20  # belief overlaps listed in the detail


@dataclass
class _Write:
    call: Call
    revision: int


@dataclass
class _Holder:
    lease: int
    process: Any
    lock_revision: int
    acquire: Call
    release: Call | None = None
    writes: list[_Write] = field(default_factory=list)
    refused: int = 0
    unknown: int = 0

    @property
    def start(self) -> float:
        """The place of the acquire's ok completion in the history."""
        return self.acquire.end

    @property
    def end(self) -> float:
        """The place of the release's invocation (infinity: never released)."""
        return self.release.start if self.release is not None else float("inf")

    def interval(self) -> dict[str, Any]:
        done = self.acquire.completion
        assert done is not None
        out: dict[str, Any] = {"from": {"time": _seconds(done.time), "op": done.id}}
        if self.release is not None:
            out["to"] = {"time": _seconds(self.release.invoke.time), "op": self.release.invoke.id}
        else:
            out["to"] = None  # never released: to the end of the history
        return out

    def to_json(self) -> dict[str, Any]:
        return {"lease": self.lease, "lease_hex": f"{self.lease:x}", "process": self.process,
                "lock_revision": self.lock_revision, "acquire_op": self.acquire.id, **self.interval(),
                "writes": [{"op": w.call.id, "revision": w.revision, "value": w.call.value,
                            "time": _seconds(w.call.invoke.time)} for w in self.writes]}

    def label(self) -> str:
        i = self.interval()
        end = (f"{_t(i['to']['time'])} (op {i['to']['op']})" if i["to"] is not None else "the end")
        return (f"lease {self.lease:x} (process {self.process}, lock revision {self.lock_revision}, "
                f"holds from {_t(i['from']['time'])} (op {i['from']['op']}) to {end})")


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e9, 6)


def _t(s: float | None) -> str:
    return "?" if s is None else f"{s:.3f}s"


def _int_field(op: Op, name: str) -> int:
    v = op.extra.get(name)
    if not isinstance(v, int) or isinstance(v, bool):
        raise HistoryError(f"op {op.id}: a lock {op.f} {op.type} needs an integer {name!r} field, "
                           f"found {v!r}", op)
    return v


class LockChecker(CheckerBase):
    name = "lock"
    description = "mutual exclusion: two lock holders' writes to the protected resource never interleave"
    max_shown = 3  # anomalies drawn on the terminal (each is several lines)

    def reads(self, op: Op) -> bool:
        return not op.is_nemesis and (op.f in LOCK_FS or str(op.f).startswith("lease-"))

    def check(self, ops: Sequence[Op], options: CheckOptions) -> CheckResult:
        t0 = time.perf_counter()
        bounds = Bounds(options.timeout, options.memory_limit_mb or default_memory_limit_mb(),
                        memory_every=4096)
        try:
            return self._check(ops, options, bounds, t0)
        except OutOfBounds as exc:
            return CheckResult(self.name, UNKNOWN, [], time.perf_counter() - t0, exc.cause)

    def _check(self, ops: Sequence[Op], options: CheckOptions, bounds: Bounds, t0: float) -> CheckResult:
        holders: list[_Holder] = []
        by_lease: dict[int, list[_Holder]] = {}
        writes = refused = unknown = 0
        for call in pair_calls(ops):
            if call.f not in LOCK_FS:
                continue
            inv, done = call.invoke, call.completion
            lease = _int_field(inv, "lease")
            if call.f == "acquire":
                if done is not None and done.type == "ok":
                    h = _Holder(lease, inv.process, _int_field(done, "lock_revision"), call)
                    holders.append(h)
                    by_lease.setdefault(lease, []).append(h)
                continue
            holder = self._holder_of(by_lease.get(lease, []), call)
            if call.f == "release":
                if holder is not None and holder.release is None:
                    holder.release = call
                continue
            # a write to the protected resource
            if holder is None:
                raise HistoryError(f"op {inv.id}: a write by lease {lease:x}, which holds no lock "
                                   f"(no ok acquire of that lease completed before it)", inv)
            if holder.release is not None:
                raise HistoryError(f"op {inv.id}: a write by lease {lease:x} after its release "
                                   f"(op {holder.release.id})", inv)
            if done is None or done.type == "info":
                holder.unknown += 1
                unknown += 1
            elif done.type == "fail":
                holder.refused += 1
                refused += 1
            else:
                holder.writes.append(_Write(call, _int_field(done, "revision")))
                writes += 1

        anomalies: list[Anomaly] = []
        reported: list[tuple[_Holder, _Holder]] = []
        # pairs of holders whose revision ranges of effects intersect, by a sweep over ranges
        ranged = sorted((h for h in holders if h.writes),
                        key=lambda h: (min(w.revision for w in h.writes), h.start))
        active: list[tuple[int, _Holder]] = []  # (last revision, holder) of ranges still open
        for h in ranged:
            lo = min(w.revision for w in h.writes)
            hi = max(w.revision for w in h.writes)
            active = [(end, a) for end, a in active if end >= lo]
            for _, a in active:
                bounds.check()
                anomalies.append(self._violation(a, h))
                reported.append((a, h))
            active.append((hi, h))

        overlaps, pairs = self._belief_overlaps(holders, bounds)
        # Real time, without trusting the store's revisions: one holder's ok write completed
        # before the other's was invoked, which completed before the first holder's next
        # write was invoked. Writes lie inside their holder's belief interval, so only pairs
        # whose beliefs overlap can interleave this way.
        found = {frozenset((id(x), id(y))) for x, y in reported}
        for o, h in pairs:
            bounds.check()
            if frozenset((id(o), id(h))) in found:
                continue
            for a, b in ((o, h), (h, o)):
                rt = self._real_time_interleaving(a, b)
                if rt is not None:
                    anomalies.append(rt)
                    break
        detail = {"holders": len(holders), "writes_ok": writes, "writes_refused": refused,
                  "writes_unknown": unknown, "belief_overlaps": len(pairs),
                  "belief_overlap_pairs": overlaps,
                  "fenced": bool(options.extra.get("lock_fenced", False))}
        return CheckResult(self.name, not anomalies, anomalies, time.perf_counter() - t0, detail=detail)

    @staticmethod
    def _holder_of(candidates: list[_Holder], call: Call) -> _Holder | None:
        """The holder of this lease whose acquire completed last before ``call`` was invoked."""
        found = None
        for h in candidates:
            if h.start < call.start:
                found = h
        return found

    @staticmethod
    def _violation(a: _Holder, b: _Holder) -> Anomaly:
        """``a``'s effects began first; ``b``'s began before ``a``'s last one."""
        a_hi = max(w.revision for w in a.writes)
        b_lo, b_hi = min(w.revision for w in b.writes), max(w.revision for w in b.writes)
        lo, hi = b_lo, min(a_hi, b_hi)  # where both ranges meet
        both = sorted(a.writes + b.writes, key=lambda w: w.revision)
        inside = [i for i, w in enumerate(both) if lo <= w.revision <= hi]
        # the writes where the ranges meet, with one write of context on each side
        span = both[max(0, inside[0] - 1): inside[-1] + 2]
        owner = {id(w): a for w in a.writes} | {id(w): b for w in b.writes}
        steps = ", ".join(f"{owner[id(w)].lease:x} wrote {w.call.value!r} at revision {w.revision} (op {w.call.id})"
                          for w in span)
        text = (f"two holders changed the protected resource at once: {a.label()} and {b.label()}; "
                f"their writes interleave: {steps}")
        ids = [a.acquire.id, b.acquire.id] + [w.call.id for w in span]
        detail = {"holders": [a.to_json(), b.to_json()],
                  "interleaved": [{"op": w.call.id, "lease": owner[id(w)].lease, "revision": w.revision,
                                   "value": w.call.value, "time": _seconds(w.call.invoke.time)}
                                  for w in span]}
        return Anomaly("lock:mutual-exclusion", text, list(dict.fromkeys(ids)), detail)

    @staticmethod
    def _real_time_interleaving(a: _Holder, b: _Holder) -> Anomaly | None:
        """An ok write of ``b`` invoked after an ok write of ``a`` completed and completed
        before a later ok write of ``a`` was invoked (positions in the history)."""
        if not a.writes or not b.writes:
            return None
        first = min(a.writes, key=lambda w: w.call.end)
        last = max(a.writes, key=lambda w: w.call.start)
        for w in sorted(b.writes, key=lambda w: w.call.start):
            if first.call.end < w.call.start and w.call.end < last.call.start:
                span = [first, w, last]
                text = (f"two holders changed the protected resource at once: {a.label()} and {b.label()}; "
                        f"in real time {a.lease:x}'s write (op {first.call.id}) completed, then {b.lease:x}'s "
                        f"write (op {w.call.id}) ran, then {a.lease:x} wrote again (op {last.call.id})")
                owner = {id(first): a, id(w): b, id(last): a}
                detail = {"holders": [a.to_json(), b.to_json()], "evidence": "real-time",
                          "interleaved": [{"op": x.call.id, "lease": owner[id(x)].lease, "revision": x.revision,
                                           "value": x.call.value, "time": _seconds(x.call.invoke.time)}
                                          for x in span]}
                ids = [a.acquire.id, b.acquire.id] + [x.call.id for x in span]
                return Anomaly("lock:mutual-exclusion", text, list(dict.fromkeys(ids)), detail)
        return None

    @staticmethod
    def _belief_overlaps(holders: list[_Holder], bounds: Bounds,
                         ) -> tuple[list[dict[str, Any]], list[tuple[_Holder, _Holder]]]:
        """Pairs of holders that both believed they held the lock at some moment (the first
        ``MAX_LISTED`` as JSON, and every pair's holders)."""
        out: list[dict[str, Any]] = []
        pairs: list[tuple[_Holder, _Holder]] = []
        ordered = sorted(holders, key=lambda h: h.start)
        open_: list[_Holder] = []
        for h in ordered:
            open_ = [o for o in open_ if o.end > h.start]
            for o in open_:
                bounds.check()
                pairs.append((o, h))
                if len(out) >= MAX_LISTED:
                    continue
                out.append({"first": {"lease": o.lease, "process": o.process, "acquire_op": o.acquire.id,
                                      "writes_refused": o.refused},
                            "second": {"lease": h.lease, "process": h.process, "acquire_op": h.acquire.id},
                            "from_op": h.acquire.completion.id if h.acquire.completion else None})
            open_.append(h)
        return out, pairs

    def summary_lines(self, result: Mapping[str, Any], op_text: Callable[[Any], str]) -> list[str]:
        lines = [f"    {result.get('holders', 0)} holders; resource writes: {result.get('writes_ok', 0)} ok, "
                 f"{result.get('writes_refused', 0)} refused"
                 f"{' by the fence' if result.get('fenced') else ''}, {result.get('writes_unknown', 0)} unknown; "
                 f"{result.get('belief_overlaps', 0)} pairs of holders believed they held at once"]
        for a in (result.get("anomalies") or [])[: self.max_shown]:
            lines.append(f"    {a.get('kind')}:")
            d = a.get("detail") or {}
            for h in d.get("holders") or []:
                to = h.get("to")
                end = f"{_t(to['time'])} (op {to['op']})" if to else "the end"
                lines.append(f"      holder lease {h['lease_hex']} process {h['process']} lock revision "
                             f"{h['lock_revision']}: holds from {_t(h['from']['time'])} (op {h['from']['op']}) "
                             f"to {end}")
            for w in d.get("interleaved") or []:
                lines.append(f"        {_t(w['time'])} lease {w['lease']:x} wrote {w['value']!r} at revision "
                             f"{w['revision']} (op {w['op']})")
        more = len(result.get("anomalies") or []) - self.max_shown
        if more > 0:
            lines.append(f"    … {more} more anomalies (results.json)")
        return lines
