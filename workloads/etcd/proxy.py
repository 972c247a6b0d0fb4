"""A fault-injecting TCP proxy for the peer links of a real etcd cluster.

The design is the local target's (``workloads/local/proxy.py``; both are
``workloads.peerproxy.PeerProxy``: one listener per member, advertised as that member's peer
URL while the member listens on a private port behind it; one shared ``LinkRules``), adapted
to etcd's peer protocol: HTTP/1.1 over TCP, not frames.
etcd's rafthttp opens a connection per purpose, and every request names its sender in the
``X-Server-From`` header (the member id in hex). So the proxy reads the request head of each
new connection and knows the directed flow of raft messages on it:
- ``GET /raft/stream/...``: a long-lived stream whose *response* carries messages from the
  listening member to the dialer (dst -> src);
- ``POST /raft``, ``/raft/snapshot``, ``GET /raft/probing`` and the rest: the dialer's
  messages to the listening member (src -> dst).
A connection whose flow is blocked is cut at once (when the partition starts) or held
without forwarding (when it is opened during the partition) until the partition heals; etcd
dials again. Partitions of any shape, one-way included, act at that granularity.

A byte stream cannot lose or repeat a message without breaking the protocol, so the packet
faults act as they look above TCP: ``loss`` holds a chunk for a retransmission timeout
(200 ms, doubling while it keeps being lost), ``delay`` holds each chunk for an exponential
time of that mean (in order), and ``duplicate`` has no effect on what a member receives
(TCP discards duplicated segments); the stats count the chunks each fault touched.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import trio

from kvcheck.workloads.peerproxy import Link, PeerProxy

MAX_HEAD = 64 * 1024
RTO = 0.2


@dataclass
class EtcdProxyStats:
    forwarded: int = 0  # chunks
    lost_retransmitted: int = 0
    delayed: int = 0
    duplicate_invisible: int = 0
    connections: int = 0
    cut: int = 0
    held: int = 0


@dataclass(eq=False)  # hashed by identity: a live connection
class _Conn(Link):
    """One proxied connection: its sender (hex member id) and whether it is a stream (whose
    messages flow from the listening member to the dialer). The flow is resolved against the
    member map when asked: streams open before the target has learned the member ids."""

    sender: str = ""
    stream: bool = False


class EtcdPeerProxy(PeerProxy):
    """Proxies for every member's peer port, sharing one rule set."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng, EtcdProxyStats())
        self.stats: EtcdProxyStats
        self.members: dict[str, int] = {}  # etcd member id in hex (X-Server-From) -> node

    def flow(self, conn: _Conn) -> tuple[int, int] | None:
        src = self.members.get(conn.sender)
        if src is None:
            return None
        return (conn.dst, src) if conn.stream else (src, conn.dst)

    def blocked(self, conn: _Conn) -> bool:
        flow = self.flow(conn)
        return flow is not None and flow in self.rules.blocked

    def set_blocked(self, blocked: set[tuple[int, int]]) -> None:
        """New partition rules; connections whose flow is now blocked are cut."""
        super().set_blocked(blocked)
        for conn in list(self._live):
            if isinstance(conn, _Conn) and self.blocked(conn):
                self.stats.cut += 1
                conn.scope.cancel()

    async def _accept(self, dst: int, downstream: trio.SocketStream) -> Link | None:
        head = b""
        with trio.move_on_after(10):  # a dialer that sends no request head is dropped
            head = await _read_head(downstream)
        if not head:
            return None
        conn = _Conn(dst, head)
        conn.sender, conn.stream = _parse_head(head)
        if self.blocked(conn):
            self.stats.held += 1
            while self.blocked(conn):
                await trio.sleep(0.05)
            return None  # healed: close, the member dials again
        return conn

    async def _forward(self, source: trio.SocketStream, sink: trio.SocketStream, link: Link) -> bool:
        return await self._chunk(source, sink)

    async def _backward(self, source: trio.SocketStream, sink: trio.SocketStream, link: Link) -> bool:
        return await self._chunk(source, sink)

    async def _chunk(self, source: trio.SocketStream, sink: trio.SocketStream) -> bool:
        """Whatever bytes have arrived, under the packet faults as TCP shows them."""
        data = await source.receive_some(65536)
        if not data:
            return False
        r = self.rules
        if r.loss:
            rto = RTO
            while self.rng.random() < r.loss:
                self.stats.lost_retransmitted += 1
                await trio.sleep(rto)
                rto = min(rto * 2, 3.0)
        if r.delay:
            self.stats.delayed += 1
            await trio.sleep(self.rng.expovariate(1.0 / r.delay))
        if r.duplicate and self.rng.random() < r.duplicate:
            self.stats.duplicate_invisible += 1
        await sink.send_all(data)
        self.stats.forwarded += 1
        return True


def _parse_head(head: bytes) -> tuple[str, bool]:
    """(the X-Server-From member id, lowercase hex; whether the request opens a stream)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    path = parts[1].decode("latin-1") if len(parts) > 1 else ""
    sender = ""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"x-server-from":
            sender = value.strip().decode("latin-1").lower()
    return sender, path.startswith("/raft/stream")


async def _read_head(stream: trio.SocketStream) -> bytes:
    """The bytes up to and including the first request head's blank line (b"" at EOF).
    Anything the dialer sent after the head in the same read is kept: it is returned too."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD:
            raise ValueError("peer request head too large")
        data = await stream.receive_some(65536)
        if not data:
            return b""
        buf += data
    return bytes(buf)
