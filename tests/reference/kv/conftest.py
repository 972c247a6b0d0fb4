"""A small driver for KVStateMachine tests: numbers log entries and sessions for the test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from kvcheck.reference.kv import KVStateMachine
from kvcheck.reference.kv.requests import (
    Envelope,
    KeyValue,
    KVError,
    LogRequest,
    Message,
    RangeRequest,
    encode_entry,
)


class KV:
    """Applies requests as log entries (index 1, 2, ...) under client 7 with rising seq."""

    def __init__(self, **options: Any) -> None:
        self.m = KVStateMachine(**options)
        self.index = 0
        self.seq = 0

    def apply(self, req: LogRequest, now: float | None = None, client_id: int = 7,
              seq: int | None = None) -> Any:
        """Apply; returns the response (raises the KVError outcome)."""
        self.index += 1
        if seq is None:
            self.seq += 1
            seq = self.seq
        return self.m.apply(self.index, encode_entry(Envelope(client_id, seq, req)), now)

    def outcome(self, req: LogRequest, **kw: Any) -> Message | KVError:
        try:
            return self.apply(req, **kw)  # type: ignore[no-any-return]
        except KVError as err:
            return err

    def get(self, key: bytes, revision: int = 0) -> KeyValue | None:
        kvs = self.m.range(RangeRequest(key, revision=revision)).kvs
        return kvs[0] if kvs else None

    def keys(self, key: bytes = b"\0", end: bytes = b"\0", revision: int = 0) -> list[bytes]:
        return [kv.key for kv in self.m.range(RangeRequest(key, end, revision=revision)).kvs]

    @property
    def rev(self) -> int:
        return self.m.revision


@pytest.fixture
def kv() -> KV:
    return KV()


@pytest.fixture
def make_kv() -> Callable[..., KV]:
    return KV
