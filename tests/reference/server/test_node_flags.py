"""The server's command line sets every NodeConfig field a run can record, and a member
started with those flags really runs with them (its status reports its config; small
limits act on requests)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from kvcheck.reference import cluster as rc
from kvcheck.reference.client import ClientError, open_client
from kvcheck.reference.node import NodeConfig
from kvcheck.reference.server import (
    build_parser,
    node_config_from_args,
    node_flags,
    parse_duration,
)
from kvcheck.workloads.config import NODE_FIELDS, RunConfig

BASE = ["--id", "3", "--data-dir", "/nonexistent", "--listen-peer", "127.0.0.1:1",
        "--listen-client", "127.0.0.1:2"]


def non_default_values() -> dict[str, Any]:
    """A different value for every NodeConfig field a run records."""
    base = NodeConfig(id=1)
    out: dict[str, Any] = {}
    for name in NODE_FIELDS:
        v = getattr(base, name)
        if isinstance(v, bool):
            out[name] = not v
        elif isinstance(v, int):
            out[name] = v + 3
        else:
            out[name] = v * 1.5 + 0.0125
    return out


def parse(args: list[str]) -> NodeConfig:
    return node_config_from_args(build_parser().parse_args(BASE + args))


def test_every_recorded_node_field_has_a_flag_and_round_trips() -> None:
    values = non_default_values()
    assert set(values) == {f.name for f in dataclasses.fields(NodeConfig)} - {"id", "name"}
    config = parse(node_flags(values))
    assert dataclasses.asdict(config) == {"id": 3, "name": "node3", **values}


def test_no_flags_means_node_config_defaults() -> None:
    assert parse([]) == NodeConfig(id=3, name="node3")


def test_flags_use_etcd_names_where_etcd_has_the_setting() -> None:
    config = parse(["--snapshot-count=7", "--quota-backend-bytes=4096", "--max-request-bytes=2048",
                    "--pre-vote=false", "--snapshot-catchup-entries=3",
                    "--watch-progress-notify-interval=250ms", "--tick-interval=20ms",
                    "--election-ticks", "15", "--heartbeat-ticks", "2", "--check-quorum"])
    assert (config.snapshot_count, config.quota_bytes, config.max_request_bytes) == (7, 4096, 2048)
    assert (config.pre_vote, config.check_quorum, config.snapshot_catchup_entries) == (False, True, 3)
    assert config.progress_notify_interval == 0.25
    assert (config.tick_interval, config.election_tick, config.heartbeat_tick) == (0.02, 15, 2)


def test_older_spellings_still_work() -> None:
    config = parse(["--tick-ms", "50", "--quota-bytes", "1000", "--request-timeout", "2.5"])
    assert (config.tick_interval, config.quota_bytes, config.request_timeout) == (0.05, 1000, 2.5)
    # cluster.json options written before options["node"]
    assert rc.node_overrides({"bugs": [], "tick_ms": 50, "snapshot_count": 9, "node": {"pre_vote": False}}) == {
        "tick_interval": 0.05, "snapshot_count": 9, "pre_vote": False}


@pytest.mark.parametrize(("args", "message"), [
    (["--election-ticks", "0"], "must be at least 1"),
    (["--pre-vote=maybe"], "'maybe' is not true or false"),
    (["--request-timeout", "soon"], "'soon' is not a duration"),
    (["--tick-interval=0s"], "must be positive"),
])
def test_bad_flag_values_are_refused_by_name(args: list[str], message: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(args)
    assert message in capsys.readouterr().err


def test_inconsistent_and_duplicate_settings_are_refused() -> None:
    with pytest.raises(SystemExit, match=r"--heartbeat-ticks \(10\) must be below --election-ticks \(10\)"):
        parse(["--heartbeat-ticks", "10"])
    with pytest.raises(SystemExit, match="--tick-interval and its older spelling"):
        parse(["--tick-ms", "50", "--tick-interval", "50ms"])


def test_node_flags_refuses_what_it_cannot_express() -> None:
    with pytest.raises(ValueError, match="no flag for NodeConfig field 'warp_factor'"):
        node_flags({"warp_factor": 9})
    with pytest.raises(ValueError, match=r"NodeConfig\.pre_vote must be a bool"):
        node_flags({"pre_vote": 1})
    with pytest.raises(ValueError, match="from --id/--name"):
        node_flags({"id": 4})
    with pytest.raises(rc.UsageError, match="cluster option 'tick' is unknown"):
        rc.node_overrides({"tick": 5})


def test_durations() -> None:
    assert [parse_duration(t) for t in ("0.5", "500ms", "2s", "1.5m", "1h")] == [0.5, 0.5, 2.0, 90.0, 3600.0]


# -- real processes -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[rc.ClusterInfo, dict[str, Any]]]:
    """A 3-member cluster whose node values all differ from NodeConfig's defaults (with a
    small request limit and a small snapshot count, to see them act)."""
    values = RunConfig().node | {
        "tick_interval": 0.05, "election_tick": 14, "heartbeat_tick": 2, "pre_vote": False,
        "request_timeout": 4.0, "snapshot_count": 20, "snapshot_catchup_entries": 5,
        "quota_bytes": 8 * 1024**2, "max_request_bytes": 1000, "lease_check_interval": 0.25,
        "progress_notify_interval": 7.5, "watch_buffer": 64, "cluster_id": 77,
    }
    info = rc.start_cluster(tmp_path_factory.mktemp("configured"), 3, options={"node": values})
    try:
        yield info, values
    finally:
        rc.stop_cluster(info)


def test_every_member_runs_with_the_configured_node_values(configured: tuple[rc.ClusterInfo, dict[str, Any]]) -> None:
    info, values = configured
    statuses = rc.statuses(info, timeout=5.0)
    assert set(statuses) == {1, 2, 3}
    for node_id, status in statuses.items():
        assert isinstance(status, dict), status
        assert status["config"] == {"id": node_id, "name": f"node{node_id}", **values}


def test_the_configured_limits_act_on_requests(configured: tuple[rc.ClusterInfo, dict[str, Any]]) -> None:
    info, _ = configured

    async def main() -> tuple[str, int, int]:
        async with open_client(info.endpoints(), timeout=5.0) as client:
            try:
                await client.put(b"big", b"x" * 2000)  # over max_request_bytes=1000
                refused = ""
            except ClientError as exc:
                refused = str(exc)
            for i in range(30):  # past snapshot_count=20
                await client.put(b"k", str(i).encode())
            status = await client.status(info.endpoints()[0], timeout=5.0)
            header = (await client.get(b"k")).header
            return refused, status["snapshot_index"], header.cluster_id

    refused, snapshot_index, cluster_id = trio.run(main)
    assert "exceeds 1000" in refused
    assert snapshot_index > 0
    assert cluster_id == 77


def test_cluster_start_options_reach_the_members(tmp_path: Path) -> None:
    d = tmp_path / "cli"

    def kv(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kvcheck", "cluster", *args, "--data-dir", str(d)],
                              capture_output=True, text=True, timeout=90)

    started = kv("start", "--nodes", "3", "--tick-ms", "50", "--snapshot-count", "300")
    try:
        assert started.returncode == 0, started.stderr
        statuses = rc.statuses(rc.ClusterInfo.load(d), timeout=5.0)
        for status in statuses.values():
            assert isinstance(status, dict), status
            assert (status["config"]["tick_interval"], status["config"]["snapshot_count"]) == (0.05, 300)
            assert status["config"]["election_tick"] == NodeConfig(id=1).election_tick
    finally:
        assert kv("stop").returncode == 0
