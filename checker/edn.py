"""EDN for histories: a fast reader for the shapes Jepsen writes, edn_format for the rest.

Jepsen histories are EDN, and the real EDN library (edn_format, a PLY parser) reads about
6,000 ops a second: far too slow for a 100,000-op history. ``parse_forms`` is a small
hand-written reader for the subset histories use — maps, vectors, lists, sets of integers,
keywords, strings, integers, floats, nil, booleans, ``;`` comments and commas — driven by
one compiled regular expression. Whatever it does not handle exactly like edn_format (a
symbol, a character literal, a tagged element, ``#_``, metadata, an unusual string escape,
a number with a suffix...) is handed to edn_format: the one top-level element holding it is
re-read by edn_format from its source text, or the whole text when the construct sits
between elements. tests/checker/test_formats_edn.py proves with Hypothesis that the fast
path's output equals ``to_plain(edn_format.loads_all(text))``.

Values come out "plain", the way JSON would hold them: keywords and symbols become strings
without the colon (``:read`` -> ``"read"``), vectors and lists become lists, sets become
sorted lists, maps become dicts, ``#inst``/``#uuid`` become strings.

``dumps_value`` writes plain values back as EDN (``write_edn`` in kvcheck.checker.formats
uses it); strings that name an op's ``type`` or ``f`` are written as keywords there.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import json
import math
import re
import uuid
from dataclasses import dataclass
from typing import Any

import edn_format

__all__ = [
    "EdnError",
    "Form",
    "dumps_keyword",
    "dumps_value",
    "is_keyword_name",
    "parse_forms",
    "parse_value",
    "parse_with_edn_format",
    "to_plain",
]


class EdnError(ValueError):
    """Text that is not EDN. ``offset`` is where the problem was found (or None)."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(slots=True)
class Form:
    """One element of a history: a top-level form, or an element of a top-level vector or
    list when the text is a single collection. ``start``/``end`` are offsets in the text."""

    value: Any
    start: int
    end: int


# ---------------------------------------------------------------------------------------
# Plain values from edn_format's output


def _set_sort_key(x: Any) -> tuple[int, Any]:
    if isinstance(x, int | float) and not isinstance(x, bool):
        return (0, x)
    return (1, json.dumps(x, sort_keys=True, default=str))


def _plain_key(k: Any) -> Any:
    k = to_plain(k)
    if k is None or isinstance(k, str | int | float | bool):
        return k
    return json.dumps(k, sort_keys=True, default=str)  # JSON object keys must be scalars


def to_plain(v: Any) -> Any:
    """edn_format's value as JSON-like Python: keywords and symbols -> str, vectors and
    lists -> list, sets -> sorted list, maps -> dict (non-scalar keys -> their JSON text),
    #inst -> ISO 8601 string, #uuid -> str, exact decimals and ratios -> float (int when
    integral)."""
    if v is None or isinstance(v, bool | int | float | str):
        return str(v) if isinstance(v, str) else v  # Char is a str subclass
    if isinstance(v, edn_format.Keyword | edn_format.Symbol):
        return v.name
    if isinstance(v, dict) or hasattr(v, "items"):
        return {_plain_key(k): to_plain(x) for k, x in v.items()}
    if isinstance(v, frozenset | set):
        return sorted((to_plain(x) for x in v), key=_set_sort_key)
    if isinstance(v, list | tuple) or type(v).__name__ == "ImmutableList":
        return [to_plain(x) for x in v]
    if isinstance(v, decimal.Decimal | fractions.Fraction):
        f = float(v)
        return int(v) if math.isfinite(f) and v == int(v) else f
    if isinstance(v, datetime.date | datetime.datetime):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, edn_format.edn_lex.MetadataValue):
        return to_plain(v.value)
    raise EdnError(f"unsupported EDN value {v!r}")


def _identity(x: Any) -> Any:
    return x


