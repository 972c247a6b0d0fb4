"""Length-prefixed msgpack frames and the typed errors the store sends over them.

Why: the peer and client ports of the reference store both speak one tiny framing, so the
server, the client and the tests share one reader and one writer. How: a frame is a 4-byte
big-endian payload length followed by that many bytes of msgpack. A frame longer than
``MAX_FRAME`` (1.5 MiB, etcd's default request limit) is read and discarded, and the reader
raises ``FrameTooLarge`` so the server can answer with a ``request_too_large`` error and keep
the connection; a length beyond ``MAX_SKIP`` or a payload that is not msgpack raises
``BadFrame`` and the server closes that connection (the node itself stays up).

Client requests are maps ``{"id": request id, "op": name, "body": {...}, "client": client
id, "seq": sequence number}``; responses are ``{"id": ..., "ok": body}`` or
``{"id": ..., "err": {"code": ..., "message": ..., "leader": id, "endpoint": addr}}``.
``WireError`` is the one exception type for every error a request can end with; its ``code``
is one of ``ErrorCode`` and tells the client whether the outcome is definite.
"""

from __future__ import annotations

import os
import struct
from enum import StrEnum
from typing import Any

import msgpack
import trio

MAX_FRAME = 3 * 1024 * 1024 // 2  # 1.5 MiB of payload
MAX_SKIP = 64 * 1024 * 1024  # an oversize frame up to this long is skipped, beyond it: BadFrame
_HEADER = struct.Struct(">I")


class ErrorCode(StrEnum):
    """Stable wire codes. ``TIMEOUT`` and ``UNAVAILABLE`` after sending leave a write's outcome
    unknown; every other code means the request certainly did not take effect."""

    NOT_LEADER = "not_leader"  # with a leader hint when this member knows one
    TIMEOUT = "timeout"  # the request may or may not have been applied
    UNAVAILABLE = "unavailable"  # no leader / member stopping / connection lost
    COMPACTED = "compacted"
    FUTURE_REV = "future_rev"
    LEASE_NOT_FOUND = "lease_not_found"
    LEASE_EXIST = "lease_exist"
    NO_SPACE = "no_space"
    REQUEST_TOO_LARGE = "request_too_large"
    DUPLICATE_KEY = "duplicate_key"
    TOO_MANY_OPS = "too_many_ops"
    BAD_REQUEST = "bad_request"
    MEMBER_NOT_FOUND = "member_not_found"
    MEMBER_EXIST = "member_exist"
    NOT_LEARNER = "not_learner"
    LEARNER_NOT_READY = "learner_not_ready"
    TOO_MANY_LEARNERS = "too_many_learners"
    # the state machine's own codes (reference/kv/requests.py), passed through unchanged
    EMPTY_KEY = "empty_key"
    KEY_NOT_FOUND = "key_not_found"
    VALUE_PROVIDED = "value_provided"
    LEASE_PROVIDED = "lease_provided"
    LEASE_TTL_TOO_LARGE = "lease_ttl_too_large"
    WATCH_ID_EXISTS = "watch_id_exists"
    CORRUPT = "corrupt"
    INTERNAL = "internal"
    STALE_SEQUENCE = "stale_sequence"  # a retry whose stored outcome was dropped: unknown
    UNKNOWN = "unknown"  # a code this client version does not know

    @property
    def indeterminate(self) -> bool:
        """True when a write that ended with this code may have taken effect (or still may)."""
        return self in (ErrorCode.TIMEOUT, ErrorCode.UNAVAILABLE, ErrorCode.STALE_SEQUENCE,
                        ErrorCode.UNKNOWN)


