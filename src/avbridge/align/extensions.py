"""Named extensions of Algorithm 1, tuned on the embedded world (docs/method.md).

Each extension is a small object with one or more hooks that the loop calls at fixed
points; every hook defaults to "change nothing":

- ``loss(loss)``: replace the loss object (:class:`PerClipLoss`);
- ``filter_features(features)`` / ``filter_media(modality, media)``: change the gradient
  flowing back into the decoded log-mel or frames (:class:`EnvelopeGradient`);
- ``filter_grads(streams)``: change latent gradients before the update
  (:class:`LatentFrameMean`, :class:`NormalizedGradient`);
- ``extra_steps(...)`` and ``after_loop(...)``: a stage after the guided loop
  (:class:`Refine`).

:func:`from_config` builds them from an :class:`~avbridge.align.config.AlignConfig`, in a
fixed order, so a config's extensions always compose the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import torch

from avbridge.align.config import AlignConfig, per_modality
from avbridge.align.losses import AlignLoss


class GuidedStream(Protocol):
    """What extensions see of a stream being denoised (the loop's per-stream state)."""

    key: str
    modality: str
    z: torch.Tensor
    generator: Any
    cond: Any
    timesteps: torch.Tensor


def envelope_projection(grad: torch.Tensor, sigma_frames: float = 1.0) -> torch.Tensor:
    """Keep the loudness-over-time part of a (B, T, n_mels) log-mel gradient: its mean over
    mel bins at each frame, smoothed along time by a Gaussian of ``sigma_frames``."""
    profile = grad.mean(dim=-1)  # (B, T)
    radius = max(1, math.ceil(3 * sigma_frames))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=grad.device)
    kernel = torch.exp(-0.5 * (taps / sigma_frames) ** 2)
    kernel = (kernel / kernel.sum()).to(profile.dtype)
    padded = torch.nn.functional.pad(profile[:, None], (radius, radius), mode="replicate")
    smooth = torch.nn.functional.conv1d(padded, kernel.view(1, 1, -1))[:, 0]
    return smooth[..., None].expand_as(grad).contiguous()


def frame_envelope_projection(grad: torch.Tensor) -> torch.Tensor:
    """Keep the brightness-over-time part of a (B, T, C, H, W) frame gradient: its mean over
    the pixels of each frame and channel (any layout whose last two dims are pixels, e.g.
    video latents (B, C, F, H, W))."""
    return grad.mean(dim=(-2, -1), keepdim=True).expand_as(grad).contiguous()


class _ProjectedGradient(torch.autograd.Function):
    """Identity forward; backward passes only ``project(grad)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, project: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.project = project
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.project(grad), None


def project_gradient(x: torch.Tensor, project: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``x`` unchanged, but the gradient that flows back through it is ``project(grad)``."""
    return _ProjectedGradient.apply(x, project)


