"""Sequential specifications ("models") the linearizability checker replays histories against.

A model is a small, stateless-by-design Python class: it names an initial state, and ``step``
maps (state, action) to the next state or rejects the action. States must be hashable and
compare by value (the checker interns them into small integers and memoises on them), so
models keep them as ints, strings, tuples, frozensets or ``None``. JSON values read from a
history (lists, dicts) are frozen with ``freeze`` before they become part of a state and thawed
with ``thaw`` when a state is reported.

The checker does not pass raw ``Call`` objects to ``step``: ``Model.action`` first turns a call
into an ``Action`` (its ``f``, the value that matters, its outcome) or drops it (``None``:
failed ops certainly did not happen, in Jepsen's semantics). ``read_only`` tells the checker
that an action never changes the state; such actions are linearized greedily, and dropped
entirely when their output is unknown (crashed reads).

Writing your own model (``kvcheck check --model package.module:Class``)::

    class Counter(Model):
        name = "counter"
        def initial(self):            return 0
        def step(self, state, a):     # a.f, a.value, a.outcome
            if a.f == "add":  return state + a.value
            if a.f == "read": return state if a.value == state else INCONSISTENT
            return INCONSISTENT
        def read_only(self, a):       return a.f == "read"

The class is instantiated with no arguments, or with the ``--init`` value as its single
positional argument when one is given. Histories whose ops carry a ``key`` field are always
checked key by key (each key is an independent object); ``keyed = True`` additionally tells the
CLI that Jepsen ``[k v]`` values are independent-key tuples to split.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Hashable
from typing import Any, NamedTuple

from kvcheck.checker.history import Call, HistoryError
from kvcheck.exitcodes import UsageError

DEFAULT: Any = object()  # sentinel: "use the model's default initial value"


class _Inconsistent:
    """The one value ``Model.step`` returns to reject an action."""

    _instance: _Inconsistent | None = None

    def __new__(cls) -> _Inconsistent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "INCONSISTENT"


INCONSISTENT: Any = _Inconsistent()


_SCALARS = frozenset({int, str, float, bool, type(None)})


def freeze(value: Any) -> Hashable:
    """A hashable, value-comparing form of a JSON value (lists -> tuples, dicts -> sorted
    tuples of pairs tagged so they never equal a list)."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return ("__dict__", tuple(sorted((str(k), freeze(v)) for k, v in value.items())))
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


def show(value: Any) -> str:
    """A value as JSON text for messages (null, not None)."""
    try:
        return json.dumps(thaw(value), sort_keys=True)
    except (TypeError, ValueError):
        return repr(value)


