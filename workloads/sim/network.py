"""A simulated network between the nodes of one simulation: latency, loss, duplication,
reordering and partitions of any shape (one-way included).

Every message goes through ``send(src, dst, payload)``, which decides its fate at once from
the network's random substream: dropped (a blocked link, random loss), or delivered once or
twice (duplication) after a latency drawn for that link (a base latency per directed link plus
exponential jitter, plus the packet-delay fault's extra delay), so messages on a link
reorder whenever the jitter exceeds their spacing. Deliveries wait in one heap ordered by
(time, sequence number), and one task hands them to the destination's inbox when their time
comes: no task per message, and a deterministic order for equal times. Delivery times are
rounded up to a time grid (``grid``, 1 ms by default), so messages due in the same millisecond wake their
receivers once: the simulation's cost is dominated by trio scheduler passes.

A link is blocked as a directed pair (src, dst); ``block``/``heal`` implement every partition
shape. A message to a node that is down at delivery time is lost; a paused node's messages
wait in its inbox until it resumes (the kernel would buffer them).
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import trio


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    dropped_blocked: int = 0
    dropped_loss: int = 0
    dropped_down: int = 0
    duplicated: int = 0


class SimNetwork:
    """Message delivery between simulated endpoints (node ids)."""

    def __init__(self, rng: random.Random, *, base_latency: tuple[float, float] = (0.0002, 0.0008),
                 jitter: float = 0.0002, grid: float = 0.001, loss: float = 0.0,
                 duplicate: float = 0.0) -> None:
        self.rng = rng
        self.grid = grid
        self.base_latency = base_latency
        self.jitter = jitter
        self.link_latency: dict[tuple[int, int], float] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.base_loss = loss  # baseline probabilities; the packet fault adds to them
        self.base_duplicate = duplicate
        self.loss = loss
        self.duplicate = duplicate
        self.extra_delay = 0.0
        self.stats = NetworkStats()
        self._heap: list[tuple[float, int, int, int, Any]] = []
        self._seq = 0
        self._sleep: trio.CancelScope | None = None  # the delivery task's sleep, while it sleeps
        self._receivers: dict[int, Callable[[int, Any], None]] = {}

    # -- topology ---------------------------------------------------------------------

    def attach(self, node: int, receiver: Callable[[int, Any], None]) -> None:
        """Deliver messages for ``node`` by calling ``receiver(src, payload)``."""
        self._receivers[node] = receiver

    def detach(self, node: int) -> None:
        """The node is down: messages reaching it from now on are lost."""
        self._receivers.pop(node, None)

    def block(self, links: Iterable[Iterable[int]]) -> None:
        for link in links:
            src, dst = link
            self.blocked.add((int(src), int(dst)))

    def heal(self) -> None:
        self.blocked.clear()

    def set_packet_faults(self, loss: float, delay: float, duplicate: float) -> None:
        for name, p in (("loss", loss), ("duplicate", duplicate)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"packet {name} probability must be in [0, 1], not {p}")
        if delay < 0:
            raise ValueError(f"packet delay must be >= 0, not {delay}")
        # Independent causes: a packet survives the baseline and the fault.
        self.loss = _either(self.base_loss, loss)
        self.duplicate = _either(self.base_duplicate, duplicate)
        self.extra_delay = delay

    def quantize(self, t: float) -> float:
        """Round a delivery time up to the network's time grid: messages due in the same
        slot are delivered together, in one wakeup of the receivers (a big saving in
        scheduler passes), still in (time, send order) order."""
        if self.grid <= 0:
            return t
        return math.ceil(t / self.grid - 1e-9) * self.grid

    def _latency(self, src: int, dst: int) -> float:
        base = self.link_latency.get((src, dst))
        if base is None:
            base = self.link_latency[(src, dst)] = self.rng.uniform(*self.base_latency)
        lat = base + self.rng.expovariate(1.0 / self.jitter) if self.jitter > 0 else base
        if self.extra_delay > 0:
            lat += self.rng.expovariate(1.0 / self.extra_delay)
        return lat

    # -- sending ----------------------------------------------------------------------

    def send(self, src: int, dst: int, payload: Any) -> None:
        """Queue ``payload`` from ``src`` to ``dst``; never blocks."""
        self.stats.sent += 1
        if (src, dst) in self.blocked:
            self.stats.dropped_blocked += 1
            return
        if self.loss > 0 and self.rng.random() < self.loss:
            self.stats.dropped_loss += 1
            return
        copies = 1
        if self.duplicate > 0 and self.rng.random() < self.duplicate:
            copies = 2
            self.stats.duplicated += 1
        now = trio.current_time()
        for _ in range(copies):
            self._seq += 1
            when = self.quantize(now + self._latency(src, dst))
            heapq.heappush(self._heap, (when, self._seq, src, dst, payload))
            sleep = self._sleep
            if sleep is not None and when < sleep.deadline:
                # Move the sleeping delivery task's deadline earlier instead of waking it
                # to re-sleep: no scheduler pass is spent on the change.
                sleep.deadline = when

    async def run(self) -> None:
        """Deliver queued messages when their time comes (runs for the whole simulation).

        Between deliveries the task sleeps in a cancel scope whose deadline is the earliest
        queued delivery; ``send`` lowers that deadline for an earlier message, so the task
        wakes exactly when the next message is due and never just to re-sleep."""
        heap = self._heap
        while True:
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, src, dst, payload = heapq.heappop(heap)
                receiver = self._receivers.get(dst)
                if receiver is None:
                    self.stats.dropped_down += 1
                    continue
                if (src, dst) in self.blocked:  # partitioned while in flight
                    self.stats.dropped_blocked += 1
                    continue
                self.stats.delivered += 1
                receiver(src, payload)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as sleep:
                self._sleep = sleep
                try:
                    await trio.sleep_forever()
                finally:
                    self._sleep = None

    def pending(self) -> int:
        return len(self._heap)


def _either(p: float, q: float) -> float:
    """The probability that at least one of two independent events happens (exactly ``q``
    when ``p`` is 0, so a fault alone draws the same numbers as before baselines existed)."""
    return q if p == 0 else p if q == 0 else 1.0 - (1.0 - p) * (1.0 - q)

