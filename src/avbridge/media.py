"""Typed media containers and reading/writing through PyAV and soundfile.

Containers hold numpy arrays: audio float32 mono (N,) in [-1, 1]; video frames
uint8 (T, H, W, 3) RGB; images uint8 (H, W, 3) RGB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Audio:
    """Mono audio: ``samples`` float32 (N,) at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass
class Video:
    """RGB video: ``frames`` uint8 (T, H, W, 3) at ``fps``, with an optional audio track."""

    frames: np.ndarray
    fps: float
    audio: Audio | None = None

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps


@dataclass
class Image:
    """An RGB image: ``pixels`` uint8 (H, W, 3)."""

    pixels: np.ndarray
