"""etcd's periodic corruption check, run by the harness while the test goes on.

Why: the final per-member reads (``workloads.memberreads``) compare members once the run is
over. Members that diverge mid-run and are made equal again before the end (a compaction that
removes the differing versions, a member later replaced by a leader's snapshot) pass them.
etcd itself checks for this while it serves (``--experimental-corrupt-check-time``): every
interval the leader asks each member for HashKV at the leader's revision and raises the
CORRUPT alarm when two members that answered for the same revision with the same compact
revision disagree. Jepsen users expect the harness to notice it too, from the history alone.

How: beside the run (from the start of the main phase until the runner ends) a harness
process, ``"hash-check"`` (a string: not a client, so the client checkers never see its ops;
like Jepsen's nemesis), repeats every ``interval`` seconds:

1. take the leader's store revision R (no leader: skip the round);
2. ``settle`` seconds later (half the interval, at most 0.25 s: followers that trail the
   leader by a few appends have applied R by then), ask every running member, one after
   another, for HashKV at R (etcd's maintenance HashKV). Each answer is one op, f
   ``hash_kv``, ``node`` the member, invoked with value ``{"revision": R}``: ``ok`` with
   value ``{"revision", "compact_revision", "hash"}``; a member that has not applied R
   (``future_rev``), has compacted past it (``compacted``) or is not running completes
   ``fail`` with the error, never as a hash; one that does not answer within the client
   timeout, ``info``.

``kvcheck.checker.members`` compares the ``ok`` answers (``hash-mismatch``). HashKV (mvcc's
``hash``) covers the key space only (every stored key version up to R, and the compact
revision), not leases or members, so two correct members that applied the same log agree
on it at every R both have applied with the same compact revision, whatever they did since:
later writes are past R, a later compaction changes the compact revision, a snapshot
restore reproduces the versions exactly.

The interval is ``RunConfig.hash_check_interval`` (None: no hash checks; a config.json
without the field ran without them); ``--swarm`` draws it per seed from a substream of its
own (``workloads.swarm``).

Targets. The simulation (``TimerHashCheckTarget``) runs each round as a callback of its
clock (``SimScheduler.call_at``), reading the members' state at one instant of virtual time:
no trio task is added, no task is woken and no random draw is taken, so a seed's run is the
run it was without the checks (its history only gains the ``hash_kv`` ops, interleaved).
The local-process target (``HashCheckTarget``) is asked through the reference client
(``status`` and ``hash_kv`` per endpoint) from a trio task. The etcd target has no hash
checks: its client speaks etcd's JSON gateway, where etcd 3.4 maps both Hash and HashKV to
``/v3/maintenance/hash`` and serves Hash (the whole backend, at no chosen revision), so
HashKV has no URL there (etcd-io/etcd#16464, fixed in 3.5 only); its runs' info says the
checks were skipped. A gRPC maintenance client would add it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import trio

from kvcheck.checker.history import Op
from kvcheck.checker.members import HASH_KV_F
from kvcheck.workloads.recorder import Recorder

HASH_CHECK_PROCESS = "hash-check"
MAX_SETTLE = 0.25  # seconds between taking the leader's revision and asking the members


class HashKVError(Exception):
    """A member's error answer to HashKV (``error``: the wire code, e.g. ``future_rev``)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@runtime_checkable
class HashCheckTarget(Protocol):
    """A target asked over its clients (a trio task runs the rounds)."""

    @property
    def node_ids(self) -> list[int]: ...

    async def hash_revision(self) -> int | None:
        """The current leader's store revision (None: no member leads, or it did not answer)."""
        ...

    async def member_hash_kv(self, member: int, revision: int) -> dict[str, int] | None:
        """``member``'s HashKV at ``revision``: ``{"revision", "compact_revision", "hash"}``;
        None if the member is not running (nothing asked); raises ``HashKVError`` with its
        error answer."""
        ...


