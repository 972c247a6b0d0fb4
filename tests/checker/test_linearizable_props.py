"""Generated histories (Hypothesis).

- Histories recorded from a simulated sequential execution, with random overlap, crashes
  (info), failures and never-completed calls, are always linearizable.
- The same with one injected anomaly (stale read, lost write, duplicated write, value from
  nowhere) are never linearizable, and the reported minimal sub-history is itself not
  linearizable and 1-minimal (removing any one of its calls makes it linearizable).
- Differential: on small random histories of every model (valid or not, repeated values),
  the checker agrees with a brute-force enumeration of all orders.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcheck.checker import linearizable
from kvcheck.checker.history import INFINITY, Call, Op, pair_calls
from kvcheck.checker.linearizable import build_entries, check_history
from kvcheck.checker.models import INCONSISTENT, Action, Model, get_model
from kvcheck.checker.search import run_to_end
from kvcheck.checker.wgl import DepthFirstSearch

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- a simulated store: ops take effect at a random moment inside their interval ----------


class Sim:
    """Emits a history by running ops against a sequential state, each op taking effect at a
    random moment between its invocation and its completion (or never, for crashed and
    failed ops that did not take effect)."""

    def __init__(self, rng: random.Random, model_name: str, unique: bool, keys: list[Any]) -> None:
        self.rng = rng
        self.model_name = model_name
        self.unique = unique
        self.keys = keys
        self.state: dict[Any, Any] = {}
        self.ops: list[Op] = []
        self.next_value = 1
        self.next_process = 0
        self.idle: list[int] = []
        # process -> [f, invoke value, key, effect (None: not yet), crashed?]
        self.open: dict[int, list[Any]] = {}
        self.floating: list[list[Any]] = []  # crashed, may still take effect
        self.written: list[Any] = []

    def emit(self, process: Any, type_: str, f: str, value: Any, key: Any = None) -> None:
        self.ops.append(Op(type=type_, f=f, value=value, process=process, key=key,
                           position=len(self.ops)))

    def fresh_process(self) -> int:
        self.next_process += 1
        return self.next_process - 1

    def value(self) -> Any:
        if self.unique:
            self.next_value += 1
            return self.next_value - 1
        return self.rng.randrange(3)

    def initial(self, key: Any) -> Any:
        return {"register": None, "cas-register": None, "mutex": False, "set": frozenset(),
                "kv": "", "multi-register": {}}[self.model_name]

    def new_call(self) -> tuple[str, Any, Any]:
        key = self.rng.choice(self.keys)
        r = self.rng.random()
        m = self.model_name
        if m == "register":
            return ("read", None, key) if r < 0.5 else ("write", self.value(), key)
        if m == "cas-register":
            if r < 0.4:
                return "read", None, key
            if r < 0.7:
                return "write", self.value(), key
            old = self.rng.choice(self.written) if self.written and self.rng.random() < 0.8 else self.value()
            return "cas", [old, self.value()], key
        if m == "mutex":
            return ("acquire" if r < 0.5 else "release"), None, key
        if m == "set":
            return ("read", None, key) if r < 0.4 else ("add", self.rng.randrange(4), key)
        if m == "kv":
            if r < 0.4:
                return "get", None, key
            return ("put" if r < 0.6 else "append"), self.rng.choice("ab"), key
        assert m == "multi-register"
        micro = []
        for _ in range(self.rng.randint(1, 2)):
            k = self.rng.choice(["x", "y"])
            micro.append(["read", k, None] if self.rng.random() < 0.5 else ["write", k, self.value()])
        return "txn", micro, key

    def apply(self, f: str, v: Any, key: Any) -> tuple[bool, Any]:
        """Take effect now: (succeeded, completion value)."""
        s = self.state.get(key, self.initial(key))
        m = self.model_name
        if f == "read" and m in ("register", "cas-register"):
            return True, s
        if f == "write":
            self.state[key] = v
            self.written.append(v)
            return True, v
        if f == "cas":
            if s == v[0]:
                self.state[key] = v[1]
                self.written.append(v[1])
                return True, v
            return False, v
        if f == "acquire":
            if s:
                return False, None
            self.state[key] = True
            return True, None
        if f == "release":
            if not s:
                return False, None
            self.state[key] = False
            return True, None
        if f == "add":
            self.state[key] = s | {v}
            return True, v
        if f == "read":  # set
            return True, sorted(s)
        if f == "get":
            return True, s
        if f == "put":
            self.state[key] = v
            return True, v
        if f == "append":
            self.state[key] = s + v
            return True, v
        assert f == "txn"
        regs = dict(s)
        out = []
        for mf, k, mv in v:
            if mf == "read":
                out.append(["read", k, regs.get(k)])
            else:
                regs[k] = mv
                out.append(["write", k, mv])
        self.state[key] = regs
        return True, out

    def tick(self) -> None:
        rng = self.rng
        r = rng.random()
        if r < 0.3 and len(self.open) < 5:
            p = self.idle.pop() if self.idle else self.fresh_process()
            f, v, key = self.new_call()
            self.emit(p, "invoke", f, v, key)
            self.open[p] = [f, v, key, None]
        elif r < 0.55 and self.open:  # some open call takes effect
            undone = [c for c in self.open.values() if c[3] is None]
            if undone:
                c = rng.choice(undone)
                c[3] = self.apply(c[0], c[1], c[2])
        elif r < 0.6 and self.floating:  # a crashed call takes effect late, or never
            c = self.floating.pop(rng.randrange(len(self.floating)))
            if rng.random() < 0.5:
                self.apply(c[0], c[1], c[2])
        elif self.open:
            p = rng.choice(list(self.open))
            f, v, key, effect = self.open[p]
            x = rng.random()
            if effect is None:
                if x < 0.15:  # failed before taking effect: it did not happen
                    del self.open[p]
                    self.emit(p, "fail", f, v, key)
                    self.idle.append(p)
                elif x < 0.3:  # crashed: may take effect later
                    del self.open[p]
                    self.emit(p, "info", f, v, key)
                    self.floating.append([f, v, key])
                return
            del self.open[p]
            ok, value = effect
            if x < 0.1:
                self.emit(p, "info", f, v, key)  # took effect but the client never knew
            else:
                self.emit(p, "ok" if ok else "fail", f, value, key)
                self.idle.append(p)

    def quiesce(self) -> None:
        """Complete every open call (taking effect first if needed)."""
        for p in list(self.open):
            f, v, key, effect = self.open.pop(p)
            if effect is None:
                effect = self.apply(f, v, key)
            ok, value = effect
            self.emit(p, "ok" if ok else "fail", f, value, key)
            self.idle.append(p)


def simulate(seed: int, model_name: str, n: int, *, unique: bool = True,
             keys: list[Any] | None = None, leave_open: bool = True) -> Sim:
    sim = Sim(random.Random(seed), model_name, unique, keys or [None])
    while len(sim.ops) < n:
        sim.tick()
    if not leave_open:
        sim.quiesce()
    return sim


def inject(sim: Sim, kind: str) -> None:
    """Append a sequential block (fresh processes, fresh values) that no linearization can
    explain, whatever the concurrent calls do. Values are unique, so only the named ops can
    produce the values involved."""
    p = sim.fresh_process()
    a, b, c = sim.value(), sim.value(), sim.value()
    if kind == "stale read":
        for v in (a, b):
            sim.emit(p, "invoke", "write", v)
            sim.emit(p, "ok", "write", v)
            sim.state[None] = v
        sim.emit(p, "invoke", "read", None)
        sim.emit(p, "ok", "read", a)
    elif kind == "lost write":  # the register reads as never written after an ok write
        sim.emit(p, "invoke", "write", a)
        sim.emit(p, "ok", "write", a)
        sim.state[None] = a
        sim.emit(p, "invoke", "read", None)
        sim.emit(p, "ok", "read", None)
    elif kind == "duplicated write":  # one cas took effect twice
        sim.emit(p, "invoke", "write", a)
        sim.emit(p, "ok", "write", a)
        for new in (b, c):
            sim.emit(p, "invoke", "cas", [a, new])
            sim.emit(p, "ok", "cas", [a, new])
        sim.state[None] = c
    else:
        assert kind == "value from nowhere"
        sim.emit(p, "invoke", "read", None)
        sim.emit(p, "ok", "read", a)


def _reindex(ops: list[Op]) -> list[Op]:
    for i, op in enumerate(ops):
        op.position = i
    return ops


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(0, 120))
def test_simulated_cas_register_histories_are_valid(seed: int, n: int) -> None:
    sim = simulate(seed, "cas-register", n)
    r = check_history(sim.ops, get_model("cas-register"), timeout=60)
    assert r.valid is True, r.to_json()


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(0, 60),
       model=st.sampled_from(["register", "mutex", "set", "kv", "multi-register"]))
def test_simulated_histories_of_every_model_are_valid(seed: int, n: int, model: str) -> None:
    keys = ["a", "b", "c"] if model == "kv" else None
    sim = simulate(seed, model, n, unique=False, keys=keys)
    r = check_history(sim.ops, get_model(model), timeout=60)
    assert r.valid is True, r.to_json()


ANOMALIES = ["stale read", "lost write", "duplicated write", "value from nowhere"]


def _calls_of(ops: list[dict[str, Any]]) -> list[list[Op]]:
    """The minimal history's ops grouped into calls (invocation + completion)."""
    history = _reindex([Op.from_dict(d) for d in ops])
    return [[c.invoke] + ([c.completion] if c.completion is not None else [])
            for c in pair_calls(history)]


