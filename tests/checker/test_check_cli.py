"""``kvcheck check``: verdicts and exit codes, summaries, the JSON document, --out, directory
arguments, usage and input errors (click's own exit 2 must never leak)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kvcheck.cli import main
from kvcheck.exitcodes import ExitCode


def run(*args: str | Path, cwd: Path | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["check", *map(str, args)], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def subprocess_run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kvcheck", "check", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


def write(path: Path, ops: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(op) + "\n" for op in ops))
    return path


def register_history(read_value: int) -> list[dict[str, Any]]:
    return [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 1, "type": "invoke", "f": "read", "value": None},
        {"process": 1, "type": "ok", "f": "read", "value": read_value},
    ]


def test_valid_history_exits_0_with_a_summary(knossos: Path) -> None:
    code, out, _ = run(knossos / "cas-register/good/cas-register-bug.edn", "--model", "cas-register",
                       "--init", "null")
    assert code == ExitCode.VALID
    assert out.startswith("VALID ")
    assert "cas-register-bug.edn  (edn, 11 ops;" in out
    assert "1 file checked against cas-register: 1 valid. Verdict: valid." in out


def test_invalid_history_names_the_op_and_previous_ok(knossos: Path) -> None:
    path = knossos / "cas-register/bad/bad-analysis.edn"
    code, out, _ = run(path, "--model", "cas-register", "--init", "null")
    assert code == ExitCode.INVALID
    assert "INVALID" in out
    assert "op 14 (p21 ok read 2) cannot be linearized" in out
    assert "previous ok: op 11 (p19 ok read 0)" in out
    assert "minimal failing history" in out
    code, out, _ = run(path, "--model", "cas-register", "--init", "null", "--json")
    assert code == ExitCode.INVALID
    doc = json.loads(out)
    assert doc["valid"] is False
    (entry,) = doc["files"]
    for name in ("file", "format", "model", "valid", "parse_seconds", "check_seconds",
                 "unknown_cause", "keys"):
        assert name in entry
    assert entry["file"] == str(path) and entry["format"] == "edn" and entry["model"] == "cas-register"
    key = entry["keys"]["null"]
    for name in ("valid", "op", "previous_ok", "final_paths", "minimal_history", "unknown_cause"):
        assert name in key
    assert key["op"]["index"] == 14 and key["previous_ok"]["index"] == 11


def test_directory_means_every_history_file_under_it(tmp_path: Path, knossos: Path) -> None:
    good = write(tmp_path / "a" / "good.jsonl", register_history(1)) if (tmp_path / "a").mkdir() is None else None
    assert good is not None
    write(tmp_path / "bad.jsonl", register_history(2))
    (tmp_path / "notes.md").write_text("not a history")
    (tmp_path / "results.json").write_text("{}")
    code, out, _ = run(tmp_path, "--model", "register", "--json")
    doc = json.loads(out)
    assert code == ExitCode.INVALID and doc["valid"] is False
    assert [(Path(f["file"]).name, f["valid"]) for f in doc["files"]] == [("good.jsonl", True), ("bad.jsonl", False)]
    code, out, _ = run(knossos / "cas-register/bad", "--model", "cas-register", "--init", "null", "--json")
    doc = json.loads(out)
    assert code == ExitCode.INVALID and len(doc["files"]) == 7
    assert all(f["valid"] is False for f in doc["files"])


def test_unknown_when_the_timeout_is_hit(knossos: Path) -> None:
    code, out, _ = run(knossos / "cas-register/good/memstress3-12.edn", "--model", "cas-register",
                       "--init", "null", "--timeout", "0.000001", "--json")
    doc = json.loads(out)
    assert code == ExitCode.UNKNOWN, doc
    assert doc["valid"] == "unknown"
    assert doc["files"][0]["unknown_cause"]


def test_malformed_file_exits_65_naming_file_and_line_and_others_still_checked(tmp_path: Path) -> None:
    good = write(tmp_path / "good.jsonl", register_history(1))
    bad = tmp_path / "bad.edn"
    bad.write_text('[{:process 0, :type :invoke, :f :read}\n {:process 1, :type :ok, :f :read, :value 1}]\n')
    code, out, err = run(good, bad, "--model", "register", "--json")
    assert code == ExitCode.DATAERR
    assert f"{bad}:2: process 1 completes (ok) with no open invocation" in err
    doc = json.loads(out)
    assert [f["valid"] for f in doc["files"]] == [True, None]
    assert doc["files"][1]["error"].startswith(f"{bad}:2:")


def test_usage_errors_exit_64_not_click_2(tmp_path: Path) -> None:
    h = write(tmp_path / "h.jsonl", register_history(1))
    for args in (
        [h, "--model", "no-such-model"],
        [h, "--model", "register", "--init", "{not json"],
        [h, "--model", "register", "--format", "csv"],
        [h, "--model", "register", "--timeout", "0"],
        [h, "--model", "register", "--memory-limit", "-5"],
        [h, "--model", "register", "--fail-cas-means-compare-failed"],
        [h],
        ["--model", "register"],
    ):
        code, _, err = run(*args)
        assert code == ExitCode.USAGE, (args, err)
    proc = subprocess_run(h, "--model", "register", "--no-such-option")
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "No such option" in proc.stderr
    proc = subprocess_run(h)
    assert proc.returncode == ExitCode.USAGE, proc.stderr


def test_missing_input_exits_66_not_click_2(tmp_path: Path) -> None:
    proc = subprocess_run(tmp_path / "nope.edn", "--model", "register")
    assert proc.returncode == ExitCode.NOINPUT, proc.stderr
    assert "nope.edn: no such file or directory" in proc.stderr
    (tmp_path / "empty").mkdir()
    code, _, err = run(tmp_path / "empty", "--model", "register")
    assert code == ExitCode.NOINPUT
    assert "no history files" in err


def test_out_writes_results_and_nothing_is_written_without_it(tmp_path: Path) -> None:
    hist = tmp_path / "in"
    hist.mkdir()
    write(hist / "h.jsonl", register_history(1))
    write(hist / "sub" / "h.jsonl", register_history(2)) if (hist / "sub").mkdir() is None else None
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    proc = subprocess_run(hist, "--model", "register", cwd=tmp_path)
    assert proc.returncode == ExitCode.INVALID
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    out = tmp_path / "out"
    code, _, _ = run(hist, "--model", "register", "--out", out)
    assert code == ExitCode.INVALID
    doc = json.loads((out / "results.json").read_text())
    assert doc["valid"] is False
    assert json.loads((out / "h.jsonl" / "results.json").read_text())["valid"] is True
    assert json.loads((out / "sub" / "h.jsonl" / "results.json").read_text())["valid"] is False


def test_independent_keys_are_split_for_keyed_models(tmp_path: Path) -> None:
    ops = [
        {"process": 0, "type": "invoke", "f": "put", "value": ["a", "x"]},
        {"process": 0, "type": "ok", "f": "put", "value": ["a", "x"]},
        {"process": 1, "type": "invoke", "f": "get", "value": ["b", None]},
        {"process": 1, "type": "ok", "f": "get", "value": ["b", ""]},
        {"process": 2, "type": "invoke", "f": "get", "value": ["a", None]},
        {"process": 2, "type": "ok", "f": "get", "value": ["a", "x"]},
    ]
    code, out, _ = run(write(tmp_path / "kv.jsonl", ops), "--model", "kv", "--json")
    doc = json.loads(out)
    assert code == ExitCode.VALID, doc
    assert sorted(doc["files"][0]["keys"]) == ["a", "b"]
    ops[-1]["value"] = ["a", "y"]
    code, out, _ = run(write(tmp_path / "kv.jsonl", ops), "--model", "kv", "--json")
    assert code == ExitCode.INVALID
    assert json.loads(out)["files"][0]["keys"]["a"]["valid"] is False


def test_edn_lines_with_key_field(tmp_path: Path) -> None:
    path = tmp_path / "c01.txt"
    path.write_text(
        '{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}\n'
        '{:process 1, :type :invoke, :f :get, :key "0", :value nil}\n'
        '{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}\n'
        '{:process 1, :type :ok, :f :get, :key "0", :value "x 0 0 y"}\n'
    )
    code, out, _ = run(path, "--model", "kv", "--json")
    doc = json.loads(out)
    assert code == ExitCode.VALID and doc["files"][0]["format"] == "edn-lines"


@pytest.mark.parametrize("init", ['{"x": 0, "y": 0}', "{:x 0 :y 0}"])
def test_init_json_or_edn_keyword_map(knossos: Path, init: str) -> None:
    code, _, _ = run(knossos / "multi-register/good/multi-register.edn", "--model", "multi-register",
                     "--init", init)
    assert code == ExitCode.VALID


def test_fail_cas_means_compare_failed(tmp_path: Path) -> None:
    ops = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
        {"process": 0, "type": "invoke", "f": "cas", "value": [1, 2]},
        {"process": 0, "type": "fail", "f": "cas", "value": [1, 2]},
        {"process": 0, "type": "invoke", "f": "read", "value": None},
        {"process": 0, "type": "ok", "f": "read", "value": 1},
    ]
    h = write(tmp_path / "h.jsonl", ops)
    assert run(h, "--model", "cas-register")[0] == ExitCode.VALID
    assert run(h, "--model", "cas-register", "--fail-cas-means-compare-failed")[0] == ExitCode.INVALID


def test_jepsen_log_with_timeouts_and_the_mutex_model(tmp_path: Path, knossos: Path) -> None:
    log = tmp_path / "jepsen.log"
    log.write_text(
        "INFO  jepsen.util - 0\t:invoke\t:write\t1\n"
        "INFO  jepsen.util - 0\t:ok\t:write\t1\n"
        "INFO  jepsen.util - 1\t:invoke\t:write\t2\n"
        "INFO  jepsen.util - 1\t:info\t:write\t:timed-out\n"
        "INFO  jepsen.util - 0   :invoke   :read   nil\n"
        "INFO  jepsen.util - 0   :ok   :read   2\n"
    )
    code, out, _ = run(log, "--model", "register", "--json")
    assert code == ExitCode.VALID, out
    assert json.loads(out)["files"][0]["format"] == "jepsen-log"
    code, _, _ = run(knossos / "mutex/bad/etcd.edn", "--model", "mutex")
    assert code == ExitCode.INVALID


ROOT = Path(__file__).resolve().parents[2]


def test_bundled_examples_and_the_readme_quick_start() -> None:
    examples = ROOT / "histories" / "examples"
    code, _, _ = run(examples / "register-valid.jsonl", "--model", "cas-register")
    assert code == ExitCode.VALID
    code, out, _ = run(examples / "register-stale-read.edn", "--model", "cas-register")
    assert code == ExitCode.INVALID
    assert "op 8 (p3 ok read 1) cannot be linearized" in out
    assert "previous ok: op 6 (p2 ok read 2)" in out
    # The README's quick start checks a bundled example (``    [pip install . && ]kvcheck
    # check histories/examples/...``): run that command as written.
    readme = (ROOT / "README.md").read_text()
    commands = [cmd.split() for line in readme.splitlines() if line.startswith("    ")
                if (cmd := line.split("&&")[-1].strip()).startswith("kvcheck check histories/examples/")]
    assert commands, "the README's quick start should check a bundled example"
    for command in commands:
        assert command[:2] == ["kvcheck", "check"]
        proc = subprocess_run(*command[2:], cwd=ROOT)
        assert proc.returncode == ExitCode.VALID, proc.stdout + proc.stderr


def test_an_internal_error_exits_70_not_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kvcheck.checker.linearizable as lin

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(lin, "check_history", broken)
    code, _, err = run(write(tmp_path / "h.jsonl", register_history(1)), "--model", "register")
    assert code == ExitCode.SOFTWARE
    assert "RuntimeError: boom" in err and "internal error" in err


def test_report_draws_one_history_with_its_counterexample(tmp_path: Path) -> None:
    path = write(tmp_path / "stale.jsonl", register_history(read_value=2))
    out_html = tmp_path / "out" / "report.html"
    out_html.parent.mkdir()
    code, _, _ = run(path, "--model", "register", "--report", out_html)
    assert code == ExitCode.INVALID
    page = out_html.read_text()
    assert 'id="anomaly"' in page
    assert "digraph minimal_failing_history" in (tmp_path / "out" / "report.dot").read_text()


def test_report_needs_exactly_one_history_file(tmp_path: Path) -> None:
    a = write(tmp_path / "a.jsonl", register_history(1))
    b = write(tmp_path / "b.jsonl", register_history(1))
    code, _, err = run(a, b, "--model", "register", "--report", tmp_path / "r.html")
    assert code == ExitCode.USAGE
    assert "--report draws one history" in err


def test_out_dir_gets_a_report_beside_each_results_file(tmp_path: Path) -> None:
    (tmp_path / "h").mkdir()
    write(tmp_path / "h" / "a.jsonl", register_history(1))
    code, _, _ = run(tmp_path / "h", "--model", "register", "--out", tmp_path / "o")
    assert code == ExitCode.VALID
    assert (tmp_path / "o" / "a.jsonl" / "results.json").is_file()
    assert "<canvas" in (tmp_path / "o" / "a.jsonl" / "report.html").read_text()


def test_model_is_required_for_history_files(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", register_history(1))
    proc = subprocess_run(path)
    assert proc.returncode == ExitCode.USAGE
    assert "--model" in proc.stderr


def test_run_directory_is_rechecked_with_its_own_model(tmp_path: Path) -> None:
    from kvcheck.workloads.config import RunConfig
    from kvcheck.workloads.run import run_once

    outcome = run_once(RunConfig(workload="register", faults=["partition"], time_limit=3.0, seed=5),
                       tmp_path / "store", progress=False, echo=lambda _: None)
    run_dir = outcome.run_dir
    (run_dir / "results.json").unlink()
    (run_dir / "report.html").unlink()
    proc = subprocess_run(run_dir)
    assert proc.returncode == outcome.code == ExitCode.VALID, proc.stderr
    assert json.loads((run_dir / "results.json").read_text())["valid"] is True
    assert (run_dir / "report.html").is_file()
    proc = subprocess_run(run_dir, "--model", "register")
    assert proc.returncode == ExitCode.USAGE


def test_independent_splits_key_value_pairs_for_any_model(tmp_path: Path) -> None:
    # Jepsen's independent cas-register: values are [k v], a cas [k [old new]].
    rows = [
        {"process": 0, "type": "invoke", "f": "write", "value": ["a", 1]},
        {"process": 0, "type": "ok", "f": "write", "value": ["a", 1]},
        {"process": 1, "type": "invoke", "f": "cas", "value": ["b", [None, 5]]},
        {"process": 1, "type": "ok", "f": "cas", "value": ["b", [None, 5]]},
        {"process": 2, "type": "invoke", "f": "read", "value": ["a", None]},
        {"process": 2, "type": "ok", "f": "read", "value": ["a", 1]},
        {"process": 2, "type": "invoke", "f": "read", "value": ["b", None]},
        {"process": 2, "type": "ok", "f": "read", "value": ["b", None]},  # stale: b was 5
    ]
    path = write(tmp_path / "independent.jsonl", rows)
    code, out, _ = run(path, "--model", "cas-register", "--independent", "--json")
    assert code == ExitCode.INVALID
    keys = json.loads(out)["files"][0]["keys"]
    assert keys["a"]["valid"] is True and keys["b"]["valid"] is False


def test_invalid_wins_over_malformed_in_the_exit_code_and_the_summary(tmp_path: Path) -> None:
    """A directory with an invalid file and an empty one: exit 1 and "Verdict: invalid"; the
    empty file is still named, as "no operations", on its own line."""
    write(tmp_path / "bad.jsonl", register_history(2))
    (tmp_path / "empty.jsonl").write_text("")
    code, out, err = run(tmp_path, "--model", "register")
    assert code == ExitCode.INVALID
    assert "Verdict: invalid." in out
    assert f"MALFORMED {tmp_path / 'empty.jsonl'}: the file is empty: no operations" in out
    assert "empty.jsonl:" in err and ":1:" not in err
    (tmp_path / "bad.jsonl").unlink()
    write(tmp_path / "good.jsonl", register_history(1))
    code, out, _ = run(tmp_path, "--model", "register")
    assert code == ExitCode.DATAERR and "Verdict: unknown (1 malformed)." in out


def kv_history(bad_key: str | None) -> list[dict[str, Any]]:
    """Four kv keys appended to and read back; ``bad_key`` reads its two appends reversed."""
    ops: list[dict[str, Any]] = []
    for k in "abcd":
        for i, token in enumerate((f"x{k}1y", f"x{k}2y")):
            ops += [{"process": i, "type": "invoke", "f": "append", "key": k, "value": token},
                    {"process": i, "type": "ok", "f": "append", "key": k, "value": token}]
        got = f"x{k}2yx{k}1y" if k == bad_key else f"x{k}1yx{k}2y"
        ops += [{"process": 5, "type": "invoke", "f": "get", "key": k, "value": None},
                {"process": 5, "type": "ok", "f": "get", "key": k, "value": got}]
    return ops


def test_stops_at_the_first_invalid_key_unless_all_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kvcheck.checker import linearizable

    monkeypatch.setattr(linearizable, "_fast_applies", lambda model: False)  # force the search
    path = write(tmp_path / "kv.jsonl", kv_history("a"))
    code, out, _ = run(path, "--model", "kv", "--json")
    assert code == ExitCode.INVALID
    keys = json.loads(out)["files"][0]["keys"]
    assert keys["a"]["valid"] is False and keys["a"]["op"] is not None
    assert json.loads(out)["files"][0]["stopped_at"] == "a"
    for k in "bcd":  # never searched: the file was invalid already
        assert keys[k]["valid"] == "unknown"
        assert keys[k]["unknown_cause"].startswith("not finished: key a is invalid")
    code, out, _ = run(path, "--model", "kv")
    assert "stopped at key a, which is invalid; not finished (--all-keys decides every key): b, c, d" in out
    code, out, _ = run(path, "--model", "kv", "--json", "--all-keys")
    assert code == ExitCode.INVALID
    keys = json.loads(out)["files"][0]["keys"]
    assert [keys[k]["valid"] for k in "abcd"] == [False, True, True, True]
    assert all(keys[k]["seconds"] >= 0 and "states_explored" in keys[k] for k in "abcd")


def test_kv_keys_are_decided_by_append_chains(tmp_path: Path) -> None:
    path = write(tmp_path / "kv.jsonl", kv_history("c"))
    code, out, _ = run(path, "--model", "kv", "--json", "--all-keys")
    assert code == ExitCode.INVALID
    keys = json.loads(out)["files"][0]["keys"]
    assert [keys[k]["valid"] for k in "abcd"] == [True, True, False, True]
    assert {keys[k]["method"] for k in "abcd"} == {"zones"}
    assert "neither extends" in keys["c"]["reason"] or "(append)" in keys["c"]["reason"]
    assert keys["c"]["minimal_history"] and keys["c"]["minimal_is_1_minimal"]


def test_a_default_memory_bound_applies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kvcheck.checker import linearizable

    seen: list[int | None] = []
    real = linearizable.check_history

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("memory_limit_mb"))
        return real(*args, **kwargs)

    monkeypatch.setattr(linearizable, "check_history", spy)
    path = write(tmp_path / "h.jsonl", register_history(1))
    run(path, "--model", "register")
    run(path, "--model", "register", "--memory-limit", "300")
    from kvcheck.checker.bounds import default_memory_limit_mb

    assert seen[0] == default_memory_limit_mb() and 256 <= seen[0] <= 2048
    assert seen[1] == 300


def test_checker_option_names_the_checkers_and_the_json_lists_each(tmp_path: Path) -> None:
    path = write(tmp_path / "stale.jsonl", register_history(2))
    code, out, _ = run(path, "--checker", "linearizable", "--model", "register", "--json")
    assert code == ExitCode.INVALID
    entry = json.loads(out)["files"][0]
    lin = entry["checkers"]["linearizable"]
    assert lin["valid"] is False and entry["valid"] is False
    # one anomaly, named, pointing at the read that cannot be linearized
    assert [a["kind"] for a in lin["anomalies"]] == ["nonlinearizable"]
    assert lin["anomalies"][0]["ops"][0] == 3
    assert entry["keys"] == lin["keys"]  # the linearizable fields also sit at the top
    code, _, err = run(path, "--checker", "linearizable,nonsense", "--model", "register")
    assert code == ExitCode.USAGE and "unknown checker 'nonsense'" in err


def test_a_run_directory_refuses_checker_options(tmp_path: Path) -> None:
    from kvcheck.workloads.config import RunConfig
    from kvcheck.workloads.run import run_once

    outcome = run_once(RunConfig(workload="register", time_limit=1.0, seed=2),
                       tmp_path / "store", progress=False, echo=lambda _: None)
    code, _, err = run(outcome.run_dir, "--checker", "linearizable,linearizable")
    assert code == ExitCode.USAGE and "--checker" in err
