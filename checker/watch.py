"""The watch checker: does every watch stream of a history keep etcd's watch guarantees?

Why: a store can answer every read linearizably and still have watches that skip, repeat,
reorder or invent events, resume from the wrong revision or claim progress they have not
made. Clients such as Kubernetes' informers build their caches from watches, so these are
correctness bugs. The checker is black-box: it reads the history only (the format is in the
README, "Watch histories"), never a server log.

How, in two steps.
1. The committed order of writes is reconstructed from the history itself. Each ``ok``
   write (put, delete, txn, cas) sits at the ``revision`` its response reported; an ``info``
   write is placed where a watch event or a read shows one of its unique values (or, for a
   delete, a DELETE event of its key that no other write explains); a revision no
   observation explains is given to an unplaced info write invoked in time, as a guess whose
   keys are then "uncertain". Every revision from 2 to the final read's must be explained by
   exactly one write, and replaying the writes from an empty store (revision 1) must give
   the final read. Failures are anomalies of their own: ``watch:revision-gap``,
   ``watch:duplicate-revision``, ``watch:final-state``, ``watch:replay``.
2. Each stream (one process: its request, one line per response, its end) is checked against
   the replay, each guarantee on its own, named as etcd's API guarantees name them:
   ``watch:filter``, ``watch:ordered``, ``watch:unique``, ``watch:atomic``,
   ``watch:resumable``, ``watch:reliable`` (missing events, and phantoms: events no write
   made), ``watch:bookmarkable``, ``watch:is-create``, ``watch:prev-kv``,
   ``watch:delete-revision``, ``watch:compaction`` and (with the ``created_linearizable``
   option) ``watch:created``.
Work is linear in the number of events plus the revisions each stream's window covers; the
check is bounded by ``options.timeout`` (``unknown`` with the cause when it is hit).
"""

from __future__ import annotations

import bisect
import gc
import html
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvcheck.checker.api import UNKNOWN, Anomaly, CheckerBase, CheckOptions, CheckResult, op_links
from kvcheck.checker.history import Call, Op, pair_calls

WRITE_FS = ("put", "delete", "delete-range", "txn", "cas", "lease-revoke")
READ_FS = ("read", "range")
_COMPARE_RESULTS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b), "!=": lambda a, b: bool(a != b),
    ">": lambda a, b: bool(a > b), "<": lambda a, b: bool(a < b),
}
PER_STREAM_KIND_LIMIT = 3  # anomalies of one kind listed per stream (the rest are counted)


class _OutOfTime(Exception):
    pass


_NO_INDEX: dict[str, Any] = {}


@dataclass(slots=True)
class Effect:
    """One key change a write asks for. ``maybe``: a delete whose count is unknown (an info
    write): it changes the key only if the key is present. ``revoke`` (value: the lease id)
    deletes every key attached to the lease, in key order; ``expire`` deletes the keys of the
    lease ``key`` is attached to (a lease expiry a watch event showed); ``unseen`` is a
    server-side delete nobody saw (every leased key becomes uncertain); its ``leased`` are the
    (key, lease) pairs its candidate puts would attach (a later revoke or expiry of that lease
    may then have deleted the key)."""

    type: str  # put | delete | revoke | expire | unseen
    key: str
    value: Any
    maybe: bool = False
    lease: int = 0  # a put's lease
    leased: tuple[tuple[str, int], ...] = ()  # unseen: (key, lease) its candidate puts attach


@dataclass(slots=True)
class Write:
    call: Call | None  # None: the server's own write (a lease expiry)
    effects: list[Effect]
    ok: bool
    revision: int | None = None
    how: str = ""  # for info writes: how the revision was found (event, read, guess)
    op: int = -1  # the op that shows a server write

    @property
    def id(self) -> int:
        return self.call.id if self.call is not None else self.op


@dataclass(slots=True)
class Change:
    """What the replay says revision ``mod`` did to ``key``."""

    type: str
    key: str
    value: Any
    create: int
    mod: int
    version: int
    prev: tuple[Any, int, int, int] | None  # (value, create, mod, version) just before
    op: int
    certain: bool


@dataclass
class Stream:
    process: Any
    invoke: Op
    request: dict[str, Any]
    lines: list[Op] = field(default_factory=list)


def _effects(op: Op, ok: bool) -> list[Effect]:
    """The key changes of a write call from its completion (ok) or invocation (info)."""
    f, v = op.f, op.value
    if f == "put":
        lease = op.extra.get("lease")
        return [Effect("put", str(op.key), v, lease=lease if isinstance(lease, int) else 0)]
    if f == "lease-revoke":
        return [Effect("revoke", "", v)]
    if f == "cas":
        return [Effect("put", str(op.key), v[1] if isinstance(v, list | tuple) and len(v) == 2 else None)]
    if f == "delete":
        deleted = op.extra.get("deleted") if ok else None
        if deleted == 0:
            return []
        return [Effect("delete", str(op.key), None, maybe=deleted is None)]
    if f == "delete-range" and isinstance(v, dict):
        # ok: the keys its response says it deleted (prev_kvs); info: any key of the range
        deleted_keys = op.extra.get("deleted_keys") if ok else None
        if isinstance(deleted_keys, list):
            return [Effect("delete", str(k), None) for k in deleted_keys]
        return [Effect("delete", str(k), None, maybe=True) for k in v.get("keys") or ()]
    if f == "txn" and isinstance(v, list):
        out = []
        for m in v:
            if not isinstance(m, list | tuple) or len(m) != 3:
                continue
            if m[0] == "put":
                out.append(Effect("put", str(m[1]), m[2]))
            elif m[0] == "delete":
                count = m[2] if ok else None
                if count == 0:
                    continue
                out.append(Effect("delete", str(m[1]), None, maybe=not isinstance(count, int)))
        return out
    return []


class WatchChecker(CheckerBase):
    """See the module docstring."""

    name = "watch"
    description = "watch streams against the committed order of writes (etcd's watch guarantees)"

    def reads(self, op: Op) -> bool:
        return not op.is_nemesis and op.f in (*WRITE_FS, *READ_FS, "watch", "compact")

    def check(self, ops: Sequence[Op], options: CheckOptions) -> CheckResult:
        t0 = time.perf_counter()
        deadline = None if options.timeout is None else t0 + options.timeout
        run = _Run(ops, options, deadline)
        gc_was_enabled = gc.isenabled()
        gc.disable()  # many small acyclic objects: no cyclic GC passes while checking
        try:
            run.reconstruct()
            run.check_streams()
        except _OutOfTime:
            return CheckResult(self.name, UNKNOWN, run.anomalies, time.perf_counter() - t0,
                               f"the watch check did not finish within {options.timeout} s",
                               run.detail())
        finally:
            if gc_was_enabled:
                gc.enable()
        valid = not run.anomalies
        return CheckResult(self.name, valid, run.anomalies, time.perf_counter() - t0, None, run.detail())

    def summary_lines(self, result: Mapping[str, Any], op_text: Callable[[Any], str]) -> list[str]:
        lines = super().summary_lines(result, op_text)
        d = result.get("streams")
        if d is not None:
            lines.insert(0, f"    {d} streams, {result.get('events', 0)} events, revisions 2..{result.get('final_revision')}, "
                            f"{len(result.get('placements') or [])} info writes placed")
        return lines

    def html_section(self, result: Mapping[str, Any], ops: Sequence[Op]) -> str:
        """The anomaly table, the watch streams drawn as rows (each event a tick at its
        revision, the revisions an anomaly names in red, progress notifications as grey
        ticks) and where each info write was placed."""
        base = super().html_section(result, ops)
        parts = [base, _streams_svg(result, ops)]
        placements = result.get("placements") or []
        if placements:
            rows = "".join(f"<tr><td>{op_links([p['op']])}</td><td>{html.escape(str(p.get('revision')))}</td>"
                           f"<td>{html.escape(str(p.get('how')))}</td></tr>" for p in placements[:200])
            parts.append("<h4>Where each info write was placed</h4><table class=\"anomalies\"><thead><tr>"
                         f"<th>op</th><th>revision</th><th>how</th></tr></thead><tbody>{rows}</tbody></table>")
        return "".join(parts)


