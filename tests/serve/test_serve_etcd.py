"""``kvcheck serve --endpoints ... --etcd``: the key browser over a real 3-member etcd (Debian's
etcd-server; .ci/run installs it), checked over HTTP: member status from etcd's maintenance
status and member list, the key tree, a value with its past values back to the compaction
revision, the live watch, and a put through the UI that etcd then serves."""

from __future__ import annotations

import base64
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kvcheck.workloads.etcd.cluster import plain_cluster

from .conftest import kvcheck

pytestmark = [pytest.mark.etcd,
              pytest.mark.skipif(shutil.which("etcd") is None, reason="needs Debian's etcd-server")]


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def etcd_put(endpoint: str, key: str, value: str) -> int:
    resp = httpx.post(f"http://{endpoint}/v3/kv/put", json={"key": b64(key), "value": b64(value)}, timeout=10)
    resp.raise_for_status()
    return int(resp.json()["header"]["revision"])


def etcd_get(endpoint: str, key: str) -> str | None:
    resp = httpx.post(f"http://{endpoint}/v3/kv/range", json={"key": b64(key)}, timeout=10)
    resp.raise_for_status()
    kvs = resp.json().get("kvs") or []
    return base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[list[str]]:
    with plain_cluster(tmp_path / "etcd", 3) as endpoints:
        for key, value in [("/registry/pods/default/web-1", "v1"), ("/registry/pods/default/web-2", "v2"),
                           ("/registry/services/api", "svc"), ("/config/app.json", '{"replicas": 3}')]:
            etcd_put(endpoints[0], key, value)
        yield endpoints


def test_key_browser_over_real_etcd(serve: type, tmp_path: Path, etcd: list[str]) -> None:
    server = serve("--store", str(tmp_path / "store"), "--endpoints", ",".join(etcd), "--etcd", "--allow-writes")
    # status: every member with etcd's own figures, one leader that all agree on
    deadline = time.monotonic() + 30
    status: dict = {}
    while time.monotonic() < deadline:
        status = httpx.get(server.url + "/api/cluster").json()
        if status["state"] == "ok" and len(status["members"]) == 3 and all("role" in m for m in status["members"]):
            break
        time.sleep(0.5)
    assert status["state"] == "ok" and status["source"] == "etcd endpoints " + ",".join(etcd), status
    members = status["members"]
    assert sorted(m["client"] for m in members) == sorted(etcd)
    assert [m["role"] for m in members].count("leader") == 1, members
    leader = next(m for m in members if m["role"] == "leader")
    assert {m["leader"] for m in members} == {leader["id"]}
    for m in members:
        assert m["term"] >= 1 and m["revision"] >= 5 and m["raft_index"] >= 5 and m["db_size"] > 0, m
        assert m["version"].startswith("3."), m

    # the tree, one level at a time (range keys_only + limit)
    root = httpx.get(server.url + "/api/keys/children", params={"prefix": ""}).json()
    assert [d["name"] for d in root["dirs"]] == ["/"] and root["keys"] == []
    top = httpx.get(server.url + "/api/keys/children", params={"prefix": b"/".hex()}).json()
    assert [d["name"] for d in top["dirs"]] == ["config/", "registry/"]
    pods = httpx.get(server.url + "/api/keys/children", params={"prefix": b"/registry/pods/default/".hex()}).json()
    assert [k["name"] for k in pods["keys"]] == ["/registry/pods/default/web-1", "/registry/pods/default/web-2"]
    assert "value" not in pods["keys"][0]  # keys only

    # a value and its past values, then compaction cuts the history
    key = "/config/app.json"
    revs = [etcd_put(etcd[1], key, f'{{"replicas": {n}}}') for n in (4, 5, 6)]
    got = httpx.get(server.url + "/api/keys/key", params={"key": key.encode().hex()}).json()
    assert got["value"]["json"] == '{\n  "replicas": 6\n}' and got["version"] == 4 and got["mod_revision"] == revs[2]
    assert [h["value"]["text"] for h in got["history"]] == ['{"replicas": 5}', '{"replicas": 4}', '{"replicas": 3}']
    assert [h["version"] for h in got["history"]] == [3, 2, 1]
    compact_at = got["history"][1]["mod_revision"]
    httpx.post(f"http://{etcd[0]}/v3/kv/compaction", json={"revision": compact_at, "physical": True},
               timeout=10).raise_for_status()
    got = httpx.get(server.url + "/api/keys/key", params={"key": key.encode().hex()}).json()
    assert [h["version"] for h in got["history"]] == [3, 2]
    assert f"compaction revision {compact_at}" in got["history_note"]

    # the live watch on a prefix sees a put made straight to etcd
    with httpx.stream("GET", server.url + "/api/keys/watch", params={"prefix": b"/registry/".hex()},
                      timeout=20) as stream:
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith("event: created"):
                break
        etcd_put(etcd[2], "/registry/pods/default/web-3", "v3")
        event = None
        for line in lines:
            if line.startswith("data: ") and "mod_revision" in line:
                event = json.loads(line.removeprefix("data: "))
                break
    assert event is not None and event["type"] == "put" and event["name"] == "/registry/pods/default/web-3"

    # a put and a delete through the UI land in etcd
    resp = httpx.post(server.url + "/api/keys/put", json={"key": "/ui/written", "value": "from the UI"},
                      headers={"Origin": server.url})
    assert resp.status_code == 200, resp.text
    assert etcd_get(etcd[2], "/ui/written") == "from the UI"
    resp = httpx.post(server.url + "/api/keys/delete", json={"key": "/registry/services/api"},
                      headers={"Origin": server.url})
    assert resp.status_code == 200, resp.text
    assert etcd_get(etcd[0], "/registry/services/api") is None


def test_read_only_over_etcd(serve: type, tmp_path: Path, etcd: list[str]) -> None:
    server = serve("--store", str(tmp_path / "store"), "--endpoints", ",".join(etcd), "--etcd")
    resp = httpx.post(server.url + "/api/keys/put", json={"key": "/x", "value": "1"}, headers={"Origin": server.url})
    assert resp.status_code == 403
    assert etcd_get(etcd[0], "/x") is None
    got = httpx.get(server.url + "/api/keys/key", params={"key": b"/registry/services/api".hex()}).json()
    assert got["value"]["text"] == "svc"


@pytest.mark.parametrize("args", [["--etcd"], ["--etcd", "--data-dir", "."],
                                  ["--etcd", "--endpoints", "127.0.0.1:1", "--cacert", "CA"],
                                  ["--etcd", "--endpoints", "nohostport"]])
def test_etcd_usage_errors(args: list[str], tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("")
    args = [str(tmp_path / "ca.pem") if a == "CA" else a for a in args]
    proc = kvcheck("serve", "--port", "0", "--store", str(tmp_path / "store"), *args, check=False, timeout=60)
    assert proc.returncode == 64, (proc.stdout, proc.stderr)
    assert "--etcd" in proc.stderr or "--endpoints" in proc.stderr
