"""Partitions that move (``move: new-leader``, nemesis.Nemesis._move_cut): which swarm cuts
draw a move, how long they last, and what a move does in the simulation: the deposed
leader, back on a bare majority with the longer log of an older term, asks for votes of
members whose logs end in the new leader's newer, committed entries -- the state in which
the election restriction's order (last term before length) decides who wins. The clean
store stays valid under it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from kvcheck.reference.raft import raft as raft_mod
from kvcheck.workloads.config import RunConfig
from kvcheck.workloads.nemesis import MOVE_MIN_SECONDS, Fault, _params, make_swarm_schedule, move_of
from kvcheck.workloads.run import run_once


def test_half_of_the_swarm_isolate_leader_cuts_move_by_their_own_seed() -> None:
    rng = random.Random(7)
    drawn = [_params("partition", [1, 2, 3, 4, 5], rng, swarm=True) for _ in range(600)]
    moved = [p for p in drawn if "move" in p]
    isolating = [p for p in drawn if p["shape"] == "isolate-leader"]
    assert moved and all(p["shape"] == "isolate-leader" and p["move"] == "new-leader" for p in moved)
    assert all(2 <= p["advances"] <= 4 for p in moved)
    assert 0.3 < len(moved) / len(isolating) < 0.7
    assert all(("move" in p) == bool(move_of(p["seed"])) for p in isolating)
    # a moved cut lasts long enough for an election, a few commits, the move and the next
    # election (or to the end of the run)
    faults = [f for s in range(20) for f in make_swarm_schedule(["partition"], [1, 2, 3], 40.0, random.Random(s),
                                                                gap=2.0, duration=(0.3, 2.0), max_overlap=1)]
    moving = [f for f in faults if f.params.get("move")]
    assert moving and all(f.stop - f.start >= MOVE_MIN_SECONDS - 1e-9 or f.stop >= 39.8 for f in moving)


def _stop_rounds(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        op = json.loads(line)
        if op["process"] == "nemesis" and op["f"] == "stop-partition" and op["type"] == "invoke":
            return op["value"], op["value"].get("rounds", [])
    raise AssertionError("no stop-partition op")


@pytest.mark.parametrize("seed", [1, 4])  # 4 since links deliver in order (3 before)
def test_a_moved_cut_puts_the_old_leader_with_its_longer_older_log_among_newer_voters(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    asked: list[tuple[int, int, int, int]] = []  # (candidate last index, last term, voter's ...)
    handle = raft_mod.Raft.handle_vote_request

    def watch(self: raft_mod.Raft, m: Any) -> None:
        asked.append((m.index, m.log_term, self.log.last_index(), self.log.last_term()))
        handle(self, m)

    monkeypatch.setattr(raft_mod.Raft, "handle_vote_request", watch)
    cfg = RunConfig(workload="kv", nodes=5, seed=seed, time_limit=14.0, faults=["partition"],
                    client_attempt_timeout=0.3)
    cfg.schedule = [Fault("partition", 2.0, 12.0, {"shape": "isolate-leader", "seed": seed, "hold": False,
                                                   "move": "new-leader", "advances": 2})]
    out = run_once(cfg, tmp_path, progress=False)
    value, rounds = _stop_rounds(out.run_dir)
    victim = value["groups"][0][0]
    assert [r["trigger"] for r in rounds] == ["moved"]
    leader = rounds[0]["node"]
    assert leader != victim
    blocked = {tuple(link) for link in rounds[0]["blocked"]}
    minority = {leader} | {n for n in range(1, 6) if (leader, n) not in blocked and n != leader}
    assert len(minority) == 2 and victim not in minority  # the new leader and one more; the rest a bare majority
    assert blocked == {(a, b) for a in minority for b in range(1, 6) if b not in minority} | \
        {(b, a) for a in minority for b in range(1, 6) if b not in minority}
    # the old leader asked for votes with a longer log of an older term than the voter's
    assert any(c_term < v_term and c_index > v_index for c_index, c_term, v_index, v_term in asked)
    assert out.results["valid"] is True, out.results.get("checkers")
    assert out.results["internal"]["liveness"] is None
