"""The Generator contract: everything the aligner needs from a latent diffusion model.

An adapter wraps a backend's components (UNet, VAE, text encoder, scheduler, vocoder)
and exposes one denoising step at a time, with a differentiable decoder, so that the
aligner can write the loop itself and put gradients where it wants.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch

Modality = Literal["audio", "video", "image"]


@dataclass(frozen=True)
class MediaSpec:
    """What to generate: duration for audio/video, fps and frame size for pictures."""

    duration_s: float = 1.0
    fps: float | None = None
    height: int | None = None
    width: int | None = None

    @property
    def num_frames(self) -> int:
        """Number of video frames (1 for an image)."""
        if self.fps is None:
            return 1
        return max(1, round(self.duration_s * self.fps))

    def num_samples(self, sample_rate: int) -> int:
        """Number of audio samples at ``sample_rate``."""
        return max(1, math.ceil(self.duration_s * sample_rate - 1e-6))


#: The samplers a generator can step with (``set_sampler``, the CLI's ``--sampler``).
SAMPLERS = ("ddim", "dpm++")


@dataclass
class PromptCond:
    """An encoded prompt. ``embeds`` is the tensor that guided prompt tuning updates."""

    embeds: torch.Tensor
    negative: torch.Tensor | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def detach(self) -> PromptCond:
        """A copy that shares no autograd graph with this one."""
        neg = None if self.negative is None else self.negative.detach()
        return PromptCond(self.embeds.detach(), neg, dict(self.extra))


@dataclass
class SpectrogramFeatures:
    """Log-mel frames an audio generator decodes to, described well enough to convert.

    ``log_mel`` (B, T, n_mels) is ``log(filterbank @ |STFT|**power)`` of a waveform of
    ``num_samples`` samples at ``sample_rate``: Hann window of ``win_length`` zero-padded
    to ``n_fft``, hop ``hop``, frame ``t`` centred on sample ``t * hop`` when ``centered``
    (else starting there). ``filterbank`` is (n_mels, n_fft // 2 + 1). A binder that can
    read these (``embed_audio_features``) skips the vocoder; see docs/method.md.
    """

    log_mel: torch.Tensor
    sample_rate: int
    num_samples: int
    n_fft: int
    win_length: int
    hop: int
    filterbank: torch.Tensor
    power: float = 1.0
    centered: bool = True


@runtime_checkable
class Generator(Protocol):
    """One latent diffusion backend, stepped by the caller.

    ``decode`` returns audio (B, N) at ``sample_rate``, video (B, T, 3, H, W) or
    images (B, 3, H, W) in [0, 1], and stays differentiable.
    """

    modality: Modality
    sample_rate: int | None

    @property
    def device(self) -> torch.device: ...

    def default_spec(self, duration_s: float | None = None) -> MediaSpec: ...

    def encode_prompt(self, prompts: list[str], negative: list[str] | None = None) -> PromptCond: ...

    def init_latents(self, spec: MediaSpec, batch: int, generator: torch.Generator) -> torch.Tensor: ...

    def timesteps(self, n: int) -> torch.Tensor: ...

    def predict_eps(
        self, z: torch.Tensor, t: torch.Tensor, cond: PromptCond, guidance_scale: float
    ) -> torch.Tensor: ...

    def predict_x0(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...

    def step(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor: ...

    def renoise(self, z0: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A clean latent brought back to the noise level of ``t`` with fresh noise from
        ``generator`` (the aligner's ``refine``)."""
        ...

    def decode(self, z0: torch.Tensor, spec: MediaSpec) -> torch.Tensor: ...
