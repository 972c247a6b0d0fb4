"""The fast EDN reader agrees with edn_format, the real EDN library, on every text.

Texts are generated as EDN source — keywords, symbols, strings with escapes, numbers in
several spellings, characters, sets, tags, discards, comments, commas — so both the fast
path and each of its fallbacks to edn_format are exercised.
"""

from __future__ import annotations

import math
from typing import Any

import edn_format
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcheck.checker.edn import EdnError, dumps_value, parse_forms, parse_with_edn_format, to_plain

NAME_START = "abcxyzABZ_*!?$%&=<>"
NAME_CHARS = NAME_START + "0123456789.+-:#"


def names() -> st.SearchStrategy[str]:
    return st.builds(
        lambda a, b: a + b,
        st.sampled_from(list(NAME_START)),
        st.text(alphabet=NAME_CHARS, max_size=6),
    )


def keywords() -> st.SearchStrategy[str]:
    ns = st.one_of(st.just(""), names().map(lambda n: n + "/"))
    return st.builds(lambda n, x: ":" + n + x, ns, names())


def strings() -> st.SearchStrategy[str]:
    piece = st.one_of(
        st.text(alphabet=st.characters(blacklist_characters='"\\\r', blacklist_categories=["Cs"]), max_size=8),
        st.sampled_from(['\\\\', '\\"', "\\n", "\\t", "\\r", "\\b", "\\f", "\\'", "\\u0041", "\\x41", "\\101", "\\q"]),
    )
    return st.lists(piece, max_size=4).map(lambda ps: '"' + "".join(ps) + '"')


def numbers() -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(-(10**20), 10**20).map(str),
        st.integers(0, 999).map(lambda i: f"+{i}"),
        st.integers(0, 99).map(lambda i: f"{i}N"),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.sampled_from(["1.5M", "2e3", "-0.0", "1/2", "0x1F", "007", "1.", "##Inf", "##-Inf"]),
    )


atoms = st.one_of(
    keywords(), strings(), numbers(),
    st.sampled_from(["nil", "true", "false", "sym", "a/b", "\\a", "\\newline", "\\u0042", "-", "+x"]),
)


def flat_maps() -> st.SearchStrategy[str]:
    """Op-shaped maps: keyword keys, atom or vector-of-atom values (the reader's flat path)."""
    value = st.one_of(atoms, st.lists(atoms, max_size=3).map(lambda xs: "[" + " ".join(xs) + "]"))
    pair = st.tuples(keywords(), st.sampled_from([" ", ", ", "\n ", ""]), value)
    return st.lists(pair, max_size=6).map(
        lambda ps: "{" + " ".join(k + sep + v if sep else k + " " + v for k, sep, v in ps) + "}"
    )


def split_maps() -> st.SearchStrategy[str]:
    """Flat maps without strings, spaced in odd ways (the reader splits these on whitespace
    and commas), sometimes with whitespace EDN does not know or a stray bracket."""
    atom = st.one_of(numbers(), keywords(), st.sampled_from(["nil", "true", "false", "sym", "-", "x]", "[y"]))
    sep = st.sampled_from([" ", ",", " ,", "\t", "\n", "  ", "\x0b", "\xa0", ""])
    vec = st.tuples(st.sampled_from(["[", "[ "]), st.lists(st.tuples(atom, sep), max_size=3),
                    st.sampled_from(["]", " ]"])).map(lambda t: t[0] + "".join(a + (s or " ") for a, s in t[1]).rstrip() + t[2])
    pair = st.tuples(keywords(), sep, st.one_of(atom, vec), sep)
    return st.lists(pair, max_size=6).map(
        lambda ps: "{" + "".join(k + (s1 or " ") + v + (s2 or " ") for k, s1, v, s2 in ps) + "}"
    )


