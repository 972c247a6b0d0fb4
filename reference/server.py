"""The reference store as a process: TCP peer and client listeners around one Node.

Why: ``kvcheck cluster`` and the local target run real members on 127.0.0.1 that a person
can talk to like etcd. The member logic is all in reference/node.py; this module is the real
shell around it: ``TcpTransport`` (the Transport protocol over TCP), the Disk from
reference/disk.py on the real file system, ``TrioClock``, the client protocol, optional mutual
TLS on both ports, and Prometheus metrics on an HTTP port.

How: frames are reference/wire.py's length-prefixed msgpack. Peers: a connection starts with
``{"hello": sender id}``; after it every frame is ``{"m": [message.to_wire(), ...]}`` (a batch);
each peer has one outgoing connection fed by a bounded queue (full queue: drop and report
the peer unreachable; Raft retries), reconnecting with backoff. Snapshots travel as
ordinary messages, so the peer port allows frames up to ``PEER_MAX_FRAME``. Clients: every
request frame ``{"id", "op", "body", "client", "seq"}`` is served in its own task and
answered ``{"id", "ok"}`` or ``{"id", "err"}``; a frame over 1.5 MiB is answered with
``request_too_large`` and the connection stays; an undecodable frame closes the connection
(the member stays up). ``watch_create`` streams ``{"id", "ok": WatchResponse}`` frames on the
connection until the client cancels it (``watch_cancel``) or disconnects; ``watch_progress``
(body ``{"watch_id"}``) asks for a progress notification on that watch, which is its answer.

Run one member: ``python -m kvcheck.reference.server --id 1 --data-dir D --listen-peer
127.0.0.1:P --listen-client 127.0.0.1:C --member 1,n1,127.0.0.1:P,127.0.0.1:C ...``
(``kvcheck cluster`` does this for you). Every NodeConfig field a run records has a flag
(``NODE_FLAGS``: etcd's name where etcd has the setting, e.g. --snapshot-count,
--quota-backend-bytes, --max-request-bytes, --pre-vote=false; timing stays in Raft ticks as
NodeConfig is); ``node_flags(values)`` writes them for the launchers, and an unset flag keeps
NodeConfig's default. The status answer carries the NodeConfig the member runs with.

A launcher that holds a member's ports (reference/cluster.py ``PortHold``) hands the bound
sockets themselves to the process: ``--listen-fd peer=FD`` (and client=, metrics=) makes the
member listen on that inherited socket instead of binding the address again, so the port is
never unbound between the launcher's choice and the member's listen.

The peer and client ports are bound before the member joins the cluster; if one cannot be
(e.g. another process holds it), the member logs ``member N cannot listen for peer|client|
metrics connections on HOST:PORT: <reason>`` and exits with status 71 (EX_OSERR), so a
launcher can say which member failed instead of waiting for a leader.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import random
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import trio

from kvcheck.reference import raft
from kvcheck.reference.bugs import NO_BUGS, BugCounter, Bugs
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.node import REMOVED_GRACE, Member, Node, NodeConfig, TrioClock
from kvcheck.reference.tls import TLSFiles, client_context, server_context
from kvcheck.reference.wire import (
    BadFrame,
    ErrorCode,
    FrameReader,
    FrameTooLarge,
    WireError,
    encode_frame,
    error_frame,
    ok_frame,
    pack,
    send_frame_bytes,
)

log = logging.getLogger("kvcheck.server")

PEER_MAX_FRAME = 256 * 1024 * 1024
PEER_QUEUE = 4096  # messages queued per peer before new ones are dropped

# --------------------------------------------------------------------------------------------
# Peer transport
# --------------------------------------------------------------------------------------------


def coalesce_appends(batch: list[raft.Message]) -> list[raft.Message]:
    """Merge runs of contiguous MsgApp to one peer into one MsgApp.

    The leader sends one MsgApp per proposal; when several wait in a peer's queue together,
    ``APP(index=i, entries=[e(i+1)])`` followed by ``APP(index=i+1, entries=[e(i+2)])`` (same
    term, the second's log_term the first's last entry term) is equivalent to one
    ``APP(index=i, entries=[e(i+1), e(i+2)])`` carrying the later commit index: the follower
    appends the same entries and sends one acknowledgement for the last, which covers both
    in the leader's inflight window. Anything else is kept as is, in order.
    """
    out: list[raft.Message] = []
    for m in batch:
        prev = out[-1] if out else None
        if (
            prev is not None and m.type is raft.MessageType.APP and prev.type is raft.MessageType.APP
            and m.to == prev.to and m.term == prev.term and prev.entries and m.entries
            and m.index == prev.entries[-1].index and m.log_term == prev.entries[-1].term
            and m.snapshot is None and prev.snapshot is None
        ):
            out[-1] = replace(prev, entries=prev.entries + m.entries, commit=max(prev.commit, m.commit))
        else:
            out.append(m)
    return out


def _peer_frame(messages: Sequence[raft.Message]) -> bytes:
    payload = pack({"m": [m.to_wire() for m in messages]})
    return len(payload).to_bytes(4, "big") + payload


async def _open(address: str, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    from kvcheck.reference.client import open_stream

    return await open_stream(address, ssl_context)


class _PeerSender:
    def __init__(self, transport: TcpTransport, member: Member) -> None:
        self.transport = transport
        self.member = member
        self.send, self.recv = trio.open_memory_channel[raft.Message](PEER_QUEUE)
        self.cancel_scope = trio.CancelScope()

    async def run(self) -> None:
        node = self.transport.node
        backoff = 0.05
        with self.cancel_scope:
            while True:
                try:
                    with trio.fail_after(2.0):
                        stream = await _open(self.member.peer, self.transport.client_ssl)
                except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
                    log.debug("peer %d unreachable at %s: %s", self.member.id, self.member.peer, exc)
                    self._drain_failed()
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
                backoff = 0.05
                try:
                    await stream.send_all(encode_frame({"hello": node.id}))
                    while True:
                        batch = [await self.recv.receive()]
                        while len(batch) < 512:
                            try:
                                batch.append(self.recv.receive_nowait())
                            except trio.WouldBlock:
                                break
                        await send_frame_bytes(stream, _peer_frame(coalesce_appends(batch)))
                        for m in batch:
                            if m.type is raft.MessageType.SNAP:
                                node.report_snapshot(m.to, True)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError) as exc:
                    log.debug("peer %d connection lost: %s", self.member.id, exc)
                    node.report_unreachable(self.member.id)
                finally:
                    await trio.aclose_forcefully(stream)

    def _drain_failed(self) -> None:
        node = self.transport.node
        dropped = False
        while True:
            try:
                m = self.recv.receive_nowait()
            except trio.WouldBlock:
                break
            dropped = True
            if m.type is raft.MessageType.SNAP:
                node.report_snapshot(m.to, False)
        if dropped:
            node.report_unreachable(self.member.id)


class TcpTransport:
    """The Transport protocol over TCP (and TLS): one outgoing connection per peer."""

    def __init__(self, nursery: trio.Nursery, client_ssl: ssl.SSLContext | None) -> None:
        self.nursery = nursery
        self.client_ssl = client_ssl
        self.node: Node = None  # type: ignore[assignment]  # set right after the Node exists
        self._senders: dict[int, _PeerSender] = {}

    def send(self, messages: Sequence[raft.Message]) -> None:
        for m in messages:
            sender = self._senders.get(m.to)
            if sender is None:
                continue
            try:
                sender.send.send_nowait(m)
            except trio.WouldBlock:
                self.node.report_unreachable(m.to)
                if m.type is raft.MessageType.SNAP:
                    self.node.report_snapshot(m.to, False)

    def update_members(self, members: Mapping[int, Member]) -> None:
        for member_id in sorted(self._senders):
            current = members.get(member_id)
            sender = self._senders[member_id]
            if current is None or current.peer != sender.member.peer:
                sender.cancel_scope.cancel()
                del self._senders[member_id]
        for member_id in sorted(members):
            member = members[member_id]
            if member_id == self.node.id or member_id in self._senders or not member.peer:
                continue
            sender = _PeerSender(self, member)
            self._senders[member_id] = sender
            self.nursery.start_soon(sender.run)


async def serve_peer_connection(node: Node, stream: trio.abc.Stream) -> None:
    reader = FrameReader(stream, max_frame=PEER_MAX_FRAME)
    try:
        hello = await reader.read()
        if not isinstance(hello, dict) or not isinstance(hello.get("hello"), int):
            raise BadFrame(f"peer connection must start with hello, got {hello!r:.100}")
        while True:
            frame = await reader.read()
            if frame is None:
                return
            if not isinstance(frame, dict) or not isinstance(frame.get("m"), list):
                raise BadFrame(f"peer frame must be {{'m': [...]}}, got {frame!r:.100}")
            for wire_msg in frame["m"]:
                try:
                    msg = raft.Message.from_wire(wire_msg)
                except raft.MalformedMessage as exc:
                    raise BadFrame(f"malformed raft message: {exc}") from exc
                node.receive(msg)
    except (BadFrame, FrameTooLarge) as exc:
        log.warning("closing peer connection: %s", exc)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


# --------------------------------------------------------------------------------------------
# Client protocol
# --------------------------------------------------------------------------------------------

WRITE_KINDS = ("put", "delete_range", "txn", "compaction", "lease_grant", "lease_revoke", "alarm")
KV_KINDS = (*WRITE_KINDS, "range", "lease_keepalive", "lease_time_to_live", "lease_leases", "hash_kv")


def _wire_body(resp: Any) -> Any:
    if resp is None:
        return {}
    if isinstance(resp, kvr.Message):
        return resp.to_wire()
    return resp


async def dispatch(node: Node, op: Any, body: Any, client: Any, seq: Any) -> Any:
    """Serve one non-streaming client request; returns the wire body or raises WireError."""
    if not isinstance(op, str):
        raise WireError(ErrorCode.BAD_REQUEST, f"op must be a string, got {op!r:.60}")
    if not isinstance(body, dict):
        raise WireError(ErrorCode.BAD_REQUEST, f"body must be a map, got {type(body).__name__}")
    if op in KV_KINDS:
        try:
            req = kvr.from_tagged({"kind": op, "body": body}, kvr.CLIENT_REQUESTS)
        except kvr.KVError as exc:
            raise WireError(ErrorCode.BAD_REQUEST, exc.message) from None
        if op in WRITE_KINDS:
            if not isinstance(client, int) or not isinstance(seq, int):
                raise WireError(ErrorCode.BAD_REQUEST, "a write needs integer client and seq fields")
            return _wire_body(await node.propose(req, client, seq))
        if isinstance(req, kvr.RangeRequest):
            return _wire_body(await node.range(req))
        if isinstance(req, kvr.LeaseKeepAliveRequest):
            return _wire_body(await node.lease_keepalive(req.id))
        if isinstance(req, kvr.LeaseTimeToLiveRequest):
            return _wire_body(await node.lease_time_to_live(req))
        if isinstance(req, kvr.LeaseLeasesRequest):
            return _wire_body(await node.lease_leases())
        if isinstance(req, kvr.HashKVRequest):
            return _wire_body(node.hash_kv(req.revision))
    if op == "status":  # plus the NodeConfig the member runs with (what its flags set)
        return {**node.status(), "config": asdict(node.config)}
    if op == "member_list":
        return {"members": [m.to_wire() for m in node.member_list()], "leader": node.leader}
    if op == "member_add":
        peer, client_addr = body.get("peer"), body.get("client", "")
        if not isinstance(peer, str) or not peer:
            raise WireError(ErrorCode.BAD_REQUEST, "member_add needs a peer address")
        member = await node.member_add(str(body.get("name", "")), peer, str(client_addr),
                                       bool(body.get("learner", False)))
        return {"member": member.to_wire(), "members": [m.to_wire() for m in node.member_list()]}
    if op in ("member_remove", "member_promote", "move_leader"):
        target = body.get("id", body.get("to"))
        if not isinstance(target, int):
            raise WireError(ErrorCode.BAD_REQUEST, f"{op} needs an integer member id")
        if op == "member_remove":
            member = await node.member_remove(target)
        elif op == "member_promote":
            member = await node.member_promote(target)
        else:
            return {"leader": await node.move_leader(target)}
        return {"member": member.to_wire(), "members": [m.to_wire() for m in node.member_list()]}
    if op == "snapshot":
        return node.snapshot_document()
    raise WireError(ErrorCode.BAD_REQUEST, f"unknown op {op!r}")


class ClientSession:
    """One client connection: concurrent requests, replies written under one lock."""

    def __init__(self, node: Node, stream: trio.abc.Stream) -> None:
        self.node = node
        self.stream = stream
        self.lock = trio.Lock()
        self.watches: dict[int, trio.CancelScope] = {}
        self.watch_streams: dict[int, Any] = {}  # watch id -> its WatchStream (progress requests)

    async def reply(self, frame: dict[str, Any]) -> None:
        try:
            data = encode_frame(frame)
        except WireError as exc:
            data = encode_frame(error_frame(frame.get("id"), exc))
        if self.lock.locked():
            async with self.lock:
                await self.stream.send_all(data)
            return
        self.lock.acquire_nowait()  # nobody is mid-write: try the socket directly first
        try:
            await send_frame_bytes(self.stream, data)
        finally:
            self.lock.release()

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await self._read_loop(nursery)
                nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(self.stream)

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        reader = FrameReader(self.stream)
        try:
            while True:
                try:
                    frame = await reader.read()
                except FrameTooLarge as exc:
                    await self.reply(error_frame(None, WireError(ErrorCode.REQUEST_TOO_LARGE, str(exc))))
                    continue
                if frame is None:
                    return
                if not isinstance(frame, dict) or "id" not in frame or "op" not in frame:
                    await self.reply(error_frame(
                        frame.get("id") if isinstance(frame, dict) else None,
                        WireError(ErrorCode.BAD_REQUEST, "a request is a map with id, op and body")))
                    continue
                if frame["op"] == "watch_create":
                    nursery.start_soon(self.watch, frame)
                elif frame["op"] == "watch_cancel":
                    body = frame.get("body")
                    wid = body.get("watch_id") if isinstance(body, dict) else None
                    scope = self.watches.get(wid) if isinstance(wid, int) else None
                    if scope is not None:
                        scope.cancel()
                    await self.reply(ok_frame(frame["id"], {"watch_id": wid, "canceled": scope is not None}))
                elif frame["op"] == "watch_progress":
                    # no reply of its own: the progress notification on the watch answers it (etcd)
                    body = frame.get("body")
                    wid = body.get("watch_id") if isinstance(body, dict) else None
                    stream = self.watch_streams.get(wid) if isinstance(wid, int) else None
                    if stream is not None:
                        stream.request_progress()
                else:
                    nursery.start_soon(self.handle, frame)
        except BadFrame as exc:
            log.warning("closing client connection: %s", exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError):
            pass

    async def handle(self, frame: dict[str, Any]) -> None:
        try:
            body = await dispatch(self.node, frame["op"], frame.get("body", {}),
                                  frame.get("client"), frame.get("seq"))
            out = ok_frame(frame["id"], body)
        except WireError as exc:
            out = error_frame(frame["id"], exc)
        except Exception as exc:  # a bug must not take the member down; report it
            log.exception("request %r failed", frame.get("op"))
            out = error_frame(frame["id"], WireError(ErrorCode.UNAVAILABLE, f"internal error: {exc}"))
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self.reply(out)

    async def watch(self, frame: dict[str, Any]) -> None:
        rid = frame["id"]
        try:
            req = kvr.WatchCreateRequest.from_wire(frame.get("body"))
        except kvr.KVError as exc:
            await self.reply(error_frame(rid, WireError(ErrorCode.BAD_REQUEST, exc.message)))
            return
        scope = trio.CancelScope()
        try:
            with self.node.watch(req) as stream:
                self.watches[stream.watch_id] = scope
                self.watch_streams[stream.watch_id] = stream
                with scope:
                    async for resp in stream:
                        await self.reply(ok_frame(rid, resp.to_wire()))
                        if resp.canceled:
                            return
                if scope.cancelled_caught:
                    resp = stream.cancel() or kvr.WatchResponse(watch_id=stream.watch_id, canceled=True)
                    await self.reply(ok_frame(rid, resp.to_wire()))
                    return
            # the member dropped the watch (snapshot restore, too slow, stopping)
            await self.reply(error_frame(rid, WireError(ErrorCode.UNAVAILABLE, "watch dropped by the member; resume")))
        except WireError as exc:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await self.reply(error_frame(rid, exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self.watches = {k: v for k, v in self.watches.items() if v is not scope}
            self.watch_streams = {k: v for k, v in self.watch_streams.items() if k in self.watches}


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def start_metrics(node: Node, host: str, port: int, sock: socket.socket | None = None) -> Any:
    """Serve Prometheus metrics over HTTP (a daemon thread reading the node's counters), on
    host:port, or on ``sock`` (an inherited socket bound there) when given."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    from kvcheck.reference.node import APPLY_BUCKETS

    class NodeCollector:
        def collect(self) -> Any:
            m = node.metrics
            series: list[tuple[type[CounterMetricFamily] | type[GaugeMetricFamily], str, str, float]] = [
                (CounterMetricFamily, "kvcheck_server_proposals_committed", "Proposals committed and applied.", m.proposals_committed),
                (CounterMetricFamily, "kvcheck_server_proposals_failed", "Proposals that failed or timed out.", m.proposals_failed),
                (CounterMetricFamily, "kvcheck_server_leader_changes_seen", "Leader changes seen.", m.leader_changes),
                (GaugeMetricFamily, "kvcheck_server_has_leader", "1 if a leader is known.", 1 if node.leader else 0),
                (GaugeMetricFamily, "kvcheck_server_is_leader", "1 if this member leads.", 1 if node.is_leader else 0),
                (GaugeMetricFamily, "kvcheck_mvcc_db_total_size_in_bytes", "Bytes stored by the state machine (what the quota counts).", node.db_size),
                (GaugeMetricFamily, "kvcheck_debugging_mvcc_watcher_total", "Active watchers.", node.watcher_count),
                (GaugeMetricFamily, "kvcheck_server_applied_index", "Applied index.", node.applied),
            ]
            for family, name, doc, value in series:
                metric = family(name, doc)
                metric.add_metric([], value)
                yield metric
            h = HistogramMetricFamily("kvcheck_server_apply_duration_seconds", "Time to apply a batch of committed entries.")
            # apply_buckets already count observations <= each bound (cumulative)
            buckets = [(str(bound), count) for bound, count in zip(APPLY_BUCKETS, m.apply_buckets, strict=True)]
            buckets.append(("+Inf", m.apply_count))
            h.add_metric([], buckets, m.apply_seconds_sum)
            yield h

    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector())
    if sock is None:
        return start_http_server(port, addr=host, registry=registry)
    return _serve_http_on(sock, host, port, registry)


