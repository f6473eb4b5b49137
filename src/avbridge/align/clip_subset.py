"""Guided steps that embed only some of the binder's clips (``AlignConfig.clip_fraction``).

The binder's cost grows with its clip count: 8 one-second clips for 8 s of audio at the
paper's settings, where ImageBind-huge's audio tower, forward and backward, costs about
twice a CFG UNet step. With ``clip_fraction < 1`` a guided step embeds ``ceil(f * C)`` of
the ``C`` clips, spread over the media and shifted by one clip per step, against the same
clips of the condition (:func:`clip_view`). A clip steers only the part of the output it
covers, so each part is steered at a fraction of the steps: cheaper, and weaker
(docs/method.md gives the measured cost on the world).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from avbridge.align.config import AlignConfig
from avbridge.align.decode import select_clips
from avbridge.models.binders.base import Binder, ClipSpec, Embedding
from avbridge.models.generators.base import Generator, MediaSpec


def clip_count(generator: Generator, spec: MediaSpec, binder: Binder) -> int:
    """How many binder clips a generator's output of ``spec`` has (1 for an image)."""
    rate = generator.sample_rate
    if generator.modality == "audio" and rate:
        return len(binder.clips.starts(spec.num_samples(int(rate)) / int(rate)))
    if generator.modality == "video" and spec.fps:
        return len(binder.clips.starts(spec.num_frames / spec.fps))
    return 1


def clip_view(
    counts: Sequence[int], step: int, fixed: dict[str, Embedding | None], config: AlignConfig, binder: Binder,
) -> tuple[ClipSpec | None, dict[str, Embedding | None]]:
    """The clips guided step ``step`` embeds and the fixed embeddings cut to the same clips;
    ``(None, fixed)`` for every clip. ``counts``: the clip count of each generated stream."""
    several = [n for n in counts if n > 1]
    if config.clip_fraction >= 1.0 or not several:
        return None, fixed
    several += [e.clips.shape[1] for e in fixed.values() if e is not None and e.clips.shape[1] > 1]
    select = config.clip_selection(min(several), step)
    if select is None:
        return None, fixed
    view = dataclasses.replace(binder.clips, select=tuple(select))
    return view, {k: None if e is None else select_clips(e, select) for k, e in fixed.items()}