class Extension:
    """Base class: every hook changes nothing."""

    name = "extension"

    def loss(self, loss: AlignLoss) -> AlignLoss:
        return loss

    def filter_features(self, features: Any) -> Any:
        return features

    def filter_media(self, modality: str, media: torch.Tensor) -> torch.Tensor:
        return media

    def filter_grads(self, streams: Sequence[GuidedStream]) -> None:
        return None

    def extra_steps(self, streams: Sequence[GuidedStream], n_steps: int) -> int:
        return 0

    def after_loop(
        self, streams: Sequence[GuidedStream], n_steps: int, rng: torch.Generator,
        progress: Callable[[int, int, dict[str, Any]], None] | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PerClipLoss(Extension):
    """Compare binder embeddings clip by clip instead of pooled (``per_clip``).

    ImageBind averages its clip embeddings, so the pooled loss cannot see *when* things
    happen; comparing clip i with clip i keeps timing (the audio-text term stays pooled,
    see :mod:`avbridge.align.losses`)."""

    name = "per-clip"

    def loss(self, loss: AlignLoss) -> AlignLoss:
        return AlignLoss(loss.weights, per_clip=True)


class EnvelopeGradient(Extension):
    """Pass only the envelope of the binder's gradient (``mel_grad``/``frame_grad="envelope"``).

    On the log-mel: its per-frame mean over mel bins, smoothed over time (loudness over
    time); on video frames: its per-frame, per-channel mean over pixels (brightness over
    time). A small binder's full gradient is dominated by fine detail nearly orthogonal to
    the way to the right output; its envelope is what moves events (docs/world.md)."""

    name = "envelope-gradient"

    def __init__(self, mel: bool, frames: bool) -> None:
        self.mel, self.frames = mel, frames

    def filter_features(self, features: Any) -> Any:
        if self.mel:
            features.log_mel = project_gradient(features.log_mel, envelope_projection)
        return features

    def filter_media(self, modality: str, media: torch.Tensor) -> torch.Tensor:
        if self.frames and modality == "video" and media.dim() == 5:
            return project_gradient(media, frame_envelope_projection)
        return media

    def __repr__(self) -> str:
        return f"EnvelopeGradient(mel={self.mel}, frames={self.frames})"


class LatentFrameMean(Extension):
    """Replace the gradient on video latents (B, C, F, H, W) by its mean over each latent
    frame, per channel (``latent_grad="frame-mean"``): guidance shifts whole frames
    (brightness, colour over time) and leaves their layout, the shapes the prompt made, to
    the generator. Audio and image latents are not touched."""

    name = "latent-frame-mean"

    def filter_grads(self, streams: Sequence[GuidedStream]) -> None:
        for st in streams:
            if st.modality == "video" and st.z.dim() == 5 and st.z.grad is not None:
                st.z.grad = frame_envelope_projection(st.z.grad)


class NormalizedGradient(Extension):
    """Divide each latent (and prompt) gradient by its per-sample RMS before a plain
    gradient step (``update="norm-grad"``): the overall step of a sign step, spread as the
    gradient is, so elements the loss barely depends on barely move."""

    name = "norm-grad"

    def filter_grads(self, streams: Sequence[GuidedStream]) -> None:
        for st in streams:
            for p in (st.z, getattr(st, "tuned", None)):
                if p is None or p.grad is None:
                    continue
                dims = tuple(range(1, p.grad.dim()))
                rms = p.grad.pow(2).mean(dim=dims, keepdim=True).sqrt() if dims else p.grad.abs()
                p.grad.div_(rms.clamp_min(1e-12))


class Refine(Extension):
    """An SDEdit pass after the guided loop (``refine``; Meng et al. 2022).

    Each refined stream is brought back to the noise level of step
    ``round((1 - refine) * steps)`` with fresh noise and denoised again without the
    binder: the generator re-synthesises the fine detail guidance pushed off its manifold
    (the timbre a sound class is heard by), while the coarse structure guidance made (when
    events happen) survives the partial noise. Costs ``refine * steps`` plain steps."""

    name = "refine"

    def __init__(self, config: AlignConfig) -> None:
        self.config = config

    def _starts(self, streams: Sequence[GuidedStream]) -> list[int | None]:
        return [self.config.refine_from(st.key) for st in streams]

    def _first(self, streams: Sequence[GuidedStream], n_steps: int) -> int:
        return min((r for r in self._starts(streams) if r is not None), default=n_steps)

    def extra_steps(self, streams: Sequence[GuidedStream], n_steps: int) -> int:
        return n_steps - self._first(streams, n_steps)

    def after_loop(
        self, streams: Sequence[GuidedStream], n_steps: int, rng: torch.Generator,
        progress: Callable[[int, int, dict[str, Any]], None] | None,
    ) -> None:
        starts = self._starts(streams)
        first = self._first(streams, n_steps)
        total = n_steps + (n_steps - first)
        with torch.no_grad():
            for i in range(first, n_steps):
                for st, restart in zip(streams, starts, strict=True):
                    if restart is None or i < restart:
                        continue
                    gen, t = st.generator, st.timesteps[i]
                    if i == restart:
                        st.z = gen.renoise(st.z.detach(), t, rng)
                    scale = per_modality(self.config.guidance_scale, st.key)
                    st.z = gen.step(st.z, gen.predict_eps(st.z, t, st.cond, scale), t)
                if progress is not None:
                    progress(n_steps + i - first + 1, total, {"guided": False, "refine": True})

    def __repr__(self) -> str:
        return f"Refine({self.config.refine})"


def from_config(config: AlignConfig) -> list[Extension]:
    """The extensions a config switches on, in the order the loop applies them."""
    out: list[Extension] = []
    if config.per_clip:
        out.append(PerClipLoss())
    if config.mel_grad == "envelope" or config.frame_grad == "envelope":
        out.append(EnvelopeGradient(config.mel_grad == "envelope", config.frame_grad == "envelope"))
    if config.latent_grad == "frame-mean":
        out.append(LatentFrameMean())
    if config.update == "norm-grad":
        out.append(NormalizedGradient())
    refine = config.refine.values() if isinstance(config.refine, Mapping) else [config.refine]
    if any(float(v) > 0 for v in refine):
        out.append(Refine(config))
    return out
