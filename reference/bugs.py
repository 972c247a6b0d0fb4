"""Injectable bugs: named switches, all off by default, each checked at one guarded line.

The regression suite turns a switch on and expects the black-box checkers to catch the bug
from the client history alone. A switch is read at exactly one place in the store, as a
one-line guard (``if bugs.local_reads: ...``), so the bug it injects is easy to find and
review. Add a switch here together with its guarded line and a test that the checker
catches it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True, slots=True)
class Bugs:
    """Which deliberate bugs are on. Each field's comment names where it is guarded."""

    # node: serve linearizable reads from local state on any member, skipping ReadIndex.
    local_reads: bool = False
    # kv.machine (KVStateMachine.apply): apply a retried (client_id, seq) again instead of
    # answering it from the session table.
    no_session_dedup: bool = False
    # kv.watch (WatchHub.create): a watch resumed from a past revision skips that revision's
    # events (the gap a resuming client would never notice).
    watch_resume_gap: bool = False
    # kv.machine (KVStateMachine.expired_leases): the leader deletes an expired lease's keys on
    # its own timer, outside the log, besides proposing the expiry.
    lease_expiry_local: bool = False

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def enabled(self) -> list[str]:
        return [name for name in self.names() if getattr(self, name)]

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> Bugs:
        unknown = sorted(set(names) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown bug switch(es): {', '.join(unknown)}; known: {', '.join(cls.names())}")
        return replace(cls(), **{name: True for name in names})


NO_BUGS = Bugs()
