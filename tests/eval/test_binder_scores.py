"""Binder scores (AV/VT/AT-align_bind, IB-score) by hand and with the tiny ImageBind binder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avbridge.eval import binder_scores as bs
from avbridge.eval.extractors import BinderExtractor, FeatureExtractor, embed_media
from avbridge.io.media import Audio, Image, Video
from avbridge.models.binders.base import Binder

from .eval_fakes import FixedBinder


def _media(seed=0):
    rng = np.random.default_rng(seed)
    audio = Audio((rng.standard_normal(16000) * 0.1).astype(np.float32), 16000)
    video = Video(rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8), 8.0, audio)
    return video, audio


def test_scores_by_hand_with_fake_binder():
    fake = FixedBinder()
    assert isinstance(fake, Binder)
    video, audio = _media()
    s = bs.binder_scores(fake, video=video, audio=audio, text="a ball", condition="video")
    assert s["AV-align_bind"] == pytest.approx(1 / math.sqrt(2))
    assert s["VT-align_bind"] == pytest.approx(0.0)
    assert s["AT-align_bind"] == pytest.approx(0.0)
    assert s["IB-score"] == pytest.approx(100 / math.sqrt(2))
    img = Image(np.zeros((16, 16, 3), np.uint8))
    s2 = bs.binder_scores(fake, image=img, audio=audio, condition="image")
    assert s2 == pytest.approx({"AV-align_bind": 1 / math.sqrt(2), "IB-score": 100 / math.sqrt(2)})
    assert bs.cosine(np.zeros(3), np.ones(3)) == 0.0


def test_scores_with_tiny_imagebind_match_direct_embeddings():
    from avbridge.models.binders.imagebind import ImageBindBinder

    binder = ImageBindBinder.from_preset("tiny", seed=0)
    video, audio = _media(1)
    ex = BinderExtractor(binder, "ib-tiny")
    assert isinstance(ex, FeatureExtractor) and len(ex.version) == 16
    out = ex.extract(video)  # video with a soundtrack gives both sides
    with torch.no_grad():
        frames = torch.from_numpy(video.frames).permute(0, 3, 1, 2)[None].float() / 255
        ev = binder.embed_video(frames, 8.0).pooled[0].double().numpy()
        ea = binder.embed_audio(torch.from_numpy(audio.samples)[None], 16000).pooled[0].double().numpy()
        et = binder.embed_text(["a red ball"]).pooled[0].double().numpy()
    np.testing.assert_allclose(out["features"], ev, atol=1e-6)
    np.testing.assert_allclose(out["audio_features"], ea, atol=1e-6)
    s = bs.binder_scores(binder, video=video, text="a red ball", condition="video")
    assert s["AV-align_bind"] == pytest.approx(float(ev @ ea), abs=1e-6)
    assert s["VT-align_bind"] == pytest.approx(float(ev @ et), abs=1e-6)
    assert s["AT-align_bind"] == pytest.approx(float(ea @ et), abs=1e-6)
    assert s["IB-score"] == pytest.approx(100 * float(ev @ ea), abs=1e-4)
    np.testing.assert_allclose(embed_media(binder, "a red ball").pooled[0].numpy(), et, atol=1e-6)
