"""Reading and writing history files: the Knossos corpus, each format, detection."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from kvcheck.checker.formats import read_history, read_history_text, write_edn, write_jsonl
from kvcheck.checker.history import Op

from .conftest import knossos_manifest


def test_every_knossos_history_reads_with_the_manifest_counts(knossos: Path) -> None:
    rows = knossos_manifest()
    assert len(rows) == 122
    for row in rows:
        ops, fmt = read_history(knossos / row["file"])
        assert fmt == "edn", row["file"]
        assert len(ops) == int(row["ops_total"]), row["file"]
        nemesis = sum(op.is_nemesis for op in ops)
        assert nemesis == int(row["nemesis_ops"]), row["file"]
        invokes = sum(op.type == "invoke" and not op.is_nemesis for op in ops)
        assert invokes == int(row["client_invokes"]), row["file"]
        fs = sorted({op.f for op in ops if not op.is_nemesis})
        assert " ".join(fs) == row["client_fs"], row["file"]
        assert [op.position for op in ops] == list(range(len(ops)))


def test_knossos_shapes_keywords_comments_and_lists(knossos: Path) -> None:
    ops, _ = read_history(knossos / "cas-register/bad/bad-analysis.edn")  # ; comments
    assert ops[14] == Op(type="ok", f="read", value=2, process=21, position=14, line=18)
    ops, _ = read_history(knossos / "cas-register/bad/rethink-fail.edn")  # a list ( ... )
    assert ops[0].f == "cas" and ops[0].value == [1, 4] and ops[0].time == 99286665244
    ops, _ = read_history(knossos / "multi-register/good/multi-register.edn")
    assert ops[0].value == [["read", "x", None]]
    assert ops[-1].process == "nemesis" and ops[-1].value == "fully connected"
    ops, _ = read_history(knossos / "mutex/bad/etcd.edn")  # :index fields
    assert ops[1].error == "not-held" and ops[1].id == 1
    assert ops[-1].error == ["not-found", "etcdserver: requested lease not found"]


def test_bare_edn_maps_and_edn_lines() -> None:
    text = '{:process 0, :type :invoke, :f :get, :key "0", :value nil}\n' \
           '{:process 0, :type :ok, :f :get, :key "0", :value ""}\n'
    ops, fmt = read_history_text(text)
    assert fmt == "edn-lines"
    assert [(op.key, op.value, op.line) for op in ops] == [("0", None, 1), ("0", "", 2)]
    spread = "{:process 0,\n :type :invoke, :f :read}\n{:process 0 :type :ok :f :read :value 1}"
    ops, fmt = read_history_text(spread)
    assert fmt == "edn" and [op.line for op in ops] == [1, 3]


def test_jepsen_log_lines_tabs_spaces_nil_vectors_and_timeouts() -> None:
    text = (
        "2017-01-01 INFO  jepsen.core - Running test\n"
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 2   :invoke   :cas   [3 0]\n"
        "INFO  jepsen.util - 0\t:ok\t:read\t3\n"
        "INFO  jepsen.util - 2\t:info\t:cas\t:timed-out\n"
        "INFO  jepsen.util - :nemesis\t:info\t:start\tCut off {:n1 [:n2]}\n"
        "java.lang.Exception: something\n"
    )
    ops, fmt = read_history_text(text)
    assert fmt == "jepsen-log"
    assert [(op.process, op.type, op.f, op.value, op.line) for op in ops] == [
        (0, "invoke", "read", None, 2),
        (2, "invoke", "cas", [3, 0], 3),
        (0, "ok", "read", 3, 4),
        (2, "info", "cas", "timed-out", 5),
        ("nemesis", "info", "start", "Cut off {:n1 [:n2]}", 6),
    ]


def test_jsonl_reads_and_writes() -> None:
    lines = [
        {"index": 0, "time": 5, "process": 0, "type": "invoke", "f": "write", "value": 1},
        {"index": 1, "time": 9, "process": 0, "type": "ok", "f": "write", "value": 1, "node": "n1"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    ops, fmt = read_history_text(text)
    assert fmt == "jsonl"
    assert ops[1].node == "n1" and ops[1].id == 1
    out = io.StringIO()
    write_jsonl(ops, out)
    assert [json.loads(x) for x in out.getvalue().splitlines()] == lines
    edn = io.StringIO()
    write_edn(ops, edn)
    assert edn.getvalue().startswith("[{:index 0, :time 5, :process 0, :type :invoke, :f :write")
    again, fmt = read_history_text(edn.getvalue())
    assert fmt == "edn" and [o.to_dict() for o in again] == lines


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ('{"process": 0, "type": "invoke", "f": "read"}\n{"process": 0, "type": "ok", "f": "read",\n', 2, "not valid JSON"),
        ("[{:process 0 :type :invoke :f :read}\n {:process 0 :type :ok :f :read]", 2, "closed by ']'"),
        ("[{:process 0 :type :invoke :f :read}\n {:process 0 :type :done :f :read}]", 2, "has type 'done'"),
        ("[{:process 0 :type :invoke :f :read}\n {:process 0 :type :ok :f :read :time 1.5}]", 2, "time must be an integer"),
        ("[{:process 0 :type :invoke :f :read}\n {:process 1 :type :ok :f :read}]", 2, "no open invocation"),
        ("[{:process 0 :type :invoke :f :read}\n\n {:process 0 :type :invoke :f :read}]", 3, "invokes while"),
        ("[{:process 0 :type :invoke :f :read}\n {:process 0 :type :info :f :read}\n"
         " {:process 0 :type :invoke :f :read}]", 3, "retired"),
        ("[{:process 0 :type :invoke :f :read :index 0}\n {:process 0 :type :ok :f :read :index 0}]", 2, "index 0 is used twice"),
        ("[{:process 0 :type :invoke :f :read}\n [1 2]]", 2, "not an op map"),
        ("[{:process 0 :type :invoke :f :read}\n {:process 0 :type :ok :f :read :value \"x}]", 2, "never closed"),
    ],
)
def test_malformed_input_names_line_and_problem(text: str, line: int, problem: str) -> None:
    from kvcheck.exitcodes import MalformedInput

    with pytest.raises(MalformedInput) as info:
        read_history_text(text, "h.edn")
    assert info.value.line == line, str(info.value)
    assert problem in info.value.problem
    assert str(info.value).startswith(f"h.edn:{line}: ")


def test_split_independent_keys() -> None:
    from kvcheck.checker.formats import split_independent_keys
    from kvcheck.checker.history import HistoryError

    ops, _ = read_history_text(
        "[{:process 0 :type :invoke :f :write :value [:x 1]}\n"
        " {:process :nemesis :type :info :f :start :value nil}\n"
        " {:process 0 :type :info :f :write :value :timed-out}\n"
        " {:process 1 :type :invoke :f :read :value [7 nil]}\n"
        " {:process 1 :type :ok :f :read :value [7 3]}]"
    )
    split = split_independent_keys(ops)
    assert [(o.key, o.value) for o in split] == [("x", 1), (None, None), ("x", "timed-out"), (7, None), (7, 3)]
    assert ops[0].key is None and ops[0].value == ["x", 1]  # the input is not changed
    assert [o.line for o in split] == [1, 2, 3, 4, 5]
    bad, _ = read_history_text('{"process": 0, "type": "invoke", "f": "write", "value": 1}\n')
    with pytest.raises(HistoryError, match="not an independent"):
        split_independent_keys(bad)


def test_crlf_bom_and_encoding(tmp_path: Path) -> None:
    from kvcheck.exitcodes import MalformedInput

    p = tmp_path / "h.edn"
    p.write_bytes(b"\xef\xbb\xbf[{:process 0 :type :invoke :f :read}\r\n {:process 0 :type :ok :f :read :value 1}]\r\n")
    ops, fmt = read_history(p)
    assert fmt == "edn" and [o.line for o in ops] == [1, 2]
    p.write_bytes(b'{"process": 0, "type": "invoke", "f": "read"}\n{"value": "\xff"}\n')
    with pytest.raises(MalformedInput, match="not UTF-8") as info:
        read_history(p)
    assert info.value.line == 2


@pytest.mark.parametrize(
    ("text", "fmt", "problem"),
    [
        ("", None, "empty"),
        ("  \n; only a comment\n", None, "empty"),
        ("[]", None, "no operations"),
        ("hello world\n", None, "cannot tell the history format"),
        ("[{:process 0 :type :invoke :f :read}]", "jsonl", "not valid JSON"),
        ("{:process 0\n :type :invoke :f :read}", "edn-lines", "one EDN map per line"),
        ("INFO  jepsen.core - nothing here\n", "jepsen-log", "no Jepsen op log lines"),
        ("INFO  jepsen.util - 0\t:begin\t:read\tnil\n", None, "not one of"),
        ('{"process": 0, "type": "invoke", "f": "read", "index": 0}\n{"process": 0, "type": "ok", "f": "read"}\n',
         None, "has no index"),
        ('{"process": true, "type": "invoke", "f": "read"}\n', None, "process must be"),
        ('{"process": 0, "type": "invoke"}\n', None, "has no f"),
        ('{"process": 0, "type": "invoke", "f": "r", "index": -1}\n', None, "non-negative"),
        ("[1 2 3]", None, "not an op map"),
    ],
)
def test_unreadable_histories(text: str, fmt: str | None, problem: str) -> None:
    from kvcheck.exitcodes import MalformedInput

    with pytest.raises(MalformedInput) as info:
        read_history_text(text, "h", fmt)
    assert problem in info.value.problem, str(info.value)


def test_format_override_reads_edn_lines_as_edn() -> None:
    text = '{:process 0, :type :invoke, :f :read}\n{:process 0, :type :ok, :f :read, :value 1}\n'
    assert read_history_text(text)[1] == "edn-lines"
    ops, fmt = read_history_text(text, fmt="edn")
    assert fmt == "edn" and len(ops) == 2


def test_ops_from_dicts_checks_like_a_file() -> None:
    from kvcheck.checker.formats import ops_from_dicts
    from kvcheck.exitcodes import MalformedInput

    ops = ops_from_dicts([{"process": 0, "type": "invoke", "f": "read"},
                          {"process": 0, "type": "ok", "f": "read", "value": 2}])
    assert [o.position for o in ops] == [0, 1]
    with pytest.raises(MalformedInput, match="no open invocation"):
        ops_from_dicts([{"process": 0, "type": "ok", "f": "read"}])


def test_bundled_examples_read() -> None:
    root = Path(__file__).resolve().parents[2] / "histories" / "examples"
    ops, fmt = read_history(root / "register-valid.jsonl")
    assert fmt == "jsonl" and len(ops) == 18 and sum(o.is_nemesis for o in ops) == 2
    ops, fmt = read_history(root / "register-stale-read.edn")
    assert fmt == "edn" and [o.id for o in ops] == list(range(10))


def test_jepsen_op_records_read_as_maps() -> None:
    ops, fmt = read_history_text(
        "#jepsen.history.Op{:index 0, :time 1, :type :invoke, :process 0, :f :read, :value nil}\n"
        "#jepsen.history.Op{:index 1, :time 2, :type :ok, :process 0, :f :read, :value #{1 2}}\n"
    )
    assert fmt == "edn-lines"
    assert [(o.id, o.type, o.value, o.line) for o in ops] == [(0, "invoke", None, 1), (1, "ok", [1, 2], 2)]


def test_missing_file_is_missing_input(tmp_path: Path) -> None:
    from kvcheck.exitcodes import ExitCode, MissingInput

    with pytest.raises(MissingInput) as info:
        read_history(tmp_path / "nope.jsonl")
    assert info.value.code == ExitCode.NOINPUT


def test_jepsen_log_lines_with_spaces_errors_and_nemesis_text() -> None:
    from kvcheck.exitcodes import MalformedInput

    text = (
        "INFO  jepsen.util - 1  :invoke  :cas  [1 2]\n"
        "INFO  jepsen.util - 1  :info  :cas  [1 2]  :timed-out\n"
        "INFO  jepsen.util - :nemesis  :info  :start  Cut off {:n1 #{:n2}} now\n"
        "2020-01-01 00:00:00,000{GMT}\tINFO\t[jepsen worker 0] jepsen.util: 2\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 2 :ok :read 3\n"
    )
    ops, fmt = read_history_text(text)
    assert fmt == "jepsen-log"
    assert [(o.process, o.type, o.f, o.value, o.error) for o in ops] == [
        (1, "invoke", "cas", [1, 2], None),
        (1, "info", "cas", [1, 2], "timed-out"),
        ("nemesis", "info", "start", "Cut off {:n1 #{:n2}} now", None),
        (2, "invoke", "read", None, None),
        (2, "ok", "read", 3, None),
    ]
    with pytest.raises(MalformedInput, match="cannot read the op's value") as info:
        read_history_text("INFO  jepsen.util - 1  :invoke  :read  [1 2\n")
    assert info.value.line == 1


def test_ops_only_edn_format_reads_are_read_in_one_batch_and_errors_keep_their_line() -> None:
    from kvcheck.exitcodes import MalformedInput

    text = "[" + "\n".join(
        f"{{:process {i}, :type :invoke, :f :read, :value \\a, :tag sym}}" for i in range(50)
    ) + "]"
    ops, _ = read_history_text(text)
    assert [o.value for o in ops] == ["a"] * 50 and ops[49].extra == {"tag": "sym"}
    assert [o.line for o in ops] == list(range(1, 51))
    bad = text.replace("{:process 30, :type :invoke, :f :read, :value \\a, :tag sym}",
                       "{:process 30, :type :invoke, :f :read, :value \\a, :tag}")
    with pytest.raises(MalformedInput, match="not valid EDN") as info:
        read_history_text(bad)
    assert info.value.line == 31


def test_bare_maps_are_edn_lines_only_when_each_has_its_own_line() -> None:
    short_then_long = '{:process 0, :type :invoke, :f :read}\n{:process 0,\n :type :ok, :f :read, :value 1}\n'
    ops, fmt = read_history_text(short_then_long)
    assert fmt == "edn" and len(ops) == 2
    two_on_a_line = "{:process 0 :type :invoke :f :read} {:process 0 :type :ok :f :read}\n"
    assert read_history_text(two_on_a_line)[1] == "edn"
    from kvcheck.exitcodes import MalformedInput

    with pytest.raises(MalformedInput, match="more than one map"):
        read_history_text(two_on_a_line, fmt="edn-lines")
