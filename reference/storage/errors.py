"""The one error durable storage raises for data it will not trust.

A node refuses to start on corrupt storage rather than guess: the error names the file,
the byte offset (when there is one) and the reason, so a person can look at the bytes.
It is a ``KvcheckError`` with the "malformed input" exit code (65), so a command that opens
a data directory reports it like any other unreadable input.
"""

from __future__ import annotations

from kvcheck.exitcodes import ExitCode, KvcheckError


class CorruptionError(KvcheckError):
    """Stored data failed a check: ``path`` at ``offset`` (None: the file as a whole)."""

    code = ExitCode.DATAERR

    def __init__(self, path: str, offset: int | None, reason: str) -> None:
        where = f"{path}: offset {offset}" if offset is not None else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason
