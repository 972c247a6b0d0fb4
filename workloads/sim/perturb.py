"""Rare-path perturbation of the simulation, in the spirit of FoundationDB's BUGGIFY.

Raft bugs hide in interleavings that a fault schedule of whole minutes rarely produces: a
message that arrives long after the election it belonged to, a batch of appends reordered
or replayed, a disk that is slow to fsync, an apply loop that stalls, a crash that tears
the write in progress. With small probabilities drawn from the run's own substream
(``substream(seed, "perturb")``), the ``Perturber`` makes these happen -- only inside the
simulated network, disk and clock, never inside the store's code:

- ``long_delay``: a message is held for 1 to 3 election timeouts on top of its latency;
- ``batch_reorder``: a batch (the messages a member sends in one Ready) gets a random extra
  delay per message of up to 50 ms, so it arrives out of order;
- ``batch_duplicate``: a batch is delivered again 50 ms to 1 s later (stale duplicates);
- ``slow_fsync``: a member's Ready pass (persist, send, apply) waits 5 to 50 ms of disk time;
- ``stall``: a member's Ready pass stalls for 0.2 s to 2 election timeouts;
- ``kill_tears``: a kill is a power loss: what the member had not fsynced is lost and its
  last write is torn.
- ``slow_disk``: the probability that a member's disk is slow for the whole run: its fsyncs
  take 10 to 100 ms, so its successful append acknowledgements (sent only once the entries
  are durable) leave that much later, while its other messages (heartbeat responses, votes)
  do not wait. A new leader's first commit then waits for slow disks while a quorum answers
  its heartbeats at once, as on real machines (``--swarm`` draws it in a fifth of the seeds).

Every probability is 0 by default (config.json's ``perturb`` section, drawn per seed by
``--swarm``); with all of them 0 no random number is drawn, so a run without perturbation is
exactly what it was before this module existed. ``stats`` counts each perturbation applied
(results.json ``run.perturbations``).
"""

from __future__ import annotations

import random
from typing import Any

PERTURB_DEFAULTS: dict[str, float] = {
    "long_delay": 0.0,
    "batch_reorder": 0.0,
    "batch_duplicate": 0.0,
    "slow_fsync": 0.0,
    "stall": 0.0,
    "kill_tears": 0.0,
    "slow_disk": 0.0,
}


class Perturber:
    """Draws the perturbations of one simulated run."""

    def __init__(self, params: dict[str, Any], rng: random.Random, election_timeout: float) -> None:
        self.p = {k: float(params.get(k, 0.0)) for k in PERTURB_DEFAULTS}
        self.rng = rng
        self.election_timeout = election_timeout
        self.stats: dict[str, int] = {k: 0 for k in PERTURB_DEFAULTS}
        self.active = any(v > 0 for v in self.p.values())
        self.fsync_latency: dict[int, float] = {}  # member -> its disk's fsync seconds (slow_disk)

    def _happens(self, name: str) -> bool:
        p = self.p[name]
        if p > 0 and self.rng.random() < p:
            self.stats[name] += 1
            return True
        return False

    def batch_delays(self, n: int) -> list[list[float]]:
        """For each of a batch's ``n`` messages, the extra delay of each copy to deliver."""
        delays = [[0.0] for _ in range(n)]
        if not self.active or n == 0:
            return delays
        if self._happens("batch_reorder"):
            for d in delays:
                d[0] += self.rng.uniform(0.0, 0.05)
        if self._happens("batch_duplicate"):
            later = self.rng.uniform(0.05, 1.0)
            for d in delays:
                d.append(d[0] + later)
        for d in delays:
            if self._happens("long_delay"):
                d[0] += self.election_timeout * self.rng.uniform(1.0, 3.0)
        return delays

    def ready_delay(self) -> float:
        """Seconds a member's next Ready pass waits (a slow fsync, a stalled apply loop)."""
        if not self.active:
            return 0.0
        if self._happens("stall"):
            return self.rng.uniform(0.2, 2.0 * self.election_timeout)
        if self._happens("slow_fsync"):
            return self.rng.uniform(0.005, 0.05)
        return 0.0

    def ack_delay(self, member: int) -> float:
        """Seconds a successful append acknowledgement of ``member`` leaves late: its disk's
        fsync latency, drawn once per member (0 for a disk that is not slow)."""
        if not self.active or self.p["slow_disk"] <= 0:
            return 0.0
        latency = self.fsync_latency.get(member)
        if latency is None:
            slow = self.rng.random() < self.p["slow_disk"]
            latency = self.fsync_latency[member] = self.rng.uniform(0.01, 0.1) if slow else 0.0
            if slow:
                self.stats["slow_disk"] += 1
        return latency

    def kill_tears(self) -> bool:
        """Whether this kill is a power loss that tears the last write."""
        return self.active and self._happens("kill_tears")
