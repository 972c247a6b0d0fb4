"""Fixtures for the checker tests: the Knossos corpus beside the repository."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KNOSSOS = ROOT.parent / "shared" / "corpora" / "knossos"


def knossos_dir() -> Path:
    """The Knossos corpus; skips the test when it is missing, fails it with CI=true."""
    if not (KNOSSOS / "manifest.tsv").is_file():
        msg = f"Knossos corpus not found at {KNOSSOS}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return KNOSSOS


def knossos_manifest() -> list[dict[str, str]]:
    with open(knossos_dir() / "manifest.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture
def knossos() -> Path:
    return knossos_dir()
