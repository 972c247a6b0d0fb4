"""``kvcheck serve`` over HTTP, without a browser: the run index (rows, errors, cache), paths
that try to leave the store, write refusal and an unreachable cluster."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import httpx
import pytest

from kvcheck.serve.store import RunIndex

from .conftest import Server, kvcheck, run_ids, start_cluster_dir


def raw_get(server: Server, target: str) -> int:
    """A request line sent as written (no client-side normalization of ``..``)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data and (chunk := sock.recv(65536)):
            data += chunk
    return int(data.split(b" ", 2)[1])


def test_rows_from_real_runs(run_store: Path) -> None:
    rows = {(r.workload, r.seed): r for r in RunIndex(run_store).rows()}
    assert set(rows) == {("register", 1), ("register", 4), ("kv", 2)}
    bad = rows[("register", 4)]
    assert bad.verdict == "invalid" and bad.checkers == {"linearizable": "invalid", "members": "valid",
                                                     "availability": "valid"} and bad.anomalies >= 1
    assert bad.bugs == ["local_reads"] and bad.faults == ["partition"] and bad.target == "sim"
    good = rows[("register", 1)]
    assert good.verdict == "valid" and good.anomalies == 0 and good.error is None
    # ops: the client invocations of the history (not the nemesis's nor the hash checks')
    history = (run_store / good.id / "history.jsonl").read_text().splitlines()
    invokes = sum(1 for line in history if json.loads(line)["type"] == "invoke"
                  and isinstance(json.loads(line)["process"], int))
    assert good.ops == invokes > 0
    assert good.sim_seconds is not None and good.sim_seconds >= 10 and good.wall_seconds is not None


