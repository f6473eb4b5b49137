"""The embedding losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from avbridge.align.losses import (
    AlignLoss,
    LossWeights,
    cosine_distance,
    dual_loss,
    embedding_distance,
    triangle_loss,
)
from avbridge.models.binders.base import Embedding


def emb(*vectors: list[float]) -> Embedding:
    """An embedding of one batch item whose clips are ``vectors``."""
    return Embedding.from_clips(torch.tensor([vectors], dtype=torch.float32))


E1 = emb([1.0, 0.0])
E2 = emb([0.0, 1.0])
E45 = emb([1.0, 1.0])  # 45 degrees from both axes


def test_cosine_distance_hand_values():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    assert torch.allclose(cosine_distance(a, b), torch.tensor([0.0, 1.0, 2.0]))


def test_dual_v2a_sums_audio_terms_only():
    # V2A: F(a, v) + F(a, p); a=E45, v=E1, p=E2 -> 2 * (1 - 1/sqrt 2)
    out = dual_loss(E45, E1, E2, generated_modality="audio")
    expected = 2 * (1 - 1 / math.sqrt(2))
    assert out.total.shape == (1,)
    assert out.total.item() == pytest.approx(expected, abs=1e-6)
    assert set(out.terms) == {"av", "at"}


def test_dual_a2v_uses_visual_text_term():
    # A2V: F(v, a) + F(v, p); v=E1, a=E2 (1), p=E1 (0)
    out = dual_loss(E1, E2, E1, generated_modality="visual")
    assert set(out.terms) == {"av", "vt"}
    assert out.total.item() == pytest.approx(1.0, abs=1e-6)


def test_triangle_and_weights():
    # v=E1, a=E2, p=E45: F(v,p)=F(a,p)=1-1/sqrt2, F(v,a)=1
    out = triangle_loss(E1, E2, E45)
    d = 1 - 1 / math.sqrt(2)
    assert out.total.item() == pytest.approx(1 + 2 * d, abs=1e-6)
    w = LossWeights(av=0.5, vt=2.0, at=0.0)
    out = triangle_loss(E1, E2, E45, weights=w)
    assert set(out.terms) == {"av", "vt"}
    assert out.total.item() == pytest.approx(0.5 + 2 * d, abs=1e-6)


def test_absent_prompt_drops_out():
    out = dual_loss(E45, E1, None, generated_modality="audio")
    assert set(out.terms) == {"av"}
    assert out.total.item() == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)
    with pytest.raises(ValueError):
        AlignLoss()({"audio": E1, "visual": None, "text": None}, generated=["audio"])


def test_per_clip_differs_from_pooled():
    # a has clips (E1, E2), b has clips (E2, E1): pooled equal, every clip orthogonal.
    a = emb([1.0, 0.0], [0.0, 1.0])
    b = emb([0.0, 1.0], [1.0, 0.0])
    assert embedding_distance(a, b).item() == pytest.approx(0.0, abs=1e-6)
    assert embedding_distance(a, b, per_clip=True).item() == pytest.approx(1.0, abs=1e-6)
    # one-clip side broadcasts: mean(F(E1,E1), F(E2,E1)) = 0.5
    assert embedding_distance(a, E1, per_clip=True).item() == pytest.approx(0.5, abs=1e-6)
    # unequal counts: the first min(C) clips are compared
    c = emb([1.0, 0.0], [0.0, 1.0], [1.0, 0.0])
    assert embedding_distance(a, c, per_clip=True).item() == pytest.approx(0.0, abs=1e-6)
    out = AlignLoss(per_clip=True)({"audio": a, "visual": b}, generated=["audio"])
    assert out.total.item() == pytest.approx(1.0, abs=1e-6)


def test_per_clip_keeps_the_audio_text_term_pooled():
    # audio clips (E1, E2) against a text E1: per clip 0.5, pooled 1 - cos(45 deg).
    audio = emb([1.0, 0.0], [0.0, 1.0])
    visual = emb([1.0, 0.0], [0.0, 1.0])
    text = E1
    out = AlignLoss(per_clip=True)({"audio": audio, "visual": visual, "text": text},
                                   generated=["audio", "visual"])
    assert out.terms["at"].item() == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-6)
    assert out.terms["vt"].item() == pytest.approx(0.5, abs=1e-6)
    assert out.terms["av"].item() == pytest.approx(0.0, abs=1e-6)
    pooled = AlignLoss(per_clip=False)({"audio": audio, "visual": visual, "text": text},
                                       generated=["audio", "visual"])
    assert out.terms["at"].item() == pytest.approx(pooled.terms["at"].item(), abs=1e-6)


def test_gradient_flows_and_batch_items_independent():
    x = torch.tensor([[[1.0, 0.2]], [[0.3, 1.0]]], requires_grad=True)
    gen = Embedding.from_clips(x)
    cond = Embedding.from_clips(torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]]))
    out = dual_loss(gen, cond, None, generated_modality="audio")
    assert out.total.shape == (2,)
    out.total.sum().backward()
    assert x.grad is not None and torch.all(x.grad.abs().sum(-1) > 0)
