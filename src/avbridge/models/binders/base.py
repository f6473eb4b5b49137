"""The Binder contract: differentiable embeddings of video, images, audio and text.

Every method takes tensors (never paths), keeps the autograd graph, and returns
L2-normalised embeddings per clip and pooled, so that losses can compare either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch


@dataclass(frozen=True)
class ClipSpec:
    """How a time series (audio or video) is cut into clips for the binder.

    ``count=None`` tiles the input with back-to-back clips of ``duration_s`` (the
    authors' V2A code: 1-s clips); an integer spreads that many clips evenly over
    the input (ImageBind's own loader: 3 clips of 2 s). Audio and video of the same
    duration get the same clip times, so clip i of one matches clip i of the other.
    """

    duration_s: float = 2.0
    count: int | None = 3
    frames_per_clip: int = 2

    def starts(self, total_s: float) -> list[float]:
        """Clip start times in seconds for an input of ``total_s`` seconds."""
        if total_s <= 0:
            raise ValueError(f"input duration must be positive, got {total_s}")
        if self.count is None:
            n = max(1, math.ceil(total_s / self.duration_s - 1e-6))
            return [i * self.duration_s for i in range(n)]
        span = max(0.0, total_s - self.duration_s)
        if self.count == 1:
            return [span / 2]
        return [span * i / (self.count - 1) for i in range(self.count)]


@dataclass
class Embedding:
    """Unit-norm embeddings: ``clips`` (B, C, D) per clip and ``pooled`` (B, D)."""

    clips: torch.Tensor
    pooled: torch.Tensor

    @classmethod
    def from_clips(cls, clips: torch.Tensor) -> Embedding:
        """Normalise per-clip embeddings (B, C, D) and pool them by the mean."""
        clips = torch.nn.functional.normalize(clips, dim=-1)
        pooled = torch.nn.functional.normalize(clips.mean(dim=1), dim=-1)
        return cls(clips=clips, pooled=pooled)


@runtime_checkable
class Binder(Protocol):
    """A joint embedding space for video, images, audio and text.

    Inputs: video (B, T, 3, H, W) float in [0, 1] at ``fps``; images (B, 3, H, W)
    float in [0, 1]; audio (B, N) mono float at ``sample_rate``; texts a list of
    strings. Any size and rate: the binder resizes and resamples differentiably.
    """

    clips: ClipSpec

    def embed_video(self, frames: torch.Tensor, fps: float) -> Embedding: ...

    def embed_image(self, images: torch.Tensor) -> Embedding: ...

    def embed_audio(self, waveform: torch.Tensor, sample_rate: int) -> Embedding: ...

    def embed_text(self, texts: Sequence[str]) -> Embedding: ...
