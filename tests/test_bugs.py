"""The bug-switch mechanism: every switch is off by default and named switches turn on."""

import pytest

from kvcheck.reference.bugs import NO_BUGS, Bugs


def test_every_switch_is_off_by_default() -> None:
    assert Bugs.names(), "there is at least one switch"
    assert NO_BUGS.enabled() == []
    assert all(getattr(Bugs(), name) is False for name in Bugs.names())


def test_from_names_turns_on_exactly_those() -> None:
    bugs = Bugs.from_names(["local_reads"])
    assert bugs.enabled() == ["local_reads"]


def test_unknown_switch_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown bug switch"):
        Bugs.from_names(["no_such_bug"])
