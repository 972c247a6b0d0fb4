"""The nemesis: fault kinds, a fault schedule as replayable data, and the task that runs it.

``--faults partition,kill,pause,clock,packet,disk,member`` selects fault kinds. Before the run,
``make_schedule`` draws a schedule from the run's nemesis substream: a list of ``Fault``
values (kind, start and stop in seconds since the workload began, parameters such as the
partition shape or the node), written into config.json so ``kvcheck replay`` (and a person)
can read exactly what was injected. Faults run one at a time, in slots that cover the time
limit; every requested kind gets at least one slot (kinds are dealt round-robin from a
shuffled order), so a run of any length shows each kind started and healed.

Choices that depend on the cluster's state at that moment (the current leader) are resolved
when the fault starts; the nemesis op's value records the resolution (the nodes, the blocked
links). Each start and stop is a pair of nemesis ops in the history: an ``invoke`` before
the action and an ``info`` after it, f ``start-<kind>`` / ``stop-<kind>``, process
``"nemesis"``.

Faults of a ``make_schedule`` schedule never overlap. A swarm schedule
(``make_swarm_schedule``, used by ``kvcheck run --swarm``) draws fault starts as a random
process with the seed's own rate and durations, so faults of different kinds overlap (a
partition during a kill); two faults of one kind never do.

Kinds and their parameters:
- partition: shape ``halves`` | ``isolate-one`` | ``isolate-leader`` | ``majorities-ring`` |
  ``bridge`` | ``one-way``, resolved to a list of blocked directed links ``[src, dst]``;
  with ``hold`` (swarm, simulation only) a blocked link buffers its messages and delivers
  them all when the partition heals instead of dropping them.
- kill / pause: ``target`` ``one`` | ``minority`` | ``leader`` (kill -9 + restart;
  SIGSTOP + SIGCONT); swarm schedules add the state-driven targets of ``STATE_TARGETS``:
  ``new-leader`` (wait for the next election and hit the member that just won it),
  ``most-behind`` (the member with the lowest applied index) and ``acked`` (wait for a
  follower to acknowledge an append and hit it at that instant). A target that cannot see
  that state (the local target) or where it does not happen in time falls back to
  ``leader`` or a random member; the nemesis op's value records what was hit.
- clock: one node's clock: ``skew`` (rate), ``bump`` (offset seconds) or ``strobe`` (offset
  flipping every ``period`` seconds); stop resets the clock.
- packet: ``loss`` (probability), ``delay`` (extra mean seconds) or ``duplicate``
  (probability) on every link.
- disk: a node loses power: what it had not fsynced is lost and its last write may be torn;
  stop restarts it. ``node`` fixed in the schedule, or (swarm) a ``target`` as for kill.
- member: remove a node from the cluster (a Raft conf change); stop adds it back with an
  empty data directory.

Burst schedules (``make_burst_schedule``, half the swarm seeds) also use the target
``voted`` (the member that grants a vote in the next election, at that instant) and these
fault parameters: ``wait`` (how long a state target waits for its event), ``lag`` (hit that
long after the event), ``hold_for`` (the fault lasts that long from when it hit, at most
until ``stop``), ``heal: new-leader`` with ``heal_lag`` (stop that long after a member first
speaks as leader of a newer term, at most at ``stop``), and for partitions a ``target``
whose member is isolated instead of the leader.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from kvcheck.exitcodes import UsageError
from kvcheck.workloads.recorder import Recorder

FAULT_KINDS: tuple[str, ...] = ("partition", "kill", "pause", "clock", "packet", "disk", "member")
PARTITION_SHAPES: tuple[str, ...] = (
    "halves", "isolate-one", "isolate-leader", "majorities-ring", "bridge", "one-way",
)
SIM_ONLY_KINDS: tuple[str, ...] = ("clock", "disk")
NODE_TARGETS: tuple[str, ...] = ("one", "minority", "leader")
# Targets chosen from the cluster's state when the fault starts (see the module doc).
STATE_TARGETS: tuple[str, ...] = ("new-leader", "most-behind", "acked")


def parse_faults(spec: str | Sequence[str] | None) -> list[str]:
    """``"partition,kill"`` -> ["partition", "kill"]; "none" or "" -> []; unknown -> UsageError."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    kinds: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item or item == "none":
            continue
        if item == "all":
            kinds.extend(k for k in FAULT_KINDS if k not in kinds)
            continue
        if item not in FAULT_KINDS:
            raise UsageError(f"unknown fault kind {item!r}; known: {', '.join(FAULT_KINDS)}, all, none")
        if item not in kinds:
            kinds.append(item)
    return kinds


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    start: float
    stop: float
    params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "start": self.start, "stop": self.stop, "params": self.params}

    @classmethod
    def from_json(cls, d: Any) -> Fault:
        if not isinstance(d, dict):
            raise ValueError(f"a fault must be an object, not {d!r}")
        missing = [k for k in ("kind", "start", "stop") if k not in d]
        if missing:
            raise ValueError(f"fault {d!r} lacks {', '.join(missing)}")
        if d["kind"] not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {d['kind']!r}")
        start, stop = float(d["start"]), float(d["stop"])
        if not 0 <= start <= stop:
            raise ValueError(f"fault {d!r}: need 0 <= start <= stop")
        params = d.get("params", {})
        if not isinstance(params, dict):
            raise ValueError(f"fault {d!r}: params must be an object")
        return cls(d["kind"], start, stop, dict(params))


