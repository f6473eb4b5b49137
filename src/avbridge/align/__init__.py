"""The latent aligner.

``loop``: Algorithm 1 of "Seeing and Hearing" (:func:`align`, :func:`align_joint`);
``config``: its settings (:class:`AlignConfig`); ``losses``: the embedding-space losses;
``decode``: what the binder sees of a latent; ``extensions``: the named options tuned
on the embedded world, applied through the loop's hooks; ``types``: its records.
"""

from avbridge.align.config import UPDATES, AlignConfig, PerModality, Settings, loss_key, per_modality
from avbridge.align.decode import binder_frame_indices, embed_media, uses_mel_path
from avbridge.align.extensions import (
    EnvelopeGradient,
    Extension,
    LatentFrameMean,
    NormalizedGradient,
    PerClipLoss,
    Refine,
    envelope_projection,
    frame_envelope_projection,
)
from avbridge.align.loop import align, align_joint, run_streams
from avbridge.align.losses import AlignLoss, LossOutput, LossWeights
from avbridge.align.types import AlignResult, AlignTrace, Condition, ProgressFn, Stream

__all__ = [
    "AlignConfig",
    "AlignLoss",
    "AlignResult",
    "AlignTrace",
    "Condition",
    "EnvelopeGradient",
    "Extension",
    "LatentFrameMean",
    "LossOutput",
    "LossWeights",
    "NormalizedGradient",
    "PerClipLoss",
    "PerModality",
    "ProgressFn",
    "Refine",
    "Settings",
    "Stream",
    "UPDATES",
    "align",
    "align_joint",
    "binder_frame_indices",
    "embed_media",
    "envelope_projection",
    "frame_envelope_projection",
    "loss_key",
    "per_modality",
    "run_streams",
    "uses_mel_path",
]
