"""Multimodal embedding models ("binders") that score and steer generation."""

from avbridge.models.binders.base import Binder, ClipSpec, Embedding

__all__ = ["Binder", "ClipSpec", "Embedding"]