def _round(x: float) -> float:
    return round(x, 3)


def _params(kind: str, nodes: Sequence[int], rng: random.Random, *, swarm: bool = False) -> dict[str, Any]:
    """One fault's parameters. ``swarm`` adds the state-driven targets (and gives disk and
    member faults one); without it the draws are exactly those of earlier versions."""
    targets = NODE_TARGETS + STATE_TARGETS if swarm else NODE_TARGETS
    if kind == "partition" and swarm:
        # hold: the cut links buffer their messages and deliver them all at the heal, as TCP
        # connections that survive a partition do (an old leader's appends arrive late).
        return {"shape": rng.choice(PARTITION_SHAPES), "seed": rng.randrange(1 << 30),
                "hold": rng.random() < 0.5}
    if kind == "partition":
        return {"shape": rng.choice(PARTITION_SHAPES), "seed": rng.randrange(1 << 30)}
    if kind in ("kill", "pause"):
        target = rng.choice(targets)
        return {"target": target, "seed": rng.randrange(1 << 30)}
    if swarm and kind in ("disk", "member"):
        p: dict[str, Any] = {"target": rng.choice(tuple(t for t in targets if t != "minority")),
             "seed": rng.randrange(1 << 30)}
        if kind == "disk":
            p["torn"] = rng.random() < 0.5
        return p
    if kind == "clock":
        mode = rng.choice(("skew", "bump", "strobe"))
        p = {"mode": mode, "node": rng.choice(list(nodes))}
        if mode == "skew":
            p["rate"] = _round(rng.choice((rng.uniform(0.5, 0.8), rng.uniform(1.25, 2.0))))
        elif mode == "bump":
            p["offset"] = _round(rng.choice((-1, 1)) * rng.uniform(0.1, 10.0))
        else:
            p["offset"] = _round(rng.uniform(0.05, 2.0))
            p["period"] = _round(rng.uniform(0.01, 0.2))
        return p
    if kind == "packet":
        mode = rng.choice(("loss", "delay", "duplicate"))
        if mode == "loss":
            return {"mode": mode, "probability": _round(rng.uniform(0.05, 0.3))}
        if mode == "delay":
            return {"mode": mode, "delay": _round(rng.uniform(0.02, 0.2))}
        return {"mode": mode, "probability": _round(rng.uniform(0.05, 0.3))}
    if kind == "disk":
        return {"node": rng.choice(list(nodes)), "torn": rng.random() < 0.5}
    if kind == "member":
        return {"target": rng.choice(("one", "leader")), "seed": rng.randrange(1 << 30)}
    raise ValueError(f"unknown fault kind {kind!r}")


def make_schedule(kinds: Sequence[str], nodes: Sequence[int], time_limit: float,
                  rng: random.Random, *, slot: float = 6.0) -> list[Fault]:
    """Faults one after another, covering ``time_limit`` seconds in slots of about ``slot``
    seconds (shorter if needed so every kind gets one): in each slot a quiet gap, then the
    fault, then it is healed before the slot ends."""
    if not kinds or time_limit <= 0:
        return []
    n_slots = max(len(kinds), math.floor(time_limit / slot))
    length = time_limit / n_slots
    order = list(kinds)
    rng.shuffle(order)
    faults: list[Fault] = []
    for i in range(n_slots):
        kind = order[i % len(order)]
        base = i * length
        start = base + length * rng.uniform(0.15, 0.3)
        stop = base + length * rng.uniform(0.8, 0.95)
        faults.append(Fault(kind, _round(start), _round(stop), _params(kind, nodes, rng)))
    return faults


