"""The lease checker: do leased keys live as long as their lease, and no longer?

Why: a lease promises that its keys live at least TTL after the last successful keepalive
and are gone not long after it lapses, that an expired or revoked lease stays dead (a
keepalive answers TTL 0), and that a revoke deletes its keys at the revoke's revision.
Reads and watches alone do not state these, so the watch and linearizability checkers pass
histories that break them.

How: the committed order of writes is rebuilt as the watch checker does (kvcheck.checker.
watch: lease expiries are the revisions a watch event shows as deletes no client write
made, except one a timed-out revoke of the same lease may have made; a revoke deletes the
keys attached to its lease), then, from the history's lease ops
(``lease-grant``, ``put`` with a ``lease`` field, ``lease-keepalive`` answering the TTL, 0
when not found, ``lease-revoke``; README "Lease histories"):
- ``lease:early-expiry``: an expiry seen (its first watch event) before TTL had passed since
  the invocation of the last successful keepalive or grant (skipped across clock faults; not
  across partitions: a keepalive answered TTL > 0 by a leader cut off with a minority promises
  as much as any other, and the majority's leader expiring the lease early breaks it);
- ``lease:late-expiry``: a read shows a key still attached to its lease later than TTL +
  the bound after the lease's clock last restarted as far as the history can tell: the last
  successful keepalive or grant (or the end of a timed-out keepalive, which may have renewed
  it), the last fault's stop (never judged while a fault is active), and the last new leader
  (a new leader restarts every lease's clock — etcd's ``Promote`` — so a chain of elections
  postpones an expiry without limit). The read records the answering member's raft ``term``
  T: the leader that confirmed it has a term <= T and has led without a break since its
  election, which came before the first keepalive answered in a term >= T (keepalives are
  answered by the leader itself, in its own term) and before the read completed; by then it
  had also applied the lease's grant (a leader applies everything committed before it answers
  either). After that point the leader's own lessor must have expired the lease within TTL +
  the bound. A read
  without a ``term`` cannot bound the elections before it and is not judged (counted in the
  summary). The bound is ``options.extra["lease_bound"]`` seconds, derived by the workload
  from the run's settings (the check interval, the revoke retry, a leader stall of up to two
  election timeouts), and printed (without it this check is skipped, and the summary says so);
- ``lease:keepalive-after-expiry`` / ``lease:keepalive-after-revoke``: a keepalive invoked
  after the lease's expiry was seen, or after its revoke completed, answered a TTL > 0;
- ``lease:keepalive-early-expiry``: a keepalive answered TTL 0 (expired or unknown) before TTL
  had passed since the invocation of a renewal or grant that completed before it was invoked
  (the keepalive form of early expiry: a member answering from a lessor that is not the
  cluster's, e.g. a deposed leader; skipped across clock faults and once a revoke of the
  lease was invoked before the answer);
- ``lease:deposed-leader``: a keepalive or LeaseTimeToLive answered in raft term T though it
  was invoked after another one completed answered in a term T' > T. Both are answered by the
  leader itself once a ReadIndex round confirmed its leadership (etcd's ``LeaseRenew``
  ``ensureLeadership``): an answer in T' means a majority voted in T' before it completed, and
  a member never goes back to an older term, so no majority can confirm the leader of T after
  that. Such an answer comes from a deposed leader that has not noticed yet (cut off with a
  minority, paused), whose lessor is not the cluster's: its renewals keep the lease alive on
  its own clock only, while the real leader expires it. Skipped when
  ``options.extra["keepalive_term"]`` is ``"member"`` (a real etcd fills the header on the
  member that took the stream, before a follower forwards the renewal to its leader);
- ``lease:renewed-after-expiry``: a keepalive answered TTL > 0 though it was invoked more than
  TTL after the last renewal completed and the same raft term (one leadership, one lessor
  clock) answered both, with no other keepalive in flight and no clock fault in between;
  skipped, as ``deposed-leader`` is, when the term is the receiving member's (``"member"``: a
  restarted real etcd member answers with the term it restarted with while the leader of a
  newer term, whose promotion restarted every lease's clock, renewed the lease);
- ``lease:revoked-key-present``: a read invoked after a revoke completed shows a key still
  attached to the revoked lease;
- ``lease:put-after-revoke`` / ``lease:put-after-expiry``: a put with lease L answered ok
  though it was invoked after L's revoke completed, or after a watch saw L's expiry (etcd
  refuses it when the put is applied: "etcdserver: requested lease not found").
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kvcheck.checker.api import UNKNOWN, Anomaly, CheckerBase, CheckOptions, CheckResult
from kvcheck.checker.history import Call, Op, pair_calls
from kvcheck.checker.watch import _OutOfTime, _Run

NS = 1e9


def _revoke_invocations(calls: Sequence[Call]) -> dict[int, list[int]]:
    """Lease -> the history positions of its revokes' invocations (any outcome)."""
    revokes: dict[int, list[int]] = {}
    for c in calls:
        if c.f == "lease-revoke" and isinstance(c.invoke.value, int):
            revokes.setdefault(c.invoke.value, []).append(c.invoke.position)
    return revokes


