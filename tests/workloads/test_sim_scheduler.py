"""SimScheduler: the simulation's virtual-time trio clock and its timer heap."""

from __future__ import annotations

import pytest
import trio

from kvcheck.workloads.sim.scheduler import SimScheduler


def run(fn):  # type: ignore[no-untyped-def]
    return trio.run(fn, clock=SimScheduler())


def test_time_jumps_to_the_next_timer_and_equal_times_fire_in_order() -> None:
    async def main() -> list[tuple[float, str]]:
        sched = SimScheduler.current()
        seen: list[tuple[float, str]] = []

        async def sleeper(name: str, when: float) -> None:
            await sched.sleep_until(when)
            seen.append((trio.current_time(), name))

        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)
            for name, when in (("c", 3.0), ("a", 1.0), ("b1", 2.0)):
                nursery.start_soon(sleeper, name, when)
            await trio.sleep(0)  # let the sleepers register in start order
            for i in range(3):
                sched.call_at(2.0, lambda i=i: seen.append((trio.current_time(), f"cb{i}")))
            await sched.sleep(5.0)
            nursery.cancel_scope.cancel()
        return seen

    seen = run(main)
    assert [t for t, _ in seen] == [1.0, 2.0, 2.0, 2.0, 2.0, 3.0]
    # callbacks due at 2.0 run in the order they were set, in the clock hook, before the
    # task woken at 2.0 gets to run
    assert [n for _, n in seen] == ["a", "cb0", "cb1", "cb2", "b1", "c"]


def test_trio_deadlines_and_our_timers_share_one_timeline() -> None:
    async def main() -> list[str]:
        sched = SimScheduler.current()
        order: list[str] = []

        async def ours() -> None:
            await sched.sleep_until(1.5)
            order.append(f"ours@{trio.current_time()}")

        async def trios() -> None:
            await trio.sleep_until(1.0)
            order.append(f"trio@{trio.current_time()}")
            with trio.move_on_at(2.0):
                await trio.sleep_forever()
            order.append(f"moved-on@{trio.current_time()}")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ours)
            nursery.start_soon(trios)
        return order

    assert run(main) == ["trio@1.0", "ours@1.5", "moved-on@2.0"]


def test_a_cancelled_sleeper_leaves_no_timer_and_wakes_no_one() -> None:
    async def main() -> tuple[bool, int, float]:
        sched = SimScheduler.current()
        woke = False

        async def sleeper() -> None:
            nonlocal woke
            await sched.sleep_until(10.0)
            woke = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sleeper)
            await sched.sleep(1.0)
            nursery.cancel_scope.cancel()
        pending = sched.pending()
        await sched.sleep(20.0)  # time passes the cancelled timer's time: nothing fires
        return woke, pending, trio.current_time()

    woke, pending, now = run(main)
    assert not woke and pending == 0 and now == 21.0


def test_a_failing_callback_fails_the_run_through_the_guard() -> None:
    async def main() -> None:
        sched = SimScheduler.current()
        async with trio.open_nursery() as nursery:
            await nursery.start(sched.run)

            def boom() -> None:
                raise ValueError("delivery failed")

            sched.call_at(1.0, boom)
            await sched.sleep(5.0)

    with pytest.raises(ExceptionGroup) as info:
        run(main)
    assert info.group_contains(ValueError, match="delivery failed")


def test_call_at_needs_the_guard_and_the_scheduler_must_be_the_clock() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="not running"):
            SimScheduler.current().call_at(1.0, lambda: None)

    run(main)

    async def elsewhere() -> None:
        with pytest.raises(RuntimeError, match="clock=SimScheduler"):
            SimScheduler.current()

    trio.run(elsewhere)
