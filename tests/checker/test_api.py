"""The one checker interface: verdict combination, checker names, the JSON shape, and the
default renderings every checker gets."""

from __future__ import annotations

import pytest

from kvcheck.checker.api import (
    Anomaly,
    CheckerBase,
    CheckOptions,
    CheckResult,
    get_checker,
    parse_checker_names,
    results_json,
    run_checkers,
    worst_verdict,
)
from kvcheck.checker.history import Op


def test_worst_verdict_is_invalid_then_unknown_then_valid() -> None:
    assert worst_verdict([True, "unknown", False]) is False
    assert worst_verdict([True, "unknown"]) == "unknown"
    assert worst_verdict([True, True]) is True
    assert worst_verdict([]) is True


def test_checker_names_are_checked_and_deduplicated() -> None:
    assert parse_checker_names("linearizable, linearizable") == ["linearizable"]
    with pytest.raises(ValueError, match="unknown checker 'x'"):
        parse_checker_names("linearizable,x")
    with pytest.raises(ValueError, match="no checker"):
        parse_checker_names(" , ")
    with pytest.raises(ValueError, match="known: linearizable"):
        get_checker("x")


def test_results_json_combines_checkers_and_keeps_their_own_fields() -> None:
    bad = CheckResult("a", False, [Anomaly("k", "why", [3, 1], {"key": "x"})], 0.5, None, {"extra": 1})
    good = CheckResult("b", True, seconds=0.1)
    doc = results_json({"a": bad, "b": good})
    assert doc["valid"] is False
    assert doc["checkers"]["a"] == {"checker": "a", "valid": False, "seconds": 0.5, "extra": 1,
                                    "anomalies": [{"kind": "k", "explanation": "why", "ops": [3, 1],
                                                   "detail": {"key": "x"}}]}
    assert Anomaly.from_json(doc["checkers"]["a"]["anomalies"][0]) == bad.anomalies[0]


def test_linearizable_checker_through_the_interface() -> None:
    ops = [Op("invoke", "write", 1, 0, index=0), Op("ok", "write", 1, 0, index=1),
           Op("invoke", "read", None, 1, index=2), Op("ok", "read", 2, 1, index=3)]
    results = run_checkers(["linearizable"], ops, CheckOptions(model="register"))
    res = results["linearizable"]
    assert res.valid is False and res.seconds > 0
    assert res.anomalies[0].kind == "nonlinearizable" and res.anomalies[0].ops[0] == 3
    lines = get_checker("linearizable").summary_lines(res.to_json(), lambda d: f"op {d['index']}")
    assert lines[0] == "    op 3 cannot be linearized" and "key" not in lines[0]


def test_default_renderings_list_every_anomaly() -> None:
    base = CheckerBase()
    res = CheckResult("x", False, [Anomaly("a<b", "one & two", [7])]).to_json()
    assert base.summary_lines(res, str) == ["    a<b: one & two"]
    html = base.html_section(res, [])
    assert "a&lt;b" in html and "one &amp; two" in html and 'data-op="7"' in html
