"""The records the aligner takes and returns: conditions, streams, traces and results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from avbridge.align.config import loss_key
from avbridge.models.binders.base import Embedding
from avbridge.models.generators.base import Generator, MediaSpec

#: ``progress(step, total, info)``: info holds "guided", and "loss" at guided steps.
ProgressFn = Callable[[int, int, dict[str, Any]], None]


@dataclass
class Condition:
    """A conditioning input as tensors: audio (B, N) at ``rate`` Hz, video (B, T, 3, H, W)
    in [0, 1] at ``rate`` fps, or images (B, 3, H, W) in [0, 1]."""

    modality: Literal["audio", "video", "image"]
    data: torch.Tensor
    rate: float | None = None
    #: the binder's embedding of ``data`` when already computed (e.g. by a captioner): the
    #: loop then does not embed the condition again
    embedding: Embedding | None = None

    @property
    def key(self) -> str:
        return loss_key(self.modality)


@dataclass
class Stream:
    """One generator being denoised: what to make and from which prompt."""

    generator: Generator
    spec: MediaSpec
    prompt: str = ""

    @property
    def key(self) -> str:
        return loss_key(self.generator.modality)


@dataclass
class AlignTrace:
    """What happened: losses at the guided steps and the binder loss of the output."""

    guided_steps: list[int] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    inner_loss: list[list[float]] = field(default_factory=list)
    final_loss: float = float("nan")
    final_loss_per_sample: list[float] = field(default_factory=list)
    final_terms: dict[str, float] = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)
    binder_calls: int = 0
    #: every AlignConfig field of the run: ``{field: {"value": ..., "from": ...}}``
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class AlignResult:
    """Final latents and decoded media (detached) per loss key ("audio"/"visual")."""

    latents: dict[str, torch.Tensor]
    media: dict[str, torch.Tensor]
    prompt_embeds: dict[str, torch.Tensor]
    trace: AlignTrace
