"""The built-in models step exactly as documented, and get_model resolves names, initial
values and user classes (package.module:Class), rejecting what it cannot use."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from kvcheck.checker.history import Call, HistoryError, Op
from kvcheck.checker.models import (
    DEFAULT,
    INCONSISTENT,
    Action,
    CasRegister,
    Model,
    freeze,
    get_model,
    thaw,
)
from kvcheck.exitcodes import UsageError


def call(f: str, value: Any, outcome: str = "ok", result: Any = None) -> Call:
    inv = Op(type="invoke", f=f, value=value, process=0, position=0)
    comp = None if outcome == "pending" else Op(
        type=outcome, f=f, value=result if result is not None else value, process=0, position=1)
    return Call(inv, comp, 0, 1 if outcome in ("ok", "fail") else float("inf"))


def run(model: Model, *steps: tuple[str, Any]) -> Any:
    state = model.initial()
    for f, v in steps:
        a = model.action(call(f, v))
        assert a is not None
        state = model.step(state, a)
        if state is INCONSISTENT:
            return state
    return model.describe(state)


def test_register_reads_compare_literally_and_null_means_unset() -> None:
    m = get_model("register")
    assert run(m, ("read", None)) is None
    assert run(m, ("read", 0)) is INCONSISTENT
    assert run(m, ("write", 3), ("read", 3)) == 3
    assert run(m, ("write", 3), ("read", 4)) is INCONSISTENT
    assert run(get_model("register", 0), ("read", 0)) == 0
    with pytest.raises(HistoryError, match="no operation 'cas'"):
        m.action(call("cas", [1, 2]))


def test_cas_register() -> None:
    m = get_model("cas-register", 0)
    assert run(m, ("cas", [0, 5]), ("read", 5)) == 5
    assert run(m, ("cas", [1, 5])) is INCONSISTENT
    assert m.action(call("cas", [1, 5], "fail")) is None  # a failed cas did not happen
    with pytest.raises(HistoryError, match=r"\[old new\]"):
        m.action(call("cas", 3))


def test_failed_cas_means_compare_failed_when_asked() -> None:
    m = get_model("cas-register", 0, fail_cas_means_compare_failed=True)
    assert isinstance(m, CasRegister)
    a = m.action(call("cas", [0, 1], "fail"))
    assert a is not None and m.read_only(a)
    assert m.step(0, a) is INCONSISTENT  # the compare could not have failed
    assert m.step(2, a) == 2
    assert "can't fail" in m.explain(0, a)


def test_multi_register() -> None:
    m = get_model("multi-register", {"x": 0, "y": 0})
    assert run(m, ("txn", [["read", "x", 0], ["write", "y", 2]]), ("txn", [["read", "y", 2]])) == {"x": 0, "y": 2}
    assert run(m, ("txn", [["read", "x", 1]])) is INCONSISTENT
    assert run(get_model("multi-register"), ("txn", [["read", "z", None]])) == {}
    a = m.action(call("txn", [["read", "x", None], ["write", "x", 1]], "info"))
    assert a is not None and a.value == (("write", "x", 1),)  # an info txn observed nothing
    with pytest.raises(HistoryError, match="micro-op"):
        m.action(call("txn", [["incr", "x", 1]]))
    with pytest.raises(UsageError):
        get_model("multi-register", [1])


def test_kv_get_put_append() -> None:
    m = get_model("kv")
    assert m.keyed
    assert run(m, ("get", "")) == ""
    assert run(m, ("append", "x 0 1 y"), ("append", "x 0 2 y"), ("get", "x 0 1 yx 0 2 y")) == "x 0 1 yx 0 2 y"
    assert run(m, ("put", "a"), ("get", "b")) is INCONSISTENT
    with pytest.raises(UsageError):
        get_model("kv", 3)


def test_mutex() -> None:
    m = get_model("mutex")
    assert run(m, ("acquire", None), ("release", None), ("acquire", None)) == "held"
    assert run(m, ("acquire", None), ("acquire", None)) is INCONSISTENT
    assert run(m, ("release", None)) is INCONSISTENT


def test_set() -> None:
    m = get_model("set")
    assert run(m, ("add", 1), ("add", 2), ("read", [2, 1])) == [1, 2]
    assert run(m, ("add", 1), ("read", [])) is INCONSISTENT
    assert "missing" in m.explain(frozenset({1}), Action("read", frozenset(), "ok"))


def test_freeze_thaw_round_trip() -> None:
    v = {"a": [1, [2, None]], "b": "s"}
    assert thaw(freeze(v)) == v
    assert freeze([1, 2]) != freeze({"1": 2})
    hash(freeze(v))


def test_unknown_model_and_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown model 'regster'"):
        get_model("regster")
    with pytest.raises(UsageError, match="cannot import"):
        get_model("no_such_module_xyz:Model")
    with pytest.raises(UsageError, match="cas-register"):
        get_model("register", fail_cas_means_compare_failed=True)
    with pytest.raises(UsageError, match="not a kvcheck"):
        get_model("builtins:dict")


def test_user_model_is_loaded_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_counter_model.py").write_text(textwrap.dedent('''
        from kvcheck.checker.models import INCONSISTENT, Model

        class Counter(Model):
            name = "counter"
            def __init__(self, init=0):
                self.init = init
            def initial(self):
                return self.init
            def step(self, state, a):
                if a.f == "add":
                    return state + a.value
                if a.f == "read":
                    return state if a.value == state else INCONSISTENT
                return INCONSISTENT
            def read_only(self, a):
                return a.f == "read"
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    from kvcheck.checker.linearizable import check_history

    m = get_model("my_counter_model:Counter")
    assert m.name == "counter" and run(m, ("add", 2), ("add", 3), ("read", 5)) == 5
    assert run(get_model("my_counter_model:Counter", 10), ("read", 10)) == 10
    ops = [Op(type="invoke", f="add", value=1, process=0), Op(type="ok", f="add", value=1, process=0),
           Op(type="invoke", f="read", value=None, process=1), Op(type="ok", f="read", value=2, process=1)]
    for i, op in enumerate(ops):
        op.position = i
    assert check_history(ops, m).valid is False
    ops[3].value = 1
    assert check_history(ops, m).valid is True
    sys.modules.pop("my_counter_model", None)


def test_default_sentinel_uses_model_default() -> None:
    assert get_model("register", DEFAULT).initial() is None
    assert get_model("kv", DEFAULT).initial() == ""