def _streams_svg(result: Mapping[str, Any], ops: Sequence[Op], max_ticks: int = 20_000) -> str:
    """One row per watch stream over revisions 1..final: events as ticks, progress in grey,
    anomalous revisions in red; a row's label and each red mark are the report's op links
    (a click shows the stream's request or the anomaly's first op on the timeline)."""
    final = int(result.get("final_revision") or 1)
    streams: dict[Any, dict[str, Any]] = {}
    for op in ops:
        if op.f != "watch" or op.is_nemesis:
            continue
        if op.type == "invoke":
            streams[op.process] = {"req": op.value if isinstance(op.value, dict) else {}, "ev": [], "pr": [],
                                   "op": op.id}
            continue
        st = streams.get(op.process)
        v = op.value if isinstance(op.value, dict) else {}
        if st is None or "end" in v or v.get("progress_request"):
            continue
        evs = v.get("events") or []
        if evs:
            st["ev"].extend((int(e.get("mod_revision") or 0), op.id) for e in evs)
        elif not v.get("created") and not v.get("canceled"):
            st["pr"].append((int(v.get("revision") or 0), op.id))
    if not streams:
        return ""
    final = max([final] + [r for st in streams.values() for r, _ in st["ev"] + st["pr"]])
    bad: dict[Any, list[tuple[int, int]]] = {}
    for a in result.get("anomalies") or []:
        d = a.get("detail") or {}
        if "stream" not in d:
            continue
        revs = d.get("revisions") or ([d["revision"]] if "revision" in d else [])
        first = (a.get("ops") or [0])[0]
        bad.setdefault(d["stream"], []).extend((int(r), int(first)) for r in revs[:20])
    left, width, row = 230, 760, 16
    height = row * len(streams) + 24

    def x(rev: int) -> float:
        return left + width * (rev - 1) / max(1, final - 1)

    out = [f'<h4>Watch streams (revisions 1..{final})</h4><svg xmlns="http://www.w3.org/2000/svg" '
           f'width="{left + width + 10}" height="{height}" font-family="monospace" font-size="10">']
    ticks = 0
    for i, (proc, st) in enumerate(streams.items()):
        y = 12 + i * row
        req = st["req"]
        label = f"p{proc} {req.get('key', '')}{'..' + str(req.get('range_end')) if req.get('range_end') else ''}"
        label += f" from {req.get('start_revision')}" if req.get("start_revision") else " now"
        out.append(f'<a class="op-ref" href="#timeline-section" data-op="{st["op"]}"><text x="2" y="{y + 4}">{html.escape(label[:36])}</text></a>'
                   f'<line x1="{left}" x2="{left + width}" y1="{y}" y2="{y}" stroke="#ddd"/>')
        for rev, _ in st["pr"]:
            out.append(f'<line x1="{x(rev):.1f}" x2="{x(rev):.1f}" y1="{y - 6}" y2="{y + 6}" stroke="#aaa"/>')
        for rev, _ in st["ev"]:
            ticks += 1
            if ticks > max_ticks:
                break
            out.append(f'<line x1="{x(rev):.1f}" x2="{x(rev):.1f}" y1="{y - 4}" y2="{y + 4}" stroke="#36c"/>')
        for rev, op_id in bad.get(proc, []):
            out.append(f'<a class="op-ref" href="#timeline-section" data-op="{op_id}"><circle cx="{x(rev):.1f}" cy="{y}" r="4" fill="#d22">'
                       f'<title>revision {rev}</title></circle></a>')
    out.append("</svg>")
    return "".join(out)


