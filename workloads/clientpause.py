"""Client pauses: the ``client-pause`` fault stalls one client process of the test harness.

Why: a lease-based lock trusts that its holder notices the lease is gone before it acts
again. A client process that stalls (a GC pause, a swapped-out VM, SIGSTOP) longer than its
lease TTL sends no keepalives, its lease expires, another client acquires the lock, and
then the stalled one wakes up still believing it holds it (Jepsen's etcd 3.4 lock
analysis). No fault of the store's members produces that: the client must stall.

How: a workload that wants its clients pausable registers each client slot here
(``ClientGates.gate(name)``) and calls ``await gate.wait()`` before it records an
invocation, after each response it receives and before it records a completion, in every
task of that client (its operations and its lease keepalives). While the gate is closed
those calls block, so the client's tasks stall at their next step: a request already sent
may take effect, but its answer is only acted on (and recorded) after the pause, as in a
stopped process. On an open gate ``wait`` returns without a checkpoint, so a run without
the fault schedules exactly as before. The nemesis closes a gate for the fault's duration
(start to stop of the schedule) and reopens it when the fault stops; in the simulation the
gate is a trio event in virtual time, so a seed gives the same history; on the local and
etcd targets the client's trio tasks stall in real time.

A workload can mark a client ``holding`` (e.g. inside a critical section) and attach
``info`` (its lease, its lock key) that the nemesis records in the fault's value; the
fault's ``target`` ``holder`` pauses a client that holds (waiting a bounded time for one),
``any`` a random registered client.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import trio

CLIENT_TARGETS: tuple[str, ...] = ("holder", "any")


@dataclass
class ClientGate:
    """One pausable client slot."""

    name: str
    process: Any = None  # the process the client uses now (the workload keeps it current)
    holding: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    _resume: trio.Event | None = None
    _owner: ClientGates | None = None

    @property
    def paused(self) -> bool:
        return self._resume is not None

    async def wait(self) -> None:
        """Return at once when the client is not paused (no checkpoint); else when resumed."""
        while self._resume is not None:
            await self._resume.wait()

    def pause(self) -> None:
        if self._resume is None:
            self._resume = trio.Event()

    def resume(self) -> None:
        ev, self._resume = self._resume, None
        if ev is not None:
            ev.set()

    def set_holding(self, holding: bool, **info: Any) -> None:
        self.holding = holding
        self.info = dict(info)
        if self._owner is not None:
            self._owner.changed()


class ClientGates:
    """Every pausable client of a run, by name."""

    def __init__(self) -> None:
        self.gates: dict[str, ClientGate] = {}
        self._changed: trio.Event | None = None

    def gate(self, name: str) -> ClientGate:
        if name not in self.gates:
            self.gates[name] = ClientGate(name, _owner=self)
        return self.gates[name]

    def changed(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def pick(self, target: str, rng: random.Random, wait: float) -> ClientGate | None:
        """The client ``target`` names: ``holder`` waits up to ``wait`` seconds for a client
        that holds (then falls back to any), ``any`` draws one; None when none registered."""
        if target == "holder":
            with trio.move_on_after(wait):
                while True:
                    holders = sorted(n for n, g in self.gates.items() if g.holding and not g.paused)
                    if holders:
                        return self.gates[rng.choice(holders)]
                    if self._changed is None:
                        self._changed = trio.Event()
                    await self._changed.wait()
        names = sorted(n for n, g in self.gates.items() if not g.paused)
        return self.gates[rng.choice(names)] if names else None

    def resume_all(self) -> None:
        for g in self.gates.values():
            g.resume()
