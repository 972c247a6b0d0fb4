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

``check_appends`` does the same for kv keys (get/put/append, CHECKER-ALGORITHMS §6): a
get shows every append since the last put, in order, so each append is a cas from the list
before it and the key becomes a cas-register with unique values (see "Append chains" below).

``check_unique`` returns (True, None) / (False, reason) when decided, or None when the fast
path does not apply (values repeat, an action it does not know); the caller then falls back
to the exact search. ``first_failing_end`` finds the first return event that cannot be
linearized by binary search over prefixes (linearizability is prefix-closed).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

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


def check_unique(entries: Sequence[Entry], initial: Any, witness: list[int] | None = None,
                 *, prove_valid: bool = True) -> tuple[bool, str | None] | None:
    """Decide a register / cas-register key with unique written values, or None. When it
    finds a violation and ``witness`` is a list, the entries that show it are added to it
    (the read of a value nobody wrote; the two cas that replaced one value; the ops that
    bound two zones that cannot both hold): a seed for the minimal failing sub-history.
    ``prove_valid=False`` skips the witness of a valid history with compare-failed cas
    (None instead), for callers that only need violations."""
    def seen(*found: int | None) -> None:
        if witness is not None:
            witness.extend(i for i in found if i is not None)
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
                seen(i)
                return False, f"op {entries[i].call.id} read {v!r}, which nobody wrote"
            reads.setdefault(v, []).append(i)
        elif a.f == "cas":
            old = a.value[0]
            if old != initial and old not in producer:
                seen(i)
                return False, f"op {entries[i].call.id} cas from {old!r}, which nobody wrote"
            if old in consumer:
                j = consumer[old]
                seen(j, i, producer.get(old))
                return False, (f"ops {entries[j].call.id} and {entries[i].call.id} both replaced "
                               f"{old!r}, which was written once")
            consumer[old] = i

    # chains from each head: the initial value (virtual write at -inf) and each blind write
    # (start, end, name, the ops whose return and invocation bound the zone)
    zones_fwd: list[tuple[float, float, str, int | None, int | None]] = []
    zones_bwd: list[tuple[float, float, str, int | None, int | None]] = []
    chains: list[tuple[list[int], float, float]] = []  # (ops in chain order, f, s)
    in_chain = 0
    heads: list[tuple[Any, int | None]] = [(initial, None)]
    heads += [(entries[i].action.value, i) for i in ops if entries[i].action.f == "write"]
    for v0, head in heads:
        t = NEG_INF
        t_op: int | None = None  # the op whose invocation set t
        f_min = NEG_INF if head is None else math.inf
        s_max = NEG_INF
        f_op: int | None = None
        s_op: int | None = None
        v = v0
        step_op = head
        name = f"chain from {'the initial value' if head is None else f'op {entries[head].call.id}'}"
        members: list[int] = []
        while True:
            if step_op is not None:  # the producer (write or cas) of v
                e = entries[step_op]
                members.append(step_op)
                in_chain += 1
                if e.start > t:
                    t, t_op = e.start, step_op
                if t > e.end:
                    seen(t_op, step_op)
                    return False, f"op {e.call.id} ({e.action.f}) must take effect after it returned ({name})"
                if e.end < f_min:
                    f_min, f_op = e.end, step_op
                if e.start > s_max:
                    s_max, s_op = e.start, step_op
            group = reads.get(v, ())
            t_next, t_next_op = t, t_op
            for r in group:
                e = entries[r]
                members.append(r)
                in_chain += 1
                if max(t, e.start) > e.end:
                    seen(t_op, r)
                    return False, f"op {e.call.id} read {v!r} before it could have been written ({name})"
                if e.start > t_next:
                    t_next, t_next_op = e.start, r
                if e.end < f_min:
                    f_min, f_op = e.end, r
                if e.start > s_max:
                    s_max, s_op = e.start, r
            t, t_op = t_next, t_next_op
            nxt = consumer.get(v)
            if nxt is None:
                break
            step_op = nxt
            v = entries[nxt].action.value[1]
        if f_min < s_max:
            zones_fwd.append((f_min, s_max, name, f_op, s_op))
        else:
            zones_bwd.append((s_max, f_min, name, s_op, f_op))
        if members:
            chains.append((members, f_min, s_max))
    if in_chain != len(ops):
        return False, "a cycle of cas ops that no write starts"

    zones_fwd.sort()
    for (_f1, s1, n1, *ops1), (f2, _s2, n2, *ops2) in itertools.pairwise(zones_fwd):
        if f2 <= s1:
            seen(*ops1, *ops2)
            return False, f"{n1} and {n2} must both span [{f2:g}, {s1:g}]"
    starts = [z[0] for z in zones_fwd]
    for s_b, f_b, name, *ops_b in zones_bwd:
        k = bisect.bisect_right(starts, s_b) - 1
        if k >= 0 and f_b <= zones_fwd[k][1]:
            seen(*ops_b, *zones_fwd[k][3:])
            return False, f"{name} must fit inside {zones_fwd[k][2]}"
    if relaxed:
        # §4.2: the register certainly holds v from the earliest return among v's producer,
        # readers and consumer to the latest invocation among its readers and consumer; a
        # compare-failed cas from v that lies wholly inside that window cannot have failed
        for ei, e in enumerate(entries):
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
                held_from, from_op = NEG_INF, None
            elif v in producer:
                from_op = min([producer[v], *cluster], key=lambda j: entries[j].end)
                held_from = entries[from_op].end
            else:
                continue
            to_op = max(cluster, key=lambda j: entries[j].start)
            held_to = entries[to_op].start
            if held_from < e.start and e.end < held_to:
                seen(ei, from_op, to_op)
                return False, (f"op {e.call.id} failed to cas from {v!r}, but the register "
                               f"held {v!r} for its whole duration")
        if not prove_valid:
            return None
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
             zones_fwd: list[tuple[float, float, str, int | None, int | None]],
             failed_cas: list[int], initial: Any,
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


