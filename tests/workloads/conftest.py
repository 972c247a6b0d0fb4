"""Fixtures for the harness tests. A fake target: one atomic in-memory register map behind a latency, with a
stale-read switch. It exercises the runner, generators, nemesis and recorder without the
store; the simulation target tests use the real nodes."""

from __future__ import annotations

import random

import pytest
import trio

from kvcheck.workloads.client import Indeterminate


class FakeClient:
    def __init__(self, target: FakeTarget, process: int) -> None:
        self.target = target
        self.process = process
        self.closed = False

    async def _delay(self) -> None:
        t = self.target
        await trio.sleep(t.rng.uniform(0.001, 0.01))
        if t.hang_process is not None and self.process == t.hang_process:
            await trio.sleep_forever()
        if t.down:
            raise Indeterminate("unavailable", "fake target is down")

    async def read(self, key: str) -> int | str | None:
        await self._delay()
        t = self.target
        if t.stale_reads and t.history.get(key):
            return t.rng.choice(t.history[key])
        return t.data.get(key)

    async def write(self, key: str, value: int) -> None:
        await self._delay()
        self.target._set(key, value)

    async def cas(self, key: str, old: int, new: int) -> bool:
        await self._delay()
        t = self.target
        if t.data.get(key, 0) != old:
            return False
        t._set(key, new)
        return True

    async def close(self) -> None:
        self.closed = True


class FakeTarget:
    def __init__(self, rng: random.Random, nodes: int = 3, *, stale_reads: bool = False) -> None:
        self.rng = rng
        self.node_ids = list(range(1, nodes + 1))
        self.data: dict[str, int] = {}
        self.history: dict[str, list[int]] = {}
        self.stale_reads = stale_reads
        self.down = False
        self.hang_process: int | None = None
        self.calls: list[tuple[str, object]] = []
        self.clients: dict[int, FakeClient] = {}

    def _set(self, key: str, value: int) -> None:
        self.data[key] = value
        self.history.setdefault(key, []).append(value)

    def client(self, process: int) -> FakeClient:
        c = self.clients[process] = FakeClient(self, process)
        return c

    def supported_faults(self) -> tuple[str, ...]:
        return ("partition", "kill", "pause", "clock", "packet", "disk", "member")

    async def wait_healthy(self, timeout: float) -> bool:
        return not self.down

    async def leader(self) -> int | None:
        return self.node_ids[0]

    async def block_links(self, blocked: list[list[int]]) -> None:
        self.calls.append(("block", blocked))

    async def heal_links(self) -> None:
        self.calls.append(("heal", None))

    async def kill(self, node: int) -> None:
        self.calls.append(("kill", node))

    async def restart(self, node: int) -> None:
        self.calls.append(("restart", node))

    async def pause(self, node: int) -> None:
        self.calls.append(("pause", node))

    async def resume(self, node: int) -> None:
        self.calls.append(("resume", node))

    async def set_clock(self, node: int, rate: float, offset: float) -> None:
        self.calls.append(("clock", (node, rate, offset)))

    async def reset_clock(self, node: int) -> None:
        self.calls.append(("reset-clock", node))

    async def set_packet_faults(self, loss: float, delay: float, duplicate: float) -> None:
        self.calls.append(("packet", (loss, delay, duplicate)))

    async def crash_disk(self, node: int, torn: bool) -> None:
        self.calls.append(("disk", (node, torn)))

    async def remove_member(self, node: int) -> bool:
        self.calls.append(("remove", node))
        return True

    async def add_member(self, node: int) -> int | None:
        self.calls.append(("add", node))
        return node


@pytest.fixture
def fake_target() -> type[FakeTarget]:
    return FakeTarget


def fake_executor(stale_reads: bool = False):  # type: ignore[no-untyped-def]
    """An Executor (kvcheck.workloads.run) running the real runner on the fake target."""
    import trio.testing

    from kvcheck.workloads.determinism import deterministic_trio, substream
    from kvcheck.workloads.execution import Execution
    from kvcheck.workloads.recorder import Recorder
    from kvcheck.workloads.runner import drive

    def execute(config, progress):  # type: ignore[no-untyped-def]
        async def main() -> Execution:
            target = FakeTarget(substream(config.seed, "fake"), config.nodes, stale_reads=stale_reads)
            rec = Recorder(trio.current_time)
            rec.on_event(lambda op: progress.event(op, rec.now()))
            info = await drive(target, config, rec)
            return Execution(rec.ops, info, {"node1.log": "fake node log\n"})

        with deterministic_trio(config.seed):
            return trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

    return execute


@pytest.fixture
def make_fake_executor():  # type: ignore[no-untyped-def]
    return fake_executor
