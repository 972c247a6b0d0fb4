"""Writers and readers are inverse: JSONL -> EDN -> JSONL is the identity, and EDN -> JSONL ->
EDN is the identity for values built from numbers, strings, nil, booleans and vectors
(keywords in ``f`` and ``type`` are written back as keywords)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kvcheck.checker.formats import (
    ops_from_dicts,
    read_history,
    read_history_text,
    write_edn,
    write_jsonl,
)
from kvcheck.checker.history import Op

from .conftest import knossos_manifest

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)),
    max_leaves=12,
)
# What EDN -> JSONL -> EDN keeps exactly: no maps (their keys may have been keywords).
edn_values = st.recursive(scalars, lambda c: st.lists(c, max_size=4), max_leaves=12)
fs = st.one_of(st.sampled_from(["read", "write", "cas", "add", "txn", "acquire"]), st.text(max_size=8))
extra_names = st.text(max_size=6).filter(
    lambda k: k not in ("index", "time", "process", "type", "f", "value", "key", "node", "error")
)


@st.composite
def histories(draw: st.DrawFn, values: st.SearchStrategy[Any], extras: bool) -> list[dict[str, Any]]:
    """A well-formed history: per process invoke then ok/fail/info (info retires the
    process), nemesis ops in between, optional index/time/key/node/error/extra fields."""
    procs = list(range(draw(st.integers(1, 4))))
    next_proc = len(procs)
    open_: dict[int, dict[str, Any]] = {}
    ops: list[dict[str, Any]] = []
    with_index = draw(st.booleans())
    with_time = draw(st.booleans())
    for _ in range(draw(st.integers(1, 14))):
        op: dict[str, Any]
        if draw(st.integers(0, 9)) == 0:
            op = {"process": "nemesis", "type": draw(st.sampled_from(["invoke", "info"])),
                  "f": draw(fs), "value": draw(values)}
        else:
            i = draw(st.integers(0, len(procs) - 1))
            p = procs[i]
            if p in open_:
                inv = open_.pop(p)
                t = draw(st.sampled_from(["ok", "fail", "info"]))
                op = {"process": p, "type": t, "f": inv["f"], "value": draw(values)}
                if t == "info":
                    procs[i] = next_proc
                    next_proc += 1
            else:
                op = {"process": p, "type": "invoke", "f": draw(fs), "value": draw(values)}
                open_[p] = op
        for name in ("key", "node", "error"):
            if draw(st.integers(0, 4)) == 0:
                op[name] = draw(values.filter(lambda v: v is not None))
        if extras and draw(st.integers(0, 4)) == 0:
            op[draw(extra_names)] = draw(values)
        if with_time:
            op["time"] = draw(st.integers(0, 2**62))
        ops.append(op)
    if with_index:
        for n, op in enumerate(ops):
            op["index"] = n * 2  # identities need not be positions
    return ops


def jsonl(ops: list[Op]) -> str:
    out = io.StringIO()
    write_jsonl(ops, out)
    return out.getvalue()


def edn(ops: list[Op]) -> str:
    out = io.StringIO()
    write_edn(ops, out)
    return out.getvalue()


@settings(max_examples=150, deadline=None)
@given(histories(json_values, extras=True))
def test_jsonl_to_edn_to_jsonl_is_the_identity(dicts: list[dict[str, Any]]) -> None:
    text1 = jsonl(ops_from_dicts(dicts))
    ops, fmt = read_history_text(text1)
    assert fmt == "jsonl"
    ops2, fmt2 = read_history_text(edn(ops))
    assert fmt2 == "edn"
    assert jsonl(ops2) == text1
    assert [json.loads(line) for line in text1.split("\n") if line] == [op.to_dict() for op in ops2]


@settings(max_examples=150, deadline=None)
@given(histories(edn_values, extras=False))
def test_edn_to_jsonl_to_edn_is_the_identity(dicts: list[dict[str, Any]]) -> None:
    text1 = edn(ops_from_dicts(dicts))
    ops, _ = read_history_text(text1)
    ops2, fmt = read_history_text(jsonl(ops))
    assert fmt == "jsonl"
    assert edn(ops2) == text1
    assert ":type :" in text1 and ":f " in text1


def test_keywords_are_written_back_as_keywords() -> None:
    ops, _ = read_history_text('[{:process :nemesis, :type :info, :f :start, :value "cut"}\n'
                               ' {:process 0, :type :invoke, :f :read, :value [1 "a" nil true 2.5]}]')
    assert edn(ops) == ('[{:process :nemesis, :type :info, :f :start, :value "cut"}\n'
                        ' {:process 0, :type :invoke, :f :read, :value [1 "a" nil true 2.5]}]\n')


def test_knossos_cas_register_files_round_trip(knossos: Path, tmp_path: Path) -> None:
    for row in knossos_manifest():
        if row["model"] != "cas-register":
            continue
        ops, _ = read_history(knossos / row["file"])
        j = tmp_path / "h.jsonl"
        e = tmp_path / "h.edn"
        write_jsonl(ops, j)
        via_json, _ = read_history(j)
        write_edn(via_json, e)
        via_edn, _ = read_history(e)
        want = [op.to_dict() for op in ops]
        assert [op.to_dict() for op in via_json] == want, row["file"]
        assert [op.to_dict() for op in via_edn] == want, row["file"]
        assert [op.id for op in via_edn] == [op.id for op in ops]