def first_failing_end(entries: Sequence[Entry], initial: Any,
                      decide: Callable[[Sequence[Entry], Any], tuple[bool, str | None] | None] | None = None,
                      ) -> int | None:
    """The entry whose return is the first event no linearization of the prefix survives,
    by binary search with ``decide`` (default ``check_unique``; None when it cannot decide)."""
    if decide is None:
        decide = check_unique
    ends = sorted((e.end, i) for i, e in enumerate(entries) if e.end != math.inf)
    lo, hi = 0, len(ends) - 1
    found: int | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        res = decide(truncate(entries, ends[mid][0]), initial)
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


# ---------------------------------------------------------------------------------------
# Append chains (CHECKER-ALGORITHMS §6): a key's string value with get/put/append (the kv
# model), when every put and append value is unique, nonempty and no value is a prefix of
# another (then a value read splits into its put and appends in exactly one way).
#
# A get names, in order, every append since the last put: a "generation". All gets of one
# generation must be prefixes of one longest list; it is the version order of that
# generation. The key then becomes a cas-register with unique values: state (h, i) is
# generation h (the put's entry, -1 for the initial value) after its first i appends; a put
# writes (h, 0); the i-th append of generation h is cas((h, i-1) -> (h, i)); a get reads
# its state. An append no get shows changed every later state of its generation, so it can
# only go last in some generation (just before a put, or at the very end): exactly where a
# write of a value nobody reads can go, so it becomes one (a backward zone, §2); one with
# unknown outcome is dropped (it may not have happened). Only the order between
# generations is unknown, and check_unique's zones decide it.

INITIAL_GENERATION = -1


class AppendState(NamedTuple):
    """A kv key's value as the append chains name it: generation ``gen`` (the put's entry,
    INITIAL_GENERATION for the initial value) after its first ``appends`` appends."""

    gen: int
    appends: int
    put: Any = None  # the put's op id (for messages only)

    def __repr__(self) -> str:
        after = "the initial value" if self.gen == INITIAL_GENERATION else f"put op {self.put}"
        return f"[{after} + {self.appends} appends]"


