"""Evaluation classifiers: shapes, label space, checkpoint errors, shipped weights' accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avbridge.errors import CheckpointError
from avbridge.world.evalmodels import (
    HEADS,
    AudioClassifier,
    EvalModels,
    VideoClassifier,
    label_agreement,
)
from avbridge.world.scene import render_clip, split_seeds


def test_shapes_and_label_space():
    m = EvalModels(AudioClassifier(), VideoClassifier())
    clips = [render_clip(s) for s in split_seeds("val", 2)]
    pa = m.predict_audio([c.audio for c in clips])
    pv = m.predict_video([clips[0].video, clips[1].image()])
    for p in (pa, pv):
        assert {h: p.probs[h].shape for h in HEADS} == {h: (2, len(v)) for h, v in HEADS.items()}
        assert np.allclose(p.probs["class"].sum(1), 1.0, atol=1e-5)
    agree = label_agreement(pa, pv)
    assert agree.shape == (2,) and np.all((agree > 0) & (agree <= 1 + 1e-6))


def test_video_classifier_accepts_other_sizes():
    out = VideoClassifier()(torch.rand(1, 5, 3, 64, 48))
    assert out["class"].shape == (1, 6)


def test_missing_or_bad_weights_raise_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        EvalModels.load(tmp_path)
    (tmp_path / "audio.safetensors").write_bytes(b"not a safetensors file")
    (tmp_path / "video.safetensors").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="cannot load"):
        EvalModels.load(tmp_path)


@pytest.mark.skipif(not EvalModels.available(), reason="evaluation weights not trained yet")
def test_shipped_classifiers_are_accurate():
    m = EvalModels.load()
    clips = [render_clip(s) for s in split_seeds("val", 40, start=500)]
    pa = m.predict_audio([c.audio for c in clips])
    pv = m.predict_video([c.video for c in clips])
    for p in (pa, pv):
        for h in HEADS:
            acc = np.mean([a == c.truth[h] for a, c in zip(p.labels(h), clips, strict=True)])
            assert acc >= 0.9, (h, acc)
