"""Polynomial fast path for registers with unique written values: Gibbons–Korach zones over
cas chains (CHECKER-ALGORITHMS §2–§3).

When every written value is unique (and differs from the initial value), each read names the
write it saw and each successful cas names the value it replaced. Values then link into
chains: a blind write (or the initial value), the reads of its value, the cas that consumed
it, the reads of the new value, and so on. In any linearization a chain is one contiguous
block, so the history is linearizable exactly when

- every chain can be laid out inside its own ops' intervals (earliest placement, §3), and
- with f = the earliest return and s = the latest invocation over a chain's ops, no two
  forward zones [f, s] (f < s) intersect and no backward zone [s, f] lies inside a forward
  zone (Gibbons & Korach's conditions, restated for chains).

Calls with unknown outcome return at infinity. An indeterminate write or cas whose value a
call that certainly happened observes did happen; the others are dropped (they can go last,
or not happen at all).

A cas that failed its compare (kept only with --fail-cas-means-compare-failed) is a negative
read the zones do not model: it is left out, which makes the check a relaxation whose
"invalid" is still sound. One sound test for negative reads is added (§4.2): a failed cas
from v whose interval lies wholly inside the window in which the register certainly holds
v is a violation. "Valid" then needs a witness (§4.4, ``_witness``): one linearization built
from the chains' layout with every failed cas put where the register does not hold its old
value, checked step by step; a few layouts are tried, and when none checks out the answer
is ``None`` (undecided: the exact search decides).

``check_unique`` returns (True, None) / (False, reason) when decided, or None when the fast
path does not apply (values repeat, an action it does not know); the caller then falls back
to the exact search. ``first_failing_end`` finds the first return event that cannot be
linearized by binary search over prefixes (linearizability is prefix-closed).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from typing import Any

from kvcheck.checker.models import INCONSISTENT, Action, CasRegister
from kvcheck.checker.search import Entry

NEG_INF = -math.inf
_CAS_REGISTER = CasRegister()  # its step() replays a witness (the state is passed in)


def written(a: Action) -> Any:
    """The value a write or a cas puts in the register."""
    return a.value if a.f == "write" else a.value[1]


def unique_writers(entries: Sequence[Entry], initial: Any) -> dict[Any, int] | None:
    """Value -> the entry of the one write or not-failed cas that puts it in the register,
    when every written value is unique and differs from ``initial``; else None."""
    writers: dict[Any, int] = {}
    for i, e in enumerate(entries):
        a = e.action
        if a.f == "write" or (a.f == "cas" and a.outcome != "fail"):
            v = written(a)
            if v in writers or v == initial:
                return None
            writers[v] = i
    return writers


def check_unique(entries: Sequence[Entry], initial: Any) -> tuple[bool, str | None] | None:
    """Decide a register / cas-register key with unique written values, or None."""
    relaxed = False
    producer: dict[Any, int] = {}
    live: list[int] = []
    for i, e in enumerate(entries):
        f = e.action.f
        if f == "read":
            if e.action.outcome != "ok":
                continue
        elif f == "write":
            v = e.action.value
            if v in producer or v == initial:
                return None
            producer[v] = i
        elif f == "cas":
            if e.action.outcome == "fail":
                relaxed = True  # a negative read: not modelled here
                continue
            v = e.action.value[1]
            if v in producer or v == initial:
                return None
            producer[v] = i
        else:
            return None
        live.append(i)

    # Indeterminate writes and cas happened only if a call that certainly happened observed
    # their value (an ok read of it, or a cas that happened replacing it): a fixpoint.
    # The others are dropped: they can take effect last, or never.
    observed: set[Any] = set()
    required: set[int] = set()
    pending_by_value: dict[Any, int] = {}
    work: list[int] = []
    for i in live:
        e = entries[i]
        if e.end != math.inf:
            required.add(i)
            work.append(i)
        else:
            a = e.action
            pending_by_value[written(a)] = i
    while work:
        a = entries[work.pop()].action
        if a.f == "read":
            v = a.value
        elif a.f == "cas":
            v = a.value[0]
        else:
            continue
        if v in observed:
            continue
        observed.add(v)
        j = pending_by_value.get(v)
        if j is not None and j not in required:
            required.add(j)
            work.append(j)
    ops: list[int] = []
    for i in live:
        if i in required:
            ops.append(i)
        else:
            a = entries[i].action
            del producer[written(a)]

    reads: dict[Any, list[int]] = {}
    consumer: dict[Any, int] = {}
    for i in ops:
        a = entries[i].action
        if a.f == "read":
            v = a.value
            if v != initial and v not in producer:
                return False, f"op {entries[i].call.id} read {v!r}, which nobody wrote"
            reads.setdefault(v, []).append(i)
        elif a.f == "cas":
            old = a.value[0]
            if old != initial and old not in producer:
                return False, f"op {entries[i].call.id} cas from {old!r}, which nobody wrote"
            if old in consumer:
                j = consumer[old]
                return False, (f"ops {entries[j].call.id} and {entries[i].call.id} both replaced "
                               f"{old!r}, which was written once")
            consumer[old] = i

    # chains from each head: the initial value (virtual write at -inf) and each blind write
    zones_fwd: list[tuple[float, float, str]] = []
    zones_bwd: list[tuple[float, float, str]] = []
    chains: list[tuple[list[int], float, float]] = []  # (ops in chain order, f, s)
    in_chain = 0
    heads: list[tuple[Any, int | None]] = [(initial, None)]
    heads += [(entries[i].action.value, i) for i in ops if entries[i].action.f == "write"]
    for v0, head in heads:
        t = NEG_INF
        f_min = NEG_INF if head is None else math.inf
        s_max = NEG_INF
        v = v0
        step_op = head
        name = f"chain from {'the initial value' if head is None else f'op {entries[head].call.id}'}"
        members: list[int] = []
        while True:
            if step_op is not None:  # the producer (write or cas) of v
                e = entries[step_op]
                members.append(step_op)
                in_chain += 1
                t = max(t, e.start)
                if t > e.end:
                    return False, f"op {e.call.id} ({e.action.f}) must take effect after it returned ({name})"
                f_min = min(f_min, e.end)
                s_max = max(s_max, e.start)
            group = reads.get(v, ())
            t_next = t
            for r in group:
                e = entries[r]
                members.append(r)
                in_chain += 1
                if max(t, e.start) > e.end:
                    return False, f"op {e.call.id} read {v!r} before it could have been written ({name})"
                t_next = max(t_next, e.start)
                f_min = min(f_min, e.end)
                s_max = max(s_max, e.start)
            t = t_next
            nxt = consumer.get(v)
            if nxt is None:
                break
            step_op = nxt
            v = entries[nxt].action.value[1]
        if f_min < s_max:
            zones_fwd.append((f_min, s_max, name))
        else:
            zones_bwd.append((s_max, f_min, name))
        if members:
            chains.append((members, f_min, s_max))
    if in_chain != len(ops):
        return False, "a cycle of cas ops that no write starts"

    zones_fwd.sort()
    for (_f1, s1, n1), (f2, _s2, n2) in itertools.pairwise(zones_fwd):
        if f2 <= s1:
            return False, f"{n1} and {n2} must both span [{f2:g}, {s1:g}]"
    starts = [z[0] for z in zones_fwd]
    for s_b, f_b, name in zones_bwd:
        k = bisect.bisect_right(starts, s_b) - 1
        if k >= 0 and f_b <= zones_fwd[k][1]:
            return False, f"{name} must fit inside {zones_fwd[k][2]}"
    if relaxed:
        # §4.2: the register certainly holds v from the earliest return among v's producer,
        # readers and consumer to the latest invocation among its readers and consumer; a
        # compare-failed cas from v that lies wholly inside that window cannot have failed
        for e in entries:
            a = e.action
            if a.f != "cas" or a.outcome != "fail":
                continue
            v = a.value[0]
            cluster = list(reads.get(v, ()))
            if v in consumer:
                cluster.append(consumer[v])
            if not cluster:
                continue
            if v == initial:
                held_from = NEG_INF
            elif v in producer:
                held_from = min(entries[producer[v]].end, min(entries[j].end for j in cluster))
            else:
                continue
            held_to = max(entries[j].start for j in cluster)
            if held_from < e.start and e.end < held_to:
                return False, (f"op {e.call.id} failed to cas from {v!r}, but the register "
                               f"held {v!r} for its whole duration")
        failed_cas = [i for i, e in enumerate(entries) if e.action.f == "cas" and e.action.outcome == "fail"]
        # Lay backward chains out early; a value some failed cas cannot avoid moves its chain
        # late in the next round (held as briefly as possible), until all are placed.
        late: set[Any] = set()
        for _ in range(WITNESS_ROUNDS):
            unplaced = _witness(entries, chains, zones_fwd, failed_cas, initial, late)
            if unplaced is None:
                return True, None
            if unplaced <= late:  # no new value to move (or the final check failed): give up
                return None
            late |= unplaced
        return None
    return True, None


WITNESS_SCAN = 64  # places a failed cas may try before the witness gives up (then: search)
WITNESS_ROUNDS = 4  # layouts tried, each moving more chains late


def _witness(entries: Sequence[Entry], chains: list[tuple[list[int], float, float]],
             zones_fwd: list[tuple[float, float, str]], failed_cas: list[int], initial: Any,
             late: set[Any]) -> set[Any] | None:
    """§4.4: try to prove a history with compare-failed cas linearizable by building one
    linearization and checking it. Each chain is laid out as in Gibbons–Korach's proof (a
    forward chain inside its zone, a backward chain at one point outside every forward
    zone; each at its earliest, or at its latest when it writes a value in ``late``, so
    that a value failed cas compare against is held as briefly as possible),
    then each failed cas from v is put at a point of its interval where the register does
    not hold v. The result is a certificate only after an independent check: points never
    decrease along the order, each point lies in its call's interval, and the sequential
    register accepts every step. Returns None when certified, else the old values of the
    failed cas it could not place (empty when the check failed): the caller then tries
    another layout or runs the exact search, so this never decides "invalid"."""
    starts = [z[0] for z in zones_fwd]
    placed: list[tuple[float, int, int]] = []  # (point, chain number, entry), chain contiguous
    for c, (members, f, s) in enumerate(chains):
        go_late = bool(late) and not late.isdisjoint(_writes(entries, members))
        if f < s and go_late:  # forward, latest placement
            t = nxt = s
            backwards: list[tuple[float, int, int]] = []
            for i in reversed(members):
                e = entries[i]
                if e.action.f == "read":  # before the next producer
                    point = min(nxt, e.end)
                    t = min(t, point)
                else:  # before every read of its value
                    point = min(t, e.end)
                    t = nxt = point
                backwards.append((point, c, i))
            placed.extend(reversed(backwards))
        elif f < s:  # forward: earliest placement from the zone's start
            t = f
            last_write = t
            for i in members:
                e = entries[i]
                if e.action.f == "read":
                    point = max(last_write, e.start)
                    t = max(t, point)
                else:  # the next producer goes after every read of the value before it
                    point = max(t, e.start)
                    t = last_write = point
                placed.append((point, c, i))
        else:  # backward: one point in [s, f] outside every forward zone
            if go_late and f != math.inf:
                k = bisect.bisect_right(starts, f) - 1
                point = f if k < 0 or zones_fwd[k][1] < f else zones_fwd[k][0] - 0.5
            else:
                k = bisect.bisect_right(starts, s) - 1
                point = s if k < 0 or zones_fwd[k][1] < s else zones_fwd[k][1] + 0.5
            placed.extend((point, c, i) for i in members)
    # chains never interleave: sort by each chain's first point, keep chain order inside
    first: dict[int, float] = {}
    for point, c, _ in placed:
        first.setdefault(c, point)
    placed.sort(key=lambda p: (first[p[1]], p[1]))
    points = [p[0] for p in placed]
    order = [p[2] for p in placed]
    held: list[Any] = []  # the register after each placed op
    value = initial
    for i in order:
        a = entries[i].action
        if a.f != "read":
            value = written(a)
        held.append(value)
    after: dict[int, list[tuple[float, int]]] = {}  # order slot -> failed cas placed after it
    unplaced: set[Any] = set()
    for i in failed_cas:
        slot = _place_failed_cas(entries[i], points, held, initial)
        if slot is None:
            unplaced.add(entries[i].action.value[0])
        else:
            after.setdefault(slot[0], []).append((slot[1], i))
    if unplaced:
        return unplaced
    final: list[tuple[float, int]] = sorted(after.get(-1, []))
    for k, i in enumerate(order):
        final.append((points[k], i))
        final.extend(sorted(after.get(k, [])))
    return None if _replay(entries, final, initial) else set()


def _writes(entries: Sequence[Entry], members: list[int]) -> set[Any]:
    """The values a chain's writes and cas put in the register."""
    return {written(entries[i].action) for i in members if entries[i].action.f != "read"}


