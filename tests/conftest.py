"""Project-wide pytest options.

``--rewrite`` regenerates the Raft datadriven transcripts (tests/reference/raft/testdata)
from the actual output instead of comparing with it. CI never passes it: a transcript whose
output differs fails with a diff, and a person reviews the rewritten file before committing.

``@pytest.mark.slow`` marks the long sweeps. Each has a bounded twin that always runs; the
long ones run with ``--slow`` or ``KVCHECK_SLOW=1``.
"""

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite datadriven transcripts with the actual output",
    )
    parser.addoption(
        "--slow",
        action="store_true",
        default=False,
        help="also run the long sweeps marked slow (or set KVCHECK_SLOW=1)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow") or os.environ.get("KVCHECK_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="long sweep: run with --slow or KVCHECK_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rewrite(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--rewrite"))
