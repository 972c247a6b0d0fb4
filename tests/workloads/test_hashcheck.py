"""The harness's periodic HashKV check (workloads.hashcheck, etcd's corruption check): every
member asked for HashKV at the leader's revision during the run, each answer an op of the
history, and the members checker's ``hash-mismatch`` from the history alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
import trio.testing

from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.exposure import EXPOSURE
from kvcheck.workloads.hashcheck import HASH_CHECK_PROCESS, HashChecker, HashKVError
from kvcheck.workloads.recorder import Recorder
from kvcheck.workloads.run import recheck_run_dir, run_once


def hash_lines(run_dir: Path) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in (run_dir / "history.jsonl").read_text().splitlines()]
    return [x for x in lines if x["f"] == "hash_kv"]


def test_a_clean_run_records_every_members_hash_kv_and_they_agree(tmp_path: Path) -> None:
    cfg = RunConfig(workload="watch", faults=["kill", "partition"], seed=5, time_limit=6.0)
    assert cfg.hash_check_interval == 1.0  # the default of a run that does not draw it
    out = run_once(cfg, tmp_path, progress=False)
    assert out.results["valid"] is True
    lines = hash_lines(out.run_dir)
    assert {x["process"] for x in lines} == {HASH_CHECK_PROCESS}
    done = [x for x in lines if x["type"] != "invoke"]
    assert len(done) * 2 == len(lines)
    ok = [x for x in done if x["type"] == "ok"]
    assert {x["node"] for x in ok} == {1, 2, 3, 4, 5}
    by_rev: dict[tuple[int, int], set[int]] = {}
    for x in ok:
        assert set(x["value"]) == {"revision", "compact_revision", "hash"}
        by_rev.setdefault((x["value"]["revision"], x["value"]["compact_revision"]), set()).add(x["value"]["hash"])
    assert len(by_rev) >= 4 and all(len(h) == 1 for h in by_rev.values())
    # an error answer (a member behind or down) is a fail with the error, never a hash
    assert all(x["value"] is None and x["error"] for x in done if x["type"] != "ok")
    checks = out.results["run"]["hash_checks"]
    assert checks["interval"] == 1.0 and checks["rounds"] >= 5
    assert out.results["checkers"]["members"]["hash_kv_answers"] == len(ok)


def exposure(seed: int, bugs: list[str]) -> RunConfig:
    """The run ``kvcheck regress`` makes of lease_expiry_local's exposure (not a swarm one)."""
    exp = EXPOSURE["lease_expiry_local"]
    assert not exp.swarm
    return RunConfig(workload=exp.workload, faults=exp.faults.split(","), seed=seed,
                     time_limit=exp.time_limit, bugs=bugs, **exp.settings)


def test_lease_expiry_local_is_caught_mid_run_where_the_old_harness_missed_it(tmp_path: Path) -> None:
    # regress --quick's lease_expiry_local exposure at seed 10 (its first catch with the
    # check; without it the first catch was seed 16): a leader revokes an expired lease on
    # its own timer, outside the log, so for a while its key versions sit at revisions its
    # followers gave other writes. The final member reads see nothing (the difference is gone
    # or the members are at different applied indexes by then); the periodic check does.
    bad = run_once(exposure(10, ["lease_expiry_local"]), tmp_path, progress=False)
    assert bad.results["bugs"]["fired"]["lease_expiry_local"] > 0
    invalid = {n for n, r in bad.results["checkers"].items() if r["valid"] is False}
    assert invalid == {"members"}
    kinds = {a["kind"] for a in bad.results["checkers"]["members"]["anomalies"]}
    assert kinds == {"hash-mismatch"}
    # `kvcheck check` of the run directory reaches the same verdict from the history alone
    (bad.run_dir / "results.json").unlink()
    assert recheck_run_dir(bad.run_dir) == 1
    rechecked = json.loads((bad.run_dir / "results.json").read_text())
    assert {a["kind"] for a in rechecked["checkers"]["members"]["anomalies"]} == {"hash-mismatch"}
    # the old harness (no hash checks) on the same seed: nothing caught
    old = exposure(10, ["lease_expiry_local"])
    old.hash_check_interval = None
    before = run_once(old, tmp_path, progress=False)
    assert before.results["bugs"]["fired"]["lease_expiry_local"] > 0
    assert before.results["valid"] is True and not hash_lines(before.run_dir)
    clean = run_once(exposure(10, []), tmp_path, progress=False)
    assert clean.results["valid"] is True


def test_the_checks_leave_the_rest_of_a_seeds_history_as_it_was(tmp_path: Path) -> None:
    """In the simulation the rounds are clock callbacks (no task, no wakeup, no draw): a
    seed's history with the checks is its history without them plus the hash_kv ops."""
    def run(interval: float | None) -> list[dict[str, Any]]:
        cfg = RunConfig(workload="kv", faults=["partition", "kill", "pause"], seed=4, time_limit=6.0,
                        hash_check_interval=interval)
        out = run_once(cfg, tmp_path / str(interval), progress=False)
        lines = [json.loads(x) for x in (out.run_dir / "history.jsonl").read_text().splitlines()]
        return [{k: v for k, v in x.items() if k != "index"} for x in lines]

    with_checks, without = run(0.7), run(None)
    assert [x for x in with_checks if x["f"] != "hash_kv"] == without
    assert len(with_checks) > len(without)


class FakeTarget:
    """Three members: n1 leads at revision 9, n2 has not applied it, n3 is down."""

    @property
    def node_ids(self) -> list[int]:
        return [1, 2, 3]

    async def hash_revision(self) -> int | None:
        return 9

    async def member_hash_kv(self, member: int, revision: int) -> dict[str, int] | None:
        if member == 2:
            raise HashKVError("future_rev")
        if member == 3:
            return None
        return {"revision": revision, "compact_revision": 4, "hash": 77}


def test_the_checker_records_error_answers_as_fails_and_leaves_no_op_open() -> None:
    async def main() -> Recorder:
        recorder = Recorder(trio.current_time)
        checker = HashChecker(FakeTarget(), recorder, interval=1.0, client_timeout=0.5)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(checker.run)
            await trio.sleep(2.5)
            checker.stop.set()
        assert checker.info() == {"interval": 1.0, "rounds": 2,
                                  "answers": {"fail: future_rev": 2, "fail: not running": 2, "ok": 2}}
        return recorder

    recorder = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert not recorder.open_ops()
    done = [(op.node, op.type, op.value, op.error) for op in recorder.ops if op.type != "invoke"]
    assert done[:3] == [(1, "ok", {"revision": 9, "compact_revision": 4, "hash": 77}, None),
                        (2, "fail", None, "future_rev"), (3, "fail", None, "not running")]
    assert [op.time for op in recorder.ops[:2]] == [1_000_000_000, 1_000_000_000]
