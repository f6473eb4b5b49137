"""Adapters over pretrained latent diffusion models (one per backend).

The adapters import diffusers/transformers, so they are loaded lazily: importing
``avbridge.generators`` (or ``.base``) stays cheap.
"""

from __future__ import annotations

from typing import Any

from avbridge.generators.base import Generator, MediaSpec, PromptCond, SpectrogramFeatures

_LAZY = {
    "AudioLDMGenerator": "avbridge.generators.audioldm",
    "audioldm_config": "avbridge.generators.audioldm",
    "build_audioldm": "avbridge.generators.audioldm",
    "mel_spectrogram": "avbridge.generators.audioldm",
    "AnimateDiffGenerator": "avbridge.generators.animatediff",
    "animatediff_config": "avbridge.generators.animatediff",
    "build_animatediff": "avbridge.generators.animatediff",
    "build_word_tokenizer": "avbridge.generators.tokenizers",
}

__all__ = ["Generator", "MediaSpec", "PromptCond", "SpectrogramFeatures", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'avbridge.generators' has no attribute {name!r}")