_LEXPOS = re.compile(r"lexpos (\d+)|LexToken\([A-Z_]+,.*,\d+,(\d+)\)$")


def parse_with_edn_format(text: str, base: int = 0) -> list[Any]:
    """All top-level forms of ``text`` read by edn_format, as plain values.

    Raises EdnError with the offset (plus ``base``) when edn_format reports one. Record
    literals (``#jepsen.history.Op{...}``) read as their maps."""
    for tag in set(_RECORD_TAGS.findall(text)):
        edn_format.add_tag(tag, _identity)
    try:
        forms = edn_format.loads_all(text)
    except Exception as exc:  # edn_format raises EDNDecodeError, NotImplementedError, ValueError...
        msg = str(exc)
        m = _LEXPOS.search(msg)
        offset = None
        if m:
            offset = base + int(m.group(1) or m.group(2))
        elif "EOF" in msg:
            offset = base + len(text)
        ill = re.match(r"Illegal character '(.)'", msg, re.S)
        if ill and ill.group(1) == '"':
            msg = "a string is never closed (or holds a backslash before a line end)"
        elif ill:
            msg = f"unexpected character {ill.group(1)!r}"
        elif "Don't know how to handle tag" in msg:
            msg = "unknown EDN tag " + msg.rsplit("(", 1)[-1].rstrip(")")
        elif "LexToken(" in msg:
            tok = re.search(r"LexToken\(([A-Z_]+),'(.*)',", msg)
            msg = f"unexpected {tok.group(2)!r}" if tok else msg
        elif "EOF" in msg:
            msg = "unexpected end of text (an unclosed bracket or string?)"
        raise EdnError(f"not valid EDN: {msg}", offset) from None
    return [to_plain(f) for f in forms]


# ---------------------------------------------------------------------------------------
# The fast reader

# A Clojure record literal's tag (a dotted class name right before a map), as a Jepsen op
# printed as a record: #jepsen.history.Op{:index 0 ...}. It reads as the map.
_RECORD_TAG = r"#([A-Za-z][\w\-]*(?:\.[\w\-]+)+)(?=\{)"
_RECORD_TAGS = re.compile(_RECORD_TAG)
# A character that may follow an atom: edn_format ends the atom there too.
_DELIM = r'(?=[ \t\n,\[\](){}";]|\Z)'
_NAME = r"[\w.*+!\-?$%&=<>]+"
_TOKEN = re.compile(
    r"[ \t\n,]*(?:"
    r"(;[^\n]*)"  # 1 comment
    r"|([\[({])"  # 2 open
    r"|([\])}])"  # 3 close
    r'|"([^"\\]*(?:\\.[^"\\]*)*)"' + _DELIM  # 4 string
    + r"|:(" + _NAME + r"(?:/" + _NAME + r")?)" + _DELIM  # 5 keyword
    + r"|([+-]?(?:0|[1-9]\d*))" + _DELIM  # 6 integer
    + r"|([+-]?\d+(?:\.\d+(?:[eE][+-]?\d+)?|[eE][+-]?\d+))" + _DELIM  # 7 float
    + r"|(nil|true|false)" + _DELIM  # 8 constants
    + r"|(#\{)"  # 9 set
    + r"|" + _RECORD_TAG  # 10 a record literal's tag, #jepsen.history.Op{...}
    + r'|(\\(?:newline|return|space|tab|u[0-9A-Fa-f]{4}|.)|"|[^ \t\n,\[\](){}";]+)'  # 11 other
    + r"|(\Z)"  # 12 end
    r")"
)
_CONST = {"nil": None, "true": True, "false": False}
_NOT_ATOM: Any = object()
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n", "\\t": "\t", "\\r": "\r",
            "\\b": "\b", "\\f": "\f", "\\a": "\a", "\\v": "\v", "\\'": "'"}
_ESCAPE = re.compile(r"\\.")
_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}