class WireError(Exception):
    """An error a request ended with, as it travels on the wire."""

    def __init__(
        self,
        code: ErrorCode,
        message: str = "",
        *,
        leader: int | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(f"{code.value}: {message}" if message else code.value)
        self.code = code
        self.message = message
        self.leader = leader
        self.endpoint = endpoint

    @property
    def indeterminate(self) -> bool:
        return self.code.indeterminate

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.leader is not None:
            out["leader"] = self.leader
        if self.endpoint is not None:
            out["endpoint"] = self.endpoint
        return out

    @classmethod
    def from_wire(cls, data: Any) -> WireError:
        if not isinstance(data, dict) or not isinstance(data.get("code"), str):
            raise BadFrame(f"error body is not a map with a string code: {data!r:.200}")
        try:
            code = ErrorCode(data["code"])
        except ValueError:
            code = ErrorCode.UNKNOWN
        leader = data.get("leader")
        endpoint = data.get("endpoint")
        return cls(
            code,
            str(data.get("message", "")),
            leader=leader if isinstance(leader, int) else None,
            endpoint=endpoint if isinstance(endpoint, str) else None,
        )

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, for trio/thread hand-offs
        return (_rebuild_error, (self.code.value, self.message, self.leader, self.endpoint))


def _rebuild_error(code: str, message: str, leader: int | None, endpoint: str | None) -> WireError:
    return WireError(ErrorCode(code), message, leader=leader, endpoint=endpoint)


class BadFrame(Exception):
    """A frame that cannot be decoded: the connection that sent it is closed."""


class FrameTooLarge(Exception):
    """A frame over MAX_FRAME was read and discarded; the connection is still in sync."""

    def __init__(self, length: int) -> None:
        super().__init__(f"frame of {length} bytes exceeds the limit of {MAX_FRAME} bytes")
        self.length = length


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise BadFrame(f"payload is not msgpack: {exc}") from exc


def encode_frame(obj: Any) -> bytes:
    payload = pack(obj)
    if len(payload) > MAX_FRAME:
        raise WireError(
            ErrorCode.REQUEST_TOO_LARGE,
            f"frame of {len(payload)} bytes exceeds the limit of {MAX_FRAME} bytes",
        )
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Reads frames from a trio stream, buffering partial reads."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_frame: int = MAX_FRAME) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._max = max_frame
        # A plain TCP stream is read straight from its socket (see ``_receive``).
        self._sock = stream.socket if type(stream) is trio.SocketStream else None
        self._more = False  # the last direct read filled its buffer: more may be waiting

    async def _receive(self, max_bytes: int) -> bytes | bytearray:
        """The next chunk of the stream (b"" at its end).

        On a plain TCP socket this waits for readability first and then reads directly, unless
        the previous read filled its buffer: ``receive_some`` would try a read that usually
        fails (the peer is waiting for our answer) and yield to the scheduler around it, two
        costly steps per frame. Closing the stream from another task still wakes the wait
        with ClosedResourceError, and a broken connection raises OSError, as before.
        """
        sock = self._sock
        if sock is None:
            return await self._stream.receive_some(max_bytes)
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("the stream was closed")
        if self._more:
            try:
                chunk = os.read(fd, max_bytes)
            except BlockingIOError:
                pass
            else:
                self._more = len(chunk) == max_bytes
                await trio.lowlevel.checkpoint()  # never read a fast sender without yielding
                return chunk
        while True:
            await trio.lowlevel.wait_readable(sock)
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("the stream was closed")
            try:
                chunk = os.read(fd, max_bytes)
            except BlockingIOError:  # a spurious wakeup
                continue
            self._more = len(chunk) == max_bytes
            return chunk

    async def _fill(self, n: int) -> bool:
        """Ensure at least n buffered bytes; False on a clean EOF before any byte."""
        while len(self._buf) < n:
            chunk = await self._receive(max(65536, n - len(self._buf)))
            if not chunk:
                if not self._buf:
                    return False
                raise BadFrame(f"connection closed inside a frame ({len(self._buf)} of {n} bytes)")
            self._buf += chunk
        return True

    async def read(self) -> Any | None:
        """The next decoded frame, or None at a clean end of stream."""
        if not await self._fill(_HEADER.size):
            return None
        (length,) = _HEADER.unpack_from(self._buf)
        if length > self._max:
            if length > MAX_SKIP:
                raise BadFrame(f"frame length {length} is beyond any valid frame")
            del self._buf[: _HEADER.size]
            remaining = length
            while remaining:
                if not self._buf:
                    chunk = await self._receive(min(remaining, 1 << 20))
                    if not chunk:
                        raise BadFrame("connection closed inside an oversize frame")
                    self._buf += chunk
                take = min(remaining, len(self._buf))
                del self._buf[:take]
                remaining -= take
            raise FrameTooLarge(length)
        if not await self._fill(_HEADER.size + length):
            raise BadFrame("connection closed inside a frame")
        payload = bytes(self._buf[_HEADER.size : _HEADER.size + length])
        del self._buf[: _HEADER.size + length]
        return unpack(payload)


def send_now(stream: trio.abc.SendStream, data: bytes) -> int:
    """Write what the kernel takes of ``data`` right now, without a trio checkpoint.

    ``trio.SocketStream.send_all`` yields to the scheduler around every send even when the
    socket buffer has room, which is most of the cost of a small reply. On a plain TCP stream
    this writes straight to the (non-blocking) socket and returns how many bytes went out; the
    caller awaits ``send_all`` for the rest. It returns 0 for any other stream (TLS) or a full
    buffer. The caller must be the only writer of ``stream`` at that moment (no ``send_all``
    of it in progress). A broken connection raises OSError, as ``send_all`` would.
    """
    if type(stream) is not trio.SocketStream:
        return 0
    try:
        return os.write(stream.socket.fileno(), data)
    except BlockingIOError:
        return 0


async def send_frame_bytes(stream: trio.abc.SendStream, data: bytes) -> None:
    """``stream.send_all(data)``, writing directly first when the socket has room (see
    ``send_now``); only the part the kernel did not take is sent through trio."""
    sent = send_now(stream, data)
    if sent < len(data):
        await stream.send_all(memoryview(data)[sent:] if sent else data)


def request_frame(
    request_id: int, op: str, body: dict[str, Any], client: int = 0, seq: int = 0
) -> dict[str, Any]:
    return {"id": request_id, "op": op, "body": body, "client": client, "seq": seq}


def ok_frame(request_id: Any, body: Any) -> dict[str, Any]:
    return {"id": request_id, "ok": body}


def error_frame(request_id: Any, err: WireError) -> dict[str, Any]:
    return {"id": request_id, "err": err.to_wire()}