def _place_failed_cas(e: Entry, points: list[float], values: list[Any],
                      initial: Any) -> tuple[int, float] | None:
    """(k, x): put the failed cas right after the k-th placed op (-1: first of all), at point x
    in its interval and before the next op, where the register does not hold its old value."""
    old = e.action.value[0]
    k = bisect.bisect_right(points, e.start) - 1  # the last op placed at or before its start
    for _ in range(WITNESS_SCAN):
        x = max(e.start, points[k] if k >= 0 else NEG_INF)
        if x > e.end:
            return None
        nxt = points[k + 1] if k + 1 < len(points) else math.inf
        if x <= nxt and (values[k] if k >= 0 else initial) != old:
            return k, x
        k += 1
        if k >= len(points):
            return None
    return None


def _replay(entries: Sequence[Entry], final: list[tuple[float, int]], initial: Any) -> bool:
    """Check a linearization: points non-decreasing, each inside its call's interval, and
    every step legal for the cas-register model starting at ``initial``."""
    state = initial
    last = NEG_INF
    for point, i in final:
        e = entries[i]
        if point < last or not (e.start <= point <= e.end):
            return False
        last = point
        state = _CAS_REGISTER.step(state, e.action)
        if state is INCONSISTENT:
            return False
    return True


def truncate(entries: Sequence[Entry], last: float) -> list[Entry]:
    """The history cut just after event position ``last``: calls invoked later are gone,
    calls still open lose their outcome (they return at infinity; open reads observed
    nothing and are dropped)."""
    out: list[Entry] = []
    for e in entries:
        if e.start > last:
            continue
        if e.end > last:
            if e.read_only:
                continue
            out.append(Entry(e.call, e.action, e.start, math.inf, e.read_only))
        else:
            out.append(e)
    return out