def _serve_http_on(sock: socket.socket, host: str, port: int, registry: Any) -> Any:
    """prometheus_client's metrics server on a socket that is already bound (and listening)."""
    import threading
    from wsgiref.simple_server import WSGIRequestHandler

    from prometheus_client import make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingWSGIServer((host, port), QuietHandler, bind_and_activate=False)
    httpd.socket.close()
    httpd.socket = sock
    httpd.server_address = sock.getsockname()
    httpd.server_name, httpd.server_port = host, port
    httpd.setup_environ()
    httpd.set_app(make_wsgi_app(registry))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


# --------------------------------------------------------------------------------------------
# The process
# --------------------------------------------------------------------------------------------


CONFIG_LOG_MARK = "node config"  # the startup log line that shows a member's NodeConfig as JSON
LISTEN_FAILED_EXIT = 71  # sysexits EX_OSERR: the member could not listen on one of its ports


class ListenError(Exception):
    """A member cannot listen on one of its addresses (e.g. the port is taken)."""

    def __init__(self, member: int, role: str, address: str, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        super().__init__(f"member {member} cannot listen for {role} connections on {address}: {reason}")
        self.address = address
        self.role = role


def inherited_listener(fd: int, address: str) -> socket.socket:
    """The listening socket on inherited descriptor ``fd``, which must be a TCP socket bound
    to ``address`` (the launcher held the port there); SO_REUSEADDR is set before listen so
    that a restart can bind the port past this run's TIME_WAIT connections."""
    from kvcheck.reference.client import parse_endpoint

    host, port = parse_endpoint(address)
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OSError(exc.errno, f"inherited descriptor {fd}: {exc.strerror or exc}") from None
    if sock.type != socket.SOCK_STREAM or sock.getsockname() != (host, port):
        bound = sock.getsockname()
        sock.detach()
        raise OSError(errno.EINVAL, f"inherited descriptor {fd} is {bound}, not a TCP socket bound to {address}")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.listen(socket.SOMAXCONN)
    return sock


@dataclass
class ServerOptions:
    node: NodeConfig
    data_dir: Path
    listen_peer: str
    listen_client: str
    members: list[Member]
    listen_metrics: str | None = None
    join: bool = False
    tls: TLSFiles | None = None
    seed: int | None = None
    bugs: Bugs = NO_BUGS
    listen_fds: dict[str, int] = field(default_factory=dict)  # role -> inherited socket (--listen-fd)


async def serve(options: ServerOptions, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
    from kvcheck.reference.client import parse_endpoint
    from kvcheck.reference.disk import open_disk

    server_ssl = server_context(options.tls) if options.tls else None
    client_ssl = client_context(options.tls) if options.tls else None
    # Listen before the member takes part in the cluster: a member that cannot serve its
    # ports exits (ListenError) instead of campaigning and voting unreachable.
    bound: dict[str, Sequence[trio.abc.Listener[Any]]] = {}
    for role, address in (("peer", options.listen_peer), ("client", options.listen_client)):
        host, port = parse_endpoint(address)
        try:
            listeners: Sequence[trio.abc.Listener[Any]]
            if role in options.listen_fds:
                sock = trio.socket.from_stdlib_socket(inherited_listener(options.listen_fds[role], address))
                listeners = [trio.SocketListener(sock)]
            else:
                listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            for opened in bound.values():
                for lst in opened:
                    await lst.aclose()
            raise ListenError(options.node.id, role, address, exc) from None
        if server_ssl is not None:
            listeners = [trio.SSLListener(lst, server_ssl, https_compatible=False) for lst in listeners]
        bound[role] = listeners
    disk = await open_disk(options.data_dir)
    rng = random.Random(options.seed if options.seed is not None else options.node.id)
    async with trio.open_nursery() as nursery:
        transport = TcpTransport(nursery, client_ssl)
        node = Node(options.node, transport, disk, TrioClock(), rng,
                    initial_members=options.members, join=options.join, bugs=options.bugs)
        transport.node = node
        if options.listen_metrics:
            host, port = parse_endpoint(options.listen_metrics)
            try:
                fd = options.listen_fds.get("metrics")
                start_metrics(node, host, port,
                              None if fd is None else inherited_listener(fd, options.listen_metrics))
            except OSError as exc:
                raise ListenError(options.node.id, "metrics", options.listen_metrics, exc) from None
        await nursery.start(node.run)

        async def peer_handler(stream: trio.abc.Stream) -> None:
            await serve_peer_connection(node, stream)

        async def client_handler(stream: trio.abc.Stream) -> None:
            await ClientSession(node, stream).serve()

        nursery.start_soon(_serve_listeners, peer_handler, bound["peer"])
        nursery.start_soon(_serve_listeners, client_handler, bound["client"])
        log.info("member %d serving peers on %s, clients on %s", node.id, options.listen_peer, options.listen_client)
        log.info("member %d runs with %s %s", node.id, CONFIG_LOG_MARK, json.dumps(asdict(node.config), sort_keys=True))
        task_status.started(node)
        await node.removed.wait()
        log.info("member %d was removed from the cluster; stopping", node.id)
        await trio.sleep(REMOVED_GRACE)  # let the leader see the removal's commit acknowledged
        nursery.cancel_scope.cancel()


async def _serve_listeners(handler: Any, listeners: Sequence[trio.abc.Listener[Any]]) -> None:
    async def guarded(stream: trio.abc.Stream) -> None:
        try:
            await handler(stream)
        except (ssl.SSLError, trio.BrokenResourceError, OSError) as exc:
            log.info("connection closed: %s", exc)
        except Exception:  # one connection's failure must never take the member down
            log.exception("connection handler failed")

    await trio.serve_listeners(guarded, list(listeners))


LISTEN_ROLES = ("peer", "client", "metrics")


def parse_listen_fd(text: str) -> tuple[str, int]:
    """'client=5' -> ("client", 5)."""
    role, _, fd = text.partition("=")
    if role not in LISTEN_ROLES or not fd.isdigit():
        raise argparse.ArgumentTypeError(f"--listen-fd {text!r}: expected ROLE=FD with ROLE one of "
                                         f"{', '.join(LISTEN_ROLES)}")
    return role, int(fd)


def parse_member(text: str) -> Member:
    """'ID,NAME,PEER,CLIENT' -> Member."""
    parts = text.split(",")
    if len(parts) != 4 or not parts[0].isdigit():
        raise argparse.ArgumentTypeError(f"--member {text!r}: expected ID,NAME,PEER_ADDR,CLIENT_ADDR")
    return Member(int(parts[0]), parts[1], parts[2], parts[3])


# --------------------------------------------------------------------------------------------
# Command line: every NodeConfig field a run records has a flag
# --------------------------------------------------------------------------------------------

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds from '0.5', '500ms', '1.5s', '2m' or '1h' (a bare number is seconds)."""
    t = text.strip().lower()
    for unit in ("ms", "s", "m", "h"):
        if t.endswith(unit):
            number, scale = t[: -len(unit)], _DURATION_UNITS[unit]
            break
    else:
        number, scale = t, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 0.5, 500ms, 2s, 1m)") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be positive and finite")
    return value


def parse_bool(text: str) -> bool:
    """etcd's boolean flag values: true/false (also 1/0, yes/no, on/off)."""
    t = text.strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


@dataclass(frozen=True)
class NodeFlag:
    """The server flag of one NodeConfig field: its name, how its text parses, and help."""

    field: str
    flag: str
    kind: str  # "int" (>= 1), "int0" (>= 0), "duration" (seconds), "bool"
    help: str


# etcd's flag name where etcd has the same setting (--snapshot-count, --quota-backend-bytes,
# --max-request-bytes, --pre-vote, and 3.6's --snapshot-catchup-entries and
# --watch-progress-notify-interval); ours otherwise. Timing stays tick-based, as NodeConfig
# is: etcd's --heartbeat-interval=H (ms) --election-timeout=E (ms) is ours
# --tick-interval=Hms --heartbeat-ticks=1 --election-ticks=E/H.
NODE_FLAGS: tuple[NodeFlag, ...] = (
    NodeFlag("tick_interval", "--tick-interval", "duration",
             "length of a Raft tick (etcd: --heartbeat-interval when --heartbeat-ticks is 1)"),
    NodeFlag("election_tick", "--election-ticks", "int", "ticks without a leader before an election"),
    NodeFlag("heartbeat_tick", "--heartbeat-ticks", "int", "ticks between a leader's heartbeats"),
    NodeFlag("pre_vote", "--pre-vote", "bool", "run a pre-vote before an election (etcd --pre-vote)"),
    NodeFlag("check_quorum", "--check-quorum", "bool", "a leader steps down when it loses its quorum"),
    NodeFlag("request_timeout", "--request-timeout", "duration",
             "a proposal not applied within this is answered timeout"),
    NodeFlag("snapshot_count", "--snapshot-count", "int", "applied entries between snapshots (etcd)"),
    NodeFlag("snapshot_catchup_entries", "--snapshot-catchup-entries", "int",
             "entries kept in the log after a snapshot (etcd 3.6)"),
    NodeFlag("quota_bytes", "--quota-backend-bytes", "int",
             "state-machine bytes before writes fail with no space (etcd)"),
    NodeFlag("max_request_bytes", "--max-request-bytes", "int",
             "largest proposal in bytes (etcd; client frames stay capped at the wire limit)"),
    NodeFlag("lease_check_interval", "--lease-check-interval", "duration",
             "how often the leader revokes expired leases"),
    NodeFlag("progress_notify_interval", "--watch-progress-notify-interval", "duration",
             "progress notifications on idle watches (etcd 3.6)"),
    NodeFlag("watch_buffer", "--watch-buffer", "int",
             "responses buffered per watch before it is closed as too slow"),
    NodeFlag("cluster_id", "--cluster-id", "int0", "the cluster id in response headers"),
    NodeFlag("max_size_per_msg", "--max-size-per-msg", "int",
             "bytes of log entries per append message, at least one entry (etcd raft MaxSizePerMsg)"),
    NodeFlag("max_inflight_msgs", "--max-inflight-msgs", "int",
             "append messages in flight to a follower before an ack (etcd raft MaxInflightMsgs)"),
)
_KIND_PARSERS: dict[str, Any] = {"int": _positive_int, "int0": _nonnegative_int,
                                 "duration": parse_duration, "bool": parse_bool}
# Flags kept for older command lines: flag -> (field, parser)
_ALIASES: dict[str, tuple[str, Any]] = {
    "--tick-ms": ("tick_interval", lambda t: parse_duration(f"{t}ms")),
    "--quota-bytes": ("quota_bytes", _positive_int),
}


def _flag_value(flag: NodeFlag, value: Any) -> str:
    if flag.kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"NodeConfig.{flag.field} must be a bool, got {value!r}")
        return "true" if value else "false"
    if flag.kind == "duration":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"NodeConfig.{flag.field} must be seconds, got {value!r}")
        return repr(float(value))  # repr round-trips a float exactly
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"NodeConfig.{flag.field} must be an integer, got {value!r}")
    return str(value)