# The flat op map, the shape nearly every history op has: keyword keys, and values that
# are atoms (keyword, integer, float, nil, true, false, a string without backslashes) or
# vectors of such atoms. One regular expression reads a whole map; the general reader takes
# everything else (nested maps, comments inside a map, escapes...).
_SEP = r"[ \t\n,]*"
_FLAT_ATOM = (
    r'(?::' + _NAME + r"(?:/" + _NAME + r")?"
    r"|[+-]?(?:0|[1-9]\d*)|[+-]?\d+(?:\.\d+(?:[eE][+-]?\d+)?|[eE][+-]?\d+)"
    r'|nil|true|false|"[^"\\]*")' + _DELIM
)
_FLAT_VALUE = r"(?:" + _FLAT_ATOM + r"|\[" + _SEP + r"(?:" + _FLAT_ATOM + _SEP + r")*\]" + _DELIM + ")"
_FLAT_KEY = r":(" + _NAME + r"(?:/" + _NAME + r")?)" + _DELIM
_FLAT_MAP = re.compile(
    r"\{" + _SEP + r"(?::" + _NAME + r"(?:/" + _NAME + r")?" + _DELIM
    + _SEP + _FLAT_VALUE + _SEP + r")*\}" + _DELIM
)
# A key and its value, the value's kind told by which group matched: keyword, integer,
# float, constant, vector, else string (possibly empty).
_FLAT_MAP_SEP = re.compile(_SEP + "(" + _FLAT_MAP.pattern + ")")
_FLAT_PAIR = re.compile(
    _FLAT_KEY + _SEP + r"(?::(" + _NAME + r"(?:/" + _NAME + r")?)" + _DELIM
    + r"|([+-]?(?:0|[1-9]\d*))" + _DELIM
    + r"|([+-]?\d+(?:\.\d+(?:[eE][+-]?\d+)?|[eE][+-]?\d+))" + _DELIM
    + r"|(nil|true|false)" + _DELIM
    + r"|(\[" + _SEP + r"(?:" + _FLAT_ATOM + _SEP + r")*\])" + _DELIM
    + r'|"([^"\\]*)"' + _DELIM + ")"
)
_FLAT_ATOMS = re.compile(_FLAT_ATOM)


_FLAT_WHOLE = re.compile(_SEP + "(" + _FLAT_VALUE + ")" + _SEP + r"\Z")


def parse_value(text: str) -> Any:
    """The one EDN value ``text`` holds, as a plain value (EdnError when it holds none or
    several). Atoms and vectors of atoms take a fast path."""
    m = _FLAT_WHOLE.match(text)
    if m is not None:
        return _flat_value(m.group(1))
    forms, _ = parse_forms(text, unwrap=False)
    if len(forms) != 1:
        raise EdnError(f"expected one EDN value, found {len(forms)}")
    return forms[0].value


_SKIP_SEP = re.compile(_SEP)
# Characters after which splitting on whitespace and commas would not find EDN's tokens.
_SPLIT_UNSAFE = re.compile(r'[^\x20-\x7e\t\n]|["\\;#{()]')  # non-ASCII: str.split's whitespace is not EDN's
_ATOM_WHOLE = re.compile(_FLAT_ATOM[:-len(_DELIM)] + r"\Z")


def _split_atom(tok: str, cache: dict[str, Any]) -> Any:
    """One atom of a split flat map (keyword, number, nil, true, false), or _NOT_ATOM."""
    v = cache.get(tok, _NOT_ATOM)
    if v is not _NOT_ATOM:
        return v
    if tok.isdigit() and tok.isascii() and (tok[0] != "0" or len(tok) == 1):
        return int(tok)  # not cached: times and indices rarely repeat
    if _ATOM_WHOLE.match(tok) is None:
        return _NOT_ATOM
    v = _flat_value(tok)
    cache[tok] = v
    return v


