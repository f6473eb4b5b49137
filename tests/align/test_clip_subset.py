"""Which clips a guided step embeds (``AlignConfig.clip_fraction``)."""

from __future__ import annotations

import pytest
import torch

from avbridge.align.clip_subset import clip_view
from avbridge.align.config import AlignConfig
from avbridge.models.binders.base import ClipSpec, Embedding
from conftest import FakeBinder


def test_clip_view_cuts_condition_and_spares_one_clip_sides():
    binder = FakeBinder()
    cond = Embedding.from_clips(torch.randn(1, 4, 16))
    text = Embedding.from_clips(torch.randn(1, 1, 16))
    cfg = AlignConfig(clip_fraction=0.5)
    view, cut = clip_view([4], 1, {"visual": cond, "text": text}, cfg, binder)
    assert view is not None and view.select == (1, 3)
    assert torch.allclose(cut["visual"].clips, cond.clips[:, [1, 3]]) and cut["text"] is text
    assert clip_view([1], 1, {"visual": cond}, cfg, binder)[0] is None  # an image: nothing to cut
    assert clip_view([4], 1, {}, AlignConfig(), binder)[0] is None  # fraction 1
    view, _ = clip_view([4], 0, {"visual": Embedding.from_clips(torch.randn(1, 2, 16))}, cfg, binder)
    assert view is not None and view.select == (0,)  # the shorter condition bounds the clips
    with pytest.raises(ValueError, match="empty"):
        ClipSpec(1.0, None, select=(5,)).starts(2.0)