def forms(depth: int = 3) -> st.SearchStrategy[str]:
    if depth == 0:
        return st.one_of(atoms, flat_maps())
    inner = forms(depth - 1)
    seq = st.lists(inner, max_size=5)
    int_set = st.lists(st.integers(-5, 5).map(str), max_size=4)
    return st.one_of(
        atoms,
        flat_maps(),
        split_maps(),
        seq.map(lambda xs: ("[", xs, "]")).map(_join),
        seq.map(lambda xs: ("(", xs, ")")).map(_join),
        st.lists(st.tuples(st.one_of(keywords(), strings(), numbers()), inner), max_size=4)
        .map(lambda kvs: ("{", [x for kv in kvs for x in kv], "}")).map(_join),
        int_set.map(lambda xs: ("#{", xs, "}")).map(_join),
        st.lists(keywords(), max_size=3, unique=True).map(lambda xs: ("#{", xs, "}")).map(_join),
        inner.map(lambda x: "#_ " + x + " 1"),
        inner.map(lambda x: "#inst \"2020-01-02T03:04:05Z\" " + x),
        inner.map(lambda x: "^:meta " + x),
    )


def _join(parts: tuple[str, list[str], str]) -> str:
    open_, xs, close = parts
    return open_ + " ".join(xs) + close


separators = st.sampled_from([" ", "  ", ",", ", ", "\n", "\t", " ; a comment\n", "\r\n"])


@st.composite
def texts(draw: st.DrawFn) -> str:
    records = flat_maps().map(lambda m: "#" + RECORD + m)
    elems = draw(st.lists(st.one_of(flat_maps(), split_maps(), records, forms()), max_size=6))
    out = draw(st.sampled_from(["", "; header\n", "\n"]))
    wrap = draw(st.sampled_from([None, ("[", "]"), ("(", ")")]))
    if wrap:
        out += wrap[0]
    for e in elems:
        out += e + draw(separators)
    if wrap:
        out += wrap[1]
    return out + draw(st.sampled_from(["", "\n", " ; trailing"]))


RECORD = "jepsen.history.Op"
edn_format.add_tag(RECORD, lambda m: m)  # a record literal reads as its map


def expected(text: str) -> Any:
    try:
        return ("ok", [to_plain(v) for v in edn_format.loads_all(text.replace("\r\n", "\n"))])
    except Exception:
        return ("error", None)


def flatten(text: str) -> Any:
    try:
        forms, wrapped = parse_forms(text)
    except EdnError:
        return ("error", None)
    values = [f.value for f in forms]
    return ("ok", [values] if wrapped else values)


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _compare(text: str) -> None:
    want = expected(text)
    got = flatten(text)
    assert got[0] == want[0], (text, got, want)
    if want[0] == "ok":
        # A single top-level vector or list is returned as its elements ("wrapped").
        assert same(got[1], want[1]), (text, got, want)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts())
def test_fast_reader_equals_edn_format(text: str) -> None:
    _compare(text)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts())
def test_fast_reader_equals_edn_format_long(text: str) -> None:
    _compare(text)


@pytest.mark.parametrize(
    "text",
    ["[007]", "[1abc]", "[:a/b/c]", '["\\u0041\\x41"]', "[1.]", '["a"b]', "[:a#b 1]", "{:a}",
     "[1 2)", "[", "]", "[#{1 1.0}]", '[#{:a "a"}]', "[{[1] 2}]", "(1 2) 3", "[\\)]", "[##NaN]"],
)
def test_edge_texts_match_edn_format(text: str) -> None:
    want, got = expected(text), flatten(text)
    assert got[0] == want[0], (got, want)
    if want[0] == "ok" and "NaN" not in text:
        assert same(got[1], want[1]), (got, want)


@given(st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=5), c, max_size=4)),
    max_leaves=20,
))
@settings(max_examples=100, deadline=None)
def test_dumps_value_reads_back(value: Any) -> None:
    text = dumps_value(value)
    assert same(parse_with_edn_format(text), [value])
    forms, wrapped = parse_forms(text)
    got = [f.value for f in forms]
    assert same([got] if wrapped else got, [value])


@settings(max_examples=150, deadline=None)
@given(st.one_of(atoms, forms(1)), st.sampled_from(["", " ", "\t", ", "]))
def test_parse_value_equals_edn_format(text: str, pad: str) -> None:
    from kvcheck.checker.edn import parse_value

    want = expected(pad + text + pad)
    try:
        got: Any = ("ok", [parse_value(pad + text + pad)])
    except EdnError:
        got = ("error", None)
    if want[0] == "ok" and len(want[1]) != 1:
        assert got[0] == "error"
    else:
        assert got[0] == want[0], (text, got, want)
        if want[0] == "ok":
            assert same(got[1], want[1]), (text, got, want)