def node_flags(values: Mapping[str, Any]) -> list[str]:
    """Server arguments that set the given NodeConfig fields (``RunConfig.node``, a cluster's
    ``options["node"]``); the inverse of what ``options_from_args`` reads. Raises ValueError
    naming a field the server has no flag for."""
    by_field = {f.field: f for f in NODE_FLAGS}
    out: list[str] = []
    for name, value in values.items():
        if name in ("id", "name"):
            raise ValueError(f"NodeConfig.{name} comes from --id/--name, not from the node values")
        flag = by_field.get(name)
        if flag is None:
            raise ValueError(f"the server has no flag for NodeConfig field {name!r} "
                             f"(known: {', '.join(by_field)})")
        out.append(f"{flag.flag}={_flag_value(flag, value)}")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kvcheck.reference.server",
        description="Run one member of the kvcheck reference store. Durations take 500ms, 2s, "
                    "1m or a bare number of seconds; an unset node setting keeps NodeConfig's "
                    "default.")
    p.add_argument("--id", type=int, required=True)
    p.add_argument("--name", default="")
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--listen-peer", required=True, help="HOST:PORT")
    p.add_argument("--listen-client", required=True, help="HOST:PORT")
    p.add_argument("--listen-metrics", default=None, help="HOST:PORT for Prometheus metrics")
    p.add_argument("--member", action="append", type=parse_member, default=[],
                   help="ID,NAME,PEER,CLIENT of an initial member (repeat for each)")
    p.add_argument("--join", action="store_true", help="join an existing cluster (added by member add)")
    p.add_argument("--listen-fd", action="append", type=parse_listen_fd, default=[], metavar="ROLE=FD",
                   help="listen on inherited socket FD (bound to that role's address) instead of "
                        "binding it: peer=FD, client=FD or metrics=FD (repeat for each)")
    node = p.add_argument_group("node settings (NodeConfig; an unset one keeps the default shown)")
    defaults = NodeConfig(id=1)
    metavars = {"int": "N", "int0": "N", "duration": "DURATION", "bool": "BOOL"}
    for f in NODE_FLAGS:
        extra: dict[str, Any] = {"nargs": "?", "const": True} if f.kind == "bool" else {}
        shown = getattr(defaults, f.field)
        shown = f"{shown}s" if f.kind == "duration" else str(shown).lower() if f.kind == "bool" else shown
        node.add_argument(f.flag, dest=f"node_{f.field}", type=_KIND_PARSERS[f.kind], default=None,
                          metavar=metavars[f.kind], help=f"{f.help} [{shown}]", **extra)
    by_field = {f.field: f.flag for f in NODE_FLAGS}
    for alias, (field_name, parser) in _ALIASES.items():
        node.add_argument(alias, dest=f"alias_{field_name}", type=parser, default=None, metavar="N",
                          help=f"older spelling of {by_field[field_name]}"
                               + (" in milliseconds" if alias == "--tick-ms" else ""))
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--ca", type=Path)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--bug", action="append", default=[], help="enable an injected bug switch")
    p.add_argument("--log-level", default="INFO")
    return p


