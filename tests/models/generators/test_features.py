"""decode_features (the vocoder-free guidance input) and the native window ``window_s``."""

from __future__ import annotations

import math

import pytest
import torch

from avbridge.models.generators.animatediff import AnimateDiffGenerator
from avbridge.models.generators.base import MediaSpec


@pytest.mark.parametrize("duration", [1.0, 1.234])
def test_decode_features_is_the_vae_mel_without_the_vocoder(audio_gen, duration):
    spec = MediaSpec(duration_s=duration)
    z = audio_gen.init_latents(spec, 2, torch.Generator().manual_seed(0)).requires_grad_(True)
    feats = audio_gen.decode_features(z, spec)
    n = spec.num_samples(16000)
    assert feats.log_mel.shape == (2, math.ceil(n / 160), 64)
    assert (feats.sample_rate, feats.num_samples, feats.hop, feats.n_fft) == (16000, n, 160, 1024)
    torch.testing.assert_close(feats.log_mel, audio_gen.decode_mel(z)[:, 0, : feats.log_mel.shape[1]])
    feats.log_mel.sum().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_window_s(audio_gen, video_gen, image_gen):
    assert audio_gen.window_s == pytest.approx(10.24)
    assert video_gen.window_s == pytest.approx(video_gen.window_frames / video_gen.default_fps)
    assert video_gen.window_frames <= video_gen.unet.config.motion_max_seq_length
    assert image_gen.window_s is None
    full = AnimateDiffGenerator.build("sd15-v152", device="meta")
    assert full.window_frames == 16 and full.window_s == pytest.approx(2.0)