def make_swarm_schedule(kinds: Sequence[str], nodes: Sequence[int], time_limit: float,
                        rng: random.Random, *, gap: float, duration: tuple[float, float],
                        max_overlap: int) -> list[Fault]:
    """Faults whose starts are a random process (mean ``gap`` seconds apart), each lasting
    ``duration`` [low, high] seconds, at most ``max_overlap`` at once and never two of one
    kind at once; the first ones deal every kind once (shuffled), the rest draw at random."""
    if not kinds or time_limit <= 0:
        return []
    faults: list[Fault] = []
    order = list(kinds)
    rng.shuffle(order)
    t = rng.uniform(0.2, gap)
    while t < time_limit - 0.5:
        active = [f for f in faults if f.stop > t]
        busy = {f.kind for f in active}
        free = [k for k in order if k not in busy]
        if len(active) < max_overlap and free:
            dealt = {f.kind for f in faults}
            fresh = [k for k in free if k not in dealt]
            kind = fresh[0] if fresh else rng.choice(free)
            stop = min(t + rng.uniform(*duration), time_limit - 0.1)
            faults.append(Fault(kind, _round(t), _round(max(stop, t)), _params(kind, nodes, rng, swarm=True)))
        t += rng.expovariate(1.0 / gap)
    return faults


# Burst shapes of ``make_burst_schedule``: a few faults aimed at one election each.
BURSTS: tuple[str, ...] = ("deposed-leader", "lost-vote")


def make_burst_schedule(kinds: Sequence[str], nodes: Sequence[int], time_limit: float,
                        rng: random.Random, *, gap: float) -> list[Fault]:
    """Faults in bursts, each aimed at one election, in the rare interleavings Raft bugs need
    (the run's ``swarm.schedule.burst``; bursts are ``gap`` seconds apart on average):

    - ``deposed-leader``: the leader is cut off with its links holding what it sends
      (partition ``isolate-leader``, ``hold``) and the partition heals the moment another
      member leads a newer term (``heal: new-leader``, waiting at most until ``stop``), so the
      old leader's appends land just after the new leader's election;
    - ``lost-vote``: the leader fails (kill, pause or isolated) until a little after the next
      election, a member is crashed the moment it grants a vote in that election (disk, or
      kill; target ``voted``) and restarts soon from what its disk kept of the vote, and the
      winner is cut off or killed as soon as (or shortly after) it wins: elections in quick
      succession, among members that may have missed or forgotten the last one.

    Only the kinds in ``kinds`` are used (in the order of preference written above); a shape
    that needs a kind the run lacks is not drawn. Partitions never overlap; kills, pauses and
    power losses of a burst may, each on its own member."""
    shapes = [b for b in BURSTS
              if (b == "deposed-leader" and "partition" in kinds)
              or (b == "lost-vote" and any(k in kinds for k in ("disk", "kill"))
                  and any(k in kinds for k in ("kill", "pause", "partition")))]
    if not shapes or time_limit <= 0:
        return []
    faults: list[Fault] = []
    end = time_limit - 0.1
    t = rng.uniform(0.5, gap)
    while t < time_limit - 1.0:
        shape = rng.choice(shapes)
        burst: list[Fault] = []
        if shape == "deposed-leader":
            burst.append(Fault("partition", _round(t), _round(min(end, t + rng.uniform(2.0, 8.0))),
                               {"shape": "isolate-leader", "seed": rng.randrange(1 << 30), "hold": True,
                                "heal": "new-leader"}))
        else:
            used: set[str] = set()
            crash = _burst_kind(("disk", "kill"), kinds, used)
            first = _burst_kind(("kill", "pause", "partition"), kinds, used)
            if crash is None or first is None:
                break
            # The leader is down for a while; the member that grants the next vote crashes at
            # once and restarts soon after from what its disk kept; whoever wins that election
            # is cut off (or killed) as soon as it wins, for longer.
            burst.append(_burst_fault(first, "leader", t, 12.0, end, rng,
                                      heal=("new-leader", rng.uniform(0.6, 3.0))))
            burst.append(_burst_fault(crash, "voted", t + 0.001, 12.0, end, rng,
                                      wait=8.0, hold_for=rng.uniform(0.3, 3.0)))
            third = _burst_kind(("partition", "kill", "pause"), kinds, used)
            if third is not None:
                burst.append(_burst_fault(third, "new-leader", t + 0.002, 14.0, end, rng,
                                          wait=8.0, hold_for=rng.uniform(4.0, 10.0),
                                          lag=rng.choice((0.0, rng.uniform(0.01, 0.5)))))
        faults.extend(f for f in burst if f.start < end)
        t = max(f.stop for f in burst) + rng.expovariate(1.0 / gap)
    return faults


