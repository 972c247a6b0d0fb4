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
    "figure8_commit": Exposure("kv", "kill,partition", swarm=True),
    # A deposed leader's held appends land just after the next election (the swarm's
    # deposed-leader bursts need partitions): followers overwrite the new leader's entries and
    # may commit them from its heartbeats, and the final per-member reads see the members
    # disagree. Under the bug some runs livelock in a reject/probe storm: a 10 s wall budget
    # ends those (what they recorded is still checked) so the row's budget goes to other seeds.
    "stale_term_append": Exposure("kv", "partition", 15.0, {"wall_budget": 8.0}, swarm=True),
    "eager_truncation": Exposure("register", "partition,packet", swarm=True),
    "follower_commit_overrun": Exposure("kv", "partition,kill", swarm=True),
    "read_index_before_commit": Exposure("register", "kill,partition", swarm=True),
    "unsafe_conf_change": Exposure("register", "member,kill,partition"),
    # A vote lost in a power loss gives a second leader in one term only if the amnesiac
    # voter and the members that missed the election form a majority: 2 of 3 (the swarm's
    # lost-vote bursts: leader down, voter crashed as it votes, winner cut off). The second
    # leader's entries share index and term with the first's, so members diverge for good.
    "vote_not_durable": Exposure("kv", "disk,kill,partition", 15.0, {"nodes": 3}, swarm=True),
    "ack_before_durable": Exposure("register", "disk,kill,partition", swarm=True),
    "applied_index_not_atomic": Exposure("kv", "kill,disk"),
    "snapshot_skips_entries": Exposure("kv", "partition,kill,packet", swarm=True),
}


def exposure_for(bug: str) -> tuple[Exposure, bool]:
    """The switch's exposure and whether it comes from the table (False: the default)."""
    found = EXPOSURE.get(bug)
    return (found, True) if found is not None else (DEFAULT_EXPOSURE, False)