def node_config_from_args(args: argparse.Namespace) -> NodeConfig:
    """The member's NodeConfig: NodeConfig's defaults, overridden by every flag given."""
    values: dict[str, Any] = {}
    for field_name, _ in _ALIASES.values():
        if getattr(args, f"alias_{field_name}") is not None:
            values[field_name] = getattr(args, f"alias_{field_name}")
    for f in NODE_FLAGS:
        value = getattr(args, f"node_{f.field}")
        if value is not None:
            if f.field in values:
                raise SystemExit(f"error: {f.flag} and its older spelling were both given")
            values[f.field] = value
    config = replace(NodeConfig(id=args.id, name=args.name or f"node{args.id}"), **values)
    if config.heartbeat_tick >= config.election_tick:
        raise SystemExit(f"error: --heartbeat-ticks ({config.heartbeat_tick}) must be below "
                         f"--election-ticks ({config.election_tick})")
    return config


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    tls = None
    if args.cert or args.key or args.ca:
        if not (args.cert and args.key and args.ca):
            raise SystemExit("TLS needs all of --cert, --key and --ca")
        tls = TLSFiles(args.cert, args.key, args.ca)
    return ServerOptions(node=node_config_from_args(args), data_dir=args.data_dir,
                         listen_peer=args.listen_peer, listen_client=args.listen_client,
                         members=args.member, listen_metrics=args.listen_metrics, join=args.join,
                         tls=tls, seed=args.seed, bugs=Bugs.from_names(args.bug).counting(BugCounter(
                             on_first=lambda name: log.warning("bug switch %s fired (first time)", name))),
                         listen_fds=dict(args.listen_fd))


async def _main(options: ServerOptions) -> None:
    async with trio.open_nursery() as nursery:
        async def stop_on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("signal %d: stopping", signum)
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(stop_on_signal)
        await serve(options)
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s member{args.id} %(levelname)s %(name)s: %(message)s")
    options = options_from_args(args)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    profile_to = os.environ.get("KVCHECK_SERVER_PROFILE")  # a developer aid: cProfile output path
    if profile_to:
        import cProfile
        import time

        profiler = cProfile.Profile(time.process_time)  # CPU time, not time spent waiting
        try:
            profiler.runcall(trio.run, _main, options)
        finally:
            profiler.dump_stats(f"{profile_to}.{args.id}")
    else:
        failed = False
        try:
            trio.run(_main, options)
        except* ListenError as group:
            for exc in _leaves(group):
                log.error("%s", exc)
            failed = True
        if failed:
            return LISTEN_FAILED_EXIT
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


if __name__ == "__main__":
    sys.exit(main())
