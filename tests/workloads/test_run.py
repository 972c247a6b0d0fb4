"""The run directory, checking, summary, recheck and replay — over the fake target, so these
tests exercise the harness alone (tests/workloads/test_sim*.py run the real store)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kvcheck.exitcodes import MalformedInput, MissingInput
from kvcheck.workloads.config import ConfigError, RunConfig
from kvcheck.workloads.run import read_config, recheck_run_dir, replay_run_dir, run_once, worst


def cfg(**kw: Any) -> RunConfig:
    base: dict[str, Any] = dict(workload="register", faults=["partition", "kill"], time_limit=4.0,
                                concurrency=4, rate=100.0, seed=11, client_timeout=0.5, recovery_quiet=0.2)
    base.update(kw)
    return RunConfig(**base)


def test_run_writes_a_complete_run_directory(tmp_path: Path, make_fake_executor: Any) -> None:
    lines: list[str] = []
    out = run_once(cfg(), tmp_path, executor=make_fake_executor(), progress=False, echo=lines.append)
    d = out.run_dir
    assert d.parent == tmp_path / "register"
    assert (tmp_path / "latest").resolve() == d.resolve()
    for name in ("config.json", "history.jsonl", "results.json", "node1.log"):
        assert (d / name).is_file(), name
    config = json.loads((d / "config.json").read_text())
    assert (config["seed"] == 11 and [f["kind"] for f in config["schedule"]] == ["partition", "kill"]) or \
        sorted(f["kind"] for f in config["schedule"]) == ["kill", "partition"]
    results = json.loads((d / "results.json").read_text())
    assert results["valid"] is True and out.code == 0
    assert results["checkers"]["linearizable"]["model"] == "cas-register"
    assert results["run"]["faults_started"] == results["run"]["faults_healed"] == {"partition": 1, "kill": 1}
    summary = "\n".join(lines)
    assert "linearizable (cas-register): valid" in summary
    assert "partition x1 (healed 1)" in summary
    assert "read ok" in summary


def test_stale_reads_are_invalid_and_exit_1(tmp_path: Path, make_fake_executor: Any) -> None:
    out = run_once(cfg(seed=3), tmp_path, executor=make_fake_executor(stale_reads=True), progress=False)
    assert out.code == 1
    key = out.results["checkers"]["linearizable"]["keys"]["null"]
    assert key["valid"] is False
    # The explanation points at a stale read: it is the op that cannot be linearized, or it
    # is on every final path (a later cas then fails against the value the read forced).
    stale = [step["op"] for path in key["final_paths"] for step in path if step["op"]["f"] == "read"]
    assert key["op"]["f"] == "read" or (
        stale and all(any(s["op"]["f"] == "read" for s in path) for path in key["final_paths"]))


def test_recheck_rewrites_results(tmp_path: Path, make_fake_executor: Any) -> None:
    out = run_once(cfg(seed=3), tmp_path, executor=make_fake_executor(stale_reads=True), progress=False)
    (out.run_dir / "results.json").unlink()
    assert recheck_run_dir(out.run_dir) == 1
    assert json.loads((out.run_dir / "results.json").read_text())["valid"] is False


def test_replay_gives_the_same_history_bytes(tmp_path: Path, make_fake_executor: Any) -> None:
    out = run_once(cfg(workload="kv"), tmp_path, executor=make_fake_executor(), progress=False)
    again, same = replay_run_dir(out.run_dir, executor=make_fake_executor(), progress=False)
    assert same and again.run_dir != out.run_dir
    assert (again.run_dir / "config.json").read_text() == (out.run_dir / "config.json").read_text()


def test_bad_run_dirs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(MissingInput, match="not a run directory"):
        read_config(tmp_path / "nope")
    with pytest.raises(MissingInput, match=r"config\.json: missing"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text('{"workload": "register", "nodes": "five"}')
    with pytest.raises(MalformedInput, match="nodes: expected int"):
        read_config(tmp_path)
    (tmp_path / "config.json").write_text('{"workload": "register", "colour": 1}')
    with pytest.raises(MalformedInput, match="unknown field"):
        read_config(tmp_path)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="clock, disk can only be injected in the simulation"):
        cfg(target="local", faults=["partition", "clock", "disk"]).validate()
    with pytest.raises(ConfigError, match="3 to 7"):
        cfg(nodes=9).validate()
    with pytest.raises(ConfigError, match="unknown bug switch"):
        cfg(bugs=["nope"]).validate()
    c = cfg().with_schedule()
    assert RunConfig.from_json(json.loads(json.dumps(c.to_json()))) == c


def test_worst_verdict() -> None:
    assert worst([0, 2, 0]) == 2
    assert worst([2, 1, 0]) == 1
    assert worst([0, 0]) == 0
