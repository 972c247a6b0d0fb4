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
  them all after the partition heals (at the link's next TCP retransmission:
  sim/network.py) instead of dropping them. Swarm schedules add
  ``rolling-leader``: isolate the leader, then, round after round until the fault stops,
  move the cut to the next leader the moment it shows itself and release the previous
  victim (``Nemesis._roll``): elections in quick succession, each new leader cut off right
  after it appended (the Raft paper's Figure 8 sequence) or right after it committed (its
  commit cannot spread). Half of the swarm ``isolate-leader`` cuts move (``move:
  new-leader``, ``advances``; ``Nemesis._move_cut``): once the leader elected behind the
  cut has committed a few times, the cut moves in one step to put that leader and a few
  others in a minority, the first victim back on the majority side with the proposals its
  clients kept sending it while it was cut off (a flapping link, a rack that comes back as
  another goes, Jepsen's partitions that change shape without a heal between them).
- kill / pause: ``target`` ``one`` | ``minority`` | ``leader`` (kill -9 + restart;
  SIGSTOP + SIGCONT); swarm schedules add the state-driven targets of ``STATE_TARGETS``:
  ``new-leader`` (wait for the next election and hit the member that just won it),
  ``most-behind`` (the member with the lowest applied index) and ``acked`` (wait for a
  follower to acknowledge an append and hit it at that instant). The local target
  approximates them from outside (status calls, the acks passing its proxy: LocalCluster).
  A target that cannot see that state or where it does not happen in time falls back to
  ``leader`` or a random member; the nemesis op's value records what was hit.
- clock: one node's clock: ``skew`` (rate), ``bump`` (offset seconds) or ``strobe`` (offset
  flipping every ``period`` seconds); stop resets the clock.
- packet: ``loss`` (probability), ``delay`` (extra mean seconds) or ``duplicate``
  (probability) on every link.
- disk: a node loses power: what it had not fsynced is lost and its last write may be torn;
  stop restarts it. ``node`` fixed in the schedule, or (swarm) a ``target`` as for kill.
  Swarm kill and disk faults may carry ``power`` ``majority`` | ``all`` (``POWER_TARGETS``):
  the target's member and others up to a majority or every member go down at once (a power
  loss of most of the cluster: a write acknowledged before it was durable on a majority is
  then lost), and all come back at the stop.
