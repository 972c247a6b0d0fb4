"""Append chains (CHECKER-ALGORITHMS §6) against the exact search, differentially: kv
histories (get/put/append) with unique tokens from a simulated store, half of them with one
get corrupted (a token dropped, two swapped, one repeated, the put left out, a token nobody
appended, another get's list), must get the same verdict from the chains as from the exact
search, and the same first op that cannot be linearized; check_history decides them by the
chains and explains them with a 1-minimal failing sub-history that keeps, for each get in
it, the put and the appends its value shows."""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcheck.checker.history import Call, pair_calls
from kvcheck.checker.linearizable import build_entries, check_history
from kvcheck.checker.models import get_model
from kvcheck.checker.search import Search, run_to_end
from kvcheck.checker.zones import append_parses, check_appends, first_failing_end, reduce_appends

_spec = importlib.util.spec_from_file_location(
    "kvcheck_test_props_appends", Path(__file__).with_name("test_linearizable_props.py"))
assert _spec is not None and _spec.loader is not None
props: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(props)

SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class AppendSim(props.Sim):  # type: ignore[misc]
    """The kv simulation with unique, prefix-free tokens ("x7y"), as 6.824 logs have."""

    def new_call(self) -> tuple[str, Any, Any]:
        key = self.rng.choice(self.keys)
        r = self.rng.random()
        if r < 0.4:
            return "get", None, key
        self.next_value += 1
        return ("put" if r < 0.55 else "append"), f"x{self.next_value}y", key


def simulate(seed: int, n: int, keys: list[Any]) -> Any:
    sim = AppendSim(random.Random(seed), "kv", True, keys)
    while len(sim.ops) < n:
        sim.tick()
    return sim


def _tokens(value: str) -> list[str]:
    return [t + "y" for t in value.split("y") if t]


def corrupt(sim: Any, rng: random.Random) -> None:
    gets = [op for op in sim.ops if op.type == "ok" and op.f == "get"]
    if not gets:
        return
    op = rng.choice(gets)
    toks = _tokens(op.value or "")
    how = rng.randrange(6)
    if how == 0 and toks:
        del toks[rng.randrange(len(toks))]
    elif how == 1 and len(toks) >= 2:
        i = rng.randrange(len(toks) - 1)
        toks[i], toks[i + 1] = toks[i + 1], toks[i]
    elif how == 2 and toks:
        toks.insert(rng.randrange(len(toks) + 1), rng.choice(toks))
    elif how == 3 and toks:
        toks = toks[1:]
    elif how == 4:
        toks.insert(rng.randrange(len(toks) + 1), "x999999y")
    else:
        toks = _tokens(rng.choice(gets).value or "")
    op.value = "".join(toks)


def _by_key(ops: list[Any]) -> dict[Any, list[Call]]:
    by_key: dict[Any, list[Call]] = {}
    for c in pair_calls(ops):
        by_key.setdefault(c.key, []).append(c)
    return by_key


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 50), corrupted=st.booleans())
def test_append_chains_agree_with_exact_search(seed: int, n: int, corrupted: bool) -> None:
    rng = random.Random(seed)
    sim = simulate(seed, n, ["k"])
    if corrupted:
        corrupt(sim, rng)
    model = get_model("kv")
    for calls in _by_key(sim.ops).values():
        entries = build_entries(model, calls)
        exact = run_to_end(Search(model, entries, model.initial()).run())
        fast = check_appends(entries, model.initial())
        assert fast is not None, "tokens are unique and prefix-free: the chains must decide"
        assert fast[0] is exact.valid, (fast, [op.to_dict() for op in sim.ops])
        if not exact.valid:
            assert first_failing_end(entries, model.initial(), check_appends) == exact.failed


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 80), corrupted=st.booleans())
def test_check_history_decides_kv_by_chains_and_explains(seed: int, n: int, corrupted: bool) -> None:
    rng = random.Random(seed)
    sim = simulate(seed, n, ["a", "b"])
    if corrupted:
        corrupt(sim, rng)
    model = get_model("kv")
    r = check_history(sim.ops, model, all_keys=True)
    for key, calls in _by_key(sim.ops).items():
        entries = build_entries(model, calls)
        exact = run_to_end(Search(model, entries, model.initial()).run())
        res = r.keys[str(key)]
        assert res.valid is exact.valid and res.method == "zones"
        if exact.valid is False:
            assert exact.failed is not None and res.op is not None
            assert res.op["index"] == entries[exact.failed].call.completion.id  # type: ignore[union-attr]
            assert res.reason and res.minimal_history and res.minimal_is_1_minimal
            # self-contained: each get it keeps comes with the put and appends it shows
            parses = append_parses(entries, model.initial())
            assert parses is not None
            kept = {o["index"] for o in res.minimal_history}
            for i, parts in parses.items():
                if entries[i].call.completion.id in kept:  # type: ignore[union-attr]
                    assert all(entries[j].call.invoke.id in kept for j in parts), (i, parts)


def test_chains_step_aside_when_tokens_repeat_or_nest() -> None:
    """Tokens that repeat, or where one is a prefix of another, could split a read two ways:
    the chains do not apply and the exact search decides."""
    model = get_model("kv")
    for values in (["ab", "ab"], ["a", "ab"]):
        sim = simulate(1, 0, ["k"])
        for i, v in enumerate(values):
            sim.emit(i, "invoke", "append", v, "k")
            sim.emit(i, "ok", "append", v, "k")
        entries = build_entries(model, pair_calls(sim.ops))
        assert reduce_appends(entries, model.initial()) is None
