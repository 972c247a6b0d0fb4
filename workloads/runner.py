"""The test loop inside one trio run: worker threads invoke the generator's ops through
clients while the nemesis runs its schedule, then the final phase.

Phases of a run (times are seconds since the workload began, the history's time 0):
1. main: ``concurrency`` threads take ops from the workload's generator under a time limit
   (and ``--rate`` stagger); the nemesis runs the fault schedule alongside;
2. heal: every fault still active is stopped (nemesis ops recorded);
3. recover: wait until the target reports a healthy cluster (bounded by ``recovery_timeout``)
   and then ``recovery_quiet`` seconds more;
4. final reads: each key is read again with fresh processes; while none got an answer they
   are repeated until the run's recovery bound after the heal has passed (``_recovery_reads``),
   so a store that never answers again shows it in the history;
5. member reads (``member_reads``): each key read from every member on its own, once that
   member has caught up (``workloads.memberreads``).

Through all phases, where the run asks for it (``hash_check_interval``) and the target can,
a harness process asks every member for HashKV at the leader's revision every few seconds
(``workloads.hashcheck``: etcd's periodic corruption check, recorded as ``hash_kv`` ops).

A workload may also run long-lived tasks beside the worker threads (watch streams, lease
keepalives, compactions): if it has ``async background(env: Background)``, that runs from
the start of the main phase until recovery is over (``env.stop`` is then set and the task
gets ``stop_grace`` seconds to wind down before it is cancelled), with its own process ids
(``env.new_process()``, from ``BACKGROUND_PROCESS_BASE`` up) and its own random substream,
so workloads without it run exactly as before.

An op whose client call exceeds ``client_timeout`` (or raises ``Indeterminate``) completes as
``info`` and its process is retired: the thread continues as process ``p + concurrency``.
``DefiniteFailure`` completes as ``fail``; the process stays.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import trio

from kvcheck.checker.availability import BAD_RESPONSE
from kvcheck.checker.history import pair_calls
from kvcheck.reference.client import BadResponse, KVClient
from kvcheck.workloads.client import DefiniteFailure, Indeterminate, RegisterClient
from kvcheck.workloads.clientpause import ClientGates
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.determinism import substream
from kvcheck.workloads.generator import Context, Generator, OpSpec, Wait
from kvcheck.workloads.hashcheck import HashChecker, HashCheckTarget, TimerHashCheckTarget
from kvcheck.workloads.nemesis import FaultTarget, Nemesis
from kvcheck.workloads.recorder import Recorder
from kvcheck.workloads.workload import WorkloadLike, make_workload


class Target(FaultTarget, Protocol):
    """A cluster the runner can test: clients per process, health, and the faults.

    ``client`` is the register client the register and kv workloads use; ``kv_client`` the
    store's whole client interface (``kvcheck.reference.client.KVClient``: put, range, txn,
    leases, watches) for workloads that need more. Each client process gets its own."""

    def client(self, process: int) -> RegisterClient: ...

    def kv_client(self, process: int) -> KVClient: ...

    async def wait_healthy(self, timeout: float) -> bool: ...


BACKGROUND_PROCESS_BASE = 100_000


@dataclass
class Background:
    """What a workload's background task gets: the target, the recorder, a random substream,
    fresh process ids, and ``stop`` (set when the run wants the task to end)."""

    target: Target
    recorder: Recorder
    rng: random.Random
    client_timeout: float
    time_limit: float
    stop: trio.Event = field(default_factory=trio.Event)
    # the run's pausable clients (the nemesis's client-pause fault; workloads/clientpause.py)
    clients: ClientGates = field(default_factory=ClientGates)
    _next_process: int = BACKGROUND_PROCESS_BASE

    def new_process(self) -> int:
        p = self._next_process
        self._next_process += 1
        return p

    def now(self) -> float:
        """Seconds on the history's clock."""
        return self.recorder.now()


@dataclass
class PhaseTimes:
    main_end: float = 0.0
    healed: float = 0.0
    recovered: float = 0.0
    healthy: bool = False
    end: float = 0.0


@dataclass
class RunnerOptions:
    concurrency: int = 10
    time_limit: float = 30.0
    rate: float | None = None
    client_timeout: float = 2.0
    recovery_timeout: float = 20.0
    recovery_quiet: float = 1.0
    final_read_time: float = 10.0
    stop_grace: float = 5.0
    member_reads: bool = False
    # Seconds after the final heal within which the store must answer (RunConfig.recovery_bound);
    # None: the final reads are one pass, whatever they got (see Runner._recovery_reads), and
    # a member down or behind at the member reads is not asked again (memberreads).
    recovery_bound: float | None = None
    # Seconds between rounds of the periodic HashKV check of every member (workloads.hashcheck);
    # None: none.
    hash_check_interval: float | None = None


