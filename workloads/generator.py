"""Operation generators and their combinators, Jepsen-style, driven by worker threads.

A run has ``concurrency`` worker threads; each thread runs one client process at a time
(process ids start at the thread number; when an op ends ``info`` the process is retired and
the thread continues as process ``p + concurrency``, Jepsen's convention). A thread asks the
generator for its next op with a ``Context`` (time since the phase began, thread, process,
the generator's random substream) and gets back:

- an ``OpSpec`` (f, value, key) to invoke now,
- ``Wait(until)`` — ask again at that time, or when any op completes if ``until`` is None,
- ``None`` — this generator is exhausted for this thread.

A ``Wait`` marked ``shared`` promises that any thread asking before its ``until``, whatever
completes meanwhile, gets the same wait (e.g. the rate limiter's "no op before t", which no
thread can pass): the dispatcher then stops asking the other free threads and sleeps until
then. A generator whose answer depends on the thread (``mix``, ``concurrency``,
``each_thread``, ``phases``) drops the mark of what it passes on; an unmarked wait is the
safe default for user generators.

Combinators wrap generators: ``mix`` (random choice), ``stagger``/``rate`` (spacing between
ops, shared by all threads), ``limit``, ``time_limit``, ``concurrency`` (only the first n
threads draw ops), ``once_each`` (a fixed list of ops handed out once, e.g. final reads),
``each_thread`` and ``phases`` (each phase starts when the previous one is exhausted for every
thread and none of its ops is still in flight). Generators are plain objects with state;
all randomness comes from the context's ``rng``, so a run is replayable from its seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class OpSpec:
    """An operation to invoke. ``watchers`` get ``complete()`` when it finishes."""

    f: str
    value: Any = None
    key: Any = None
    watchers: list[Generator] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Wait:
    """Ask again at ``until`` (seconds since the phase began) or as soon as any op completes,
    whichever comes first; ``until=None`` waits for a completion only."""

    until: float | None = None
    shared: bool = False  # every thread asking before ``until`` gets this same wait


def private(r: Result) -> Result:
    """``r`` without the ``shared`` mark: for combinators whose answer depends on the thread."""
    return Wait(r.until) if isinstance(r, Wait) and r.shared else r


@dataclass(slots=True)
class Context:
    time: float
    thread: int
    process: int
    threads: int
    rng: random.Random


Result = OpSpec | Wait | None


class Generator(Protocol):
    def next(self, ctx: Context) -> Result: ...

    def complete(self, ctx: Context, spec: OpSpec, outcome: str) -> None: ...


class Base:
    """Default ``complete``: nothing to track."""

    def complete(self, ctx: Context, spec: OpSpec, outcome: str) -> None:
        return None


class Fn(Base):
    """An endless generator calling ``fn(ctx)`` for each op."""

    def __init__(self, fn: Callable[[Context], OpSpec]) -> None:
        self.fn = fn

    def next(self, ctx: Context) -> Result:
        return self.fn(ctx)


class Mix(Base):
    """Each op from one of ``gens`` chosen at random (by ``weights``), skipping exhausted ones."""

    def __init__(self, gens: Sequence[Generator], weights: Sequence[float] | None = None) -> None:
        if not gens:
            raise ValueError("mix needs at least one generator")
        if weights is not None and len(weights) != len(gens):
            raise ValueError(f"mix: {len(gens)} generators but {len(weights)} weights")
        self.gens = list(gens)
        self.weights = list(weights) if weights is not None else [1.0] * len(gens)
        self.exhausted: dict[int, set[int]] = {}

    def next(self, ctx: Context) -> Result:
        exhausted = self.exhausted.setdefault(ctx.thread, set())
        tried: set[int] = set()
        waits: list[Wait] = []
        while True:
            live = [i for i in range(len(self.gens)) if i not in exhausted and i not in tried]
            if not live:
                break
            i = ctx.rng.choices(live, weights=[self.weights[j] for j in live])[0]
            tried.add(i)
            r = self.gens[i].next(ctx)
            if r is None:
                exhausted.add(i)
            elif isinstance(r, Wait):
                waits.append(r)
            else:
                return r
        return private(merge_waits(waits))  # per-thread exhausted sets: never shared


def merge_waits(waits: Sequence[Wait]) -> Wait | None:
    """The earliest of several waits (None: no wait, the generator is exhausted)."""
    if not waits:
        return None
    untils = [w.until for w in waits if w.until is not None]
    if len(untils) < len(waits):
        return Wait(min(untils)) if untils else Wait(None)
    return Wait(min(untils))


class Limit(Base):
    """At most ``n`` ops from ``gen`` (over all threads)."""

    def __init__(self, n: int, gen: Generator) -> None:
        self.remaining = n
        self.gen = gen

    def next(self, ctx: Context) -> Result:
        if self.remaining <= 0:
            return None
        r = self.gen.next(ctx)
        if isinstance(r, OpSpec):
            self.remaining -= 1
        return r


class TimeLimit(Base):
    """Ops from ``gen`` until ``seconds`` after this generator was first asked."""

    def __init__(self, seconds: float, gen: Generator) -> None:
        self.seconds = seconds
        self.gen = gen
        self.deadline: float | None = None

    def next(self, ctx: Context) -> Result:
        if self.deadline is None:
            self.deadline = ctx.time + self.seconds
        if ctx.time >= self.deadline:
            return None
        r = self.gen.next(ctx)
        if isinstance(r, Wait) and (r.until is None or r.until >= self.deadline):
            return Wait(self.deadline, r.shared)  # wake up at the deadline at the latest
        return r


class Stagger(Base):
    """Ops spaced by random intervals averaging ``dt`` seconds (uniform in [0, 2 dt]), over all
    threads together; ``rate(r, g)`` is ``stagger(1/r, g)``."""

    def __init__(self, dt: float, gen: Generator) -> None:
        if dt <= 0:
            raise ValueError(f"stagger interval must be positive, not {dt}")
        self.dt = dt
        self.gen = gen
        self.next_time: float | None = None

    def next(self, ctx: Context) -> Result:
        if self.next_time is None:
            self.next_time = ctx.time
        if ctx.time < self.next_time:
            return Wait(self.next_time, shared=True)  # no thread may start an op before it
        r = self.gen.next(ctx)
        if isinstance(r, OpSpec):
            self.next_time = max(self.next_time, ctx.time) + ctx.rng.uniform(0, 2 * self.dt)
        return r


class Concurrency(Base):
    """Only the first ``n`` threads draw ops from ``gen``; the others see it exhausted."""

    def __init__(self, n: int, gen: Generator) -> None:
        if n < 1:
            raise ValueError(f"concurrency must be at least 1, not {n}")
        self.n = n
        self.gen = gen

    def next(self, ctx: Context) -> Result:
        if ctx.thread >= self.n:
            return None
        return private(self.gen.next(ctx))


class OnceEach(Base):
    """A fixed list of ops, each handed out once to whichever thread asks first."""

    def __init__(self, specs: Sequence[OpSpec]) -> None:
        self.queue = list(specs)

    def next(self, ctx: Context) -> Result:
        if not self.queue:
            return None
        return self.queue.pop(0)


class EachThread(Base):
    """Each thread gets its own copy of the generator ``factory()`` makes."""

    def __init__(self, factory: Callable[[], Generator]) -> None:
        self.factory = factory
        self.copies: dict[int, Generator] = {}

    def next(self, ctx: Context) -> Result:
        gen = self.copies.get(ctx.thread)
        if gen is None:
            gen = self.copies[ctx.thread] = self.factory()
        return private(gen.next(ctx))


class Phases(Base):
    """Run generators one after another: phase i+1 starts when phase i is exhausted for every
    thread and none of the ops it handed out is still in flight."""

    def __init__(self, phases: Sequence[Generator]) -> None:
        self.phases = list(phases)
        self.current = 0
        self.done_threads: set[int] = set()
        self.in_flight = 0

    def next(self, ctx: Context) -> Result:
        while self.current < len(self.phases):
            if ctx.thread in self.done_threads:
                if len(self.done_threads) >= ctx.threads and self.in_flight == 0:
                    self.current += 1
                    self.done_threads = set()
                    continue
                return Wait(None)  # until another thread finishes its ops
            r = self.phases[self.current].next(ctx)
            if r is None:
                self.done_threads.add(ctx.thread)
                continue
            if isinstance(r, OpSpec):
                self.in_flight += 1
                r.watchers.append(self)
            return private(r)
        return None

    def complete(self, ctx: Context, spec: OpSpec, outcome: str) -> None:
        self.in_flight -= 1


# Lower-case constructors, Jepsen's vocabulary.
def fn(f: Callable[[Context], OpSpec]) -> Generator:
    return Fn(f)


def mix(gens: Sequence[Generator], weights: Sequence[float] | None = None) -> Generator:
    return Mix(gens, weights)


def limit(n: int, gen: Generator) -> Generator:
    return Limit(n, gen)


def time_limit(seconds: float, gen: Generator) -> Generator:
    return TimeLimit(seconds, gen)


def stagger(dt: float, gen: Generator) -> Generator:
    return Stagger(dt, gen)


def rate(ops_per_second: float, gen: Generator) -> Generator:
    if ops_per_second <= 0:
        raise ValueError(f"rate must be positive, not {ops_per_second}")
    return Stagger(1.0 / ops_per_second, gen)


def concurrency(n: int, gen: Generator) -> Generator:
    return Concurrency(n, gen)


def once_each(specs: Sequence[OpSpec]) -> Generator:
    return OnceEach(specs)


def each_thread(factory: Callable[[], Generator]) -> Generator:
    return EachThread(factory)


def phases(*gens: Generator) -> Generator:
    return Phases(gens)


def process_ids(thread: int, threads: int) -> itertools.count[int]:
    """The process ids a thread runs in turn: thread, thread + threads, ..."""
    return itertools.count(thread, threads)
