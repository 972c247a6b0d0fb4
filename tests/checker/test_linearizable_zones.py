"""The unique-value fast path (Gibbons–Korach zones over cas chains) against the exact
search, differentially: same verdict on every generated history, the same first op that
cannot be linearized, and, as a relaxation with compare-failed cas, never a false alarm."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcheck.checker.history import pair_calls
from kvcheck.checker.linearizable import build_entries, check_history
from kvcheck.checker.models import get_model
from kvcheck.checker.search import Search, run_to_end
from kvcheck.checker.zones import check_unique, first_failing_end, observers_if_unique

_spec = importlib.util.spec_from_file_location(
    "kvcheck_test_props", Path(__file__).with_name("test_linearizable_props.py"))
assert _spec is not None and _spec.loader is not None
props: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(props)

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _corrupt(sim: Any, rng: random.Random) -> None:
    """Make one read return another written value, the initial value, or a fresh one; or
    report a cas that succeeded as failed (a negative read that cannot be)."""
    reads = [op for op in sim.ops if op.type == "ok" and op.f == "read"]
    cas = [op for op in sim.ops if op.type == "ok" and op.f == "cas"]
    if cas and rng.random() < 0.3:
        rng.choice(cas).type = "fail"
    elif reads:
        op = rng.choice(reads)
        choices = [*sim.written, None, 10_000]
        op.value = rng.choice(choices)


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 40), corrupt=st.booleans(),
       compare_failed=st.booleans())
def test_zones_agree_with_exact_search(seed: int, n: int, corrupt: bool, compare_failed: bool) -> None:
    rng = random.Random(seed)
    sim = props.simulate(seed, "cas-register", n, unique=True)
    if corrupt:
        _corrupt(sim, rng)
    model = get_model("cas-register", fail_cas_means_compare_failed=compare_failed)
    entries = build_entries(model, pair_calls(sim.ops))
    exact = run_to_end(Search(model, entries, model.initial()).run())
    fast = check_unique(entries, model.initial())
    has_compare_failed = any(e.action.outcome == "fail" for e in entries)
    if has_compare_failed:
        # undecided, a sound violation, or valid with a checked linearization (the witness)
        assert fast is None or fast[0] is exact.valid, fast
    else:
        assert fast is not None, "values are unique: the fast path must decide"
        assert fast[0] is exact.valid, fast
    if fast is not None and fast[0] is False and not has_compare_failed:
        assert first_failing_end(entries, model.initial()) == exact.failed


def test_the_witness_decides_most_valid_histories_with_compare_failed_cas() -> None:
    """Our workloads' histories have many compare-failed cas: the witness (a linearization
    built from the zones and checked step by step) proves most valid ones without search."""
    model = get_model("cas-register", fail_cas_means_compare_failed=True)
    decided = total = 0
    for seed in range(200):
        sim = props.simulate(seed, "cas-register", 60, unique=True)
        entries = build_entries(model, pair_calls(sim.ops))
        if not any(e.action.outcome == "fail" for e in entries):
            continue
        exact = run_to_end(Search(model, entries, model.initial()).run())
        fast = check_unique(entries, model.initial())
        assert fast is None or fast[0] is exact.valid
        if exact.valid:
            total += 1
            decided += fast is not None
    assert total >= 50 and decided >= 0.9 * total, (decided, total)


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 60))
def test_zones_verdict_and_report_match_the_search_path(seed: int, n: int) -> None:
    """check_history via the fast path names the same failing op as the search would."""
    rng = random.Random(seed)
    sim = props.simulate(seed, "cas-register", n, unique=True)
    _corrupt(sim, rng)
    model = get_model("cas-register")
    r = check_history(sim.ops, model)
    key = r.keys["null"]
    entries = build_entries(model, pair_calls(sim.ops))
    exact = run_to_end(Search(model, entries, model.initial()).run())
    assert key.valid is exact.valid
    if exact.valid is False:
        assert exact.failed is not None
        assert key.method == "zones" and key.reason
        assert key.op is not None and key.op["index"] == entries[exact.failed].call.completion.id  # type: ignore[union-attr]
        assert key.final_paths and key.minimal_history and key.minimal_is_1_minimal


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 50), corrupt=st.booleans(),
       compare_failed=st.booleans())
def test_dead_value_pruning_is_exact(seed: int, n: int, corrupt: bool, compare_failed: bool) -> None:
    """The search with dead-value pruning decides exactly as the plain search (it may notice
    a violation at an earlier return, never at a later one)."""
    rng = random.Random(seed)
    sim = props.simulate(seed, "cas-register", n, unique=True)
    if corrupt:
        _corrupt(sim, rng)
    model = get_model("cas-register", fail_cas_means_compare_failed=compare_failed)
    entries = build_entries(model, pair_calls(sim.ops))
    plain = run_to_end(Search(model, entries, model.initial()).run())
    observers = observers_if_unique(entries, model.initial())
    assert observers is not None
    pruned = run_to_end(Search(model, entries, model.initial(), observers=observers).run())
    assert pruned.valid is plain.valid
    if not plain.valid:
        assert pruned.failed is not None and plain.failed is not None
        assert entries[pruned.failed].end <= entries[plain.failed].end