@dataclass
class Runner:
    target: Target
    workload: WorkloadLike
    recorder: Recorder
    nemesis: Nemesis
    options: RunnerOptions
    rng: random.Random
    times: PhaseTimes = field(default_factory=PhaseTimes)
    on_phase: Callable[[str], None] | None = None
    background_rng: random.Random | None = None
    member_reads: dict[str, Any] = field(default_factory=dict)  # what the member reads did
    hash_checks: dict[str, Any] = field(default_factory=dict)  # what the periodic HashKV checks did
    _changed: trio.Event = field(default_factory=trio.Event)
    _processes: dict[int, int] = field(default_factory=dict)  # thread -> current process
    _freed: set[int] = field(default_factory=set)  # threads whose op completed

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def run(self) -> PhaseTimes:
        interval = self.options.hash_check_interval
        if interval is None:
            return await self._run_with_background()
        checker = HashChecker(self.target, self.recorder, interval, self.options.client_timeout)
        if isinstance(self.target, TimerHashCheckTarget):
            checker.start_timers()
            try:
                return await self._run_with_background()
            finally:
                checker.stop.set()
                self.hash_checks = checker.info()
        if not isinstance(self.target, HashCheckTarget):
            self.hash_checks = {"skipped": "the target cannot ask each member for HashKV"}
            return await self._run_with_background()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(checker.run)
            try:
                times = await self._run_with_background()
            finally:
                checker.stop.set()  # the round under way ends; no op is left open
        self.hash_checks = checker.info()
        return times

    async def _run_with_background(self) -> PhaseTimes:
        background = getattr(self.workload, "background", None)
        if background is None:
            return await self._run()
        env = Background(self.target, self.recorder, self.background_rng or random.Random(0),
                         self.options.client_timeout, self.options.time_limit,
                         clients=self.nemesis.clients)
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def run_background() -> None:
                try:
                    await background(env)
                finally:
                    done.set()

            nursery.start_soon(run_background)
            times = await self._run(before_final=env, background_done=done)
            nursery.cancel_scope.cancel()
        return times

    async def _run(self, before_final: Background | None = None,
                   background_done: trio.Event | None = None) -> PhaseTimes:
        from kvcheck.workloads import generator as gen

        opts = self.options
        origin = trio.current_time()
        main: Generator = self.workload.generator()
        if opts.rate:
            main = gen.rate(opts.rate, main)
        main = gen.time_limit(opts.time_limit, main)
        self._phase("main")
        async with trio.open_nursery() as nursery:
            self.nemesis.bind(nursery)
            nemesis_scope = trio.CancelScope(deadline=origin + opts.time_limit)

            async def run_nemesis() -> None:
                with nemesis_scope:
                    await self.nemesis.run(origin)

            nursery.start_soon(run_nemesis)
            await self._run_clients(main, origin)
            nemesis_scope.cancel()
        self.times.main_end = trio.current_time() - origin
        self._phase("heal")
        async with trio.open_nursery() as nursery:
            self.nemesis.bind(nursery)
            await self.nemesis.heal_all()
        self.times.healed = trio.current_time() - origin
        healed_at = self.recorder.now()
        self._phase("recover")
        self.times.healthy = await self.target.wait_healthy(opts.recovery_timeout)
        await trio.sleep(opts.recovery_quiet)
        self.times.recovered = trio.current_time() - origin
        if before_final is not None and background_done is not None:
            before_final.stop.set()  # the background winds down before the final reads
            with trio.move_on_after(opts.stop_grace):
                await background_done.wait()
        self._phase("final")
        final_from = len(self.recorder.ops)
        final = gen.time_limit(opts.final_read_time, self.workload.final_generator(opts.concurrency))
        await self._run_clients(final, trio.current_time())
        await self._recovery_reads(final_from, healed_at)
        if opts.member_reads:
            from kvcheck.workloads.memberreads import read_every_member

            self._phase("members")
            self.member_reads = await read_every_member(
                self.target, self.workload, self.recorder, timeout=opts.final_read_time,
                client_timeout=opts.client_timeout, retry_for=opts.recovery_bound or 0.0)
        self.times.end = trio.current_time() - origin
        return self.times

    async def _recovery_reads(self, since: int, healed_at: float) -> None:
        """Repeat the final reads (fresh processes, a pause between passes) while none of
        them got an answer, until ``recovery_bound`` seconds after the final heal have passed
        and ``MIN_OPS`` of one kind (f) were invoked after that (final reads that come that
        late anyway, the lease workload's, are not repeated): Raft promises progress once a
        majority is up and connected, so a store that still answers nothing then is stuck
        (e.g. a leader whose entries its followers can never accept), and the history shows
        it (checker.availability judges the window after the final heal). A single pass of
        final reads, each bounded by the client timeout, ends long before the bound, and a
        stuck store looked like a slow one. A store that answers costs no extra op.
        ``since``: the index of the first op of the final phase; ``healed_at``: recorder
        seconds of the final heal."""
        from kvcheck.checker.availability import MIN_OPS
        from kvcheck.workloads import generator as gen

        opts = self.options
        if opts.recovery_bound is None:
            return
        judged_from = healed_at + opts.recovery_bound
        give_up = judged_from + opts.recovery_bound  # a hard stop, whatever happens
        while self.recorder.now() < give_up:
            ops = [op for op in self.recorder.ops[since:] if not op.is_nemesis]
            if not ops or any(op.type == "ok" for op in ops):
                return  # no final reads (the lock workloads), or the store answered
            late: dict[Any, int] = {}  # f -> final ops invoked once the bound had passed
            for op in ops:
                if op.type == "invoke":
                    late[op.f] = late.get(op.f, 0) + int(op.time is not None and op.time / 1e9 >= judged_from)
            if max(late.values(), default=MIN_OPS) >= MIN_OPS:
                return  # enough for the availability checker to judge one kind of final op
            await trio.sleep(min(1.0, opts.client_timeout))
            again = gen.time_limit(opts.final_read_time, self.workload.final_generator(opts.concurrency))
            await self._run_clients(again, trio.current_time())

    def _phase(self, name: str) -> None:
        if self.on_phase:
            self.on_phase(name)

    async def _run_clients(self, generator: Generator, origin: float) -> None:
        """Jepsen's interpreter: one dispatcher asks the generator on behalf of each free
        thread (in a seeded random order: any free thread may take the next op, and runs
        stay deterministic) and hands ops to the workers;
        it sleeps until the earliest Wait deadline or the next completion. Busy threads are
        not asked, so a worker wakes only for its own op. After a ``shared`` Wait (one that
        every thread gets until its time, such as the rate limiter's) the rest of the round is
        skipped and completions before that time do not wake the dispatcher."""
        threads = self.options.concurrency
        sends: list[trio.MemorySendChannel[OpSpec | None]] = []
        free: list[int] = []
        active = set(range(threads))
        reached = 0.0  # latest Wait deadline reached (now - origin may round just below it)
        async with trio.open_nursery() as nursery:
            for thread in range(threads):
                send, recv = trio.open_memory_channel[OpSpec | None](1)
                sends.append(send)
                nursery.start_soon(self._worker, recv, origin, thread)
                free.append(thread)
            while active:
                now = max(trio.current_time() - origin, reached)
                waits: list[Wait] = []
                progress = True
                while progress and free:  # again while a round changed something
                    progress = False
                    waits = []
                    order = sorted(free)
                    self.rng.shuffle(order)  # any free thread may take the next op
                    for thread in order:
                        ctx = Context(now, thread, self._process(thread), threads, self.rng)
                        r = generator.next(ctx)
                        if r is None:
                            free.remove(thread)
                            active.discard(thread)
                            sends[thread].send_nowait(None)
                            progress = True
                        elif isinstance(r, Wait):
                            waits.append(r)
                            if r.shared:  # every other free thread would get the same wait
                                break
                        else:
                            free.remove(thread)
                            sends[thread].send_nowait(r)
                            progress = True
                if not active:
                    break
                busy = active - set(free)
                if not busy and all(w.until is None for w in waits):
                    raise RuntimeError("generator deadlock: every thread waits for a completion "
                                       "but no operation is in flight")
                changed = self._changed
                untils = [w.until for w in waits if w.until is not None]
                if untils:
                    deadline = min(untils)
                    if any(w.shared for w in waits):
                        # Every thread would get this wait until then, whatever completes.
                        await trio.sleep_until(origin + deadline)
                    else:
                        with trio.move_on_at(origin + deadline):
                            await changed.wait()
                    if trio.current_time() >= origin + deadline:
                        reached = max(reached, deadline)
                else:
                    await changed.wait()
                # threads whose op completed are free again
                free = sorted(set(free) | self._freed)
                self._freed.clear()

    def _process(self, thread: int) -> int:
        return self._processes.setdefault(thread, thread)

    async def _worker(self, recv: trio.MemoryReceiveChannel[OpSpec | None], origin: float,
                      thread: int) -> None:
        threads = self.options.concurrency
        process = self._process(thread)
        client = self.workload.client(self.target, process)
        try:
            async for spec in recv:
                if spec is None:
                    return
                outcome = await self._invoke(client, process, spec)
                ctx = Context(trio.current_time() - origin, thread, process, threads, self.rng)
                for w in spec.watchers:
                    w.complete(ctx, spec, outcome)
                if outcome == "info":
                    await client.close()
                    process += threads
                    self._processes[thread] = process
                    client = self.workload.client(self.target, process)
                self._freed.add(thread)
                self._notify()
        finally:
            with trio.CancelScope(shield=True):
                await client.close()

    async def _invoke(self, client: Any, process: int, spec: OpSpec) -> str:
        inv = self.recorder.invoke(process, spec.f, spec.value, key=spec.key)
        try:
            with trio.fail_after(self.options.client_timeout):
                answer = await self.workload.invoke(client, spec)
                # (type, value) or (type, value, extra fields for the completion line)
                typ, value = answer[0], answer[1]
                extra = answer[2] if len(answer) > 2 else None
        except trio.TooSlowError:
            self.recorder.complete(inv, "info", spec.value, error="timeout")
            return "info"
        except Indeterminate as exc:
            self.recorder.complete(inv, "info", spec.value, error=exc.error)
            return "info"
        except DefiniteFailure as exc:
            self.recorder.complete(inv, "fail", spec.value, error=exc.error)
            return "fail"
        except BadResponse as exc:  # the store's answer was of another kind: outcome unknown
            self.recorder.complete(inv, "info", spec.value, error=f"{BAD_RESPONSE}: {exc}")
            return "info"
        self.recorder.complete(inv, typ, value, error="compare-failed" if typ == "fail" else None,
                               node=getattr(client, "served_by", None), extra=extra)
        return typ


