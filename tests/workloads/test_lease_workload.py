"""The lease workload end to end in the simulation: a clean store under every fault kind is
valid for its checkers, and lease_expiry_local (the leader deletes an expired lease's keys
on its own timer, outside the log) is caught from the history alone (pinned seed)."""

from __future__ import annotations

from typing import Any

from kvcheck.checker.api import CheckOptions, run_checkers
from kvcheck.checker.history import pair_calls
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.lease import LeaseWorkload, lease_bound
from kvcheck.workloads.run import Progress
from kvcheck.workloads.sim.cluster import execute_sim
from kvcheck.workloads.workload import make_workload

ALL_FAULTS = ["partition", "kill", "pause", "clock", "packet", "disk", "member"]


def run(seed: int, faults: list[str], bugs: list[str], time_limit: float = 20.0) -> tuple[Any, dict[str, Any]]:
    cfg = RunConfig(workload="lease", faults=faults, seed=seed, time_limit=time_limit, bugs=bugs).with_schedule()
    ex = execute_sim(cfg, Progress(time_limit, enabled=False))
    workload = make_workload("lease", keys=cfg.keys, config=cfg)
    return ex, run_checkers(list(workload.checkers), ex.ops, CheckOptions(**workload.check_options()))


def test_the_bound_comes_from_the_store_settings() -> None:
    b = lease_bound()
    assert b["bound"] == b["leader_stall"] + b["lease_check_interval"] + b["lease_revoke_retry"] > 0
    assert b["leader_stall"] == 2 * 10 * 0.1  # NodeConfig's election timeout, twice


def test_the_bound_follows_the_runs_own_election_timeout() -> None:
    """Clean lease swarm seed 217 drew election_tick 20 (2 s): the bound was taken from the
    defaults (1 s) before; it is the run's own now, on the sim and on etcd."""
    cfg = RunConfig(workload="lease", node={**RunConfig().node, "election_tick": 20})
    w = make_workload("lease", config=cfg)
    assert w.check_options()["extra"]["lease_bound"] == 2 * 2.0 + 0.5 + 3.0
    etcd = make_workload("lease", config=RunConfig(workload="lease", target="etcd",
                                                  etcd={**RunConfig().etcd, "election_ms": 1500}))
    parts = etcd.check_options()["extra"]["lease_bound_parts"]
    assert parts["promote_extension"] == 1.5 and parts["bound"] == 3.0 + 0.5 + 3.0 + 1.5


def test_reads_record_the_answering_members_term() -> None:
    ex, _ = run(2, [], [], time_limit=5.0)
    reads = [op for op in ex.ops if op.f in ("read", "range") and op.type == "ok"]
    assert reads and all(isinstance(op.extra.get("term"), int) and op.extra["term"] >= 1 for op in reads)


def test_a_clean_run_under_every_fault_is_valid_and_exercises_leases() -> None:
    ex, results = run(1, ALL_FAULTS, [])
    # puts with a revoked or expired lease: refused when applied (etcd: lease not found)
    dead = [op for op in ex.ops if op.f == "put" and op.type != "invoke" and op.extra.get("lease")
            and op.error == "lease_not_found"]
    assert dead and all(op.type == "fail" for op in dead)
    assert {n: r.valid for n, r in results.items()} == {"watch": True, "lease": True, "members": True}, \
        [a.to_json() for r in results.values() for a in r.anomalies]
    d = results["lease"].detail
    assert d["leases"] >= 5 and d["keepalives"] >= 10 and d["expiries_seen"] >= 1 and d["revokes"] >= 1


def test_keepalive_loops_run_on_after_a_revoke_from_another_client() -> None:
    """As etcd's clientv3 KeepAlive, a holder's keepalive loop ends only at an answer of TTL 0:
    after a revoke (the holder's own or an admin's, another process) the holder, and a
    co-holder (a second process keeping the same lease alive), keep sending keepalives for the
    revoked lease, which a correct store answers TTL 0 (the lease checker flags TTL > 0:
    ``lease:keepalive-after-revoke``). Seed 4 under every fault (seed 1 until the lessors also
    put keys with dead leases and links delivered in order, seed 2 until half the holders kept
    their keepalives on one stream: no lease of its had two holders then; of seeds 1-12, 4, 8,
    9 and 12 have all of it): 3 revokes, some the admin's, 5 keepalives after them, leases kept
    alive by two processes."""
    ex, results = run(4, ALL_FAULTS, [])
    assert all(r.valid for r in results.values())
    granted_by = {op.extra["lease"]: op.process for op in ex.ops if op.f == "lease-grant" and op.type == "ok"}
    revoked = {op.value: op for op in reversed(ex.ops) if op.f == "lease-revoke" and op.type == "ok"}
    assert any(op.process != granted_by[lease] for lease, op in revoked.items())
    after = [c.completion for c in pair_calls(ex.ops) if c.f == "lease-keepalive" and c.invoke.value in revoked
             and c.invoke.position > revoked[c.invoke.value].position and c.completion is not None
             and c.completion.type == "ok"]
    assert after and all(op.value == 0 for op in after)
    holders: dict[int, set[Any]] = {}
    for op in ex.ops:
        if op.f == "lease-keepalive" and op.type == "invoke":
            holders.setdefault(op.value, set()).add(op.process)
    assert any(len(p) > 1 for p in holders.values())


def test_lease_expiry_local_is_caught() -> None:
    # seed 24 under partition,kill: the leader's local deletes renumber the revisions around them
    # (earlier seeds 3, 16 and 9 moved as the lessors gained LeaseTimeToLive, keepalives after
    # revokes with co-holders, and puts with dead leases; with all three the watch checker catches
    # it at 3, 21 and 24 of seeds 1-24, and the periodic hash checks at more: test_hashcheck)
    _, results = run(24, ["partition", "kill"], ["lease_expiry_local"])
    assert results["watch"].valid is False
    kinds = {a.kind for a in results["watch"].anomalies}
    assert "kv:read-state" in kinds


def test_a_lessor_that_expires_late_is_caught_end_to_end(monkeypatch: Any) -> None:
    """The companion of the election-chain fix (no switch: a test double of the store): a
    leader whose lessor acts 7 s late (past TTL + the 5.5 s bound, no fault, no election)
    keeps keys its reads still show; the lease checker reports it from the history alone."""
    from kvcheck.reference.kv.machine import KVStateMachine

    on_time = KVStateMachine.expired_leases
    monkeypatch.setattr(KVStateMachine, "expired_leases", lambda self, now: on_time(self, now - 7.0))
    _, results = run(1, [], [])
    late = [a for a in results["lease"].anomalies if a.kind == "lease:late-expiry"]
    assert late and all("in term" in a.explanation for a in late), [a.to_json() for a in results["lease"].anomalies]


def test_some_lessor_keeps_its_first_lease_alive_in_every_run() -> None:
    """Every run keeps a lease alive from its start: seed 72 drew "expire" for all three
    lessors' first leases, and its 6 s run had no keepalive answered with a TTL."""
    ex, results = run(72, ["kill", "packet"], [], time_limit=6.0)
    assert all(r.valid for r in results.values())
    assert any(op.f == "lease-keepalive" and op.type == "ok" and op.value > 0 for op in ex.ops)
    w = LeaseWorkload()
    assert [w.first_mode(m) for m in ("expire", "expire", "expire")] == ["expire", "expire", "keep-then-expire"]
    w = LeaseWorkload()
    assert [w.first_mode(m) for m in ("expire", "revoke", "expire")] == ["expire", "revoke", "expire"]
