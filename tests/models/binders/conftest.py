"""Shared paths and fixtures for the binder tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures"
SMALL = FIXTURES / "imagebind-small"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The shared conformance fixtures folder (may be absent: tests then skip)."""
    return FIXTURES


@pytest.fixture(scope="session")
def small_fixture() -> dict:
    """The reference ImageBind-small run: tensors, meta and the weights path."""
    if not (SMALL / "tensors.safetensors").is_file():
        pytest.skip(f"conformance fixtures not found at {SMALL.resolve()}")
    from safetensors.torch import load_file

    return {
        "tensors": load_file(str(SMALL / "tensors.safetensors")),
        "meta": json.loads((SMALL / "meta.json").read_text()),
        "weights": SMALL / "weights.safetensors",
    }