@SETTINGS
@given(seed=st.integers(0, 2**32), before=st.integers(0, 60), after=st.integers(0, 40),
       kind=st.sampled_from(ANOMALIES))
def test_injected_anomaly_is_invalid_and_minimal_history_is_1_minimal_and_self_contained(
        seed: int, before: int, after: int, kind: str) -> None:
    sim = simulate(seed, "cas-register", before)
    inject(sim, kind)
    target = len(sim.ops) + after
    while len(sim.ops) < target:
        sim.tick()
    model = get_model("cas-register")
    r = check_history(sim.ops, model, timeout=60)
    assert r.valid is False, kind
    key = r.keys["null"]
    assert key.op is not None and key.final_paths
    assert key.minimal_history and key.minimal_is_1_minimal
    calls = _calls_of(key.minimal_history)
    flat = _reindex([op for c in calls for op in c])
    flat.sort(key=lambda o: o.id)
    assert check_history(_reindex(flat), model).valid is False
    # Values are unique here, so the minimal history is self-contained: every value an ok
    # read returns or a cas that may have happened (ok, info or never completed) compares
    # against that some call of the history wrote was written by a call in it; and dropping
    # any one call with the calls that observed its write leaves a linearizable history.
    written = {c.invoke.value if c.invoke.f == "write" else c.invoke.value[1]
               for c in pair_calls(sim.ops) if c.invoke.f in ("write", "cas") and c.outcome != "fail"}
    writer = {}
    for j, c in enumerate(calls):
        if c[-1].type != "fail" and c[0].f in ("write", "cas"):
            writer[c[0].value if c[0].f == "write" else c[0].value[1]] = j

    def observed(c: list[Op]) -> Any:
        done = c[-1]
        if done.type == "ok" and done.f == "read":
            return done.value
        if done.f == "cas" and done.type != "fail":  # ok, info, or an invocation never completed
            return done.value[0]
        return None

    for c in calls:
        assert observed(c) not in written or observed(c) in writer, c
    for i in range(len(calls)):
        gone = {i}
        while True:
            more = {j for j, c in enumerate(calls) if writer.get(observed(c)) in gone} - gone
            if not more:
                break
            gone |= more
        rest = sorted((op for j, c in enumerate(calls) if j not in gone for op in c), key=lambda o: o.id)
        assert check_history(_reindex(rest), model).valid is True


