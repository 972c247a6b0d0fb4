"""Project-wide pytest options.

``--rewrite`` regenerates the Raft datadriven transcripts (tests/reference/raft/testdata)
from the actual output instead of comparing with it. CI never passes it: a transcript whose
output differs fails with a diff, and a person reviews the rewritten file before committing.
"""

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        default=False,
        help="rewrite datadriven transcripts with the actual output",
    )


@pytest.fixture
def rewrite(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--rewrite"))
