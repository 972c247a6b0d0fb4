"""Fixtures for ``kvcheck serve``: a store of real runs made by ``kvcheck run`` on the sim
target, real ``kvcheck serve`` processes (``--port 0``; the URL is read from their first line
of output) and a real ``kvcheck cluster``.

The store holds a valid register run (seed 1), an invalid one (``--bug local_reads``, seed 4:
the simulation is deterministic, so this seed finds the stale read every time) and a kv run
with kill faults; tests that corrupt files copy a run first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

RUNS = [
    ("register", "partition", 1, []),
    ("register", "partition", 4, ["local_reads"]),
    ("kv", "kill", 2, []),
]


def kvcheck(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "kvcheck", *args], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode not in (0, 1):
        raise AssertionError(f"kvcheck {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_run(store: Path, workload: str, faults: str, seed: int, bugs: list[str]) -> None:
    args = ["run", "--workload", workload, "--faults", faults, "--seed", str(seed), "--time-limit", "10",
            "--store", str(store), "--no-progress"]
    for b in bugs:
        args += ["--bug", b]
    kvcheck(*args)


@pytest.fixture(scope="session")
def run_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("store")
    for workload, faults, seed, bugs in RUNS:
        make_run(store, workload, faults, seed, bugs)
        time.sleep(0.01)  # distinct timestamped directories
    return store


def run_ids(store: Path) -> dict[tuple[str, int], str]:
    """(workload, seed) -> run id, read from each run's config.json."""
    import json

    out = {}
    for config in store.glob("*/*/config.json"):
        doc = json.loads(config.read_text())
        out[(doc["workload"], doc["seed"])] = config.parent.relative_to(store).as_posix()
    return out


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str  # without a trailing slash
    log: Path


def start_server(*args: str) -> Server:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fd, name = tempfile.mkstemp(prefix="kvcheck-serve-", suffix=".log")
    log = Path(name)
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kvcheck", "serve", "--port", "0", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        m = re.search(r"kvcheck serve: (http://\S+?)/? ", log.read_text(errors="replace"))
        if m:
            return Server(proc, m.group(1).rstrip("/"), log)
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise AssertionError("kvcheck serve did not start:\n" + log.read_text(errors="replace"))


def stop_server(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
    server.log.unlink(missing_ok=True)


@pytest.fixture
def serve() -> Iterator[type]:
    """Start servers with ``serve(*args)``; all are stopped after the test."""
    started: list[Server] = []

    class Starter:
        def __new__(cls, *args: str) -> Server:  # type: ignore[misc]
            server = start_server(*args)
            started.append(server)
            return server

    yield Starter
    for server in started:
        stop_server(server)


def start_cluster_dir(data_dir: Path, *extra: str) -> None:
    """``kvcheck cluster start``; again (at most twice more) when a port it picked was taken
    by another process of this shared machine in the meantime."""
    for attempt in range(3):
        proc = kvcheck("cluster", "start", "--nodes", "3", "--data-dir", str(data_dir), *extra, check=False)
        if proc.returncode == 0:
            return
        kvcheck("cluster", "stop", "--data-dir", str(data_dir), check=False)
        if "Address already in use" not in proc.stderr or attempt == 2:
            raise AssertionError(f"kvcheck cluster start exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        shutil.rmtree(data_dir)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Path]:
    """A real 3-member ``kvcheck cluster`` with a few keys; stopped after the test."""
    data_dir = tmp_path / "cluster"
    start_cluster_dir(data_dir)
    try:
        for key, value in [("/registry/pods/default/web-1", "v1"), ("/registry/pods/default/web-2", "v2"),
                           ("/registry/services/api", "svc"), ("/config/app.json", '{"replicas": 3}')]:
            kvcheck("ctl", "--data-dir", str(data_dir), "put", key, value)
        yield data_dir
    finally:
        kvcheck("cluster", "stop", "--data-dir", str(data_dir), check=False)
