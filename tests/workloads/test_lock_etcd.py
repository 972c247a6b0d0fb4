"""The lock workload against a real 3-member etcd 3.4 cluster (needs Debian's etcd-server;
.ci/run installs it), bounded: with client pauses longer than the lease TTL, etcd's lock
recipe without fencing lets a paused holder write after the next holder acquired (the lock
checker names both holders, as Jepsen reported for etcd 3.4), and with the fence (the
write is a txn on the holder's lock key's create revision) the resource stays exclusive."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.run import run_once

pytestmark = [pytest.mark.etcd,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="needs Debian's etcd-server")]


def run(tmp_path: Path, workload: str, seed: int) -> dict:  # type: ignore[type-arg]
    cfg = RunConfig(workload=workload, faults=["client-pause"], target="etcd", nodes=3, time_limit=14.0,
                    seed=seed, recovery_quiet=0.5, final_read_time=2.0)
    out = run_once(cfg, tmp_path, progress=False)
    starts = [op for op in out.execution.ops if op.f == "start-client-pause" and op.type == "info"]
    stops = [op for op in out.execution.ops if op.f == "stop-client-pause" and op.type == "info"]
    assert len(starts) == len(stops) == 2
    assert any(op.value["holding"] for op in starts), [op.value for op in starts]
    lock = out.results["checkers"]["lock"]
    assert lock["holders"] >= 3 and lock["writes_ok"] >= 8, lock
    return lock  # type: ignore[no-any-return]


def test_a_paused_holder_breaks_etcds_lock_without_fencing(tmp_path: Path) -> None:
    lock = run(tmp_path, "lock", 1)
    assert lock["valid"] is False
    a = lock["anomalies"][0]
    assert a["kind"] == "lock:mutual-exclusion"
    first, second = a["detail"]["holders"]
    assert first["lease"] != second["lease"]
    assert {w["lease"] for w in a["detail"]["interleaved"]} == {first["lease"], second["lease"]}
    assert f"lease {first['lease_hex']}" in a["explanation"] and f"lease {second['lease_hex']}" in a["explanation"]


def test_with_fencing_etcds_lock_keeps_the_resource_exclusive(tmp_path: Path) -> None:
    lock = run(tmp_path, "lock-fenced", 1)
    assert lock["valid"] is True, [a["explanation"] for a in lock["anomalies"]]
    assert lock["writes_refused"] >= 1 and lock["belief_overlaps"] >= 1
