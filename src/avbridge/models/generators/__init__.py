"""Adapters over pretrained latent diffusion models (one per backend).

The adapters import diffusers/transformers, so they are loaded lazily: importing
``avbridge.models.generators`` (or ``.base``) stays cheap.
"""

from __future__ import annotations

from typing import Any

from avbridge.models.generators.base import Generator, MediaSpec, PromptCond, SpectrogramFeatures

_LAZY = {
    "AudioLDMGenerator": "avbridge.models.generators.audioldm",
    "audioldm_config": "avbridge.models.generators.audioldm",
    "build_audioldm": "avbridge.models.generators.audioldm",
    "mel_spectrogram": "avbridge.models.generators.audioldm",
    "AnimateDiffGenerator": "avbridge.models.generators.animatediff",
    "animatediff_config": "avbridge.models.generators.animatediff",
    "build_animatediff": "avbridge.models.generators.animatediff",
    "build_word_tokenizer": "avbridge.models.generators.tokenizers",
    "apply_memory_options": "avbridge.models.generators._common",
}

__all__ = ["Generator", "MediaSpec", "PromptCond", "SpectrogramFeatures", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avbridge.models.generators' has no attribute {name!r}")