def first_failing_end(entries: Sequence[Entry], initial: Any) -> int | None:
    """The entry whose return is the first event no linearization of the prefix survives,
    by binary search with ``check_unique`` (None when the fast path cannot decide)."""
    ends = sorted((e.end, i) for i, e in enumerate(entries) if e.end != math.inf)
    lo, hi = 0, len(ends) - 1
    found: int | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        res = check_unique(truncate(entries, ends[mid][0]), initial)
        if res is None:
            return None
        if res[0]:
            lo = mid + 1
        else:
            found = ends[mid][1]
            hi = mid - 1
    return found


def observers_if_unique(entries: Sequence[Entry], initial: Any) -> dict[Any, list[int]] | None:
    """For dead-value pruning in the exact search: value -> the calls that certainly must see
    it (ok reads of it, ok cas replacing it), when every written value is unique and differs
    from the initial value; else None."""
    if unique_writers(entries, initial) is None:
        return None
    observers: dict[Any, list[int]] = {}
    for i, e in enumerate(entries):
        a = e.action
        if e.end == math.inf:
            continue
        if a.f == "read":
            observers.setdefault(a.value, []).append(i)
        elif a.f == "cas" and a.outcome == "ok":
            observers.setdefault(a.value[0], []).append(i)
        elif a.f not in ("write", "cas"):
            return None
    return observers
