"""Final per-member reads of the watch-family workloads (watch, lease, kubernetes): every key
read from every member with a serializable read once it caught up, recorded as the workers'
reads are (``kv``, header ``revision``) plus ``applied`` and HashKV, and the lease switch
they expose (lease_expiry_local: a leader deposed before its expiry committed keeps the
keys it deleted on its own timer at revisions its followers never made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.run import run_once
from kvcheck.workloads.workload import make_workload
from tests.workloads.test_member_reads import exposure_config, member_read_lines


@pytest.mark.parametrize("workload", ["watch", "lease", "kubernetes"])
def test_a_clean_watch_family_run_reads_every_key_from_every_member(tmp_path: Path, workload: str) -> None:
    cfg = RunConfig(workload=workload, faults=["kill", "partition"], seed=5, time_limit=6.0)
    out = run_once(cfg, tmp_path, progress=False)
    assert out.results["valid"] is True
    keys = make_workload(workload, keys=cfg.keys).keys
    reads = member_read_lines(out.run_dir)
    assert sorted({(x["node"], x["key"]) for x in reads}) == sorted((m, k) for m in range(1, 6) for k in keys)
    assert all(x["type"] == "ok" and isinstance(x["applied"], int) and "hash_kv" in x for x in reads)
    assert all(isinstance(x["revision"], int) for x in reads)
    # a key present is read with its kv (create/mod revision, version), as a worker's read
    assert all(x["kv"]["value"] == x["value"] for x in reads if x["value"] is not None)
    assert len({(x["applied"], x["hash_kv"], x["revision"]) for x in reads}) == 1
    assert out.results["run"]["member_reads"]["members"] == {str(m): "read" for m in range(1, 6)}
    assert out.results["checkers"]["members"]["valid"] is True
    assert out.results["checkers"]["members"]["member_reads"] == len(reads)


def test_lease_expiry_local_is_caught_by_the_member_reads(tmp_path: Path) -> None:
    # regress's lease_expiry_local exposure at seed 9 (was 30 until the lease workload's dead-lease
    # puts and keepalives after revokes moved its histories): no watch event nor read shows the
    # divergence; the member reads do (a member's HashKV differs from the others' at the same
    # applied index).
    bad = run_once(exposure_config("lease_expiry_local", 9, "lease_expiry_local"), tmp_path, progress=False)
    assert bad.results["bugs"]["fired"]["lease_expiry_local"] > 0
    kinds = {a["kind"] for a in bad.results["checkers"]["members"]["anomalies"]}
    assert "divergent-members" in kinds  # (and the periodic HashKV checks: hash-mismatch)
    clean = run_once(exposure_config(None, 9, "lease_expiry_local"), tmp_path, progress=False)
    assert clean.results["valid"] is True
