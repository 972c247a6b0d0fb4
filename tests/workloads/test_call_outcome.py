"""How the workloads' background tasks record what a store call raised (``call_outcome``), and
that an answer of another kind is recorded as a bad response, not a crash of the run."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from kvcheck.reference.client import BadResponse, Failed, Indeterminate
from kvcheck.reference.wire import ErrorCode
from kvcheck.workloads.client import call_outcome
from kvcheck.workloads.lease import LeaseWorkload, _Lessor
from kvcheck.workloads.recorder import Recorder


def test_each_outcome_class_has_its_completion() -> None:
    assert call_outcome(Failed(ErrorCode.LEASE_NOT_FOUND, "requested lease not found")) == ("fail", "lease_not_found")
    assert call_outcome(Indeterminate(ErrorCode.TIMEOUT, "x")) == ("info", "timeout")
    assert call_outcome(Indeterminate(ErrorCode.TIMEOUT, "x"), changes=False) == ("fail", "timeout")
    assert call_outcome(trio.TooSlowError()) == ("info", "timeout")
    typ, error = call_outcome(BadResponse("LeaseRevokeRequest answered with WireError"), changes=False)
    assert typ == "info" and error.startswith("bad-response: LeaseRevokeRequest answered with WireError")
    with pytest.raises(TypeError):
        call_outcome(ValueError("a harness bug"))


class _Env:
    """The little of the runner's Background a lessor's ``call`` uses."""

    def __init__(self) -> None:
        self.recorder = Recorder(lambda: 0.0)
        self.client_timeout = 1.0
        self.rng = None
        self.processes = iter(range(10, 100))
        self.target = self

    def new_process(self) -> int:
        return next(self.processes)

    def kv_client(self, process: int) -> Any:
        return self

    async def aclose(self) -> None:
        pass


def test_a_lessor_records_a_bad_response_as_info_and_goes_on_as_a_new_process() -> None:
    """A revoke answered with the apply's error object instead of a response (a store that
    hands the error to the waiter as if it were the response) ended the run with
    BadResponse before; it is an ``info`` completion with a ``bad-response`` error now, which
    the availability checker reports."""
    env = _Env()
    lessor = _Lessor(LeaseWorkload(), env, 0)
    first = lessor.process

    async def answered_with_an_error_object(client: Any) -> Any:
        raise BadResponse("LeaseRevokeRequest answered with WireError, not LeaseRevokeResponse")

    assert trio.run(lessor.call, "lease-revoke", 7, answered_with_an_error_object) == ("info", None)
    done = env.recorder.ops[-1]
    assert done.type == "info" and done.f == "lease-revoke" and str(done.error).startswith("bad-response")
    assert lessor.process != first
