"""Settings of one aligned (or vanilla) generation: :class:`AlignConfig`.

The fields come in three groups. *The paper's settings* (Algorithm 1 of "Seeing and
Hearing"): steps, CFG scale, negative prompt, latent lr and update rule, inner steps,
guidance window, prompt lr, loss weights. *Cost switches*, which change what a guided
step computes but not what it aims at. *Extensions*, options tuned on the embedded
world, each carried out by a named class in :mod:`avbridge.align.extensions`; their
defaults switch them off, so ``AlignConfig()`` with a task's paper fields is the paper.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from avbridge.align.losses import LossWeights

PerModality = float | Mapping[str, float]
UPDATES = ("adam-sign", "grad", "norm-grad")


def per_modality(value: PerModality, key: str) -> float:
    """A setting that is either one number or a number per modality ("audio"/"visual")."""
    if isinstance(value, Mapping):
        if key not in value:
            raise ValueError(f"no value for modality {key!r} in {dict(value)}")
        return float(value[key])
    return float(value)


def loss_key(modality: str) -> str:
    """Loss-side name of a media modality: audio -> "audio", video/image -> "visual"."""
    if modality == "audio":
        return "audio"
    if modality in ("video", "image", "visual"):
        return "visual"
    raise ValueError(f"unknown modality {modality!r}")


def _choice(name: str, value: object, allowed: tuple[object, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


@dataclass
class AlignConfig:
    """Settings of one generation (see the module doc for the three groups).

    Paper: ``lr``, ``prompt_lr`` and ``guidance_scale`` take one number or a mapping
    ``{"audio": ..., "visual": ...}`` (joint generation guides two models whose sensible
    rates differ: 0.1 for AudioLDM, 0.01 for AnimateDiff). ``window=(start, stop)``:
    step ``i`` of ``steps`` (0-based) is guided when ``start <= i / steps < stop``;
    ``(0.2, 1.0)`` with 30 steps guides steps 6..29 (the authors' V2A code).
    ``update="adam-sign"``: a fresh Adam per denoising step over ``inner_steps``
    iterations (the authors' code; its first move is ``lr * sign(grad)``); ``"grad"``:
    ``z <- z - lr * grad``; ``"norm-grad"``: the gradient step of the
    :class:`~avbridge.align.extensions.NormalizedGradient` extension.

    Cost switches: ``grad_through_unet`` (backpropagate through the UNet instead of
    treating eps as a constant of ``z``), ``recompute_eps`` (run the UNet again after the
    update), ``frame_subset`` (decode only the video frames the binder samples),
    ``audio_path`` (``"mel"``: the decoded log-mel goes straight to the binder's fbank,
    no vocoder, when both sides support it; ``"waveform"``: VAE -> vocoder -> fbank; the
    final output always uses the vocoder), ``guidance_dtype`` (autocast of the guidance
    branch only: decode, binder, loss and their backward), ``guidance_decoder`` (decode
    ``z0`` for the binder with the generator's small guidance decoder, when it carries one
    (:mod:`avbridge.models.guidance_decoders`): log-mel for audio, frames for video and
    images; the final output is always decoded by the model's own VAE),
    ``guidance_encoder`` (embed the decoded audio with the binder's small audio guidance
    encoder, when it carries one (:mod:`avbridge.models.binders.guidance_encoder`); the
    condition, the text and every reported score use the binder itself).

    Extensions (:mod:`avbridge.align.extensions`): ``per_clip`` (PerClipLoss),
    ``mel_grad``/``frame_grad="envelope"`` (EnvelopeGradient on the log-mel / frames),
    ``latent_grad="frame-mean"`` (LatentFrameMean), ``update="norm-grad"``
    (NormalizedGradient), ``refine`` (Refine: one number, or one per modality where a
    modality not named is not refined).
    """

    # The paper's settings.
    steps: int = 30
    guidance_scale: PerModality = 2.5
    negative_prompt: str | None = None
    lr: PerModality = 0.1
    update: Literal["adam-sign", "grad", "norm-grad"] = "adam-sign"
    inner_steps: int = 1
    window: tuple[float, float] = (0.2, 1.0)
    prompt_lr: PerModality = 0.0
    weights: LossWeights | Mapping[str, float] = field(default_factory=LossWeights)
    # Cost switches.
    grad_through_unet: bool = False
    recompute_eps: bool = False
    frame_subset: bool = True
    audio_path: Literal["mel", "waveform"] = "mel"
    guidance_dtype: Literal["bfloat16", "float16"] | None = None
    guidance_decoder: bool = False
    guidance_encoder: bool = False
    # Extensions.
    per_clip: bool = False
    mel_grad: Literal["full", "envelope"] = "full"
    frame_grad: Literal["full", "envelope"] = "full"
    latent_grad: Literal["full", "frame-mean"] = "full"
    refine: PerModality = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.weights, Mapping):  # from JSON (guidance.json, --set weights.at=2)
            unknown = set(self.weights) - {f.name for f in fields(LossWeights)}
            if unknown:
                raise ValueError(f"unknown loss weights {sorted(unknown)}; expected av, vt, at")
            self.weights = LossWeights(**{k: float(v) for k, v in self.weights.items()})
        _choice("guidance_dtype", self.guidance_dtype, (None, "bfloat16", "float16"))
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {self.inner_steps}")
        _choice("audio_path", self.audio_path, ("mel", "waveform"))
        _choice("mel_grad", self.mel_grad, ("full", "envelope"))
        _choice("frame_grad", self.frame_grad, ("full", "envelope"))
        _choice("latent_grad", self.latent_grad, ("full", "frame-mean"))
        _choice("update", self.update, UPDATES)
        values = self.refine.values() if isinstance(self.refine, Mapping) else [self.refine]
        if not all(0.0 <= float(v) < 1.0 for v in values):
            raise ValueError(f"refine must satisfy 0 <= refine < 1, got {self.refine}")
        start, stop = self.window
        if not 0.0 <= start <= stop <= 1.0:
            raise ValueError(f"window must satisfy 0 <= start <= stop <= 1, got {self.window}")

    def guided_steps(self) -> list[int]:
        """0-based indices of the denoising steps inside the guidance window."""
        start, stop = self.window
        lo = math.ceil(start * self.steps - 1e-9)
        hi = math.ceil(stop * self.steps - 1e-9)
        return list(range(lo, hi))

    def refine_from(self, key: str = "audio") -> int | None:
        """0-based step at which ``refine`` restarts the denoising of modality ``key``
        ("audio"/"visual"), or None when it is off."""
        refine = float(self.refine.get(key, 0.0) if isinstance(self.refine, Mapping) else self.refine)
        if refine <= 0:
            return None
        return min(self.steps - 1, round((1.0 - refine) * self.steps))


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, Mapping):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def settings_record(
    config: AlignConfig, sources: Mapping[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """``{field: {"value": ..., "from": ...}}`` of a config, JSON-safe: each value and where it
    came from ("paper", "preset NAME", "option", "default"; "given" when no source is known)."""
    src = sources or {}
    values = dataclasses.asdict(config)
    return {k: {"value": _jsonable(v), "from": src.get(k, "given")} for k, v in values.items()}


@dataclass
class Settings:
    """A run's AlignConfig and where each field's value came from
    (built by :func:`avbridge.presets.resolve_settings`)."""

    config: AlignConfig
    sources: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, dict[str, Any]]:
        """``{field: {"value": ..., "from": ...}}``, JSON-safe, for traces and summaries."""
        return settings_record(self.config, {k: self.sources.get(k, "default") for k in _names()})


def _names() -> list[str]:
    return [f.name for f in fields(AlignConfig)]