def _burst_kind(options: Sequence[str], kinds: Sequence[str], used: set[str]) -> str | None:
    """The first of ``options`` the run has, noting it in ``used``: a partition (one set of cut
    links at a time) is used once per burst; kills, pauses and power losses hit different
    members and may overlap."""
    for kind in options:
        if kind in kinds and not (kind == "partition" and kind in used):
            used.add(kind)
            return kind
    return None


def _burst_fault(kind: str, target: str, start: float, duration: float, end: float,
                 rng: random.Random, *, wait: float | None = None, hold_for: float | None = None,
                 lag: float | None = None, heal: tuple[str, float] | None = None) -> Fault:
    """One fault of a burst: ``kind`` aimed at ``target`` (a partition isolates the leader or
    the target); ``wait``, ``lag`` and ``hold_for`` as in ``Nemesis._start`` (how long a state
    target waits for its event, how long after the event it hits, and how long the fault
    lasts from then)."""
    params: dict[str, Any]
    if kind == "partition":
        params = {"shape": "isolate-leader", "seed": rng.randrange(1 << 30)}
        if target != "leader":
            params["target"] = target  # isolate this member instead of the leader at the start
    else:
        params = {"target": target, "seed": rng.randrange(1 << 30)}
        if kind == "disk":
            params["torn"] = rng.random() < 0.5
    if wait is not None:
        params["wait"] = _round(wait)
    if hold_for is not None:
        params["hold_for"] = _round(hold_for)
    if lag:
        params["lag"] = _round(lag)
    if heal is not None:
        params["heal"], params["heal_lag"] = heal[0], _round(heal[1])
    return Fault(kind, _round(start), _round(max(start, min(end, start + duration))), params)


def overlapping(schedule: Sequence[Fault]) -> bool:
    """Whether any two faults of the schedule are active at once."""
    end = -math.inf
    for f in sorted(schedule, key=lambda f: (f.start, f.stop)):
        if f.start < end:
            return True
        end = max(end, f.stop)
    return False


# -- partition shapes ------------------------------------------------------------------

def cut(groups: Sequence[Sequence[int]]) -> list[list[int]]:
    """Blocked directed links between every pair of different groups."""
    blocked: list[list[int]] = []
    for gi, a in enumerate(groups):
        for gj, b in enumerate(groups):
            if gi != gj:
                blocked.extend([s, d] for s in a for d in b)
    return sorted(blocked)


def partition_links(shape: str, nodes: Sequence[int], rng: random.Random,
                    leader: int | None) -> tuple[list[list[int]], dict[str, Any]]:
    """(blocked directed links, a readable description) for one partition shape."""
    ns = sorted(nodes)
    shuffled = list(ns)
    rng.shuffle(shuffled)
    if shape == "halves":
        half = len(ns) // 2
        groups = [sorted(shuffled[:half]), sorted(shuffled[half:])]
        return cut(groups), {"groups": groups}
    if shape in ("isolate-one", "isolate-leader"):
        victim = leader if shape == "isolate-leader" and leader is not None else shuffled[0]
        groups = [[victim], [n for n in ns if n != victim]]
        return cut(groups), {"groups": groups}
    if shape == "majorities-ring" and len(ns) < 5:
        # With 3 or 4 nodes no symmetric cut gives every node a different majority; a bridge
        # (two sides that share one node) is the closest shape that still cuts links.
        blocked, desc = partition_links("bridge", ns, rng, leader)
        return blocked, {**desc, "note": "majorities-ring needs 5+ nodes: bridge used"}
    if shape == "majorities-ring":
        n = len(ns)
        majority = n // 2 + 1
        reach = math.ceil((majority - 1) / 2)
        pos = {node: i for i, node in enumerate(shuffled)}
        blocked = []
        for a in ns:
            for b in ns:
                if a == b:
                    continue
                d = abs(pos[a] - pos[b])
                if min(d, n - d) > reach:
                    blocked.append([a, b])
        return sorted(blocked), {"ring": shuffled}
    if shape == "bridge":
        bridge = shuffled[0]
        rest = shuffled[1:]
        half = len(rest) // 2
        side_a, side_b = sorted(rest[:half]), sorted(rest[half:])
        return cut([side_a, side_b]), {"groups": [side_a, side_b], "bridge": bridge}
    if shape == "one-way":
        victim = shuffled[0]
        direction = rng.choice(("outbound", "inbound"))
        others = [n for n in ns if n != victim]
        if direction == "outbound":
            blocked = [[victim, o] for o in others]
        else:
            blocked = [[o, victim] for o in others]
        return sorted(blocked), {"node": victim, "direction": direction}
    raise ValueError(f"unknown partition shape {shape!r}")