class LeaseChecker(CheckerBase):
    name = "lease"
    description = "lease lifetimes: keys live TTL after the last keepalive and are gone within the bound"

    def reads(self, op: Op) -> bool:
        return not op.is_nemesis and (str(op.f).startswith("lease-") or "lease" in op.extra or op.f in (
            "read", "range", "watch"))

    def check(self, ops: Sequence[Op], options: CheckOptions) -> CheckResult:
        t0 = time.perf_counter()
        given = options.extra.get("lease_bound")
        bound = float(given) if isinstance(given, int | float) else None
        parts = options.extra.get("lease_bound_parts") or {}
        deadline = None if options.timeout is None else t0 + options.timeout
        run = _Run(ops, options, deadline)
        anomalies: list[Anomaly] = []
        try:
            run.reconstruct()
        except _OutOfTime:
            return CheckResult(self.name, UNKNOWN, [], time.perf_counter() - t0,
                               f"the lease check did not finish within {options.timeout} s")

        def add(kind: str, text: str, ids: list[int], **detail: Any) -> None:
            anomalies.append(Anomaly(kind, text, ids, detail))

        by_id = {op.id: op for op in ops}
        calls = pair_calls(ops)
        ttl: dict[int, int] = {}
        renewals: dict[int, list[tuple[float, float]]] = {}  # lease -> (invoke time, completion time) ok
        revoked: dict[int, Op] = {}  # lease -> its ok revoke's completion
        keepalives = []
        for c in calls:
            done = c.completion
            if done is None or done.type != "ok":
                continue
            t_inv = (c.invoke.time or 0) / NS
            t_done = (done.time or 0) / NS
            if c.f == "lease-grant" and isinstance(done.extra.get("lease"), int):
                lease = done.extra["lease"]
                ttl[lease] = int(done.value or c.invoke.value or 0)
                renewals.setdefault(lease, []).append((t_inv, t_done))
            elif c.f == "lease-keepalive" and isinstance(c.invoke.value, int):
                keepalives.append(c)
                if isinstance(done.value, int) and done.value > 0:
                    renewals.setdefault(c.invoke.value, []).append((t_inv, t_done))
            elif c.f == "lease-revoke" and isinstance(c.invoke.value, int):
                revoked.setdefault(c.invoke.value, done)
        # fault intervals (nemesis start/stop by kind), and clock faults on their own
        faults: list[tuple[float, float]] = []
        clock: list[tuple[float, float]] = []
        open_f: dict[str, float] = {}
        end_time = max(((op.time or 0) / NS for op in ops), default=0.0)
        for op in ops:
            if op.is_nemesis and op.type == "info" and isinstance(op.f, str):
                what, _, kind = op.f.partition("-")
                if what == "start":
                    open_f.setdefault(kind, (op.time or 0) / NS)
                elif what == "stop" and kind in open_f:
                    span = (open_f.pop(kind), (op.time or 0) / NS)
                    faults.append(span)
                    if kind == "clock":
                        clock.append(span)
        for kind, start in open_f.items():
            faults.append((start, end_time))
            if kind == "clock":
                clock.append((start, end_time))

        # expiries seen by a watch event: the lease each deleted and when it was first seen
        expired_seen: dict[int, Op] = {}
        for w in run.expiries:
            lease = run.deleted_leases.get(w.revision or -1)
            seen = by_id.get(w.op)
            if lease is None or seen is None:
                continue
            if lease in run.maybe_revoked.get(w.revision or -1, ()):
                continue  # a timed-out revoke of this lease may have made the revision instead
            expired_seen.setdefault(lease, seen)
            t_seen = (seen.time or 0) / NS
            before = [r for r in renewals.get(lease, []) if r[0] <= t_seen]
            if not before or lease not in ttl:
                continue
            t_k = max(r[0] for r in before)
            if t_seen < t_k + ttl[lease] and not any(a < t_seen and b > t_k - ttl[lease] for a, b in clock):
                add("lease:early-expiry", f"lease {lease} (TTL {ttl[lease]} s) expired at revision {w.revision}, "
                    f"seen at {t_seen:.3f} s, only {t_seen - t_k:.3f} s after its last successful keepalive "
                    f"was invoked (an answer of TTL > 0 promises TTL from its invocation on every leader's clock; "
                    f"a renewal that did not hold came from a lessor that is not the cluster's, e.g. a deposed "
                    f"leader's)", [seen.id], lease=lease, revision=w.revision)
        for c in keepalives:
            done = c.completion
            assert done is not None
            lease = c.invoke.value
            if not (isinstance(done.value, int) and done.value > 0):
                continue
            rv = revoked.get(lease)
            if rv is not None and rv.position < c.invoke.position:
                add("lease:keepalive-after-revoke", f"keepalive of lease {lease} answered TTL {done.value} "
                    f"after its revoke (op {rv.id}) completed", [c.id, rv.id], lease=lease)
            seen = expired_seen.get(lease)
            if seen is not None and seen.position < c.invoke.position:
                add("lease:keepalive-after-expiry", f"keepalive of lease {lease} answered TTL {done.value} "
                    f"after a watch saw it expire (op {seen.id})", [c.id, seen.id], lease=lease)

        # a keepalive answered TTL 0 (etcd: ErrLeaseNotFound, the lease expired or unknown) too
        # soon: a renewal or the grant that completed before it was invoked took effect no
        # earlier than its own invocation, and from then the lease lives at least TTL on every
        # leader's clock (a new leader restarts the clocks later still); a leader applies
        # everything committed before it answers a keepalive, so it knows an acknowledged
        # grant. An answer computed before that TTL ran out (no later than the completion) is
        # a member that answered from a lessor that is not the cluster's (a deposed leader, a
        # leader that has not applied the grant yet). Not judged across clock faults, nor once
        # a revoke of the lease was invoked before the answer (any outcome: it may have applied).
        revoke_invoked = _revoke_invocations(calls)
        for c in keepalives:
            done = c.completion
            assert done is not None
            lease = c.invoke.value
            if not (isinstance(done.value, int) and done.value <= 0) or lease not in ttl:
                continue
            if any(p < done.position for p in revoke_invoked.get(lease, [])):
                continue
            k_inv, k_done = (c.invoke.time or 0) / NS, (done.time or 0) / NS
            prior = [r[0] for r in renewals.get(lease, []) if r[1] < k_inv]
            if not prior:
                continue
            r_inv = max(prior)
            if k_done < r_inv + ttl[lease] and not any(a < k_done and b > r_inv for a, b in clock):
                add("lease:keepalive-early-expiry",
                    f"keepalive of lease {lease} (TTL {ttl[lease]} s) answered TTL {done.value} (expired or "
                    f"unknown) at {k_done:.3f} s, only {k_done - r_inv:.3f} s after a renewal that completed "
                    f"before it was invoked (invoked at {r_inv:.3f} s)", [c.id], lease=lease,
                    term=done.extra.get("term"))

        # a keepalive's term is its leader's (the simulation, our server) or the receiving member's (etcd)
        leader_terms = options.extra.get("keepalive_term", "leader") == "leader"
        if leader_terms:
            self._check_deposed_leader(calls, add)
        self._check_time_to_live(calls, ttl, revoked, add)
        self._check_dead_lease_puts(calls, revoked, expired_seen, add)
        self._check_remaining(calls, ttl, renewals, clock, add)

        # a keepalive that renewed a lease its leader's clock must have let lapse: the same
        # term (one leadership, one lessor clock: a new leader restarts every lease's clock)
        # answered the previous renewal, a keepalive, which the leader's lessor renewed before
        # it answered (not a grant: etcd answers a grant on whichever member applied it, and
        # the leader's clock starts when the leader applies it, possibly later), and this
        # keepalive was invoked more than TTL after that completion, with no renewal in flight
        # (an ok, info or failed keepalive or grant invoked in between) and no clock fault.
        pending: dict[int, list[tuple[float, float]]] = {}  # lease -> (invoke, completion or end) of any keepalive
        timed_out: dict[int, list[tuple[float, float]]] = {}  # the same, of those without a definite answer
        for c in calls:
            if c.f == "lease-keepalive" and isinstance(c.invoke.value, int):
                t_end = (c.completion.time or 0) / NS if c.completion is not None else end_time
                pending.setdefault(c.invoke.value, []).append(((c.invoke.time or 0) / NS, t_end))
                if c.completion is None or c.completion.type == "info":
                    timed_out.setdefault(c.invoke.value, []).append(((c.invoke.time or 0) / NS, t_end))
        renewed_in_term: dict[int, list[tuple[float, float, int]]] = {}  # lease -> (invoke, done, term)
        for c in calls:
            done = c.completion
            if done is None or done.type != "ok" or not isinstance(done.extra.get("term"), int):
                continue
            if c.f == "lease-keepalive" and isinstance(c.invoke.value, int) and isinstance(done.value, int) \
                    and done.value > 0:
                lease_id = c.invoke.value
            else:
                continue
            renewed_in_term.setdefault(lease_id, []).append(
                ((c.invoke.time or 0) / NS, (done.time or 0) / NS, done.extra["term"]))
        for c in keepalives if leader_terms else []:
            done = c.completion
            assert done is not None
            lease = c.invoke.value
            term = done.extra.get("term")
            if not (isinstance(done.value, int) and done.value > 0) or not isinstance(term, int) or lease not in ttl:
                continue
            k = (c.invoke.time or 0) / NS
            earlier = [r for r in renewed_in_term.get(lease, []) if r[0] < k]
            if not earlier:
                continue
            prev = max(earlier, key=lambda r: r[1])
            gap_start = prev[1]
            if prev[2] != term or k <= gap_start + ttl[lease] * 1.01 + 0.01:
                continue
            if any(a < k and b > gap_start for a, b in pending.get(lease, []) if (a, b) != (k, (done.time or 0) / NS)):
                continue  # another keepalive in flight may have renewed it in between
            if any(r[1] > k for r in earlier):
                continue
            if any(a < k and b > gap_start for a, b in clock):
                continue
            add("lease:renewed-after-expiry", f"keepalive of lease {lease} (TTL {ttl[lease]} s) invoked at {k:.3f} s "
                f"answered TTL {done.value} in term {term}, {k - gap_start:.3f} s after the last renewal in that "
                f"term completed: the leader's clock must have let the lease lapse", [c.id], lease=lease, term=term)

        # reads that show a leased key. A new leader restarts every lease's clock: its election
        # came before the first keepalive answered in its term or a later one (the leader
        # answers keepalives itself, in its own term), so the first keepalive answered in a
        # term >= the read's term bounds when the read's leader took over.
        first_in_term: list[tuple[int, float]] = []  # (term, earliest ok keepalive completion in a term >= it)
        by_term: dict[int, float] = {}
        for c in keepalives:
            done = c.completion
            assert done is not None
            if isinstance(done.extra.get("term"), int):
                term_k = done.extra["term"]
                by_term[term_k] = min(by_term.get(term_k, float("inf")), (done.time or 0) / NS)
        earliest = float("inf")
        for term_k in sorted(by_term, reverse=True):
            earliest = min(earliest, by_term[term_k])
            first_in_term.append((term_k, earliest))
        first_in_term.reverse()

        def leader_since(term_r: int) -> float:
            """No later than this, the leader that confirmed a read answered in ``term_r`` led."""
            for term_k, t in first_in_term:
                if term_k >= term_r:
                    return t
            return float("inf")

        reads_without_term = 0
        for c in calls:
            done = c.completion
            if c.f not in ("read", "range") or done is None or done.type != "ok":
                continue
            kvs = done.extra.get("kvs") if c.f == "range" else [done.extra.get("kv")]
            t_r = (c.invoke.time or 0) / NS
            for kv in kvs or ():
                if not isinstance(kv, dict) or not isinstance(kv.get("lease"), int):
                    continue
                lease = kv["lease"]
                rv = revoked.get(lease)
                if rv is not None and rv.position < c.invoke.position:
                    add("lease:revoked-key-present", f"read (op {done.id}) shows key {kv.get('key')} still "
                        f"attached to lease {lease} after its revoke (op {rv.id}) completed",
                        [done.id, rv.id], lease=lease, key=kv.get("key"))
                    continue
                if lease not in ttl or any(a <= t_r <= b for a, b in faults):
                    continue
                done_t = (done.time or 0) / NS
                renewed = [r[1] for r in renewals.get(lease, []) if r[0] <= done_t]
                if not renewed:
                    continue
                term_r = done.extra.get("term")
                if not isinstance(term_r, int):
                    reads_without_term += 1
                    continue
                # a keepalive that timed out may have renewed the lease until the client gave up
                # (or until the read, if it was still running then)
                renewed += [min(b, done_t) for a, b in timed_out.get(lease, []) if a <= done_t]
                last_renewal = max(renewed)
                leader = min(leader_since(term_r), done_t)
                fault_stop = max([b for a, b in faults if b <= t_r], default=0.0)
                base = max(last_renewal, leader, fault_stop)
                if bound is not None and t_r > base + ttl[lease] + bound:
                    why = ("its last keepalive" if base == last_renewal else "the last fault stopped"
                           if base == fault_stop else f"a keepalive was first answered in a term >= {term_r} "
                           "(the read's leader led by then)")
                    add("lease:late-expiry", f"read (op {done.id}) at {t_r:.3f} s in term {term_r} shows key "
                        f"{kv.get('key')} still attached to lease {lease} (TTL {ttl[lease]} s), "
                        f"{t_r - base:.3f} s after {why}, beyond TTL + the bound {bound:g} s",
                        [done.id], lease=lease, key=kv.get("key"), term=term_r)
        detail = {"leases": len(ttl), "keepalives": len(keepalives), "revokes": len(revoked),
                  "expiries_seen": len(expired_seen), "bound_seconds": bound, "bound_parts": parts,
                  "reads_without_term": reads_without_term}
        return CheckResult(self.name, not anomalies, anomalies,
                           time.perf_counter() - t0, None, detail)

    @staticmethod
    def _check_deposed_leader(calls: Sequence[Call], add: Callable[..., None]) -> None:
        """``lease:deposed-leader`` (module docstring): the leader-side answers (keepalives and
        LeaseTimeToLive, ok, with a ``term``) in history order of completion; an answer whose
        term is below the highest term among those that completed before it was invoked."""
        answers = [c for c in calls if c.f in ("lease-keepalive", "lease-timetolive") and c.completion is not None
                   and c.completion.type == "ok" and isinstance(c.completion.extra.get("term"), int)]
        done_order = sorted(answers, key=lambda c: c.completion.position if c.completion else 0)
        positions = [c.completion.position for c in done_order if c.completion is not None]
        highest: list[tuple[int, Call]] = []  # the highest term (and its answer) among the first i completions
        for c in done_order:
            assert c.completion is not None
            term = int(c.completion.extra["term"])
            highest.append((term, c) if not highest or term > highest[-1][0] else highest[-1])
        for c in answers:
            done = c.completion
            assert done is not None
            i = bisect_left(positions, c.invoke.position)
            if i == 0:
                continue
            newer, witness = highest[i - 1]
            term = int(done.extra["term"])
            if newer <= term:
                continue
            what = "keepalive" if c.f == "lease-keepalive" else "TimeToLive"
            w_done = witness.completion
            assert w_done is not None
            add("lease:deposed-leader", f"{what} of lease {c.invoke.value} (op {done.id}) answered "
                f"{done.value} in term {term}, but it was invoked after op {w_done.id} was answered in "
                f"term {newer}: a leader of term {newer} was elected by then, so no majority could "
                f"confirm the leader of term {term} (a deposed leader answered from its own lessor)",
                [c.id, witness.id], lease=c.invoke.value, term=term, newer_term=newer)

    @staticmethod
    def _check_dead_lease_puts(calls: Sequence[Call], revoked: dict[int, Op], expired_seen: dict[int, Op],
                               add: Callable[..., None]) -> None:
        """A put attached to a lease that is gone fails when it is applied (etcd's applyPut looks
        the lease up and answers ``ErrLeaseNotFound``, "etcdserver: requested lease not found";
        a txn's put likewise). A revoke that completed, or an expiry a watch has seen (its delete
        revision is committed, so the expiry's entry is in the log), precede in the log any put
        invoked after them, so such a put must not be answered ok (``lease:put-after-revoke``,
        ``lease:put-after-expiry``). A lease that has expired on a leader's clock but whose
        revoke has not been applied yet still exists (etcd keeps it in the lessor until the
        revoke applies): only a revoke or an expiry seen counts."""
        for c in calls:
            done = c.completion
            lease = c.invoke.extra.get("lease")
            if c.f != "put" or done is None or done.type != "ok" or not isinstance(lease, int) or not lease:
                continue
            for kind, gone, what in (("lease:put-after-revoke", revoked.get(lease), "revoke"),
                                     ("lease:put-after-expiry", expired_seen.get(lease), "expiry seen by a watch")):
                if gone is not None and gone.position < c.invoke.position:
                    add(kind, f"put of {c.invoke.key} with lease {lease} (op {done.id}) answered ok, but it was "
                        f"invoked after the lease's {what} (op {gone.id}): the lease was not found when it applied",
                        [c.id, gone.id], lease=lease, key=c.invoke.key)
                    break

    @staticmethod
    def _check_remaining(calls: Sequence[Call], ttl: dict[int, int], renewals: dict[int, list[tuple[float, float]]],
                         clock: list[tuple[float, float]], add: Callable[..., None]) -> None:
        """LeaseTimeToLive's remaining TTL is no less than what the last renewal left: a grant or
        keepalive (TTL > 0) that completed before the call was invoked renewed the lease no
        earlier than its own invocation r, so on every leader's clock it lives until r + TTL
        or later (a new leader restarts the clock later still), and the answer, computed no
        later than the call's completion d, is at least floor(r + TTL - d) whole seconds
        (etcd truncates); -1 (gone) is too little unless a revoke of the lease was invoked
        before (``lease:timetolive-remaining``). Not judged across clock faults."""
        revokes = _revoke_invocations(calls)
        for c in calls:
            done = c.completion
            lease = c.invoke.value
            if (c.f != "lease-timetolive" or done is None or done.type != "ok" or not isinstance(lease, int)
                    or not isinstance(done.value, int) or lease not in ttl):
                continue
            t_inv, t_done = (c.invoke.time or 0) / NS, (done.time or 0) / NS
            prior = [r[0] for r in renewals.get(lease, []) if r[1] < t_inv]
            if not prior or any(p < done.position for p in revokes.get(lease, [])):
                continue
            r_inv = max(prior)
            least = math.floor(r_inv + ttl[lease] - t_done + 1e-9)
            if least <= 0 or done.value >= least:
                continue  # (with nothing left, expired (0) or gone (-1) are both right)
            if any(a < t_done and b > r_inv for a, b in clock):
                continue
            add("lease:timetolive-remaining", f"TimeToLive of lease {lease} (TTL {ttl[lease]} s) answered "
                f"{done.value} at {t_done:.3f} s, but a renewal invoked at {r_inv:.3f} s (completed before the "
                f"call was invoked) keeps it alive at least {max(least, 0)} s more", [done.id], lease=lease,
                term=done.extra.get("term"))

    @staticmethod
    def _check_time_to_live(calls: Sequence[Call], ttl: dict[int, int], revoked: dict[int, Op],
                            add: Callable[..., None]) -> None:
        """LeaseTimeToLive answers (``lease-timetolive``: value the lease id; an ok completion's
        value the remaining TTL, ``granted_ttl`` and ``keys``, the attached keys), by etcd's
        API: a lease whose revoke completed before the call was invoked is gone (TTL -1:
        ``lease:timetolive-after-revoke``); a live lease (TTL >= 0) reports the TTL it was
        granted (``lease:timetolive-granted``) and its attached keys: every key whose put with
        this lease completed before the call was invoked, and only keys a put with this lease
        was invoked for before the call completed (``lease:timetolive-keys``; a key some other
        write may have changed since is not judged: a put without this lease, a delete, a txn)."""
        puts: dict[tuple[int, str], list[Call]] = {}  # (lease, key) -> puts of key with lease
        others: dict[str, list[Call]] = {}  # key -> other writes of it (put without that lease, delete)
        blanket: list[Call] = []  # writes whose keys the history does not name one by one
        for c in calls:
            if c.f in ("txn", "delete-range", "cas") and (c.completion is None or c.completion.type != "fail"):
                blanket.append(c)
            if c.f not in ("put", "delete") or c.invoke.key is None:
                continue
            lease = c.invoke.extra.get("lease")
            if c.f == "put" and isinstance(lease, int) and lease:
                puts.setdefault((lease, str(c.invoke.key)), []).append(c)
            if c.completion is None or c.completion.type != "fail":
                others.setdefault(str(c.invoke.key), []).append(c)
        for c in calls:
            done = c.completion
            if c.f != "lease-timetolive" or done is None or done.type != "ok" or not isinstance(c.invoke.value, int):
                continue
            lease, remaining = c.invoke.value, done.value
            if not isinstance(remaining, int):
                continue
            rv = revoked.get(lease)
            if rv is not None and rv.position < c.invoke.position:
                if remaining != -1:
                    add("lease:timetolive-after-revoke", f"TimeToLive of lease {lease} (op {done.id}) answered TTL "
                        f"{remaining} after its revoke (op {rv.id}) completed: the lease is gone (TTL -1)",
                        [done.id, rv.id], lease=lease)
                continue
            if remaining < 0:
                continue
            granted = done.extra.get("granted_ttl")
            if lease in ttl and isinstance(granted, int) and granted != ttl[lease]:
                add("lease:timetolive-granted", f"TimeToLive of lease {lease} (op {done.id}) answered granted TTL "
                    f"{granted}; the grant answered {ttl[lease]}", [done.id], lease=lease)
            listed = done.extra.get("keys")
            if not isinstance(listed, list):
                continue
            start, end = c.invoke.position, done.position
            if any(b.invoke.position < end for b in blanket):
                continue
            shown = {str(k) for k in listed}
            keys = {k for (ls, k) in puts if ls == lease} | shown
            for key in sorted(keys):
                mine = puts.get((lease, key), [])
                attached = [p for p in mine if p.completion is not None and p.completion.type == "ok"
                            and p.completion.position < start]
                invoked = [p for p in mine if p.invoke.position < end]
                if key in shown and not invoked:
                    why = "no put of it with this lease was invoked before the call completed"
                elif key not in shown and attached:
                    first = min(p.invoke.position for p in attached)
                    if any(o.invoke.position > first and o.invoke.position < end and o not in mine
                           for o in others.get(key, [])):
                        continue  # another write of the key since may have detached it
                    why = f"its put with this lease (op {attached[-1].id}) completed before the call was invoked"
                else:
                    continue
                add("lease:timetolive-keys", f"TimeToLive of lease {lease} (op {done.id}) lists keys "
                    f"{sorted(shown)}: {'it lists' if key in shown else 'it misses'} {key}, but {why}",
                    [done.id], lease=lease, key=key)

    def summary_lines(self, result: Mapping[str, Any], op_text: Callable[[Any], str]) -> list[str]:
        parts = result.get("bound_parts") or {}
        how = " + ".join(f"{k} {v:g}" for k, v in parts.items() if k != "bound")
        head = (f"    {result.get('leases', 0)} leases, {result.get('keepalives', 0)} keepalives, "
                f"{result.get('revokes', 0)} revokes, {result.get('expiries_seen', 0)} expiries seen; "
                + (f"expiry bound TTL + {result['bound_seconds']:g} s" + (f" ({how})" if how else "")
                   if result.get("bound_seconds") is not None
                   else "no expiry bound given (options.extra lease_bound): late expiry not checked"))
        lines = [head]
        if result.get("reads_without_term"):
            lines.append(f"    {result['reads_without_term']} leased keys read without a raft term: their "
                         "elections are unbounded, late expiry not judged there")
        return [*lines, *super().summary_lines(result, op_text)]