# --- differential: brute force over every order ------------------------------------------


def brute_force(model: Model, ops: list[Op], upto: int | None = None) -> bool:
    """Linearizable iff some order of the calls respects real time and the model; calls with
    unknown outcome may be left out (they may take effect after everything).

    ``upto``: only the calls that returned by event ``upto`` are required; calls still open
    then are optional (with their known outcome, as Knossos completes a history) and calls
    invoked later are left out. The first op that cannot be linearized is the smallest
    ``upto`` for which this is False."""
    calls: list[tuple[float, float, Any, Action]] = []
    for c in pair_calls(ops):
        a = model.action(c)
        if a is None:
            continue
        start, end = c.start, c.end
        if upto is not None:
            if start > upto:
                continue
            if end > upto:
                end = INFINITY
        if model.read_only(a) and end == INFINITY:
            continue  # an unknown or optional read changes nothing
        calls.append((start, end, c.key, a))
    by_key: dict[Any, list[tuple[float, float, Any, Action]]] = {}
    for call in calls:
        by_key.setdefault(call[2], []).append(call)

    def search(rest: list[tuple[float, float, Any, Action]], state: Any) -> bool:
        if all(end == INFINITY for _, end, _, _ in rest):
            return True
        first_end = min(end for _, end, _, _ in rest)
        for i, (start, _end, _k, a) in enumerate(rest):
            if start > first_end:
                continue  # something still unlinearized returned before this was invoked
            nxt = model.step(state, a)
            if nxt is INCONSISTENT:
                continue
            if search(rest[:i] + rest[i + 1:], nxt):
                return True
        return False

    return all(search(cs, model.initial()) for cs in by_key.values())


