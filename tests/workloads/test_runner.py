"""The runner over a fake target: phases, info on timeout with process retirement, the
final reads, and the same seed giving the same history."""

from __future__ import annotations

import io
from typing import Any

import trio
import trio.testing

from kvcheck.checker.history import pair_calls
from kvcheck.workloads.determinism import deterministic_trio, substream
from kvcheck.workloads.nemesis import Nemesis, make_schedule
from kvcheck.workloads.recorder import Recorder, write_jsonl
from kvcheck.workloads.runner import Runner, RunnerOptions, summarize
from kvcheck.workloads.workload import make_workload


def run_fake(fake_target: Any, seed: int, *, workload: str = "register", hang: int | None = None,
             faults: list[str] | None = None) -> tuple[Recorder, Runner]:
    async def main() -> tuple[Recorder, Runner]:
        target = fake_target(substream(seed, "fake"), nodes=5)
        target.hang_process = hang
        rec = Recorder(trio.current_time)
        sched = make_schedule(faults or [], target.node_ids, 5.0, substream(seed, "schedule"))
        nem = Nemesis(target, rec, sched, substream(seed, "nemesis"))
        runner = Runner(target, make_workload(workload), rec, nem,
                        RunnerOptions(concurrency=4, time_limit=5.0, rate=200, client_timeout=0.5,
                                      recovery_quiet=0.2),
                        substream(seed, "generator"))
        await runner.run()
        return rec, runner

    with deterministic_trio(seed):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_runner_phases_and_final_reads(fake_target: Any) -> None:
    rec, runner = run_fake(fake_target, 1, faults=["partition", "kill"])
    calls = pair_calls(rec.ops)
    assert len(calls) > 500  # ~200 ops/s for 5 s
    assert all(c.outcome == "ok" or (c.f == "cas" and c.outcome == "fail") for c in calls)
    t = runner.times
    assert 5.0 <= t.main_end < 5.5 and t.healthy and t.end > t.recovered
    final = [op for op in rec.ops if op.time is not None and op.time >= t.recovered * 1e9]
    assert {op.f for op in final} == {"read"}
    assert sum(1 for op in final if op.type == "ok") == 4  # one read per thread, one key
    s = summarize(rec.ops)
    assert s["faults"]["partition"] == {"start": 1, "stop": 1}
    # latency quantiles of ok calls, from each call's own invocation and completion times
    for f, q in s["latency_ms"].items():
        ms = sorted((c.completion.time - c.invoke.time) / 1e6 for c in calls
                    if c.f == f and c.outcome == "ok" and c.completion is not None)
        assert q["max"] == round(ms[-1], 3) and q["p50"] == round(ms[(len(ms) + 1) // 2 - 1], 3)
        assert q["p50"] <= q["p95"] <= q["p99"] <= q["max"]
    assert set(s["latency_ms"]) == {"read", "write", "cas"}


def test_latency_quantiles_are_nearest_rank() -> None:
    from kvcheck.checker.history import Op

    ops = []
    for i, ms in enumerate([5, 1, 3, 2, 4, 100, 6, 7, 8, 9]):
        ops.append(Op(type="invoke", f="read", value=None, process=i, time=i * 10**9))
        ops.append(Op(type="ok", f="read", value=1, process=i, time=i * 10**9 + ms * 10**6))
    ops.append(Op(type="invoke", f="write", value=1, process=99, time=0))
    ops.append(Op(type="info", f="write", value=1, process=99, time=50 * 10**9))  # not ok: no latency
    assert summarize(ops)["latency_ms"] == {"read": {"p50": 5.0, "p95": 100.0, "p99": 100.0, "max": 100.0}}


def test_client_timeout_is_info_and_retires_the_process(fake_target: Any) -> None:
    rec, _ = run_fake(fake_target, 2, hang=2)
    timed_out = [op for op in rec.ops if op.type == "info"]
    assert len(timed_out) == 1 and timed_out[0].process == 2 and timed_out[0].error == "timeout"
    later = [op for op in rec.ops[timed_out[0].index:] if op.process == 6]
    assert later, "thread 2 continues as process 2 + concurrency"
    assert all(op.process != 2 for op in rec.ops[timed_out[0].index + 1:])
    pair_calls(rec.ops)  # no invoke after info on process 2


def test_same_seed_same_history_bytes(fake_target: Any) -> None:
    def hist(seed: int) -> str:
        out = io.StringIO()
        write_jsonl(run_fake(fake_target, seed, workload="kv", faults=["partition"])[0].ops, out)
        return out.getvalue()

    assert hist(3) == hist(3)
    assert hist(3) != hist(4)


def test_kv_workload_ops_carry_keys(fake_target: Any) -> None:
    rec, _ = run_fake(fake_target, 5, workload="kv")
    keys = {op.key for op in rec.ops if not op.is_nemesis}
    assert len(keys) == 8 and None not in keys


def _run_wedged(fake_target: Any, seed: int, bound: float | None) -> tuple[Recorder, Runner]:
    """A fake store that stops answering for good once the final heal is done (every call
    ends indeterminate), as a cluster whose leader's entries its followers can never accept."""

    async def main() -> tuple[Recorder, Runner]:
        target = fake_target(substream(seed, "fake"), nodes=3)
        rec = Recorder(trio.current_time)
        nem = Nemesis(target, rec, [], substream(seed, "nemesis"))

        def phase(name: str) -> None:
            if name == "final":
                target.down = True

        runner = Runner(target, make_workload("kv", keys=2), rec, nem,
                        RunnerOptions(concurrency=3, time_limit=2.0, rate=100, client_timeout=0.5,
                                      recovery_quiet=0.2, recovery_bound=bound),
                        substream(seed, "generator"), on_phase=phase)
        await runner.run()
        return rec, runner

    with deterministic_trio(seed):
        return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_final_reads_repeat_until_the_recovery_bound_when_nothing_answers(fake_target: Any) -> None:
    from kvcheck.checker.api import CheckOptions
    from kvcheck.checker.availability import MIN_OPS, AvailabilityChecker

    rec, runner = _run_wedged(fake_target, 3, bound=5.0)
    healed = runner.times.healed * 1e9
    final = [op for op in rec.ops if op.time is not None and op.time >= healed and op.f == "read"]
    assert final and all(op.type in ("invoke", "info") for op in final)
    late = [op for op in final if op.type == "invoke" and op.time is not None and op.time >= healed + 5e9]
    assert len(late) >= MIN_OPS  # invoked once the bound had passed: the checker can judge them
    assert runner.times.end < runner.times.healed + 2 * 5.0 + 2.0  # and it stops soon after
    result = AvailabilityChecker().check(rec.ops, CheckOptions(extra={"availability_bound": 5.0}))
    assert not result.valid and {a.kind for a in result.anomalies} == {"unavailable"}
    # Without a bound (as before): one pass of final reads, ended well inside any bound.
    rec1, runner1 = _run_wedged(fake_target, 3, bound=None)
    assert runner1.times.end < runner1.times.healed + 2.0
    assert AvailabilityChecker().check(rec1.ops, CheckOptions(extra={"availability_bound": 5.0})).valid


def test_final_reads_that_answer_are_one_pass_with_a_bound(fake_target: Any) -> None:
    async def main() -> tuple[Recorder, Runner]:
        target = fake_target(substream(1, "fake"), nodes=5)
        rec = Recorder(trio.current_time)
        runner = Runner(target, make_workload("register"), rec, Nemesis(target, rec, [], substream(1, "nemesis")),
                        RunnerOptions(concurrency=4, time_limit=2.0, rate=200, client_timeout=0.5,
                                      recovery_quiet=0.2, recovery_bound=5.0),
                        substream(1, "generator"))
        await runner.run()
        return rec, runner

    with deterministic_trio(1):
        rec, runner = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    final = [op for op in rec.ops if op.time is not None and op.time >= runner.times.recovered * 1e9]
    assert sum(1 for op in final if op.type == "ok") == 4 and len(final) == 8  # one read per thread
