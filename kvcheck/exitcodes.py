"""Exit codes shared by every kvcheck command (sysexits-style where one exists)."""

from enum import IntEnum


class ExitCode(IntEnum):
    VALID = 0  # every check passed
    INVALID = 1  # an anomaly was found
    UNKNOWN = 2  # could not decide within the bounds
    USAGE = 64  # bad command line
    DATAERR = 65  # unreadable or malformed input
    NOINPUT = 66  # missing input
    SOFTWARE = 70  # internal error
    INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT), the shell's 128 + 2


class KvcheckError(Exception):
    """An error a command reports to the user and exits with ``code``."""

    code: ExitCode = ExitCode.SOFTWARE

    def __init__(self, message: str, code: ExitCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class MalformedInput(KvcheckError):
    """Input that cannot be read: names the file, the line and what was wrong."""

    code = ExitCode.DATAERR

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class MissingInput(KvcheckError):
    code = ExitCode.NOINPUT


class UsageError(KvcheckError):
    code = ExitCode.USAGE