- member: remove a node from the cluster (a Raft conf change); stop adds it back with an
  empty data directory. Or (half of them, ``mode: churn``, on a target that can grow the
  cluster: the simulation) membership churn as Jepsen's etcd nemesis: 2-5 changes issued at
  once or milliseconds apart, none awaiting another, the first two going the same way (3 ->
  5 members, 5 -> 3), the change after a leader's removal going to the new leader the instant
  it is elected, removed members running on for ``linger`` seconds; with ``split`` the network
  is cut along the old/new configuration boundary (``config_split``) the moment the first two
  changes applied on the leader. The stop op lists each change, its outcome and the split.
  Half of the member faults (``learner_of``) add members as etcd recommends: ``member add
  --learner``, then ``member promote`` retried until the learner is in sync; meanwhile the
  learner may be cut off, crash, or be cut off together with the leader and a minority of
  the voters (``LEARNER_TROUBLES``). A plain member fault with a learner on a target that can
  grow the cluster adds the learner at the start and removes the target member at the stop
  (the voters stay as many, an odd number, while the learner is one). Half of the churns
  (``depose_of``) depose their leader the instant a follower acknowledged the first change
  (cut off or killed, ``SimCluster.cut_at_conf_ack``; half of them first hand leadership to
  that follower, as etcd's leader does on a graceful stop) and send the next change to the new
  leader the instant it is elected, with the old term's change still uncommitted; the member
  it removes lingers (``depose.linger``, until it applies its own removal) and the split
  along the configurations is the sequence's own when the churn drew none.
- client-pause: stall one client process of the harness (its operations and its lease
  keepalives) from start to stop; ``target`` ``holder`` (a client inside its critical
  section) or ``any``; the value records the client, its process and what it holds. Only
  clients a workload registers as pausable stall (workloads/clientpause.py). It needs no
  control of the store's processes, so every target (and an existing etcd cluster) has it;
  ``all`` does not include it.

Burst schedules (``make_burst_schedule``, half the swarm seeds) also use the targets
``voted`` (the member that grants a vote in the next election, at that instant) and
``revoted`` (the member that grants a vote in a term it already held: ``VOTE_TARGETS``) and these
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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from kvcheck.exitcodes import UsageError
from kvcheck.workloads.clientpause import ClientGates
from kvcheck.workloads.recorder import Recorder

FAULT_KINDS: tuple[str, ...] = ("partition", "kill", "pause", "clock", "packet", "disk", "member")
PARTITION_SHAPES: tuple[str, ...] = (
    "halves", "isolate-one", "isolate-leader", "majorities-ring", "bridge", "one-way",
)
# Shapes only swarm schedules draw (a plain schedule's draws stay as they were).
SWARM_PARTITION_SHAPES: tuple[str, ...] = ("rolling-leader",)
# The cycle of a rolling-leader partition's rounds (see Nemesis._roll).
ROLL_STEPS: tuple[str, ...] = ("new-leader", "committed", "settle")
SIM_ONLY_KINDS: tuple[str, ...] = ("clock", "disk")
# Faults of the harness's clients, not of the store's members (``all`` leaves them out).
CLIENT_FAULT_KINDS: tuple[str, ...] = ("client-pause",)
KNOWN_FAULT_KINDS: tuple[str, ...] = FAULT_KINDS + CLIENT_FAULT_KINDS
NODE_TARGETS: tuple[str, ...] = ("one", "minority", "leader")
# Targets chosen from the cluster's state when the fault starts (see the module doc).
STATE_TARGETS: tuple[str, ...] = ("new-leader", "most-behind", "acked")
# Swarm kill and disk faults may hit several members at once (a rack or data centre losing
# power, Jepsen's lost-unfsynced-writes nemesis): the state target's member plus others up to
# a majority, or every member. Drawn from the fault's own seed (see ``power_of``).
POWER_TARGETS: tuple[str, ...] = ("majority", "all")
# Targets of burst schedules aimed at a vote: ``voted`` (the member that grants a vote in the
# next election, at that instant) and ``revoted`` (the member that grants a vote in a term it
# already held before it was asked: it had refused another candidate of that term, or learned
# the term from a reply, so the vote is the only change its durable state gets).
VOTE_TARGETS: tuple[str, ...] = ("voted", "revoted")


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
        if item not in KNOWN_FAULT_KINDS:
            raise UsageError(f"unknown fault kind {item!r}; known: {', '.join(KNOWN_FAULT_KINDS)}, all, none")
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
        if d["kind"] not in KNOWN_FAULT_KINDS:
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
    if kind == "client-pause":
        return {"target": "holder", "seed": rng.randrange(1 << 30)}
    if kind == "partition" and swarm:
        # hold: the cut links buffer their messages and deliver them all at the heal, as TCP
        # connections that survive a partition do (an old leader's appends arrive late).
        # rolling-leader weighs as much as three plain shapes: its rounds reach states
        # (elections in quick succession, two uncommitted tails) no single cut does.
        p1: dict[str, Any] = {"shape": rng.choice(PARTITION_SHAPES + SWARM_PARTITION_SHAPES * 3),
                              "seed": rng.randrange(1 << 30), "hold": rng.random() < 0.5}
        if p1["shape"] != "rolling-leader":
            p1.update(leader_ack_of(p1["seed"]))
        if p1["shape"] == "isolate-leader":
            p1.update(move_of(p1["seed"]))
        return p1
    if kind == "partition":
        return {"shape": rng.choice(PARTITION_SHAPES), "seed": rng.randrange(1 << 30)}
    if kind in ("kill", "pause"):
        target = rng.choice(targets)
        p0: dict[str, Any] = {"target": target, "seed": rng.randrange(1 << 30)}
        if swarm and kind == "kill":
            p0.update(power_of(p0["seed"]))
        return p0
    if swarm and kind in ("disk", "member"):
        p: dict[str, Any] = {"target": rng.choice(tuple(t for t in targets if t != "minority")),
             "seed": rng.randrange(1 << 30)}
        if kind == "disk":
            p["torn"] = rng.random() < 0.5
            p.update(power_of(p["seed"]))
        return churn_params(p, depose=True) if kind == "member" else p
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
        return churn_params({"target": rng.choice(("one", "leader")), "seed": rng.randrange(1 << 30)})
    raise ValueError(f"unknown fault kind {kind!r}")


def churn_params(p: dict[str, Any], *, depose: bool = False) -> dict[str, Any]:
    """Half of the member faults (by their seed, so no other draw of a schedule moves) are
    membership churn, as Jepsen's etcd membership nemesis: ``changes`` conf changes issued
    in quick succession without waiting for one another, growing the cluster up to
    ``high`` members and shrinking it down to 3 (3 -> 5 and back: two pending changes
    could make majorities that do not intersect), a removal of the leader being followed by
    the next change at the new leader the moment it is elected (its first entry not yet
    applied). A store must refuse or serialize such changes; the history records each
    change and its outcome (the stop op). Learners (``learner_of``) in any schedule; the
    deposed-leader sequence (``depose_of``, its stop waits seconds longer) in swarm ones
    (``depose``)."""
    seed = int(p["seed"])
    if seed % 2 == 0:
        return {**p, **learner_of(seed)}
    return {**p, "mode": "churn", "changes": 2 + (seed >> 1) % 4, "high": 5 + (seed >> 3) % 3,
            "linger": round(0.1 * ((seed >> 5) % 20), 1),
            "split": round(0.5 + 0.25 * ((seed >> 10) % 12), 2) if (seed >> 9) % 4 else 0.0,
            **learner_of(seed), **(depose_of(seed) if depose else {})}


# What may happen to a member while it is a learner (``learner_of``): nothing but its catch-up,
# its links cut (it cannot catch up: the promotion is refused until the cut heals), a crash and
# restart, or a cut that leaves it on the leader's side, away from the other voters (a new
# member placed in the leader's rack or zone, which then loses the rest).
LEARNER_TROUBLES: tuple[str, ...] = ("none", "isolate", "crash", "with-leader")
# How long the nemesis keeps asking to promote a learner (etcd refuses a learner that is not
# in sync with the leader: ``member promote`` is retried, as an operator or operator script does).
PROMOTE_TIMEOUT = 8.0


def learner_of(seed: int) -> dict[str, Any]:
    """A member fault's learner parameters, or nothing: half of the member adds go the way
    etcd recommends, ``member add --learner``, then ``member promote`` once the learner has
    caught up (retried while the leader answers "learner not in sync"). ``catch_up``: seconds
    before the first promote; ``trouble`` (``LEARNER_TROUBLES``) and ``for`` (its seconds):
    what happens to the learner meanwhile. A learner must not count toward commit or votes,
    nor campaign, nor serve linearizable requests; with learners in the cluster for seconds,
    a store that counts them shows it in the history (a write acknowledged on the leader's and
    the learner's word alone is lost when the other voters elect). Drawn from the fault's
    seed alone, so every other draw of a schedule stays as it was."""
    r = random.Random(f"{seed}:learner")
    if r.random() >= 0.5:
        return {}
    return {"learner": {"catch_up": round(r.uniform(0.0, 2.0), 2), "trouble": r.choice(LEARNER_TROUBLES),
                        "for": round(r.uniform(0.5, 3.0), 2)}}


def depose_of(seed: int) -> dict[str, Any]:
    """A churn's deposed-leader sequence, or nothing (half of the churns): the churn's first
    conf change is in flight (a follower has acknowledged it, the leader has not committed
    it) when its leader is cut off (``how: isolate``, its messages held until the heal) or
    killed (``kill``), at that instant; the churn's next change goes to the new leader the
    instant it is elected (its first entry, and the old term's change, not yet committed:
    a leader must not accept a conf change before its first entry of its term applied, the
    single-server membership change bug Ongaro described on raft-dev in 2015; etcd's leader
    sets its pending conf index to its last index on election). ``heal_after``: seconds until
    the old leader is reconnected or restarted. ``linger``: seconds the member the sequence
    removes keeps running after the leader applied its removal (it replaces the churn's own
    ``linger``, which may be 0): an etcd member runs on until it applies its own removal (or a
    peer answers it that it was removed) and the operator stops it later, so meanwhile it
    answers clients and may vote or lead with the configuration it knows. ``hand_off`` (half
    of them): the old leader first hands leadership to the follower that acknowledged the
    change, if that follower has its whole log, as an etcd leader stopped gracefully (or
    asked to ``move-leader`` before maintenance) transfers leadership to an up-to-date voter
    (``SimCluster.cut_at_conf_ack``); otherwise any member may win the election, and in 5 or
    7 members it is rarely the one follower that holds the change. ``split``: seconds of the
    cut along the old/new configuration boundary (``config_split``) once the new leader
    applied its change, when the churn drew none of its own (``churn_params`` draws 0 for a
    quarter): with two changes in flight, each side may hold a majority of the configuration
    it knows, the split that makes such a store lose writes. Drawn from the fault's seed
    alone (linger, hand_off and split after the earlier draws, so none of them moves)."""
    r = random.Random(f"{seed}:depose")
    if r.random() >= 0.5:
        return {}
    how, heal_after = r.choice(("isolate", "kill")), round(r.uniform(1.0, 4.0), 2)
    linger = round(r.uniform(0.5, 4.0), 2)
    hand_off = r.random() < 0.5
    return {"depose": {"how": how, "heal_after": heal_after, "linger": linger, "hand_off": hand_off,
                       "split": round(r.uniform(0.5, 3.5), 2)}}


def config_split(old: Sequence[int], new: Sequence[int], leader: int | None = None) -> list[list[int]]:
    """Two sides along a membership change's boundary: one with the leader (which applied
    the change), every member the change added and just enough other shared members for a
    majority of the new configuration; the other with everything else (the removed members
    and the rest of the shared ones, which may not know yet that the change committed).
    When old and new differ by one member, no such split gives both sides a majority of
    their own configuration; when two changes were pending at once (3 -> 5, 5 -> 3), it can."""
    old_s, new_s = set(old), set(new)
    added = sorted(new_s - old_s)
    shared = sorted(new_s & old_s, key=lambda m: (m != leader, m))  # the leader first
    need = len(new_s) // 2 + 1
    side_new = added + shared[:max(0, need - len(added))]
    if leader in shared and leader not in side_new:
        side_new.append(leader)
    side_old = sorted((old_s | new_s) - set(side_new))
    return [sorted(side_old), sorted(side_new)] if side_old and side_new else []


def power_of(seed: int) -> dict[str, Any]:
    """A swarm kill or disk fault's ``power`` parameter (``POWER_TARGETS``), or nothing: one
    fault in five hits every member, one in five a majority. Drawn from the fault's seed
    alone, so adding it left every other draw of a schedule as it was."""
    x = random.Random(f"{seed}:power").random()
    if x < 0.2:
        return {"power": "all"}
    if x < 0.4:
        return {"power": "majority"}
    return {}


def leader_ack_of(seed: int) -> dict[str, Any]:
    """A swarm partition's timing: one in three is cut at the instant the leader receives an
    append acknowledgement (``at: leader-ack``), isolating it or cutting only what it sends
    (``leader-outbound``): it commits, and answers its clients, entries whose commit its
    followers never hear of, and the next leader starts with a commit index behind the
    acknowledged writes. Drawn from the fault's seed alone (other draws stay as they were)."""
    r = random.Random(f"{seed}:leader-ack")
    if r.random() >= 1 / 3:
        return {}
    return {"at": "leader-ack", "shape": r.choice(("isolate-leader", "leader-outbound"))}


def move_of(seed: int, share: float = 0.5) -> dict[str, Any]:
    """A swarm ``isolate-leader`` partition's move, or nothing: in ``share`` of them (half;
    a third of the deposed-leader bursts, ``BURST_MOVE_SHARE``) the cut moves (``move:
    new-leader``, see ``Nemesis._move_cut``) once the leader elected behind it has told its
    followers of a higher commit index ``advances`` (2 to 4) times. Drawn from the fault's
    seed alone, so every other draw of a schedule stays as it was."""
    r = random.Random(f"{seed}:move")
    if r.random() >= share:
        return {}
    return {"move": "new-leader", "advances": 2 + r.randrange(3)}


# The share of the burst schedule's deposed-leader cuts that move: the others heal as the new
# leader speaks, which is how stale_term_append is exposed (its deposed leader's held appends
# land just after the election; with half of them moved, 0 of its 20 quick seeds caught it).
BURST_MOVE_SHARE = 1 / 3

# A moved cut must outlast the elections after the move (election timeouts of up to 2 s,
# randomized up to twice that, pre-votes first): it lasts at least this long in all.
MOVE_MIN_SECONDS = 8.0


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
            params = _params(kind, nodes, rng, swarm=True)
            if params.get("shape") == "rolling-leader":  # its rounds each wait for an election
                stop = min(t + max(3 * (stop - t), 10.0), time_limit - 0.1)
            elif params.get("move"):  # an election, a commit, the move, then an election again
                stop = min(t + max(2 * (stop - t), MOVE_MIN_SECONDS), time_limit - 0.1)
            faults.append(Fault(kind, _round(t), _round(max(stop, t)), params))
        t += rng.expovariate(1.0 / gap)
    return faults


# Burst shapes of ``make_burst_schedule``: a few faults aimed at one election each.
BURSTS: tuple[str, ...] = ("deposed-leader", "lost-vote")


# The share of lost-vote bursts whose voter comes back at once (``make_burst_schedule``'s
# ``quick`` draws), and how soon: a kill -9 under a supervisor that restarts the process in
# milliseconds, or a power blip, while the election it voted in is still going on.
QUICK_RESTART_SHARE = 0.5
QUICK_RESTART_SECONDS = (0.002, 0.05)
# ... and of those, the share whose voter is ``revoted`` (see VOTE_TARGETS) instead of ``voted``.
REVOTED_SHARE = 0.25
# The share of lost-vote bursts (with a partition as their third fault) whose partition,
# instead of cutting off the winner, holds the first candidate's links from the instant it
# asks for votes, for this long (a slow link or a stalled network stack at election time).
SLOW_CANDIDATE_SHARE = 0.5
SLOW_CANDIDATE_SECONDS = (0.05, 0.6)


def make_burst_schedule(kinds: Sequence[str], nodes: Sequence[int], time_limit: float,
                        rng: random.Random, *, gap: float,
                        quick: random.Random | None = None) -> list[Fault]:
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
      succession, among members that may have missed or forgotten the last one. With
      ``quick`` (a substream of its own, so ``rng``'s draws stay as they were), in
      ``QUICK_RESTART_SHARE`` of these bursts the voter restarts at once (2-50 ms): it is
      back while the candidates of that same term are still asking (a split vote, a request
      that was slow on the way), and answers them from what its disk kept of its vote; a
      quarter of those (``REVOTED_SHARE``) crash the member that votes in a term it already held (target ``revoted``:
      a split vote's second request, after it refused a stale candidate or learned the term
      from a reply) instead of the first voter. And in ``SLOW_CANDIDATE_SHARE`` of the
      lost-vote bursts whose third fault is a partition, that partition instead isolates the
      first member to ask for votes, at that instant (``at: candidate``), holding its links
      for 50-600 ms: the others campaign in the same term meanwhile, and its requests arrive
      late, after votes were given (several candidates in one term, a long-delayed request).

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
            stop, seed = t + rng.uniform(2.0, 8.0), rng.randrange(1 << 30)
            params: dict[str, Any] = {"shape": "isolate-leader", "seed": seed, "hold": True, "heal": "new-leader"}
            move = move_of(seed, BURST_MOVE_SHARE)
            if move:  # the cut moves to the new leader's side instead of healing as it speaks
                del params["heal"]
                params.update(move)
                stop = max(stop, t + MOVE_MIN_SECONDS + (stop - t) / 2)
            burst.append(Fault("partition", _round(t), _round(min(end, stop)), params))
        else:
            lost = _lost_vote_burst(kinds, t, end, rng, quick)
            if lost is None:
                break
            burst = lost
        faults.extend(f for f in burst if f.start < end)
        t = max(f.stop for f in burst) + rng.expovariate(1.0 / gap)
    return faults


def _lost_vote_burst(kinds: Sequence[str], t: float, end: float, rng: random.Random,
                     quick: random.Random | None) -> list[Fault] | None:
    """The faults of one ``lost-vote`` burst from ``t`` (see ``make_burst_schedule``), None
    when ``kinds`` has no kind to crash the voter or to take the leader down."""
    used: set[str] = set()
    crash = _burst_kind(("disk", "kill"), kinds, used)
    first = _burst_kind(("kill", "pause", "partition"), kinds, used)
    if crash is None or first is None:
        return None
    # The leader is down for a while; the member that grants the next vote crashes at
    # once and restarts soon after from what its disk kept; whoever wins that election
    # is cut off (or killed) as soon as it wins, for longer.
    burst = [_burst_fault(first, "leader", t, 12.0, end, rng, heal=("new-leader", rng.uniform(0.6, 3.0)))]
    hold_for, voter = rng.uniform(0.3, 3.0), "voted"
    if quick is not None and quick.random() < QUICK_RESTART_SHARE:
        hold_for = quick.uniform(*QUICK_RESTART_SECONDS)
        voter = "revoted" if quick.random() < REVOTED_SHARE else "voted"
    burst.append(_burst_fault(crash, voter, t + 0.001, 12.0, end, rng, wait=8.0, hold_for=hold_for))
    third = _burst_kind(("partition", "kill", "pause"), kinds, used)
    if third is not None:
        burst.append(_burst_fault(third, "new-leader", t + 0.002, 14.0, end, rng,
                                  wait=8.0, hold_for=rng.uniform(4.0, 10.0),
                                  lag=rng.choice((0.0, rng.uniform(0.01, 0.5)))))
    if quick is not None and third == "partition" and quick.random() < SLOW_CANDIDATE_SHARE:
        # instead of cutting off the winner: hold the first candidate's requests
        burst[-1] = Fault("partition", burst[-1].start, burst[-1].stop, {
            "shape": "isolate-leader", "at": "candidate", "hold": True,
            "seed": quick.randrange(1 << 30), "wait": 8.0,
            "hold_for": _round(quick.uniform(*SLOW_CANDIDATE_SECONDS))})
    return burst


# The share of random-process swarm seeds (no bursts) that get lost-vote episodes laid over
# their schedule (``add_lost_vote_episodes``, their own substream).
LOST_VOTE_EPISODE_SHARE = 0.5
# The longest a lost-vote burst's faults last (the winner's cut: 14 s from the start).
LOST_VOTE_SPAN = 14.0


def add_lost_vote_episodes(schedule: Sequence[Fault], kinds: Sequence[str], time_limit: float,
                           rng: random.Random) -> list[Fault]:
    """``schedule`` (a random-process swarm schedule) with one or two lost-vote episodes laid
    over it: the faults of a ``lost-vote`` burst (the leader down, the member that votes next
    crashed at that instant, quickly restarted in half of them, the winner cut off), each at
    its drawn start, the second 1-4 s after the first ends. A member crashing right after
    it voted is a power loss or kill -9 at election time; the random process alone lands a
    crash there by chance only. Faults of the schedule of the kinds an episode uses that overlap
    it give way (one set of cut links at a time, one fault per member). Drawn from ``rng`` alone
    (the caller's own substream), so every other draw of the schedule stays as it was; nothing
    when ``kinds`` lacks a kind to crash the voter (disk, kill) or to take the leader down
    (kill, pause, partition)."""
    out = list(schedule)
    t = rng.uniform(0.5, max(0.5, time_limit / 2))
    for _ in range(1 + (rng.random() < 0.5)):
        probe = _lost_vote_burst(kinds, 0.0, LOST_VOTE_SPAN, random.Random(0), None)
        if probe is None:
            break
        used = sorted({f.kind for f in probe})
        if t + 1.0 > time_limit - 0.1:
            break
        burst = _lost_vote_burst(kinds, t, time_limit - 0.1, rng, rng)
        assert burst is not None
        span = max(f.stop for f in burst)
        out = [f for f in out if f.kind not in used or f.stop <= t or f.start >= span]
        out.extend(burst)
        t = span + rng.uniform(1.0, 4.0)
    return sorted(out, key=lambda f: (f.start, f.stop))


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


# Plain random faults that take members down (kill, power loss, a membership change) give way
# to a stale-leader episode they overlap, as its own kinds do (not in a burst schedule, and
# never a fault ``aimed`` at a cluster state): landing on the paused leader or on the majority
# while it serves, they end the episode before its window opens (register swarm seeds 0-99:
# 4 of the 6 uncaught paused episodes of 5 or 7 members had one, read_index_quorum_off_by_one).
EPISODE_DOWN_KINDS: tuple[str, ...] = ("kill", "disk", "member")


def add_stale_leader_episodes(schedule: Sequence[Fault], kinds: Sequence[str], time_limit: float,
                              rng: random.Random, *, election_timeout: float,
                              keep: bool = False, stall: bool = False) -> list[Fault]:
    """``schedule`` with one or two stale-leader episodes laid over it (a swarm seed's
    ``schedule.stale_leader``): a deposed leader that still serves its clients while the rest
    of the cluster has moved on.

    Why: a leader cut off from the majority keeps believing it leads until check-quorum
    deposes it, one to two election timeouts later, while the majority elects a new leader
    after its own randomized timeout and acknowledges writes. A store whose leader serves a
    read, or answers a lease keepalive, without confirming its leadership with a quorum
    shows stale state in that window only. On its own the window is short and opens while
    every client is still stuck on requests to the cut-off side, so the new leader's first
    acknowledged write rarely comes before the old leader steps down (measured: it came
    0.03-1.1 s after in all 14 deposed leaders of 31 register partition runs). A process
    pause of the leader (a GC or VM pause, SIGSTOP) at the moment its side of the network is
    cut lets the majority elect and serve writes meanwhile; when it resumes, its tick count
    has not moved, so it leads for up to two more election timeouts, with the clients that
    reach its side of the split reading from it.

    Each episode: a ``leader-minority`` partition (the leader with followers up to a
    minority on one side), and, when ``kinds`` has ``pause``, the leader paused a moment
    later for 2.5-4 election timeouts (plus up to a second), then resumed while the cut
    holds for 2-3 more election timeouts (plus up to 1.5 s). One set of cut links at a time,
    and the paused leader stays the one the cut isolates: an episode goes where no fault of
    its kinds that is ``aimed`` at a state of the cluster (rolling-leader rounds, a cut at a
    leader's ack, a heal at the next leader, a state target), or with ``keep`` (a burst
    schedule) no fault of its kinds at all, is active: the first such stretch from its drawn
    start, none without room. Plain random faults of its kinds, and without ``keep`` of
    ``EPISODE_DOWN_KINDS``, that overlap it give way (any other draw would do as well).
    Drawn from ``rng`` alone (the caller's own substream), so every other draw of the
    schedule stays as it was.

    ``stall`` (a swarm seed whose pool has ``pause`` but whose drawn kinds lack it): the
    leader still stalls in each episode, as if ``pause`` were drawn (``stall_of``: drawn from
    the episode's partition seed alone, so the episode's other draws stay as they were; the
    episode grows by the stall where that fits, else it stays the cut alone). Without it a seed
    without pauses gets the cut alone, whose window rarely opens (above): about half the
    episodes of register swarm seeds 0-199 were such cuts. A process stall (a GC or VM pause)
    is no rarer where the harness happened not to draw plain pauses."""
    if "partition" not in kinds or time_limit <= 0:
        return list(schedule)
    out = list(schedule)
    used = ("partition", "pause") if "pause" in kinds else ("partition",)
    t = rng.uniform(0.5, max(0.5, time_limit / 3))
    for _ in range(1 + (rng.random() < 0.5)):
        paused = rng.uniform(2.5, 4.0) * election_timeout + rng.uniform(0.0, 1.0) if "pause" in used else 0.0
        length = paused + rng.uniform(2.0, 3.0) * election_timeout + rng.uniform(0.0, 1.5)
        part_seed, pause_seed = rng.randrange(1 << 30), rng.randrange(1 << 30)
        kept = [f for f in out if keep or aimed(f)]
        if stall and not paused:  # the stalled episode where it fits, else the cut alone as before
            extra, stall_seed = stall_of(part_seed, election_timeout)
            at = _free_from(kept, used, t, length + extra)
            if at + length + extra <= time_limit - 0.1:
                paused, pause_seed, length = extra, stall_seed, length + extra
        # the first time no kept fault of its kinds is active; the others it overlaps give way
        t = _free_from(kept, used, t, length)
        if t + length > time_limit - 0.1:
            break
        out = [f for f in out if f.stop <= t or f.start >= t + length
               or (f.kind not in used and not (f.kind in EPISODE_DOWN_KINDS and not keep and not aimed(f)))]
        out.append(Fault("partition", _round(t), _round(t + length), {"shape": "leader-minority", "seed": part_seed}))
        if paused:
            out.append(Fault("pause", _round(t + 0.001), _round(t + paused), {"target": "leader", "seed": pause_seed}))
        t = t + length + rng.uniform(1.0, 4.0)
    return sorted(out, key=lambda f: (f.start, f.stop))


def stall_of(seed: int, election_timeout: float) -> tuple[float, int]:
    """A stale-leader episode's leader stall when the run drew no pause faults (``stall``
    of ``add_stale_leader_episodes``): (seconds, the pause fault's seed), 2.5-4 election
    timeouts plus up to a second as a drawn pause's, from the episode's partition seed alone."""
    r = random.Random(f"{seed}:stall")
    return r.uniform(2.5, 4.0) * election_timeout + r.uniform(0.0, 1.0), r.randrange(1 << 30)


def aimed(fault: Fault) -> bool:
    """Whether a fault is aimed at a state of the cluster (an election, an ack, a member's
    role) rather than a plain random draw: such faults reach interleavings no other draw
    does, so stale-leader episodes never displace them."""
    p = fault.params
    return (p.get("shape") == "rolling-leader" or "at" in p or "heal" in p
            or p.get("target") in (*STATE_TARGETS, *VOTE_TARGETS))


def _free_from(schedule: Sequence[Fault], kinds: Sequence[str], t: float, length: float) -> float:
    """The earliest time from ``t`` at which ``length`` seconds pass without a fault of
    ``kinds`` in ``schedule`` active (with 0.2 s to spare after one)."""
    for f in sorted((f for f in schedule if f.kind in kinds), key=lambda f: (f.start, f.stop)):
        if f.stop + 0.2 <= t:
            continue
        if f.start >= t + length + 0.2:
            break
        t = max(t, f.stop + 0.2)
    return t


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
    if shape == "leader-minority":
        # The leader on the small side of a split, with as many followers as a minority can
        # hold (a rack or zone holding the leader losing the rest): the majority elects and
        # serves writes while the old leader, until check-quorum deposes it, still has
        # followers that acknowledge its heartbeats (with 3 members it is alone).
        victim = leader if leader is not None else shuffled[0]
        side = minority_side(victim, [n for n in shuffled if n != victim], len(ns))
        groups = [side, [n for n in ns if n not in side]]
        return cut(groups), {"groups": groups, "leader": victim}
    if shape == "leader-outbound":  # what the leader sends is lost; it still hears the others
        victim = leader if leader is not None else shuffled[0]
        return sorted([victim, o] for o in ns if o != victim), {"node": victim, "direction": "outbound"}
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


def minority_side(member: int, others: Sequence[int], n: int) -> list[int]:
    """``member`` and the first of ``others`` up to a minority of ``n`` members, sorted
    (with 3 members: ``member`` alone)."""
    return sorted([member, *others[: (n - 1) // 2 - 1]])


def pick_nodes(target: str, nodes: Sequence[int], rng: random.Random, leader: int | None) -> list[int]:
    ns = sorted(nodes)
    if target == "leader":
        return [leader] if leader is not None else [rng.choice(ns)]
    if target == "one":
        return [rng.choice(ns)]
    if target == "minority":
        k = max(1, (len(ns) - 1) // 2)
        return sorted(rng.sample(ns, k))
    if target in POWER_TARGETS:
        return ns if target == "all" else sorted(rng.sample(ns, len(ns) // 2 + 1))
    raise ValueError(f"unknown node target {target!r}")


def widen(first: list[int], power: str | None, nodes: Sequence[int], rng: random.Random) -> list[int]:
    """``first`` (a target's members) and, for a ``POWER_TARGETS`` fault, other members
    drawn at random up to a majority or all of ``nodes``."""
    if power not in POWER_TARGETS:
        return first
    want = len(nodes) if power == "all" else len(nodes) // 2 + 1
    rest = [n for n in sorted(nodes) if n not in first]
    rng.shuffle(rest)
    return sorted(first + rest[: max(0, want - len(first))])


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
        # running churns: (changes done, finished, the split it made)
        self._churns: dict[int, tuple[list[dict[str, Any]], trio.Event | None, dict[str, Any]]] = {}
        self._deposed: dict[int, dict[str, Any]] = {}  # running churns' deposed-leader sequences
        self._own_cuts = 0  # cuts made by member faults (learner trouble, a deposed leader) now
        # member faults' learner phases running in the background: (result, finished)
        self._learner_runs: dict[int, tuple[dict[str, Any], trio.Event]] = {}
        # Overlapping faults run in tasks of their own, but the history allows one open op per
        # process: their actions (invoke .. completion) take turns. (No lock otherwise, so a
        # schedule without overlaps runs exactly as it always has.)
        self._turn: trio.Lock | None = trio.Lock() if overlapping(self.schedule) else None
        self._rounds: dict[int, list[dict[str, Any]]] = {}  # id(fault) -> rolling-leader rounds
        self.clients = ClientGates()  # the pausable clients (client-pause)

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
        if resolved.get("shape") == "rolling-leader":
            with trio.move_on_at(time_origin + fault.stop):
                await self._roll(fault, resolved, time_origin)
        t: Any = self.target
        if fault.kind == "partition" and fault.params.get("move") == "new-leader" and resolved.get("groups"):
            # the cut moves to the member that leads next, once it has committed
            with trio.move_on_at(time_origin + fault.stop):
                await self._move_cut(fault, resolved, time_origin)
        if fault.params.get("heal") == "new-leader" and hasattr(t, "next_append_or_heartbeat_above_members"):
            # heal the moment a member leads a newer term (at the latest at ``stop``)
            with trio.move_on_at(time_origin + fault.stop):
                leader = await t.next_append_or_heartbeat_above_members(fault.stop - fault.start)
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

    async def _roll(self, fault: Fault, value: dict[str, Any], time_origin: float) -> None:
        """The rounds of a ``rolling-leader`` partition, until cancelled (the fault's stop).

        The first cut (the fault's start) left the old leader holding a tail of entries
        nobody else has. Then the rounds cycle through three steps (``ROLL_STEPS``):
        ``new-leader`` waits for a member to start replicating in a newer term (the
        simulation sees its first append go out) and isolates it at that instant, so its
        first entry stays on it alone; ``committed`` waits for a leader to send a higher
        commit index for the first, second or third time (drawn from the fault's own stream)
        and cuts that leader's outbound links at once (it
        has committed and answers its clients, but its commit and its next entries cannot
        spread; it still hears its followers); each of these releases the previous victim. ``settle`` keeps that cut until a leader of a newer
        term starts replicating, lets it (heals every link), and a moment later isolates the
        current leader to begin the next cycle. Two members thus hold different uncommitted
        tails while a third catches up from one and then follows the other: the Raft
        paper's Figure 8, and elections in quick succession. A target that cannot see these
        events (a real cluster) polls for a new leader and isolates it. The rounds go into
        the stop op's value."""
        rng = random.Random(f"{fault.params.get('seed', 0)}:roll:{fault.start}")
        rounds = self._rounds.setdefault(id(fault), [])
        t: Any = self.target
        victim = value["groups"][0][0] if value.get("groups") else None
        sees = hasattr(t, "next_uncut_append_above_leaders") and hasattr(t, "next_commit_leader")
        while True:
            step = ROLL_STEPS[len(rounds) % len(ROLL_STEPS)] if sees else "new-leader"
            found: int | None = None
            if not sees:
                await trio.sleep(0.05)
                found = await t.leader()
            elif step == "committed":
                found = await t.next_commit_leader(5.0, 1 + rng.randrange(3))
            else:
                found = await t.next_uncut_append_above_leaders(5.0)
            if found is None or found == victim or found not in t.node_ids:
                continue
            others = [n for n in t.node_ids if n != found]
            blocked: list[list[int]] = []
            if step == "new-leader":
                blocked = cut([[found], others])
            elif step == "committed":
                blocked = sorted([found, o] for o in others)
            await t.heal_links()
            if step == "settle":
                rounds.append({"at": _round(trio.current_time() - time_origin), "trigger": step,
                               "node": found, "blocked": []})
                await trio.sleep(1.0)
                found = await t.leader()
                if found is None:
                    continue
                others = [n for n in t.node_ids if n != found]
                blocked = cut([[found], others])
            await t.block_links(blocked)
            victim = found
            rounds.append({"at": _round(trio.current_time() - time_origin), "trigger": step,
                           "node": found, "blocked": blocked})

    async def _move_cut(self, fault: Fault, value: dict[str, Any], time_origin: float) -> None:
        """A partition that moves (an ``isolate-leader`` cut with ``move: new-leader``):
        wait until another member leads and has told its followers of a higher commit index
        ``advances`` times, then, in one step, reconnect the member isolated so far (its
        held messages delivered) and cut that new leader off with a few others: a minority
        of (n - 1) // 2 members, the rest (the first victim among them) a bare majority.
        The first victim comes back with whatever it appended while cut off (a deposed
        leader keeps the proposals its clients sent it: a longer log of an older term) and
        meets members whose logs end in the new leader's newer, committed entries; without
        that leader, the next election on the majority side must not go to it (the Raft
        paper's election restriction: last term first, then length), and none of the others
        can win without its vote. A target that cannot see commits polls for a different
        leader. The move goes into the stop op's value (``rounds``, trigger ``moved``)."""
        t: Any = self.target
        victim = value["groups"][0][0]
        advances = int(fault.params.get("advances", 1))
        found: int | None = None
        while found is None:
            if hasattr(t, "next_commit_leader"):
                found = await t.next_commit_leader(5.0, advances)
            else:
                await trio.sleep(0.05)
                found = await t.leader()
            if found == victim or found not in t.node_ids:
                found = None
        assert found is not None
        rng = random.Random(f"{fault.params.get('seed', 0)}:move:{fault.start}")
        rest = [n for n in sorted(t.node_ids) if n not in (found, victim)]
        rng.shuffle(rest)
        minority = minority_side(found, rest, len(t.node_ids))
        blocked = cut([minority, sorted(n for n in t.node_ids if n not in minority)])
        await t.heal_links()
        await self._cut_links(blocked, bool(value.get("hold")))
        self._rounds.setdefault(id(fault), []).append(
            {"at": _round(trio.current_time() - time_origin), "trigger": "moved", "node": found,
             "blocked": blocked})

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
        elif target == "revoted" and hasattr(t, "next_second_voter"):
            found = await t.next_second_voter(wait)
        if target in STATE_TARGETS or target in VOTE_TARGETS:
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
        if kind == "partition" and p["shape"] == "rolling-leader":
            # The first round: the current leader, cut off (its in-flight appends dropped).
            blocked, desc = partition_links("isolate-leader", t.node_ids, rng, leader)
            value = {"shape": p["shape"], **desc, "blocked": blocked}
        elif kind == "partition" and (
                (p.get("at") == "leader-ack" and hasattr(t, "cut_at_leader_ack"))
                or (p.get("at") == "candidate" and hasattr(t, "cut_at_candidate"))):
            # Cut at the instant the leader gets an append ack, or a member first asks for votes
            # in a new election (the target does it then); the links are those of the shape
            # around that member.
            cut: list[tuple[list[list[int]], dict[str, Any]]] = []

            def links_for(lead: int) -> list[list[int]]:
                cut.append(partition_links(p["shape"], t.node_ids, random.Random(rng.random()), lead))
                return cut[-1][0]

            at: Any = getattr(t, "cut_at_leader_ack" if p["at"] == "leader-ack" else "cut_at_candidate")
            if await at(wait, links_for, bool(p.get("hold"))) is None:
                leader = await t.leader()
                links_for(leader if leader is not None else t.node_ids[0])
            blocked, desc = cut[-1]
            value = {"shape": p["shape"], "at": p["at"], **desc, "blocked": blocked}
            if p.get("hold"):
                value["hold"] = True
        elif kind == "partition":
            if p.get("target") in STATE_TARGETS:  # e.g. isolate the member that wins the next election
                leader = (await self.resolve(p["target"], rng, leader, wait))[0]
            blocked, desc = partition_links(p["shape"], t.node_ids, rng, leader)
            value = {"shape": p["shape"], **desc, "blocked": blocked}
            if p.get("hold"):
                value["hold"] = True
        elif kind in ("kill", "pause"):
            value = {"target": p["target"], "nodes": await self.resolve(p["target"], rng, leader, wait)}
            if p.get("power") in POWER_TARGETS:
                value["power"] = p["power"]
                value["nodes"] = widen(value["nodes"], p["power"], t.node_ids, rng)
        elif kind == "clock" or kind == "packet":
            value = dict(p)
        elif kind == "disk" and "target" in p:
            value = {"target": p["target"], "node": (await self.resolve(p["target"], rng, leader, wait))[0],
                     "torn": p["torn"]}
            if p.get("power") in POWER_TARGETS:  # one power loss of several members at once
                value["power"] = p["power"]
                value["nodes"] = widen([value["node"]], p["power"], t.node_ids, rng)
        elif kind == "disk":
            value = {"node": p["node"], "torn": p["torn"]}
        elif kind == "member" and p.get("mode") == "churn" and hasattr(t, "grow_member"):
            value = {"mode": "churn", "changes": p["changes"], "high": p["high"], "linger": p["linger"],
                     "split": p.get("split", 0.0), "members": list(t.node_ids)}
            value.update({k: p[k] for k in ("learner", "depose") if k in p})
        elif kind == "member":
            value = {"node": (await self.resolve(p["target"], rng, leader, wait))[0]}
            if "learner" in p and hasattr(t, "promote_member"):
                value["learner"] = p["learner"]
        elif kind == "client-pause":
            # briefly: the time spent looking for a holder comes off the pause
            gate = await self.clients.pick(p["target"], rng, min(wait, 1.0))
            value = {"target": p["target"], "client": None if gate is None else gate.name}
            if gate is not None:
                value.update(process=gate.process, holding=gate.holding, **gate.info)
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

    async def _cut_links(self, blocked: list[list[int]], hold: bool) -> None:
        """Cut ``blocked``; with ``hold`` (and a target that can) the links keep what they
        carry until the heal instead of dropping it."""
        if hold and hasattr(self.target, "hold_links"):
            await self.target.hold_links(blocked)
        else:
            await self.target.block_links(blocked)

    async def _apply_start(self, kind: str, value: dict[str, Any]) -> dict[str, Any]:
        t = self.target
        if kind == "partition":
            await self._cut_links(value["blocked"], bool(value.get("hold")))
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
            for n in value.get("nodes", [value["node"]]):
                await t.crash_disk(n, value["torn"])
        elif kind == "member" and value.get("mode") == "churn":
            self._start_churn(value)
        elif kind == "member" and value.get("learner") and hasattr(t, "grow_member"):
            # scale up first, the etcd way (a learner, promoted once in sync); the stop removes
            # the target member: the voters stay as many as before (an odd number) meanwhile
            grower: Any = t
            value["added"] = added = await grower.grow_member(learner=True)
            if added is not None:  # catch-up and promotion in the background: the stop records them
                self._learner_runs[id(value)] = self._in_background(self._learner_phase(added, value["learner"]))
            return dict(value)
        elif kind == "member":
            ok = await t.remove_member(value["node"])
            return {**value, "removed": ok}
        elif kind == "client-pause" and value["client"] is not None:
            self.clients.gates[value["client"]].pause()
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

    def _partitioned(self) -> bool:
        """Whether a partition fault, or a cut a member fault made (``_own_cuts``), holds the
        network now: a member fault's cut is made and healed only when none is."""
        return self._own_cuts > 0 or any(f.kind == "partition" for f, _ in self.active)

    async def _learner_phase(self, member: int, lp: dict[str, Any], *, may_cut: bool = True) -> dict[str, Any]:
        """``member`` was just added as a learner: let it catch up, with its ``trouble``
        (``LEARNER_TROUBLES``; a cut only with ``may_cut`` and no partition fault active),
        then promote it, retrying while the leader answers that it is not in sync (etcd's
        ``member promote``) for at most ``PROMOTE_TIMEOUT`` seconds. What happened, for the
        nemesis op's value."""
        t: Any = self.target
        trouble = str(lp.get("trouble", "none"))
        out: dict[str, Any] = {"member": member, "trouble": trouble}
        groups: list[list[int]] = []
        if trouble in ("isolate", "with-leader") and (not may_cut or self._partitioned()):
            out["trouble"] = trouble = "none"
            out["note"] = "no cut: a partition, a split or another member fault holds the network"
        if trouble == "isolate":
            groups = [[member], [n for n in t.node_ids if n != member]]
        elif trouble == "with-leader":
            # the learner, the leader and as many other voters as a minority of the voters
            # holds (with an odd number of voters: one short of a majority)
            leader = await t.leader()
            learners = set(t.learner_members()) if hasattr(t, "learner_members") else {member}
            voters = [n for n in t.node_ids if n not in learners]
            if leader is not None and leader in voters:
                side = minority_side(leader, [n for n in voters if n != leader], len(voters))
                groups = [sorted([*side, member]), [n for n in t.node_ids if n not in side and n != member]]
        if groups and all(groups):
            out["groups"] = groups
            self._own_cuts += 1
            await t.block_links(cut(groups))
            await trio.sleep(float(lp["for"]))
            self._own_cuts -= 1
            if not self._partitioned():
                await t.heal_links()
        elif trouble == "crash":
            await t.kill(member)
            await trio.sleep(float(lp["for"]))
            await t.restart(member)
        else:
            await trio.sleep(float(lp.get("catch_up", 0.0)))
        out.update(await t.promote_member(member, PROMOTE_TIMEOUT))
        return out

    def _in_background(self, work: Awaitable[dict[str, Any]]) -> tuple[dict[str, Any], trio.Event]:
        """Run ``work`` in the nemesis's nursery; (its result once done, set when done)."""
        result: dict[str, Any] = {}
        finished = trio.Event()

        async def go() -> None:
            result.update(await work)
            finished.set()

        self._nursery.start_soon(go)
        return result, finished

    async def _promote_in_churn(self, rec: dict[str, Any], member: int, lp: dict[str, Any], may_cut: bool) -> None:
        rec["learner"] = {**lp, **await self._learner_phase(member, lp, may_cut=may_cut)}

    async def _depose(self, how: str, hand_off: bool = False) -> int | None:
        """Depose the leader the instant a follower acknowledges its uncommitted conf change
        (``depose_of``), after handing leadership to that follower with ``hand_off``; the old
        leader, or None if that did not happen within 3 s."""
        t: Any = self.target
        if not hasattr(t, "cut_at_conf_ack"):
            return None
        isolate = how == "isolate"  # (with another cut holding the network, whichever heals first heals both)
        self._own_cuts += 1
        old: int | None = await t.cut_at_conf_ack(3.0, hold=isolate, hand_off=hand_off)
        if old is not None and not isolate:
            await t.kill(old)
        if old is None or not isolate:
            self._own_cuts -= 1
            if not self._partitioned():
                await t.heal_links()
        return old

    async def _undepose(self, old: int, how: str, after: float, early: trio.Event) -> None:
        """Reconnect or restart the deposed leader ``after`` seconds later, or when ``early``
        is set (the churn's split begins: the old leader then joins the old configuration's
        side), whichever comes first."""
        with trio.move_on_after(after):
            await early.wait()
        if how == "kill":
            await self.target.restart(old)
            return
        self._own_cuts -= 1
        if not early.is_set() and not self._partitioned():  # (the split replaced the cut)
            await self.target.heal_links()

    def _start_churn(self, value: dict[str, Any]) -> None:
        """Issue the churn's conf changes in the background (see ``churn_params``): each
        change is its own task, started ``gap`` after the previous one (or, after the
        leader's removal, the moment a new leader is elected), none awaiting another."""
        t: Any = self.target
        rng = random.Random(f"churn:{value['changes']}:{value['high']}:{value['members']}")
        done: list[dict[str, Any]] = []
        finished = trio.Event()
        split: dict[str, Any] = {}
        self._churns[id(value)] = (done, finished, split)
        deposed: dict[str, Any] = {}  # the deposed-leader sequence (depose_of), as it went
        self._deposed[id(value)] = deposed

        before = list(t.node_ids)
        wave = min(2, int(value["changes"]))  # the split follows the first two changes
        # the split's seconds: the churn's own, or a deposed-leader sequence's (depose_of)
        split_for = float(value["split"] or (value.get("depose") or {}).get("split", 0.0))
        split_begins = trio.Event()

        async def cut_along_configs() -> None:
            """The moment the first two changes applied on the leader (its followers may not
            know they committed yet), cut along the boundary between the configurations
            before and after them, unless a partition fault holds the network already."""
            now = t.node_ids
            if deposed.get("new_leader") and hasattr(t, "configured_members"):
                now = await t.configured_members()  # the new leader's configuration, as it applied it
            groups = config_split(before, now, await t.leader())
            if not groups or any(f.kind == "partition" for f, _ in self.active) or split:
                return
            split.update(groups=groups, at=round(self.recorder.now(), 3), seconds=split_for)
            if deposed.get("new_leader") and deposed.get("how") == "isolate":
                await t.heal_links()  # the split replaces the deposed leader's cut
            await t.block_links(cut(groups))
            split_begins.set()
            await trio.sleep(split_for)
            if not any(f.kind == "partition" for f, _ in self.active):
                await t.heal_links()

        # learners in a churn, except in a deposed-leader one (whose changes must be voters':
        # a learner's add changes no majority)
        lp = None if value.get("depose") else value.get("learner")

        async def change(kind: str, node: int | None, n: trio.Nursery, at_new_leader: bool = False) -> None:
            at = round(self.recorder.now(), 3)
            if kind == "add" and lp:
                got = await t.grow_member(learner=True)
                rec: dict[str, Any] = {"change": "add", "node": got, "ok": got is not None, "at": at}
                if got is not None:  # the promotion is a change of its own, after this one is done
                    n.start_soon(self._promote_in_churn, rec, got, lp, not split_for)
                done.append(rec)
            elif kind == "add" and at_new_leader:  # a replacement's add (its removal in flight)
                got = await t.grow_member(spare=1)
                done.append({"change": "add", "node": got, "ok": got is not None, "at": at})
            elif kind == "add":
                got = await t.grow_member()
                done.append({"change": "add", "node": got, "ok": got is not None, "at": at})
            else:
                # a replacement's removal at the new leader: its add (the old term's) is in flight
                dp = value.get("depose")
                linger = float(dp.get("linger", value["linger"])) if dp else value["linger"]
                ok = await t.shrink_member(node, linger, 2 if at_new_leader else 3)
                done.append({"change": "remove", "node": node, "ok": ok, "at": at})
            # the split follows the first two changes, or the first change the new leader of a
            # deposed-leader sequence applied (the old term's change may apply with it)
            if at_new_leader and done[-1]["ok"] and hasattr(t, "start_listed"):
                await t.start_listed()  # the old term's add, committed with it: start that member
            if split_for and ((len(done) == wave and not deposed.get("new_leader"))
                                       or (at_new_leader and done[-1]["ok"])):
                n.start_soon(cut_along_configs)

        async def depose(n: trio.Nursery) -> bool:
            """After the churn's first change: the deposed-leader sequence (``depose_of``);
            True once a new leader was elected (the next change goes to it at once)."""
            dp = value["depose"]
            old = await self._depose(dp["how"], bool(dp.get("hand_off")))
            deposed.update(how=dp["how"], leader=old, at=round(self.recorder.now(), 3))
            if dp.get("hand_off"):
                deposed["handed_to"] = getattr(t, "handed_to", None)
            if old is None:
                return False
            n.start_soon(self._undepose, old, dp["how"], float(dp["heal_after"]), split_begins)
            new = await t.leader_elected(5.0) if hasattr(t, "leader_elected") else await t.next_leader(5.0)
            deposed["new_leader"] = new
            if new is not None and hasattr(t, "start_listed"):
                n.start_soon(start_listed)
            return new is not None

        async def start_listed() -> None:
            """The old leader's add never answered; once the new leader lists the member
            (the old term's change committed), the operator starts it: watch for 2 s."""
            for _ in range(20):
                await trio.sleep(0.1)
                await t.start_listed()

        async def churn() -> None:
            removing: set[int] = set()  # members this burst is removing (never one twice)
            async with trio.open_nursery() as n:
                planned = len(t.node_ids)
                # With a split, the burst is its first two changes and the split after them.
                # The first two changes go the same way (3 -> 5, 5 -> 3: two at once could make
                # majorities that do not intersect), the leader staying a member.
                if planned + wave <= value["high"] and (planned - wave < 3 or rng.random() < 0.5):
                    first_way: str | None = "grow"
                else:
                    first_way = "shrink" if planned - wave >= 3 else None
                dp = value.get("depose")
                first_grew = False
                if dp:  # the replacement starts once a member leads (at most 3 s), as an operator's does
                    with trio.move_on_after(3.0):
                        while await t.leader() is None:
                            await trio.sleep(0.05)
                for i in range(wave if split_for else value["changes"]):
                    if dp and i < 2:
                        # a deposed-leader churn replaces a member (add, then remove, or the
                        # reverse at ``high``): the old term's change and the new leader's
                        # differ, as etcd's member replacement does
                        grow = planned < value["high"] if i == 0 else not first_grew
                        first_grew = first_grew or (i == 0 and grow)
                    elif i < wave and first_way is not None:
                        grow = first_way == "grow"
                    else:
                        grow = planned < value["high"] and (planned <= 3 or rng.random() < 0.5)
                    if not grow and planned <= 3:
                        break
                    leader = await t.leader()
                    if grow:
                        planned += 1
                        n.start_soon(change, "add", None, n, i == 1 and bool(deposed.get("new_leader")))
                        gap = 0.0 if rng.random() < 0.7 else rng.uniform(0.0, 0.05)
                        if not (i == 0 and value.get("depose") and await depose(n)):
                            await trio.sleep(gap)
                        continue
                    planned -= 1
                    others = [i for i in t.node_ids if i != leader]
                    others = [i for i in others if i not in removing] or others
                    if dp and i < 2:  # the replaced member is not the deposed leader (it comes back)
                        others = [m for m in others if m != deposed.get("leader")] or others
                    keep_leader = (i < wave and first_way is not None) or bool(dp and i < 2)
                    victim = leader if leader is not None and not keep_leader and rng.random() < 0.5 \
                        else rng.choice(others)
                    removing.add(victim)
                    n.start_soon(change, "remove", victim, n, i == 1 and bool(deposed.get("new_leader")))
                    if victim == leader and hasattr(t, "leader_elected"):
                        await t.leader_elected(5.0)  # the next change goes to the new leader at once
                    elif victim == leader and hasattr(t, "next_leader"):
                        await t.next_leader(5.0)
                    else:
                        gap = 0.0 if rng.random() < 0.7 else rng.uniform(0.0, 0.05)
                        if not (i == 0 and value.get("depose") and await depose(n)):
                            await trio.sleep(gap)
            finished.set()

        self._nursery.start_soon(churn)

    async def _stop_churn(self, value: dict[str, Any]) -> dict[str, Any]:
        """Wait (at most 10 s) for the churn's changes; what each did and the members now."""
        done, finished, split = self._churns.pop(id(value), ([], None, {}))
        if finished is not None:
            with trio.move_on_after(10.0):
                await finished.wait()
        out: dict[str, Any] = {"changes_done": list(done), "members_now": list(self.target.node_ids)}
        if split:
            out["split"] = dict(split)
        deposed = self._deposed.pop(id(value), {})
        if deposed:
            out["deposed"] = dict(deposed)
        return out

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
        rounds = self._rounds.pop(id(fault), None)
        if rounds:
            value = {**value, "rounds": rounds}
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
            for n in value.get("nodes", [value["node"]]):
                await t.restart(n)
        elif kind == "member" and value.get("mode") == "churn":
            outcome.update(await self._stop_churn(value))
        elif kind == "member" and value.get("learner") and "added" in value:
            result, finished = self._learner_runs.pop(id(value), ({}, None))
            if finished is not None:
                with trio.move_on_after(PROMOTE_TIMEOUT + 6.0):
                    await finished.wait()
            if result:
                outcome["learner"] = {**value["learner"], **result}
            if value["added"] is not None:  # back to as many members as before
                outcome["removed"] = await t.remove_member(current_node(value["node"], t.node_ids))
        elif kind == "member" and value.get("learner"):
            adder: Any = t  # a target with promote_member adds learners (add_member's learner)
            outcome["added"] = added = await adder.add_member(value["node"], learner=True)
            if added is not None:
                outcome["learner"] = {**value["learner"], **await self._learner_phase(added, value["learner"])}
        elif kind == "member":
            outcome["added"] = await t.add_member(value["node"])
        elif kind == "client-pause" and value.get("client") is not None:
            self.clients.gates[value["client"]].resume()
        self.recorder.complete(inv, "info", outcome)
        self.healed[kind] = self.healed.get(kind, 0) + 1
        if self.on_fault:
            self.on_fault(f"stop-{kind}")
