"""Generators and combinators, driven by the real runner loop over a fake target under
trio's MockClock (so times are exact and runs are instant)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
import trio
import trio.testing

from kvcheck.checker.history import pair_calls
from kvcheck.workloads import generator as gen
from kvcheck.workloads.generator import Context, OpSpec, Wait
from kvcheck.workloads.nemesis import Nemesis
from kvcheck.workloads.recorder import Recorder
from kvcheck.workloads.runner import Runner, RunnerOptions
from kvcheck.workloads.workload import make_workload


def ctx(t: float = 0.0, thread: int = 0, threads: int = 1, seed: int = 1) -> Context:
    return Context(t, thread, thread, threads, random.Random(seed))


def const(f: str) -> gen.Generator:
    return gen.fn(lambda c: OpSpec(f))


def test_mix_follows_weights_and_skips_exhausted() -> None:
    g = gen.mix([const("a"), gen.limit(3, const("b"))], [1, 1])
    c = ctx()
    fs = []
    for _ in range(200):
        r = g.next(c)
        assert isinstance(r, OpSpec)
        fs.append(r.f)
    counts = Counter(fs)
    assert counts["b"] == 3  # exhausted after 3; the rest all from "a"
    assert counts["a"] == 197


def test_mix_weights_shape_the_choice() -> None:
    g = gen.mix([const("a"), const("b")], [9, 1])
    c = ctx(seed=7)
    counts = Counter(r.f for r in (g.next(c) for _ in range(2000)) if isinstance(r, OpSpec))
    assert 0.85 < counts["a"] / 2000 < 0.95


def test_mix_rejects_mismatched_weights() -> None:
    with pytest.raises(ValueError, match="2 generators but 1 weights"):
        gen.mix([const("a"), const("b")], [1])


def test_limit_counts_ops_over_all_threads() -> None:
    g = gen.limit(5, const("a"))
    got = [g.next(ctx(thread=i % 3, threads=3)) for i in range(8)]
    assert sum(isinstance(r, OpSpec) for r in got) == 5
    assert got[5:] == [None, None, None]


def test_time_limit_ends_at_first_call_plus_limit() -> None:
    g = gen.time_limit(2.0, const("a"))
    assert isinstance(g.next(ctx(t=1.0)), OpSpec)
    assert isinstance(g.next(ctx(t=2.99)), OpSpec)
    assert g.next(ctx(t=3.0)) is None


def test_time_limit_caps_waits_at_the_deadline() -> None:
    g = gen.time_limit(1.0, gen.stagger(10.0, const("a")))
    assert isinstance(g.next(ctx(t=0.0)), OpSpec)
    r = g.next(ctx(t=0.0))
    assert r == Wait(1.0, shared=True) or (isinstance(r, OpSpec))


def test_shared_waits_only_where_every_thread_would_get_them() -> None:
    # The rate limiter's wait holds for every thread: the dispatcher may stop asking.
    g = gen.stagger(10.0, const("a"))
    assert isinstance(g.next(ctx(t=0.0)), OpSpec)
    w = g.next(ctx(t=0.0, thread=1, threads=3))
    assert isinstance(w, Wait) and w.shared
    assert g.next(ctx(t=0.0, thread=2, threads=3)) == w
    # Combinators whose answer depends on the thread pass the wait on unmarked.
    for wrapped in (gen.concurrency(2, gen.stagger(10.0, const("a"))),
                    gen.each_thread(lambda: gen.stagger(10.0, const("a"))),
                    gen.mix([gen.stagger(10.0, const("a"))]),
                    gen.phases(gen.stagger(10.0, const("a")))):
        assert isinstance(wrapped.next(ctx(t=0.0)), OpSpec)
        w = wrapped.next(ctx(t=0.0))
        assert isinstance(w, Wait) and not w.shared, wrapped


def test_stagger_spaces_ops_by_dt_on_average() -> None:
    g = gen.stagger(0.1, const("a"))
    c = ctx(seed=3)
    t = 0.0
    times = []
    while len(times) < 500:
        c.time = t
        r = g.next(c)
        if isinstance(r, OpSpec):
            times.append(t)
        else:
            assert isinstance(r, Wait) and r.until is not None and r.until > t
            t = r.until
    mean_gap = (times[-1] - times[0]) / (len(times) - 1)
    assert 0.09 < mean_gap < 0.11


def test_rate_rejects_nonpositive() -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        gen.rate(0, const("a"))


def test_concurrency_limits_threads() -> None:
    g = gen.concurrency(2, const("a"))
    assert isinstance(g.next(ctx(thread=1, threads=4)), OpSpec)
    assert g.next(ctx(thread=2, threads=4)) is None


def test_once_each_and_each_thread() -> None:
    g = gen.once_each([OpSpec("r", key=k) for k in "xyz"])
    keys = [r.key for r in (g.next(ctx(thread=i % 2, threads=2)) for i in range(3)) if isinstance(r, OpSpec)]
    assert keys == ["x", "y", "z"]
    assert g.next(ctx()) is None
    e = gen.each_thread(lambda: gen.limit(2, const("a")))
    assert [isinstance(e.next(ctx(thread=0, threads=2)), OpSpec) for _ in range(3)] == [True, True, False]
    assert isinstance(e.next(ctx(thread=1, threads=2)), OpSpec)




async def drive(fake_target: Any, g: gen.Generator, threads: int, seed: int) -> Recorder:
    target = fake_target(random.Random(seed))
    recorder = Recorder(trio.current_time)
    runner = Runner(target, make_workload("register"), recorder,
                    Nemesis(target, recorder, [], random.Random(0)),
                    RunnerOptions(concurrency=threads), random.Random(seed))
    await runner._run_clients(g, trio.current_time())
    return recorder


def test_phases_start_only_after_previous_phase_completed(fake_target: Any) -> None:
    g = gen.phases(gen.limit(20, const("read")), gen.limit(10, const("write")))

    async def main() -> Recorder:
        return await drive(fake_target, g, 4, 5)

    rec = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    ops = rec.ops
    last_read_done = max(i for i, op in enumerate(ops) if op.f == "read" and op.type != "invoke")
    first_write = min(i for i, op in enumerate(ops) if op.f == "write")
    assert last_read_done < first_write
    assert sum(1 for op in ops if op.type == "invoke") == 30
    pair_calls(ops)  # well-formed
