"""A minimal failing sub-history must fail for the same reason as the full history.

Pinned test data: the keys found invalid in ``kvcheck run --workload kv --faults
partition,kill,clock --bug local_reads`` with seeds 3 and 5 (5 nodes, 10 clients, 30 s
simulated; only those keys' ops kept, with their original indices). Seed 3's key k4 is the
case where the minimal history once was an info cas [318,329] and a read of 329 — linearizable
on its own, because the write of 318 the cas compares against had been dropped.

For every invalid key: the minimal sub-history, checked on its own, is invalid; the same op
cannot be linearized; the model rejects that op for the same reason (the same read value, the
same cas, ...); and every cas in it, info ones included, comes with the write of its old
value when that write is in the history.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kvcheck.checker.formats import ops_from_dicts, read_history
from kvcheck.checker.linearizable import check_history, compare_failed_ops
from kvcheck.checker.models import get_model

DATA = Path(__file__).with_name("data")
FILES = sorted(DATA.glob("kv-local-reads-seed*.jsonl"))


def _rejection(paths: list[list[dict]]) -> set[str]:  # type: ignore[type-arg]
    """Why the model rejects the failing op, without the state it was in."""
    return {re.sub(r" (?:in state|from register|register holds) .*$", "", p[-1]["inconsistent"])
            for p in paths}


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_minimal_history_fails_for_the_same_reason(path: Path) -> None:
    ops, _ = read_history(path)
    model = get_model("cas-register", fail_cas_means_compare_failed=True)
    result = check_history(compare_failed_ops(ops), model, timeout=60)
    invalid = {k: r for k, r in result.keys.items() if r.valid is False}
    assert invalid, "the pinned keys are all invalid"
    written = {(o.key, o.value if o.f == "write" else o.value[1]): o.index for o in ops
               if o.type == "ok" and o.f in ("write", "cas")}
    for key, full in invalid.items():
        assert full.op is not None and full.minimal_history and full.minimal_is_1_minimal
        alone = check_history(ops_from_dicts(full.minimal_history), model, timeout=60).keys[key]
        assert alone.valid is False, (key, full.minimal_history)
        assert alone.op is not None and alone.op["index"] == full.op["index"], key
        assert full.final_paths and alone.final_paths
        assert _rejection(alone.final_paths) <= _rejection(full.final_paths), key
        kept = {o["index"] for o in full.minimal_history}
        for o in full.minimal_history:
            if o["f"] == "cas" and o["type"] != "invoke":
                source = written.get((key, o["value"][0]))
                assert source is None or source in kept, (key, o)
