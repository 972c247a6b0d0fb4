"""Known defects of real etcd, recognised in a run's results, so a sweep or a test can say
which invalid runs are explained by one (the verdict stays invalid: the checkers are right).

Only one so far. etcd before 3.4.25 / 3.5.8 (etcd-io/etcd#15220) answers a watch progress
request on its control channel with the store's revision at that moment, beside the channel
of the watch's events, and its send loop takes from either: the response (``watch_id`` -1)
can overtake events at or below its revision — the documented "every event up to R has been
delivered" is false, and an informer that takes it as a bookmark has a cache behind the
store — or be overtaken by events above it, so the stream's revisions go back (a client
resuming from that bookmark gets those events twice). The fixed etcd sends the response on
the events' channel under the store's lock. The watch checker reports both as
``watch:bookmarkable``, the informer checker the cache as ``informer:cache`` at the response;
benchmarks/etcd_progress_order.py shows both on a bare stream, outside the harness.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kvcheck.checker.history import Op

PROGRESS_RACE = "etcd-io/etcd#15220 (progress responses not ordered with events; fixed in 3.4.25, 3.5.8)"


def _affected(version: str) -> bool:
    parts = version.split(".")
    if len(parts) < 3 or not all(p.isdigit() for p in parts[:3]):
        return False
    major, minor, patch = (int(p) for p in parts[:3])
    fixed_in = {(3, 4): 25, (3, 5): 8}
    return (major, minor) < (3, 4) or ((major, minor) in fixed_in and patch < fixed_in[major, minor])


def progress_race(results: Mapping[str, Any], ops: Iterable[Op]) -> list[str]:
    """The explanations of a run's anomalies when every one of them is the progress race
    of an affected etcd version (each names a progress response, ``watch_id`` -1); [] when
    the run is valid, the etcd version is not affected, or anything else is wrong."""
    run = results.get("run") or {}
    if not _affected(str(run.get("etcd_version", ""))):
        return []
    by_index = {op.index: op for op in ops}

    def is_progress(i: Any) -> bool:
        op = by_index.get(i)
        return op is not None and isinstance(op.value, dict) and op.value.get("watch_id") == -1

    reasons: list[str] = []
    for name, checker in (results.get("checkers") or {}).items():
        if checker.get("valid") is True:
            continue
        if name not in ("watch", "informer") or checker.get("valid") is not False:
            return []
        for a in checker.get("anomalies") or []:
            if a.get("kind") not in ("watch:bookmarkable", "informer:cache") \
                    or not any(is_progress(i) for i in a.get("ops") or ()):
                return []
            reasons.append(str(a.get("explanation", "")))
    return reasons
