"""Swarm testing (``kvcheck run --swarm``): each seed draws its own shape of run.

One average configuration explores one average shape of run; Raft bugs live in the corners
(short election timeouts with slow links, many clients with short timeouts, snapshots every
few hundred entries, three faults at once). With ``--swarm`` each seed draws, from its own
substream (``substream(seed, "swarm")``), a subset of the requested fault kinds (all kinds
when none are named) and the parameters that shape a run:

- the fault schedule: mean gap between fault starts, fault durations, how many may overlap
  (``nemesis.make_swarm_schedule``; targets include the new leader, the most-behind member
  and a member that just acknowledged an append), or, in half the seeds (drawn from a
  substream of its own), bursts of faults aimed at single elections
  (``nemesis.make_burst_schedule``: a deposed leader's held appends, a vote lost in a crash);
  in half the seeds without bursts (their own substream), lost-vote episodes laid over the
  random process (``nemesis.add_lost_vote_episodes``: the bursts' lost-vote faults);
  in 3/4 of the seeds with partitions (1/2 of those with bursts), stale-leader episodes
  (``nemesis.add_stale_leader_episodes``: the leader cut off with a minority and paused while
  the majority elects and serves writes, then resumed still believing it leads);
- the nodes' election and heartbeat ticks, snapshot frequency and replication flow control
  (entries per append message, appends in flight); in a quarter of the seeds a snapshot
  storm (a snapshot every 5 to 20 entries, 1 to 10 entries of log kept after it);
- the simulated network's latency, jitter, baseline loss and duplication (each link in order
  unless ``--unordered-links``: ``network.fifo``, never drawn, nor ``network.stall``);
- elections in quick succession (``_elections``, their own substream): pre-vote off in a
  third of the seeds (etcd before 3.5), election timeouts of 3 to 5 ticks in a quarter;
- rare-path perturbation probabilities (``sim.perturb``; slow disks in a fifth of the seeds);
- cluster size, client concurrency, rate, client timeouts (with per-attempt retries of the
  same request id) and, for kv, the number of keys;
- the interval of the harness's periodic HashKV check of every member (``workloads.hashcheck``;
  its own substream).

Options given explicitly on the command line are kept (``pinned``). Everything drawn is
written into the config itself (config.json), plus a ``swarm`` record of the draw, so a
replay runs exactly the same configuration without drawing again.
"""

from __future__ import annotations

import random
from typing import Any

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.determinism import substream
from kvcheck.workloads.nemesis import LOST_VOTE_EPISODE_SHARE, SIM_ONLY_KINDS, parse_faults

# Share of swarm seeds (with partitions among their kinds) that get stale-leader episodes:
# (random-process schedules, whose overlapping partitions and pauses they replace; burst
# schedules, where they only fill stretches the bursts leave free).
STALE_LEADER_SHARE = (0.75, 0.5)


def _maybe(rng: random.Random, lo: float, hi: float, p_on: float = 0.5) -> float:
    """0 with probability 1 - ``p_on``, else uniform in [lo, hi] (rounded)."""
    return round(rng.uniform(lo, hi), 4) if rng.random() < p_on else 0.0


def _slow_disk(seed: int) -> float:
    """perturb ``slow_disk`` (each member's disk slow for the whole run with this probability):
    in a fifth of the seeds, 0.2 to 0.6, else 0. Drawn from a substream of its own, so every
    other draw of a seed is what it was before slow disks were drawn. (Clean sweep, every
    workload with ``--swarm`` and slow_disk 0.5 forced: README, "Clean sweeps".)"""
    rng = substream(seed, "swarm-slow-disk")
    return round(rng.uniform(0.2, 0.6), 4) if rng.random() < 0.2 else 0.0


# Snapshot storms: etcd's --snapshot-count (and the catch-up entries kept after a snapshot)
# set low, as operators do to bound a member's memory and restart time.
STORM_COUNTS: tuple[int, ...] = (5, 10, 20)


