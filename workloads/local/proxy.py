"""A fault-injecting TCP proxy for the peer links of a real-process cluster.

Every member advertises its proxy's address as its peer address (a port the proxy's
listener got from the kernel: ``open_listener``); the member itself listens on a private
port behind it. A peer connection opens with a ``{"hello": sender id}`` frame
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
from dataclasses import dataclass, field

import msgpack
import trio

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


@dataclass
class LinkRules:
    blocked: set[tuple[int, int]] = field(default_factory=set)
    loss: float = 0.0
    delay: float = 0.0
    duplicate: float = 0.0


@dataclass
class ProxyStats:
    forwarded: int = 0
    dropped_blocked: int = 0
    dropped_loss: int = 0
    duplicated: int = 0
    connections: int = 0


async def open_listener() -> tuple[trio.SocketListener, str]:
    """A proxy listener on 127.0.0.1, on a port the kernel chooses (port 0), and its address
    '127.0.0.1:PORT': a member's advertised peer address. Connections wait in its backlog
    until ``FaultProxy.serve`` serves it."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    return listener, f"127.0.0.1:{port}"


class FaultProxy:
    """Proxies for every member's peer port, sharing one rule set."""

    def __init__(self, rng: random.Random) -> None:
        self.rules = LinkRules()
        self.rng = rng
        self.stats = ProxyStats()
        self._scopes: dict[int, trio.CancelScope] = {}
        # observers(src, dst, frame) of every frame forwarded (the nemesis's "acked" target)
        self.observers: list[Callable[[int, int, bytes], None]] = []

    async def serve(self, dst: int, listener: trio.SocketListener, upstream: str,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve connections to member ``dst`` (whose real peer listener is ``upstream``)
        arriving at ``listener`` (from ``open_listener``) until cancelled."""
        scope = trio.CancelScope()
        self._scopes[dst] = scope
        with scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, lambda s: self._connection(dst, upstream, s), [listener])
                task_status.started()

    def stop(self, dst: int) -> None:
        scope = self._scopes.pop(dst, None)
        if scope is not None:
            scope.cancel()

    async def _connection(self, dst: int, upstream: str, downstream: trio.SocketStream) -> None:
        self.stats.connections += 1
        host, port = upstream.rsplit(":", 1)
        try:
            async with downstream:
                hello = await _read_frame(downstream)
                if hello is None:
                    return
                try:
                    src = int(msgpack.unpackb(hello[HEADER.size:], raw=False)["hello"])
                except Exception:
                    return  # not a peer connection: drop it
                up = await trio.open_tcp_stream(host, int(port))
                async with up:
                    await up.send_all(hello)
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, downstream, up, src, dst, nursery.cancel_scope)
                        nursery.start_soon(_drain, up, downstream, nursery.cancel_scope)
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            return

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, src: int, dst: int,
                    scope: trio.CancelScope) -> None:
        try:
            while True:
                frame = await _read_frame(source)
                if frame is None:
                    break
                r = self.rules
                if (src, dst) in r.blocked:
                    self.stats.dropped_blocked += 1
                    continue
                if r.loss and self.rng.random() < r.loss:
                    self.stats.dropped_loss += 1
                    continue
                if r.delay:
                    await trio.sleep(self.rng.expovariate(1.0 / r.delay))
                await sink.send_all(frame)
                self.stats.forwarded += 1
                for observe in list(self.observers):
                    observe(src, dst, frame)
                if r.duplicate and self.rng.random() < r.duplicate:
                    await sink.send_all(frame)
                    self.stats.duplicated += 1
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
            pass
        finally:
            scope.cancel()


async def _drain(source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope) -> None:
    """Bytes from the member back to the sender (the peer protocol sends none; pass any)."""
    try:
        while True:
            data = await source.receive_some(65536)
            if not data:
                break
            await sink.send_all(data)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        scope.cancel()


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
