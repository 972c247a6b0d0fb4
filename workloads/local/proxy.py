"""A fault-injecting TCP proxy for the peer links of the local target's server processes.

Every member advertises its proxy's address as its peer address (a port the proxy's
listener got from the kernel: ``open_listener``); the member itself listens on a private
port behind it (the listeners and connections are ``workloads.peerproxy.PeerProxy``'s,
shared with the etcd target). A peer connection opens with a ``{"hello": sender id}`` frame
(reference/server.py), so the proxy knows the directed link (src, dst) of every connection
and forwards whole frames (4-byte big-endian length + payload, never re-encoded) subject to
the link's rules: a blocked link drops every frame (partitions of any shape, one-way
included), ``loss`` drops a frame with that probability, ``delay`` holds each frame for an
exponential time with that mean (frames stay in order on a connection, as TCP keeps them),
``duplicate`` sends a frame twice (Raft tolerates duplicate messages). Dropping whole frames
keeps both ends of the stream in sync. The proxy decodes only the hello frame; ``observers``
see every forwarded frame (the local target's nemesis decodes them to find the member that
just acknowledged an append).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

import msgpack
import trio

from kvcheck.workloads.peerproxy import Link, LinkRules, PeerProxy, open_listener

__all__ = ["FaultProxy", "LinkRules", "ProxyStats", "open_listener"]

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


@dataclass
class ProxyStats:
    forwarded: int = 0
    dropped_blocked: int = 0
    dropped_loss: int = 0
    duplicated: int = 0
    connections: int = 0


@dataclass(eq=False)
class FrameLink(Link):
    src: int = 0  # the sender its hello frame named


class FaultProxy(PeerProxy):
    """Proxies for every member's peer port, sharing one rule set."""

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng, ProxyStats())
        self.stats: ProxyStats
        # observers(src, dst, frame) of every frame forwarded (the nemesis's "acked" target)
        self.observers: list[Callable[[int, int, bytes], None]] = []

    async def _accept(self, dst: int, downstream: trio.SocketStream) -> Link | None:
        hello = await _read_frame(downstream)
        if hello is None:
            return None
        try:
            src = int(msgpack.unpackb(hello[HEADER.size:], raw=False)["hello"])
        except Exception:
            return None  # not a peer connection: drop it
        return FrameLink(dst, hello, src=src)

    async def _forward(self, source: trio.SocketStream, sink: trio.SocketStream, link: Link) -> bool:
        """One whole frame, subject to the rules of the link (src, dst)."""
        assert isinstance(link, FrameLink)
        frame = await _read_frame(source)
        if frame is None:
            return False
        r = self.rules
        src, dst = link.src, link.dst
        if (src, dst) in r.blocked:
            self.stats.dropped_blocked += 1
            return True
        if r.loss and self.rng.random() < r.loss:
            self.stats.dropped_loss += 1
            return True
        if r.delay:
            await trio.sleep(self.rng.expovariate(1.0 / r.delay))
        await sink.send_all(frame)
        self.stats.forwarded += 1
        for observe in list(self.observers):
            observe(src, dst, frame)
        if r.duplicate and self.rng.random() < r.duplicate:
            await sink.send_all(frame)
            self.stats.duplicated += 1
        return True

    async def _backward(self, source: trio.SocketStream, sink: trio.SocketStream, link: Link) -> bool:
        """Bytes from the member back to the sender (the peer protocol sends none; pass any)."""
        data = await source.receive_some(65536)
        if not data:
            return False
        await sink.send_all(data)
        return True


async def _read_frame(stream: trio.SocketStream) -> bytes | None:
    """One whole frame (header included), or None at a clean end of stream."""
    head = await _read_exactly(stream, HEADER.size, eof_ok=True)
    if head is None:
        return None
    (length,) = HEADER.unpack(head)
    if length > MAX_FRAME:
        raise ValueError(f"peer frame of {length} bytes")
    body = await _read_exactly(stream, length, eof_ok=False)
    assert body is not None
    return head + body


async def _read_exactly(stream: trio.SocketStream, n: int, *, eof_ok: bool) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.receive_some(n - len(buf))
        if not chunk:
            if eof_ok and not buf:
                return None
            raise ValueError("connection closed inside a frame")
        buf += chunk
    return bytes(buf)