def test_cache_by_mtime_and_new_runs(run_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(run_store, store, symlinks=True)
    index = RunIndex(store)
    first = {r.id: r for r in index.rows()}
    second = {r.id: r for r in index.rows()}
    assert all(first[i] is second[i] for i in first)  # unchanged files: the cached rows
    rid = run_ids(store)[("register", 1)]
    results = store / rid / "results.json"
    doc = json.loads(results.read_text())
    doc["valid"] = False
    doc["checkers"]["linearizable"]["valid"] = False
    results.write_text(json.dumps(doc))
    third = {r.id: r for r in index.rows()}
    assert third[rid] is not first[rid] and third[rid].verdict == "invalid"
    # a new run appears in the next listing
    kvcheck("run", "--workload", "register", "--faults", "pause", "--seed", "9", "--time-limit", "3",
            "--store", str(store), "--no-progress")
    assert len(index.rows()) == len(first) + 1


def test_corrupt_files_show_on_their_row(run_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(run_store, store, symlinks=True)
    ids = run_ids(store)
    (store / ids[("register", 1)] / "results.json").write_text('{"valid": true, "checkers": ')
    history = store / ids[("kv", 2)] / "history.jsonl"
    lines = history.read_text().splitlines()
    lines[4] = '{"index": 4, "type": "ok", "process": '
    history.write_text("\n".join(lines) + "\n")
    rows = {r.id: r for r in RunIndex(store).rows()}
    assert len(rows) == 3
    err1 = rows[ids[("register", 1)]].error
    assert err1 is not None and "results.json: not JSON" in err1
    err2 = rows[ids[("kv", 2)]].error
    assert err2 is not None and "history" in err2 and ":5:" in err2  # the file's line 5
    assert rows[ids[("register", 4)]].error is None
    # the server reads histories in a background thread: rows first say so, then the same
    background = RunIndex(store, background=True)
    assert all(r.history_pending and r.ops is None for r in background.rows())
    deadline = time.monotonic() + 30
    while any(r.history_pending for r in background.rows()) and time.monotonic() < deadline:
        time.sleep(0.05)
    later = {r.id: r for r in background.rows()}
    assert {i: (r.ops, r.error) for i, r in later.items()} == {i: (r.ops, r.error) for i, r in rows.items()}


def test_paths_never_leave_the_store(run_store: Path, serve: type, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    server = serve("--store", str(run_store))
    rid = run_ids(run_store)[("register", 4)]
    assert raw_get(server, f"/store/{rid}/config.json") == 200
    assert raw_get(server, f"/view/{rid}/history.jsonl") == 200
    assert raw_get(server, f"/run/{rid}") == 200
    rel = Path("..") / secret.relative_to(run_store.parent)
    for target in [
        f"/store/{rel.as_posix()}", f"/store/{rid}/../../../{secret.name}", f"/store/{secret}",
        f"/store/{rid}/..%2F..%2F..%2Fsecret.txt", f"/store/%2e%2e/%2e%2e/{secret.name}",
        f"/view/{secret}", f"/view/../{secret.name}", "/run/..", f"/run/{run_store}", "/run//etc",
        "/store//etc/passwd", "/store/../../../../etc/passwd", f"/store/{rid}/", f"/store/{rid}",
        f"/api/recheck/../{rid}", f"/compare?a=..&b={rid}",
    ]:
        assert raw_get(server, target) == 404, target
    # a symlink inside the store that points outside is not followed
    (run_store / "escape").symlink_to(tmp_path)
    try:
        assert raw_get(server, "/store/escape/secret.txt") == 404
        assert raw_get(server, "/run/escape") == 404
    finally:
        (run_store / "escape").unlink()


def test_writes_refused_without_allow_writes(serve: type, run_store: Path, cluster: Path) -> None:
    server = serve("--store", str(run_store), "--data-dir", str(cluster))
    resp = httpx.post(server.url + "/api/keys/put", json={"key": "/x", "value": "1"})
    assert resp.status_code == 403 and "--allow-writes" in resp.json()["error"]
    assert httpx.post(server.url + "/api/keys/delete", json={"key": "/config/app.json"}).status_code == 403
    got = kvcheck("ctl", "--data-dir", str(cluster), "get", "/x").stdout
    assert got == ""  # nothing was written
    writer = serve("--store", str(run_store), "--data-dir", str(cluster), "--allow-writes")
    # another web site's page cannot make the browser write: a foreign origin, or a body
    # that is not declared JSON (what a cross-site form can send), is refused
    resp = httpx.post(writer.url + "/api/keys/put", json={"key": "/x", "value": "evil"},
                      headers={"Origin": "http://evil.example"})
    assert resp.status_code == 403 and "cross-site" in resp.json()["error"]
    resp = httpx.post(writer.url + "/api/keys/put", content=json.dumps({"key": "/x", "value": "evil"}),
                      headers={"Content-Type": "text/plain"})
    assert resp.status_code == 403
    assert kvcheck("ctl", "--data-dir", str(cluster), "get", "/x").stdout == ""
    resp = httpx.post(writer.url + "/api/keys/put", json={"key": "/x", "value": "1"},
                      headers={"Origin": writer.url})
    assert resp.status_code == 200, resp.text
    assert kvcheck("ctl", "--data-dir", str(cluster), "get", "/x").stdout.split() == ["/x", "1"]


def test_unreachable_cluster_keeps_serving(serve: type, run_store: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve("--store", str(run_store), "--endpoints", f"127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    status: dict = {}
    while time.monotonic() < deadline:
        status = httpx.get(server.url + "/api/cluster").json()
        if status["state"] == "unreachable" and status["attempts"] >= 2:
            break
        time.sleep(0.5)
    assert status["state"] == "unreachable" and "retrying" in status["error"], status
    assert status["attempts"] >= 2  # it keeps trying
    resp = httpx.get(server.url + "/api/keys/children", params={"prefix": ""})
    assert resp.status_code == 503 and resp.json()["error"]
    assert httpx.get(server.url + "/api/runs").json()["runs"]  # the rest still serves
    assert httpx.get(server.url + "/keys").status_code == 200


@pytest.mark.parametrize("bad", ["zz", "0"])
def test_bad_hex_is_a_400(serve: type, run_store: Path, bad: str) -> None:
    server = serve("--store", str(run_store), "--endpoints", "127.0.0.1:1")
    assert httpx.get(server.url + "/api/keys/children", params={"prefix": bad}).status_code == 400


def test_key_history_and_compaction(serve: type, run_store: Path, cluster: Path) -> None:
    server = serve("--store", str(run_store), "--data-dir", str(cluster))
    key = "/config/app.json"
    for n in (4, 5, 6):
        kvcheck("ctl", "--data-dir", str(cluster), "put", key, f'{{"replicas": {n}}}')
    got = httpx.get(server.url + "/api/keys/key", params={"key": key.encode().hex()}).json()
    assert got["value"]["json"] == '{\n  "replicas": 6\n}' and got["version"] == 4
    assert [h["value"]["text"] for h in got["history"]] == [
        '{"replicas": 5}', '{"replicas": 4}', '{"replicas": 3}']
    assert [h["version"] for h in got["history"]] == [3, 2, 1]
    # compact at the revision of the second version: the first is gone, and the page says why
    kvcheck("ctl", "--data-dir", str(cluster), "compaction", str(got["history"][1]["mod_revision"]))
    got = httpx.get(server.url + "/api/keys/key", params={"key": key.encode().hex()}).json()
    assert [h["version"] for h in got["history"]] == [3, 2]
    assert "compaction revision" in got["history_note"]
    # the tree: one level at a time
    root = httpx.get(server.url + "/api/keys/children", params={"prefix": ""}).json()
    assert [d["name"] for d in root["dirs"]] == ["/"] and root["keys"] == []
    top = httpx.get(server.url + "/api/keys/children", params={"prefix": b"/".hex()}).json()
    assert [d["name"] for d in top["dirs"]] == ["config/", "registry/"]
    pods = httpx.get(server.url + "/api/keys/children",
                     params={"prefix": b"/registry/pods/default/".hex()}).json()
    assert [k["name"] for k in pods["keys"]] == ["/registry/pods/default/web-1", "/registry/pods/default/web-2"]


def test_tls_cluster(serve: type, run_store: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "tls"
    start_cluster_dir(data_dir, "--tls")
    try:
        kvcheck("ctl", "--data-dir", str(data_dir), "put", "/secure/k", "v")
        tls = json.loads((data_dir / "cluster.json").read_text())["tls"]
        endpoints = ",".join(n["client"] for n in json.loads((data_dir / "cluster.json").read_text())["nodes"])
        for args in (["--data-dir", str(data_dir)],
                     ["--endpoints", endpoints, "--cacert", tls["ca"], "--cert", tls["client_cert"],
                      "--key", tls["client_key"]]):
            server = serve("--store", str(run_store), *args)
            got = httpx.get(server.url + "/api/keys/key", params={"key": b"/secure/k".hex()})
            assert got.status_code == 200 and got.json()["value"]["text"] == "v", got.text
        # without the client certificate the cluster does not answer, and the page says so
        server = serve("--store", str(run_store), "--endpoints", endpoints)
        assert httpx.get(server.url + "/api/keys/key", params={"key": b"/secure/k".hex()}).status_code == 503
    finally:
        kvcheck("cluster", "stop", "--data-dir", str(data_dir), check=False)


def test_tree_is_loaded_lazily_with_limits(serve: type, run_store: Path, cluster: Path) -> None:
    """A folder with many keys under one child is listed as that child; a folder with more
    children than the listing limit says there are more."""
    import trio

    from kvcheck.reference.client import open_client
    from kvcheck.reference.cluster import ClusterInfo
    from kvcheck.serve.keys import LIST_LIMIT

    async def fill() -> None:
        async with open_client(ClusterInfo.load(cluster).endpoints()) as client:
            for i in range(LIST_LIMIT + 50):
                await client.put(f"/big/sub/{i:04d}".encode(), b"x")
            for i in range(3):
                await client.put(f"/big/k{i}".encode(), b"y")
            await client.put(b"/big/zz/last", b"z")

    trio.run(fill)
    server = serve("--store", str(run_store), "--data-dir", str(cluster))
    big = httpx.get(server.url + "/api/keys/children", params={"prefix": b"/big/".hex()}).json()
    assert [d["name"] for d in big["dirs"]] == ["sub/", "zz/"]
    assert [k["name"] for k in big["keys"]] == ["/big/k0", "/big/k1", "/big/k2"]
    assert big["more"] is False
    sub = httpx.get(server.url + "/api/keys/children", params={"prefix": b"/big/sub/".hex()}).json()
    assert len(sub["keys"]) == LIST_LIMIT and sub["more"] is True
    assert sub["keys"][0]["name"] == "/big/sub/0000" and "value" not in sub["keys"][0]  # keys only