@runtime_checkable
class TimerHashCheckTarget(Protocol):
    """A target that answers at once and runs callbacks on its clock (the simulation)."""

    @property
    def node_ids(self) -> list[int]: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Call ``callback()`` ``delay`` seconds from now, outside every task."""
        ...

    def hash_revision_now(self) -> int | None:
        """As ``HashCheckTarget.hash_revision``, at this instant."""
        ...

    def member_hash_kv_now(self, member: int, revision: int) -> dict[str, int] | None:
        """As ``HashCheckTarget.member_hash_kv``, at this instant."""
        ...


@dataclass
class HashChecker:
    target: Any
    recorder: Recorder
    interval: float
    client_timeout: float
    stop: trio.Event = field(default_factory=trio.Event)
    rounds: int = 0
    answers: dict[str, int] = field(default_factory=dict)  # outcome / error -> count

    @property
    def settle(self) -> float:
        return min(MAX_SETTLE, self.interval / 2)

    def start_timers(self) -> None:
        """Run the rounds as callbacks of the target's clock (``TimerHashCheckTarget``) until
        ``stop`` is set."""
        target: TimerHashCheckTarget = self.target

        def pick() -> None:
            if self.stop.is_set():
                return
            revision = target.hash_revision_now()
            if revision is None or revision < 1:  # HashKV(0) would mean each member's own revision
                target.call_later(self.interval - self.settle, pick)
                return
            target.call_later(self.settle, lambda: ask(revision))

        def ask(revision: int) -> None:
            if self.stop.is_set():
                return
            self.rounds += 1
            for member in list(target.node_ids):
                inv = self._invoke(member, revision)
                try:
                    got = target.member_hash_kv_now(member, revision)
                except HashKVError as exc:
                    self._complete(inv, member, "fail", None, exc.error)
                    continue
                if got is None:
                    self._complete(inv, member, "fail", None, "not running")
                else:
                    self._complete(inv, member, "ok", dict(got), None)
            target.call_later(self.interval - self.settle, pick)

        target.call_later(self.interval - self.settle, pick)

    async def run(self) -> None:
        """Rounds every ``interval`` seconds (a trio task; ``HashCheckTarget``) until ``stop``
        is set (the round under way ends first: no op is left open)."""
        while not await self._sleep(self.interval - self.settle):
            revision = await self._leader_revision()
            if revision is None or revision < 1:  # HashKV(0) would mean each member's own revision
                continue
            if await self._sleep(self.settle):
                return
            self.rounds += 1
            for member in list(self.target.node_ids):
                await self._ask(member, revision)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``; True if ``stop`` was set meanwhile (or before)."""
        with trio.move_on_after(seconds):
            await self.stop.wait()
        return self.stop.is_set()

    async def _leader_revision(self) -> int | None:
        with trio.move_on_after(self.client_timeout):
            revision: int | None = await self.target.hash_revision()
            return revision
        return None

    async def _ask(self, member: int, revision: int) -> None:
        inv = self._invoke(member, revision)
        outcome: str = "info"
        value: dict[str, int] | None = None
        error: str | None = "timeout"
        try:
            with trio.move_on_after(self.client_timeout):
                got = await self.target.member_hash_kv(member, revision)
                if got is None:
                    outcome, error = "fail", "not running"
                else:
                    outcome, value, error = "ok", dict(got), None
        except HashKVError as exc:
            outcome, error = "fail", exc.error
        finally:  # also when cancelled: no op is left open
            self._complete(inv, member, outcome, value, error)

    def _invoke(self, member: int, revision: int) -> Op:
        return self.recorder.invoke(HASH_CHECK_PROCESS, HASH_KV_F, {"revision": revision}, node=member)

    def _complete(self, inv: Op, member: int, outcome: str, value: dict[str, int] | None,
                  error: str | None) -> None:
        self.recorder.complete(inv, outcome, value, error=error, node=member)
        key = outcome if error is None else f"{outcome}: {error}"
        self.answers[key] = self.answers.get(key, 0) + 1

    def info(self) -> dict[str, Any]:
        """What the checks did, for the run's info."""
        return {"interval": self.interval, "rounds": self.rounds, "answers": dict(sorted(self.answers.items()))}
