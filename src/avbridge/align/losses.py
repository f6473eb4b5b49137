"""Embedding-space losses of the aligner: ``F(a, b) = 1 - cos(a, b)`` and its sums.

Modalities are named ``"audio"``, ``"visual"`` (video or image) and ``"text"``. A loss
term compares two of them; the three possible pairs have their own weight:

- ``av``: audio <-> visual, ``vt``: visual <-> text, ``at``: audio <-> text.

The *dual* loss of V2A/I2A is ``F(e_a, e_v) + F(e_a, e_p)`` (audio generated), of
A2V/A2I ``F(e_v, e_a) + F(e_v, e_p)`` (visual generated); the *triangle* loss of
Joint-VA is ``F(e_v, e_p) + F(e_v, e_a) + F(e_a, e_p)``. All are the same rule: sum
every pair in which at least one side is generated and both sides are present. A
pair whose input is absent (no prompt, say) drops out.

``per_clip=True`` compares clip i with clip i (mean over clips) instead of the pooled
embeddings, so that timing that the pooled mean averages away can still steer. The
audio-text term stays pooled (``PER_CLIP_PAIRS``): a sound's class is heard only around its
events, so most audio clips hold background, and a text term per clip pushes the prompt's
sound into every clip. A visual source is seen in every clip, so the visual-text term is
compared per clip (docs/world.md, "The text term of the per-clip loss").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from avbridge.models.binders.base import Embedding

MODALITIES = ("audio", "visual", "text")
_PAIRS = {"av": ("audio", "visual"), "vt": ("visual", "text"), "at": ("audio", "text")}
PER_CLIP_PAIRS = frozenset({"av", "vt"})


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - cos(a, b)`` along the last dimension (broadcasting the others)."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def embedding_distance(a: Embedding, b: Embedding, per_clip: bool = False) -> torch.Tensor:
    """Distance per batch item (B,) between two embeddings.

    Pooled: ``F(a.pooled, b.pooled)``. Per clip: mean over clips of ``F(a.clips[:, i],
    b.clips[:, i])``; a one-clip side (an image, a text) is compared with every clip of
    the other; when both have several clips but different counts (audio rounded up to
    whole seconds against a shorter video), the first ``min`` clips are compared: the
    binder cuts both from time 0, so these clips cover the same times.
    """
    if not per_clip:
        return cosine_distance(a.pooled, b.pooled)
    ca, cb = a.clips, b.clips
    na, nb = ca.shape[1], cb.shape[1]
    if na != nb and na > 1 and nb > 1:
        n = min(na, nb)
        ca, cb = ca[:, :n], cb[:, :n]
    return cosine_distance(ca, cb).mean(dim=1)


@dataclass(frozen=True)
class LossWeights:
    """Weight of each pair term; a zero weight removes the term."""

    av: float = 1.0
    vt: float = 1.0
    at: float = 1.0

    def get(self, pair: str) -> float:
        return float(getattr(self, pair))


@dataclass
class LossOutput:
    """Total loss (B,) and the weighted terms that make it up, each (B,)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)

    def item_terms(self) -> dict[str, float]:
        """Batch-mean value of each term, as floats (for traces and logs)."""
        return {k: float(v.detach().mean()) for k, v in self.terms.items()}


class AlignLoss:
    """Sum of weighted ``1 - cos`` terms over the pairs that touch a generated modality."""

    def __init__(self, weights: LossWeights | None = None, per_clip: bool = False):
        self.weights = weights or LossWeights()
        self.per_clip = per_clip

    def __call__(
        self, embeddings: Mapping[str, Embedding | None], generated: Collection[str]
    ) -> LossOutput:
        """Loss per batch item for ``embeddings`` keyed by modality.

        ``generated`` names the modalities being steered: a pair with neither side
        generated is constant and left out (the V2A loss has no visual-text term).
        """
        unknown = (set(embeddings) | set(generated)) - set(MODALITIES)
        if unknown:
            raise ValueError(f"unknown modalities {sorted(unknown)}; expected {MODALITIES}")
        terms: dict[str, torch.Tensor] = {}
        for name, (m1, m2) in _PAIRS.items():
            w = self.weights.get(name)
            e1, e2 = embeddings.get(m1), embeddings.get(m2)
            if w == 0 or e1 is None or e2 is None or not ({m1, m2} & set(generated)):
                continue
            terms[name] = w * embedding_distance(e1, e2, self.per_clip and name in PER_CLIP_PAIRS)
        if not terms:
            raise ValueError(
                f"no loss term: generated={sorted(generated)}, present="
                f"{sorted(k for k, v in embeddings.items() if v is not None)}"
            )
        total = torch.stack(list(terms.values()), dim=0).sum(dim=0)
        return LossOutput(total=total, terms=terms)


def dual_loss(
    generated: Embedding,
    condition: Embedding,
    text: Embedding | None,
    *,
    generated_modality: str,
    weights: LossWeights | None = None,
    per_clip: bool = False,
) -> LossOutput:
    """V2A/I2A (``generated_modality="audio"``) or A2V/A2I (``"visual"``) dual loss."""
    other = "visual" if generated_modality == "audio" else "audio"
    if generated_modality not in ("audio", "visual"):
        raise ValueError(f"generated_modality must be 'audio' or 'visual', got {generated_modality!r}")
    embs = {generated_modality: generated, other: condition, "text": text}
    return AlignLoss(weights, per_clip)(embs, generated=[generated_modality])


def triangle_loss(
    visual: Embedding,
    audio: Embedding,
    text: Embedding | None,
    *,
    weights: LossWeights | None = None,
    per_clip: bool = False,
) -> LossOutput:
    """Joint-VA triangle loss ``F(v, p) + F(v, a) + F(a, p)``."""
    embs = {"visual": visual, "audio": audio, "text": text}
    return AlignLoss(weights, per_clip)(embs, generated=["audio", "visual"])
