"""The dependency graph of the transactional checker: edges, strongly connected components
and short cycles of a given shape.

Why: Elle's insight is that a history of transactions is serializable iff the graph of
their dependencies (ww, wr, rw inferred from what clients read; process and real-time order
from when they ran) has no cycle, and that a cycle, read edge by edge, is an explanation a
user can check by hand. This module holds the graph half of that; ``kvcheck.checker.txn``
infers the edges from a history and names the cycles.

How: nodes are integers (the transactions first, then the real-time points). Each node has
a dict successor -> bit mask of edge kinds (one entry per pair, however many reasons).
Real time is encoded with a chain of time points (CHECKER-ALGORITHMS §5): a transaction
points to the point after its completion, points form a chain, a point points to every
transaction invoked after it; so "A completed before B began" is a path A -> p ... -> B and
the graph has O(n) edges instead of O(n²). Strongly connected components come from an
iterative Tarjan (no recursion limit). Inside a component, ``find_cycle`` runs a
breadth-first search from the head of one "special" edge back to its tail over the allowed
edge kinds: the shortest such cycle, found in O(V + E) per special edge; a search may carry
whether the last edge was an anti-dependency and whether one was seen, which finds cycles
with two or more rw edges, never adjacent ones for G-nonadjacent. Searches stop at a deadline (``Budget``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

WW, WR, RW, PROCESS, REALTIME = 1, 2, 4, 8, 16
DATA = WW | WR | RW
ALL = DATA | PROCESS | REALTIME
EDGE_NAMES = {WW: "ww", WR: "wr", RW: "rw", PROCESS: "process", REALTIME: "rt"}
# When an edge has several kinds, the one shown: data before order, rw last (so a cycle
# is named by the strongest anomaly its edges prove).
LABEL_ORDER = (WW, WR, PROCESS, REALTIME, RW)


class OutOfTime(Exception):
    """A search ran past its ``Budget``."""


class Budget:
    """A deadline checked every few hundred steps (``tick``)."""

    def __init__(self, seconds: float | None, overall_deadline: float = float("inf")) -> None:
        self.seconds = seconds
        own = time.monotonic() + seconds if seconds is not None else float("inf")
        self.deadline = min(own, overall_deadline)
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1
        if self.steps & 255 == 1 and time.monotonic() > self.deadline:
            raise OutOfTime()


class Graph:
    """Nodes 0..n-1; ``succ[u]`` maps each successor to the kinds of edge u -> v."""

    def __init__(self, n: int) -> None:
        self.succ: list[dict[int, int]] = [{} for _ in range(n)]

    def __len__(self) -> int:
        return len(self.succ)

    def add_node(self) -> int:
        self.succ.append({})
        return len(self.succ) - 1

    def add(self, u: int, v: int, kind: int) -> None:
        if u != v:
            d = self.succ[u]
            d[v] = d.get(v, 0) | kind

    def edge_count(self) -> int:
        return sum(len(d) for d in self.succ)


def tarjan(graph: Graph, budget: Budget | None = None, *, mask: int = ALL,
           members: Iterable[int] | None = None) -> list[list[int]]:
    """Strongly connected components with more than one node (iterative Tarjan), over the
    edges of kinds ``mask`` between ``members`` (default: the whole graph)."""
    succ = graph.succ
    n = len(succ)
    index = [-1] * n
    low = [0] * n
    on_stack = [False] * n
    stack: list[int] = []
    out: list[list[int]] = []
    counter = 0
    inside: set[int] | None = None if members is None else set(members)

    def edges(v: int) -> Iterable[int]:
        if mask == ALL and inside is None:
            return iter(succ[v])
        return (w for w, m in succ[v].items() if m & mask and (inside is None or w in inside))

    roots: Iterable[int] = range(n) if inside is None else sorted(inside)
    for root in roots:
        if index[root] != -1:
            continue
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack[root] = True
        work: list[tuple[int, Iterable[int]]] = [(root, edges(root))]
        while work:
            if budget is not None:
                budget.tick()
            v, it = work[-1]
            advanced = False
            for w in it:
                if index[w] == -1:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack[w] = True
                    work.append((w, edges(w)))
                    advanced = True
                    break
                if on_stack[w] and index[w] < low[v]:
                    low[v] = index[w]
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                if low[v] < low[parent]:
                    low[parent] = low[v]
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack[w] = False
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


@dataclass(frozen=True, slots=True)
class Step:
    """One edge of a cycle as found: ``kind`` is the single kind it stands for."""

    src: int
    dst: int
    kind: int


def label(mask: int, allowed: int) -> int:
    for k in LABEL_ORDER:
        if mask & allowed & k:
            return k
    return 0


def find_cycle(graph: Graph, members: set[int] | None, special: int, allowed: int,
               budget: Budget, *, nonadjacent_rw: bool = False, more_rw: bool = False,
               start_nodes: Iterable[int] | None = None) -> list[Step] | None:
    """A shortest cycle through one edge of a ``special`` kind whose other edges are of
    ``allowed`` kinds, inside ``members`` (a component; None: anywhere).

    With ``more_rw`` the special edge is rw and the path back must hold another rw edge (a
    cycle with at least two); with ``nonadjacent_rw`` besides, no two rw edges are adjacent
    around the cycle (G-nonadjacent). Such a cycle lies inside one component of the
    ``special | allowed`` edges, so only special edges inside one are tried, and one
    breadth-first search from each head serves every special edge into it. Returns the steps
    or None. Raises OutOfTime when the budget runs out.
    """
    succ = graph.succ
    region = members if members is not None else set(range(len(succ)))
    comp_of: dict[int, int] = {}
    comp_sets = [set(c) for c in tarjan(graph, budget, mask=special | allowed, members=region)]
    for i, comp in enumerate(comp_sets):
        for x in comp:
            comp_of[x] = i
    tails_of: dict[int, list[int]] = {}
    nodes = start_nodes if start_nodes is not None else sorted(region)
    for u in nodes:
        cu = comp_of.get(u)
        if cu is None:
            continue
        for v, mask in succ[u].items():
            if mask & special and comp_of.get(v) == cu:
                tails_of.setdefault(v, []).append(u)
    for v, tails in tails_of.items():
        budget.tick()
        sub = comp_sets[comp_of[v]]
        if more_rw:
            found = _bfs_rw(graph, sub, v, set(tails), allowed, budget, nonadjacent_rw)
        else:
            found = _bfs(graph, sub, v, set(tails), allowed, budget)
        if found is not None:
            u, path = found
            return [Step(u, v, label(succ[u][v], special)), *path]
    return None


def _bfs(graph: Graph, members: set[int] | None, src: int, dsts: set[int], allowed: int,
         budget: Budget) -> tuple[int, list[Step]] | None:
    """The nearest of ``dsts`` from src over ``allowed`` edges inside ``members``, and the
    path to it."""
    succ = graph.succ
    if src in dsts:
        return src, []
    parent: dict[int, int] = {src: -1}
    queue = deque([src])
    while queue:
        budget.tick()
        u = queue.popleft()
        for v, mask in succ[u].items():
            if not mask & allowed or v in parent or (members is not None and v not in members):
                continue
            parent[v] = u
            if v in dsts:
                return v, _unwind_plain(graph, parent, v, allowed)
            queue.append(v)
    return None


def _bfs_rw(graph: Graph, members: set[int] | None, src: int, dsts: set[int], allowed: int,
            budget: Budget, nonadjacent: bool) -> tuple[int, list[Step]] | None:
    """The nearest of ``dsts`` from src by a path holding at least one rw edge (the special
    rw edge dst -> src closes the cycle). States are (node, last edge was rw, an rw edge
    seen); with ``nonadjacent`` the path neither starts nor ends with rw nor takes two rw
    in a row."""
    succ = graph.succ
    start = (src, True, False)
    parents: dict[tuple[int, bool, bool], tuple[tuple[int, bool, bool], int] | None] = {start: None}
    queue: deque[tuple[int, bool, bool]] = deque([start])
    non_rw = allowed & ~RW
    while queue:
        budget.tick()
        state = queue.popleft()
        u, last_rw, seen_rw = state
        for v, mask in succ[u].items():
            if v == src or (members is not None and v not in members):
                continue
            options: list[tuple[tuple[int, bool, bool], int]] = []
            if mask & non_rw:
                options.append(((v, False, seen_rw), label(mask, non_rw)))
            if mask & allowed & RW and not (nonadjacent and last_rw):
                options.append(((v, True, True), RW))
            for nxt, kind in options:
                if nxt in parents:
                    continue
                parents[nxt] = (state, kind)
                if nxt[0] in dsts and nxt[2] and not (nonadjacent and nxt[1]):
                    steps: list[Step] = []
                    cur = nxt
                    while True:
                        entry = parents[cur]
                        if entry is None:
                            break
                        prev, k = entry
                        steps.append(Step(prev[0], cur[0], k))
                        cur = prev
                    steps.reverse()
                    if len({st.dst for st in steps}) != len(steps):
                        return None  # the walk repeats a node: its simple cycles are other classes
                    return nxt[0], steps
                queue.append(nxt)
    return None


def _unwind_plain(graph: Graph, parent: dict[int, int], dst: int, allowed: int) -> list[Step]:
    steps: list[Step] = []
    v = dst
    while parent[v] != -1:
        u = parent[v]
        steps.append(Step(u, v, label(graph.succ[u][v], allowed)))
        v = u
    steps.reverse()
    return steps


def any_cycle(graph: Graph, members: set[int], start: int) -> list[Step] | None:
    """Some shortest cycle through ``start`` inside ``members``, over every edge kind:
    always found when ``members`` is a strongly connected component holding ``start``.
    Not bounded by a budget: one breadth-first search, O(V + E)."""
    unbounded = Budget(None)
    for v, mask in graph.succ[start].items():
        if v in members:
            found = _bfs(graph, members, v, {start}, ALL, unbounded)
            if found is not None:
                return [Step(start, v, label(mask, ALL)), *found[1]]
    return None
