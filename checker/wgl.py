"""Depth-first Wing–Gong/Lowe search with memoisation: the witness-finder of the portfolio.

The breadth-first search (``kvcheck.checker.search``) keeps every configuration and is the
one that proves a history illegal and names the first op that cannot be linearized. When
many calls never complete (indeterminate writes that may take effect at any later time),
its frontier of configurations can grow without bound although a linearization is easy to
find. Depth-first search, as Lowe's WGL and Porcupine do it, commits greedily instead: it
walks the history's events in order, linearizes the first call it can (checking the memo of
(linearized set as a bitset, interned state) so no configuration is explored twice), and
backtracks when it meets the return of a call it has not linearized. Events are kept in a
doubly linked list; linearizing a call unlinks its call and return events ("lift"), and
backtracking relinks them in reverse order ("unlift").

Reaching the end of the list means every call that returned has been linearized (calls that
never returned may stay out): the history is linearizable. Backtracking past the first
choice means it is not. Both answers are exact; the portfolio in
``kvcheck.checker.linearizable`` runs this search beside the breadth-first one on keys that
take long and takes the first answer.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Hashable, Sequence

from kvcheck.checker.models import Model
from kvcheck.checker.search import YIELD_EVERY, Entry, Search, SearchOutcome


class DepthFirstSearch:
    """WGL over ``entries``, sharing state interning and transitions with a ``Search``."""

    def __init__(self, model: Model, entries: Sequence[Entry], initial: Hashable) -> None:
        self.entries = list(entries)
        self.shared = Search(model, entries, initial)  # interning + memoised transitions
        self.steps = 0
        self.memo_size = 0

    def run(self) -> Generator[None, None, SearchOutcome]:
        entries = self.entries
        n = len(entries)
        events: list[tuple[float, int, int]] = []
        for i, en in enumerate(entries):
            events.append((en.start, 0, i))
            if en.end != math.inf:
                events.append((en.end, 1, i))
        events.sort()
        m = len(events)
        head = m  # sentinel
        nxt = [*range(1, m + 1), -1]
        prv = [*(head if i == 0 else i - 1 for i in range(m)), -1]
        nxt[head] = 0 if m else -1
        if m:
            nxt[m - 1] = -1
        kind = [k for _, k, _ in events]
        entry = [i for _, _, i in events]
        call_ev = [0] * n
        ret_ev = [-1] * n
        for idx, (_, k, i) in enumerate(events):
            if k == 0:
                call_ev[i] = idx
            else:
                ret_ev[i] = idx

        def unlink(ev: int) -> None:
            p, q = prv[ev], nxt[ev]
            nxt[p] = q
            if q != -1:
                prv[q] = p

        def relink(ev: int) -> None:
            p, q = prv[ev], nxt[ev]
            nxt[p] = ev
            if q != -1:
                prv[q] = ev

        step = self.shared.step
        state = self.shared.intern(self.shared.initial)
        linearized = 0
        memo: set[tuple[int, int]] = set()
        stack: list[tuple[int, int]] = []  # (entry, state before it)
        ev = nxt[head]
        steps = 0
        while ev != -1:
            steps += 1
            if steps >= YIELD_EVERY:
                self.steps += steps
                steps = 0
                self.memo_size = len(memo)
                yield
            e = entry[ev]
            if kind[ev] == 0:
                r = step(state, e)
                if r >= 0:
                    lin2 = linearized | (1 << e)
                    key = (lin2, r)
                    if key not in memo:
                        memo.add(key)
                        stack.append((e, state))
                        linearized = lin2
                        state = r
                        unlink(call_ev[e])
                        if ret_ev[e] >= 0:
                            unlink(ret_ev[e])
                        ev = nxt[head]
                        continue
                ev = nxt[ev]
            else:  # the return of a call not yet linearized: backtrack
                if not stack:
                    self.steps += steps
                    return SearchOutcome(False, e, [], 0, self.steps)
                e2, state = stack.pop()
                linearized &= ~(1 << e2)
                if ret_ev[e2] >= 0:
                    relink(ret_ev[e2])
                relink(call_ev[e2])
                ev = nxt[call_ev[e2]]
        self.steps += steps
        return SearchOutcome(True, None, [], 0, self.steps)
