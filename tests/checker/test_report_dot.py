"""The minimal failing sub-history as DOT: nodes, real-time edges (transitive reduction),
value dependencies, the marked op."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kvcheck.checker import dot


def od(index: int, process: Any, type_: str, f: str, value: Any = None, key: Any = None) -> dict[str, Any]:
    d = {"index": index, "process": process, "type": type_, "f": f, "value": value}
    if key is not None:
        d["key"] = key
    return d


def edges(source: str) -> set[tuple[str, str, bool]]:
    """(from, to, dashed) for each edge line."""
    out = set()
    for m in re.finditer(r"^\s*(\w+) -> (\w+)(?: \[(.*)\])?$", source, re.M):
        out.add((m.group(1), m.group(2), "dashed" in (m.group(3) or "")))
    return out


def test_chain_is_reduced_and_concurrency_has_no_edge() -> None:
    # a: [0,1]  b: [2,3]  c: [4,5]  d: [3.5 .. 6] concurrent with c
    hist = [od(0, 0, "invoke", "write", 1), od(1, 0, "ok", "write", 1),
            od(2, 1, "invoke", "write", 2), od(3, 1, "ok", "write", 2),
            od(4, 2, "invoke", "read"), od(5, 3, "invoke", "read"),
            od(6, 2, "ok", "read", 2), od(7, 3, "ok", "read", 1)]
    calls = dot.pair_op_dicts(hist)
    rt = {(a.node_id, b.node_id) for a, b in dot.realtime_edges(calls)}
    assert rt == {("op0", "op2"), ("op2", "op4"), ("op2", "op5")}  # no op0 -> op4: transitive
    vals = {(w.node_id if w else None, r.node_id) for w, r, _ in dot.value_edges(calls)}
    assert vals == {("op2", "op4"), ("op0", "op5")}


def test_info_and_pending_never_precede_and_fail_never_writes() -> None:
    hist = [od(0, 0, "invoke", "write", 1), od(1, 0, "info", "write", 1),
            od(2, 1, "invoke", "write", 2), od(3, 1, "fail", "write", 2),
            od(4, 2, "invoke", "read"), od(5, 2, "ok", "read", 1),
            od(6, 3, "invoke", "read"), od(7, 3, "ok", "read", 2),
            od(8, 4, "invoke", "write", 9)]
    calls = dot.pair_op_dicts(hist)
    rt = {(a.node_id, b.node_id) for a, b in dot.realtime_edges(calls)}
    assert ("op0", "op4") not in rt  # info: end at infinity
    assert ("op2", "op4") in rt and ("op4", "op6") in rt and ("op6", "op8") in rt
    assert not any(a == "op8" for a, _ in rt)  # pending
    vals = {(w.node_id if w else None, r.node_id) for w, r, _ in dot.value_edges(calls)}
    assert vals == {("op0", "op4")}  # the info write may have happened; the failed one did not


def test_cas_reads_old_writes_new_within_a_key_and_nil_reads_the_initial_state() -> None:
    hist = [od(0, 0, "invoke", "read", None, "a"), od(1, 0, "ok", "read", None, "a"),
            od(2, 1, "invoke", "write", 1, "a"), od(3, 1, "ok", "write", 1, "a"),
            od(4, 2, "invoke", "write", 1, "b"), od(5, 2, "ok", "write", 1, "b"),
            od(6, 3, "invoke", "cas", [1, 2], "a"), od(7, 3, "ok", "cas", [1, 2], "a"),
            od(8, 4, "invoke", "read", None, "a"), od(9, 4, "ok", "read", 2, "a")]
    calls = dot.pair_op_dicts(hist)
    vals = {(w.node_id if w else None, r.node_id) for w, r, _ in dot.value_edges(calls)}
    assert vals == {(None, "op0"), ("op2", "op6"), ("op6", "op8")}  # not op4: key b
    source = dot.minimal_history_dot([dot.FailingKey("a", hist, hist[9])])
    assert "k0_init" in source and "initial state" in source
    assert ("k0_init", "k0_op0", True) in edges(source)


def test_failing_op_is_marked_and_clusters_per_key() -> None:
    h1 = [od(0, 0, "invoke", "write", 1), od(1, 0, "ok", "write", 1),
          od(2, 1, "invoke", "read"), od(3, 1, "ok", "read", 7)]
    source = dot.minimal_history_dot([dot.FailingKey("x", h1, h1[3]), dot.FailingKey("y", h1, h1[2])], title='q"uote\\')
    assert source.startswith(dot.DOT_HEADER)
    assert source.count("cannot be linearized") == 2
    assert "subgraph cluster_0" in source and "subgraph cluster_1" in source
    assert 'label="key x"' in source
    assert ('k0_op0', 'k0_op2', False) in edges(source)
    assert r'q\"uote\\' in source  # quote escaped by graphviz, backslash doubled by us


def test_failing_op_outside_the_minimal_history_is_drawn_alone() -> None:
    h = [od(0, 0, "invoke", "write", 1), od(1, 0, "ok", "write", 1)]
    source = dot.minimal_history_dot([dot.FailingKey("k", h, od(9, 3, "ok", "read", 4))])
    assert "cannot be linearized" not in source
    line = next(ln for ln in source.splitlines() if "k0_failing [" in ln)
    assert "read 4\\nok" in line and dot.OUTCOME_FILL["ok"] in line  # a completion, not pending
    assert "not part of this sub-history" in line and "dashed" in line


def test_minimal_op_is_the_one_marked() -> None:
    h = [od(0, 0, "invoke", "write", 1), od(1, 0, "ok", "write", 1),
         od(2, 1, "invoke", "read"), od(3, 1, "ok", "read", 7)]
    source = dot.minimal_history_dot([dot.FailingKey("k", h, failing_op=od(9, 3, "ok", "read", 4), minimal_op=h[3])])
    marked = [ln for ln in source.splitlines() if "cannot be linearized" in ln]
    assert len(marked) == 1 and marked[0].strip().startswith("k0_op2 ")
    assert "k0_failing [" in source  # the search's op, apart


def test_svg_renders_when_dot_is_installed() -> None:
    h = [od(0, 0, "invoke", "write", 1), od(1, 0, "ok", "write", 1)]
    svg, note = dot.render_svg(dot.minimal_history_dot([dot.FailingKey("k", h, None)]))
    if dot.dot_available():
        assert svg is not None and svg.startswith("<svg") and note == ""
    else:
        assert svg is None and "not installed" in note


def test_broken_dot_source_reports_why() -> None:
    if not dot.dot_available():
        pytest.skip("graphviz's dot is not installed")
    svg, note = dot.render_svg("digraph { a -> }")
    assert svg is None and "dot exited with status" in note


def test_ops_without_index_still_get_distinct_nodes() -> None:
    h = [{"process": 0, "type": "invoke", "f": "write", "value": 1}, {"process": 0, "type": "ok", "f": "write", "value": 1},
         {"process": 1, "type": "invoke", "f": "read"}, {"process": 1, "type": "ok", "f": "read", "value": 1}]
    calls = dot.pair_op_dicts(h)
    assert [c.node_id for c in calls] == ["at0", "at2"]
    assert ("k0_at0", "k0_at2", False) in edges(dot.minimal_history_dot([dot.FailingKey("k", h)]))