def _mutate(sim: Sim, rng: random.Random) -> None:
    """Change one read's result to something else (a corrupted read)."""
    oks = [op for op in sim.ops if op.type == "ok" and op.f in ("read", "get", "txn")]
    if not oks:
        return
    op = rng.choice(oks)
    v = op.value
    if sim.model_name in ("register", "cas-register"):
        op.value = rng.randrange(3) if rng.random() < 0.8 else None
    elif op.f == "read":  # set
        op.value = sorted(set(v or []) ^ {rng.randrange(4)})
    elif op.f == "get":
        op.value = rng.choice(["", "a", "b", "ab", "ba"])
    else:
        reads = [i for i, m in enumerate(v) if m[0] == "read"]
        if reads:
            i = rng.choice(reads)
            op.value = [*v[:i], ["read", v[i][1], rng.choice([None, 0, 1, 2])], *v[i + 1:]]


BRUTE: list[tuple[str, dict[str, Any]]] = [
    ("register", {}), ("cas-register", {}),
    ("cas-register", {"fail_cas_means_compare_failed": True}),
    ("mutex", {}), ("set", {}), ("kv", {}), ("multi-register", {}),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), n=st.integers(1, 16), which=st.integers(0, len(BRUTE) - 1),
       mutate=st.booleans())
def test_checker_agrees_with_brute_force(seed: int, n: int, which: int, mutate: bool) -> None:
    name, opts = BRUTE[which]
    rng = random.Random(seed)
    keys = ["a", "b"] if name == "kv" else None
    sim = simulate(seed, name, n, unique=False, keys=keys)
    if mutate:
        _mutate(sim, rng)
    model = get_model(name, **opts)
    expected = brute_force(model, sim.ops)
    r = check_history(sim.ops, model, timeout=60)
    assert r.valid is expected, (expected, [op.to_dict() for op in sim.ops])
    if not expected:
        # the reported op is the first whose return cannot be linearized
        failing = [k for k in r.keys.values() if k.valid is False]
        assert failing and all(k.op is not None for k in failing)
        fail_pos = min(k.op["index"] for k in failing if k.op is not None)
        assert brute_force(model, sim.ops, upto=fail_pos) is False
        assert brute_force(model, sim.ops, upto=fail_pos - 1) is True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), n=st.integers(1, 16), which=st.integers(0, len(BRUTE) - 1),
       mutate=st.booleans())
def test_depth_first_search_agrees_with_brute_force(seed: int, n: int, which: int, mutate: bool) -> None:
    name, opts = BRUTE[which]
    rng = random.Random(seed)
    keys = ["a", "b"] if name == "kv" else None
    sim = simulate(seed, name, n, unique=False, keys=keys)
    if mutate:
        _mutate(sim, rng)
    model = get_model(name, **opts)
    expected = brute_force(model, sim.ops)
    by_key: dict[Any, list[Call]] = {}
    for c in pair_calls(sim.ops):
        by_key.setdefault(c.key, []).append(c)
    verdicts = []
    for calls in by_key.values():
        entries = build_entries(model, calls)
        verdicts.append(run_to_end(DepthFirstSearch(model, entries, model.initial()).run()).valid)
    assert all(verdicts) is expected


@SETTINGS
@given(seed=st.integers(0, 2**32), n=st.integers(1, 60), mutate=st.booleans())
def test_portfolio_agrees_with_breadth_first_search(seed: int, n: int, mutate: bool) -> None:
    """With the depth-first search joining at once, check_history decides as before."""
    rng = random.Random(seed)
    sim = simulate(seed, "cas-register", n, unique=False)
    if mutate:
        _mutate(sim, rng)
    model = get_model("cas-register")
    expected = check_history(sim.ops, model).valid
    saved = linearizable.PORTFOLIO_AFTER
    linearizable.PORTFOLIO_AFTER = 0
    try:
        r = check_history(sim.ops, model)
    finally:
        linearizable.PORTFOLIO_AFTER = saved
    assert r.valid is expected
    if r.valid is False:
        key = r.keys["null"]
        assert key.op is not None and key.minimal_is_1_minimal
