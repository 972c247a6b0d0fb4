"""Deterministic seeding: named random substreams and trio's scheduler seed.

Every random choice of a run draws from its own ``random.Random`` substream derived from the
run seed and a stable name (``substream(seed, "net")``, ``substream(seed, "node", 3)``), so
adding a draw in one place does not shift the draws anywhere else. Substreams are seeded
from a string, which ``random.Random`` hashes with SHA-512: the same in every process,
whatever PYTHONHASHSEED is.

trio shuffles each batch of runnable tasks with a private ``random.Random``
(``trio._core._run._r``) and, unless its ``_ALLOW_DETERMINISTIC_SCHEDULING`` flag is set,
also orders the batch by insertion, which follows ``id()`` tie-breaks in its deadline heap.
``deterministic_trio(seed)`` replaces that generator with a seeded one and sets the flag
(trio sorts each batch by task creation counter before shuffling) for the duration of one
``trio.run``. These are private names: trio is pinned to 0.35.0 and tests/workloads/test_sim.py
runs one seed in two processes with different PYTHONHASHSEED and compares history hashes.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

TRIO_VERSION = "0.35.0"


def substream(seed: int, *names: object) -> random.Random:
    """A random generator for one purpose, derived from the run seed and stable names."""
    label = ":".join(str(n) for n in (seed, *names))
    return random.Random(label)


@contextmanager
def deterministic_trio(seed: int) -> Iterator[None]:
    """Seed trio's task scheduler for the ``trio.run`` inside this block."""
    if trio.__version__ != TRIO_VERSION:  # the private names below are version-specific
        raise RuntimeError(
            f"deterministic simulation needs trio=={TRIO_VERSION} (found {trio.__version__})"
        )
    run_mod = trio._core._run
    saved_flag = run_mod._ALLOW_DETERMINISTIC_SCHEDULING
    saved_random = run_mod._r
    run_mod._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    run_mod._r = _SchedulerRandom(f"{seed}:trio-scheduler")
    try:
        yield
    finally:
        run_mod._ALLOW_DETERMINISTIC_SCHEDULING = saved_flag  # type: ignore[misc]
        run_mod._r = saved_random


class _SchedulerRandom(random.Random):
    """trio's scheduler generator for one run. Most scheduler passes run a single task, and
    shuffling a list of fewer than two draws nothing: skipping the call gives the same
    sequence, without its cost on every pass."""

    def shuffle(self, x: Any) -> None:
        if len(x) > 1:
            super().shuffle(x)
