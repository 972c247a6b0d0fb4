"""A simulated network between the nodes of one simulation: latency, loss, duplication,
reordering and partitions of any shape (one-way included).

Every message goes through ``send(src, dst, payload)``, which decides its fate at once from
the network's random substream: dropped (a blocked link, random loss), or delivered once or
twice (duplication) after a latency drawn for that link (a base latency per directed link plus
exponential jitter, plus the packet-delay fault's extra delay). Each delivery is a callback
timer of the simulation's ``SimScheduler`` (one heap ordered by (time, sequence number)): no
task per message, and a deterministic order for equal times. Delivery times are rounded up
to a time grid (``grid``, 1 ms by default), so messages due in the same millisecond wake
their receivers once: the simulation's cost is dominated by trio scheduler passes.

Order on a link (``fifo``, config.json's ``network.fifo``; true by default, ``kvcheck run
--unordered-links`` turns it off). The store's
real transport (reference/server.py) sends a member's messages to each peer over one TCP
connection fed by a FIFO queue, so a link never reorders what it carries. With ``fifo`` each
directed link is such a connection: a message is delivered at the later of its drawn time
and the link's last scheduled delivery (jitter delays a message, it never lets it overtake
one sent before it; a packet-delay fault queues, as a proxy that holds each frame does). A
connection belongs to one process at each end: when a member (re)starts (``attach``), its
links get new connections. Its outgoing ones start empty, so the new process's first
messages may overtake the previous process's last ones still in flight (the receiver reads
the two connections in two tasks); and what was sent towards it before the restart went to
its previous process, whose sockets are gone: lost. A cut link (``block``) drops what is
sent on it and what arrives on it while it is cut (the local target's peer proxy drops whole
frames of a blocked link the same way, and a connection reset by a cut loses its unsent
bytes: Raft retransmits); with ``hold`` the connection survives the partition, and what
it held is delivered in order, before what is sent after the heal, at one of two times. A
held cut is either a stalled path (``stall``, config.json's ``network.stall``: that share of
held cuts, each drawn from its own substream when the cut starts), whose switch or virtual
switch queues the frames and forwards them when it recovers: they leave at the heal, with a
fresh latency; or a path that drops them, as a firewall does, and TCP's retransmissions
bring them: once the connection's retransmission timer next fires (``RTO_MIN``, doubling
after each unanswered retransmission from the first message the cut held: a cut shorter
than the first timeout resumes at it, right after the heal; after a 2 s cut, 1 s after the
heal), as Linux TCP resumes a stalled
connection; other links carry on meanwhile. What still reorders on purpose: a
duplicate (the network's ``duplicate``, the packet fault's) is a stale retransmit with its
own latency, and a perturbation's extra ``delay`` (perturb.py's batch_reorder, long_delay,
batch_duplicate: a reconnect window, a message stuck in an old connection) takes that copy
out of the link's order. ``send_later`` models a message that leaves its sender later (an
acknowledgement sent once a slow fsync ends): it joins the link's order when it leaves,
and is never sent if its sender's process died first. ``fifo=False`` is the network of
earlier versions (every message's latency drawn independently, so a link reorders whenever
the jitter exceeds the spacing of its messages, as UDP would): a config.json without
``network.fifo`` ran on it, and replays on it. It is no longer the default because it is
not the store's transport, and on it a clean cluster with one-entry appends and 12.8 ms
jitter starves (each reordered MsgApp sends its follower back to probe: kubernetes swarm
seeds 135, 138 flagged unavailable): a false alarm of the harness's model. Both kinds of
cut happen (a congested or stalled switch, a firewall rule), and they differ for Raft: a
deposed leader's old-term appends that a dropping path held resume at a TCP retransmission,
seconds after a cut of seconds, when they are all below the follower's commit index; a
path that queued them lands them as the new leader begins (with every held cut dropping,
``regress --quick`` caught stale_term_append in none of seeds 0-19; with half stalled, at
seed 14).

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
                 duplicate: float = 0.0, fifo: bool = True, stall: float = 0.0,
                 stall_rng: random.Random | None = None) -> None:
        self.rng = rng
        self.fifo = fifo
        # fifo: the share of held cuts that are stalled paths (released at the heal), each
        # drawn from ``stall_rng`` (a substream of its own: the latencies' draws stay put)
        self.stall = stall
        self.stall_rng = stall_rng or random.Random(0)
        self.stalled = False  # the current held cut is a stalled path
        # fifo: each directed link's last scheduled in-order delivery (its connection's tail)
        self.link_tail: dict[tuple[int, int], float] = {}
        # fifo: each node's process incarnation (bumped by ``attach``); a message is for the
        # incarnation its receiver had when it was sent, a delayed send from its sender's
        self.incarnation: dict[int, int] = {}
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
        self.held_since: dict[tuple[int, int], float] = {}  # fifo: when each link first held one

    # -- topology ---------------------------------------------------------------------

    def attach(self, node: int, receiver: Callable[[int, Any], None]) -> None:
        """Deliver messages for ``node`` by calling ``receiver(src, payload)``: a new process
        of ``node``, with new connections (``fifo``: its outgoing links start empty)."""
        self._receivers[node] = receiver
        self.incarnation[node] = self.incarnation.get(node, 0) + 1
        for link in [link for link in self.link_tail if link[0] == node]:
            del self.link_tail[link]

    def detach(self, node: int) -> None:
        """The node is down: messages reaching it from now on are lost."""
        self._receivers.pop(node, None)

    def block(self, links: Iterable[Iterable[int]], *, hold: bool = False) -> None:
        """Cut directed links; with ``hold`` their messages are kept (up to ``HOLD_LIMIT``)
        and sent when the links heal, instead of being dropped."""
        for link in links:
            src, dst = link
            self.blocked.add((int(src), int(dst)))
        if hold and not self.holding and self.fifo and self.stall > 0:
            self.stalled = self.stall_rng.random() < self.stall
        self.holding = self.holding or hold

    def heal(self) -> None:
        self.blocked.clear()
        self.holding = False
        held, self.held = self.held, []
        if self.fifo and not self.stalled:  # each held connection resumes when its TCP
            now = self.scheduler.current_time()  # retransmission timer next fires
            for link, since in self.held_since.items():
                self.link_tail[link] = max(self.link_tail.get(link, 0.0), self.quantize(tcp_resume(since, now)))
        self.held_since.clear()
        self.stalled = False
        # in the order they were sent, each with a fresh latency (with fifo: each link's held
        # messages first, in order, then whatever it carries after the heal)
        for src, dst, payload in held:
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
        latency (a perturbation: with ``fifo`` such a copy leaves the link's order); never
        blocks. False if it was dropped at once (what a sender's TCP connection would have
        told it: the link is cut or the packet lost)."""
        self.stats.sent += 1
        if self.halted:
            return False
        for observe in self.observers:
            observe(src, dst, payload)
        if (src, dst) in self.blocked:
            if self.holding and len(self.held) < self.HOLD_LIMIT:
                self.held.append((src, dst, payload))
                self.held_since.setdefault((src, dst), self.scheduler.current_time())
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
        if not self.fifo:
            for _ in range(copies):
                lat = self._latency(src, dst)
                when = self.quantize(now + lat + delay if delay else now + lat)
                self.in_flight += 1
                sched.call_at(when, functools.partial(self._arrive, src, dst, payload))
            return True
        incarnation = self.incarnation.get(dst, 0)
        for copy in range(copies):
            lat = self._latency(src, dst)
            when = self.quantize(now + lat + delay if delay else now + lat)
            if copy == 0 and not delay:  # in the link's order: never before what it sent earlier
                link = (src, dst)
                when = max(when, self.link_tail.get(link, 0.0))
                self.link_tail[link] = when
            self.in_flight += 1
            sched.call_at(when, functools.partial(self._arrive, src, dst, payload, incarnation))
        return True

    def send_later(self, after: float, src: int, dst: int, payload: Any, delay: float = 0.0) -> None:
        """``send`` ``after`` seconds from now, if ``src``'s process is still the one running
        now (a message that leaves late: an acknowledgement waiting for a slow fsync)."""
        incarnation = self.incarnation.get(src, 0)

        def leave() -> None:
            if src in self._receivers and self.incarnation.get(src, 0) == incarnation:
                self.send(src, dst, payload, delay)
        self.scheduler.call_at(self.scheduler.current_time() + after, leave)

    def _arrive(self, src: int, dst: int, payload: Any, incarnation: int | None = None) -> None:
        self.in_flight -= 1
        receiver = self._receivers.get(dst)
        if receiver is None or (incarnation is not None and self.incarnation.get(dst, 0) != incarnation):
            self.stats.dropped_down += 1
        elif (src, dst) in self.blocked:  # partitioned while in flight
            if self.holding and len(self.held) < self.HOLD_LIMIT:
                self.held.append((src, dst, payload))
                self.held_since.setdefault((src, dst), self.scheduler.current_time())
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


RTO_MIN = 0.2  # Linux TCP's minimum retransmission timeout, seconds
RTO_MAX = 120.0  # and its largest


def tcp_resume(since: float, healed: float) -> float:
    """When a TCP connection whose first unacknowledged data was sent at ``since`` delivers
    it again, the link having been cut until ``healed``: at the first retransmission at or
    after the heal, the timeout starting at ``RTO_MIN`` and doubling after each one."""
    t, rto = since, RTO_MIN
    while t < healed:
        t += rto
        rto = min(rto * 2, RTO_MAX)
    return t


def _either(p: float, q: float) -> float:
    """The probability that at least one of two independent events happens (exactly ``q``
    when ``p`` is 0, so a fault alone draws the same numbers as before baselines existed)."""
    return q if p == 0 else p if q == 0 else 1.0 - (1.0 - p) * (1.0 - q)

