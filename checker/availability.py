"""Does the store answer once the faults are healed? Availability, read from the history alone.

Why: a store whose every write times out for the whole run (a follower that never appends
what the leader sends, elections that never settle) gives a history every safety checker
accepts: nothing happened, so nothing contradicts anything. Raft promises progress whenever
a majority is up and can talk; a history whose clients got no answer at all for long
stretches while no fault was active shows that promise broken just as a stale read shows a
safety promise broken.

How: the nemesis ops of the history (``start-<kind>`` invokes and ``stop-<kind>``
completions) mark when faults were active; the stretches with none active are the quiet
windows (the first begins at the history's first op). A window's first ``bound`` seconds are
left for the cluster to recover (elections, catching up: the run's recovery bound, given in
``options.extra["availability_bound"]``, default ``DEFAULT_BOUND``). For each op name ``f``
(writes, reads, cas, lease grants ...: stream ops such as ``watch`` and the final
per-member reads excluded), the ops invoked after that and completed inside the window are
taken; when there are at least ``MIN_OPS`` of them and not one got a definite answer (ok or
fail: every one ended ``info``, the client never heard back), the window is an
``unavailable`` anomaly naming the op, the window and the ops -- if the clients went without
an answer for longer than one leader change may take (``span``, below). A workload may exempt ops
that may rightly wait that long (``options.extra["availability_exempt"]``: names of f).

An answer the client could not take as one is no answer either: a completion whose ``error``
starts with ``bad-response`` (the store answered a request with a response of another kind,
e.g. a write with nothing or with another request's response: the harness's clients record
it so, as ``info``) is a ``bad-response`` anomaly wherever it happens.

Why the span: Raft promises progress while a majority is up and can talk, not an answer to
every request; a leader may be lost at any moment without a fault the history records (a
process paused by the scheduler or a slow disk, the simulation's ``stall`` perturbation: a
Ready pass held for up to two election timeouts). Its followers notice after their
randomized election timeout (etcd raft draws it in [election timeout, 2 x election timeout))
and elect another leader; until then the requests sent to the lost leader time out, each a
client timeout after it was sent. So one leader change may leave every request unanswered
from the first sent to the lost leader until the last of them times out: two election
timeouts plus one client timeout, ``options.extra["availability_span"]`` (the run's, from
its node timing; default 0: any stretch). A kind of op whose unanswered calls of a quiet
window, from the first one's invocation to the last one's timeout, span no longer than that
is no sign of lost progress (a 0.14 s stretch at a history's end, its leader stalled); a
cluster that starves does so for the whole window.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kvcheck.checker.api import Anomaly, CheckerBase, CheckOptions, CheckResult
from kvcheck.checker.history import STREAM_FS, Op, pair_calls

DEFAULT_BOUND = 10.0  # seconds after a heal (or the start) within which the store must answer
MIN_OPS = 3  # fewer unanswered ops in a window prove nothing
DEFAULT_SPAN = 0.0  # seconds without answers that one leader change may take (none known)
MEMBER_READ_FIELD = "member_read"
BAD_RESPONSE = "bad-response"  # the error of a completion whose answer was of another kind
NS = 1e9


def quiet_windows(ops: Sequence[Op]) -> list[tuple[float, float]]:
    """[start, end) seconds of the stretches with no fault active (the last ends at +inf).
    A fault is active from its start op's invocation to its stop op's completion; faults
    of one kind may overlap (a burst's kills), so they are counted."""
    events: list[tuple[float, int]] = []
    first: float | None = None
    for op in ops:
        if op.time is None:
            continue
        t = op.time / NS
        if first is None:
            first = t
        if not op.is_nemesis or not isinstance(op.f, str):
            continue
        if op.type == "invoke" and op.f.startswith("start-"):
            events.append((t, +1))
        elif op.type != "invoke" and op.f.startswith("stop-"):
            events.append((t, -1))
    windows: list[tuple[float, float]] = []
    active, since = 0, (first or 0.0)
    for t, d in sorted(events, key=lambda e: (e[0], -e[1])):
        if active == 0 and d > 0 and t > since:
            windows.append((since, t))
        active = max(0, active + d)
        if active == 0 and d < 0:
            since = t
    if active == 0:
        windows.append((since, float("inf")))
    return windows


class AvailabilityChecker(CheckerBase):
    name = "availability"
    description = ("clients get answers, of the kind they asked for, and some once every fault has "
                   "been healed for the recovery bound")

    def reads(self, op: Op) -> bool:
        return not op.is_nemesis and op.f not in STREAM_FS and not op.extra.get(MEMBER_READ_FIELD)

    def check(self, ops: Sequence[Op], options: CheckOptions) -> CheckResult:
        t0 = time.perf_counter()
        bound = float(options.extra.get("availability_bound", DEFAULT_BOUND))
        span = float(options.extra.get("availability_span", DEFAULT_SPAN))
        exempt = set(options.extra.get("availability_exempt", ()))
        windows = quiet_windows(ops)
        # per window: f -> [(invoke op, completion op, answered?)]
        per: list[dict[Any, list[tuple[Op, Op, bool]]]] = [{} for _ in windows]
        for call in pair_calls(ops):
            inv, done = call.invoke, call.completion
            if (done is None or inv.time is None or done.time is None or call.f in STREAM_FS
                    or call.f in exempt or inv.extra.get(MEMBER_READ_FIELD)):
                continue
            start, end = inv.time / NS, done.time / NS
            for i, (a, b) in enumerate(windows):
                if a + bound <= start and end <= b:
                    per[i].setdefault(call.f, []).append((inv, done, done.type in ("ok", "fail")))
                    break
        anomalies: list[Anomaly] = []
        for call in pair_calls(ops):
            done = call.completion
            if done is not None and isinstance(done.error, str) and done.error.startswith(BAD_RESPONSE):
                anomalies.append(Anomaly(
                    BAD_RESPONSE, f"{call.f} {call.invoke.value!r:.60} was answered with a response of "
                    f"another kind: {done.error.removeprefix(BAD_RESPONSE).lstrip(': ')}",
                    [call.invoke.id, done.id], {"f": call.f}))
        judged = 0
        for (a, b), by_f in zip(windows, per, strict=True):
            for f, calls in sorted(by_f.items(), key=lambda kv: str(kv[0])):
                if len(calls) < MIN_OPS:
                    continue
                judged += 1
                if any(answered for _, _, answered in calls):
                    continue
                first, last = calls[0][0].time, calls[-1][0].time
                assert first is not None and last is not None
                silent = (max(done.time or 0 for _, done, _ in calls) - first) / NS
                if silent <= span:  # no longer than one leader change may take
                    continue
                until = "the end of the history" if b == float("inf") else f"{b:.2f}s (the next fault)"
                anomalies.append(Anomaly(
                    "unavailable",
                    f"no {f} invoked between {first / NS:.2f}s and {last / NS:.2f}s got an answer "
                    f"({len(calls)} ops, every one timed out), though no fault was active from "
                    f"{a:.2f}s to {until} and the store had {bound:g}s to recover first",
                    [inv.id for inv, _, _ in calls][:20],
                    {"f": f, "window": [round(a, 3), None if b == float("inf") else round(b, 3)],
                     "ops": len(calls), "bound": bound, "silent": round(silent, 3), "span": span}))
        detail = {"bound": bound, "span": span, "quiet_windows": len(windows), "judged": judged}
        return CheckResult(self.name, not anomalies, anomalies, time.perf_counter() - t0, None, detail)