class _AppendValues:
    """A key's put and append values (value -> entry) and how a get's value splits into them
    (what ``reduce_appends`` and ``append_parses`` both read a get by)."""

    def __init__(self, initial: str, puts: dict[str, int], appends: dict[str, int]) -> None:
        self.initial = initial
        self.puts = puts
        self.appends = appends
        self.put_lens = sorted({len(v) for v in puts})
        self.lens = sorted({len(v) for v in appends})

    def start(self, v: str) -> tuple[int, int]:
        """Where the appends in ``v`` begin: (the put entry ``v`` starts with, or
        INITIAL_GENERATION for the initial value; the position after it); position -1 when
        ``v`` starts with neither a put's value nor a non-empty initial value."""
        if self.initial and v.startswith(self.initial):
            return INITIAL_GENERATION, len(self.initial)
        for n in self.put_lens:
            j = self.puts.get(v[:n])
            if j is not None:
                return j, n
        return INITIAL_GENERATION, (-1 if self.initial else 0)

    def append_at(self, v: str, pos: int) -> tuple[int, int] | None:
        """(the append entry whose value stands at ``pos`` in ``v``, its length), or None."""
        for n in self.lens:
            j = self.appends.get(v[pos:pos + n])
            if j is not None:
                return j, n
        return None


def _append_values(entries: Sequence[Entry], initial: Any) -> _AppendValues | None:
    """The key's put and append values when the chain reduction applies."""
    if not isinstance(initial, str):
        return None
    puts: dict[str, int] = {}
    appends: dict[str, int] = {}
    for i, e in enumerate(entries):
        a = e.action
        if a.f == "get":
            continue
        if a.f not in ("put", "append") or not isinstance(a.value, str) or not a.value:
            return None
        if a.value in puts or a.value in appends or a.value == initial:
            return None
        (puts if a.f == "put" else appends)[a.value] = i
    values = sorted([*puts, *appends, *([initial] if initial else [])])
    for x, y in itertools.pairwise(values):
        if y.startswith(x):  # a value is a prefix of another: a read may split two ways
            return None
    return _AppendValues(initial, puts, appends)


class _Generation:
    """The longest list of appends seen after one put (or the initial value)."""

    __slots__ = ("bounds", "reader", "seq", "text")

    def __init__(self) -> None:
        self.text = ""  # the appended values, concatenated
        self.seq: list[int] = []  # their entries, in order
        self.bounds: dict[int, int] = {0: 0}  # len(text prefix) -> number of appends in it
        self.reader: int | None = None  # the get that showed the longest list


