"""Parts of the etcd target that need no etcd: the gateway JSON decoding (base64, int64 as
strings, omitted proto3 defaults), error classes, and the peer proxy's view of which way raft
messages flow on a connection (one-way partitions depend on it)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio

from kvcheck.checker.history import Op
from kvcheck.reference.client import Failed, Indeterminate
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.wire import ErrorCode
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.etcd.client import (
    EtcdClient,
    Namespace,
    decode_range,
    decode_txn,
    decode_watch,
    encode_compare,
    prefix_end,
)
from kvcheck.workloads.etcd.cluster import EtcdCluster, EtcdMember
from kvcheck.workloads.etcd.known import progress_race
from kvcheck.workloads.etcd.proxy import EtcdPeerProxy, _Conn, _parse_head
from kvcheck.workloads.peerproxy import open_listener


def test_decoding_fills_proto3_defaults_and_int64_strings() -> None:
    r = decode_range({"header": {"cluster_id": "18446744073709551615", "revision": "7"},
                      "kvs": [{"key": "YQ==", "create_revision": "2", "mod_revision": "7", "version": "3"}],
                      "count": "1"})
    assert r.header.revision == 7 and r.header.cluster_id == 2**64 - 1
    assert r.kvs == [kvr.KeyValue(key=b"a", create_revision=2, mod_revision=7, version=3, value=b"", lease=0)]
    assert (r.more, r.count) == (False, 1)
    assert decode_range({"header": {}}) == kvr.RangeResponse()
    t = decode_txn({"header": {"revision": "3"}, "responses": [{"response_put": {"header": {"revision": "3"}}},
                                                               {"response_txn": {"header": {}}}]})
    assert t.succeeded is False and isinstance(t.responses[0], kvr.PutResponse)
    assert isinstance(t.responses[1], kvr.TxnResponse) and t.responses[1].header.revision == 0
    w = decode_watch({"header": {"revision": "6"}, "watch_id": "-1",
                      "events": [{"kv": {"key": "YQ==", "mod_revision": "5"}},
                                 {"type": "DELETE", "kv": {"key": "YQ==", "mod_revision": "6"}}]})
    assert w.watch_id == -1
    assert [e.type for e in w.events] == [kvr.EventType.PUT, kvr.EventType.DELETE]


def test_a_compare_always_names_its_operand() -> None:
    c = kvr.Compare(result=kvr.CompareResult.EQUAL, target=kvr.CompareTarget.VERSION, key=b"k", version=0)
    assert encode_compare(c)["version"] == 0  # "absent" is version == 0, said explicitly
    v = kvr.Compare(result=kvr.CompareResult.EQUAL, target=kvr.CompareTarget.VALUE, key=b"k", value=b"")
    assert encode_compare(v)["value"] == ""


@pytest.mark.parametrize(("body", "write", "cls", "code"), [
    ({"error": "etcdserver: mvcc: required revision has been compacted", "code": 11}, True, Failed,
     ErrorCode.COMPACTED),
    ({"error": "etcdserver: request timed out", "code": 14}, True, Indeterminate, ErrorCode.TIMEOUT),
    ({"error": "etcdserver: request timed out", "code": 14}, False, Failed, ErrorCode.TIMEOUT),
    ({"error": "etcdserver: leader changed", "code": 14}, True, Indeterminate, ErrorCode.TIMEOUT),
    ({"error": "something new", "code": 2}, True, Indeterminate, ErrorCode.UNKNOWN),
    ({"error": "etcdserver: duplicate key given in txn request", "code": 3}, True, Failed,
     ErrorCode.DUPLICATE_KEY),
])
def test_error_classes(body: dict[str, object], write: bool, cls: type, code: ErrorCode) -> None:
    err = EtcdClient._error(body, write)
    assert type(err) is cls and err.code is code


def test_namespace_keeps_to_its_prefix() -> None:
    ns = Namespace(b"kvcheck/run/")
    req = ns.request(kvr.RangeRequest(key=b"a", range_end=b"\0"))
    assert (req.key, req.range_end) == (b"kvcheck/run/a", prefix_end(b"kvcheck/run/"))
    resp = ns.response(kvr.RangeResponse(kvs=[kvr.KeyValue(key=b"kvcheck/run/a")]))
    assert resp.kvs[0].key == b"a"
    assert prefix_end(b"a\xff") == b"b" and prefix_end(b"\xff") == b"\0"


STREAM = (b"GET /raft/stream/message/aa HTTP/1.1\r\nHost: x\r\nX-Server-From: AA\r\n"
          b"X-Raft-To: bb\r\n\r\n")
PIPELINE = b"POST /raft HTTP/1.1\r\nHost: x\r\nX-Server-From: aa\r\nContent-Length: 0\r\n\r\n"


def test_the_proxy_knows_which_way_messages_flow() -> None:
    proxy = EtcdPeerProxy(random.Random(1))
    proxy.members = {"aa": 1, "bb": 2}
    stream = _Conn(dst=2)
    stream.sender, stream.stream = _parse_head(STREAM)
    pipeline = _Conn(dst=2)
    pipeline.sender, pipeline.stream = _parse_head(PIPELINE)
    # node 1 dialed node 2 on both; the stream's response carries node 2's messages to node 1
    assert proxy.flow(stream) == (2, 1) and proxy.flow(pipeline) == (1, 2)
    proxy.rules.blocked = {(1, 2)}
    assert proxy.blocked(pipeline) and not proxy.blocked(stream)
    unknown = _Conn(dst=2)
    unknown.sender, unknown.stream = _parse_head(b"GET /version HTTP/1.1\r\n\r\n")
    assert proxy.flow(unknown) is None and not proxy.blocked(unknown)


def test_a_partition_cuts_a_live_proxied_connection() -> None:
    async def main() -> None:
        got: list[bytes] = []

        async def upstream(stream: trio.SocketStream) -> None:
            while data := await stream.receive_some(1024):
                got.append(data)
                await stream.send_all(b"ok")

        proxy = EtcdPeerProxy(random.Random(1))
        proxy.members = {"aa": 1, "bb": 2}
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, upstream, 0)
            up_port = listeners[0].socket.getsockname()[1]
            listener, address = await open_listener()
            await nursery.start(proxy.serve, 2, listener, f"127.0.0.1:{up_port}")
            client = await trio.open_tcp_stream("127.0.0.1", int(address.rsplit(":", 1)[1]))
            await client.send_all(PIPELINE)
            assert await client.receive_some(10) == b"ok"
            proxy.set_blocked({(1, 2)})
            with trio.fail_after(5):
                assert await client.receive_some(10) == b""  # cut
            assert proxy.stats.cut == 1
            # a new connection on the blocked flow is held, not forwarded
            second = await trio.open_tcp_stream("127.0.0.1", int(address.rsplit(":", 1)[1]))
            await second.send_all(PIPELINE)
            with trio.move_on_after(0.3):
                await second.receive_some(10)
            assert len(got) == 1 and proxy.stats.held == 1
            proxy.set_blocked(set())
            with trio.fail_after(5):
                assert await second.receive_some(10) == b""  # healed: closed, to be dialed again
            nursery.cancel_scope.cancel()

    trio.run(main)


def _race_run(version: str, anomalies: dict[str, list[dict[str, object]]]) -> tuple[dict[str, Any], list[Op]]:
    ops = [Op.from_dict({"index": 0, "time": 0, "process": 100, "type": "invoke", "f": "watch", "value": {}}),
           Op.from_dict({"index": 1, "time": 1, "process": 100, "type": "ok", "f": "watch",
                         "value": {"watch_id": -1, "revision": 4, "events": []}}),
           Op.from_dict({"index": 2, "time": 2, "process": 100, "type": "ok", "f": "watch",
                         "value": {"watch_id": 0, "revision": 4, "events": [{"mod_revision": 3}]}})]
    checkers = {name: {"valid": not found, "anomalies": found} for name, found in anomalies.items()}
    return {"valid": False, "run": {"etcd_version": version}, "checkers": checkers}, ops


def test_the_known_etcd_progress_race_is_recognised_and_nothing_else() -> None:
    """kvcheck.workloads.etcd.known: a run whose only anomalies name a progress response
    (watch_id -1) on an etcd before 3.4.25 / 3.5.8 is explained; another anomaly, one that
    names no progress response, or a fixed etcd version is not."""
    race: dict[str, object] = {"kind": "watch:bookmarkable", "explanation": "event at revision 3 after a progress notification at 4",
            "ops": [1, 2]}
    cache: dict[str, object] = {"kind": "informer:cache", "explanation": "cache at revision 4 differs", "ops": [1]}
    assert progress_race(*_race_run("3.4.23", {"watch": [race], "informer": [cache], "linearizable": []})) == [
        race["explanation"], cache["explanation"]]
    assert progress_race(*_race_run("3.5.7", {"watch": [race]}))
    assert progress_race(*_race_run("3.4.25", {"watch": [race]})) == []
    assert progress_race(*_race_run("3.5.8", {"watch": [race]})) == []
    assert progress_race(*_race_run("3.4.23", {"watch": [race, {**race, "ops": [2]}]})) == []
    assert progress_race(*_race_run("3.4.23", {"watch": [{**race, "kind": "watch:reliable"}]})) == []
    assert progress_race(*_race_run("3.4.23", {"watch": [race], "linearizable": [{"kind": "x", "ops": [1]}]})) == []


def test_a_resume_right_after_a_pause_continues_the_member(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGSTOP takes effect when the process next runs: on a loaded machine a resume right
    after the pause could still read "running" in /proc, sent no SIGCONT, and the member
    stayed stopped for the rest of the run (an etcd register sweep seed failed its liveness
    bound that way). The resume goes by the pause it sent."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        cluster = EtcdCluster(RunConfig(target="etcd", nodes=3), tmp_path)
        member = EtcdMember(node=1, name="node1", client="127.0.0.1:1", peer="127.0.0.1:2",
                            listen_peer="127.0.0.1:3", data_dir=tmp_path, log=tmp_path / "node1.log", proc=proc)
        cluster.members[1] = member

        async def main() -> None:
            await cluster.pause(1)
            with monkeypatch.context() as m:  # /proc before the stop was delivered
                m.setattr(EtcdMember, "state", lambda self: "running")
                await cluster.resume(1)
            for _ in range(200):
                await trio.sleep(0.01)
                if member.state() == "running":
                    break

        trio.run(main)
        assert member.state() == "running" and not member.paused
        assert [e.split(" ", 1)[1] for e in cluster.events] == ["paused node1 (SIGSTOP)", "resumed node1 (SIGCONT)"]
    finally:
        proc.kill()
        proc.wait()
