"""What a workload needs from a store's client: linearizable read, write, and compare-and-set
of one key, with the outcome classes a history distinguishes.

``RegisterClient`` is deliberately small so every target can implement it: the simulation's
in-process client, the reference store's TCP client, and later real etcd. A call returns its
result, or raises ``DefiniteFailure`` (the operation certainly did not take effect: recorded
as ``fail``) or ``Indeterminate`` (it may or may not have taken effect, e.g. a timeout after
the request was sent: recorded as ``info`` and the process is retired). Any other exception
is a bug in the harness and ends the run.

The workloads' background tasks (lessors, lockers, compactors, listers) call the store's
``KVClient`` directly; ``call_outcome`` is their one rule for turning what such a call raised
into a completion, the runner's rule: ``Failed`` is ``fail``, ``Indeterminate`` and a client
timeout are ``info``, and an answer the client could not take as one (``BadResponse``: e.g. a
write answered with an error object or another request's response) is ``info`` with a
``bad-response`` error, an anomaly of the store the availability checker reports. It never
ends the run: the store's answers are what the history records and the checkers judge.

Values are ints (unique per write); keys are strings. The adapters encode them as bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import trio

from kvcheck.checker.availability import BAD_RESPONSE
from kvcheck.reference.client import BadResponse, Failed
from kvcheck.reference.client import Indeterminate as ClientIndeterminate


def home_member(process: int, members: Sequence[int]) -> int:
    """The member a client process is bound to, as Jepsen binds each client to a node: its
    reads go there first, its writes follow the leader. One rule for every target."""
    return members[(process + 1) % len(members)]


class ClientError(Exception):
    """Base of the outcome classes; ``error`` is a short code for the history."""

    def __init__(self, error: str, detail: str = "") -> None:
        super().__init__(f"{error}: {detail}" if detail else error)
        self.error = error
        self.detail = detail


class DefiniteFailure(ClientError):
    """The operation did not take effect (e.g. not leader, rejected before proposing)."""


class Indeterminate(ClientError):
    """The operation may or may not have taken effect (timeout, connection lost)."""


# what a store call may raise that the history records (anything else is a harness bug)
CALL_ERRORS: tuple[type[Exception], ...] = (Failed, ClientIndeterminate, BadResponse, trio.TooSlowError)


def call_outcome(exc: Exception, *, changes: bool = True) -> tuple[str, str]:
    """(completion type, error) of a store call that raised ``exc`` (one of ``CALL_ERRORS``):
    ``fail`` for a definite failure, ``info`` for an unknown outcome (an indeterminate error, a
    client timeout, a bad response). ``changes=False``: the call changes nothing (a read), so
    an indeterminate one or a timeout is a ``fail`` -- it did not happen."""
    if isinstance(exc, Failed):
        return "fail", exc.code.value
    if isinstance(exc, BadResponse):  # as the runner records it, read or write
        return "info", f"{BAD_RESPONSE}: {exc}"
    if isinstance(exc, ClientIndeterminate):
        error = exc.code.value
    elif isinstance(exc, trio.TooSlowError):
        error = "timeout"
    else:
        raise TypeError(f"not a store call's outcome: {exc!r}") from exc
    return ("info" if changes else "fail"), error


class RegisterClient(Protocol):
    """``served_by`` (optional attribute): the member that answered the last call, when the
    client knows it; the runner records it as the completion's ``node``."""

    async def read(self, key: str) -> int | str | None:
        """The key's value by a linearizable read (None when absent)."""
        ...

    async def write(self, key: str, value: int) -> None: ...

    async def cas(self, key: str, old: int, new: int) -> bool:
        """Set ``key`` to ``new`` iff its value is ``old`` (one transaction); False when the
        comparison failed (nothing was written)."""
        ...

    async def close(self) -> None: ...


def encode_value(value: int) -> bytes:
    return str(value).encode("ascii")


def decode_value(raw: bytes | None) -> int | str | None:
    """An int for a value a workload wrote; anything else comes back as its repr, so the
    checker sees a value no write produced and reports it instead of the harness hiding it."""
    if raw is None:
        return None
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return repr(raw)
