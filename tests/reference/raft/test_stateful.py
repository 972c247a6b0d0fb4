"""Hypothesis stateful test: random schedules against the synchronous cluster.

Hypothesis interleaves ticks, Ready processing, message delivery in any order, loss,
duplication, partitions, crashes (losing everything not persisted under the Ready contract)
and restarts, proposals, ReadIndex, leader transfers, membership changes (including a fourth
node that joins empty) and log compaction. After every step the cluster's safety checks run:
election safety, log matching, leader completeness and state machine safety (Cluster.
check_invariants), plus: every ReadIndex answer is at least the highest index known
committed when the read was requested (a linearizable read never misses a committed write),
and no invariant violation was reported by a node.

The default run is bounded (well under a minute); ``-m slow`` runs a larger one.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kvcheck.reference.bugs import NO_BUGS, Bugs
from kvcheck.reference.raft import (
    ConfChange,
    ConfChangeType,
    InvariantViolation,
    ProposalDropped,
    Role,
)
from kvcheck.reference.raft.testing import Cluster

VOTERS = 3
NODES = [1, 2, 3, 4]  # 4 starts empty and may be added by a conf change
node_ids = st.sampled_from(NODES)


class RaftSchedule(RuleBasedStateMachine):
    bugs: Bugs = NO_BUGS

    def __init__(self) -> None:
        super().__init__()
        self.violations: list[InvariantViolation] = []
        self.cluster = Cluster(
            election_tick=5, heartbeat_tick=1, max_inflight_msgs=4, max_size_per_msg=64,
            on_invariant_violation=self.violations.append, bugs=self.bugs,
        )
        self.counter = 0
        self.pending_reads: dict[bytes, int] = {}  # ctx -> committed index when asked
        # Answered reads: a duplicated ReadIndex request (or response) is answered again, as in
        # etcd-raft; the driver ignores the repeat, and it must still respect the floor.
        self.answered_reads: dict[bytes, int] = {}

    @initialize(seed=st.integers(0, 2**16), pre_vote=st.booleans(), check_quorum=st.booleans(),
                warm=st.sampled_from([None, 1, 2, 3]))
    def setup(self, seed: int, pre_vote: bool, check_quorum: bool, warm: int | None) -> None:
        c = self.cluster
        c.seed = seed
        c.pre_vote = pre_vote
        c.check_quorum = check_quorum
        ids = list(range(1, VOTERS + 1))
        for nid in ids:
            c.add_node(nid, ids)
        for nid in NODES[VOTERS:]:
            c.add_node(nid, None)
        if warm is not None:
            # Most schedules start from a cluster with a leader and some committed entries;
            # the rest start cold, from the bootstrap.
            c.stabilize()
            c.elect(warm)
            for i in range(3):
                c.raw(warm).propose(b"w%d" % i)
            c.stabilize()

    # --- time and the driver ---

    @rule(nid=node_ids, n=st.integers(1, 12))
    def tick(self, nid: int, n: int) -> None:
        if self.cluster.nodes[nid].up:
            self.cluster.tick(nid, n)

    @rule(nid=node_ids)
    def process_ready(self, nid: int) -> None:
        self._process(nid)

    def _process(self, nid: int) -> None:
        rd = self.cluster.process_ready(nid)
        if rd is None:
            return
        for rs in rd.read_states:
            floor = self.pending_reads.pop(rs.request_ctx, None)
            if floor is None:
                floor = self.answered_reads.get(rs.request_ctx)
            assert floor is not None, f"read state for a ctx never asked {rs.request_ctx!r}"
            self.answered_reads[rs.request_ctx] = floor
            assert rs.index >= floor, (
                f"ReadIndex {rs.request_ctx!r} answered {rs.index} but {floor} was already "
                "committed when it was requested"
            )

    @rule(n=st.integers(1, 12))
    def tick_all(self, n: int) -> None:
        for _ in range(n):
            for nid in self.cluster.up_ids():
                self.cluster.tick(nid)

    @rule(rounds=st.integers(1, 6))
    def run_rounds(self, rounds: int) -> None:
        """Rounds of: every node processes its Ready, then every message is delivered."""
        for _ in range(rounds):
            for nid in self.cluster.up_ids():
                self._process(nid)
            for m in self.cluster.take_messages():
                self.cluster.deliver(m)

    # --- the network ---

    @precondition(lambda self: bool(self.cluster.network))
    @rule(i=st.integers(0, 10_000))
    def deliver_one(self, i: int) -> None:
        """Deliver any queued message: messages overtake each other."""
        m = self.cluster.network.pop(i % len(self.cluster.network))
        self.cluster.deliver(m)

    @precondition(lambda self: bool(self.cluster.network))
    @rule(i=st.integers(0, 10_000))
    def drop_one(self, i: int) -> None:
        m = self.cluster.network.pop(i % len(self.cluster.network))
        self.cluster.dropped(m)

    @precondition(lambda self: bool(self.cluster.network))
    @rule(i=st.integers(0, 10_000))
    def duplicate_one(self, i: int) -> None:
        self.cluster.network.append(self.cluster.network[i % len(self.cluster.network)])

    @rule(group=st.sets(node_ids, min_size=1, max_size=3))
    def partition(self, group: set[int]) -> None:
        self.cluster.partition(sorted(group), [n for n in NODES if n not in group])

    @rule()
    def heal(self) -> None:
        self.cluster.heal()

    # --- faults ---

    @rule(nid=node_ids)
    def crash(self, nid: int) -> None:
        if self.cluster.nodes[nid].up:
            self.cluster.crash(nid)

    @rule(nid=node_ids)
    def crash_mid_ready(self, nid: int) -> None:
        if self.cluster.nodes[nid].up:
            self.cluster.crash_after_persist(nid)

    @rule(nid=node_ids)
    def restart(self, nid: int) -> None:
        if not self.cluster.nodes[nid].up:
            self.cluster.restart(nid)

    # --- clients ---

    @rule(nid=node_ids, count=st.integers(1, 4))
    def propose(self, nid: int, count: int) -> None:
        if not self.cluster.nodes[nid].up:
            return
        for _ in range(count):
            self.counter += 1
            with contextlib.suppress(ProposalDropped):
                self.cluster.raw(nid).propose(b"v%d" % self.counter)

    @rule(nid=node_ids)
    def read_index(self, nid: int) -> None:
        if not self.cluster.nodes[nid].up:
            return
        self.counter += 1
        ctx = b"r%d" % self.counter
        floor = max(self.cluster.committed, default=0)
        try:
            self.cluster.raw(nid).read_index(ctx)
        except ProposalDropped:
            return
        self.pending_reads[ctx] = floor

    @rule(nid=node_ids, to=node_ids)
    def transfer_leader(self, nid: int, to: int) -> None:
        if self.cluster.nodes[nid].up:
            with contextlib.suppress(ProposalDropped):
                self.cluster.raw(nid).transfer_leader(to)

    @rule(nid=node_ids, kind=st.sampled_from(list(ConfChangeType)), member=node_ids)
    def conf_change(self, nid: int, kind: ConfChangeType, member: int) -> None:
        if self.cluster.nodes[nid].up:
            with contextlib.suppress(ProposalDropped):
                self.cluster.raw(nid).propose_conf_change(ConfChange(kind, member))

    @rule(nid=node_ids)
    def compact(self, nid: int) -> None:
        node = self.cluster.nodes[nid]
        if not node.up:
            return
        applied = node.raw.status().applied if node.raw is not None else 0
        if applied > node.storage.snapshot().meta.index and applied >= node.storage.first_index():
            self.cluster.compact(nid, applied)

    # --- checks ---

    @invariant()
    def safety(self) -> None:
        assert not self.violations, [str(v) for v in self.violations]
        self.cluster.check_invariants()

    def teardown(self) -> None:
        # Liveness is not promised under arbitrary faults, but at least one run of the
        # checks sees a quiet, healed cluster: heal, restart everyone and let it settle.
        c = self.cluster
        c.heal()
        for nid in NODES:
            if not c.nodes[nid].up:
                c.restart(nid)
        for _ in range(40):
            for nid in c.up_ids():
                c.tick(nid)
            c.stabilize()
            c.check_invariants()
        assert not self.violations, [str(v) for v in self.violations]
        leaders = [n for n in c.up_ids() if c.raw(n).raft.role is Role.LEADER]
        terms = {c.raw(n).raft.term for n in leaders}
        assert len(terms) == len(leaders), "two leaders in one term"


TestRaftSchedule = RaftSchedule.TestCase
TestRaftSchedule.settings = settings(
    max_examples=150, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


class SlowRaftSchedule(RaftSchedule):
    pass


TestRaftScheduleSlow = pytest.mark.slow(SlowRaftSchedule.TestCase)
TestRaftScheduleSlow.settings = settings(
    max_examples=600, stateful_step_count=150, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
