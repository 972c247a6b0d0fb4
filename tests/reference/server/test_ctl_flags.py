"""``kvcheck ctl`` as a user types it: global flags after the subcommand as well as before,
for every subcommand, and etcdctl's ``-w table`` output, run as ``python -m kvcheck`` against
a cluster started with ``kvcheck cluster start``.

Why: etcdctl takes its global flags anywhere on the line, and people type ``etcdctl get foo
-w json``; kvcheck's ctl refused that ("No such option: -w"). The walk over the command tree
keeps every future subcommand under the same rule.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from kvcheck.reference.ctl import ctl, global_options

GLOBAL_FLAGS = {opt for o in global_options() for opt in o.opts}


def kvcheck(*args: str, input: str | None = None, code: int = 0) -> str:
    """Run ``python -m kvcheck ARGS`` (as a user runs ``kvcheck``); its stdout, asserting its exit code."""
    proc = subprocess.run([sys.executable, "-m", "kvcheck", *args], input=input, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = str(tmp_path_factory.mktemp("ctl") / "cluster")
    kvcheck("cluster", "start", "--nodes", "3", "--data-dir", d)
    try:
        yield d
    finally:
        kvcheck("cluster", "stop", "--data-dir", d)


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_ctl_command_has_every_global_flag_or_its_own_of_that_name() -> None:
    leaves = dict(leaf_commands(ctl))
    assert set(leaves) == EXERCISED  # a new subcommand joins the run below
    for path, command in leaves.items():
        opts = {opt for p in command.params for opt in getattr(p, "opts", [])}
        assert opts >= GLOBAL_FLAGS, (path, GLOBAL_FLAGS - opts)
    # snapshot restore's --data-dir is the directory it creates, not a cluster to talk to
    restore = leaves[("snapshot", "restore")]
    assert [p.name for p in restore.params if "--data-dir" in getattr(p, "opts", [])] == ["restore_dir"]


def after(data_dir: str, *args: str, input: str | None = None, code: int = 0) -> Any:
    """``kvcheck ctl ARGS --data-dir D -w json``: the flags after the subcommand; its JSON."""
    out = kvcheck("ctl", *args, "--data-dir", data_dir, "-w", "json", input=input, code=code)
    return json.loads(out) if code == 0 else out


def before(data_dir: str, *args: str, input: str | None = None) -> Any:
    return json.loads(kvcheck("ctl", "--data-dir", data_dir, "-w", "json", *args, input=input))


# Every ctl subcommand, each run below with the global flags after it.
EXERCISED = {("put",), ("get",), ("del",), ("txn",), ("watch",), ("compaction",), ("move-leader",),
             ("lease", "grant"), ("lease", "list"), ("lease", "timetolive"), ("lease", "keep-alive"),
             ("lease", "revoke"), ("member", "list"), ("member", "add"), ("member", "promote"),
             ("member", "remove"), ("endpoint", "status"), ("endpoint", "health"), ("endpoint", "hashkv"),
             ("alarm", "list"), ("alarm", "disarm"), ("snapshot", "save"), ("snapshot", "restore")}


def test_every_subcommand_takes_the_global_flags_after_it(data_dir: str, tmp_path: Path) -> None:
    d = data_dir
    assert after(d, "put", "flags/a", "1")["header"]["revision"] > 0
    got = after(d, "get", "flags/a")
    assert got["kvs"][0]["value"] == "MQ==" and got == before(d, "get", "flags/a")
    assert after(d, "del", "flags/none")["header"]["revision"] > 0
    txn = after(d, "txn", input='value("flags/a") = "1"\n\nput flags/a 2\n\n')
    assert txn["succeeded"] is True
    watched = kvcheck("ctl", "watch", "flags/a", "--rev", "1", "--max-events", "1", "--data-dir", d, "-w", "json")
    responses = [json.loads(line) for line in watched.splitlines()]  # one JSON line per response
    assert responses[0]["created"] is True
    assert responses[-1]["events"][0]["kv"]["key"] == "ZmxhZ3MvYQ=="  # base64 of flags/a
    lease = after(d, "lease", "grant", "60")
    lid = f"{lease['id']:x}"
    assert lease["id"] in [x["id"] for x in after(d, "lease", "list")["leases"]]
    assert after(d, "lease", "timetolive", lid, "--keys")["granted_ttl"] == 60
    assert after(d, "lease", "keep-alive", "--once", lid)["ttl"] == 60
    assert after(d, "lease", "revoke", lid)["header"]["revision"] > 0
    revision = got["header"]["revision"]
    assert after(d, "compaction", str(revision))["header"]["revision"] >= revision
    members = after(d, "member", "list")
    assert members == before(d, "member", "list") and len(members["members"]) == 3
    assert [r["id"] for r in after(d, "endpoint", "status")] == [1, 2, 3]
    assert all(r["health"] for r in after(d, "endpoint", "health"))
    endpoints = [m["client"] for m in members["members"]]
    assert [r["endpoint"] for r in after(d, "endpoint", "hashkv") if "error" not in r] == endpoints
    assert set(after(d, "alarm", "list")) == {"header"}  # no alarms
    assert after(d, "alarm", "disarm") == {"alarms": []}
    leader = members["leader"]
    follower = next(m["id"] for m in members["members"] if m["id"] != leader)
    assert after(d, "move-leader", f"{follower:x}") == {"leader": follower}
    added = after(d, "member", "add", "extra", "--peer-urls", "127.0.0.1:9", "--learner")["member"]
    # a learner that never started cannot be promoted: the request fails (exit 1, not 64: parsed)
    after(d, "member", "promote", f"{added['id']:x}", code=1)
    removed = after(d, "member", "remove", f"{added['id']:x}")
    assert added["id"] not in [m["id"] for m in removed["members"]]
    snap = tmp_path / "backup.snap"
    saved = after(d, "snapshot", "save", str(snap))
    assert saved["file"] == str(snap) and snap.is_file()
    restored = json.loads(kvcheck("ctl", "snapshot", "restore", str(snap), "--data-dir", str(tmp_path / "new"),
                                  "-w", "json"))
    assert restored["members"] == 3 and restored["revision"] == saved["revision"]


def test_connection_flags_after_the_subcommand(data_dir: str) -> None:
    info = json.loads((Path(data_dir) / "cluster.json").read_text())
    endpoints = ",".join(n["client"] for n in info["nodes"])
    kvcheck("ctl", "put", "conn/a", "x", "--endpoints", endpoints, "--dial-timeout", "500ms",
            "--command-timeout", "5s")
    assert kvcheck("ctl", "get", "conn/a", "--print-value-only", "--endpoints", endpoints) == "x\n"
    # the flags take effect: a dead endpoint fails within the command timeout (exit 1)
    kvcheck("ctl", "get", "conn/a", "--endpoints", "127.0.0.1:1", "--dial-timeout", "200ms",
            "--command-timeout", "1s", code=1)
    kvcheck("ctl", "get", "conn/a", "--data-dir", data_dir, "--dial-timeout", "soon", code=64)


def test_tls_flags_after_the_subcommand(tmp_path: Path) -> None:
    d = str(tmp_path / "tls")
    kvcheck("cluster", "start", "--nodes", "3", "--tls", "--data-dir", d)
    try:
        tls = json.loads((Path(d) / "cluster.json").read_text())["tls"]
        endpoint = json.loads((Path(d) / "cluster.json").read_text())["nodes"][0]["client"]
        kvcheck("ctl", "--data-dir", d, "put", "secure", "yes")
        out = kvcheck("ctl", "get", "secure", "--print-value-only", "--endpoints", endpoint,
                      "--cacert", tls["ca"], "--cert", tls["client_cert"], "--key", tls["client_key"])
        assert out == "yes\n"
        # without a client certificate the member refuses the connection
        kvcheck("ctl", "get", "secure", "--endpoints", endpoint, "--cacert", tls["ca"],
                "--command-timeout", "1s", code=1)
        kvcheck("ctl", "get", "secure", "--endpoints", endpoint, "--cert", tls["client_cert"], code=64)
    finally:
        kvcheck("cluster", "stop", "--data-dir", d)


def parse_table(text: str) -> tuple[list[str], list[list[str]]]:
    """A bordered table's header and rows (cells stripped); asserts its frame is whole."""
    lines = text.rstrip("\n").splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("+")]
    assert rules == [0, 2, len(lines) - 1], text
    assert len({len(line) for line in lines}) == 1, text  # every line as wide as the frame
    assert all(set(lines[i]) <= {"+", "-"} for i in rules)

    def cells(line: str) -> list[str]:
        assert line.startswith("| ") and line.endswith(" |"), line
        return [c.strip() for c in line[2:-2].split(" | ")]

    return cells(lines[1]), [cells(line) for line in lines[3:-1]]