def thaw(value: Any) -> Any:
    """The JSON form of a frozen value (inverse of ``freeze`` up to list/tuple)."""
    if isinstance(value, tuple):
        if len(value) == 2 and value[0] == "__dict__" and isinstance(value[1], tuple):
            return {k: thaw(v) for k, v in value[1]}
        return [thaw(v) for v in value]
    if isinstance(value, frozenset):
        items = [thaw(v) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return items
    return value


class Action(NamedTuple):
    """What a model steps on: the call's ``f``, its value (the completion's value for ok
    calls, e.g. what a read returned; the invocation's otherwise) and its outcome
    ("ok", "info", "pending" or, when a model keeps failed calls, "fail")."""

    f: str
    value: Any
    outcome: str


class Model:
    """Base class of every model; subclass it and override ``initial`` and ``step``."""

    name: str = "model"
    keyed: bool = False

    def initial(self) -> Hashable:
        """The initial state (hashable, compared by value)."""
        raise NotImplementedError

    def step(self, state: Any, action: Action) -> Any:
        """The state after ``action`` in ``state``, or ``INCONSISTENT``."""
        raise NotImplementedError

    def read_only(self, action: Action) -> bool:
        """True when ``action`` never changes the state (reads). Default: False (always safe)."""
        return False

    def action(self, call: Call) -> Action | None:
        """The action of a call, or None to drop it. Default: failed calls did not happen."""
        if call.outcome == "fail":
            return None
        f = call.f
        return Action(f if isinstance(f, str) else str(f), call.value, call.outcome)

    def describe(self, state: Any) -> Any:
        """The JSON form of a state for reports."""
        return thaw(state)

    def explain(self, state: Any, action: Action) -> str:
        """Why ``step`` rejected ``action`` in ``state`` (for final paths)."""
        return f"{action.f} {show(action.value)} is not possible in state {show(self.describe(state))}"

    def droppable(self, actions: list[Action]) -> set[int]:
        """Indices of actions that can be dropped without changing the verdict, e.g. writes
        with unknown outcome whose value nobody observes (CHECKER-ALGORITHMS §1.3). Only
        exact reductions belong here. Default: none."""
        return set()


def _bad(call: Call, problem: str) -> HistoryError:
    op = call.completion if call.completion is not None else call.invoke
    return HistoryError(f"op {op.id} ({call.f} {call.value!r}): {problem}", op)


class Register(Model):
    """A read/write register. A read of null means "unset"; reads compare literally."""

    name = "register"
    _fs: tuple[str, ...] = ("read", "write")

    def __init__(self, init: Any = None) -> None:
        self.init = freeze(init)

    def initial(self) -> Hashable:
        return self.init

    def action(self, call: Call) -> Action | None:
        f = call.f
        if f not in self._fs:
            raise _bad(call, f"{self.name} model has no operation {f!r} (expected {', '.join(self._fs)})")
        outcome = call.outcome
        if outcome == "fail":
            return None
        value = call.value
        if f == "cas":
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise _bad(call, "a cas value must be [old new]")
            return Action(f, (freeze(value[0]), freeze(value[1])), outcome)
        return Action(f, freeze(value), outcome)

    def step(self, state: Any, action: Action) -> Any:
        f = action.f
        if f == "read":
            return state if action.value == state else INCONSISTENT
        if f == "write":
            return action.value
        return INCONSISTENT

    def read_only(self, action: Action) -> bool:
        return action.f == "read"

    def explain(self, state: Any, action: Action) -> str:
        if action.f == "read":
            return f"can't read {show(action.value)} from register {show(state)}"
        return super().explain(state, action)

    def droppable(self, actions: list[Action]) -> set[int]:
        """Writes and cas with unknown outcome whose value no read and no cas observes: they
        can take effect last (§1.3). Exact only without compare-failed cas, which observe
        "not old"."""
        observed: set[Any] = set()
        for a in actions:
            if a.f == "read" and a.outcome == "ok":
                observed.add(a.value)
            elif a.f == "cas":
                if a.outcome == "fail":  # a compare-failed cas observes "not old": no dropping
                    return set()
                observed.add(a.value[0])
        out = set()
        for i, a in enumerate(actions):
            if a.outcome not in ("info", "pending") or a.f not in ("write", "cas"):
                continue
            written = a.value if a.f == "write" else a.value[1]
            if written not in observed:
                out.add(i)
        return out


class CasRegister(Register):
    """A register with compare-and-set: cas [old new] succeeds only when the value is old.

    With ``fail_cas_means_compare_failed`` a failed cas is kept and means "the compare
    failed" (the value was not old at some point in its interval), as etcd tests record it.
    """

    name = "cas-register"
    _fs = ("read", "write", "cas")

    def __init__(self, init: Any = None, *, fail_cas_means_compare_failed: bool = False) -> None:
        super().__init__(init)
        self.fail_cas_means_compare_failed = fail_cas_means_compare_failed

    def action(self, call: Call) -> Action | None:
        if call.outcome == "fail" and call.f == "cas" and self.fail_cas_means_compare_failed:
            value = call.value
            if not isinstance(value, list | tuple) or len(value) != 2:
                raise _bad(call, "a cas value must be [old new]")
            return Action("cas", freeze(value), "fail")
        return super().action(call)

    def droppable(self, actions: list[Action]) -> set[int]:
        """Also compare-failed cas whose old value is never written and is not the initial
        value: the compare fails everywhere (§1.5)."""
        written = {a.value for a in actions if a.f == "write"}
        written |= {a.value[1] for a in actions if a.f == "cas" and a.outcome != "fail"}
        vacuous = {i for i, a in enumerate(actions)
                   if a.f == "cas" and a.outcome == "fail"
                   and a.value[0] not in written and a.value[0] != self.init}
        rest = [i for i in range(len(actions)) if i not in vacuous]
        inner = super().droppable([actions[i] for i in rest])
        return vacuous | {rest[j] for j in inner}

    def step(self, state: Any, action: Action) -> Any:
        if action.f == "cas":
            old, new = action.value
            if action.outcome == "fail":
                return state if state != old else INCONSISTENT
            return new if state == old else INCONSISTENT
        return super().step(state, action)

    def read_only(self, action: Action) -> bool:
        return action.f == "read" or (action.f == "cas" and action.outcome == "fail")

    def explain(self, state: Any, action: Action) -> str:
        if action.f == "cas":
            old, new = action.value
            if action.outcome == "fail":
                return f"cas {show(old)}->{show(new)} can't fail its compare: register holds {show(old)}"
            return f"can't cas {show(old)}->{show(new)}: register holds {show(state)}"
        return super().explain(state, action)


class MultiRegister(Model):
    """Knossos' multi-register: a txn's value is a list of [f k v] micro-ops (read/write)
    over named registers, applied atomically. A register never written reads as null."""

    name = "multi-register"

    def __init__(self, init: Any = None) -> None:
        if init is None:
            init = {}
        if not isinstance(init, dict):
            raise UsageError(f"multi-register --init must be a JSON object, got {init!r}")
        self.init = tuple(sorted((str(k), freeze(v)) for k, v in init.items()))

    def initial(self) -> Hashable:
        return self.init

    def action(self, call: Call) -> Action | None:
        if call.outcome == "fail":
            return None
        value = call.value
        if not isinstance(value, list | tuple):
            raise _bad(call, "a multi-register value must be a list of [f k v] micro-ops")
        micro = []
        for m in value:
            if not isinstance(m, list | tuple) or len(m) != 3 or m[0] not in ("read", "write"):
                raise _bad(call, f"bad micro-op {m!r}: expected [read|write k v]")
            f, k, v = m
            if f == "read" and call.outcome != "ok":
                continue  # an unknown outcome observed nothing
            micro.append((f, str(k), freeze(v)))
        return Action(str(call.f), tuple(micro), call.outcome)

    def step(self, state: Any, action: Action) -> Any:
        regs = dict(state)
        changed = False
        for f, k, v in action.value:
            if f == "read":
                if regs.get(k) != v:
                    return INCONSISTENT
            else:
                if regs.get(k) != v or k not in regs:
                    regs[k] = v
                    changed = True
        return tuple(sorted(regs.items())) if changed else state

    def read_only(self, action: Action) -> bool:
        return all(f == "read" for f, _, _ in action.value)

    def describe(self, state: Any) -> Any:
        return {k: thaw(v) for k, v in state}

    def explain(self, state: Any, action: Action) -> str:
        regs = dict(state)
        for f, k, v in action.value:
            if f == "read" and regs.get(k) != v:
                return f"can't read {k}={show(v)}: {k} holds {show(regs.get(k))}"
        return super().explain(state, action)


class KV(Model):
    """A key's string value with get/put/append, as in MIT 6.824 kv logs: a missing key
    reads as "" (the initial value), put replaces the value, append concatenates."""

    name = "kv"
    keyed = True

    def __init__(self, init: Any = "") -> None:
        if not isinstance(init, str):
            raise UsageError(f"kv --init must be a JSON string, got {init!r}")
        self.init = init

    def initial(self) -> Hashable:
        return self.init

    def action(self, call: Call) -> Action | None:
        f = call.f
        if f not in ("get", "put", "append"):
            raise _bad(call, f"kv model has no operation {f!r} (expected get, put, append)")
        if call.outcome == "fail":
            return None
        value = call.value
        if value is None:
            value = ""
        if not isinstance(value, str):
            value = str(value)
        return Action(f, value, call.outcome)

    def step(self, state: Any, action: Action) -> Any:
        f = action.f
        if f == "get":
            return state if action.value == state else INCONSISTENT
        if f == "put":
            return action.value
        if f == "append":
            return state + action.value
        return INCONSISTENT

    def read_only(self, action: Action) -> bool:
        return action.f == "get"

    def explain(self, state: Any, action: Action) -> str:
        if action.f == "get":
            return f"can't get {show(action.value)}: key holds {show(state)}"
        return super().explain(state, action)


class Mutex(Model):
    """A lock: acquire succeeds only when free, release only when held."""

    name = "mutex"

    def __init__(self, init: Any = False) -> None:
        if not isinstance(init, bool):
            raise UsageError(f"mutex --init must be true (held) or false (free), got {init!r}")
        self.init = init

    def initial(self) -> Hashable:
        return self.init

    def action(self, call: Call) -> Action | None:
        if call.f not in ("acquire", "release"):
            raise _bad(call, f"mutex model has no operation {call.f!r} (expected acquire, release)")
        return super().action(call)

    def step(self, state: Any, action: Action) -> Any:
        if action.f == "acquire":
            return True if not state else INCONSISTENT
        if action.f == "release":
            return False if state else INCONSISTENT
        return INCONSISTENT

    def describe(self, state: Any) -> Any:
        return "held" if state else "free"

    def explain(self, state: Any, action: Action) -> str:
        if action.f == "acquire":
            return "can't acquire: the lock is already held"
        return "can't release: the lock is not held"


class SetModel(Model):
    """A grow-only set: add v; a read returns the whole set (any order)."""

    name = "set"

    def __init__(self, init: Any = None) -> None:
        if init is None:
            init = []
        if not isinstance(init, list):
            raise UsageError(f"set --init must be a JSON list, got {init!r}")
        self.init = frozenset(freeze(v) for v in init)

    def initial(self) -> Hashable:
        return self.init

    def action(self, call: Call) -> Action | None:
        if call.f not in ("add", "read"):
            raise _bad(call, f"set model has no operation {call.f!r} (expected add, read)")
        if call.outcome == "fail":
            return None
        value = call.value
        if call.f == "read":
            if call.outcome != "ok":
                return Action("read", None, call.outcome)
            if not isinstance(value, list | tuple | set | frozenset):
                raise _bad(call, "a set read must return a list")
            return Action("read", frozenset(freeze(v) for v in value), call.outcome)
        return Action("add", freeze(value), call.outcome)

    def step(self, state: Any, action: Action) -> Any:
        if action.f == "add":
            return state if action.value in state else state | {action.value}
        if action.f == "read":
            return state if action.value == state else INCONSISTENT
        return INCONSISTENT

    def read_only(self, action: Action) -> bool:
        return action.f == "read"

    def explain(self, state: Any, action: Action) -> str:
        if action.f == "read":
            missing = sorted(map(repr, state - action.value))
            extra = sorted(map(repr, action.value - state))
            return f"read is missing {missing} and has unexpected {extra}"
        return super().explain(state, action)


BUILTIN: dict[str, type[Model]] = {
    "register": Register,
    "cas-register": CasRegister,
    "multi-register": MultiRegister,
    "kv": KV,
    "mutex": Mutex,
    "set": SetModel,
}


def get_model(spec: str, init: Any = DEFAULT, *, fail_cas_means_compare_failed: bool = False) -> Model:
    """The model named ``spec`` (a built-in name or ``package.module:Class``) with its initial
    value ``init`` (``DEFAULT``: the model's own default). Raises UsageError when unknown."""
    if spec in BUILTIN:
        cls = BUILTIN[spec]
        if fail_cas_means_compare_failed and cls is not CasRegister:
            raise UsageError(f"--fail-cas-means-compare-failed applies to cas-register, not {spec}")
        if cls is CasRegister:
            if init is DEFAULT:
                return CasRegister(fail_cas_means_compare_failed=fail_cas_means_compare_failed)
            return CasRegister(init, fail_cas_means_compare_failed=fail_cas_means_compare_failed)
        return cls() if init is DEFAULT else cls(init)  # type: ignore[call-arg]
    if ":" not in spec:
        raise UsageError(
            f"unknown model {spec!r}: expected one of {', '.join(BUILTIN)} or package.module:Class"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"model {spec!r}: cannot import {module_name!r}: {exc}") from exc
    cls_obj = getattr(module, attr, None)
    if not isinstance(cls_obj, type) or not issubclass(cls_obj, Model):
        raise UsageError(f"model {spec!r}: {attr!r} is not a kvcheck.checker.models.Model subclass")
    if fail_cas_means_compare_failed:
        raise UsageError("--fail-cas-means-compare-failed applies to cas-register only")
    try:
        return cls_obj() if init is DEFAULT else cls_obj(init)  # type: ignore[call-arg]
    except TypeError as exc:
        raise UsageError(f"model {spec!r}: cannot instantiate: {exc}") from exc
