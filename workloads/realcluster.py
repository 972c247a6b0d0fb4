"""What the two real-process targets share: ``workloads/local`` (the reference store's server
processes) and ``workloads/etcd`` (real etcd), each a cluster of processes on 127.0.0.1 with a
fault-injecting proxy (``workloads.peerproxy``) on every peer link.

``ProcessCluster`` is their common base: the start-and-stop bracket (``running``: start,
wait for a leader, retry a start whose member lost a port it was given, stop every member
however the block ends), health (``wait_healthy`` over the subclass's ``_statuses`` read by
``_progress``), the proxy-backed link faults and the fault kinds real processes cannot take
(clock, disk: ``RunConfig.validate`` already rejects them). Each target overrides how it
starts, stops, signals and asks its members.

``execute_real`` runs a config on such a cluster in real time, and handles Ctrl-C the same
way for both (``StopOnSigint``): pressed while the cluster starts, the start is abandoned and
every member stopped; pressed during the run, the workload and faults stop where they are,
the members are asked for their state (``final_info``) and stopped; either way what was
recorded is returned with ``info["stopped"]`` and ``info["interrupted"]`` saying why, so
``run_once`` writes and checks it (a second Ctrl-C raises ``KeyboardInterrupt`` at once).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import trio

from kvcheck.reference import cluster as rc
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.peerproxy import PeerProxy
from kvcheck.workloads.recorder import Recorder
from kvcheck.workloads.runner import drive

if TYPE_CHECKING:
    from kvcheck.workloads.execution import Execution, Progress, StopOnSigint
    from kvcheck.workloads.runner import Target

C = TypeVar("C", bound="ProcessCluster")


class PortTaken(RuntimeError):
    """A member could not bind a port chosen for it (another process took it meanwhile)."""


class ProcessCluster:
    """Real member processes behind peer proxies; create inside ``trio.run`` and use
    ``running``. Subclasses set ``proxy`` and implement the members' life and status."""

    FAULTS: tuple[str, ...] = ()
    START_ATTEMPTS = 1  # a start whose member raised PortTaken is tried again up to this often

    proxy: PeerProxy  # set by the subclass

    def __init__(self, config: RunConfig, path: Path) -> None:
        self.config = config
        self.path = path
        self.ports = rc.PortHold()  # members' own ports while no process of theirs listens
        self.events: list[str] = []
        self.unexpected_exits: list[str] = []  # exit reports of members that stopped on their own
        self._nursery: trio.Nursery | None = None

    def supported_faults(self) -> tuple[str, ...]:
        return self.FAULTS

    def _log(self, text: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {text}")

    # -- life -------------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery) -> None:
        raise NotImplementedError

    async def wait_started(self, timeout: float) -> None:
        raise NotImplementedError

    async def shutdown(self) -> None:
        raise NotImplementedError

    async def prepare(self) -> None:
        """Called once the cluster has started, before the workload (nothing by default)."""

    async def final_info(self) -> dict[str, Any]:
        """What results.json records of the members once the workload ended (or was
        interrupted), asked before they are stopped."""
        raise NotImplementedError

    def logs(self) -> dict[str, str]:
        raise NotImplementedError

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls: type[C], config: RunConfig, path: Path, startup_timeout: float,
                      on_created: Callable[[C], None] | None = None) -> AsyncIterator[C]:
        """The cluster started under ``path`` with a leader elected; when the block ends its
        tasks are cancelled and every member is stopped, even if the block failed.
        ``on_created`` gets each cluster before it starts (its logs outlive a failed start).
        A start whose member could not bind a port chosen for it (``PortTaken``) is tried
        again with new ports, up to ``START_ATTEMPTS`` in all."""
        for attempt in range(1, cls.START_ATTEMPTS + 1):
            cluster = cls(config, path)
            if on_created is not None:
                on_created(cluster)
            try:
                async with trio.open_nursery() as nursery:
                    await cluster.start(nursery)
                    try:
                        await cluster.wait_started(startup_timeout)
                    except PortTaken:
                        if attempt == cls.START_ATTEMPTS:
                            raise
                        nursery.cancel_scope.cancel()
                        continue
                    yield cluster
                    nursery.cancel_scope.cancel()
                    return
            finally:
                with trio.CancelScope(shield=True):
                    await cluster.shutdown()

    # -- health -----------------------------------------------------------------------------

    async def _statuses(self) -> dict[int, dict[str, Any]]:
        """Each running member's status answer, by node (members that do not answer are left out)."""
        raise NotImplementedError

    @property
    def node_ids(self) -> list[int]:
        raise NotImplementedError

    def _progress(self, status: dict[str, Any]) -> tuple[Any, int, int]:
        """(the leader the member knows, 0 for none; its commit index; its applied index)."""
        raise NotImplementedError

    async def wait_healthy(self, timeout: float) -> bool:
        """Every member answers, all know the same leader, and each has applied what any has
        committed (False after ``timeout``)."""
        with trio.move_on_after(timeout):
            while True:
                seen = [self._progress(s) for s in (await self._statuses()).values()]
                leaders = {leader for leader, _, _ in seen}
                if len(seen) == len(self.node_ids) and len(leaders) == 1 and 0 not in leaders:
                    commit = max(c for _, c, _ in seen)
                    if all(applied >= commit for _, _, applied in seen):
                        return True
                await trio.sleep(0.1)
        return False

    # -- faults on the links (through the proxy) and those real processes cannot take ------

    async def block_links(self, blocked: list[list[int]]) -> None:
        self.proxy.set_blocked({(int(a), int(b)) for a, b in blocked})

    async def heal_links(self) -> None:
        self.proxy.set_blocked(set())

    async def set_packet_faults(self, loss: float, delay: float, duplicate: float) -> None:
        r = self.proxy.rules
        r.loss, r.delay, r.duplicate = loss, delay, duplicate

    async def set_clock(self, node: int, rate: float, offset: float) -> None:
        raise RuntimeError("clock faults are simulation-only (rejected by RunConfig.validate)")

    async def reset_clock(self, node: int) -> None:
        raise RuntimeError("clock faults are simulation-only (rejected by RunConfig.validate)")

    async def crash_disk(self, node: int, torn: bool) -> None:
        raise RuntimeError("disk faults are simulation-only (rejected by RunConfig.validate)")


