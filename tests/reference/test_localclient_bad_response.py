"""An in-process client refuses an answer of another kind (a TCP client's decoder would)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from kvcheck.reference.client import BadResponse
from kvcheck.reference.kv import requests as kvr
from kvcheck.reference.localclient import LogRequests


class _Answers(LogRequests):
    def __init__(self, answer: Any) -> None:
        self.answer = answer

    async def _write(self, request: kvr.Message) -> Any:
        return self.answer


def test_a_write_answered_with_nothing_is_a_bad_response() -> None:
    with pytest.raises(BadResponse, match="PutRequest answered with NoneType, not PutResponse"):
        trio.run(_Answers(None).put, b"k", b"v")
    with pytest.raises(BadResponse, match="TxnRequest answered with PutResponse"):
        trio.run(_Answers(kvr.PutResponse()).cas, b"k", None, b"v")
    ok = kvr.PutResponse()
    assert trio.run(_Answers(ok).put, b"k", b"v") is ok


def test_a_compaction_answered_with_an_error_object_is_a_bad_response() -> None:
    """A compaction goes through the log as a write does: an answer of another kind (here the
    apply's error handed back as if it were the response) is refused, not used as one."""
    from kvcheck.reference.wire import ErrorCode, WireError

    err = WireError(ErrorCode.COMPACTED, "mvcc: required revision has been compacted")
    with pytest.raises(BadResponse, match="CompactionRequest answered with WireError"):
        trio.run(_Answers(err).compact, 3)
    ok = kvr.CompactionResponse()
    assert trio.run(_Answers(ok).compact, 3) is ok