def _snapshot_storm(seed: int) -> dict[str, int]:
    """Node settings of a snapshot storm, in a quarter of the seeds (else nothing): a snapshot
    every 5 to 20 applied entries, keeping 1, 2 or half that many entries of log after it.
    Members then snapshot and compact in the middle of elections (a follower applying the
    old leader's tail after it learned the new term snapshots at an entry older than its
    term), every restart loads a snapshot, and a member a few entries behind needs one sent.
    Drawn from a substream of its own, so every other draw of a seed is what it was before
    storms were drawn."""
    rng = substream(seed, "swarm-snapshot-storm")
    if rng.random() >= 0.25:
        return {}
    count = rng.choice(STORM_COUNTS)
    return {"snapshot_count": count, "snapshot_catchup_entries": rng.choice((1, 2, count // 2))}


# Elections in quick succession (``_elections``): the share of seeds whose members run without
# pre-vote (etcd before 3.5 defaulted to --pre-vote=false), and the share whose election
# timeouts are short (a few ticks: members that lose the leader at the same instant time out
# in the same tick, so candidates collide in one term).
PRE_VOTE_OFF_SHARE = 1 / 3
SHORT_ELECTION_SHARE = 1 / 4
SHORT_ELECTION_TICKS: tuple[int, ...] = (3, 4, 5)


def _elections(seed: int) -> dict[str, Any]:
    """Node settings that make elections collide, from a substream of their own (every other
    draw of a seed is what it was before): in a third of the seeds ``pre_vote`` off, so a
    member that times out bumps its term and asks for votes at once (no pre-vote round that a
    member hearing from a leader refuses: candidates of one term collide, a rejoining member
    forces an election); ``check_quorum`` stays on, as etcd always runs it. In a quarter of
    the seeds an election timeout of 3 to 5 ticks (heartbeat every tick): the randomized
    timeouts of the members span a few ticks only, so split votes (several candidates in one
    term, each member voting for whichever asked first) are common."""
    rng = substream(seed, "swarm-elections")
    out: dict[str, Any] = {}
    if rng.random() < PRE_VOTE_OFF_SHARE:
        out["pre_vote"] = False
    if rng.random() < SHORT_ELECTION_SHARE:
        out.update(election_tick=rng.choice(SHORT_ELECTION_TICKS), heartbeat_tick=1)
    return out


def draw_swarm(config: RunConfig, pinned: set[str] | frozenset[str] = frozenset()) -> RunConfig:
    """``config`` with this seed's swarm draw applied (in place); ``pinned``: RunConfig field
    names the user set explicitly, left as they are."""
    rng = substream(config.seed, "swarm")
    pool = list(config.faults) or parse_faults("all")
    if config.target != "sim":
        pool = [k for k in pool if k not in SIM_ONLY_KINDS]
    drawn: dict[str, Any] = {}

    def put(name: str, value: Any) -> None:
        if name not in pinned:
            setattr(config, name, value)
            drawn[name] = value

    kinds = [k for k in pool if rng.random() < 0.6] or [rng.choice(pool)]
    config.faults = kinds
    drawn["faults"] = kinds
    schedule = {"gap": round(rng.uniform(1.5, 8.0), 3),
                "duration": [round(rng.uniform(0.3, 2.0), 3), round(rng.uniform(2.0, 8.0), 3)],
                "max_overlap": rng.choice((1, 2, 2, 3))}
    put("nodes", rng.choice((3, 5, 5, 7)))
    put("concurrency", rng.randint(2, 20))
    put("rate", rng.choice((20.0, 50.0, 100.0, 200.0)))
    timeout = rng.choice((0.5, 1.0, 2.0, 4.0))
    put("client_timeout", timeout)
    put("client_attempt_timeout", round(timeout * rng.uniform(0.15, 0.5), 3))
    if config.workload != "register":
        put("keys", rng.randint(1, 12))
    election = rng.randint(5, 20)
    snapshot = rng.choice((50, 200, 1000, 10_000))
    node = dict(config.node)
    node.update({"election_tick": election,
                 "heartbeat_tick": rng.randint(1, max(1, election // 4)),
                 "snapshot_count": snapshot,
                 "snapshot_catchup_entries": max(1, snapshot // rng.choice((2, 5, 10)))})
    put("node", node)
    scale = rng.choice((1.0, 1.0, 5.0, 20.0))
    # network.fifo and network.stall are never drawn (they stay as config.network has them:
    # ordered links unless --unordered-links; each held cut draws its kind in the run). On reordering links one-entry appends can starve a healthy cluster
    # (each reordered MsgApp sends the follower back to probe: kubernetes seeds 135, 138).
    net = dict(config.network)
    net.update({"base_latency": [round(0.0002 * scale, 6), round(0.0008 * scale, 6)],
                "jitter": round(0.0002 * scale * rng.uniform(0.5, 5.0), 6),
                "loss": rng.choice((0.0, 0.0, 0.01, 0.03)),
                "duplicate": rng.choice((0.0, 0.0, 0.01, 0.03))})
    put("network", net)
    put("perturb", {"long_delay": _maybe(rng, 0.0005, 0.005),
                    "batch_reorder": _maybe(rng, 0.01, 0.05),
                    "batch_duplicate": _maybe(rng, 0.005, 0.03),
                    "slow_fsync": _maybe(rng, 0.01, 0.1),
                    "stall": _maybe(rng, 0.001, 0.01),
                    "kill_tears": rng.choice((0.0, 0.5, 1.0)),
                    "slow_disk": _slow_disk(config.seed)})
    # Replication flow control (etcd raft's MaxSizePerMsg, MaxInflightMsgs), drawn last so the
    # draws above stay as they were: small batches make a follower catch up a few entries per
    # round trip, so a leader sees it acknowledge part of an older term's tail.
    flow = dict(config.node)
    flow.update({"max_size_per_msg": rng.choice((1 << 20, 1 << 20, 4096, 512, 128)),
                 # at least 16 in flight: with one-entry batches and 35 ms round trips a
                 # follower must still catch up faster than 200 writes/s arrive
                 "max_inflight_msgs": rng.choice((256, 256, 64, 16))})
    put("node", flow)
    storm = _snapshot_storm(config.seed)
    if storm:
        put("node", {**config.node, **storm})
    elections = _elections(config.seed)
    if elections:
        put("node", {**config.node, **elections})
    # Bursts of faults aimed at single elections (nemesis.make_burst_schedule) instead of the
    # random process, in half the seeds: drawn from a substream of their own, so every other
    # draw of a seed is what it was before bursts existed.
    if substream(config.seed, "swarm-burst").random() < 0.5:
        schedule["burst"] = True
    # Lost-vote episodes (nemesis.add_lost_vote_episodes: the leader down, the member that
    # votes next crashed at that instant, the winner cut off) laid over the random-process
    # schedule in half of the seeds without bursts; their own substream.
    if not schedule.get("burst") and substream(config.seed, "swarm-lost-vote").random() < LOST_VOTE_EPISODE_SHARE:
        schedule["lost_vote"] = True
    # Stale-leader episodes (nemesis.add_stale_leader_episodes: the leader cut off on a
    # minority side, paused meanwhile, resumed while the majority serves) laid over the
    # schedule in 3/4 of the seeds with partitions (1/2 with bursts); their own substream.
    share = STALE_LEADER_SHARE[bool(schedule.get("burst"))]
    if "partition" in kinds and substream(config.seed, "swarm-stale-leader").random() < share:
        schedule["stale_leader"] = True
    # The harness's periodic HashKV check (workloads.hashcheck): 0.5 to 3 s between rounds,
    # from a substream of its own.
    put("hash_check_interval", round(substream(config.seed, "swarm-hash-check").uniform(0.5, 3.0), 3))
    config.swarm = {"pool": pool, "schedule": schedule, "pinned": sorted(pinned), "drawn": drawn}
    config.schedule = []
    return config