def summarize(ops: list[Any]) -> dict[str, Any]:
    """Counts of client ops by f and outcome, nemesis faults started/stopped by kind, and the
    latency of ok calls by f in milliseconds (median, 95th and 99th percentile, max)."""
    by: dict[str, dict[str, int]] = {}
    faults: dict[str, dict[str, int]] = {}
    latencies: dict[str, list[int]] = {}
    for call in pair_calls(ops):
        done = call.completion
        if done is not None and done.type == "ok" and done.time is not None and call.invoke.time is not None:
            latencies.setdefault(str(call.f), []).append(done.time - call.invoke.time)
    for op in ops:
        if op.is_nemesis:
            if op.type == "info":
                what, _, kind = str(op.f).partition("-")
                faults.setdefault(kind or what, {"start": 0, "stop": 0})
                if what in ("start", "stop"):
                    faults[kind][what] += 1
            continue
        if op.type == "invoke":
            continue
        row = by.setdefault(str(op.f), {"ok": 0, "fail": 0, "info": 0})
        row[op.type] = row.get(op.type, 0) + 1
    return {"ops": by, "faults": faults,
            "latency_ms": {f: _quantiles_ms(ns) for f, ns in sorted(latencies.items())}}


def _quantiles_ms(ns: list[int]) -> dict[str, float]:
    """Nearest-rank quantiles of nanosecond latencies, in milliseconds."""
    ns = sorted(ns)

    def rank(q: float) -> float:
        return round(ns[min(len(ns) - 1, max(0, math.ceil(q * len(ns)) - 1))] / 1e6, 3)

    return {"p50": rank(0.5), "p95": rank(0.95), "p99": rank(0.99), "max": round(ns[-1] / 1e6, 3)}


