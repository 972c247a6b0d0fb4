"""The exact linearizability search for one object (one key): a just-in-time breadth-first
search over configurations, in the style of Lowe's JIT graph search and Knossos' ``linear``.

A configuration is (the set of open calls already linearized, the model state). The search
walks the history's events in order and keeps only the current frontier of configurations:

- an invocation opens a call (it gets a small "slot" number: masks stay small ints);
- a return of call X requires X linearized in every configuration: configurations that have
  not yet linearized it are extended by linearizing open calls one at a time until X is in
  (the fewest commitments possible); X's slot is then freed. No configuration left means X is
  the first op that cannot be linearized (what Knossos reports as ``:op``).

Exact reductions that keep the frontier small (CHECKER-ALGORITHMS §7):

- states are interned into ints and transitions memoised per (state, call);
- read-only greedy: an open read-only call legal in the current state is linearized at once
  (any valid continuation can be reordered to put it first), so configurations are saturated;
- identical open calls (same action) are linearized in order of their return: the one that
  returns first is never worse (exchange argument), so only one per class is tried;
- dominance: calls with unknown outcome (info, never completed) are optional forever, so a
  configuration that linearized a subset of another's optional calls, with the same state and
  the same required calls, makes the other redundant; only the antichain of minimal optional
  sets is kept;
- dead-value pruning (when the caller passes ``observers``, i.e. written values are unique):
  a state-changing step is skipped while the current value still has a call to come that
  must see it, since a unique value never comes back. It may notice a violation at an
  earlier return than the first op that cannot be linearized, so counterexamples are
  searched without it;
- a visited set that grows past SHARD_AT entries is split into shards, so no single dict
  resize delays the deadline check.

The search is a generator that yields every few hundred steps so the caller can interleave
keys and enforce time and memory bounds; it returns a ``SearchOutcome``.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Generator, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kvcheck.checker.history import Call
from kvcheck.checker.models import INCONSISTENT, Action, Model

YIELD_EVERY = 256  # steps between yields to the scheduler (each step is a few microseconds)


@dataclass(slots=True)
class Entry:
    """One call as the search sees it: its action and its interval in event positions."""

    call: Call
    action: Action
    start: float
    end: float  # math.inf for info / never completed
    read_only: bool


@dataclass(slots=True)
class SearchOutcome:
    valid: bool
    failed: int | None = None  # entry index of the op that could not be linearized
    # the frontier just before the failing return: (mask of linearized entry indices as a
    # frozenset, state, last linearized entry index or None)
    frontier: list[tuple[frozenset[int], Any, int | None]] = field(default_factory=list)
    max_frontier: int = 0
    steps: int = 0


def _insert(store: dict[tuple[int, int], list[int]], req: int, opt: int, sid: int) -> bool:
    """Add (req, opt, sid) to an antichain store keyed by (req, sid) over optional masks.
    False when an existing entry dominates it (its optional set is a subset of opt)."""
    key = (req, sid)
    opts = store.get(key)
    if opts is None:
        store[key] = [opt]
        return True
    for o in opts:
        if o & opt == o:
            return False
    opts[:] = [o for o in opts if o & opt != opt]
    opts.append(opt)
    return True


SHARD_AT = 1 << 16  # a visited set this large is split, so no single dict resize is slow
SHARD_MASK = 255


def _shard(store: dict[tuple[int, int], list[int]]) -> list[dict[tuple[int, int], list[int]]]:
    shards: list[dict[tuple[int, int], list[int]]] = [{} for _ in range(SHARD_MASK + 1)]
    for (req, sid), opts in store.items():
        shards[(req ^ sid) & SHARD_MASK][(req, sid)] = opts
    return shards


def _dead(obs: list[int], mask: int, now: float, entries: Sequence[Entry], slot_of: list[int]) -> bool:
    """Whether one of ``obs`` has not returned yet (at event ``now``) and is not linearized
    in ``mask``: then the current state must not change yet."""
    for o in obs:
        if entries[o].end >= now:
            slot = slot_of[o]
            if slot < 0 or entries[o].start > now or not (mask >> slot) & 1:
                return True
    return False


class Search:
    """The exact search over ``entries`` (one key), starting from ``initial`` state."""

    def __init__(self, model: Model, entries: Sequence[Entry], initial: Hashable,
                 *, keep_last: bool = False, observers: dict[Any, list[int]] | None = None) -> None:
        self.model = model
        # dead-value pruning (unique values only): state -> entries that must see that state;
        # a state-changing step is pointless while one of them is still to come
        self.observers = observers
        self.entries = list(entries)
        self.initial = initial
        self.keep_last = keep_last
        self.states: list[Any] = []
        self.sid_of: dict[Any, int] = {}
        self.trans: dict[int, int] = {}
        self.steps = 0
        self.frontier_size = 1  # (req, state) groups in the frontier, for diagnostics
        self.max_frontier = 1  # the largest frontier so far (reported when a key times out)
        self.pending = 0  # configurations queued in the current return's closure
        self.events_done = 0.0
        self.n = len(self.entries)
        self.classes: dict[Any, int] = {}
        self.class_of = [self._class(e.action) for e in self.entries]

    def _class(self, action: Action) -> int:
        return self.classes.setdefault(action, len(self.classes))

    def intern(self, state: Any) -> int:
        sid = self.sid_of.get(state)
        if sid is None:
            sid = len(self.states)
            self.states.append(state)
            self.sid_of[state] = sid
        return sid

    def step(self, sid: int, eidx: int) -> int:
        """The state id after entry ``eidx`` in state ``sid``, or -1 when rejected."""
        k = sid * self.n + eidx
        r = self.trans.get(k)
        if r is None:
            nxt = self.model.step(self.states[sid], self.entries[eidx].action)
            r = -1 if nxt is INCONSISTENT else self.intern(nxt)
            self.trans[k] = r
        return r

    def run(self) -> Generator[None, None, SearchOutcome]:
        entries = self.entries
        inf = math.inf
        keep_last = self.keep_last
        events: list[tuple[float, int, int]] = []
        for i, e in enumerate(entries):
            events.append((e.start, 0, i))
            if e.end != inf:
                events.append((e.end, 1, i))
        events.sort()

        slot_of = [-1] * self.n
        entry_at: dict[int, int] = {}  # slot -> entry
        free: list[int] = []
        next_slot = 0
        opt_all = 0  # slots of open calls with unknown outcome (never return)
        open_ro: list[int] = []  # slots of open read-only calls
        # class -> open slots of non-read-only calls, sorted by the call's return
        open_rw: dict[int, list[int]] = {}
        slot_end: dict[int, float] = {}
        last: dict[tuple[int, int, int], int | None] = {}  # (req, opt, sid) -> last entry (keep_last)

        init_sid = self.intern(self.initial)
        frontier: dict[tuple[int, int], list[int]] = {(0, init_sid): [0]}
        max_frontier = 1
        steps = 0
        step = self.step
        observers = self.observers
        states = self.states

        trans = self.trans
        n = self.n

        def saturate(mask: int, sid: int) -> int:
            for s in open_ro:
                b = 1 << s
                if not mask & b:
                    ei = entry_at[s]
                    r = trans.get(sid * n + ei)
                    if r is None:
                        r = step(sid, ei)
                    if r >= 0:
                        mask |= b
            return mask

        for pos, kind, eidx in events:
            e = entries[eidx]
            if kind == 0:  # invocation: open the call
                if free:
                    slot = free.pop()
                else:
                    slot = next_slot
                    next_slot += 1
                slot_of[eidx] = slot
                entry_at[slot] = eidx
                bit = 1 << slot
                if e.end == inf:
                    opt_all |= bit
                if e.read_only:
                    open_ro.append(slot)
                    # greedy: linearize it now wherever it is legal
                    new: dict[tuple[int, int], list[int]] = {}
                    for (req, sid), opts in frontier.items():
                        steps += len(opts)
                        if steps >= YIELD_EVERY:
                            self.steps += steps
                            steps = 0
                            yield
                        r = trans.get(sid * n + eidx)
                        if r is None:
                            r = step(sid, eidx)
                        legal = r >= 0
                        for opt in opts:
                            if legal:
                                if bit & opt_all:
                                    nreq, nopt = req, opt | bit
                                else:
                                    nreq, nopt = req | bit, opt
                            else:
                                nreq, nopt = req, opt
                            if _insert(new, nreq, nopt, sid) and keep_last:
                                lk = last.get((req, opt, sid))
                                last[(nreq, nopt, sid)] = eidx if legal else lk
                    frontier = new
                else:
                    slot_end[slot] = e.end
                    lst = open_rw.get(self.class_of[eidx])
                    if lst is None:
                        open_rw[self.class_of[eidx]] = [slot]
                    else:  # keep identical calls in order of their return
                        bisect.insort(lst, slot, key=slot_end.__getitem__)
                if steps >= YIELD_EVERY:
                    self.steps += steps
                    steps = 0
                    yield
                continue

            # return of entry eidx: it must be linearized in every configuration
            slot = slot_of[eidx]
            bit = 1 << slot
            keep = ~bit
            new = {}
            todo: list[tuple[int, int, int | None]] = []
            for (req, sid), opts in frontier.items():
                steps += len(opts)
                if steps >= YIELD_EVERY:
                    self.steps += steps
                    steps = 0
                    yield
                if req & bit:  # clearing a bit all of them have keeps keys distinct
                    new[(req & keep, sid)] = opts
                    if keep_last:
                        for opt in opts:
                            last[(req & keep, opt, sid)] = last.get((req, opt, sid))
                else:
                    for opt in opts:
                        todo.append((req | opt, sid, last.get((req, opt, sid)) if keep_last else None))
            if todo:
                # closure: linearize open calls until eidx is in
                visited: dict[tuple[int, int], list[int]] = {}
                shards: list[dict[tuple[int, int], list[int]]] | None = None
                queue: deque[tuple[int, int]] = deque()
                for mask, sid, _lk in todo:
                    if _insert(visited, mask & ~opt_all, mask & opt_all, sid):
                        queue.append((mask, sid))
                heads_cache: list[int] = []
                for lst in open_rw.values():
                    heads_cache.extend(lst)
                class_of = self.class_of
                while queue:
                    mask, sid = queue.popleft()
                    seen_classes: set[int] = set()
                    for s in heads_cache:
                        b = 1 << s
                        if mask & b:
                            continue
                        ei = entry_at[s]
                        c = class_of[ei]
                        if c in seen_classes:
                            continue  # identical calls: only the earliest-returning one
                        seen_classes.add(c)
                        steps += 1
                        r = trans.get(sid * n + ei)
                        if r is None:
                            r = step(sid, ei)
                        if r < 0:
                            continue
                        if observers is not None and r != sid:
                            obs = observers.get(states[sid])
                            if obs and _dead(obs, mask | b, pos, entries, slot_of):
                                continue  # the current value still has an observer to come
                        m2 = saturate(mask | b, r)
                        if m2 & bit:
                            m2 &= keep
                            if _insert(new, m2 & ~opt_all, m2 & opt_all, r) and keep_last:
                                last[(m2 & ~opt_all, m2 & opt_all, r)] = ei
                        else:
                            req2 = m2 & ~opt_all
                            if shards is None:
                                fresh = _insert(visited, req2, m2 & opt_all, r)
                                if len(visited) > SHARD_AT:
                                    shards = _shard(visited)
                            else:
                                fresh = _insert(shards[(req2 ^ r) & SHARD_MASK], req2, m2 & opt_all, r)
                            if fresh:
                                queue.append((m2, r))
                    if steps >= YIELD_EVERY:
                        self.steps += steps
                        steps = 0
                        self.pending = len(queue)
                        yield
                self.pending = 0
                if not new:
                    self.steps += steps
                    fr = []
                    for mask, sid, lk in todo:
                        lin = frozenset(entry_at[s] for s in entry_at if mask >> s & 1)
                        fr.append((lin, self.states[sid], lk))
                    return SearchOutcome(False, eidx, fr, max_frontier, self.steps)
            # free the slot
            del entry_at[slot]
            free.append(slot)
            if e.read_only:
                open_ro.remove(slot)
            else:
                open_rw[self.class_of[eidx]].remove(slot)
            frontier = new
            self.frontier_size = len(new)
            self.events_done = pos
            if len(new) > max_frontier:
                max_frontier = self.max_frontier = len(new)
            if steps >= YIELD_EVERY:
                self.steps += steps
                steps = 0
                yield
        self.steps += steps
        return SearchOutcome(True, None, [], max_frontier, self.steps)


def run_to_end(gen: Generator[None, None, SearchOutcome], check: Any = None) -> SearchOutcome:
    """Drive a search generator to its outcome; ``check()`` runs at every yield (it may raise
    to abandon the search, e.g. on a deadline)."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
        if check is not None:
            check()
