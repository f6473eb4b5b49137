"""mel_spectrogram follows AudioLDM's front end (16 kHz, 1024/160, 64 Slaney mels, log-clamp)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avbridge.models.generators.audioldm import mel_filterbank, mel_spectrogram


def _tone(freq: float, n: int, sr: int = 16000) -> torch.Tensor:
    return 0.5 * torch.sin(2 * math.pi * freq * torch.arange(n) / sr)


def test_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=0.0, fmax=8000.0)
    ours = mel_filterbank().numpy()
    assert ours.shape == (64, 513)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-7)


def test_matches_a_librosa_reference():
    librosa = pytest.importorskip("librosa")
    noise = torch.randn(16000, generator=torch.Generator().manual_seed(0))
    wave = (_tone(440.0, 16000) + 0.1 * noise).numpy()
    mag = np.abs(librosa.stft(wave, n_fft=1024, hop_length=160, win_length=1024, window="hann",
                              center=True, pad_mode="reflect"))
    ref = np.log(np.maximum(librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64) @ mag, 1e-5)).T[:100]
    ours = mel_spectrogram(torch.from_numpy(wave))[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=2e-3)


@pytest.mark.parametrize("n", [160, 16000, 16001, 32000 - 7])
def test_frames_and_shape(n):
    mel = mel_spectrogram(torch.zeros(2, n))
    assert mel.shape == (2, 1, math.ceil(n / 160), 64)
    assert torch.allclose(mel, torch.full_like(mel, math.log(1e-5)))  # silence sits at the clamp


def test_pitch_moves_energy_and_is_differentiable():
    lo, hi = _tone(300.0, 8000), _tone(3000.0, 8000)
    m_lo, m_hi = mel_spectrogram(lo)[0, 0].mean(0), mel_spectrogram(hi)[0, 0].mean(0)
    assert m_lo.argmax() < m_hi.argmax()
    w = hi.clone().requires_grad_(True)
    mel_spectrogram(w).mean().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().max() > 0


def test_deterministic_and_batched():
    w = torch.randn(3, 4000, generator=torch.Generator().manual_seed(1))
    a, b = mel_spectrogram(w), mel_spectrogram(w)
    assert torch.equal(a, b)
    assert torch.allclose(mel_spectrogram(w[1]), a[1:2], atol=1e-5)


def test_tiny_vocoder_inverts_the_mel_frame_count(audio_gen):
    """T frames of mel_spectrogram(wave) vocode back to exactly 160 T samples (the training pair)."""
    wave = _tone(500.0, 16000)[None]
    mel = mel_spectrogram(wave)
    with torch.no_grad():
        out = audio_gen.vocode(mel)
    assert out.shape == (1, 160 * mel.shape[2]) == wave.shape