def reduce_appends(entries: Sequence[Entry], initial: Any,
                   witness: list[int] | None = None) -> list[Entry] | tuple[bool, str] | None:
    """The key as a cas-register with unique values (see above), or (False, reason) when the
    gets alone prove it is not linearizable, or None when the reduction does not apply."""
    values = _append_values(entries, initial)
    if values is None:
        return None
    gens: dict[int, _Generation] = {}
    where: dict[int, tuple[int, int]] = {}  # append entry -> (generation, position from 1)
    state_of: dict[int, AppendState] = {}  # get entry -> the value it read

    def name(h: int) -> str:
        return "the initial value" if h == INITIAL_GENERATION else f"put op {entries[h].call.id}"

    def seen(*found: int | None) -> None:
        if witness is not None:
            witness.extend(i for i in found if i is not None)

    for i, e in enumerate(entries):
        a = e.action
        if a.f != "get":
            continue
        v = a.value
        if not isinstance(v, str):
            return None
        h, pos = values.start(v)
        if pos < 0:
            seen(i)
            return False, f"op {e.call.id} read {v!r}, which no put and appends make"
        g = gens.get(h)
        if g is None:
            g = gens[h] = _Generation()
        rest = v[pos:]
        if g.text.startswith(rest):
            k = g.bounds.get(len(rest))
            if k is None:
                seen(i)
                return False, f"op {e.call.id} read {v!r}, which no put and appends make"
            state_of[i] = _state(entries, h, k)
            continue
        if not rest.startswith(g.text):
            other = entries[g.reader].call.id if g.reader is not None else None
            seen(g.reader, i)
            return False, (f"ops {other} and {e.call.id} read lists after {name(h)} that neither "
                           f"extends: the appends would have to happen in two orders")
        p = len(g.text)
        while p < len(rest):
            found = values.append_at(rest, p)
            if found is None:
                seen(i)
                return False, f"op {e.call.id} read {v!r}, which no put and appends make"
            j, n = found
            if j in where:
                wh, _ = where[j]
                seen(j, i, *(r for r in (gens[wh].reader,) if r is not None))
                how = "twice" if wh == h else f"after {name(wh)} and after {name(h)}"
                return False, (f"op {e.call.id} read the value of append op {entries[j].call.id} "
                               f"{how}, but it was appended once")
            g.seq.append(j)
            where[j] = (h, len(g.seq))
            p += n
            g.bounds[p] = len(g.seq)
        g.text = rest
        g.reader = i
        state_of[i] = _state(entries, h, len(g.seq))

    out: list[Entry] = []
    for i, e in enumerate(entries):
        a = e.action
        if a.f == "get":
            act = Action("read", state_of[i], a.outcome)
        elif a.f == "put":
            act = Action("write", _state(entries, i, 0), a.outcome)
        elif i in where:
            h, k = where[i]
            act = Action("cas", (_state(entries, h, k - 1), _state(entries, h, k)), a.outcome)
        elif e.end == math.inf:
            continue  # an unobserved append that may not have happened: it can go last
        else:
            act = Action("write", ("unobserved append", i), a.outcome)
        out.append(Entry(e.call, act, e.start, e.end, e.read_only))
    return out


def append_parses(entries: Sequence[Entry], initial: Any) -> dict[int, list[int]] | None:
    """Each ok get's value split into the put (if any) and the appends it shows, as entry
    indices in order, for every get whose value splits (each on its own, whether or not the
    gets agree); None when the chain reduction does not apply."""
    values = _append_values(entries, initial)
    if values is None:
        return None
    out: dict[int, list[int]] = {}
    for i, e in enumerate(entries):
        v = e.action.value
        if e.action.f != "get" or not isinstance(v, str):
            continue
        h, pos = values.start(v)
        parts: list[int] = [] if h == INITIAL_GENERATION else [h]
        while 0 <= pos < len(v):
            found = values.append_at(v, pos)
            if found is None:
                pos = -1
            else:
                parts.append(found[0])
                pos += found[1]
        if pos >= 0:
            out[i] = parts
    return out


def check_appends(entries: Sequence[Entry], initial: Any, witness: list[int] | None = None,
                  *, prove_valid: bool = True) -> tuple[bool, str | None] | None:
    """Decide a kv key (get/put/append) by its append chains, or None when they do not apply.
    ``witness`` as for check_unique (the gets that disagree, or the zones' ops)."""
    reduced = reduce_appends(entries, initial, witness)
    if reduced is None or isinstance(reduced, tuple):
        return reduced
    found: list[int] = []
    res = check_unique(reduced, AppendState(INITIAL_GENERATION, 0), found, prove_valid=prove_valid)
    if witness is not None and found:
        index = {id(e.call): i for i, e in enumerate(entries)}
        witness.extend(index[id(reduced[i].call)] for i in found)
    if res is not None and res[1] is not None:  # name the kv ops, not the cas they became
        res = res[0], res[1].replace("(cas)", "(append)").replace("(write)", "(put)")
    return res


def _state(entries: Sequence[Entry], gen: int, appends: int) -> AppendState:
    put = None if gen == INITIAL_GENERATION else entries[gen].call.id
    return AppendState(gen, appends, put)