def pick_nodes(target: str, nodes: Sequence[int], rng: random.Random, leader: int | None) -> list[int]:
    ns = sorted(nodes)
    if target == "leader":
        return [leader] if leader is not None else [rng.choice(ns)]
    if target == "one":
        return [rng.choice(ns)]
    if target == "minority":
        k = max(1, (len(ns) - 1) // 2)
        return sorted(rng.sample(ns, k))
    raise ValueError(f"unknown node target {target!r}")


def current_node(node: int, node_ids: Sequence[int]) -> int:
    """``node`` if it is still a member, else a stand-in (membership faults change ids)."""
    ids = sorted(node_ids)
    return node if node in ids else ids[node % len(ids)]


# -- what a target must offer --------------------------------------------------------

class FaultTarget(Protocol):
    """The operations the nemesis performs on a cluster (sim or real processes)."""

    @property
    def node_ids(self) -> list[int]:
        """The current members' ids (membership faults change them)."""
        ...

    def supported_faults(self) -> tuple[str, ...]: ...

    async def leader(self) -> int | None: ...

    async def block_links(self, blocked: list[list[int]]) -> None: ...

    async def heal_links(self) -> None: ...

    async def kill(self, node: int) -> None: ...

    async def restart(self, node: int) -> None: ...

    async def pause(self, node: int) -> None: ...

    async def resume(self, node: int) -> None: ...

    async def set_clock(self, node: int, rate: float, offset: float) -> None: ...

    async def reset_clock(self, node: int) -> None: ...

    async def set_packet_faults(self, loss: float, delay: float, duplicate: float) -> None: ...

    async def crash_disk(self, node: int, torn: bool) -> None: ...

    async def remove_member(self, node: int) -> bool: ...

    async def add_member(self, node: int) -> int | None:
        """Add a member in place of removed ``node``; its id (None if it could not)."""
        ...


class StateTarget(Protocol):
    """What a target that can see the cluster's state offers for ``STATE_TARGETS`` (the
    simulation does; others fall back, see ``Nemesis.resolve``)."""

    async def most_behind(self) -> int | None: ...

    async def next_leader(self, timeout: float) -> int | None:
        """The member that wins the next election within ``timeout`` seconds (None if none)."""
        ...

    async def next_acker(self, timeout: float) -> int | None:
        """The next follower that acknowledges an append within ``timeout`` seconds."""
        ...


class Nemesis:
    """Runs a schedule against a target, recording each start and stop."""

    def __init__(self, target: FaultTarget, recorder: Recorder, schedule: Sequence[Fault],
                 rng: random.Random, *, on_fault: Callable[[str], None] | None = None) -> None:
        self.target = target
        self.recorder = recorder
        self.schedule = sorted(schedule, key=lambda f: (f.start, f.stop))
        self.rng = rng
        self.active: list[tuple[Fault, dict[str, Any]]] = []
        self.started: dict[str, int] = {}
        self.healed: dict[str, int] = {}
        self.on_fault = on_fault
        self._strobe_scope: trio.CancelScope | None = None
        # Overlapping faults run in tasks of their own, but the history allows one open op per
        # process: their actions (invoke .. completion) take turns. (No lock otherwise, so a
        # schedule without overlaps runs exactly as it always has.)
        self._turn: trio.Lock | None = trio.Lock() if overlapping(self.schedule) else None

    def _one_at_a_time(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._turn if self._turn is not None else contextlib.nullcontext()

    async def run(self, time_origin: float) -> None:
        """Run every fault of the schedule; times are seconds after ``time_origin``
        (``trio.current_time()`` at the workload start). Overlapping faults run in tasks of
        their own; a schedule without overlaps runs in this one task, as it always has."""
        if overlapping(self.schedule):
            async with trio.open_nursery() as nursery:
                for fault in self.schedule:
                    nursery.start_soon(self._run_one, fault, time_origin)
            return
        for fault in self.schedule:
            await self._run_one(fault, time_origin)

    async def _run_one(self, fault: Fault, time_origin: float) -> None:
        await trio.sleep_until(time_origin + fault.start)
        resolved = await self.start(fault)
        t: Any = self.target
        if fault.params.get("heal") == "new-leader" and hasattr(t, "next_leader_append"):
            # heal the moment a member leads a newer term (at the latest at ``stop``)
            with trio.move_on_at(time_origin + fault.stop):
                leader = await t.next_leader_append(fault.stop - fault.start)
                if leader is not None:
                    resolved = {**resolved, "healed_at": f"n{leader} leads a newer term"}
                    await trio.sleep(float(fault.params.get("heal_lag", 0.0)))
        elif "hold_for" in fault.params:
            # the fault lasts ``hold_for`` seconds from when it hit (a state target may have
            # waited for its event), at the latest until ``stop``
            await trio.sleep_until(min(time_origin + fault.stop, trio.current_time() + float(fault.params["hold_for"])))
        else:
            await trio.sleep_until(time_origin + fault.stop)
        if any(f is fault for f, _ in self.active):
            await self.stop(fault, resolved)

    async def resolve(self, target: str, rng: random.Random, leader: int | None,
                      wait: float) -> list[int]:
        """The members a node target names now; a state target waits at most ``wait``
        seconds for its event (the next election, the next append ack)."""
        t: Any = self.target
        found: int | None = None
        if target == "most-behind" and hasattr(t, "most_behind"):
            found = await t.most_behind()
        elif target == "new-leader" and hasattr(t, "next_leader"):
            found = await t.next_leader(wait)
        elif target == "acked" and hasattr(t, "next_acker"):
            found = await t.next_acker(wait)
        elif target == "voted" and hasattr(t, "next_voter"):
            found = await t.next_voter(wait)
        if target in STATE_TARGETS or target == "voted":
            if found is not None and found in self.target.node_ids:
                return [found]
            target = "leader" if target == "new-leader" else "one"
            if target == "leader":
                leader = await self.target.leader()
        return pick_nodes(target, self.target.node_ids, rng, leader)

    async def heal_all(self) -> None:
        """Stop every active fault (the final phase), in reverse order of starting, and end
        the target's background perturbation (if it has any) so recovery is judged in calm."""
        while self.active:
            fault, resolved = self.active[-1]
            await self.stop(fault, resolved)
        quiesce = getattr(self.target, "quiesce", None)
        if quiesce is not None:
            await quiesce()

    async def start(self, fault: Fault) -> dict[str, Any]:
        # A fault action, once begun, completes (and is recorded) even if the main phase ends
        # meanwhile: the history never holds a nemesis invoke without its completion.
        value: dict[str, Any] = {}
        with trio.CancelScope(shield=True):
            value = await self._start(fault)
        return value

    async def _start(self, fault: Fault) -> dict[str, Any]:
        rng = random.Random(f"{fault.params.get('seed', 0)}:{fault.kind}:{fault.start}")
        t = self.target
        leader = await t.leader()
        kind, p = fault.kind, fault.params
        # a state target's event must come in time: by ``wait`` seconds, else half the length
        wait = float(p.get("wait", (fault.stop - fault.start) / 2))
        value: dict[str, Any]
        if kind == "partition":
            if p.get("target") in STATE_TARGETS:  # e.g. isolate the member that wins the next election
                leader = (await self.resolve(p["target"], rng, leader, wait))[0]
            blocked, desc = partition_links(p["shape"], t.node_ids, rng, leader)
            value = {"shape": p["shape"], **desc, "blocked": blocked}
            if p.get("hold"):
                value["hold"] = True
        elif kind in ("kill", "pause"):
            value = {"target": p["target"], "nodes": await self.resolve(p["target"], rng, leader, wait)}
        elif kind == "clock" or kind == "packet":
            value = dict(p)
        elif kind == "disk" and "target" in p:
            value = {"target": p["target"], "node": (await self.resolve(p["target"], rng, leader, wait))[0],
                     "torn": p["torn"]}
        elif kind == "disk":
            value = {"node": p["node"], "torn": p["torn"]}
        elif kind == "member":
            value = {"node": (await self.resolve(p["target"], rng, leader, wait))[0]}
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        if p.get("lag"):
            await trio.sleep(float(p["lag"]))  # hit the target this long after its event
        async with self._one_at_a_time():
            inv = self.recorder.invoke("nemesis", f"start-{kind}", value)
            outcome = await self._apply_start(kind, value)
            self.recorder.complete(inv, "info", outcome)
        self.active.append((fault, value))
        self.started[kind] = self.started.get(kind, 0) + 1
        if self.on_fault:
            self.on_fault(f"start-{kind}")
        return value

    async def _apply_start(self, kind: str, value: dict[str, Any]) -> dict[str, Any]:
        t = self.target
        if kind == "partition":
            if value.get("hold") and hasattr(t, "hold_links"):
                await t.hold_links(value["blocked"])
            else:
                await t.block_links(value["blocked"])
        elif kind == "kill":
            for n in value["nodes"]:
                await t.kill(n)
        elif kind == "pause":
            for n in value["nodes"]:
                await t.pause(n)
        elif kind == "clock":
            node = value["node"]
            if value["mode"] == "skew":
                await t.set_clock(node, value["rate"], 0.0)
            elif value["mode"] == "bump":
                await t.set_clock(node, 1.0, value["offset"])
            else:
                self._start_strobe(node, value["offset"], value["period"])
        elif kind == "packet":
            mode = value["mode"]
            await t.set_packet_faults(
                value["probability"] if mode == "loss" else 0.0,
                value["delay"] if mode == "delay" else 0.0,
                value["probability"] if mode == "duplicate" else 0.0,
            )
        elif kind == "disk":
            await t.crash_disk(value["node"], value["torn"])
        elif kind == "member":
            ok = await t.remove_member(value["node"])
            return {**value, "removed": ok}
        return value

    def _start_strobe(self, node: int, offset: float, period: float) -> None:
        nursery = self._nursery
        scope = trio.CancelScope()
        self._strobe_scope = scope

        async def strobe() -> None:
            with scope:
                high = False
                while True:
                    high = not high
                    await self.target.set_clock(node, 1.0, offset if high else 0.0)
                    await trio.sleep(period)

        nursery.start_soon(strobe)

    _nursery: trio.Nursery

    def bind(self, nursery: trio.Nursery) -> None:
        """The nursery that runs background fault tasks (the clock strobe)."""
        self._nursery = nursery

    async def stop(self, fault: Fault, value: dict[str, Any]) -> None:
        with trio.CancelScope(shield=True):
            await self._stop(fault, value)

    async def _stop(self, fault: Fault, value: dict[str, Any]) -> None:
        self.active = [(f, v) for (f, v) in self.active if f is not fault]
        async with self._one_at_a_time():
            await self._stop_action(fault, value)

    async def _stop_action(self, fault: Fault, value: dict[str, Any]) -> None:
        kind = fault.kind
        inv = self.recorder.invoke("nemesis", f"stop-{kind}", value)
        t = self.target
        outcome: dict[str, Any] = dict(value)
        if kind == "partition":
            await t.heal_links()
        elif kind == "kill":
            for n in value["nodes"]:
                await t.restart(n)
        elif kind == "pause":
            for n in value["nodes"]:
                await t.resume(n)
        elif kind == "clock":
            if self._strobe_scope is not None:
                self._strobe_scope.cancel()
                self._strobe_scope = None
            await t.reset_clock(value["node"])
        elif kind == "packet":
            await t.set_packet_faults(0.0, 0.0, 0.0)
        elif kind == "disk":
            await t.restart(value["node"])
        elif kind == "member":
            outcome["added"] = await t.add_member(value["node"])
        self.recorder.complete(inv, "info", outcome)
        self.healed[kind] = self.healed.get(kind, 0) + 1
        if self.on_fault:
            self.on_fault(f"stop-{kind}")
