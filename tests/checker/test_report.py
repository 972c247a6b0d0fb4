"""report.html: the data it embeds, the anomaly section, the DOT file beside it.

The embedded JSON is decoded here the way report.js decodes it and compared with
pair_calls' view of the same history, so a change to the encoding that the page would
misread fails here, without a browser.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcheck.checker import dot as dotmod
from kvcheck.checker import report
from kvcheck.checker.history import Op, pair_calls

MS = 1_000_000


def build(events: list[tuple[Any, str, str, Any, int]], *, key: Any = None) -> list[Op]:
    """Ops from (process, type, f, value, time in ms) tuples; index = position."""
    return [Op(type=t, f=f, value=v, process=p, time=ms * MS, index=i, key=None if p == "nemesis" else key)
            for i, (p, t, f, v, ms) in enumerate(events)]


def stale_read_history() -> list[Op]:
    return build([
        (0, "invoke", "write", 1, 0), (0, "ok", "write", 1, 5),
        ("nemesis", "info", "start-partition", None, 6), ("nemesis", "info", "start-partition", "n1 | n2 n3", 7),
        (1, "invoke", "read", None, 8), (2, "invoke", "write", 3, 9), (1, "ok", "read", 1, 12),
        (0, "invoke", "write", 2, 14), (0, "ok", "write", 2, 20), (2, "info", "write", 3, 21),
        (1, "invoke", "read", None, 22), (1, "ok", "read", 1, 28),
        (3, "invoke", "cas", [2, 4], 30), (3, "fail", "cas", [2, 4], 34),
        ("nemesis", "info", "stop-partition", None, 35), ("nemesis", "info", "stop-partition", "healed", 36),
        (0, "invoke", "read", None, 38),
    ], key="r")


def opd(ops: list[Op], i: int) -> dict[str, Any]:
    return {**ops[i].to_dict(), "index": ops[i].id}


def invalid_results(ops: list[Op]) -> dict[str, Any]:
    return {"valid": False, "checkers": {"linearizable": {
        "valid": False, "model": "cas-register", "check_seconds": 0.0125,
        "keys": {"r": {
            "valid": False, "op": opd(ops, 11), "previous_ok": opd(ops, 8),
            "final_paths": [[{"op": opd(ops, 1), "model": "register 1"},
                             {"op": opd(ops, 8), "model": "register 2"},
                             {"op": opd(ops, 11), "model": "can't read 1 from register 2"}]],
            "minimal_history": [opd(ops, i) for i in (0, 1, 7, 8, 10, 11)],
        }}}}}


def valid_results() -> dict[str, Any]:
    return {"valid": True, "checkers": {"linearizable": {"valid": True, "model": "cas-register",
                                                         "check_seconds": 0.5, "keys": {"r": {"valid": True}}}}}


def embedded(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="kvcheck-data">(.*?)</script>', page, re.S)
    assert m is not None, "no embedded data"
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def decode_calls(tl: dict[str, Any]) -> list[dict[str, Any]]:
    """The calls as report.js reconstructs them."""
    c = tl["calls"]
    out = []
    acc = 0
    for i in range(len(c["o"])):
        acc += c["s"][i]
        out.append({
            "process": tl["processes"][c["r"][i]], "start": acc,
            "end": None if c["d"][i] is None else acc + c["d"][i],
            "outcome": {"o": "ok", "f": "fail", "i": "info", "p": "pending"}[c["o"][i]],
            "f": tl["fNames"][c["f"][i]], "key": tl["keyNames"][c["k"][i]] if c["k"][i] >= 0 else None,
            "value": c["v"][i], "iv": c["iv"][i], "id": c["id"][i],
            "cid": None if c["c"][i] is None else c["id"][i] + c["c"][i],
            "err": c["err"].get(str(i)),
        })
    return out


# ---- embedded data ------------------------------------------------------------------------


def test_calls_decode_to_the_history_pairs() -> None:
    ops = stale_read_history()
    page, _ = report.render_report(ops, invalid_results(ops), title="t")
    tl = embedded(page)["timeline"]
    assert tl["axis"] == "time"
    assert tl["processes"] == [0, 1, 2, 3]
    calls = decode_calls(tl)
    expected = pair_calls(ops)
    assert len(calls) == len(expected) == 7
    for got, want in zip(calls, expected, strict=True):
        assert got["process"] == want.process
        assert got["start"] == want.invoke.time
        assert got["end"] == (want.completion.time if want.completion is not None else None)
        assert got["outcome"] == want.outcome
        assert got["id"] == want.invoke.id
        assert got["cid"] == (want.completion.id if want.completion is not None else None)
        assert got["f"] == want.f
        assert got["key"] == "r"
    # a read shows what it read; a cas shows its [old, new]
    assert calls[1]["value"] == "1" and calls[1]["iv"] == "nil"
    assert calls[5]["value"] == "[2,4]" and calls[5]["outcome"] == "fail"
    assert calls[6]["outcome"] == "pending" and calls[6]["end"] is None


def test_fault_band_runs_from_start_to_the_stop_completion() -> None:
    ops = stale_read_history()
    tl = embedded(report.render_report(ops, valid_results(), title="t")[0])["timeline"]
    assert tl["faults"] == [{"name": "partition", "value": "n1 | n2 n3", "full": "n1 | n2 n3", "s": 6 * MS,
                             "e": 36 * MS, "open": False, "lane": 0, "startId": 2, "endId": 15,
                             "stopValue": "healed"}]
    assert tl["nemesisEvents"] == []


def test_faults_of_several_kinds_open_bands_and_lone_events() -> None:
    ops = build([
        ("nemesis", "invoke", "start-kill", None, 1), ("nemesis", "ok", "start-kill", ["n2"], 2),
        ("nemesis", "info", "start", "generic", 3),
        (0, "invoke", "read", None, 4), (0, "ok", "read", None, 5),
        ("nemesis", "invoke", "stop-kill", None, 6), ("nemesis", "ok", "stop-kill", None, 7),
        ("nemesis", "info", "stop-pause", None, 8),
        ("nemesis", "info", "compact", 17, 9),
        ("nemesis", "info", ":start-clock", "+5s n1", 10),
        (0, "invoke", "read", None, 11), (0, "ok", "read", None, 12),
    ])
    tl = embedded(report.render_report(ops, valid_results(), title="t")[0])["timeline"]
    bands = {f["name"]: f for f in tl["faults"]}
    assert set(bands) == {"kill", "fault", "clock"}
    assert (bands["kill"]["s"], bands["kill"]["e"], bands["kill"]["open"]) == (1 * MS, 7 * MS, False)
    assert bands["kill"]["value"] == '["n2"]'
    assert bands["fault"]["open"] is True and bands["fault"]["e"] == 12 * MS  # never stopped
    assert bands["clock"]["value"] == "+5s n1" and bands["clock"]["open"] is True
    assert len({f["lane"] for f in tl["faults"]}) == 3
    events = {e["f"]: e for e in tl["nemesisEvents"]}
    assert set(events) == {"stop-pause", "compact"}
    assert "stop with no start" in events["stop-pause"]["value"]


def test_periodic_hash_checks_are_not_drawn_as_fault_events() -> None:
    ops = build([
        ("hash-check", "invoke", "hash_kv", {"revision": 3}, 1),
        ("hash-check", "ok", "hash_kv", {"revision": 3, "compact_revision": 0, "hash": 7}, 2),
        ("nemesis", "info", "compact", 17, 3),
        (0, "invoke", "read", None, 4), (0, "ok", "read", None, 5),
    ])
    tl = embedded(report.render_report(ops, valid_results(), title="t")[0])["timeline"]
    assert tl["faults"] == []
    assert [e["f"] for e in tl["nemesisEvents"]] == ["compact"]


def test_project_nemesis_pairs_interleaved_with_dict_values() -> None:
    """workloads.nemesis records invoke/info pairs with object values; another nemesis op
    may come between an invocation and its completion."""
    blocked = [[a, b] for a in (1, 2) for b in (3, 4, 5)] + [[b, a] for a in (1, 2) for b in (3, 4, 5)]
    part = {"shape": "halves", "groups": [[1, 2], [3, 4, 5]], "blocked": blocked}
    ops = build([
        ("nemesis", "invoke", "start-partition", part, 1),
        ("nemesis", "invoke", "start-kill", {"target": "one", "nodes": [3]}, 2),
        ("nemesis", "info", "start-partition", part, 3),
        ("nemesis", "info", "start-kill", {"target": "one", "nodes": [3]}, 4),
        (0, "invoke", "read", None, 5), (0, "ok", "read", None, 6),
        ("nemesis", "invoke", "stop-partition", part, 7),
        ("nemesis", "info", "stop-partition", part, 8),
        ("nemesis", "invoke", "stop-kill", None, 9),
        ("nemesis", "info", "stop-kill", {"restarted": [3]}, 10),
    ])
    tl = embedded(report.render_report(ops, valid_results(), title="t")[0])["timeline"]
    bands = {f["name"]: f for f in tl["faults"]}
    assert (bands["partition"]["s"], bands["partition"]["e"]) == (1 * MS, 8 * MS)
    assert (bands["kill"]["s"], bands["kill"]["e"]) == (2 * MS, 10 * MS)
    assert bands["partition"]["value"] == "shape: halves, groups: [[1,2],[3,4,5]], blocked: …"
    assert "blocked" in bands["partition"]["full"] and "[1,3]" in bands["partition"]["full"]
    assert bands["kill"]["stopValue"] == "restarted: [3]"
    assert tl["nemesisEvents"] == []


def test_position_axis_when_times_are_missing() -> None:
    ops = [Op(type="invoke", f="write", value=1, process=0), Op(type="ok", f="write", value=1, process=0),
           Op(type="invoke", f="read", value=None, process=1), Op(type="info", f="read", value=None, process=1)]
    tl = embedded(report.render_report(ops, valid_results(), title="t")[0])["timeline"]
    assert tl["axis"] == "position"
    calls = decode_calls(tl)
    assert [(c["start"], c["end"], c["id"], c["cid"]) for c in calls] == [(0, 1, 0, 1), (2, 3, 2, 3)]
    assert calls[1]["outcome"] == "info"


def test_errors_and_long_values_are_carried_and_cut() -> None:
    long = "x" * 500
    ops = build([(0, "invoke", "write", long, 0), (0, "fail", "write", long, 1)])
    ops[1].error = "not leader"
    tl = embedded(report.render_report(ops, valid_results(), title="t")[0])["timeline"]
    (call,) = decode_calls(tl)
    assert call["err"] == "not leader"
    assert len(call["value"]) == report.VALUE_CHARS and call["value"].endswith("…")


def test_script_breaking_text_is_escaped_everywhere() -> None:
    evil = "</script><img src=x onerror=alert(1)>"
    ops = build([(0, "invoke", "write", evil, 0), (0, "ok", "write", evil, 1),
                 (1, "invoke", "read", None, 2), (1, "ok", "read", "other", 3)], key=evil)
    res = {"valid": False, "checkers": {"linearizable": {"valid": False, "model": evil, "keys": {evil: {
        "valid": False, "op": opd(ops, 3), "minimal_history": [opd(ops, i) for i in range(4)],
        "final_paths": [[{"op": opd(ops, 1), "model": evil}, {"op": opd(ops, 3), "model": evil}]]}}}}}
    page, _ = report.render_report(ops, res, title=evil, config={"x": evil})
    assert evil not in page
    assert page.count("</script>") == 2  # the data element and the script element
    assert page.count("<script") == 2
    data = embedded(page)
    assert data["title"] == evil
    assert decode_calls(data["timeline"])[0]["value"] == evil


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_generated_histories_round_trip(data: st.DataObject) -> None:
    """Any well-formed history: the decoded calls equal pair_calls, in order."""
    n_procs = data.draw(st.integers(1, 6))
    ops: list[Op] = []
    open_: dict[int, bool] = {}
    retired: set[int] = set()
    t = 0
    next_proc = n_procs
    procs = list(range(n_procs))
    for _ in range(data.draw(st.integers(0, 40))):
        t += data.draw(st.integers(0, 3))
        if data.draw(st.integers(0, 9)) == 0:
            f = data.draw(st.sampled_from(["start-partition", "stop-partition", "start-kill", "stop-kill", "member"]))
            ops.append(Op(type="info", f=f, value=data.draw(st.none() | st.text(max_size=5)), process="nemesis", time=t))
            continue
        p = data.draw(st.sampled_from(procs))
        if open_.get(p):
            kind = data.draw(st.sampled_from(["ok", "fail", "info"]))
            ops.append(Op(type=kind, f="write", value=data.draw(st.integers(0, 3)), process=p, time=t))
            open_[p] = False
            if kind == "info":
                retired.add(p)
                procs[procs.index(p)] = next_proc
                next_proc += 1
        else:
            ops.append(Op(type="invoke", f=data.draw(st.sampled_from(["read", "write", "cas"])),
                          value=data.draw(st.none() | st.integers(0, 3)), process=p, time=t))
            open_[p] = True
    for i, op in enumerate(ops):
        op.index = i
    tl, call_of_op = report.build_timeline(ops)
    json.dumps(tl)
    calls = decode_calls(tl)
    expected = pair_calls(ops)
    assert [(c["id"], c["cid"], c["start"], c["end"], c["outcome"], c["process"]) for c in calls] == [
        (w.id, w.completion.id if w.completion else None, w.invoke.time,
         w.completion.time if w.completion else None, w.outcome, w.process) for w in expected]
    assert sorted(tl["processes"]) == sorted({w.process for w in expected})
    for n, w in enumerate(expected):
        assert call_of_op[w.invoke.id] == n
        if w.completion is not None:
            assert call_of_op[w.completion.id] == n
    for band in tl["faults"]:
        assert band["s"] <= band["e"]


# ---- results forms ------------------------------------------------------------------------


def test_bare_linearizable_result_is_accepted() -> None:
    ops = stale_read_history()
    bare = invalid_results(ops)["checkers"]["linearizable"]
    norm = report.normalise_results(bare)
    assert norm["valid"] is False and set(norm["checkers"]) == {"linearizable"}
    page, dot = report.render_report(ops, bare, title="bare")
    assert 'id="anomaly"' in page and dot is not None


def test_missing_optional_fields_are_tolerated() -> None:
    ops = stale_read_history()
    res = {"checkers": {"linearizable": {"keys": {"r": {"valid": False}}}}}
    page, dot = report.render_report(ops, res, title="t")
    assert report.normalise_results(res)["valid"] is False
    assert 'id="anomaly"' in page and "No minimal failing sub-history" in page and "No final paths" in page
    assert dot is None


@pytest.mark.parametrize(("results", "message"), [
    ({"valid": "yes", "checkers": {}}, "'valid' must be true, false or \"unknown\", got 'yes'"),
    ({"checkers": {"linearizable": {"valid": 1}}}, "checker 'linearizable'"),
    ({"checkers": {"linearizable": {"keys": {"a": {"valid": None}}}}}, "key 'a'"),
    ({"checkers": {"linearizable": {}}}, "no 'valid' verdict"),
    ({"checkers": []}, "'checkers' must be an object"),
    ({"hello": 1}, "neither 'checkers' nor"),
    ({"keys": {"a": {"valid": False, "final_paths": [{"op": 1}]}}}, "final path 0 must be a list"),
    ({"keys": {"a": {"valid": False, "minimal_history": {"op": 1}}}}, "'minimal_history' must be a list, got dict"),
    ({"keys": {"a": {"valid": False, "minimal_history": [3]}}}, "key 'a': minimal_history[0] must be an op object"),
    ({"keys": {"a": {"valid": False, "op": 17}}}, "'op' must be an op object, got int"),
])
def test_malformed_results_are_named(results: Any, message: str) -> None:
    with pytest.raises(report.ReportError) as info:
        report.render_report(stale_read_history(), results, title="t")
    assert message in str(info.value)


def test_verdict_is_derived_from_checkers_when_missing() -> None:
    res = {"checkers": {"a": {"valid": True}, "b": {"valid": "unknown", "unknown_cause": "timeout"}}}
    assert report.normalise_results(res)["valid"] == "unknown"


# ---- the page -----------------------------------------------------------------------------


def test_invalid_report_has_anomaly_anchor_highlights_and_tables(tmp_path: Path) -> None:
    ops = stale_read_history()
    out = report.write_report(ops, invalid_results(ops), tmp_path / "report.html", title="stale read",
                              config={"seed": 7, "workload": "register"})
    page = out.read_text()
    assert out == tmp_path / "report.html"
    assert 'id="anomaly"' in page and 'href="#anomaly"' in page and 'id="jump-to-anomaly"' in page
    assert 'class="verdict verdict-invalid"' in page
    assert "Cannot be linearized" in page and "rejected: can&#x27;t read 1 from register 2" in page
    assert "Last ok op before it" in page
    assert "&quot;seed&quot;: 7" in page
    data = embedded(page)
    hl = {int(k): v for k, v in data["highlight"].items()}
    calls = decode_calls(data["timeline"])
    roles = {calls[k]["id"]: v for k, v in hl.items()}
    # calls by invocation id: #0 write 1, #7 write 2 (previous ok), #10 the failing read
    assert roles == {0: report.ROLE_MINIMAL, 7: report.ROLE_MINIMAL | report.ROLE_PREVIOUS,
                     10: report.ROLE_MINIMAL | report.ROLE_FAILING}
    assert data["anomalyOps"] == [11]


def test_valid_report_has_no_anomaly_and_no_dot(tmp_path: Path) -> None:
    ops = stale_read_history()
    out = report.write_report(ops, valid_results(), tmp_path / "report.html", title="fine")
    page = out.read_text()
    assert 'id="anomaly"' not in page and 'id="jump-to-anomaly"' not in page
    assert 'class="verdict verdict-valid"' in page
    assert not (tmp_path / "report.dot").exists()


def test_unknown_keys_are_listed_with_their_cause() -> None:
    res = {"valid": "unknown", "checkers": {"linearizable": {"valid": "unknown", "model": "cas-register",
           "keys": {"a": {"valid": True}, "b": {"valid": "unknown", "unknown_cause": "search exceeded 1000000 states"}}}}}
    page, dot = report.render_report(stale_read_history(), res, title="t")
    assert 'id="undecided"' in page and "search exceeded 1000000 states" in page
    assert 'id="anomaly"' not in page and dot is None
    assert "1 valid, 1 unknown" in page


def test_other_invalid_checkers_are_shown_not_hidden() -> None:
    res = {"valid": False, "checkers": {"linearizable": {"valid": True, "keys": {}},
                                        "not-registered": {"valid": False, "anomalies": [{"kind": "gap", "ops": [3]}]}}}
    page, _ = report.render_report(stale_read_history(), res, title="t")
    assert 'id="anomaly"' in page and "&quot;gap&quot;" in page and 'id="jump-to-anomaly"' in page


def test_ops_named_by_results_but_absent_are_reported() -> None:
    ops = stale_read_history()
    res = invalid_results(ops)
    res["checkers"]["linearizable"]["keys"]["r"]["minimal_history"].append({"index": 999, "process": 5, "type": "invoke", "f": "read"})
    page, _ = report.render_report(ops, res, title="t")
    assert 'id="missing-ops"' in page and "999" in page


def test_is_self_contained() -> None:
    ops = stale_read_history()
    page, _ = report.render_report(ops, invalid_results(ops), title="t")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    assert "<style>" in page and "function" in page  # CSS and JS inline


# ---- the DOT file -------------------------------------------------------------------------


def test_dot_file_beside_the_report_and_svg_when_dot_is_installed(tmp_path: Path) -> None:
    ops = stale_read_history()
    out = report.write_report(ops, invalid_results(ops), tmp_path / "report.html", title="t")
    dot_file = tmp_path / "report.dot"
    source = dot_file.read_text()
    assert source.startswith(dotmod.DOT_HEADER)
    assert "digraph" in source and "cannot be linearized" in source
    page = out.read_text()
    assert "report.dot" in page
    if dotmod.dot_available():
        assert '<div class="svg"><svg' in page and 'id="no-svg"' not in page
    else:
        assert 'id="no-svg"' in page


def test_no_dot_program_is_not_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dotmod.shutil, "which", lambda name: None)
    ops = stale_read_history()
    page = report.write_report(ops, invalid_results(ops), tmp_path / "r.html", title="t").read_text()
    assert (tmp_path / "r.dot").exists()
    assert 'id="no-svg"' in page and "not installed" in page and 'id="dot-source"' in page
    assert "<svg" not in page


def test_stale_dot_file_of_ours_is_removed_but_not_foreign_ones(tmp_path: Path) -> None:
    ops = stale_read_history()
    out = tmp_path / "report.html"
    report.write_report(ops, invalid_results(ops), out, title="t")
    assert (tmp_path / "report.dot").exists()
    report.write_report(ops, valid_results(), out, title="t")
    assert not (tmp_path / "report.dot").exists()
    (tmp_path / "report.dot").write_text("digraph mine {}\n")
    report.write_report(ops, valid_results(), out, title="t")
    assert (tmp_path / "report.dot").read_text() == "digraph mine {}\n"


def test_file_size_grows_linearly() -> None:
    def history(n_calls: int) -> list[Op]:
        ops: list[Op] = []
        t = 0
        for i in range(n_calls):
            p = i % 10
            ops.append(Op(type="invoke", f="write", value=i, process=p, time=t, index=len(ops)))
            t += 1000
            ops.append(Op(type="ok", f="write", value=i, process=p, time=t + 5000, index=len(ops)))
        return ops

    def size(n: int) -> int:
        return len(report.render_report(history(n), valid_results(), title="t")[0].encode())

    base = size(0)
    small, big = size(1000) - base, size(10000) - base
    assert 9 * small <= big <= 12 * small


def test_checker_shaped_final_paths_and_a_minimal_history_without_the_failing_op() -> None:
    """The linearizable checker's shapes: a path head with no op (the initial state), a last
    step with "model": null and "inconsistent"; "null" as the key of a keyless history."""
    ops = stale_read_history()
    for op in ops:
        op.key = None
    res = {"valid": False, "model": "cas-register", "keys": {"null": {
        "valid": False, "op": opd(ops, 11), "minimal_is_1_minimal": False,
        "final_paths": [[{"op": None, "model": None},
                         {"op": opd(ops, 11), "model": None, "inconsistent": "can't read 1 from register nil"}]],
        "minimal_history": [opd(ops, 4), opd(ops, 6)]}}}
    page, dot_source = report.render_report(ops, res, title="t")
    assert "(initial state)" in page
    assert "rejected: can&#x27;t read 1 from register nil" in page
    assert 'id="failing-op-outside-minimal"' in page
    assert "it may not be minimal" in page
    assert "linearizable: whole history" in page
    assert dot_source is not None and "rejected in the full history" in dot_source


def test_run_facts_findings_and_check_time_are_shown() -> None:
    ops = stale_read_history()
    res = {**valid_results(), "check_seconds": 1.25, "run": {"wall_seconds": 3.5, "phases": ["main", "final"]},
           "findings": ["n2: committed entry 7 overwritten", "n3: applied index went back"]}
    page, _ = report.render_report(ops, res, title="t", config={"seed": 3})
    assert 'id="findings"' in page and "n2: committed entry 7 overwritten" in page
    assert "2 internal invariant findings" in page
    assert 'id="check-seconds">1.250 s' in page
    assert 'id="run"' in page and "wall_seconds" in page and 'id="config"' in page
