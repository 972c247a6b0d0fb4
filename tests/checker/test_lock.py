"""The lock checker on small hand-written histories: a holder paused past its lease whose
writes interleave with the next holder's (invalid, both holders named), the same history
with a fence that refused the stale writes (valid), a clean handover, and malformed lock
ops (exit 65 naming the file and line through ``kvcheck check``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kvcheck.checker.api import CheckOptions, run_checkers
from kvcheck.checker.history import HistoryError, Op
from kvcheck.checker.lock import LockChecker
from kvcheck.cli import main
from kvcheck.exitcodes import ExitCode


class H:
    """A history builder: ``call`` appends an invoke and its completion (or leaves it open)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.t = 0

    def line(self, process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> None:
        self.t += 100_000_000  # 0.1 s apart
        self.lines.append({"index": len(self.lines), "time": self.t, "process": process, "type": type_,
                           "f": f, "value": value, **extra})

    def invoke(self, process: Any, f: str, value: Any = None, **extra: Any) -> None:
        self.line(process, "invoke", f, value, **extra)

    def done(self, process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> None:
        self.line(process, type_, f, value, **extra)

    def ops(self) -> list[Op]:
        return [Op.from_dict(d) for d in self.lines]

    def write(self, path: Path) -> Path:
        path.write_text("".join(json.dumps(d) + "\n" for d in self.lines))
        return path


def acquire(h: H, p: int, lease: int, rev: int) -> None:
    h.invoke(p, "acquire", f"lock/{lease:x}", lease=lease)
    h.done(p, "ok", "acquire", f"lock/{lease:x}", lease=lease, lock_revision=rev)


def write(h: H, p: int, lease: int, mark: str, revision: int | None, type_: str = "ok") -> None:
    h.invoke(p, "write", mark, key="lock-resource", lease=lease)
    extra: dict[str, Any] = {"revision": revision} if revision is not None else {}
    if type_ == "fail":
        extra["error"] = "compare-failed"
    h.done(p, type_, "write", mark, key="lock-resource", lease=lease, **extra)


def release(h: H, p: int, lease: int) -> None:
    h.invoke(p, "release", f"lock/{lease:x}", lease=lease)
    h.done(p, "ok", "release", f"lock/{lease:x}", lease=lease)


def paused_holder(fenced: bool) -> H:
    """Holder 0x10 (process 1) writes start, is paused past its TTL; 0x20 (process 2)
    acquires and writes; 0x10 wakes and writes end (refused when fenced); 0x20 writes end."""
    h = H()
    acquire(h, 1, 0x10, 5)
    write(h, 1, 0x10, "start", 6)
    h.invoke("nemesis", "start-client-pause", {"client": "locker0"})
    h.done("nemesis", "info", "start-client-pause", {"client": "locker0"})
    acquire(h, 2, 0x20, 8)
    write(h, 2, 0x20, "start", 9)
    h.invoke("nemesis", "stop-client-pause", {"client": "locker0"})
    h.done("nemesis", "info", "stop-client-pause", {"client": "locker0"})
    write(h, 1, 0x10, "end", 10, type_="fail" if fenced else "ok")
    release(h, 1, 0x10)
    write(h, 2, 0x20, "end", 11)
    release(h, 2, 0x20)
    return h


def check(ops: list[Op], fenced: bool = False) -> Any:
    return run_checkers(["lock"], ops, CheckOptions(extra={"lock_fenced": fenced}))["lock"]


def test_a_paused_holder_without_fencing_is_a_violation_naming_both_holders() -> None:
    r = check(paused_holder(fenced=False).ops())
    assert r.valid is False
    assert [a.kind for a in r.anomalies] == ["lock:mutual-exclusion"]
    a = r.anomalies[0]
    first, second = a.detail["holders"]
    assert (first["lease"], first["process"], first["lock_revision"]) == (0x10, 1, 5)
    assert (second["lease"], second["process"], second["lock_revision"]) == (0x20, 2, 8)
    # belief intervals: acquire completion -> release invocation (times in seconds, op indices)
    assert first["from"] == {"time": 0.2, "op": 1} and first["to"] == {"time": 1.5, "op": 14}
    assert second["from"] == {"time": 0.8, "op": 7} and second["to"] == {"time": 1.9, "op": 18}
    # the interleaving: 10 wrote, 20 wrote, 10 wrote again (then 20 once more)
    assert [(w["lease"], w["revision"], w["op"]) for w in a.detail["interleaved"]] == [
        (0x10, 6, 2), (0x20, 9, 8), (0x10, 10, 12), (0x20, 11, 16)]
    assert a.ops[:2] == [0, 6]
    assert "lease 10 (process 1, lock revision 5" in a.explanation
    assert "lease 20 (process 2, lock revision 8" in a.explanation
    assert r.detail["belief_overlaps"] == 1
    lines = LockChecker().summary_lines(r.to_json(), str)
    assert any("holder lease 10 process 1 lock revision 5: holds from 0.200s (op 1) to 1.500s (op 14)" in x
               for x in lines), lines


def test_the_same_pause_with_a_fence_that_refused_the_stale_write_is_valid() -> None:
    r = check(paused_holder(fenced=True).ops(), fenced=True)
    assert r.valid is True and r.anomalies == []
    # both still believed they held (the stale holder's belief is harmless: its write failed)
    assert (r.detail["belief_overlaps"], r.detail["writes_refused"], r.detail["writes_ok"]) == (1, 1, 3)
    assert "1 refused by the fence" in LockChecker().summary_lines(r.to_json(), str)[0]


def test_a_clean_handover_and_an_unknown_write_are_valid() -> None:
    h = H()
    acquire(h, 1, 0x10, 5)
    write(h, 1, 0x10, "start", 6)
    write(h, 1, 0x10, "end", None, type_="info")  # may have landed: never used as evidence
    h.invoke(3, "release", "lock/10", lease=0x10)  # released by a new process (the old one retired)
    h.done(3, "ok", "release", "lock/10", lease=0x10)
    acquire(h, 2, 0x20, 8)
    write(h, 2, 0x20, "start", 9)
    write(h, 2, 0x20, "end", 10)
    release(h, 2, 0x20)
    acquire(h, 4, 0x30, 12)  # never released: holds to the end, alone
    write(h, 4, 0x30, "start", 13)
    r = check(h.ops())
    assert r.valid is True, [a.explanation for a in r.anomalies]
    assert (r.detail["holders"], r.detail["writes_ok"], r.detail["writes_unknown"]) == (3, 4, 1)
    assert r.detail["belief_overlaps"] == 0


def test_real_time_interleaving_is_caught_even_when_the_revisions_hide_it() -> None:
    # the store numbered 0x20's write below both of 0x10's, though it ran between them
    h = H()
    acquire(h, 1, 0x10, 5)
    write(h, 1, 0x10, "start", 7)
    acquire(h, 2, 0x20, 8)
    write(h, 2, 0x20, "start", 6)
    write(h, 1, 0x10, "end", 9)
    release(h, 1, 0x10)
    release(h, 2, 0x20)
    r = check(h.ops())
    assert r.valid is False and len(r.anomalies) == 1
    a = r.anomalies[0]
    assert a.detail["evidence"] == "real-time"
    assert [(w["lease"], w["op"]) for w in a.detail["interleaved"]] == [(0x10, 2), (0x20, 6), (0x10, 8)]
    # the same order with honest revisions is found from the revisions (no duplicate report)
    h.lines[7]["revision"] = 8
    h.lines[9]["revision"] = 10
    r = check(h.ops())
    assert r.valid is False and len(r.anomalies) == 1 and "evidence" not in r.anomalies[0].detail


def test_overlapping_beliefs_alone_are_not_a_violation() -> None:
    # 0x10 believes it holds while 0x20 does (its lease expired), but only 0x20 wrote
    h = H()
    acquire(h, 1, 0x10, 5)
    acquire(h, 2, 0x20, 8)
    write(h, 2, 0x20, "start", 9)
    release(h, 2, 0x20)
    release(h, 1, 0x10)
    r = check(h.ops())
    assert r.valid is True and r.detail["belief_overlaps"] == 1


def test_the_check_is_bounded_in_time() -> None:
    h = H()
    for i in range(1, 300):  # 299 holders that never release: every pair overlaps
        acquire(h, i, i, i)
        write(h, i, i, "start", 1000 + i)
    ops = h.ops()
    assert check(ops).valid is True  # disjoint single writes: no interleaving
    r = run_checkers(["lock"], ops, CheckOptions(timeout=1e-9))["lock"]
    assert r.valid == "unknown" and r.unknown_cause is not None and "timeout" in r.unknown_cause


@pytest.mark.parametrize("mutate, problem", [
    (lambda ls: ls[1].pop("lock_revision"), "'lock_revision'"),
    (lambda ls: ls[2].update(lease="x"), "'lease'"),
    (lambda ls: ls[3].pop("revision"), "'revision'"),
    (lambda ls: (ls[2].update(lease=0x99), ls[3].update(lease=0x99)), "holds no lock"),
])
def test_malformed_lock_ops_raise_history_errors(mutate: Any, problem: str) -> None:
    h = paused_holder(fenced=False)
    mutate(h.lines)
    with pytest.raises(HistoryError, match=problem):
        LockChecker().check(h.ops(), CheckOptions())


def test_kvcheck_check_on_lock_histories(tmp_path: Path) -> None:
    def run(path: Path) -> tuple[int, str, str]:
        res = CliRunner().invoke(main, ["check", str(path), "--checker", "lock"], catch_exceptions=False)
        return res.exit_code, res.stdout, res.stderr

    code, out, _ = run(paused_holder(fenced=False).write(tmp_path / "paused.jsonl"))
    assert code == ExitCode.INVALID and "lock:mutual-exclusion" in out, out
    code, out, _ = run(paused_holder(fenced=True).write(tmp_path / "fenced.jsonl"))
    assert code == ExitCode.VALID, out
    h = paused_holder(fenced=False)
    h.lines[9].pop("revision")  # the ok write of 0x20's start, line 10 of the file
    code, _, err = run(h.write(tmp_path / "bad.jsonl"))
    assert code == ExitCode.DATAERR
    assert "bad.jsonl:10:" in err and "'revision'" in err, err
