"""A run's configuration: everything needed to replay it, as written to config.json.

``RunConfig`` holds the command-line options (workload, faults, target, nodes, concurrency,
time limit, rate, seed, timeouts, bug switches), the fault schedule drawn from the seed, and
every other parameter that shapes a run, written out in full so a replay never depends on
the code's defaults: ``network`` (the simulated network's link latency range, jitter, time
grid, client latency, baseline loss and duplication) and ``node`` (every ``NodeConfig``
field: tick interval, election and heartbeat ticks, snapshot count, request timeout, ...),
plus the final-read and startup times, the rare-path perturbation probabilities
(``perturb``), the clients' per-attempt timeout, the wall-clock budget and, for ``--swarm``
runs, the record of what the seed drew (``swarm``; the drawn values are already in the
other fields, so a replay never draws again). ``kvcheck replay`` reads config.json back with
``RunConfig.from_json``, which validates every field and names the one that is wrong, and
re-runs it exactly: the schedule is taken from the file, not drawn again. A file written
before these sections existed (config version 1) is read with the values pinned for that
version in ``V1_PARAMETERS``, never with whatever the code's defaults are today.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kvcheck.reference.bugs import Bugs
from kvcheck.reference.node import NodeConfig
from kvcheck.workloads.determinism import substream
from kvcheck.workloads.nemesis import (
    CLIENT_FAULT_KINDS,
    SIM_ONLY_KINDS,
    Fault,
    add_lost_vote_episodes,
    add_stale_leader_episodes,
    make_burst_schedule,
    make_schedule,
    make_swarm_schedule,
    parse_faults,
)
from kvcheck.workloads.sim.perturb import PERTURB_DEFAULTS
from kvcheck.workloads.workload import WORKLOADS

TARGETS = ("sim", "local", "etcd")
CONFIG_VERSION = 2

# The simulated network (workloads/sim/network.py): a base one-way latency per directed link
# drawn once from ``base_latency`` [low, high], plus exponential jitter of mean ``jitter``;
# delivery times rounded up to ``grid``; a client request and its reply each take
# ``client_latency`` [low, high]; ``loss`` and ``duplicate`` are baseline probabilities that
# the packet fault adds to; ``fifo``: each directed link delivers in the order it was sent
# (one TCP connection per peer, as the store's transport has: the default), else every
# message's latency is drawn on its own and a link reorders (``kvcheck run
# --unordered-links``, and what a config.json without the field ran on): see sim/network.py;
# ``stall``: with ``fifo``, the share of held cuts (a partition's ``hold``) that are a stalled
# path, which queues what it carries and releases it in order at the heal, the others dropping
# it as a firewall does, so TCP delivers it at its next retransmission (a config.json without
# the field: none stalled).
NETWORK_DEFAULTS: dict[str, Any] = {
    "base_latency": [0.0002, 0.0008],
    "jitter": 0.0002,
    "grid": 0.001,
    "client_latency": [0.0002, 0.001],
    "loss": 0.0,
    "duplicate": 0.0,
    "fifo": True,
    "stall": 0.5,
}

# The etcd target (workloads/etcd): its timing flags as etcd 3.4 names them (pre-vote off is
# etcd 3.4's default), and ``endpoints`` of an existing cluster (empty: start one). After the
# cluster starts, the target adds ``version``, ``cluster_version`` and every member's
# ``members`` flags, so config.json shows exactly what ran, and the key ``namespace`` a run on
# an existing cluster keeps to.
ETCD_DEFAULTS: dict[str, Any] = {"heartbeat_ms": 100, "election_ms": 1000, "pre_vote": False, "endpoints": []}
ETCD_RECORDED = ("version", "cluster_version", "members", "namespace")

# NodeConfig fields a run configures (id and name come from the node's slot).
NODE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(NodeConfig) if f.name not in ("id", "name"))


def node_defaults() -> dict[str, Any]:
    """Every configurable NodeConfig field with its default, as config.json records it."""
    base = NodeConfig(id=1)
    return {name: getattr(base, name) for name in NODE_FIELDS}


# NodeConfig fields added within config version 2; a config.json without them ran with these.
NODE_ADDED: dict[str, Any] = {"max_size_per_msg": 1 << 20, "max_inflight_msgs": 256}
# and network fields (a config.json without ``fifo`` ran on reordering links, one without
# ``stall`` had every held cut of in-order links resume at TCP's retransmission)
NETWORK_ADDED: dict[str, Any] = {"fifo": False, "stall": 0.0}


# What a version-1 config.json (no network/node sections) ran with: pinned here, not taken
# from today's defaults.
V1_PARAMETERS: dict[str, Any] = {
    "network": {"base_latency": [0.0002, 0.0008], "jitter": 0.0002, "grid": 0.001,
                "client_latency": [0.0002, 0.001], "loss": 0.0, "duplicate": 0.0, **NETWORK_ADDED},
    "node": {"tick_interval": 0.1, "election_tick": 10, "heartbeat_tick": 1, "pre_vote": True,
             "check_quorum": True, "request_timeout": 5.0, "snapshot_count": 10_000,
             "snapshot_catchup_entries": 5_000, "quota_bytes": 2 * 1024**3,
             "max_request_bytes": 1536 * 1024, "lease_check_interval": 0.5,
             "progress_notify_interval": 10.0, "watch_buffer": 1024, "cluster_id": 0,
             **NODE_ADDED},
    "final_read_time": 10.0,
    "startup_timeout": 10.0,
}


class ConfigError(ValueError):
    """A config that cannot describe a run; the message names the field."""


@dataclass
class RunConfig:
    workload: str = "register"
    faults: list[str] = field(default_factory=list)
    target: str = "sim"
    nodes: int = 5
    concurrency: int = 10
    time_limit: float = 30.0
    rate: float | None = 50.0  # ops/s over all clients; None: as fast as they go
    seed: int = 0
    check_timeout: float | None = 60.0
    client_timeout: float = 2.0
    recovery_timeout: float = 20.0
    recovery_quiet: float = 1.0
    keys: int = 8
    bugs: list[str] = field(default_factory=list)
    schedule: list[Fault] = field(default_factory=list)
    model: str = "cas-register"
    network: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(NETWORK_DEFAULTS))
    node: dict[str, Any] = field(default_factory=node_defaults)
    final_read_time: float = 10.0  # the final phase's reads after recovery, seconds
    startup_timeout: float = 10.0  # the cluster's time to elect a leader before time 0
    # Rare-path perturbation of the simulation (workloads/sim/perturb.py): probabilities, all
    # 0 unless drawn by --swarm. A config.json without this section ran without it.
    perturb: dict[str, float] = field(default_factory=lambda: dict(PERTURB_DEFAULTS))
    # Each attempt of a client request (one member) gives up after this many seconds and the
    # request is retried elsewhere with the same (client id, seq); None: one attempt may take
    # the whole client timeout (a config.json without it).
    client_attempt_timeout: float | None = None
    # --swarm: what this seed drew (the parameters above are already set from it), or None.
    swarm: dict[str, Any] | None = None
    # Wall-clock seconds a simulated run may take before it is stopped (and what it recorded
    # checked); None: no limit. Only a run that hits it depends on the machine's speed.
    wall_budget: float | None = 300.0
    # After the final reads, read every key from every member on its own once it has caught
    # up (workloads.memberreads); a config.json without this field ran without them.
    member_reads: bool = True
    # Seconds between rounds of the harness's periodic HashKV check of every member
    # (workloads.hashcheck, etcd's corruption check); None: no checks (a config.json without
    # this field ran without them).
    hash_check_interval: float | None = 1.0
    version: int = CONFIG_VERSION
    etcd: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(ETCD_DEFAULTS))

    def validate(self) -> None:
        if self.workload not in WORKLOADS:
            raise ConfigError(f"workload: unknown {self.workload!r}; known: {', '.join(WORKLOADS)}")
        if self.target not in TARGETS:
            raise ConfigError(f"target: unknown {self.target!r}; known: {', '.join(TARGETS)}")
        self.faults = parse_faults(self.faults)
        if self.target != "sim":
            bad = [k for k in self.faults if k in SIM_ONLY_KINDS]
            if bad:
                raise ConfigError(
                    f"faults: {', '.join(bad)} can only be injected in the simulation "
                    f"(--target sim); --target {self.target} supports "
                    f"{', '.join(k for k in parse_faults('all') if k not in SIM_ONLY_KINDS)}")
        if self.target == "etcd":
            self._validate_etcd()
        if not 3 <= self.nodes <= 7:
            raise ConfigError(f"nodes: a cluster has 3 to 7 nodes, not {self.nodes}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency: must be at least 1, not {self.concurrency}")
        if not (self.time_limit > 0 and math.isfinite(self.time_limit)):
            raise ConfigError(f"time_limit: must be a positive number of seconds, not {self.time_limit}")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError(f"rate: must be positive ops/s, not {self.rate}")
        if self.check_timeout is not None and not self.check_timeout > 0:
            raise ConfigError(f"check_timeout: must be positive seconds, not {self.check_timeout}")
        if not self.client_timeout > 0:
            raise ConfigError(f"client_timeout: must be positive seconds, not {self.client_timeout}")
        if self.keys < 1:
            raise ConfigError(f"keys: must be at least 1, not {self.keys}")
        if self.seed < 0:
            raise ConfigError(f"seed: must be >= 0, not {self.seed}")
        try:
            Bugs.from_names(self.bugs)
        except ValueError as exc:
            raise ConfigError(f"bugs: {exc}") from None
        for name in ("final_read_time", "startup_timeout"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"{name}: must be a positive number of seconds, not {v}")
        if self.wall_budget is not None and not self.wall_budget > 0:
            raise ConfigError(f"wall_budget: must be positive seconds or null, not {self.wall_budget}")
        if self.hash_check_interval is not None and not (self.hash_check_interval > 0
                                                         and math.isfinite(self.hash_check_interval)):
            raise ConfigError(f"hash_check_interval: must be positive seconds or null, "
                              f"not {self.hash_check_interval}")
        if self.client_attempt_timeout is not None and not self.client_attempt_timeout > 0:
            raise ConfigError(f"client_attempt_timeout: must be positive seconds or null, "
                              f"not {self.client_attempt_timeout}")
        self._validate_network()
        self._validate_node()
        self._validate_perturb()

    def _validate_perturb(self) -> None:
        p = self.perturb
        if not isinstance(p, dict):
            raise ConfigError(f"perturb: expected an object, got {p!r}")
        _check_keys("perturb", p, tuple(PERTURB_DEFAULTS))
        for name, v in p.items():
            if not (_is_number(v) and 0 <= v <= 1):
                raise ConfigError(f"perturb.{name}: expected a probability in [0, 1], got {v!r}")

    def _validate_etcd(self) -> None:
        """The etcd section's shape (whether etcd is installed is asked when a run starts, so
        a recorded etcd run can be re-checked anywhere)."""
        e = self.etcd
        if not isinstance(e, dict):
            raise ConfigError(f"etcd: expected an object, got {e!r}")
        unknown = sorted(set(e) - set(ETCD_DEFAULTS) - set(ETCD_RECORDED))
        if unknown:
            raise ConfigError(f"etcd: unknown parameter(s) {', '.join(unknown)}")
        for name, default in ETCD_DEFAULTS.items():
            e.setdefault(name, copy.deepcopy(default))
        for name in ("heartbeat_ms", "election_ms"):
            if not (isinstance(e[name], int) and not isinstance(e[name], bool) and e[name] > 0):
                raise ConfigError(f"etcd.{name}: expected a positive number of milliseconds, got {e[name]!r}")
        if e["heartbeat_ms"] * 5 > e["election_ms"]:
            raise ConfigError(f"etcd: the election timeout ({e['election_ms']} ms) must be at least 5 "
                              f"heartbeats ({e['heartbeat_ms']} ms), as etcd requires")
        if not isinstance(e["pre_vote"], bool):
            raise ConfigError(f"etcd.pre_vote: expected true or false, got {e['pre_vote']!r}")
        endpoints = e["endpoints"]
        if not (isinstance(endpoints, list) and all(isinstance(x, str) and ":" in x for x in endpoints)):
            raise ConfigError(f"etcd_endpoints: expected HOST:PORT,..., got {endpoints!r}")
        member_faults = [k for k in self.faults if k not in CLIENT_FAULT_KINDS]
        if endpoints and member_faults:
            raise ConfigError(
                f"faults: {', '.join(member_faults)} need control of the members' processes or "
                "peer links, which kvcheck does not have over an existing cluster "
                "(--etcd-endpoints); run without faults, or let kvcheck start the cluster")

    def _validate_network(self) -> None:
        net = self.network
        if not isinstance(net, dict):
            raise ConfigError(f"network: expected an object, got {net!r}")
        _check_keys("network", net, tuple(NETWORK_DEFAULTS))
        for name in ("base_latency", "client_latency"):
            v = net[name]
            if not (isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v)
                    and 0 <= v[0] <= v[1] and math.isfinite(v[1])):
                raise ConfigError(f"network.{name}: expected [low, high] seconds with "
                                  f"0 <= low <= high, got {v!r}")
        for name in ("jitter", "grid"):
            v = net[name]
            if not (_is_number(v) and v >= 0 and math.isfinite(v)):
                raise ConfigError(f"network.{name}: expected seconds >= 0, got {v!r}")
        for name in ("loss", "duplicate", "stall"):
            v = net[name]
            if not (_is_number(v) and 0 <= v <= 1):
                raise ConfigError(f"network.{name}: expected a probability in [0, 1], got {v!r}")
        if not isinstance(net["fifo"], bool):
            raise ConfigError(f"network.fifo: expected true or false, got {net['fifo']!r}")

    def _validate_node(self) -> None:
        node = self.node
        if not isinstance(node, dict):
            raise ConfigError(f"node: expected an object, got {node!r}")
        _check_keys("node", node, NODE_FIELDS)
        defaults = node_defaults()
        for name in NODE_FIELDS:
            v, d = node[name], defaults[name]
            ok = isinstance(v, bool) if isinstance(d, bool) else (
                isinstance(v, int) and not isinstance(v, bool) if isinstance(d, int) else _is_number(v))
            if not ok:
                raise ConfigError(f"node.{name}: expected {type(d).__name__}, got {v!r}")
            if not isinstance(d, bool) and name != "cluster_id" and not v > 0:
                raise ConfigError(f"node.{name}: must be positive, got {v!r}")
        if node["heartbeat_tick"] >= node["election_tick"]:
            raise ConfigError(f"node: heartbeat_tick ({node['heartbeat_tick']}) must be below "
                              f"election_tick ({node['election_tick']})")

    def recovery_bound(self) -> float:
        """Seconds after the final heal within which the cluster must have a leader with
        every member caught up: ten election timeouts (a few elections, each possibly split)
        plus one client timeout, at least 5 s, at most ``recovery_timeout``."""
        election = self.node["election_tick"] * self.node["tick_interval"]
        return min(self.recovery_timeout, max(5.0, 10 * election + self.client_timeout))

    def leader_change_bound(self) -> float:
        """Seconds one leader change may leave every client request unanswered: the
        followers' randomized election timeout, at most two election timeouts (etcd raft),
        plus one client timeout for the requests sent to the lost leader
        (checker.availability's ``availability_span``)."""
        election = self.node["election_tick"] * self.node["tick_interval"]
        return 2 * election + self.client_timeout

    def node_config(self, node_id: int, name: str) -> NodeConfig:
        """The NodeConfig of one member of this run."""
        return dataclasses.replace(NodeConfig(id=node_id, name=name), **self.node)

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.nodes + 1))

    def with_schedule(self) -> RunConfig:
        """This config with its fault schedule drawn from the seed (if it has none yet): a
        swarm run's from the schedule shape it drew (overlapping faults, state targets)."""
        if not self.schedule and self.faults:
            rng = substream(self.seed, "schedule")
            shape = (self.swarm or {}).get("schedule")
            if shape and shape.get("burst"):
                self.schedule = make_burst_schedule(self.faults, self.node_ids, self.time_limit, rng,
                                                    gap=shape["gap"],
                                                    quick=substream(self.seed, "swarm-quick-restart"))
            elif shape:
                self.schedule = make_swarm_schedule(
                    self.faults, self.node_ids, self.time_limit, rng, gap=shape["gap"],
                    duration=tuple(shape["duration"]), max_overlap=shape["max_overlap"])
            else:
                self.schedule = make_schedule(self.faults, self.node_ids, self.time_limit, rng)
            if shape and shape.get("lost_vote"):
                self.schedule = add_lost_vote_episodes(self.schedule, self.faults, self.time_limit,
                                                       substream(self.seed, "lost-vote"))
            if shape and shape.get("stale_leader"):
                node = self.node_config(1, "n1")
                self.schedule = add_stale_leader_episodes(
                    self.schedule, self.faults, self.time_limit, substream(self.seed, "stale-leader"),
                    election_timeout=node.election_tick * node.tick_interval, keep=bool(shape.get("burst")),
                    stall="pause" in (self.swarm or {}).get("pool", ()))
        return self

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["schedule"] = [f.to_json() for f in self.schedule]
        return d

    @classmethod
    def from_json(cls, d: Any) -> RunConfig:
        if not isinstance(d, dict):
            raise ConfigError("config must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown field(s) {', '.join(unknown)}")
        kwargs = dict(d)
        # Sections added later within version 2: absent means the run did without them.
        kwargs.setdefault("perturb", dict(PERTURB_DEFAULTS))
        if isinstance(kwargs["perturb"], dict):  # perturbations added later: absent means off
            kwargs["perturb"] = {**{k: 0.0 for k in PERTURB_DEFAULTS}, **kwargs["perturb"]}
        kwargs.setdefault("client_attempt_timeout", None)
        kwargs.setdefault("swarm", None)
        kwargs.setdefault("wall_budget", None)
        net = kwargs.get("network")
        if isinstance(net, dict):  # network fields added later within version 2: absent = as they ran
            kwargs["network"] = {**net, **{k: v for k, v in NETWORK_ADDED.items() if k not in net}}
        node = kwargs.get("node")
        if isinstance(node, dict):  # node fields added later within version 2: absent = default
            kwargs["node"] = {**node, **{k: v for k, v in NODE_ADDED.items() if k not in node}}
        kwargs.setdefault("member_reads", False)
        kwargs.setdefault("hash_check_interval", None)
        if kwargs.get("version", CONFIG_VERSION) == 1:
            for name, value in V1_PARAMETERS.items():
                kwargs.setdefault(name, copy.deepcopy(value))
            kwargs["version"] = CONFIG_VERSION
        try:
            kwargs["schedule"] = [Fault.from_json(x) for x in d.get("schedule", [])]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"schedule: {exc}") from None
        types: dict[str, type | tuple[type, ...]] = {"nodes": int, "concurrency": int, "seed": int, "keys": int, "version": int,
                 "time_limit": (int, float), "client_timeout": (int, float),
                 "recovery_timeout": (int, float), "recovery_quiet": (int, float),
                 "final_read_time": (int, float), "startup_timeout": (int, float),
                 "workload": str, "target": str, "model": str}
        for name, typ in types.items():
            if name in kwargs and (not isinstance(kwargs[name], typ) or isinstance(kwargs[name], bool)):
                raise ConfigError(f"{name}: expected {getattr(typ, '__name__', 'a number')}, got {kwargs[name]!r}")
        for name in ("rate", "check_timeout", "client_attempt_timeout", "wall_budget", "hash_check_interval"):
            v = kwargs.get(name)
            if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
                raise ConfigError(f"{name}: expected a number or null, got {v!r}")
        for name in ("faults", "bugs"):
            v = kwargs.get(name, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{name}: expected a list of names, got {v!r}")
        if not isinstance(kwargs["member_reads"], bool):
            raise ConfigError(f"member_reads: expected true or false, got {kwargs['member_reads']!r}")
        if kwargs["swarm"] is not None and not isinstance(kwargs["swarm"], dict):
            raise ConfigError(f"swarm: expected an object or null, got {kwargs['swarm']!r}")
        if kwargs.get("version", CONFIG_VERSION) != CONFIG_VERSION:
            raise ConfigError(f"version: this kvcheck reads config version {CONFIG_VERSION}, not {kwargs['version']}")
        for name in V1_PARAMETERS:
            if name not in kwargs:
                raise ConfigError(f"{name}: missing (config version {CONFIG_VERSION} records every "
                                  "parameter that shapes a run)")
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_keys(section: str, d: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(f"{section}: unknown parameter(s) {', '.join(unknown)}")
    missing = [k for k in known if k not in d]
    if missing:
        raise ConfigError(f"{section}: missing parameter(s) {', '.join(missing)}")
