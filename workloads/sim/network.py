"""A simulated network between the nodes of one simulation: latency, loss, duplication,
reordering and partitions of any shape (one-way included).

Every message goes through ``send(src, dst, payload)``, which decides its fate at once from
the network's random substream: dropped (a blocked link, random loss), or delivered once or
twice (duplication) after a latency drawn for that link (a base latency per directed link plus
exponential jitter, plus the packet-delay fault's extra delay), so messages on a link
reorder whenever the jitter exceeds their spacing. Deliveries wait in one heap ordered by
(time, sequence number), and one task hands them to the destination's inbox when their time
comes: no task per message, and a deterministic order for equal times. Delivery times are
rounded up to a 1 ms grid (``grid``), so messages due in the same millisecond wake their
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
                 jitter: float = 0.0002, grid: float = 0.001) -> None:
        self.rng = rng
        self.grid = grid
        self.base_latency = base_latency
        self.jitter = jitter
        self.link_latency: dict[tuple[int, int], float] = {}
        self.blocked: set[tuple[int, int]] = set()
        self.loss = 0.0
        self.duplicate = 0.0
        self.extra_delay = 0.0
        self.stats = NetworkStats()
        self._heap: list[tuple[float, int, int, int, Any]] = []
        self._seq = 0
        self._wakeup = trio.Event()
        self._sleeping_until = -math.inf  # while the delivery task runs, no wakeup is needed
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
        self.loss, self.extra_delay, self.duplicate = loss, delay, duplicate

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
            if when < self._sleeping_until:  # wake the delivery task only if it sleeps too long
                self._wakeup.set()

    async def run(self) -> None:
        """Deliver queued messages when their time comes (runs for the whole simulation)."""
        while True:
            if not self._heap:
                self._wakeup = trio.Event()
                self._sleeping_until = math.inf
                await self._wakeup.wait()
                continue
            when = self._heap[0][0]
            if when > trio.current_time():
                self._wakeup = trio.Event()
                self._sleeping_until = when
                with trio.move_on_at(when):
                    await self._wakeup.wait()
                self._sleeping_until = -math.inf
                continue
            _, _, src, dst, payload = heapq.heappop(self._heap)
            receiver = self._receivers.get(dst)
            if receiver is None:
                self.stats.dropped_down += 1
                continue
            if (src, dst) in self.blocked:  # partitioned while in flight
                self.stats.dropped_blocked += 1
                continue
            self.stats.delivered += 1
            receiver(src, payload)

    def pending(self) -> int:
        return len(self._heap)