def _split_flat_map(seg: str, cache: dict[str, Any]) -> dict[str, Any] | None:
    """The map whose text between the braces is ``seg`` (no strings, comments, tags or
    nested maps in it), or None when it is not a flat map of keyword keys and atom or
    vector-of-atom values. ``cache`` maps atom tokens already seen to their values."""
    toks = seg.replace(",", " ").split()
    n = len(toks)
    get = cache.get
    op: dict[str, Any] = {}
    i = 0
    while i < n:
        k = toks[i]
        if k[0] != ":" or i + 1 == n:
            return None
        key = get(k, _NOT_ATOM)
        if key is _NOT_ATOM:
            key = _split_atom(k, cache)
            if key is _NOT_ATOM:
                return None
        t = toks[i + 1]
        i += 2
        v = get(t, _NOT_ATOM)
        if v is not _NOT_ATOM:
            op[key] = v
        elif t[0] == "[":
            items: list[Any] = []
            t = t[1:]
            while True:
                close = t.endswith("]")
                if close:
                    t = t[:-1]
                if t:
                    if "[" in t or "]" in t or (v := _split_atom(t, cache)) is _NOT_ATOM:
                        return None
                    items.append(v)
                if close:
                    break
                if i == n:
                    return None
                t = toks[i]
                i += 1
            op[key] = items
        elif t.isdigit() and t.isascii() and (t[0] != "0" or len(t) == 1):
            op[key] = int(t)  # not cached: times and indices rarely repeat
        elif "]" in t or (v := _split_atom(t, cache)) is _NOT_ATOM:
            return None
        else:
            op[key] = v
    return op


def _flat_value(s: str) -> Any:
    c = s[0]
    if c == ":":
        return s[1:]
    if c == '"':
        return s[1:-1]
    if c == "[":
        return [_flat_value(x) for x in _FLAT_ATOMS.findall(s)]
    if s in _CONST:
        return _CONST[s]
    if "." in s or "e" in s or "E" in s:
        return float(s)
    return int(s)


class _Unsupported(Exception):
    """The fast reader met something it leaves to edn_format."""


def _unescape(s: str) -> str:
    def one(m: re.Match[str]) -> str:
        e = m.group(0)
        if e not in _ESCAPES:
            raise _Unsupported
        return _ESCAPES[e]

    return _ESCAPE.sub(one, s)


def _finish(kind: str, items: list[Any]) -> Any:
    if kind == "{":
        if len(items) % 2:
            raise EdnError("a map needs an even number of forms (a key without a value?)")
        d: dict[Any, Any] = {}
        for i in range(0, len(items), 2):
            k = items[i]
            if not (k is None or isinstance(k, str | int | float | bool)):
                k = json.dumps(k, sort_keys=True, default=str)
            d[k] = items[i + 1]
        return d
    if kind == "#{":
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in items):
            raise _Unsupported  # edn_format's set equality (1 == 1.0, :a vs "a") differs
        return sorted(set(items))
    return items


def parse_forms(text: str, *, unwrap: bool = True) -> tuple[list[Form], bool]:
    """Read the history elements of ``text``: returns (forms, wrapped).

    ``wrapped`` is True when the text is a single vector or list, whose elements are then
    the forms (unless ``unwrap`` is False); otherwise the forms are the top-level forms. Offsets are into the text with
    CRLF line ends made LF (line numbers are unchanged by that); they are -1 when the whole
    text had to be read by edn_format. Raises EdnError on text that is not EDN.
    """
    text = text.replace("\r\n", "\n")
    try:
        return _parse_fast(text, unwrap)
    except _WholeText:
        forms = parse_with_edn_format(text)
        lead = _LEAD.match(text)
        first = text[lead.end() : lead.end() + 1] if lead else ""
        if unwrap and len(forms) == 1 and isinstance(forms[0], list) and first in ("[", "("):
            return [Form(v, -1, -1) for v in forms[0]], True
        return [Form(v, -1, -1) for v in forms], False


