"""The time and memory bounds every checker runs under.

A check must say ``unknown`` with the cause instead of hanging or eating the machine:
``Bounds`` holds a deadline and a resident-size limit, and ``check()`` raises
``OutOfBounds`` (its ``cause`` is the text the result's unknown cause carries) once either is
passed. Reading the resident size costs a file read, so it is done every ``memory_every``
calls; the clock is read on every call. ``default_memory_limit_mb`` is the bound used when
the user names none.
"""

from __future__ import annotations

import math
import os
import time


class OutOfBounds(Exception):
    """A bound was hit; ``cause`` says which, in words for the unknown cause."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


def rss_mb() -> float:
    """The process's resident size in MB (peak resident size where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):  # not Linux: peak RSS is the best we have
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def default_memory_limit_mb() -> int:
    """The memory bound when none is given: the lower of 2 GiB and half the machine's memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (OSError, ValueError, AttributeError):
        return 2048
    return max(256, min(2048, total // 2))


class Bounds:
    """A deadline ``timeout`` seconds from now and a memory limit; ``check()`` raises
    OutOfBounds when either is passed."""

    def __init__(self, timeout: float | None, memory_limit_mb: int | None, *,
                 memory_every: int = 16) -> None:
        self.t0 = time.monotonic()
        self.deadline = self.t0 + timeout if timeout is not None else math.inf
        self.timeout = timeout
        self.memory_limit_mb = memory_limit_mb
        self.memory_every = memory_every
        self.calls = 0

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise OutOfBounds(f"timeout: the {self.timeout:g} s limit ran out")
        self.calls += 1
        if self.memory_limit_mb is not None and self.calls % self.memory_every == 0:
            rss = rss_mb()
            if rss > self.memory_limit_mb:
                raise OutOfBounds(
                    f"memory limit: resident size {rss:.0f} MB exceeds {self.memory_limit_mb} MB"
                )
