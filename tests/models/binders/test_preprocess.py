"""Differentiable preprocessing: fbank vs the reference, resampling, clips, vision, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from avbridge.models.binders import preprocess as pp
from avbridge.models.binders.base import ClipSpec


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_fbank_and_model_input_match_reference(small_fixture):
    t, meta = small_fixture["tensors"], small_fixture["meta"]
    spec = ClipSpec(duration_s=meta["clip_duration_s"], count=len(meta["audio_clip_starts_s"]))
    assert spec.starts(t["waveform"].shape[1] / 16000) == meta["audio_clip_starts_s"]
    wave = t["waveform"]
    fbank = torch.cat(
        [pp.waveform_to_fbank(wave[:, a:b]) for a, b in pp.audio_clip_bounds(wave.shape[1], 16000, spec)]
    )
    assert fbank.shape == t["fbank_clips"].shape
    assert rel(fbank, t["fbank_clips"]) < 1e-4
    x = pp.audio_to_model_input(wave, 16000, spec)
    assert x.shape == t["audio_input"].shape
    assert rel(x, t["audio_input"]) < 1e-4


def test_short_clip_is_zero_padded_and_long_clip_cut():
    short = pp.waveform_to_fbank(torch.randn(2, 8000), target_length=204)  # 48 frames
    assert short.shape == (2, 1, 128, 204)
    assert torch.all(short[..., 48:] == 0) and torch.all(short[..., :48] != 0)
    long = pp.waveform_to_fbank(torch.randn(1, 48000), num_mel_bins=64, target_length=100)
    assert long.shape == (1, 1, 64, 100)


@pytest.mark.parametrize("orig", [44100, 22050, 48000, 8000])
def test_resample_preserves_a_tone(orig):
    n = orig // 2
    t_in = torch.arange(n, dtype=torch.float64) / orig
    tone = torch.sin(2 * math.pi * 440 * t_in).float()[None]
    y = pp.resample(tone, orig, 16000)
    assert y.shape == (1, math.ceil(n * 16000 / orig))
    t_out = torch.arange(y.shape[1], dtype=torch.float64) / 16000
    want = torch.sin(2 * math.pi * 440 * t_out).float()
    core = slice(400, y.shape[1] - 400)  # away from the zero-padded edges
    assert (y[0, core] - want[core]).abs().max() < 2e-3


def test_resample_removes_content_above_the_new_nyquist():
    tone = torch.sin(2 * math.pi * 12000 * torch.arange(24000) / 48000)[None]
    y = pp.resample(tone, 48000, 16000)
    assert y[0, 200:-200].abs().max() < 0.01


def test_video_clip_indices_follow_clipspec():
    spec = ClipSpec(duration_s=1.0, count=None, frames_per_clip=2)
    assert pp.video_clip_indices(16, 8.0, spec) == [[0, 7], [8, 15]]
    spec4 = ClipSpec(duration_s=0.5, count=None, frames_per_clip=4)
    assert pp.video_clip_indices(8, 8.0, spec4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # Audio and video of the same length get the same clip times.
    three = ClipSpec(duration_s=2.0, count=3)
    assert len(pp.video_clip_indices(50, 10.0, three)) == len(pp.audio_clip_bounds(80000, 16000, three))
    assert pp.audio_clip_bounds(80000, 16000, three) == [(0, 32000), (24000, 56000), (48000, 80000)]
    assert pp.video_clip_indices(50, 10.0, three) == [[0, 19], [15, 34], [30, 49]]


def test_resize_short_side_then_center_crop():
    img = torch.zeros(1, 3, 40, 80)
    img[..., 20:60] = 1.0  # the central 40x40 square is white, the sides black
    out = pp.resize_center_crop(img, 20)
    assert out.shape == (1, 3, 20, 20)
    assert out[..., 2:-2, 2:-2].min() > 0.99
    assert pp.resize_center_crop(torch.rand(2, 3, 32, 32), 32).shape == (2, 3, 32, 32)
    assert pp.to_unit_float(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)).max() == 1.0


def test_fbank_gradient_finite_for_silence():
    wave = torch.zeros(1, 16000, requires_grad=True)
    x = pp.audio_to_model_input(pp.resample(wave, 22050, 16000), 16000, ClipSpec(1.0, None))
    x.sum().backward()
    assert torch.isfinite(wave.grad).all()
