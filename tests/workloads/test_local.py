"""The local target: real server processes on 127.0.0.1 with kill -9, SIGSTOP/SIGCONT,
membership changes, and partitions/packet faults through the peer-link proxy."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.local.cluster import LOCAL_FAULTS
from kvcheck.workloads.run import run_once


def test_local_target_every_supported_fault(tmp_path: Path) -> None:
    cfg = RunConfig(workload="kv", faults=list(LOCAL_FAULTS), target="local", nodes=5,
                    time_limit=12.0, seed=2, client_timeout=2.0, recovery_quiet=0.5)
    out = run_once(cfg, tmp_path, progress=False)
    assert out.results["valid"] is True, out.results["checkers"]["linearizable"]
    run = out.results["run"]
    assert run["faults_started"] == run["faults_healed"] == {k: 1 for k in LOCAL_FAULTS}
    assert run["phases"]["healthy"] is True
    proxy = run["proxy"]
    assert proxy["forwarded"] > 0
    partition = next(op for op in out.execution.ops if op.f == "start-partition" and op.type == "info")
    if partition.value["blocked"]:
        assert proxy["dropped_blocked"] > 0  # the proxy really cut the links
    assert (out.run_dir / "cluster-events.log").is_file()
    assert any(p.name.startswith("node") for p in out.run_dir.iterdir())
    # no server process of the run survives it
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert run["cluster_dir"] not in ps