class _Run:
    def __init__(self, ops: Sequence[Op], options: CheckOptions, deadline: float | None) -> None:
        self.ops = ops
        self.options = options
        self.deadline = deadline
        self.anomalies: list[Anomaly] = []
        self.writes: list[Write] = []
        self.at: dict[int, Write] = {}  # revision -> the write that made it
        self.changes: dict[int, list[Change]] = {}  # revision -> its changes, in op order
        self.index: dict[int, dict[str, tuple[int, Change]]] = {}  # revision -> key -> (position, change)
        self.final_revision = 1
        self.final_op: Op | None = None
        self.streams: list[Stream] = []
        self.compactions: set[int] = set()
        self.max_compaction = 0
        self.ok_write_done: list[tuple[int, int]] = []  # (completion position, revision)
        self.events = 0
        self.counts: dict[str, int] = {}
        self.uncertain_revisions: set[int] = set()
        self.leases = any(op.f == "lease-grant" for op in ops)
        self.expiries: list[Write] = []  # server writes: lease expiries a watch event showed
        # revision -> the leases of timed-out revokes that may have made it instead of an expiry
        self.maybe_revoked: dict[int, set[int]] = {}
        self.attached_at: dict[int, dict[str, int]] = {}  # revision -> key -> lease, after it (leased keys only)
        self.deleted_leases: dict[int, int] = {}  # revision -> the lease an expiry/revoke deleted
        self._key_revs: dict[str, list[int]] = {}  # key -> the revisions that changed it (built lazily)
        self._key_changes: dict[str, list[Change]] = {}  # key -> those changes
        self._indexed = False
        self.compares_checked = 0  # txns whose compare outcome was judged against the replay

    def _tick(self) -> None:
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise _OutOfTime()

    def add(self, kind: str, explanation: str, ops: list[int], **detail: Any) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.anomalies.append(Anomaly(kind, explanation, ops, detail))

    def detail(self) -> dict[str, Any]:
        return {"streams": len(self.streams), "events": self.events, "final_revision": self.final_revision,
                "final_read": self.final_op.id if self.final_op is not None else None,
                "anomaly_counts": dict(sorted(self.counts.items())),
                "placements": [{"op": w.id, "revision": w.revision, "how": w.how}
                               for w in self.writes if not w.ok]
                              + [{"op": w.id, "revision": w.revision, "how": w.how} for w in self.expiries],
                "uncertain_revisions": sorted(self.uncertain_revisions)[:100],
                "compares_checked": self.compares_checked}

    # -- 1. the committed order of writes ------------------------------------------------

    def reconstruct(self) -> None:
        ops = self.ops
        max_seen = 1
        for call in pair_calls(ops):
            if call.f not in WRITE_FS or call.outcome == "fail":
                continue
            done = call.completion
            ok = call.outcome == "ok"
            assert call.invoke is not None
            w = Write(call, _effects(done if ok and done is not None else call.invoke, ok), ok)
            if not w.effects:
                continue  # changed nothing: made no revision
            if ok and done is not None:
                answered = done.extra.get("revision")
                if not isinstance(answered, int):
                    self.add("watch:revision-missing", f"ok write op {done.id} has no revision field",
                             [done.id])
                    continue
                w.revision = answered
                self.ok_write_done.append((done.position, answered))
                max_seen = max(max_seen, answered)
            self.writes.append(w)
        self.ok_write_done.sort()
        empty_revokes: list[Write] = []
        for w in self.writes:
            if not w.ok:
                continue
            assert w.revision is not None
            other = self.at.get(w.revision)
            only_revoke = [x for x in (other, w) if x is not None and all(e.type == "revoke" for e in x.effects)]
            if other is not None and len(only_revoke) == 1:
                # a revoke of a lease that held no key deletes nothing and answers the current
                # revision (etcd: no new revision), which the other write made (lease swarm
                # seed 2, a lessor whose puts with the lease had all timed out unapplied): it
                # made no revision. Had it deleted keys, their events at the other write's
                # revision would be phantoms the replay does not explain (watch:reliable).
                empty_revokes.append(only_revoke[0])
                self.at[w.revision] = other if only_revoke[0] is w else w
                continue
            if other is not None:
                self.add("watch:duplicate-revision",
                         f"ops {other.id} and {w.id} both completed at revision {w.revision}",
                         [other.id, w.id], revision=w.revision)
                continue
            self.at[w.revision] = w
        self.writes = [w for w in self.writes if not any(w is r for r in empty_revokes)]

        # What events and reads show: the revisions of info writes' values, and what is seen
        # at revisions no ok write explains (only those are kept: a valid history with no
        # info writes keeps nothing here).
        info_values = {e.value for w in self.writes if not w.ok for e in w.effects if e.type == "put"}
        claimed = self.at
        stream_of: dict[Any, Stream] = {}
        observed: dict[Any, set[int]] = {}  # info put value -> revisions it was seen at
        observed_at: dict[int, dict[str, tuple[str, Any, int, int]]] = {}  # rev -> key -> (type, value, op, pos)
        deleted_lease: dict[tuple[int, str], int] = {}  # (rev, key) of a DELETE event -> its prev_kv's lease
        # rev -> its keys in the order one response delivered them (the response showing most)
        seen_order: dict[int, list[str]] = {}
        events = 0
        for op in ops:
            if op.is_nemesis:
                continue
            if op.f == "watch":
                if op.type == "invoke":
                    req = op.value if isinstance(op.value, dict) else {}
                    s = Stream(op.process, op, req)
                    stream_of[op.process] = s
                    self.streams.append(s)
                elif op.process in stream_of:
                    stream_of[op.process].lines.append(op)
                    v = op.value if isinstance(op.value, dict) else {}
                    evs = v.get("events")
                    if not evs:
                        continue
                    events += len(evs)
                    in_resp: dict[int, list[str]] = {}
                    for ev in evs:
                        rev = ev.get("mod_revision")
                        if type(rev) is not int:
                            rev = int(rev or 0)
                        if rev > max_seen:
                            max_seen = rev
                        if info_values:  # a prev_kv shows an earlier version's value and revision too
                            p = ev.get("prev_kv")
                            if isinstance(p, dict) and p.get("value") in info_values and isinstance(
                                    p.get("mod_revision"), int) and p["mod_revision"] not in claimed:
                                observed.setdefault(p["value"], set()).add(p["mod_revision"])
                        if rev in claimed:
                            continue
                        typ = ev.get("type")
                        observed_at.setdefault(rev, {}).setdefault(str(ev.get("key")),
                                                                  (typ, ev.get("value"), op.id, op.position))
                        in_resp.setdefault(rev, []).append(str(ev.get("key")))
                        p = ev.get("prev_kv")
                        if typ == "delete" and isinstance(p, dict) and isinstance(p.get("lease"), int):
                            deleted_lease.setdefault((rev, str(ev.get("key"))), p["lease"])
                        if typ == "put" and ev.get("value") in info_values:
                            observed.setdefault(ev.get("value"), set()).add(rev)
                    for rev, keys in in_resp.items():
                        if len(keys) > len(seen_order.get(rev, ())):
                            seen_order[rev] = keys
            elif op.f in READ_FS and op.type == "ok":
                kvs = op.extra.get("kvs") if op.f == "range" else [op.extra.get("kv")]
                for kv in kvs or ():
                    if isinstance(kv, dict) and kv.get("mod_revision"):
                        rev = int(kv["mod_revision"])
                        if rev in claimed:
                            continue
                        if kv.get("value") in info_values:
                            observed.setdefault(kv.get("value"), set()).add(rev)
                        observed_at.setdefault(rev, {}).setdefault(str(kv.get("key")),
                                                                  ("put", kv.get("value"), op.id, op.position))
                if (op.f == "range" and isinstance(op.extra.get("revision"), int)
                        and not isinstance(op.extra.get("read_revision"), int)
                        and not isinstance(op.extra.get("range"), dict)):
                    self.final_op = op  # the last ok range read (of the current state) is the final read
            elif op.f == "compact" and op.type in ("ok", "info") and isinstance(op.value, int):
                self.compactions.add(op.value)
        self.events = events
        if self.final_op is not None:
            self.final_revision = int(self.final_op.extra["revision"])
        else:
            self.final_revision = max_seen
        # a compaction beyond every revision the store reached was refused (future revision),
        # whatever its answer: it compacted nothing
        self.max_compaction = max((c for c in self.compactions if c <= self.final_revision), default=0)

        # info writes: placed by the revision an event or a read shows one of their values
        unplaced: list[Write] = []
        for w in self.writes:
            if w.ok:
                continue
            revs = set().union(*(observed.get(e.value, set()) for e in w.effects if e.type == "put"))
            placed = False
            for rev in sorted(revs):
                if rev not in self.at:
                    w.revision, w.how = rev, "a watch event or read shows its value at this revision"
                    self.at[rev] = w
                    placed = True
                    break
            if not placed:
                unplaced.append(w)
        ambiguous: dict[int, list[int]] = {}  # info write id -> revisions it may have made
        # a DELETE seen at a revision no write explains: an info delete of that key (or an
        # info revoke), else, in a history with leases, the lease expiry of that key
        for rev in sorted(observed_at):
            if rev in self.at or rev < 2:
                continue
            seen = observed_at[rev]
            if not all(v[0] == "delete" for v in seen.values()):
                continue
            first = min(v[3] for v in seen.values())
            first_id = min(seen.values(), key=lambda v: v[3])[2]

            def revoke_fits(w: Write, rev: int = rev, seen: dict[str, Any] = seen) -> bool:
                # a revoke deletes only its lease's keys: not one whose prev_kv names another
                # lease (clean lease swarm seed 52: the delete of a key on lease 9 was given to
                # a timed-out revoke of lease 7, and the replay then called the event a phantom)
                leases = {e.value for e in w.effects if e.type == "revoke"}
                return bool(leases) and all(deleted_lease.get((rev, k), next(iter(leases))) in leases for k in seen)

            cands = [w for w in unplaced if w.call is not None and w.call.invoke.position < first and (
                set(seen) <= {e.key for e in w.effects if e.type == "delete"} or revoke_fits(w))]
            if cands:
                sigs = {frozenset((e.type, e.key) for e in c.effects) for c in cands}
                revokes = {e.value for c in cands for e in c.effects if e.type == "revoke"}
                only_revokes = all(any(e.type == "revoke" for e in c.effects) for c in cands)
                if only_revokes and not all(deleted_lease.get((rev, k)) in revokes for k in seen):
                    # No prev_kv names the deleted keys' lease: a lease expiry deletes the keys
                    # of one lease at a revision of its own just as a revoke does (clean lease
                    # swarm seed 106: lease 1's expiry at 74, seen without prev_kv, was given to
                    # a timed-out revoke of lease 2, and the replay deleted lease 2's keys and
                    # called the events phantoms). The expiry of the seen key's lease has the
                    # revoke's effect if the revoke made it, so the revision is replayed as that;
                    # the revoke stays unplaced (it may have made another revision, or none).
                    key = min(seen)
                    w = Write(None, [Effect("expire", key, None)], True, rev,
                              f"a lease expiry or one of {len(cands)} timed-out writes (ops "
                              f"{', '.join(str(c.id) for c in cands[:5])}): a watch event shows the "
                              "delete, no prev_kv its lease", seen[key][2])
                    self.at[rev] = w
                    self.expiries.append(w)
                    self.maybe_revoked[rev] = revokes
                elif len(sigs) == 1:  # every candidate changes the same keys the same way
                    # but a txn's deletes happen (and are delivered) in its own order: take a
                    # candidate whose order is the one the events show (clean watch swarm seed
                    # 1004: revision 392 deleted w/k1 then w/k0, as timed-out txns [delete
                    # w/k1, delete w/k0] did; the first candidate, [delete w/k0, delete w/k1],
                    # made every stream that saw both out of order)
                    # Of equal candidates take the one invoked last: one invoked earlier may be
                    # the only one that fits a revision nobody saw (a gap takes only an info
                    # write invoked before a later revision completed; test_watch_workload's
                    # seed 6 with every fault and 30% of its writes made info, once the watch
                    # workload also ran ranges and guarded txns: revision 335, an unseen delete
                    # of w/k3, was left with no candidate when the first-invoked equal delete
                    # went to a seen one)
                    order = seen_order.get(rev, [])
                    w = next((c for c in reversed(cands)
                              if [e.key for e in c.effects if e.key in order] == order), cands[-1])
                    w.revision, w.how = rev, "a watch event shows a delete of its key at this revision"
                    self.at[rev] = w
                    unplaced.remove(w)
                else:  # which of them it was is unknown: every key they touch is uncertain here
                    # a revoke candidate may have deleted any leased key, not only those seen
                    self.at[rev] = Write(None, [Effect("unseen", "", sorted(
                        {e.key for c in cands for e in c.effects if e.key}), lease=int(any(
                            e.type == "revoke" for c in cands for e in c.effects)))], True, rev,
                        f"one of {len(cands)} info writes that fit the delete a watch event shows", first_id)
                    self.uncertain_revisions.add(rev)
                    for c in cands:
                        ambiguous.setdefault(c.id, []).append(rev)
            else:
                if self.leases:
                    key = min(seen)
                    w = Write(None, [Effect("expire", key, None)], True, rev,
                              "a lease expiry: a watch event shows the delete and no client write made it",
                              seen[key][2])
                    self.at[rev] = w
                    self.expiries.append(w)
        # The replay reaches every revision a client write was acknowledged at or placed by its
        # value, even past the final read's: a final read that failed (a timeout on a real
        # cluster) leaves an earlier range as the last read, and the writes after it happened
        # all the same (their events are not phantoms). The final read is compared with the
        # replay at its own revision.
        self.final_revision = max(self.final_revision,
                                  max((w.revision for w in self.writes if w.revision is not None), default=1))
        # revisions nobody saw: an unplaced info write invoked before any later revision completed
        gaps = [r for r in range(2, self.final_revision + 1) if r not in self.at]
        by_rev = sorted((r, p) for p, r in self.ok_write_done)
        done_revs = [r for r, _ in by_rev]
        suffix_min = [p for _, p in by_rev]
        for i in range(len(suffix_min) - 2, -1, -1):
            suffix_min[i] = min(suffix_min[i], suffix_min[i + 1])
        maybe = ambiguous  # info write id -> revisions it may have made
        for rev in gaps:
            self._tick()
            j = bisect.bisect_right(done_revs, rev)
            bound = suffix_min[j] if j < len(suffix_min) else None
            cands = [w for w in unplaced if w.call is not None and (
                bound is None or w.call.invoke.position < bound)]
            if rev in observed_at or not (cands or self.leases):
                shown = observed_at.get(rev) or {}
                self.add("watch:revision-gap",
                         f"revision {rev} is explained by no write" +
                         (f" (op {next(iter(shown.values()))[2]} shows an event there)" if shown else ""),
                         [v[2] for v in shown.values()], revision=rev)
                continue
            # Nobody saw this revision: one of the info writes invoked in time made it (or, with
            # leases, an expiry). Which one is unknown, so every key any of them touches (and,
            # with leases, every leased key) is uncertain from here on.
            # A revoke candidate adds the leased keys ("unseen" with lease); it never removes
            # the keys of the other candidates: any of them may have made this revision (clean
            # lease swarm seed 105: ten unseen revisions, made by timed-out puts of l/w0..l/w2
            # with a timed-out revoke among the candidates, had left those keys certain, and
            # the replay's versions fell short of the store's).
            keys = sorted({e.key for w in cands for e in w.effects if e.key})
            leased = tuple(sorted({(e.key, e.lease) for w in cands for e in w.effects if e.type == "put" and e.lease}))
            self.at[rev] = Write(None, [Effect("unseen", "", keys, lease=int(self.leases or any(
                e.type == "revoke" for w in cands for e in w.effects)), leased=leased)], True, rev,
                "guessed: no event or read shows this revision; one of the info writes invoked "
                f"before it completed made it ({len(cands)} candidates)")
            self.uncertain_revisions.add(rev)
            if len(cands) == 1:
                (w,) = cands
                unplaced.remove(w)
                w.revision, w.how = rev, "guessed: the only info write that can have made this revision, which nobody saw"
                continue
            for w in cands:
                maybe.setdefault(w.id, []).append(rev)
        for w in unplaced:
            could = maybe.get(w.id)
            w.how = ("not placed: nothing shows it took effect" if not could else
                     f"not placed: it may have made one of the revisions {sorted(could)[:10]} (which one is unknown)")

        self._replay()
        self._check_reads()
        self._check_compares()
        self._check_delete_ranges()

    def _replay(self) -> None:
        state: dict[str, tuple[Any, int, int, int]] = {}  # key -> (value, create, mod, version)
        attached: dict[str, int] = {}  # key -> its lease
        # key -> leases an unseen write may have attached it to (its state is uncertain since)
        maybe_leases: dict[str, set[int]] = {}
        uncertain: set[str] = set()
        final = self.final_op
        read_rev = int(final.extra["revision"]) if final is not None else self.final_revision
        at_final_read: tuple[dict[str, tuple[Any, int, int, int]], set[str]] | None = None
        for rev in sorted(r for r in self.at if r <= self.final_revision):
            if rev > read_rev and at_final_read is None:
                at_final_read = (dict(state), set(uncertain))
            self._tick()
            w = self.at[rev]
            guessed = rev in self.uncertain_revisions
            out: list[Change] = []
            effects: list[Effect] = []
            for e in w.effects:  # lease revokes and expiries delete the lease's keys now
                if e.type in ("revoke", "expire"):
                    lease = e.value if e.type == "revoke" else attached.get(e.key, 0)
                    if lease:
                        self.deleted_leases[rev] = lease
                    keys = sorted(k for k, v in attached.items() if v == lease) if lease else [e.key]
                    effects.extend(Effect("delete", k, None, maybe=e.type == "revoke") for k in keys)
                    # a key an unseen put may have attached to this lease may be deleted now too
                    # (clean lease seed 12008: a timed-out put of l/s0a with lease 8 applied
                    # unseen; lease 8's revoke deleted it, and a watch showed that DELETE)
                    maybe_gone = sorted(k for k, ls in maybe_leases.items()
                                        if lease and lease in ls and k in uncertain and k not in keys)
                    out.extend(Change("unknown", k, None, 0, rev, 0, state.get(k), w.id, False)
                               for k in maybe_gone)
                elif e.type == "unseen":  # which of these keys it changed is unknown
                    unknown = sorted((set(attached) if e.lease else set()) | set(e.value or ()))
                    for k, lease in e.leased:
                        maybe_leases.setdefault(k, set()).add(lease)
                    uncertain.update(unknown)
                    out.extend(Change("unknown", k, None, 0, rev, 0, state.get(k), w.id, False)
                               for k in unknown)
                else:
                    effects.append(e)
            for e in effects:
                prev = state.get(e.key)
                if guessed:
                    uncertain.add(e.key)
                else:
                    maybe_leases.pop(e.key, None)  # attached (or not) for sure now
                if e.type == "put":
                    if e.lease:
                        attached[e.key] = e.lease
                    else:
                        attached.pop(e.key, None)
                    create, version = (rev, 1) if prev is None else (prev[1], prev[3] + 1)
                    state[e.key] = (e.value, create, rev, version)
                    out.append(Change("put", e.key, e.value, create, rev, version, prev, w.id,
                                      e.key not in uncertain))
                else:
                    if prev is None:
                        if e.key in uncertain:  # the key's state is unknown: so is this delete's
                            out.append(Change("delete", e.key, None, 0, rev, 0, None, w.id, False))
                        elif not e.maybe:
                            self.add("watch:replay", f"op {w.id} deleted key {e.key} at revision {rev}, "
                                     "but the replay of the writes before has no such key", [w.id],
                                     revision=rev, key=e.key)
                        continue
                    del state[e.key]
                    attached.pop(e.key, None)
                    out.append(Change("delete", e.key, None, 0, rev, 0, prev, w.id, e.key not in uncertain))
                    if not guessed:
                        uncertain.discard(e.key)  # absent for sure now
            self.changes[rev] = out
            self.index[rev] = {c.key: (i, c) for i, c in enumerate(out)}
            if attached:
                self.attached_at[rev] = dict(attached)
            if not out and not (w.effects and w.effects[0].type in ("revoke", "unseen")):
                self.add("watch:replay", f"op {w.id} sits at revision {rev} but changes nothing there",
                         [w.id], revision=rev)
        if final is None:
            return
        if at_final_read is not None:  # writes completed after the final read: compare at its revision
            state, uncertain = at_final_read
        kvs = {str(kv.get("key")): kv for kv in final.extra.get("kvs") or () if isinstance(kv, dict)}
        if not kvs and isinstance(final.value, dict):
            kvs = {str(k): {"value": v} for k, v in final.value.items()}
        for key in sorted(set(kvs) | set(state)):
            got = kvs.get(key)
            want = state.get(key)
            if key in uncertain:
                continue
            if got is None or want is None:
                if got is not want:
                    self.add("watch:final-state",
                             f"key {key}: the final read (op {final.id}) shows "
                             f"{'nothing' if got is None else got.get('value')}, the replay of the writes "
                             f"{'nothing' if want is None else want[0]}", [final.id], key=key)
                continue
            fields = (want[0], want[1], want[2], want[3])
            seen = (got.get("value"), got.get("create_revision", want[1]), got.get("mod_revision", want[2]),
                    got.get("version", want[3]))
            if fields != seen:
                self.add("watch:final-state",
                         f"key {key}: the final read (op {final.id}) shows value/create/mod/version {list(seen)}, "
                         f"the replay of the writes {list(fields)}", [final.id], key=key)

    # -- 2. each stream ------------------------------------------------------------------

    def _check_compaction(self, op: Op, before: int, by: Op | None) -> None:
        """A compaction answered ok at ``op.value``: ``before`` is the highest compaction (op
        ``by``) that had completed when it began (see ``_check_reads``)."""
        rev = op.value
        answered = op.extra.get("revision")
        if rev <= before:
            self.add("kv:compaction-not-refused", f"compaction at revision {rev} (op {op.id}) was answered ok, but "
                     f"compaction at revision {before} (op {by.id if by else '?'}) had completed before it began: "
                     "it must fail with compacted", [op.id] + ([by.id] if by else []), revision=rev, compacted=before)
        elif isinstance(answered, int) and 0 < answered < rev:
            self.add("kv:compaction-future", f"compaction at revision {rev} (op {op.id}) was answered ok at header "
                     f"revision {answered}: a revision beyond the store's must fail (future revision)", [op.id],
                     revision=rev, answered=answered)

    def _check_reads(self) -> None:
        """Reads against the write order: an op that began after another completed at
        revision R answers at R or later (``kv:revision-order``), and a read at header
        revision H shows each key as the replay has it at H (``kv:read-state``); a read at a
        past revision (``read_revision`` R, recorded on its invocation and completion) shows
        them as the replay has them at R, and must have failed (compacted) if R is below a
        compaction that had completed before it began (``kv:compacted-read``). A compaction is
        refused when it is applied (etcd's mvcc ``compact``) at a revision already compacted
        (ErrCompacted): one answered ok at R though a compaction at R or later had completed
        before it began is ``kv:compaction-not-refused``; and at a revision beyond the store's
        (ErrFutureRev): one answered ok at R with a header revision below R is
        ``kv:compaction-future``."""
        done_max = 0
        done_op: Op | None = None
        began: dict[Any, tuple[int, Op | None]] = {}
        compacted: tuple[int, Op | None] = (0, None)  # the highest compaction completed so far
        compacted_when: dict[Any, tuple[int, Op | None]] = {}  # process -> that, when its op began
        shown = 0
        for op in self.ops:
            if op.f == "compact" and not op.is_nemesis and isinstance(op.value, int):
                if op.type == "invoke":
                    compacted_when[op.process] = compacted
                elif op.type == "ok":
                    self._check_compaction(op, *compacted_when.get(op.process, (0, None)))
                    if op.value > compacted[0]:
                        compacted = (op.value, op)
                continue
            if op.is_nemesis or op.f not in (*WRITE_FS, *READ_FS, "lease-grant"):
                continue
            if op.type == "invoke":
                began[op.process] = (done_max, done_op)
                compacted_when[op.process] = compacted
                continue
            answered = op.extra.get("revision")
            if op.type != "ok" or not isinstance(answered, int):
                continue
            rev = answered
            floor, by = began.get(op.process, (0, None))
            if rev < floor and shown < 20:
                shown += 1
                self.add("kv:revision-order", f"op {op.id} ({op.f}) answered at revision {rev}, but op "
                         f"{by.id if by else '?'} had completed at revision {floor} before it began",
                         [op.id] + ([by.id] if by else []), revisions=[floor, rev])
            if rev > done_max:
                done_max, done_op = rev, op
            if op.f not in READ_FS:
                continue
            past = op.extra.get("read_revision")
            if isinstance(past, int) and past > 0:
                before, by_compact = compacted_when.get(op.process, (0, None))
                if past < before and shown < 20:
                    shown += 1
                    self.add("kv:compacted-read", f"op {op.id} ({op.f}) read at revision {past} and was answered, "
                             f"but compaction at revision {before} (op {by_compact.id if by_compact else '?'}) "
                             "had completed before it began: it must fail with compacted",
                             [op.id] + ([by_compact.id] if by_compact else []), revision=past, compacted=before)
                    continue
                rev = past
            if rev > self.final_revision or rev in self.uncertain_revisions:
                continue
            if op.f == "read":
                keys = [str(op.key)]
                kv = op.extra.get("kv")
                got = {str(op.key): kv} if isinstance(kv, dict) else {}
            elif isinstance(op.extra.get("range"), dict):
                keys, got = self._check_range(op, rev, op.extra["range"])
            else:
                got = {str(kv.get("key")): kv for kv in op.extra.get("kvs") or () if isinstance(kv, dict)}
                keys = sorted(set(got) | set(self._changes_by_key()[0]))
            for key in keys:
                sure, want = self._state_at(key, rev)
                if not sure:
                    continue
                if want is None or want.type == "delete":
                    want_t = None
                else:
                    want_t = (want.value, want.create, want.mod, want.version)
                kv = got.get(key)
                got_t = None if kv is None else (kv.get("value"), kv.get("create_revision", want_t[1] if want_t else 0),
                                                 kv.get("mod_revision", want_t[2] if want_t else 0),
                                                 kv.get("version", want_t[3] if want_t else 0))
                if got_t != want_t and shown < 20:
                    shown += 1
                    self.add("kv:read-state", f"op {op.id} ({op.f}) at revision {rev} shows {key} = "
                             f"{list(got_t) if got_t else None}, the write order has "
                             f"{list(want_t) if want_t else None} (value, create, mod, version) there",
                             [op.id] + ([want.op] if want is not None else []), revision=rev, key=key)

    def _check_range(self, op: Op, rev: int, request: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
        """A range over part of the key space (``range`` in the completion: key, range_end,
        limit) at revision ``rev``, by etcd's RangeRequest/RangeResponse: the keys returned lie
        in ``[key, range_end)`` (empty range_end: key alone; ``\\0``: every key >= key), in
        ascending key order, at most ``limit`` of them (``kv:range-bounds``); ``count`` is the
        number of keys in the range, unaffected by the limit, and ``more`` says whether the
        range holds keys past those returned (``kv:range-count``, judged where the replay is
        certain of every key of the range there). Returns the keys whose state the response
        shows (every key of the range, or with ``more`` those up to the last returned: the
        first ``limit`` keys of a range are exactly the ones below that) and the kvs by key,
        for ``kv:read-state``."""
        start, end = str(request.get("key")), str(request.get("range_end") or "")
        raw_limit = request.get("limit")
        limit = raw_limit if isinstance(raw_limit, int) else 0

        def inside(key: str) -> bool:
            if not end:
                return key == start
            if end == "\0":
                return key >= start
            return start <= key < end

        kvs = [kv for kv in op.extra.get("kvs") or () if isinstance(kv, dict)]
        returned = [str(kv.get("key")) for kv in kvs]
        got = {str(kv.get("key")): kv for kv in kvs}
        wrong = [k for k in returned if not inside(k)]
        why = ""
        if wrong:
            why = f"returned {wrong}, outside [{start!r}, {end!r})"
        elif returned != sorted(set(returned)):
            why = f"returned {returned}, not in ascending key order (or a key twice)"
        elif limit > 0 and len(returned) > limit:
            why = f"returned {len(returned)} keys, more than its limit {limit}"
        if why:
            self.add("kv:range-bounds", f"op {op.id} (range [{start!r}, {end!r}) limit {limit}) {why}",
                     [op.id], revision=rev, key=start)
            return [], {}
        in_range = sorted({k for k in self._changes_by_key()[0] if inside(k)} | set(returned))
        more, count = op.extra.get("more"), op.extra.get("count")
        if more is True and limit > 0:
            shown = [k for k in in_range if returned and k <= returned[-1]]
        else:
            shown = in_range
        states = [self._state_at(k, rev) for k in in_range]
        if rev <= self.final_revision and all(sure for sure, _ in states) and all(
                w is None or w.type in ("put", "delete") for _, w in states):
            present = [k for k, (_, w) in zip(in_range, states, strict=True) if w is not None and w.type == "put"]
            want_more = limit > 0 and len(present) > limit
            if (isinstance(count, int) and count != len(present)) or (isinstance(more, bool) and more != want_more):
                ops = [op.id, *[w.op for _, w in states if w is not None][:5]]
                self.add("kv:range-count", f"op {op.id} (range [{start!r}, {end!r}) limit {limit}) at revision "
                         f"{rev} answered count {count}, more {more}; the write order has {len(present)} "
                         f"key(s) there ({present}), so count {len(present)}, more {want_more}",
                         ops, revision=rev, key=start, count=count, more=more, present=present)
        return shown, got

    def _state_at(self, key: str, rev: int) -> tuple[bool, Change | None]:
        """The replay's last change of ``key`` at or before ``rev`` (None: never written),
        and whether the replay is certain of the key there (the rules of ``kv:read-state``)."""
        if rev > self.final_revision or rev in self.uncertain_revisions:
            return False, None
        key_revs, key_changes = self._changes_by_key()
        i = bisect.bisect_right(key_revs.get(key, []), rev) - 1
        want = key_changes[key][i] if i >= 0 else None
        return (want is None or want.certain), want

    def _changes_by_key(self) -> tuple[dict[str, list[int]], dict[str, list[Change]]]:
        """Per key, the revisions of the replay's changes of it and those changes, in order
        (built once)."""
        if not self._indexed:
            self._indexed = True
            for r in sorted(self.changes):
                for c in self.changes[r]:
                    self._key_revs.setdefault(c.key, []).append(r)
                    self._key_changes.setdefault(c.key, []).append(c)
        return self._key_revs, self._key_changes

    def _check_compares(self) -> None:
        """Txn compares against the write order (``kv:compare-state``). A txn (or cas) answered with
        header revision H and a recorded outcome (``succeeded``) evaluated its compares at
        H - 1 when it succeeded and wrote (the state just before its own write), else at H
        (etcd's semantics): where the replay is certain of a compared key there, the outcome
        must be what the compares give on the replayed state. ``compare`` in the op's extra
        is a list of ``[target, key, value]`` (equality) or ``[target, key, value, result]``
        (result ``=``, ``!=``, ``>`` or ``<``; target mod_revision, create_revision, version
        or value; a missing key has 0 for the revisions and version, and a value compare on
        it fails whatever the result, as in etcd; values are compared for (in)equality only,
        since etcd orders them as bytes)."""
        shown = 0
        fields = {"value": 0, "create_revision": 1, "mod_revision": 2, "version": 3}
        for op in self.ops:
            if op.is_nemesis or op.f not in ("txn", "cas") or op.type not in ("ok", "fail"):
                continue
            succeeded = op.extra.get("succeeded")
            header = op.extra.get("revision")
            compares = op.extra.get("compare")
            if not isinstance(succeeded, bool) or not isinstance(header, int) or not isinstance(compares, list):
                continue
            wrote = succeeded and op.type == "ok" and bool(_effects(op, True))
            at = header - 1 if wrote else header
            expected = True
            shown_state: dict[str, Any] = {}
            certain = bool(compares)
            for cmp in compares:
                if not (isinstance(cmp, list | tuple) and len(cmp) in (3, 4) and cmp[0] in fields
                        and (len(cmp) == 3 or cmp[3] in _COMPARE_RESULTS)
                        and (cmp[0] != "value" or len(cmp) == 3 or cmp[3] in ("=", "!="))):
                    certain = False
                    break
                target, key, value = str(cmp[0]), str(cmp[1]), cmp[2]
                result = str(cmp[3]) if len(cmp) == 4 else "="
                sure, want = self._state_at(key, at)
                if not sure:
                    certain = False
                    break
                state = None if want is None or want.type != "put" else (want.value, want.create, want.mod,
                                                                         want.version)
                shown_state[key] = list(state) if state is not None else None
                if state is None and target == "value":
                    holds = False
                else:
                    have = 0 if state is None else state[fields[target]]
                    try:
                        holds = _COMPARE_RESULTS[result](have, value)
                    except TypeError:  # not comparable (a value no write produced): nobody knows
                        certain = False
                        break
                expected = expected and holds
            if not certain:
                continue
            self.compares_checked += 1
            if expected == succeeded:
                continue
            if shown < 20:
                shown += 1
                ops = [op.id] + [c.op for k in shown_state for c in [self._state_at(k, at)[1]] if c is not None]
                self.add("kv:compare-state",
                         f"op {op.id} (txn) compared {compares} at revision {at}: it "
                         f"{'succeeded' if succeeded else 'failed'}, but the write order has "
                         f"{shown_state} (value, create, mod, version) there, where the compares "
                         f"{'hold' if expected else 'fail'}", ops, revision=at,
                         key=str(compares[0][1]), expected=expected, succeeded=succeeded, replayed=shown_state)
            else:
                self.counts["kv:compare-state"] = self.counts.get("kv:compare-state", 0) + 1

    def _check_delete_ranges(self) -> None:
        """A delete of a range (``delete-range``: its value the request, ``{key, range_end,
        keys}``; an ok completion records ``deleted`` and ``deleted_keys``, the keys of its
        prev_kvs) deletes every key of ``[key, range_end)`` present just before it and nothing
        else: at revision R - 1 when it deleted something (R its header revision), else at its
        header revision, the keys the replay has present in the range must be exactly those it
        names, and ``deleted`` their number (``kv:delete-range``; judged where the replay is
        certain of every key of the range there). A key it names that was absent is also the
        replay's ``watch:replay``."""
        shown = 0
        for op in self.ops:
            if op.is_nemesis or op.f != "delete-range" or op.type != "ok" or not isinstance(op.value, dict):
                continue
            header, names, count = op.extra.get("revision"), op.extra.get("deleted_keys"), op.extra.get("deleted")
            if not isinstance(header, int) or not isinstance(names, list):
                continue
            start, end = str(op.value.get("key")), str(op.value.get("range_end") or "")

            def inside(key: str, start: str = start, end: str = end) -> bool:
                if not end:
                    return key == start
                return key >= start and (end == "\0" or key < end)

            at = header - 1 if names else header
            universe = sorted({k for k in self._changes_by_key()[0] if inside(k)}
                              | {str(k) for k in op.value.get("keys") or () if inside(str(k))}
                              | {str(k) for k in names if inside(str(k))})
            states = [self._state_at(k, at) for k in universe]
            if not all(sure and (w is None or w.type in ("put", "delete")) for sure, w in states):
                continue
            present = [k for k, (_, w) in zip(universe, states, strict=True) if w is not None and w.type == "put"]
            named = sorted(str(k) for k in names)
            if named == present and (not isinstance(count, int) or count == len(names)):
                continue
            if shown < 20:
                shown += 1
                outside = [k for k in named if not inside(k)]
                self.add("kv:delete-range", f"op {op.id} (delete [{start!r}, {end!r})) at revision {header} "
                         f"deleted {named} (count {count})" + (f", {outside} outside its range" if outside else "")
                         + f"; the write order has {present} in the range at revision {at}",
                         [op.id, *[w.op for _, w in states if w is not None][:5]], revision=at, key=start,
                         deleted=named, present=present)

    def check_streams(self) -> None:
        created_linearizable = bool(self.options.extra.get("created_linearizable"))
        # per key: revisions with a change of that key (for windows over single keys)
        by_key: dict[str, list[int]] = {}
        for rev in sorted(self.changes):
            for c in self.changes[rev]:
                by_key.setdefault(c.key, []).append(rev)
        self._by_key = by_key
        for s in self.streams:
            self._tick()
            _StreamCheck(self, s, created_linearizable).run()


class _StreamCheck:
    def __init__(self, run: _Run, s: Stream, created_linearizable: bool) -> None:
        self.run_ = run
        self.s = s
        req = s.request
        self.key = str(req.get("key", ""))
        self.end = str(req.get("range_end") or "")
        self.start = int(req.get("start_revision") or 0)
        self.prev_kv = bool(req.get("prev_kv"))
        filters = [str(f).lower() for f in req.get("filters") or ()]
        self.no_put = "noput" in filters
        self.no_delete = "nodelete" in filters
        self.created_linearizable = created_linearizable
        self.shown: dict[str, int] = {}
        self.matches = self._matcher()

    def _matcher(self) -> Callable[[str, str], bool]:
        """``matches(key, type)``: the event is in the watched range and of an unfiltered type."""
        start, end, no_put, no_delete = self.key, self.end, self.no_put, self.no_delete
        if not end:
            def in_range(key: str) -> bool:
                return key == start
        elif end == "\0":
            def in_range(key: str) -> bool:
                return key >= start
        else:
            def in_range(key: str) -> bool:
                return start <= key < end
        if not (no_put or no_delete):
            return lambda key, typ: in_range(key)
        return lambda key, typ: not ((typ == "put" and no_put) or (typ == "delete" and no_delete)) and in_range(key)

    def add(self, kind: str, explanation: str, ops: list[int], **detail: Any) -> None:
        n = self.shown.get(kind, 0)
        self.shown[kind] = n + 1
        if n >= PER_STREAM_KIND_LIMIT:
            self.run_.counts[kind] = self.run_.counts.get(kind, 0) + 1
            return
        where = f"stream p{self.s.process} (watch {self.key}"
        where += f"..{self.end}" if self.end else ""
        where += f" from {self.start})" if self.start else " from now)"
        self.run_.add(kind, f"{where}: {explanation}", [self.s.invoke.id, *ops],
                      stream=self.s.process, **detail)

    def expected(self, lo: int, hi: int) -> list[Change]:
        """The changes this watch should see in revisions [lo, hi], in order."""
        run = self.run_
        out: list[Change] = []
        if not self.end:  # one key: only its revisions
            revs = run._by_key.get(self.key, [])
            i = bisect.bisect_left(revs, lo)
            while i < len(revs) and revs[i] <= hi:
                out.extend(c for c in run.changes[revs[i]] if c.key == self.key and c.type != "unknown"
                           and self.matches(c.key, c.type))
                i += 1
            return out
        for rev in range(max(lo, 2), hi + 1):
            for c in run.changes.get(rev, ()):
                if c.type != "unknown" and self.matches(c.key, c.type):
                    out.append(c)
        return out

    def run(self) -> None:
        run = self.run_
        created_rev: int | None = None
        canceled: Op | None = None
        compact_rev = 0
        delivered: dict[tuple[int, str], tuple[dict[str, Any], Op, int]] = {}  # (rev,key) -> event, line, resp
        last_rev = 0
        last_key_pos = -1
        progress = 0
        progress_op: Op | None = None
        window_end = 0
        resp_no = 0
        first_event: tuple[dict[str, Any], Op] | None = None
        rev_resp: dict[int, tuple[int, Op]] = {}
        index = run.index
        matches = self.matches
        prev_kv = self.prev_kv
        flagged_rev = -1
        for line in self.s.lines:
            v = line.value if isinstance(line.value, dict) else {}
            if "end" in v or v.get("progress_request"):
                continue
            resp_no += 1
            events = v.get("events") or []
            rev_h = int(v.get("revision") or 0)
            if v.get("created"):
                created_rev = rev_h if created_rev is None else created_rev
            if v.get("canceled"):
                canceled = line
                compact_rev = int(v.get("compact_revision") or 0)
            if not events and not v.get("created") and not v.get("canceled"):
                # a progress notification: every event up to rev_h has been delivered
                if rev_h < progress:
                    self.add("watch:bookmarkable", f"progress went back from {progress} to {rev_h}",
                             [progress_op.id if progress_op else line.id, line.id], revisions=[progress, rev_h])
                if rev_h < last_rev:
                    self.add("watch:bookmarkable", f"progress notification at {rev_h} is below the event "
                             f"at revision {last_rev} already delivered", [line.id], revisions=[last_rev, rev_h])
                if rev_h > progress:
                    progress, progress_op = rev_h, line
                window_end = max(window_end, rev_h)
                continue
            for ev in events:
                key = ev.get("key")
                if type(key) is not str:
                    key = str(key)
                typ = ev.get("type")
                if type(typ) is not str:
                    typ = str(typ)
                rev = ev.get("mod_revision")
                if type(rev) is not int:
                    rev = int(rev or 0)
                if first_event is None:
                    first_event = (ev, line)
                if not matches(key, typ):
                    self.add("watch:filter", f"{typ} event of key {key} at revision {rev} is outside the "
                             "watched range or of a filtered type", [line.id], revision=rev, key=key)
                if rev <= progress and rev != flagged_rev:
                    flagged_rev = rev
                    self.add("watch:bookmarkable", f"event at revision {rev} after a progress notification "
                             f"at {progress}", [progress_op.id if progress_op else line.id, line.id],
                             revisions=[progress, rev])
                found = index.get(rev, _NO_INDEX).get(key)
                # a revision one of several info writes made has no known order within it (its
                # keys are listed sorted): clean watch swarm seed 1012, revision 204 deleted
                # w/k1 then w/k0, which three timed-out txns could each have done
                pos = found[0] if found is not None and found[1].type != "unknown" else -1
                if rev < last_rev or (rev == last_rev and pos != -1 and pos < last_key_pos):
                    self.add("watch:ordered", f"event ({rev}, {key}) after an event at revision {last_rev}",
                             [line.id], revisions=[last_rev, rev])
                if rev > last_rev:
                    last_rev = rev
                last_key_pos = pos
                if rev > window_end:
                    window_end = rev
                ident = (rev, key)
                if ident in delivered:
                    self.add("watch:unique", f"event ({rev}, {key}) delivered twice",
                             [delivered[ident][1].id, line.id], revision=rev, key=key)
                    continue
                first_resp = rev_resp.setdefault(rev, (resp_no, line))
                if first_resp[0] != resp_no:
                    self.add("watch:atomic", f"the events of revision {rev} arrived in two responses",
                             [first_resp[1].id, line.id], revision=rev)
                delivered[ident] = (ev, line, resp_no)
                want = found[1] if found is not None else None
                if (want is not None and want.certain and want.type == typ == "put"
                        and want.value == ev.get("value") and want.create == ev.get("create_revision")
                        and want.version == ev.get("version")):
                    # the common case: a PUT as the replay has it; then its prev_kv
                    p, wp = ev.get("prev_kv"), want.prev
                    if not prev_kv:
                        if p is None:
                            continue
                    elif p is None:
                        if wp is None:
                            continue
                    elif wp is not None and (p.get("value"), p.get("create_revision"), p.get("mod_revision"),
                                             p.get("version")) == wp:
                        continue
                self._event_fields(ev, line, want, key, typ, rev)
        # created / compaction
        if canceled is not None and compact_rev:
            if compact_rev not in run.compactions:
                self.add("watch:compaction", f"canceled with compact_revision {compact_rev}, but no compaction "
                         f"asked for that revision (compactions: {sorted(run.compactions)[:10]})",
                         [canceled.id], compact_revision=compact_rev)
            if self.start and self.start >= compact_rev:
                self.add("watch:compaction", f"canceled as compacted although its start revision {self.start} is "
                         f"not below the compaction at {compact_rev}", [canceled.id], compact_revision=compact_rev)
        if created_rev is not None and self.created_linearizable:
            done_before = [r for p, r in run.ok_write_done if p < self.s.invoke.position]
            if done_before and created_rev < max(done_before):
                self.add("watch:created", f"created at revision {created_rev}, behind revision "
                         f"{max(done_before)} of a write that completed before the watch was opened",
                         [], revisions=[created_rev, max(done_before)])
        lo = self.start if self.start else (created_rev + 1 if created_rev is not None else None)
        if lo is None:
            return
        below = sorted(k for k in delivered if k[0] < lo)
        if below:
            rev, key = below[0]
            kind = "watch:resumable" if self.start else "watch:created"
            self.add(kind, f"event ({rev}, {key}) is before the stream's first revision {lo}",
                     [delivered[below[0]][1].id], revision=rev, key=key)
        hi = min(window_end, run.final_revision)
        if hi < lo:
            return
        expected = self.expected(lo, hi)
        certain = [c for c in expected if c.certain]
        if self.start and first_event is not None and certain:
            ev, line = first_event
            want = certain[0]
            got = (int(ev.get("mod_revision") or 0), str(ev.get("key")))
            # Before the first change the replay is sure of, an event may come from a change it
            # is not sure of: a revision made by an unknown one of several info writes, or an
            # info write that may or may not have changed this key (clean watch swarm seed 22:
            # a watch from 340 began with a delete at 343 that one of five timed-out deletes
            # made). Skipping a change the replay is sure of is what resumable forbids.
            unsure = {(c.mod, c.key) for c in expected if not c.certain}
            explained = got[0] < want.mod and (got[0] in run.uncertain_revisions or got in unsure)
            # So may a change the replay is not sure of in the same revision, ahead of the sure
            # one in that revision's order (clean watch swarm seed 1001: a timed-out txn deleted
            # w/k1, w/k2, w/k0 at 316; the replay was not sure w/k1 was there to delete, and a
            # deletes-only watch from 311 began with w/k1's delete)
            if not explained and got[0] == want.mod and got in unsure:
                at = run.index.get(want.mod, _NO_INDEX)
                explained = got[1] in at and want.key in at and at[got[1]][0] < at[want.key][0]
            if got != (want.mod, want.key) and not explained:
                self.add("watch:resumable", f"watch from revision {self.start}: first event is "
                         f"({ev.get('mod_revision')}, {ev.get('key')}), but the first matching write at or after "
                         f"{self.start} is op {want.op} at ({want.mod}, {want.key})", [line.id, want.op],
                         revisions=[self.start, want.mod, int(ev.get("mod_revision") or 0)])
        missing = [c for c in expected if c.certain and (c.mod, c.key) not in delivered]
        if missing:
            c = missing[0]
            self.add("watch:reliable", f"{len(missing)} event(s) missing from the window {lo}..{hi} it covered; "
                     f"first: ({c.mod}, {c.key}) {c.type} by op {c.op}", [c.op for c in missing[:10]],
                     revisions=[m.mod for m in missing[:50]], window=[lo, hi])

    def _event_fields(self, ev: dict[str, Any], line: Op, want: Change | None, key: str, typ: str, rev: int) -> None:
        run = self.run_
        if want is None or want.type != typ or (typ == "put" and want.value != ev.get("value")):
            if rev in run.uncertain_revisions or (want is not None and want.type == "unknown"):
                return  # nobody knows what this revision did to the key
            if typ == "delete" and (want is None or want.type != "delete"):
                revs = [r for r in run._by_key.get(key, []) if any(
                    c.key == key and c.type == "delete" for c in run.changes[r])]
                near = min(revs, key=lambda r: abs(r - rev), default=None)
                if near is not None:
                    self.add("watch:delete-revision", f"DELETE of {key} at revision {rev}, but the delete of "
                             f"that key nearest to it is at revision {near}", [line.id],
                             revisions=[rev, near], key=key)
                    return
            if rev in run.uncertain_revisions:
                return
            what = "no write" if want is None else f"op {want.op} ({want.type} {want.value})"
            self.add("watch:reliable", f"phantom event: {typ} {key}={ev.get('value')} at revision {rev}; the "
                     f"write order has {what} there", [line.id] + ([want.op] if want else []),
                     revision=rev, key=key, phantom=True)
            return
        if not want.certain:
            return
        if typ == "put":
            version = ev.get("version")
            create = ev.get("create_revision")
            absent = want.prev is None
            if absent != (version == 1 and create == rev) or (create, version) != (want.create, want.version):
                self.add("watch:is-create", f"PUT {key} at revision {rev} has create_revision {create}, "
                         f"version {version}; the replay says {want.create}, {want.version} (key "
                         f"{'absent' if absent else 'present'} before)", [line.id, want.op],
                         revision=rev, key=key)
        has_prev = "prev_kv" in ev and ev["prev_kv"] is not None
        if not self.prev_kv:
            if has_prev:
                self.add("watch:prev-kv", f"event ({rev}, {key}) carries prev_kv the watch did not ask for",
                         [line.id], revision=rev, key=key)
            return
        p = ev.get("prev_kv") if has_prev else None
        got = None if p is None else (p.get("value"), p.get("create_revision"), p.get("mod_revision"),
                                      p.get("version"))
        if got is None and want.prev is not None and self.run_.max_compaction >= rev:
            return  # a compaction at or after this revision dropped the previous version
        if got != want.prev:
            self.add("watch:prev-kv", f"event ({rev}, {key}) has prev_kv {list(got) if got else None}; the key "
                     f"before was {list(want.prev) if want.prev else None} (value, create, mod, version)",
                     [line.id, want.op], revision=rev, key=key)
