"""Final per-member reads: after the final heal and recovery, read every key the workload
touched from EVERY member, each member on its own, as Jepsen reads every node at the end.

Why: Raft's state machine safety says members that applied the same log prefix hold the
same state. A bug that lets members' logs or state machines diverge (a deposed leader's
entries accepted, a vote forgotten in a power loss, a key deleted outside the log) can stay
invisible to linearizable reads, which all go through the leader's ReadIndex and may never
touch the diverged member's copy of a key. Reading every member settles it.

How: once the final phase is over (no client writes are running any more), for each current
member in turn the runner waits until that member has applied at least the highest commit
index any running member knows (``MemberReadTarget.highest_commit``; the member "caught up"),
then reads each key the workload touched (``member_read_specs``) with a serializable read
served by that member alone (``MemberReadTarget.member_client``, or the workload's own
``member_client``: the watch-family workloads read through their store client and record
each key's ``kv`` and header ``revision``, as their workers' reads do). Each read is recorded like
any other op, f ``read``, with the member in its ``node`` field and ``member_read: true``;
its completion also carries ``applied`` (the member's applied index, asked before and after
the read and recorded only when both answers agree, so the read is known to reflect exactly
that log prefix), ``revision`` (the store revision the response reflects) and, with the
same guard, ``hash_kv`` / ``hash_revision``: the member's HashKV (etcd's maintenance call:
a hash of every stored key version) at its current revision, which differs between members
that applied different writes even when every key's latest value happens to agree.

A member that is down, removed or still catching up after ``timeout`` seconds is not read
so, and the run's info says why (``member_reads``); a member is never read early. Removed
means gone from the target's list or, where the target can tell (``removed_members``), from
the configuration its leader applied: a removal the nemesis asked for and gave up waiting on
may still commit later, and the removed member, sent nothing more by the leader, never
catches up nor answers (etcd stops such a member; it owes its clients nothing). A learner
(``learner_members``) answers serializable reads only, as etcd's: one still behind is given
``retry_for`` more seconds to catch up and then read as any member, never asked linearizable
reads it refuses by design. A current
member that is down or still behind is instead asked, for ``retry_for`` seconds (the run's
recovery bound; 0: not asked), with linearizable reads pinned to it, as a client connected
to that member keeps asking (``unanswered_reads``): each attempt is recorded (f ``read``,
``member_read: true``, ``linearizable: true``, no ``applied``), until one is answered. Raft
promises that every member that is up and can talk to a majority catches up, so once every
fault is healed a member that answers none of them for that long (it crashed on its own, or
rejects every append the leader sends) is unavailable to its clients:
``kvcheck.checker.members`` reports it (``member-unavailable``). Because no
write runs in this phase and each member has caught up with every commit index known before
it is read, these reads are also valid linearizable reads: the linearizability checker
checks them with the rest of the history, and ``kvcheck.checker.members`` compares members
that applied the same index with each other.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import trio

from kvcheck.checker.members import LINEARIZABLE_FIELD, MEMBER_READ_FIELD
from kvcheck.reference.client import BadResponse
from kvcheck.workloads.client import DefiniteFailure, Indeterminate, call_outcome
from kvcheck.workloads.recorder import Recorder

# Process ids of member reads: base + member * 1000 + n (a new process per read, so a read
# that times out (info, which retires its process) never blocks the next one).
MEMBER_READ_PROCESS_BASE = 200_000


@runtime_checkable
class MemberReadTarget(Protocol):
    """What a target offers for per-member reads (the simulation does; others skip them)."""

    @property
    def node_ids(self) -> list[int]: ...

    async def member_applied(self, member: int) -> int | None:
        """The member's applied index now (None: it is not running)."""
        ...

    async def highest_commit(self) -> int:
        """The highest commit index any running member knows."""
        ...

    def member_client(self, process: int, member: int) -> Any:
        """A register client whose reads are serializable and served by ``member`` only."""
        ...

    async def member_hash(self, member: int) -> tuple[int, int] | None:
        """(revision, HashKV at that revision) of ``member``'s store (etcd's maintenance
        HashKV: every stored key version up to the revision); None if it cannot answer."""
        ...


async def read_every_member(target: Any, workload: Any, recorder: Recorder, *, timeout: float,
                            client_timeout: float, retry_for: float = 0.0) -> dict[str, Any]:
    """Read every key of ``workload`` from every member of ``target``; returns
    ``{"members": {member: "read" | why not}, "reads": n}`` for the run's info."""
    specs = workload.member_read_specs() if hasattr(workload, "member_read_specs") else None
    if not specs:
        return {"skipped": f"workload {getattr(workload, 'name', '?')} has no per-member reads"}
    if not isinstance(target, MemberReadTarget):
        return {"skipped": "the target cannot read one member at a time"}
    out: dict[str, Any] = {}
    reads = 0
    for member in list(target.node_ids):
        why = await _wait_caught_up(target, member, timeout)
        if why is not None and why != NOT_A_MEMBER and retry_for > 0 and member in await _learners(target):
            # A learner serves serializable reads only (etcd): wait for it to catch up instead
            # of asking it linearizable reads it refuses by design.
            again = await _wait_caught_up(target, member, retry_for)
            why = None if again is None else f"{why}; a learner (serializable reads only): {again}"
        if why is not None:
            out[str(member)] = why
            if why != NOT_A_MEMBER and retry_for > 0 and hasattr(target, "member_linearizable_client") \
                    and "a learner" not in why:
                got = await unanswered_reads(target, workload, recorder, member, specs,
                                             retry_for=retry_for, client_timeout=client_timeout)
                out[str(member)] += f"; linearizable reads: {got}"
            continue
        for n, spec in enumerate(specs):
            process = MEMBER_READ_PROCESS_BASE + member * 1000 + n
            await _read_one(target, workload, recorder, member, process, spec, client_timeout)
            reads += 1
        out[str(member)] = "read"
    return {"members": out, "reads": reads}


