"""A run's configuration: everything needed to replay it, as written to config.json.

``RunConfig`` holds the command-line options (workload, faults, target, nodes, concurrency,
time limit, rate, seed, timeouts, bug switches) and the fault schedule drawn from the seed.
``kvcheck replay`` reads config.json back with ``RunConfig.from_json``, which validates every
field and names the one that is wrong, and re-runs it exactly: the schedule is taken from the
file, not drawn again.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kvcheck.reference.bugs import Bugs
from kvcheck.workloads.determinism import substream
from kvcheck.workloads.nemesis import SIM_ONLY_KINDS, Fault, make_schedule, parse_faults
from kvcheck.workloads.workload import WORKLOADS

TARGETS = ("sim", "local")
CONFIG_VERSION = 1


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
    version: int = CONFIG_VERSION

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

    @property
    def node_ids(self) -> list[int]:
        return list(range(1, self.nodes + 1))

    def with_schedule(self) -> RunConfig:
        """This config with its fault schedule drawn from the seed (if it has none yet)."""
        if not self.schedule and self.faults:
            self.schedule = make_schedule(self.faults, self.node_ids, self.time_limit,
                                          substream(self.seed, "schedule"))
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
        try:
            kwargs["schedule"] = [Fault.from_json(x) for x in d.get("schedule", [])]
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"schedule: {exc}") from None
        types: dict[str, type | tuple[type, ...]] = {"nodes": int, "concurrency": int, "seed": int, "keys": int, "version": int,
                 "time_limit": (int, float), "client_timeout": (int, float),
                 "recovery_timeout": (int, float), "recovery_quiet": (int, float),
                 "workload": str, "target": str, "model": str}
        for name, typ in types.items():
            if name in kwargs and (not isinstance(kwargs[name], typ) or isinstance(kwargs[name], bool)):
                raise ConfigError(f"{name}: expected {getattr(typ, '__name__', 'a number')}, got {kwargs[name]!r}")
        for name in ("rate", "check_timeout"):
            v = kwargs.get(name)
            if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)):
                raise ConfigError(f"{name}: expected a number or null, got {v!r}")
        for name in ("faults", "bugs"):
            v = kwargs.get(name, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ConfigError(f"{name}: expected a list of names, got {v!r}")
        if kwargs.get("version", CONFIG_VERSION) != CONFIG_VERSION:
            raise ConfigError(f"version: this kvcheck reads config version {CONFIG_VERSION}, not {kwargs['version']}")
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg
