"""The simulation's time: trio's clock for the whole run, and one timer heap for every wakeup.

Why: a simulated second costs what the trio scheduler passes in it cost. Under
``MockClock(autojump_threshold=0)`` every advance of virtual time is a scheduler pass of its
own (trio waits for I/O with a zero timeout, finds nothing, jumps the clock, and only the
next pass expires deadlines), and every ``trio.sleep`` is a cancel scope whose expiry raises
``Cancelled`` through the sleeper's frames. This module removes both costs for the timers
the simulation owns (the nodes' tick and lease timers, the network's deliveries, the
clients' hops), which are most of its wakeups.

How: ``SimScheduler`` is a ``trio.abc.Clock`` whose time is purely virtual. trio asks the
clock ``deadline_to_sleep_time(deadline)`` only when no task can run, i.e. when the whole
simulation is idle; the clock then moves time straight to the earlier of trio's next deadline
and its own next timer, wakes the tasks whose timers are due (``trio.lowlevel.reschedule``)
and answers "sleep 0": the woken tasks run in that same pass. Timers are kept in one heap
ordered by (time, sequence number), so equal times fire in the order they were set, and the
run stays deterministic. A timer is either a sleeping task (``sleep_until``; cancelling the
task removes its timer) or a callback (``call_at``: a message delivery), which runs right
there in the clock hook, so what it wakes (a node's Ready loop) runs in the same pass. A
callback must be quick and must not block; one that raises does not reach trio's loop: the
scheduler's guard task (``run``) re-raises it, failing the simulation with its traceback.

trio's own deadlines (``move_on_after``, ``fail_after``, ``trio.sleep``) keep working: they
are the other half of "the earlier of" above. Nothing in a simulation may wait for real I/O
or threads: time jumps whenever every task is blocked, as with MockClock's autojump.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import trio

# What trio is told when nothing at all is scheduled (a deadlocked simulation): wait, as
# trio would with no deadline (Ctrl-C still interrupts the wait).
_IDLE_FOREVER = 86400.0


class Timer:
    """A sleeping task's wakeup. ``cancel`` (when the task is cancelled) is idempotent."""

    __slots__ = ("cancelled", "task")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class SimScheduler(trio.abc.Clock):
    """Virtual time for one ``trio.run`` (pass as ``clock=``) and its timers.

    Start ``run`` in the simulation's nursery (``await nursery.start(scheduler.run)``) before
    calling ``call_at``; ``sleep_until`` and ``sleep`` work without it."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._heap: list[tuple[float, int, Timer | Callable[[], None]]] = []
        self._seq = 0
        self._failures: list[Exception] = []  # raised by callbacks, for the guard to re-raise
        self._guard: trio.lowlevel.Task | None = None  # the task running ``run``
        self._guard_parked = False
        self.fired = 0  # timers fired
        # Called each time the simulation is idle, before time moves (the run's wall-clock
        # budget and Ctrl-C watch); while set, an idle wait never lasts more than a second.
        self.on_idle: Callable[[], None] | None = None

    @staticmethod
    def current() -> SimScheduler:
        """The running simulation's scheduler (it must be trio's clock for this run)."""
        clock = trio.lowlevel.current_clock()
        if not isinstance(clock, SimScheduler):
            raise RuntimeError("the simulation must run under trio.run(..., clock=SimScheduler())")
        return clock

    # -- trio.abc.Clock ---------------------------------------------------------------------

    def start_clock(self) -> None:
        return None

    def current_time(self) -> float:
        return self._now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        # trio calls this only when no task is runnable: the simulation is idle until the
        # earlier of trio's next deadline and our next timer. Move time there now.
        if self.on_idle is not None:
            self.on_idle()
        heap = self._heap
        while heap:
            top = heap[0][2]
            if not isinstance(top, Timer) or not top.cancelled:
                break
            heapq.heappop(heap)
        ours = heap[0][0] if heap else math.inf
        target = min(ours, deadline)
        if target == math.inf:
            return _IDLE_FOREVER if self.on_idle is None else 1.0
        if target > self._now:
            self._now = target
        if ours <= self._now:
            self._fire()
        return 0.0

    def _fire(self) -> None:
        heap = self._heap
        while heap and heap[0][0] <= self._now:
            entry = heapq.heappop(heap)[2]
            self.fired += 1
            if not isinstance(entry, Timer):  # a callback (call_at): not cancellable
                try:
                    entry()
                except Exception as exc:  # never into trio's run loop: the guard re-raises it
                    self._failures.append(exc)
                continue
            if entry.cancelled:
                self.fired -= 1
                continue
            entry.cancelled = True  # fired: a late cancel() is a no-op
            assert entry.task is not None
            trio.lowlevel.reschedule(entry.task)
        if self._failures and self._guard_parked and self._guard is not None:
            self._guard_parked = False
            trio.lowlevel.reschedule(self._guard)

    def _push(self, when: float, task: trio.lowlevel.Task) -> Timer:
        timer = Timer(task)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, timer))
        return timer

    # -- timers -----------------------------------------------------------------------------

    async def sleep_until(self, when: float) -> None:
        """Sleep until virtual time ``when`` (a checkpoint, like ``trio.sleep_until``)."""
        if when <= self._now:
            await trio.lowlevel.checkpoint()
            return
        timer = self._push(when, trio.lowlevel.current_task())

        def abort(_: Any) -> trio.lowlevel.Abort:
            timer.cancel()
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(0.0, seconds))

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        """Call ``callback()`` at virtual time ``when`` (at the next idle moment if ``when``
        has passed), from the clock hook between scheduler passes: it must be quick, must
        not block, and may wake tasks. Callbacks due at one time run in the order they were
        set. (Not cancellable: the heap holds the callable itself, the cheapest entry for
        the simulation's most frequent timer, a message delivery.)"""
        if self._guard is None:
            raise RuntimeError("SimScheduler.run is not running: start it in the simulation's nursery")
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, callback))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The guard (for the whole simulation): re-raise the first exception of a callback."""
        if self._guard is not None:
            raise RuntimeError("SimScheduler.run is already running")
        self._guard = trio.lowlevel.current_task()
        task_status.started()
        try:
            while not self._failures:
                self._guard_parked = True
                await trio.lowlevel.wait_task_rescheduled(self._abort_park)
            raise self._failures[0]
        finally:
            self._guard = None
            self._guard_parked = False

    def _abort_park(self, _: Any) -> trio.lowlevel.Abort:
        self._guard_parked = False
        return trio.lowlevel.Abort.SUCCEEDED

    def pending(self) -> int:
        """Timers not yet fired or cancelled."""
        return sum(1 for _, _, t in self._heap if not (isinstance(t, Timer) and t.cancelled))
