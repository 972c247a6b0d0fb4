"""History files: read JSONL, Jepsen EDN, Jepsen log lines and EDN-per-line logs; write
JSONL and EDN.

``read_history(path)`` reads a file into ``Op`` values and names the format it found. The
format is detected from the content, not the file name (``fmt`` overrides):

- ``jsonl``: kvcheck's own history.jsonl, one JSON object per line.
- ``edn``: Jepsen's history.edn — one vector or list of op maps, or bare maps one after
  another, with ``;`` comments (kvcheck.checker.edn reads it; keywords become strings).
- ``edn-lines``: one EDN map per line, e.g. the MIT 6.824 / Porcupine kv logs with a
  ``:key`` field.
- ``jepsen-log``: Jepsen's log lines, ``INFO  jepsen.util - 3<TAB>:invoke<TAB>:read<TAB>nil``
  (tabs or runs of spaces; other log lines are skipped).

Every problem raises ``MalformedInput(path, line, problem)``: a field of the wrong type, an
unknown op type, duplicate ``index`` values, and histories whose events do not pair up
(a completion without an invocation, a second invocation while one is open, an invocation
by a process that saw ``info``), checked by ``history.pair_calls``.

``split_independent_keys`` turns Jepsen's independent-key values ``[k v]`` into
``key=k, value=v`` for keyed models.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from kvcheck.checker.edn import EdnError, Form, dumps_keyword, dumps_value, parse_forms, parse_value
from kvcheck.checker.history import KNOWN_FIELDS, OP_TYPES, HistoryError, Op, pair_calls
from kvcheck.exitcodes import MalformedInput, MissingInput

__all__ = [
    "FORMATS",
    "HISTORY_SUFFIXES",
    "detect_format",
    "ops_from_dicts",
    "read_history",
    "read_history_text",
    "split_independent_keys",
    "write_edn",
    "write_jsonl",
]

FORMATS = ("jsonl", "edn", "edn-lines", "jepsen-log")
# Files a directory argument contributes (``kvcheck check DIR``).
HISTORY_SUFFIXES = (".jsonl", ".edn", ".log", ".txt")


def read_history(path: Path | str, fmt: str | None = None) -> tuple[list[Op], str]:
    """Read the history in ``path``: returns (ops, format name).

    ``fmt`` forces one of FORMATS; by default the format is detected from the content.
    Raises MalformedInput naming the file, the line and the problem (MissingInput when the
    file does not exist).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingInput(f"{path}: no such file or directory") from None
    except OSError as exc:
        raise MalformedInput(str(path), None, f"cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise MalformedInput(str(path), line, f"not UTF-8 text (byte {exc.start})") from None
    return read_history_text(text, str(path), fmt)


def read_history_text(text: str, name: str = "<text>", fmt: str | None = None) -> tuple[list[Op], str]:
    """``read_history`` for text already in memory; ``name`` is used in error messages."""
    forced = fmt is not None
    if fmt is None:
        fmt = detect_format(text, name)
    elif fmt not in FORMATS:
        raise ValueError(f"unknown history format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "jsonl":
        ops = _read_jsonl(text, name)
    elif fmt == "jepsen-log":
        ops = _read_jepsen_log(text, name)
    else:
        ops, one_per_line = _read_edn(text, name, require_one_per_line=fmt == "edn-lines")
        if fmt == "edn" and one_per_line and not forced:
            fmt = "edn-lines"  # bare maps, one per line: the 6.824 / Porcupine shape
    validate(ops, name)
    return ops, fmt


# ---------------------------------------------------------------------------------------
# Detection

_SKIP = re.compile(r"(?:\s|;[^\n]*)*")
_LOG_MARKER = re.compile(r"\bjepsen\.util(?:\s+-|:)\s")
_LOG_OP = re.compile(
    r"^\s*(?P<process>\d+|:?nemesis)\s+:(?P<type>[\w-]+)\s+(?P<rest>\S.*?)\s*$"
)


def detect_format(text: str, name: str = "<text>") -> str:
    """The format of a history text, from its content."""
    m = _SKIP.match(text)
    i = m.end() if m else 0
    if i == len(text):
        raise MalformedInput(name, None, "the file is empty: no operations")
    first = text[i]
    if first in "[(":
        return "edn"
    if first == "{" or text.startswith("#", i):
        line_end = text.find("\n", i)
        first_line = text[i : line_end if line_end >= 0 else len(text)].strip()
        try:
            if isinstance(json.loads(first_line), dict):
                return "jsonl"
        except ValueError:
            pass
        return "edn"  # bare maps; read as "edn-lines" when each sits on a line of its own
    for line in text.splitlines()[:1000]:
        if _LOG_MARKER.search(line) or _LOG_OP.match(line):
            return "jepsen-log"
    line_no = text.count("\n", 0, i) + 1
    raise MalformedInput(
        name, line_no,
        f"cannot tell the history format from {text[i:i + 40].splitlines()[0]!r}: expected "
        "JSON lines, Jepsen EDN, EDN maps one per line, or Jepsen log lines (use --format)",
    )


# ---------------------------------------------------------------------------------------
# Building ops

_TYPES = frozenset(OP_TYPES)
_KNOWN = frozenset(KNOWN_FIELDS)
_MISSING: Any = object()


def op_from_dict(d: Any, name: str, line: int | None, position: int) -> Op:
    """One op from a plain dict, checking the fields every reader shares."""
    if type(d) is not dict:
        raise MalformedInput(name, line, f"expected an op map, found {_show(d)}")
    t = d.get("type")
    if t not in _TYPES:
        what = "has no type" if t is None else f"has type {_show(t)}"
        raise MalformedInput(name, line, f"op {what}; expected one of {', '.join(OP_TYPES)}")
    p = d.get("process", _MISSING)
    if type(p) is not int and type(p) is not str:  # bool is not int here
        if p is _MISSING:
            raise MalformedInput(name, line, "op has no process")
        raise MalformedInput(name, line, f"op process must be an integer or a name like nemesis, found {_show(p)}")
    index = d.get("index")
    if index is not None and (type(index) is not int or index < 0):
        raise MalformedInput(name, line, f"op index must be a non-negative integer, found {_show(index)}")
    time = d.get("time")
    if time is not None and type(time) is not int:
        raise MalformedInput(name, line, f"op time must be an integer (nanoseconds), found {_show(time)}")
    f = d.get("f", _MISSING)
    if f is _MISSING:
        if type(p) is int:
            raise MalformedInput(name, line, "op has no f (the operation, e.g. read or write)")
        f = None
    extra = {} if _KNOWN.issuperset(d) else {k: v for k, v in d.items() if k not in _KNOWN}
    get = d.get
    return Op(t, f, get("value"), p, time, index, get("key"), get("node"), get("error"),
              extra, position, line)


def ops_from_dicts(dicts: Iterable[Any], name: str = "<ops>") -> list[Op]:
    """Ops from plain dicts (e.g. a workload's records), checked like a file's."""
    ops = [op_from_dict(d, name, None, i) for i, d in enumerate(dicts)]
    validate(ops, name)
    return ops


def validate(ops: list[Op], name: str) -> None:
    """History-level checks: index fields all present and unique, or all absent; events
    pair up per process. Raises MalformedInput."""
    with_index = [op for op in ops if op.index is not None]
    if with_index and len(with_index) != len(ops):
        missing = next(op for op in ops if op.index is None)
        raise MalformedInput(
            name, missing.line,
            f"op at position {missing.position} has no index, but other ops do; an op's "
            "identity is its index when the history has them, so every op needs one",
        )
    if with_index:
        seen: dict[int, Op] = {}
        for op in ops:
            assert op.index is not None
            other = seen.setdefault(op.index, op)
            if other is not op:
                where = f"line {other.line}" if other.line is not None else f"position {other.position}"
                raise MalformedInput(name, op.line, f"index {op.index} is used twice (also at {where})")
    try:
        pair_calls(ops)
    except HistoryError as exc:
        bad = exc.op
        line = bad.line if bad is not None else None
        pos = f" (op {bad.id})" if bad is not None else ""
        raise MalformedInput(name, line, f"{exc}{pos}") from None


def _show(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


# ---------------------------------------------------------------------------------------
# JSONL


def _read_jsonl(text: str, name: str) -> list[Op]:
    numbered = [(i, line) for i, line in enumerate(text.split("\n"), 1) if line.strip()]
    if not numbered:
        raise MalformedInput(name, None, "the file is empty: no operations")
    try:
        # One call into the C decoder for the whole file; line by line only to find an error.
        dicts = json.loads("[" + ",".join(line for _, line in numbered) + "]")
        if len(dicts) != len(numbered):
            raise ValueError("a line holds more than one JSON value")
    except ValueError:
        dicts = [_json_line(line, name, i) for i, line in numbered]
    return [op_from_dict(d, name, i, pos) for pos, (d, (i, _)) in enumerate(zip(dicts, numbered, strict=True))]


def _json_line(line: str, name: str, line_no: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise MalformedInput(name, line_no, f"not valid JSON: {exc.msg} (column {exc.colno})") from None


def write_jsonl(ops: Iterable[Op], dest: Path | str | IO[str]) -> None:
    """Write ops as JSON lines (kvcheck's history.jsonl)."""
    with _open_out(dest) as out:
        for op in ops:
            out.write(json.dumps(op.to_dict(), ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------
# EDN


class _LineIndex:
    """Offset -> 1-based line number."""

    def __init__(self, text: str) -> None:
        self.starts = [m.end() for m in re.finditer("\n", text)]

    def line(self, offset: int) -> int | None:
        if offset < 0:
            return None
        return bisect.bisect_right(self.starts, offset) + 1


def _read_edn(text: str, name: str, *, require_one_per_line: bool) -> tuple[list[Op], bool]:
    """Ops from EDN text, and whether it is bare maps one per line (edn-lines)."""
    lines = _LineIndex(text)
    try:
        forms, wrapped = parse_forms(text)
    except EdnError as exc:
        raise MalformedInput(name, lines.line(exc.offset) if exc.offset is not None else None,
                             str(exc)) from None
    if not forms:
        raise MalformedInput(name, None, "no operations (an empty file or an empty vector)")
    one_per_line = _one_per_line(forms, wrapped, lines, name, require_one_per_line)
    ops = []
    for i, form in enumerate(forms):
        line = lines.line(form.start)
        if not isinstance(form.value, dict):
            where = "the vector" if wrapped else "the file"
            raise MalformedInput(
                name, line, f"element {i} of {where} is {_show(form.value)}, not an op map"
                + ("" if wrapped or i else " (expected one vector of op maps, or op maps)"),
            )
        ops.append(op_from_dict(form.value, name, line, i))
    return ops, one_per_line


def _one_per_line(forms: list[Form], wrapped: bool, lines: _LineIndex, name: str, require: bool) -> bool:
    """True when the forms are bare maps, each on a line of its own; with ``require``,
    anything else is an error."""
    if wrapped:
        if require:
            raise MalformedInput(name, 1, "expected one EDN map per line, found a vector or list")
        return False
    previous = 0
    for form in forms:
        if form.start < 0:
            return require  # read by edn_format as a whole: lines unknown, so "edn" unless forced
        first, last = lines.line(form.start), lines.line(form.end - 1)
        assert first is not None and last is not None
        if first == last and first > previous:
            previous = last
            continue
        if require:
            problem = (f"this map ends on line {last}" if first != last
                       else "the line holds more than one map")
            raise MalformedInput(name, first, f"expected one EDN map per line; {problem}")
        return False
    return True


def write_edn(ops: Iterable[Op], dest: Path | str | IO[str]) -> None:
    """Write ops as a Jepsen EDN vector, one op map per line. ``type``, ``f`` and a named
    process (``:nemesis``) are written as keywords; other strings stay strings."""
    with _open_out(dest) as out:
        out.write("[")
        first = True
        for op in ops:
            if not first:
                out.write("\n ")
            first = False
            parts = []
            for k, v in op.to_dict().items():
                if k in ("type", "f") or (k == "process" and isinstance(v, str)):
                    parts.append(f"{dumps_keyword(k)} {dumps_keyword(v)}")
                else:
                    parts.append(f"{dumps_keyword(k)} {dumps_value(v)}")
            out.write("{" + ", ".join(parts) + "}")
        out.write("]\n")


# ---------------------------------------------------------------------------------------
# Jepsen log lines

def _read_jepsen_log(text: str, name: str) -> list[Op]:
    ops: list[Op] = []
    for line_no, line in enumerate(text.split("\n"), 1):
        m = _LOG_MARKER.search(line)
        body = line[m.end():] if m else line
        om = _LOG_OP.match(body)
        if om is None:
            continue  # some other log line (Jepsen logs much besides ops)
        t = om.group("type")
        if t not in OP_TYPES:
            if m is None:
                continue
            raise MalformedInput(name, line_no, f"op type :{t} is not one of {', '.join(OP_TYPES)}")
        proc_text = om.group("process")
        process: int | str = int(proc_text) if proc_text.isdigit() else proc_text.lstrip(":")
        f, value, error = _log_fields(om.group("rest"), name, line_no, isinstance(process, str))
        d: dict[str, Any] = {"process": process, "type": t, "f": f, "value": value}
        if error is not None:
            d["error"] = error
        ops.append(op_from_dict(d, name, line_no, len(ops)))
    if not ops:
        raise MalformedInput(name, None, "no Jepsen op log lines found (like 'INFO  jepsen.util - 3\\t:invoke\\t:read\\tnil')")
    return ops


_LOG_F = re.compile(r"(\S+)\s*(.*)\Z", re.S)


def _log_fields(rest: str, name: str, line_no: int, nemesis: bool) -> tuple[Any, Any, Any]:
    """f, value and error from what follows ``:type``. Fields are tab-separated; with runs
    of spaces instead, f is the first word and the rest is one EDN value, or two (the value
    and an error). A nemesis value that is not EDN is kept as text."""
    if "\t" in rest:
        fields = [x.strip() for x in rest.split("\t")]
        f = _log_form(fields[0], name, line_no, "f", raw_ok=False)
        value = _log_form(fields[1], name, line_no, "value", raw_ok=nemesis) if len(fields) > 1 else None
        error = _log_form("\t".join(fields[2:]), name, line_no, "error", raw_ok=True) if len(fields) > 2 else None
        return f, value, error
    m = _LOG_F.match(rest)
    assert m is not None  # rest starts with a non-space character
    f = _log_form(m.group(1), name, line_no, "f", raw_ok=False)
    tail = m.group(2).strip()
    if not tail:
        return f, None, None
    try:
        return f, parse_value(tail), None
    except EdnError:
        pass
    try:
        forms, _ = parse_forms(tail, unwrap=False)
    except EdnError:
        forms = []
    if len(forms) == 2:
        return f, forms[0].value, forms[1].value
    if nemesis:
        return f, tail, None
    raise MalformedInput(
        name, line_no, f"cannot read the op's value (and optional error) from {tail!r}: "
        "expected one or two EDN values"
    )


def _log_form(s: str, name: str, line_no: int, what: str, *, raw_ok: bool) -> Any:
    if not s:
        return None
    try:
        return parse_value(s)
    except EdnError as exc:
        if raw_ok:
            return s  # e.g. a nemesis message printed without quotes
        raise MalformedInput(name, line_no, f"cannot read the op's {what} {s!r}: {exc}") from None


# ---------------------------------------------------------------------------------------
# Independent keys


def split_independent_keys(ops: list[Op]) -> list[Op]:
    """Jepsen's independent-key histories carry ``[k v]`` values: return copies of the ops
    with ``key=k, value=v``. A completion whose value is not a pair (e.g. ``:timed-out`` on
    an info) takes its invocation's key. Nemesis ops are kept as they are.

    Raises HistoryError (with the op) for a client invocation whose value is not a pair.
    """
    out: list[Op] = []
    open_key: dict[Any, Any] = {}
    for op in ops:
        if op.is_nemesis:
            out.append(op)
            continue
        v = op.value
        if isinstance(v, list) and len(v) == 2:
            new = dataclasses.replace(op, key=v[0], value=v[1], extra=dict(op.extra))
        elif op.type != "invoke" and op.process in open_key:
            new = dataclasses.replace(op, key=open_key[op.process], extra=dict(op.extra))
        else:
            raise HistoryError(
                f"op {op.id} has value {_show(v)}, not an independent [key value] pair", op
            )
        if op.type == "invoke":
            open_key[op.process] = new.key
        else:
            open_key.pop(op.process, None)
        out.append(new)
    return out


# ---------------------------------------------------------------------------------------


class _open_out:
    """A context manager for a path (opened for writing, UTF-8) or an open text stream."""

    def __init__(self, dest: Path | str | IO[str]) -> None:
        self.dest = dest
        self.file: IO[str] | None = None

    def __enter__(self) -> IO[str]:
        if isinstance(self.dest, str | Path):
            self.file = open(self.dest, "w", encoding="utf-8")
            return self.file
        return self.dest

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def iter_history_files(root: Path) -> Iterator[Path]:
    """History files under a directory: .jsonl, .edn, .log and .txt files, sorted."""
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in HISTORY_SUFFIXES and not any(
            part.startswith(".") for part in p.relative_to(root).parts
        ):
            yield p