class _WholeText(Exception):
    """Something edn_format must read sits where the fast reader cannot cut out one element
    (a tag, ``#_`` or metadata between elements): edn_format reads the whole text."""


@dataclass(slots=True)
class _Frame:
    kind: str  # "[", "(", "{" or "#{"
    items: list[Any]
    start: int
    poisoned: bool = False  # holds something only edn_format reads


_LEAD = re.compile(r"(?:[ \t\n,]|;[^\n]*)*")


def _parse_fast(text: str, unwrap: bool) -> tuple[list[Form], bool]:
    lead = _LEAD.match(text)
    i = lead.end() if lead else 0
    elem_depth = 1 if unwrap and text[i : i + 1] in ("[", "(") else 0
    elems: list[Form] = []  # the forms at elem_depth
    top: list[Form] = []  # the forms at depth 0
    stack: list[_Frame] = []
    pending: list[_Pending] = []  # elements left to edn_format
    match = _TOKEN.match
    flat_map = _FLAT_MAP.match
    skip = _SKIP_SEP.match
    cache: dict[str, Any] = {}
    flat_pairs = _FLAT_PAIR.findall
    flat_atoms = _FLAT_ATOMS.findall
    pos = 0
    while True:
        if len(stack) == elem_depth:
            # The common case: a run of flat op maps. Without strings they are split on
            # whitespace and commas (str methods, no regex per token); with strings two
            # regex calls read one.
            while True:
                sm = skip(text, pos)
                start = sm.end() if sm is not None else pos  # always matches (may be empty)
                if not text.startswith("{", start):
                    break
                end = text.find("}", start)
                op = None
                if end > 0:
                    seg = text[start + 1 : end]
                    if not _SPLIT_UNSAFE.search(seg):
                        op = _split_flat_map(seg, cache)
                if op is not None:
                    pos = end + 1
                else:
                    fm = flat_map(text, start)
                    if fm is None:
                        break
                    pos = fm.end()
                    op = {}
                    for k, kw, i, fl, c, vec, st in flat_pairs(text, start, pos):
                        if kw:
                            op[k] = kw
                        elif i:
                            op[k] = int(i)
                        elif c:
                            op[k] = _CONST[c]
                        elif vec:
                            op[k] = [_flat_value(x) for x in flat_atoms(vec)]
                        elif fl:
                            op[k] = float(fl)
                        else:
                            op[k] = st
                if stack:
                    stack[-1].items.append(op)
                    elems.append(Form(op, start, pos))
                else:
                    top.append(Form(op, start, pos))
        m = match(text, pos)
        if m is None:  # cannot happen: group 11 or 12 always matches
            raise EdnError("unreadable text", pos)
        kind = m.lastindex
        start = m.start(kind) if kind is not None else m.end()
        pos = m.end()
        value: Any
        if kind == 1:
            continue
        if kind == 2 or kind == 9:
            stack.append(_Frame(m.group(kind), [], start))
            continue
        if kind == 3:
            if not stack:
                raise EdnError(f"unexpected {m.group(3)!r}: nothing is open", start)
            frame = stack.pop()
            if _CLOSER[frame.kind] != m.group(3):
                raise EdnError(f"{frame.kind!r} closed by {m.group(3)!r}", start)
            start = frame.start
            depth = len(stack)
            if not frame.poisoned:
                try:
                    value = _finish(frame.kind, frame.items)
                except _Unsupported:
                    frame.poisoned = True
                except EdnError as exc:
                    raise EdnError(str(exc), frame.start) from None
            if frame.poisoned:
                if depth > elem_depth:
                    stack[-1].poisoned = True
                    continue
                if depth < elem_depth:
                    raise _WholeText
                value = _Pending(frame.start, pos)
                pending.append(value)
        elif kind == 12:
            if stack:
                raise EdnError(f"{stack[-1].kind!r} is never closed", stack[-1].start)
            break
        elif kind == 4:
            value = m.group(4)
            if "\\" in value:
                try:
                    value = _unescape(value)
                except _Unsupported:
                    _poison(stack, elem_depth)
                    continue
        elif kind == 5:
            value = m.group(5)
        elif kind == 6:
            value = int(m.group(6))
        elif kind == 7:
            value = float(m.group(7))
        elif kind == 8:
            value = _CONST[m.group(8)]
        elif kind == 10:
            continue  # a record reads as its map
        else:  # 11: a symbol, character, tag, #_, ^, a number with a suffix...
            _poison(stack, elem_depth)
            continue
        depth = len(stack)
        if depth:
            stack[-1].items.append(value)
        else:
            top.append(Form(value, start, pos))
        if depth == elem_depth and depth:
            elems.append(Form(value, start, pos))
    if pending:
        _resolve(text, pending, top, elems)
    if elem_depth == 1 and len(top) == 1:
        return elems, True
    return top, False


