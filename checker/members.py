"""Do members that applied the same log agree? The final per-member reads and the periodic
HashKV checks, checked.

Raft's state machine safety: members that applied the same prefix of the log hold the same
state. A bug that lets logs or state machines diverge (a deposed leader's entries accepted,
a vote forgotten in a power loss, a key changed outside the log) may never show in
linearizable reads, which all go through the leader's ReadIndex; Jepsen therefore reads
every node at the end of a test. This checker reads those final per-member reads from the
history alone: ops marked ``member_read: true`` (``kvcheck.workloads.memberreads`` records
them), with the member in ``node``, the member's applied index in ``applied`` (present when
the member applied nothing between just before and just after the read) and the store
``revision`` the response reflects.

Among the member reads that report the same ``applied`` index it checks that
- every key has one value on every member (``divergent-members``: the members and what each
  read), and
- every member reports one store revision (``divergent-members`` too: a member that applied
  the same number of entries but counts a different number of revisions applied different
  writes, even where the keys read happen to agree), and
- every member reports one HashKV (``hash_kv`` at ``hash_revision``: etcd's hash of every
  stored key version, so writes since overwritten still count).
Reads at different applied indexes are not compared (a member may legitimately be behind).

And it checks that every member answers (``member-unavailable``): a member that was down or
still behind at the member reads is asked with linearizable reads (``linearizable: true``)
for the run's recovery bound (``options.extra["availability_bound"]``, as the availability
checker's); when none of a member's reads was answered ok and those reads span at least
that bound, the member stayed unavailable to its clients long after every fault was healed
(it crashed on its own, or never caught up: Raft promises both recover).
And it checks the harness's periodic HashKV checks (``kvcheck.workloads.hashcheck``: f
``hash_kv``, ``node`` the member, an ``ok`` completion's value ``{"revision",
"compact_revision", "hash"}``; any process, the harness records them as ``"hash-check"``),
as etcd's corruption check does (``hash-mismatch``): two answers for the same revision with
the same compact revision must carry the same hash, from two members or from one member at
two times. HashKV covers every stored key version up to the revision and the compact
revision, nothing else (no leases), so members that applied the same log agree on it
whatever they applied since; answers with different compact revisions are not compared
(etcd skips them too), and error answers (the member had not applied the revision, or had
compacted past it) never count.

Whether the values agree with the rest of the history is the linearizability checker's
question: these reads are plain ``read`` ops to it, taken after every write ended and once
the member caught up with every known commit index.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from kvcheck.checker.api import Anomaly, CheckerBase, CheckOptions, CheckResult
from kvcheck.checker.availability import DEFAULT_BOUND, MEMBER_READ_FIELD
from kvcheck.checker.history import HistoryError, Op, pair_calls

LINEARIZABLE_FIELD = "linearizable"  # (workloads.memberreads) a read of a member that was behind
HASH_KV_F = "hash_kv"  # (workloads.hashcheck) one member's answer to the periodic HashKV check


def _show(v: Any) -> str:
    return "nothing (absent)" if v is None else repr(v)


def _members(ms: Sequence[Any]) -> str:
    return ", ".join(f"n{m}" for m in sorted(ms, key=str))


class MembersChecker(CheckerBase):
    name = "members"
    description = ("final per-member reads and periodic HashKV checks: members that applied the same log "
                   "agree on every key")

    def reads(self, op: Op) -> bool:
        return bool(op.extra.get(MEMBER_READ_FIELD)) or op.f == HASH_KV_F

    def check(self, ops: Sequence[Op], options: CheckOptions) -> CheckResult:
        t0 = time.perf_counter()
        # applied index -> key -> member -> (value, completion op id)
        groups: dict[int, dict[Any, dict[Any, tuple[Any, int]]]] = {}
        revisions: dict[int, dict[Any, tuple[int, int]]] = {}  # applied -> member -> (revision, op id)
        hashes: dict[int, dict[Any, tuple[tuple[int, int], int]]] = {}  # applied -> member -> ((rev, hash), op id)
        reads = not_compared = 0
        asked: dict[Any, list[tuple[Op, Op | None]]] = {}  # member -> its linearizable reads
        answered: set[Any] = set()  # members with a read answered ok
        for call in pair_calls(ops):
            if not call.invoke.extra.get(MEMBER_READ_FIELD):
                continue
            done = call.completion
            who = done.node if done is not None and done.node is not None else call.invoke.node
            if call.invoke.extra.get(LINEARIZABLE_FIELD):
                asked.setdefault(who, []).append((call.invoke, done))
            if done is not None and done.type == "ok":
                answered.add(who)
            if done is None or done.type != "ok":
                continue
            member = who
            if member is None:
                raise HistoryError(f"member read {call.id} names no member (node field)", done)
            if call.f != "read":
                raise HistoryError(f"member read {call.id} has f {call.f!r}, not read", done)
            reads += 1
            applied = done.extra.get("applied")
            if not isinstance(applied, int) or isinstance(applied, bool):
                not_compared += 1
                continue
            by_key = groups.setdefault(applied, {}).setdefault(call.key, {})
            by_key.setdefault(member, (done.value, done.id))
            rev = done.extra.get("revision")
            if isinstance(rev, int) and not isinstance(rev, bool):
                revisions.setdefault(applied, {}).setdefault(member, (rev, done.id))
            h, hrev = done.extra.get("hash_kv"), done.extra.get("hash_revision")
            if isinstance(h, int) and isinstance(hrev, int):
                hashes.setdefault(applied, {}).setdefault(member, ((hrev, h), done.id))
        anomalies: list[Anomaly] = []
        for applied, keys in sorted(groups.items()):
            for key, answers in sorted(keys.items(), key=lambda kv: str(kv[0])):
                values: dict[Any, list[Any]] = {}
                for member, (value, _) in answers.items():
                    values.setdefault(_hashable(value), []).append(member)
                if len(values) < 2:
                    continue
                parts = "; ".join(f"{_members(ms)} read {_show(answers[ms[0]][0])}"
                                  for _, ms in sorted(values.items(), key=lambda kv: (-len(kv[1]), str(kv[0]))))
                where = "the register" if key is None else f"key {key}"
                anomalies.append(Anomaly(
                    "divergent-members",
                    f"{where}: members that applied the same log (index {applied}) disagree: {parts}",
                    [op_id for _, op_id in answers.values()],
                    {"key": key, "applied": applied,
                     "values": {str(m): v for m, (v, _) in sorted(answers.items(), key=lambda kv: str(kv[0]))}}))
            revs = revisions.get(applied, {})
            distinct: dict[int, list[Any]] = {}
            for member, (rev, _) in revs.items():
                distinct.setdefault(rev, []).append(member)
            if len(distinct) > 1:
                parts = "; ".join(f"{_members(ms)} at revision {rev}" for rev, ms in sorted(distinct.items()))
                anomalies.append(Anomaly(
                    "divergent-members",
                    f"members that applied the same log (index {applied}) report different store "
                    f"revisions, so they applied different writes: {parts}",
                    [op_id for _, op_id in revs.values()],
                    {"applied": applied,
                     "revisions": {str(m): r for m, (r, _) in sorted(revs.items(), key=lambda kv: str(kv[0]))}}))
            if len(distinct) > 1:
                continue  # different revisions already say it; their hashes differ anyway
            by_hash: dict[tuple[int, int], list[Any]] = {}
            for member, (rh, _) in hashes.get(applied, {}).items():
                by_hash.setdefault(rh, []).append(member)
            if len(by_hash) > 1:
                parts = "; ".join(f"{_members(ms)} HashKV {h} at revision {r}" for (r, h), ms in sorted(by_hash.items()))
                anomalies.append(Anomaly(
                    "divergent-members",
                    f"members that applied the same log (index {applied}) hold different data "
                    f"(etcd's HashKV of every stored key version differs): {parts}",
                    [op_id for _, op_id in hashes[applied].values()],
                    {"applied": applied,
                     "hash_kv": {str(m): list(rh) for m, (rh, _) in sorted(hashes[applied].items(), key=lambda kv: str(kv[0]))}}))
        anomalies.extend(_unavailable(asked, answered, float(options.extra.get("availability_bound", DEFAULT_BOUND))))
        hash_anomalies, hash_answers = _hash_mismatches(ops)
        anomalies.extend(hash_anomalies)
        detail = {"member_reads": reads, "not_compared": not_compared, "hash_kv_answers": hash_answers,
                  "applied_indexes": {str(a): sorted({m for ans in keys.values() for m in ans}, key=str)
                                      for a, keys in sorted(groups.items())}}
        return CheckResult(self.name, not anomalies, anomalies, time.perf_counter() - t0, None, detail)


def _hash_mismatches(ops: Sequence[Op]) -> tuple[list[Anomaly], int]:
    """``hash-mismatch`` for each (revision, compact revision) whose ``ok`` HashKV answers
    carry more than one hash; and the number of ``ok`` answers read."""
    # (revision, compact revision) -> hash -> [(member, op)]
    seen: dict[tuple[int, int], dict[int, list[tuple[Any, Op]]]] = {}
    answers = 0
    for op in ops:
        if op.f != HASH_KV_F or op.type != "ok":
            continue
        v = op.value
        if not isinstance(v, dict):
            raise HistoryError(f"hash_kv op {op.id}: value must be an object with revision, "
                               f"compact_revision and hash, not {v!r}", op)
        got = []
        for name in ("revision", "compact_revision", "hash"):
            x = v.get(name)
            if not isinstance(x, int) or isinstance(x, bool) or x < 0:
                raise HistoryError(f"hash_kv op {op.id}: value field {name} must be a non-negative "
                                   f"integer, not {x!r}", op)
            got.append(x)
        if op.node is None:
            raise HistoryError(f"hash_kv op {op.id} names no member (node field)", op)
        answers += 1
        seen.setdefault((got[0], got[1]), {}).setdefault(got[2], []).append((op.node, op))
    out: list[Anomaly] = []
    for (rev, compact), by_hash in sorted(seen.items()):
        if len(by_hash) < 2:
            continue
        groups = sorted(by_hash.items(), key=lambda kv: (-len(kv[1]), kv[1][0][1].id))
        parts = "; ".join(
            f"{_members(list({m for m, _ in who}))} HashKV {h} (op {', '.join(str(op.id) for _, op in who)})"
            for h, who in groups)
        out.append(Anomaly(
            "hash-mismatch",
            f"HashKV answers at revision {rev} with compact revision {compact} differ: {parts}. "
            "Members that applied the same log hold the same key versions up to a revision "
            "(etcd's corruption check raises the CORRUPT alarm on this)",
            [op.id for _, who in groups for _, op in who],
            {"revision": rev, "compact_revision": compact,
             "hashes": {str(h): sorted({str(m) for m, _ in who}) for h, who in groups}}))
    return out, answers


def _unavailable(asked: dict[Any, list[tuple[Op, Op | None]]], answered: set[Any],
                 bound: float) -> list[Anomaly]:
    """``member-unavailable`` for each member asked with linearizable reads for at least
    ``bound`` seconds (first invocation to last completion) that answered none of its reads."""
    out: list[Anomaly] = []
    for member, calls in sorted(asked.items(), key=lambda kv: str(kv[0])):
        if member in answered:
            continue
        times = [op.time for inv, done in calls for op in (inv, done) if op is not None and op.time is not None]
        if not times or (max(times) - min(times)) / 1e9 < bound - 1e-6:
            continue
        errors = sorted({str(done.error) if done is not None and done.error else "no completion"
                         for _, done in calls})
        out.append(Anomaly(
            "member-unavailable",
            f"member n{member} answered none of its {len(calls)} reads over "
            f"{(max(times) - min(times)) / 1e9:.3g}s after every fault was healed and the "
            f"cluster's recovery bound ({bound:g}s) had passed ({', '.join(errors)}): it stayed "
            "unavailable to its clients (crashed on its own, or never caught up)",
            [op.id for inv, done in calls for op in (inv, done) if op is not None],
            {"member": member, "reads": len(calls), "errors": errors}))
    return out


def _hashable(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((str(k), _hashable(x)) for k, x in v.items()))
    return v
