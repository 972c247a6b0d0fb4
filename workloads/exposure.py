"""How ``kvcheck regress`` runs each bug switch: the workload, fault mix and run settings
that tend to expose it.

The bug matrix takes its list of switches from ``kvcheck.reference.bugs.Bugs.names()`` (a
new switch is picked up without an edit here) and, for each, the ``Exposure`` in
``EXPOSURE``; a switch without an entry runs with ``DEFAULT_EXPOSURE`` (the register
workload under every fault kind, 30 s simulated), and the regress table says so. An entry
names its workload by name: a workload that is not registered (``WORKLOAD_FACTORIES``) makes
that switch "not run", which counts as not caught.

The entries are measured choices, one line each, with the switch's comment in
``reference/bugs.py`` saying why; ``settings`` are further ``RunConfig`` fields (e.g.
``{"client_timeout": 0.5}``) given to every seed of that switch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kvcheck.workloads.config import NETWORK_DEFAULTS, node_defaults


@dataclass(frozen=True)
class Exposure:
    workload: str = "register"
    faults: str = "all"
    time_limit: float = 30.0
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Each seed draws its own run shape (``kvcheck run --swarm``: kvcheck.workloads.swarm),
    # from ``faults``; ``settings`` stay as given.
    swarm: bool = False


DEFAULT_EXPOSURE = Exposure()

# switch name -> how regress runs it. One line per switch, with where the choice comes from.
# Workloads named here that are not registered yet (watch, lease, append: their branches)
# make the switch "not run" until they land.
EXPOSURE: dict[str, Exposure] = {
    # A follower's local read is stale as soon as a partition or pause leaves it behind.
    "local_reads": Exposure("register", "partition,pause,kill"),
    # A retried append applied twice shows as a duplicate element (the txn branch's
    # test_no_session_dedup_is_caught_as_duplicate_elements: 8 s at 80 ops/s, every fault kind).
    "no_session_dedup": Exposure("append", "all", 8.0, {"rate": 80.0}),
    # A resumed watch misses a revision (the watch branch's test_watch_resume_gap_is_caught).
    "watch_resume_gap": Exposure("watch", "partition,kill", 10.0),
    # A lease's keys vanish outside the log (the watch branch's test_lease_expiry_local_is_caught).
    "lease_expiry_local": Exposure("lease", "partition,kill", 20.0),
    # Only a lease workload grants leases (bugs.py: expose: pause,clock,partition).
    "lease_renew_after_expiry": Exposure("lease", "pause,clock,partition", 20.0),
    # A member behind the leader bookmarks revisions it has not sent (the watch branch's
    # test_watch_from_lagging_member_is_caught: 10 s, partition,kill).
    "watch_from_lagging_member": Exposure("watch", "partition,kill", 10.0),
    # A guard passing on a stale snapshot, a txn visible one write at a time: the append
    # workload's Elle checker (benchmarks/txn_bugs.py: caught on 20 of 20 seeds, 8 s, 80 ops/s).
    "txn_read_stale_snapshot": Exposure("append", "all", 8.0, {"rate": 80.0}),
    "txn_non_atomic": Exposure("append", "all", 8.0, {"rate": 80.0}),
    # The Raft and storage switches: swarm runs with the mixes their bugs.py notes name
    # (kvcheck run --swarm draws targets, perturbations and timings per seed).
    "read_before_apply": Exposure("register", "partition,pause,packet", swarm=True),
    # An old-term entry counted committed is lost only after a Figure 8 sequence (two
    # members holding different uncommitted tails, a third acknowledging part of one): the
    # swarm's rolling-leader partitions, with append batches of one or two entries. 3
    # members, so the re-elected old leader needs just the follower it catches up; short
    # election timeouts and clients (and proposals) that wait up to 8 s (10 s), so the old
    # tail's writes are still awaited when that leader commits them early; a run whose
    # diverged members loop stops at 30 s wall and is checked. (seeds 0-12, this
    # machine: caught on 4 of 13, first at seed 3.)
    "figure8_commit": Exposure("kv", "partition", settings={
        "nodes": 3, "client_timeout": 8.0, "client_attempt_timeout": 8.0, "wall_budget": 30.0,
        "node": {**node_defaults(), "election_tick": 5, "heartbeat_tick": 1,
                 "request_timeout": 10.0, "max_size_per_msg": 128}},
        swarm=True),
    # A deposed leader's held appends land just after the next election (the swarm's
    # deposed-leader bursts need partitions): followers overwrite the new leader's entries and
    # may commit them from its heartbeats, and the final per-member reads see the members
    # disagree. Under the bug some runs livelock in a reject/probe storm: a 10 s wall budget
    # ends those (what they recorded is still checked) so the row's budget goes to other seeds.
    "stale_term_append": Exposure("kv", "partition", 15.0, {"wall_budget": 8.0}, swarm=True),
    # Erased acknowledged entries become lost writes once a member missing them wins an
    # election (kill targets leaders); kv splits the info ops of a stalled cluster over its keys,
    # where one register's search took 37 s (seeds 0-11: caught at 0, 1, 11; register: 11 only).
    "eager_truncation": Exposure("kv", "partition,packet,kill", swarm=True),
    # A follower needs a stale tail: a deposed leader that still reaches one follower
    # (5 members: a minority of two) and a partition that heals under a newer leader,
    # whose heartbeats then reach it before its probes do. bug_matrix.py, swarm kv
    # partition,kill, seeds 0-19: 1 of 20 caught with 3 members, 6 of 20 with 5.
    "follower_commit_overrun": Exposure("kv", "partition,kill", settings={"nodes": 5}, swarm=True),
    # A stale ReadIndex needs a read to reach a new leader before its first entry commits
    # (2-7 ms after its election at the default latency: the reads rarely came in time) and
    # an acknowledged write whose commit it has not heard of (swarm partitions cut at a
    # leader ack, at: leader-ack). Partitions only (many elections), slow disks (perturb
    # slow_disk: append acks 10-100 ms late while heartbeats answer at once, so the first
    # commit waits), 5% packet loss, 1-4 ms links and 0.1 s client attempts (clients
    # re-route quickly).
    "read_index_before_commit": Exposure("register", "partition", settings={
        "network": {"base_latency": [0.001, 0.004], "jitter": 0.001, "grid": 0.001,
                    "client_latency": [0.0002, 0.001], "loss": 0.05, "duplicate": 0.0, "fifo": True,
                    "stall": NETWORK_DEFAULTS["stall"]},
        "perturb": {"long_delay": 0.0, "batch_reorder": 0.0, "batch_duplicate": 0.0, "slow_fsync": 0.0,
                    "stall": 0.0, "kill_tears": 0.0, "slow_disk": 0.6},
        "client_attempt_timeout": 0.1, "wall_budget": 10.0}, swarm=True),
    # Membership churn (nemesis.churn_params) grows 3 -> 5 by two changes at once and cuts along
    # the old/new configuration boundary; a 3-member start makes the grow-by-two the first move
    # (seeds 0-11: caught at 1, 3, 6, 9, 11).
    "unsafe_conf_change": Exposure("kv", "member,kill,partition", swarm=True, settings={"nodes": 3}),
    # A vote lost in a power loss gives a second leader in one term only if the amnesiac
    # voter and the members that missed the election form a majority: 2 of 3 (the swarm's
    # lost-vote bursts: leader down, voter crashed as it votes, winner cut off). The second
    # leader's entries share index and term with the first's, so members diverge for good.
    "vote_not_durable": Exposure("kv", "disk,kill,partition", 15.0, {"nodes": 3}, swarm=True),
    # Acknowledged but unsynced entries are lost only when a majority loses power at once:
    # swarm disk/kill faults with power majority/all (nemesis.POWER_TARGETS); kv, whose keys
    # are rewritten rarely enough that a read (or the final read) sees the loss before a new
    # write hides it (register: 1 of 4 seeds, kv: 4 of 10). A member that lost acknowledged
    # entries makes the leader resend long appends it rejects (slow, not stuck): 20 s
    # simulated and a 20 s wall budget, which ends such a run and still checks its history.
    "ack_before_durable": Exposure("kv", "disk,kill,partition", 20.0, settings={"wall_budget": 20.0},
                                   swarm=True),
    "applied_index_not_atomic": Exposure("kv", "kill,disk"),
    "snapshot_skips_entries": Exposure("kv", "partition,kill,packet", swarm=True),
}


def exposure_for(bug: str) -> tuple[Exposure, bool]:
    """The switch's exposure and whether it comes from the table (False: the default)."""
    found = EXPOSURE.get(bug)
    return (found, True) if found is not None else (DEFAULT_EXPOSURE, False)
