"""Adapters over pretrained latent diffusion models (one per backend)."""

from avbridge.generators.base import Generator, MediaSpec, PromptCond

__all__ = ["Generator", "MediaSpec", "PromptCond"]
