"""Final per-member reads (workloads.memberreads) and fault bursts aimed at single elections
(nemesis.make_burst_schedule), and the two switches they expose: vote_not_durable and
stale_term_append."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.exposure import EXPOSURE
from kvcheck.workloads.nemesis import make_burst_schedule
from kvcheck.workloads.run import run_once
from kvcheck.workloads.swarm import draw_swarm


def test_burst_schedules_aim_at_elections_and_never_overlap_partitions() -> None:
    for seed in range(30):
        kinds = ["disk", "kill", "partition"]
        a = make_burst_schedule(kinds, [1, 2, 3], 30.0, random.Random(seed), gap=3.0)
        b = make_burst_schedule(kinds, [1, 2, 3], 30.0, random.Random(seed), gap=3.0)
        assert a == b and a
        parts = sorted((f.start, f.stop) for f in a if f.kind == "partition")
        assert all(p[1] <= q[0] for p, q in itertools.pairwise(parts))
        assert all(f.kind in kinds and 0 <= f.start <= f.stop <= 29.9 for f in a)
        targets = {f.params.get("target") for f in a}
        assert targets <= {"leader", "voted", "new-leader", None}
    lost = make_burst_schedule(["disk", "kill"], [1, 2, 3], 30.0, random.Random(1), gap=3.0)
    assert [f.params["target"] for f in lost[:3]] == ["leader", "voted", "new-leader"]
    assert lost[0].params["heal"] == "new-leader" and lost[1].params["wait"] == 8.0
    deposed = make_burst_schedule(["partition"], [1, 2, 3], 30.0, random.Random(1), gap=3.0)
    assert all(f.params["hold"] and f.params["heal"] == "new-leader" for f in deposed)
    assert make_burst_schedule(["pause", "clock"], [1, 2, 3], 30.0, random.Random(1), gap=3.0) == []


def test_old_configs_ran_without_member_reads() -> None:
    cfg = RunConfig(workload="kv", seed=1)
    assert cfg.member_reads is True
    d = cfg.to_json()
    del d["member_reads"]
    assert RunConfig.from_json(d).member_reads is False


def member_read_lines(run_dir: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    return [x for x in lines if x.get("member_read") and x["type"] != "invoke"]


def test_a_clean_run_reads_every_key_from_every_member_after_it_caught_up(tmp_path: Path) -> None:
    cfg = RunConfig(workload="kv", faults=["kill", "partition"], seed=5, time_limit=6.0, keys=3)
    out = run_once(cfg, tmp_path, progress=False)
    assert out.results["valid"] is True
    reads = member_read_lines(out.run_dir)
    assert sorted({(x["node"], x["key"]) for x in reads}) == [(m, f"k{i}") for m in range(1, 6) for i in range(3)]
    assert all(x["type"] == "ok" and isinstance(x["applied"], int) and "hash_kv" in x for x in reads)
    assert len({(x["applied"], x["hash_kv"], x["revision"]) for x in reads}) == 1
    assert out.results["run"]["member_reads"]["members"] == {str(m): "read" for m in range(1, 6)}
    assert out.results["checkers"]["members"]["valid"] is True


def exposure_config(bug: str | None, seed: int, switch: str) -> RunConfig:
    """The run ``kvcheck regress`` makes of ``switch``'s exposure for ``seed`` (with or
    without the bug)."""
    exp = EXPOSURE[switch]
    settings: dict[str, Any] = {"workload": exp.workload, "faults": exp.faults.split(","), "seed": seed,
                                "time_limit": exp.time_limit, "bugs": [bug] if bug else [], **exp.settings}
    cfg = RunConfig(**settings)
    return draw_swarm(cfg, frozenset(settings) - {"workload", "faults", "seed", "bugs"})


def test_vote_not_durable_is_caught_by_the_member_reads(tmp_path: Path) -> None:
    # regress --quick's first catching seed: the leader killed, its successor's voter
    # crashed as it voted (its vote lost with the unsynced write), the successor cut off;
    # the restarted members elect a second leader in the same term.
    bad = run_once(exposure_config("vote_not_durable", 13, "vote_not_durable"), tmp_path, progress=False)
    assert bad.results["bugs"]["fired"]["vote_not_durable"] > 0
    kinds = {a["kind"] for a in bad.results["checkers"]["members"]["anomalies"]}
    assert kinds == {"divergent-members"}
    clean = run_once(exposure_config(None, 13, "vote_not_durable"), tmp_path, progress=False)
    assert clean.results["valid"] is True