def table(data_dir: str, *args: str) -> tuple[list[str], list[list[str]]]:
    return parse_table(kvcheck("ctl", *args, "-w", "table", "--data-dir", data_dir))


def test_table_output_shows_what_json_shows(data_dir: str) -> None:
    d = data_dir
    lease = after(d, "lease", "grant", "120")
    kvcheck("ctl", "put", "tab/a", "one", "--lease", f"{lease['id']:x}", "--data-dir", d)
    kvcheck("ctl", "put", "tab/b", "two words", "--data-dir", d)

    header, rows = table(d, "get", "tab/", "--prefix")
    assert header == ["KEY", "VALUE", "CREATE REVISION", "MOD REVISION", "VERSION", "LEASE"]
    kvs = after(d, "get", "tab/", "--prefix")["kvs"]
    assert rows == [["tab/a", "one", str(kvs[0]["create_revision"]), str(kvs[0]["mod_revision"]), "1",
                     f"{lease['id']:x}"],
                    ["tab/b", "two words", str(kvs[1]["create_revision"]), str(kvs[1]["mod_revision"]), "1", ""]]
    assert table(d, "get", "tab/", "--prefix", "--count-only") == (["COUNT"], [["2"]])
    assert table(d, "get", "tab/a", "--keys-only")[0] == ["KEY", "CREATE REVISION", "MOD REVISION", "VERSION", "LEASE"]

    header, rows = table(d, "member", "list")
    assert header == ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]
    members = after(d, "member", "list")["members"]
    assert rows == [[f"{m['id']:x}", "started", m["name"], m["peer"], m["client"], "false"] for m in members]

    header, rows = table(d, "endpoint", "status")
    assert header[:7] == ["ENDPOINT", "ID", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX"]
    assert [r[0] for r in rows] == [m["client"] for m in members]
    assert [r[2] for r in rows].count("true") == 1 and all(r[-1] == "" for r in rows)

    header, rows = table(d, "endpoint", "hashkv")
    assert header == ["ENDPOINT", "HASH", "HASH REVISION", "COMPACT REVISION", "ERRORS"]
    assert len(rows) == 3 and all(r[1].isdigit() for r in rows)

    header, rows = table(d, "lease", "list")
    assert header == ["ID", "GRANTED TTL", "REMAINING TTL", "ATTACHED KEYS"]
    row = next(r for r in rows if r[0] == f"{lease['id']:x}")
    assert row[1] == "120" and 0 < int(row[2]) <= 120 and row[3] == "tab/a"

    # flags before the subcommand give the same table
    assert parse_table(kvcheck("ctl", "-w", "table", "--data-dir", d, "member", "list")) == table(d, "member", "list")


def test_table_output_is_refused_where_etcdctl_has_none(data_dir: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "kvcheck", "ctl", "put", "tab/x", "1", "-w", "table",
                           "--data-dir", data_dir], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 64
    assert "-w table is not available for `put`" in proc.stderr
    kvcheck("ctl", "get", "tab/x", "--data-dir", data_dir, "-w", "yaml", code=64)
