"""Simulated per-node clocks over trio's virtual time.

A node's clock reads ``offset + anchor_value + rate * (t - anchor_time)`` where ``t`` is
the simulation's virtual time (``SimScheduler``, trio's clock for the run). Changing the rate
re-anchors, so a skewed clock drifts without jumping; changing the offset is a bump.
``sleep(d)`` waits ``d`` seconds of *node* time, i.e. ``d / rate`` of simulated time (one
timer in the scheduler's heap), so a fast clock fires its election and heartbeat timers
early. A paused node's clock does not wake its sleepers until the node resumes.
"""

from __future__ import annotations

import trio

from kvcheck.workloads.sim.scheduler import SimScheduler


class SimClock:
    """One node's clock (implements the node driver's Clock protocol)."""

    def __init__(self, scheduler: SimScheduler, offset: float = 0.0) -> None:
        self.scheduler = scheduler
        self.rate = 1.0
        self.offset = offset
        self._anchor_time = scheduler.current_time()
        self._anchor_value = 0.0
        self._running = trio.Event()
        self._running.set()

    def now(self) -> float:
        t = self.scheduler.current_time()
        return self.offset + self._anchor_value + self.rate * (t - self._anchor_time)

    def set(self, rate: float, offset: float) -> None:
        if rate <= 0:
            raise ValueError(f"clock rate must be positive, not {rate}")
        t = self.scheduler.current_time()
        self._anchor_value += self.rate * (t - self._anchor_time)
        self._anchor_time = t
        self.rate = rate
        self.offset = offset

    def reset(self) -> None:
        self.set(1.0, 0.0)

    async def sleep(self, seconds: float) -> None:
        await self.scheduler.sleep(max(0.0, seconds) / self.rate)
        await self.wait_running()

    async def wait_running(self) -> None:
        if not self._running.is_set():
            await self._running.wait()

    def pause(self) -> None:
        if self._running.is_set():
            self._running = trio.Event()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()
