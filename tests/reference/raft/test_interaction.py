"""Datadriven transcripts: each testdata/*.txt is run and compared with its expected output.

``pytest tests/reference/raft --rewrite`` writes the actual output back into the files.
Transcripts that do not turn on a bug switch must show no invariant or safety violation.
"""

import difflib
from pathlib import Path

import pytest

from kvcheck.reference.raft.interaction import parse, render, run_file

TESTDATA = Path(__file__).parent / "testdata"
FILES = sorted(TESTDATA.glob("*.txt"))


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_transcript(path: Path, rewrite: bool) -> None:
    text, actual = run_file(path)
    if rewrite:
        if actual != text:
            path.write_text(actual)
        return
    if actual != text:
        diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True), actual.splitlines(keepends=True),
                fromfile=f"{path.name} (expected)", tofile=f"{path.name} (actual)",
            )
        )
        pytest.fail(f"transcript output differs (run with --rewrite to accept):\n{diff}")
    if "bugs=" not in text:
        bad = [line for line in actual.splitlines() if line.startswith("!")]
        assert not bad, f"{path.name}: violations without a bug switch: {bad}"


def test_parse_render_round_trip() -> None:
    text = "# c\nfoo 1\n----\nout\n\n# d\n\nbar\n----\n\n# tail\n"
    cases, trailer = parse(text)
    assert [c.command for c in cases] == ["foo 1", "bar"]
    assert cases[0].expected == ["out"]
    assert cases[1].expected == []
    assert render(cases, [c.expected for c in cases], trailer) == text