async def drive(target: Target, config: RunConfig, recorder: Recorder,
                on_phase: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``config``'s workload and fault schedule on a started target; returns run facts
    for results.json (phase times, faults started and healed)."""
    workload = make_workload(config.workload, keys=config.keys, config=config)
    nemesis = Nemesis(target, recorder, config.schedule, substream(config.seed, "nemesis"))
    options = RunnerOptions(concurrency=config.concurrency, time_limit=config.time_limit,
                            rate=config.rate, client_timeout=config.client_timeout,
                            recovery_timeout=config.recovery_timeout,
                            recovery_quiet=config.recovery_quiet,
                            final_read_time=config.final_read_time,
                            member_reads=config.member_reads,
                            recovery_bound=config.recovery_bound(),
                            hash_check_interval=config.hash_check_interval)
    runner = Runner(target, workload, recorder, nemesis, options, substream(config.seed, "generator"),
                    on_phase=on_phase, background_rng=substream(config.seed, "background"))
    times = await runner.run()
    info = {"phases": asdict(times), "faults_started": dict(nemesis.started),
            "faults_healed": dict(nemesis.healed)}
    if config.member_reads:
        info["member_reads"] = runner.member_reads
    if config.hash_check_interval is not None:
        info["hash_checks"] = runner.hash_checks
    return info
