"""The expected cost of a run, from its parameters, so ``kvcheck regress`` can start the
longest runs first.

Why: N workers finish a matrix when its last run ends. A long run handed out near the end
(a swarm seed drawing 7 members, 200 ops/s or a snapshot every 50 entries costs 3-6 times a
default run) keeps one worker busy while the others have nothing left to do: on the clean
matrix of benchmarks/regress_full.py that tail was 5 of the 10 idle worker-seconds of a
2-worker run. Longest-expected-first list scheduling (Graham's LPT) ends within a short run
of the others instead, whatever the executor (the order never changes a run: each seed's
history depends on its settings alone).

How: the order needs a ranking, not a forecast, so ``expected_cost`` is a relative figure in
the simulation's units of work: the client ops the run asks for (its rate over the
simulated time, or what its clients can do at the network's round trip when that is less),
each costing the messages of one Raft round over the cluster's members, plus the
snapshots those ops cause and the heartbeats of the simulated time. A swarm seed's run shape
is drawn here exactly as the worker will draw it (``draw_swarm`` is a pure function of the
seed). What the parameters cannot tell (a workload whose checker is dearer per op) is
learnt while the suite runs: ``CostModel`` scales each workload's estimates by the CPU
seconds its finished runs actually took.
"""

from __future__ import annotations

import copy
import statistics
from typing import Any

from kvcheck.workloads.config import RunConfig


def configured(settings: dict[str, Any], swarm: bool) -> RunConfig:
    """The RunConfig a worker runs for ``settings`` (with the seed's swarm draw)."""
    config = RunConfig(**copy.deepcopy(settings))
    if swarm:
        from kvcheck.workloads.swarm import draw_swarm

        draw_swarm(config, frozenset(settings) - {"workload", "faults", "seed", "bugs"})
    return config


def _mean(pair: Any, default: float) -> float:
    try:
        return (float(pair[0]) + float(pair[1])) / 2
    except (TypeError, ValueError, IndexError, KeyError):
        return default


def shape_cost(config: RunConfig) -> float:
    """Relative work of a run of ``config``: ops x members per op, snapshots, heartbeats."""
    net, node = config.network, config.node
    nodes = max(int(config.nodes), 1)
    one_way = _mean(net.get("base_latency"), 0.0005) + float(net.get("jitter") or 0.0)
    client = _mean(net.get("client_latency"), 0.0006)
    # a write: client -> leader, append to the followers and back, reply (fsyncs are cheap
    # in the simulated disk): what ``concurrency`` clients can do at most per second
    round_trip = 2 * client + 2 * one_way + 0.001
    throughput = max(int(config.concurrency), 1) / round_trip
    rate = min(float(config.rate), throughput) if config.rate else throughput
    seconds = float(config.time_limit)
    ops = rate * seconds
    # each op is a proposal the leader sends to every follower (in batches of
    # max_size_per_msg bytes: small batches mean more messages per entry)
    small_batches = 2.0 if int(node.get("max_size_per_msg") or 1 << 20) < 1024 else 1.0
    per_op = 1.0 + 0.25 * (nodes - 1) * small_batches
    # a snapshot serialises the state machine on every member
    snapshots = ops / max(int(node.get("snapshot_count") or 10_000), 1) * nodes
    tick = float(node.get("tick_interval") or 0.1) * max(int(node.get("heartbeat_tick") or 1), 1)
    heartbeats = seconds / tick * (nodes - 1)
    return ops * per_op + 20.0 * snapshots + 0.2 * heartbeats


def expected_cost(settings: dict[str, Any], swarm: bool = False) -> float:
    """``shape_cost`` of the run ``settings`` describe (0 for settings that do not make a
    RunConfig: that run fails at once in its worker)."""
    try:
        return shape_cost(configured(settings, swarm))
    except (TypeError, ValueError, KeyError):
        return 0.0


class CostModel:
    """Estimates corrected by what finished runs cost: a workload's estimates are scaled by
    the median of (CPU seconds / estimate) over its finished runs (before any has finished,
    by the median over every workload's, else 1)."""

    def __init__(self) -> None:
        self.ratios: dict[str, list[float]] = {}
        self._scales: dict[str, float] = {}
        self._default = 1.0

    def learn(self, workload: str, estimate: float, cpu_seconds: float) -> None:
        if estimate > 0 and cpu_seconds > 0:
            self.ratios.setdefault(workload, []).append(cpu_seconds / estimate)
            self._scales = {w: statistics.median(rs) for w, rs in self.ratios.items()}
            self._default = statistics.median(r for rs in self.ratios.values() for r in rs)

    def scale(self, workload: str) -> float:
        return self._scales.get(workload, self._default)

    def cost(self, workload: str, estimate: float) -> float:
        return estimate * self.scale(workload)
