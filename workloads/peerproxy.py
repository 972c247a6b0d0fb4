"""What the real-process targets' peer proxies share (``workloads/local/proxy.py`` for the
reference store, ``workloads/etcd/proxy.py`` for etcd): one listener per member, advertised
as that member's peer address while the member listens on a private port behind it, and
one ``LinkRules`` for all of them (blocked directed links, loss, delay, duplication).

``PeerProxy`` serves each member's listener (``serve``), stops one (``stop``) and runs every
connection the same way: it reads what opens the connection (``_accept``: the store's hello
frame, or etcd's HTTP request head) to learn the connection's ``Link`` (who dials whom),
dials the member, passes the opening bytes on, and then relays both directions
(``_forward``: dialer to member, ``_backward``: member to dialer) until either ends or the
link's scope is cancelled (etcd's partitions cut live connections). How a blocked link and
the packet faults act on the bytes is each protocol's own: the subclasses' relays.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import trio

# a connection that breaks (either end gone, a malformed frame) just ends
BROKEN = (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ValueError)


@dataclass
class LinkRules:
    blocked: set[tuple[int, int]] = field(default_factory=set)
    loss: float = 0.0
    delay: float = 0.0
    duplicate: float = 0.0


@dataclass(eq=False)  # hashed by identity: a live connection
class Link:
    """One proxied connection to member ``dst``: ``head``, the bytes that opened it (passed on
    to the member first); ``scope``, cancelled to cut it."""

    dst: int
    head: bytes = b""
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)


async def open_listener() -> tuple[trio.SocketListener, str]:
    """A proxy listener on 127.0.0.1, on a port the kernel chooses (port 0), and its address
    '127.0.0.1:PORT': a member's advertised peer address. Connections wait in its backlog
    until ``PeerProxy.serve`` serves it."""
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    return listener, f"127.0.0.1:{port}"


class PeerProxy:
    """Proxies for every member's peer port, sharing one rule set; ``stats`` is the
    subclass's counters (a dataclass with at least ``connections``)."""

    def __init__(self, rng: random.Random, stats: Any) -> None:
        self.rules = LinkRules()
        self.rng = rng
        self.stats = stats
        self._scopes: dict[int, trio.CancelScope] = {}
        self._live: set[Link] = set()

    def set_blocked(self, blocked: set[tuple[int, int]]) -> None:
        """New partition rules (directed links (src, dst) whose messages do not pass)."""
        self.rules.blocked = blocked

    async def serve(self, dst: int, listener: trio.SocketListener, upstream: str,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve connections to member ``dst`` (whose real peer listener is ``upstream``)
        arriving at ``listener`` (from ``open_listener``) until cancelled or ``stop``."""
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

    async def _accept(self, dst: int, downstream: trio.SocketStream) -> Link | None:
        """Read what opens a connection to ``dst``: its ``Link``, or None to drop it."""
        raise NotImplementedError

    async def _forward(self, source: trio.SocketStream, sink: trio.SocketStream, link: Link) -> bool:
        """Relay one unit from the dialer to the member; False at the end of the stream."""
        raise NotImplementedError

    async def _backward(self, source: trio.SocketStream, sink: trio.SocketStream, link: Link) -> bool:
        """Relay one unit from the member back to the dialer; False at the end of the stream."""
        raise NotImplementedError

    async def _connection(self, dst: int, upstream: str, downstream: trio.SocketStream) -> None:
        self.stats.connections += 1
        host, port = upstream.rsplit(":", 1)
        link: Link | None = None
        try:
            async with downstream:
                link = await self._accept(dst, downstream)
                if link is None:
                    return
                self._live.add(link)
                with link.scope:
                    up = await trio.open_tcp_stream(host, int(port))
                    async with up:
                        await up.send_all(link.head)
                        async with trio.open_nursery() as nursery:
                            done = nursery.cancel_scope
                            nursery.start_soon(_relay, partial(self._forward, downstream, up, link), done)
                            nursery.start_soon(_relay, partial(self._backward, up, downstream, link), done)
        except BROKEN:
            return
        finally:
            if link is not None:
                self._live.discard(link)


async def _relay(step: Callable[[], Awaitable[bool]], done: trio.CancelScope) -> None:
    """``step`` until it reports the end of its stream or the connection breaks; then the
    whole connection ends (``done``: both directions)."""
    try:
        while await step():
            pass
    except BROKEN:
        pass
    finally:
        done.cancel()