def execute_real(cls: type[ProcessCluster], config: RunConfig, progress: Progress, path: Path,
                 startup_timeout: float = 30.0) -> Execution:
    """Run ``config`` on a ``cls`` cluster under ``path`` (real time); Ctrl-C stops the run
    where it is and still returns what was recorded (see the module's note)."""
    from kvcheck.workloads.execution import Execution, StopOnSigint

    sigint = StopOnSigint()

    async def main() -> Execution:
        created: list[ProcessCluster] = []
        recorder: Recorder | None = None
        info: dict[str, Any] = {}
        with sigint.watch(trio.CancelScope()), _interrupted_start(sigint, lambda: recorder is None):
            # Ctrl-C while the cluster starts
            async with cls.running(config, path, startup_timeout, created.append) as cluster:
                await cluster.prepare()
                recorder = Recorder(trio.current_time)
                rec = recorder
                recorder.on_event(lambda op: progress.event(op, rec.now()))
                with sigint.watch(trio.CancelScope()):  # Ctrl-C during the run: keep the cluster
                    # (each subclass implements the rest of ``Target``: its clients and process faults)
                    info = await drive(cast("Target", cluster), config, recorder)
                if sigint.interrupted:
                    info = {"stopped": f"interrupted (Ctrl-C) at {recorder.now():.3f}s", "interrupted": True}
                    sigint.watch(trio.CancelScope())  # a later Ctrl-C is the second one: it raises
                info.update(await cluster.final_info())
        if recorder is None:  # interrupted before the workload began
            info = {"stopped": "interrupted (Ctrl-C) while the cluster was starting", "interrupted": True}
        ops = recorder.ops if recorder is not None else []
        return Execution(ops, info, created[-1].logs() if created else {})

    try:
        with sigint:
            return trio.run(main)
    except BaseExceptionGroup as group:
        # trio wraps what the nursery raised; one cause (a member that could not start, a
        # proxy that could not listen) is re-raised bare so its message reaches the user
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], Exception):
            raise leaves[0] from group
        raise


@contextlib.contextmanager
def _interrupted_start(sigint: StopOnSigint, starting: Callable[[], bool]) -> Iterator[None]:
    """A terminal's Ctrl-C reaches the whole process group, members included: a member it
    killed while the cluster was starting may be seen ("cannot start: ... killed by signal
    2") before the cancel the signal handler scheduled arrives. When Ctrl-C was pressed
    before the workload began, that failure is the interrupt, not a cluster that cannot
    start; any other failure is raised. The failure may come wrapped with the Cancelled of
    that very cancel (a BaseExceptionGroup, which ``except Exception`` would let through: CI
    saw [etcd-starting] exit 70 so); a second Ctrl-C (KeyboardInterrupt) and a bare Cancelled
    (the scope's own business) always pass."""
    try:
        yield
    except BaseException as exc:
        if not (sigint.interrupted and starting()) or not isinstance(exc, Exception | BaseExceptionGroup):
            raise
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in _leaves(exc)):
            raise


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]