def _poison(stack: list[_Frame], elem_depth: int) -> None:
    if len(stack) <= elem_depth:
        raise _WholeText
    stack[-1].poisoned = True


class _Pending:
    """An element edn_format must read: filled in by ``_resolve`` once the scan is done."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start = start
        self.end = end


def _resolve(text: str, pending: list[_Pending], top: list[Form], elems: list[Form]) -> None:
    """Read every pending element with edn_format, in one call (building edn_format's
    parser costs milliseconds, so one call per element would make a history with an unusual
    construct in each op crawl); element by element only to find an error's place."""
    slices = [text[p.start : p.end] for p in pending]
    try:
        values = parse_with_edn_format("\n".join(slices))
    except EdnError:
        values = []
    if len(values) != len(pending):
        values = []
        for p, piece in zip(pending, slices, strict=True):
            try:
                forms = parse_with_edn_format(piece, base=p.start)
            except EdnError as exc:
                raise EdnError(str(exc), exc.offset if exc.offset is not None else p.start) from None
            if len(forms) != 1:  # cannot happen for a balanced collection
                raise EdnError("expected one form", p.start)
            values.append(forms[0])
    found = {id(p): v for p, v in zip(pending, values, strict=True)}
    for form in top:
        if isinstance(form.value, _Pending):
            form.value = found[id(form.value)]
        elif isinstance(form.value, list):  # a top-level vector holding pending elements
            form.value = [found[id(x)] if isinstance(x, _Pending) else x for x in form.value]
    for form in elems:
        if isinstance(form.value, _Pending):
            form.value = found[id(form.value)]


# ---------------------------------------------------------------------------------------
# Writing

_KEYWORD_NAME = re.compile(r"[A-Za-z_*!?$%&=<>][A-Za-z0-9_.*+!\-?$%&=<>]*\Z")
_STR_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"})


def is_keyword_name(s: Any) -> bool:
    """True when ``s`` can be written as a keyword and read back as the same string."""
    return isinstance(s, str) and _KEYWORD_NAME.match(s) is not None and s not in _CONST


def dumps_keyword(s: Any) -> str:
    """``s`` as a keyword when it can be one, else as an ordinary value."""
    return ":" + s if is_keyword_name(s) else dumps_value(s)


def dumps_value(v: Any) -> str:
    """A plain (JSON-like) value as EDN text. Map keys that can be keywords are written as
    keywords (they read back as the same strings); other strings stay strings."""
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "##NaN"
        if math.isinf(v):
            return "##Inf" if v > 0 else "##-Inf"
        return repr(v)
    if isinstance(v, str):
        return '"' + v.translate(_STR_ESCAPES) + '"'
    if isinstance(v, list | tuple):
        return "[" + " ".join(dumps_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{dumps_keyword(k)} {dumps_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} value {v!r} as EDN")
