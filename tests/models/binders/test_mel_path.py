"""The vocoder-free audio path: AudioLDM log-mel -> approximate kaldi fbank -> ImageBind."""

from __future__ import annotations

import math

import pytest
import torch

from avbridge.models.binders import preprocess as pp
from avbridge.models.binders.base import ClipSpec
from avbridge.models.binders.imagebind import ImageBindBinder
from avbridge.models.generators.audioldm import mel_filterbank, mel_spectrogram
from avbridge.models.generators.base import SpectrogramFeatures

SR = 16000


def _signals(seconds: float = 2.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    n = int(SR * seconds)
    t = torch.arange(n) / SR
    clicks = torch.zeros(n)
    clicks[torch.rand(n, generator=g) < 0.002] = 1.0
    ring = torch.exp(-torch.arange(300) / 40.0) * torch.sin(2 * math.pi * 1500 * torch.arange(300) / SR)
    return {
        "noise": 0.1 * torch.randn(n, generator=g),
        "chirp": 0.3 * torch.sin(2 * math.pi * (200 * t + 900 * t**2)),
        "harmonics": sum(0.2 / k * torch.sin(2 * math.pi * 220 * k * t) for k in range(1, 8))
        * (1 + torch.sin(2 * math.pi * 2 * t)) / 2 + 0.01 * torch.randn(n, generator=g),
        "ringing clicks": torch.nn.functional.conv1d(
            clicks[None, None], ring.flip(0)[None, None], padding=299
        )[0, 0, :n] + 0.003 * torch.randn(n, generator=g),
    }


def _features(wave: torch.Tensor) -> SpectrogramFeatures:
    return SpectrogramFeatures(
        log_mel=mel_spectrogram(wave)[:, 0], sample_rate=SR, num_samples=wave.shape[-1], n_fft=1024,
        win_length=1024, hop=160, filterbank=mel_filterbank(),
    )


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def binder() -> ImageBindBinder:
    return ImageBindBinder.from_preset("tiny", seed=0, clips=ClipSpec(duration_s=0.5, count=None))


# Transients are the weak case: AudioLDM's 64-ms frames smear a click over ~6 kaldi frames
# (25 ms), so the silence between clicks is filled in (measured corr ~0.78, docs/method.md).
MIN_CORR = {"noise": 0.9, "chirp": 0.9, "harmonics": 0.9, "ringing clicks": 0.7}


@pytest.mark.parametrize("name", list(_signals()))
def test_shortcut_fbank_tracks_the_true_fbank(name):
    wave = _signals()[name][None]
    true = pp.kaldi_fbank(wave, SR)
    approx = pp.logmel_to_kaldi_fbank(_features(wave))
    assert approx.shape == true.shape  # same kaldi frame layout
    corr = torch.corrcoef(torch.stack([true.flatten(), approx.flatten()]))[0, 1]
    bias = (approx - true).mean()
    mae = float((approx - true).abs().mean())
    print(f"{name}: corr {float(corr):.3f}, bias {float(bias):+.3f}, mae {mae:.3f}")
    assert corr > MIN_CORR[name], (name, float(corr))
    if name != "ringing clicks":
        assert abs(float(bias)) < 1.0, (name, float(bias))  # no level offset (log units)


def test_whole_input_fbank_equals_per_clip_fbank(binder):
    """embed_audio_fbank on the true fbank of the whole input is embed_audio (kaldi's
    per-frame DC removal makes the per-clip mean subtraction irrelevant)."""
    wave = _signals()["harmonics"][None] + 0.05
    ref = binder.embed_audio(wave, SR)
    got = binder.embed_audio_fbank(pp.kaldi_fbank(wave, SR), wave.shape[-1])
    torch.testing.assert_close(got.clips, ref.clips, atol=1e-5, rtol=1e-4)


def test_embeddings_via_both_paths_agree_and_gradients_are_finite(binder):
    for name, wave in _signals(1.0).items():
        wave = wave[None]
        feats = _features(wave)
        feats.log_mel.requires_grad_(True)
        via_mel = binder.embed_audio_features(feats)
        via_wave = binder.embed_audio(wave, SR)
        assert via_mel.clips.shape == via_wave.clips.shape
        cos = (via_mel.pooled * via_wave.pooled).sum()
        assert cos > 0.95, (name, float(cos))
        via_mel.pooled.sum().backward()
        assert torch.isfinite(feats.log_mel.grad).all() and feats.log_mel.grad.abs().sum() > 0
    silent = _features(torch.zeros(1, SR))
    silent.log_mel.requires_grad_(True)
    binder.embed_audio_features(silent).pooled.sum().backward()
    assert torch.isfinite(silent.log_mel.grad).all()


def test_other_sample_rates_are_refused(binder):
    feats = _features(torch.zeros(1, SR))
    other = SpectrogramFeatures(feats.log_mel, 22050, SR, 1024, 1024, 160, feats.filterbank)
    assert not binder.accepts_audio_features(other)
    with pytest.raises(ValueError, match="22050"):
        binder.embed_audio_features(other)
