"""A simulated network between the nodes of one simulation: latency, loss, duplication,
reordering and partitions of any shape (one-way included).

Every message goes through ``send(src, dst, payload)``, which decides its fate at once from
the network's random substream: dropped (a blocked link, random loss), or delivered once or
twice (duplication) after a latency drawn for that link (a base latency per directed link plus
exponential jitter, plus the packet-delay fault's extra delay), so messages on a link
reorder whenever the jitter exceeds their spacing. Each delivery is a callback timer of the
simulation's ``SimScheduler`` (one heap ordered by (time, sequence number)): no task per
message, and a deterministic order for equal times. Delivery times are rounded up to a time
grid (``grid``, 1 ms by default), so messages due in the same millisecond wake their
receivers once: the simulation's cost is dominated by trio scheduler passes.

A link is blocked as a directed pair (src, dst); ``block``/``heal`` implement every partition
shape. A message to a node that is down at delivery time is lost; a paused node's messages
wait in its inbox until it resumes (the kernel would buffer them).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kvcheck.workloads.sim.scheduler import SimScheduler


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

    def __init__(self, rng: random.Random, scheduler: SimScheduler, *, base_latency: tuple[float, float] = (0.0002, 0.0008),
                 jitter: float = 0.0002, grid: float = 0.001, loss: float = 0.0,
                 duplicate: float = 0.0) -> None:
        self.rng = rng
        self.scheduler = scheduler
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
        self.in_flight = 0
        self._receivers: dict[int, Callable[[int, Any], None]] = {}
        # Called with (src, dst, payload) for every message sent (the nemesis's state targets).
        self.observers: list[Callable[[int, int, Any], None]] = []
        # Called with (src, dst, payload) for every message just before its receiver gets it
        # (a state target may act at that instant, before the receiver's next step).
        self.arrivals: list[Callable[[int, int, Any], None]] = []
        self.halted = False  # the run was stopped early: every message is dropped from now on
        self.holding = False  # blocked links keep their messages until the heal (block(hold=True))
        self.held: list[tuple[int, int, Any]] = []

    # -- topology ---------------------------------------------------------------------

    def attach(self, node: int, receiver: Callable[[int, Any], None]) -> None:
        """Deliver messages for ``node`` by calling ``receiver(src, payload)``."""
        self._receivers[node] = receiver

    def detach(self, node: int) -> None:
        """The node is down: messages reaching it from now on are lost."""
        self._receivers.pop(node, None)

    def block(self, links: Iterable[Iterable[int]], *, hold: bool = False) -> None:
        """Cut directed links; with ``hold`` their messages are kept (up to ``HOLD_LIMIT``)
        and sent when the links heal, instead of being dropped."""
        for link in links:
            src, dst = link
            self.blocked.add((int(src), int(dst)))
        self.holding = self.holding or hold

    def heal(self) -> None:
        self.blocked.clear()
        self.holding = False
        held, self.held = self.held, []
        for src, dst, payload in held:  # in the order they were sent, each with a fresh latency
            self.send(src, dst, payload)

    HOLD_LIMIT = 20_000

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

    def send(self, src: int, dst: int, payload: Any, delay: float = 0.0) -> bool:
        """Queue ``payload`` from ``src`` to ``dst``, ``delay`` seconds later than its
        latency (a perturbation); never blocks. False if it was dropped at once (what a
        sender's TCP connection would have told it: the link is cut or the packet lost)."""
        self.stats.sent += 1
        if self.halted:
            return False
        for observe in self.observers:
            observe(src, dst, payload)
        if (src, dst) in self.blocked:
            if self.holding and len(self.held) < self.HOLD_LIMIT:
                self.held.append((src, dst, payload))
                return True
            self.stats.dropped_blocked += 1
            return False
        if self.loss > 0 and self.rng.random() < self.loss:
            self.stats.dropped_loss += 1
            return False
        copies = 1
        if self.duplicate > 0 and self.rng.random() < self.duplicate:
            copies = 2
            self.stats.duplicated += 1
        sched = self.scheduler
        now = sched.current_time()
        for _ in range(copies):
            lat = self._latency(src, dst)
            when = self.quantize(now + lat + delay if delay else now + lat)
            self.in_flight += 1
            sched.call_at(when, functools.partial(self._arrive, src, dst, payload))
        return True

    def _arrive(self, src: int, dst: int, payload: Any) -> None:
        self.in_flight -= 1
        receiver = self._receivers.get(dst)
        if receiver is None:
            self.stats.dropped_down += 1
        elif (src, dst) in self.blocked:  # partitioned while in flight
            if self.holding and len(self.held) < self.HOLD_LIMIT:
                self.held.append((src, dst, payload))
                return
            self.stats.dropped_blocked += 1
        else:
            self.stats.delivered += 1
            for observe in self.arrivals:
                observe(src, dst, payload)
            receiver(src, payload)

    def pending(self) -> int:
        """Messages sent and not yet delivered or dropped."""
        return self.in_flight


def _either(p: float, q: float) -> float:
    """The probability that at least one of two independent events happens (exactly ``q``
    when ``p`` is 0, so a fault alone draws the same numbers as before baselines existed)."""
    return q if p == 0 else p if q == 0 else 1.0 - (1.0 - p) * (1.0 - q)

