"""`kvcheck run` / `kvcheck replay` command-line errors: usage errors exit 64 with a message
that names the option, a missing run directory exits 66."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def kvcheck(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kvcheck", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_clock_and_disk_faults_on_local_target_are_usage_errors(tmp_path: Path) -> None:
    p = kvcheck("run", "--target", "local", "--faults", "partition,clock", cwd=tmp_path)
    assert p.returncode == 64, p.stderr
    assert "clock can only be injected in the simulation" in p.stderr
    assert not (tmp_path / "store").exists()


def test_bad_options_exit_64(tmp_path: Path) -> None:
    for args, msg in ((["--faults", "flood"], "unknown fault kind 'flood'"),
                      (["--nodes", "2"], "--nodes: a cluster has 3 to 7 nodes"),
                      (["--test-count", "0"], "--test-count must be at least 1"),
                      (["--bug", "nope"], "unknown bug switch"),
                      (["--workload", "queue"], "Invalid value for '--workload'"),
                      (["--hash-check-interval", "-1"], "--hash-check-interval: must be positive")):
        p = kvcheck("run", *args, cwd=tmp_path)
        assert p.returncode == 64, (args, p.stderr)
        assert msg in p.stderr, (args, p.stderr)


def test_replay_of_missing_or_bad_run_dir(tmp_path: Path) -> None:
    p = kvcheck("replay", str(tmp_path / "nope"), cwd=tmp_path)
    assert p.returncode == 66
    (tmp_path / "run").mkdir()
    p = kvcheck("replay", str(tmp_path / "run"), cwd=tmp_path)
    assert p.returncode == 66 and "config.json: missing" in p.stderr
    (tmp_path / "run" / "config.json").write_text("{")
    p = kvcheck("replay", str(tmp_path / "run"), cwd=tmp_path)
    assert p.returncode == 65 and "not JSON" in p.stderr


def test_recheck_of_a_run_with_a_malformed_hash_check_exits_65(tmp_path: Path) -> None:
    """A run directory whose history has a hash_kv answer the members checker cannot read is
    malformed input (exit 65, file:line and the field named), and nothing is rewritten."""
    p = kvcheck("run", "--workload", "register", "--time-limit", "3", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    run_dir = (tmp_path / "store" / "latest").resolve()
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    at = next(i for i, ln in enumerate(lines) if '"f":"hash_kv"' in ln and '"type":"ok"' in ln)
    op = json.loads(lines[at])
    for bad, says in (({**op, "value": "junk"}, "value must be an object"),
                      ({**op, "value": {**op["value"], "hash": None}}, "value field hash must be"),
                      ({**op, "value": {**op["value"], "revision": -5}}, "value field revision must be")):
        (run_dir / "results.json").unlink(missing_ok=True)
        (run_dir / "history.jsonl").write_text("\n".join([*lines[:at], json.dumps(bad), *lines[at + 1:]]) + "\n")
        p = kvcheck("check", str(run_dir), cwd=tmp_path)
        assert p.returncode == 65, p.stdout + p.stderr
        assert f"history.jsonl:{at + 1}: hash_kv op" in p.stderr and says in p.stderr, p.stderr
        assert not (run_dir / "results.json").exists()


def test_readme_quick_start_run_command(tmp_path: Path) -> None:
    """The README's first quick-start command, as printed (after `pip install . &&`)."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    line = next(ln.strip() for ln in readme.splitlines() if ln.startswith("    pip install . && kvcheck run"))
    command = line.split("&&", 1)[1].split()
    assert command[:2] == ["kvcheck", "run"]
    p = kvcheck(*command[1:], cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    latest = tmp_path / "store" / "latest"
    for name in ("config.json", "history.jsonl", "results.json", "report.html", "node1.log"):
        assert (latest / name).is_file(), name
    assert "linearizable (cas-register): valid" in p.stdout
    assert "partition x" in p.stdout


def test_test_count_runs_consecutive_seeds_and_exits_with_the_worst(tmp_path: Path) -> None:
    p = kvcheck("run", "--workload", "register", "--faults", "partition", "--time-limit", "4",
                "--seed", "2", "--test-count", "2", "--bug", "local_reads", cwd=tmp_path)
    runs = sorted((tmp_path / "store" / "register").iterdir())
    assert len(runs) == 2
    import json
    seeds = [json.loads((r / "config.json").read_text())["seed"] for r in runs]
    assert seeds == [2, 3]
    verdicts = [json.loads((r / "results.json").read_text())["valid"] for r in runs]
    assert p.returncode == (1 if False in verdicts else 0)
    assert "2 runs:" in p.stdout


def _run_and_replay(tmp_path: Path, fifo: bool, *args: str) -> None:
    """``kvcheck run`` with ``args`` records ``network.fifo`` as ``fifo``, and a replay of its
    directory runs on the same links again (same config, same history)."""
    import json
    p = kvcheck("run", "--workload", "register", "--seed", "4", *args, cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    run = (tmp_path / "store" / "latest").resolve()
    assert json.loads((run / "config.json").read_text())["network"]["fifo"] is fifo
    r = kvcheck("replay", str(run), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    replayed = (tmp_path / "store" / "latest").resolve()
    assert replayed != run
    assert json.loads((replayed / "config.json").read_text())["network"]["fifo"] is fifo
    assert (replayed / "history.jsonl").read_bytes() == (run / "history.jsonl").read_bytes()


def test_ordered_links_is_recorded_and_replayed(tmp_path: Path) -> None:
    """`--ordered-links` (the default) runs the simulation on in-order links (network.fifo in
    config.json), a replay of that directory runs on them again (same history), and with
    `--unordered-links` links reorder, in the replay too."""
    _run_and_replay(tmp_path, True, "--faults", "partition", "--time-limit", "3", "--ordered-links", "--swarm")
    _run_and_replay(tmp_path, True, "--time-limit", "2")
    _run_and_replay(tmp_path, False, "--time-limit", "2", "--unordered-links")
