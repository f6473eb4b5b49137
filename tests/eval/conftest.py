"""Shared fixtures for the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


@pytest.fixture(scope="session")
def av_align_fixture() -> Path:
    """The AV-Align reference fixture folder (sibling ``shared/`` of the repo)."""
    root = FIXTURES / "av-align"
    if not (root / "reference_scores.json").is_file():
        pytest.skip(f"AV-Align reference fixture missing at {root.resolve()}")
    return root