async def unanswered_reads(target: Any, workload: Any, recorder: Recorder, member: int,
                           specs: list[Any], *, retry_for: float, client_timeout: float) -> str:
    """Linearizable reads of the first key, pinned to ``member`` (down or behind), one after
    another for ``retry_for`` seconds or until one is answered ok; returns what came of them.
    Process ids continue after the member's ordinary reads (``len(specs)`` on)."""
    spec = specs[0]
    mark = {MEMBER_READ_FIELD: True, LINEARIZABLE_FIELD: True}
    deadline = trio.current_time() + retry_for
    n = 0
    while True:
        process = MEMBER_READ_PROCESS_BASE + member * 1000 + len(specs) + n
        n += 1
        inv = recorder.invoke(process, spec.f, spec.value, key=spec.key, node=member, extra=mark)
        client = _client(target, workload, process, member, linearizable=True)
        try:
            outcome, value, error, more = await _invoke(workload, client, spec, client_timeout)
        finally:
            with trio.CancelScope(shield=True):
                await client.close()
        if error is None:
            recorder.complete(inv, outcome, value, node=member, extra={**more, **mark})
        else:
            recorder.complete(inv, outcome, value, error=error, node=member, extra=mark)
        if outcome == "ok":
            return f"answered on attempt {n}"
        if await _removed(target, member):
            return f"none of {n} answered; then its removal applied (no longer a member)"
        if trio.current_time() >= deadline:
            return f"none of {n} answered in {retry_for:g}s"
        await trio.sleep(min(0.5, max(0.0, deadline - trio.current_time())))


def _client(target: Any, workload: Any, process: int, member: int, *, linearizable: bool = False) -> Any:
    """The client of one member read: the workload's own (``member_client``: the watch-family
    workloads read through their store client, recording each key's ``kv`` and revision),
    else the target's register client pinned to ``member``."""
    if hasattr(workload, "member_client"):
        return workload.member_client(target, process, member, linearizable=linearizable)
    if linearizable:
        return target.member_linearizable_client(process, member)
    return target.member_client(process, member)


async def _invoke(workload: Any, client: Any, spec: Any,
                  client_timeout: float) -> tuple[str, Any, str | None, dict[str, Any]]:
    """(outcome, value, error, extra) of one read: the workload's answer (error None; extra:
    the completion fields a workload's ``invoke`` adds, e.g. the watch workloads' ``kv`` and
    ``revision``), or info with ``timeout`` / the indeterminate error, or fail with the
    definite one, or info with a bad response (``call_outcome``)."""
    try:
        with trio.fail_after(client_timeout):
            result = await workload.invoke(client, spec)
    except trio.TooSlowError:
        return "info", spec.value, "timeout", {}
    except Indeterminate as exc:
        return "info", spec.value, exc.error, {}
    except DefiniteFailure as exc:
        return "fail", spec.value, exc.error, {}
    except BadResponse as exc:
        typ, error = call_outcome(exc)
        return typ, spec.value, error, {}
    more = dict(result[2]) if len(result) > 2 and result[2] else {}
    return result[0], result[1], None, more


NOT_A_MEMBER = "not read: no longer a member"


async def _learners(target: Any) -> set[int]:
    """The members the target's leader holds as learners (``learner_members``, where the
    target offers it)."""
    learners = getattr(target, "learner_members", None)
    return set(learners()) if learners is not None else set()


async def _removed(target: Any, member: int) -> bool:
    """Whether ``member`` is no longer one: gone from the target's list, or removed by a conf
    change the cluster's leader applied (``removed_members``, where the target offers it)."""
    if member not in target.node_ids:
        return True
    removed = getattr(target, "removed_members", None)
    return removed is not None and member in await removed()


async def _wait_caught_up(target: Any, member: int, timeout: float) -> str | None:
    """None once ``member`` has applied the highest commit index any running member knows;
    else why it was not read (after at most ``timeout`` seconds)."""
    applied: int | None = None
    top = 0
    with trio.move_on_after(timeout):
        while True:
            if await _removed(target, member):
                return NOT_A_MEMBER
            applied = await target.member_applied(member)
            top = await target.highest_commit()
            if applied is not None and applied >= top:
                return None
            await trio.sleep(0.05)
    if applied is None:
        return f"not read: not running within {timeout:g}s"
    return f"not read: still catching up after {timeout:g}s (applied {applied} < commit {top})"


async def _read_one(target: Any, workload: Any, recorder: Recorder, member: int, process: int,
                    spec: Any, client_timeout: float) -> None:
    mark = {MEMBER_READ_FIELD: True}
    inv = recorder.invoke(process, spec.f, spec.value, key=spec.key, node=member, extra=mark)
    client = _client(target, workload, process, member)
    try:
        before = await target.member_applied(member)
        outcome, value, error, more = await _invoke(workload, client, spec, client_timeout)
        if error is not None:
            recorder.complete(inv, outcome, value, error=error, node=member, extra=mark)
            return
        hashed = await target.member_hash(member)
        after = await target.member_applied(member)
        extra: dict[str, Any] = {**more, **mark}
        if before is not None and before == after:
            extra["applied"] = before
            if hashed is not None:
                extra["hash_revision"], extra["hash_kv"] = hashed
        revision = getattr(client, "revision", None)
        if revision:
            extra["revision"] = revision
        recorder.complete(inv, outcome, value, node=member, extra=extra)
    finally:
        with trio.CancelScope(shield=True):
            await client.close()
