"""Shared fixtures for the generator tests: tiny models built once per session."""

from __future__ import annotations

import pytest
import torch

from avbridge.models.generators.animatediff import AnimateDiffGenerator
from avbridge.models.generators.audioldm import AudioLDMGenerator


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run far faster on one thread on a shared, oversubscribed CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def audio_gen() -> AudioLDMGenerator:
    return AudioLDMGenerator.tiny(seed=0)


@pytest.fixture(scope="session")
def video_gen() -> AnimateDiffGenerator:
    return AnimateDiffGenerator.tiny(seed=0)


@pytest.fixture(scope="session")
def image_gen() -> AnimateDiffGenerator:
    return AnimateDiffGenerator.tiny(seed=0, modality="image")
