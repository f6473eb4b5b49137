"""The vocoder stages: the adversarial fine-tune (``vocoder-gan``) runs, saves in place,
resumes with its discriminators' optimiser, and its discriminators learn to tell real from
generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from training.world.train import main
from training.world.train_vocoder import (
    Discriminators,
    discriminator_loss,
    generator_losses,
    vocoder_model,
)


def test_discriminators_learn_to_separate_real_from_generated() -> None:
    torch.manual_seed(0)
    t = torch.arange(5120) / 16000
    real = torch.stack([0.5 * torch.sin(2 * torch.pi * f * t) for f in (440.0, 660.0, 880.0, 990.0)])
    fake = 0.5 * torch.randn(4, 5120)
    disc = Discriminators(width=4)
    outs = disc(real)
    assert len(outs) == 8  # five periods, three resolutions
    assert all(score.dim() == 2 and len(feats) == 5 for score, feats in outs)
    opt = torch.optim.Adam(disc.parameters(), lr=2e-3)
    first = float(discriminator_loss(disc(real), disc(fake)))
    for _ in range(15):
        loss = discriminator_loss(disc(real), disc(fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(discriminator_loss(disc(real), disc(fake))) < 0.5 * first
    adv, fm = generator_losses(disc(real), disc(fake))
    assert adv > 0 and fm > 0
    _, same_fm = generator_losses(disc(real), disc(real))
    assert float(same_fm) == 0.0  # feature matching is zero exactly when the features match


def test_vocoder_gan_stage_fine_tunes_saves_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # runs/world-cache and runs/world-train land here
    models = tmp_path / "models"
    init = vocoder_model(channels=16)  # halved per upsampling: 16 -> 1
    init.save_pretrained(models / "audioldm" / "vocoder", safe_serialization=True)
    before = {k: v.clone() for k, v in init.state_dict().items()}
    common = ["--models", str(models), "--clips", "4", "--batch", "2", "--device", "cpu"]
    assert main(["vocoder-gan", "--steps", "2", *common]) == 0

    from transformers import SpeechT5HifiGan

    tuned = SpeechT5HifiGan.from_pretrained(models / "audioldm" / "vocoder")
    assert any(not torch.equal(before[k], v) for k, v in tuned.state_dict().items())
    info = json.loads((models / "training.json").read_text())["vocoder-gan"]
    assert info["steps"] == 2 and info["adv_weight"] == 1.0
    assert {"adv", "fm", "disc", "mel_l1", "stft"} <= set(info["final_losses"])
    ck = torch.load(tmp_path / "runs" / "world-train" / "vocoder-gan" / "checkpoint.pt", weights_only=False)
    assert set(ck["aux_opts"]) == {"discriminators"} and ck["aux_opts"]["discriminators"]["state"]

    assert main(["vocoder-gan", "--steps", "3", "--resume", *common]) == 0
    info = json.loads((models / "training.json").read_text())["vocoder-gan"]
    assert info["steps"] == 3  # one more step after the resumed two


def test_vae_mels_feed_the_vocoder_the_vae_round_trip_against_the_real_wave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.world.train import audio_vae_model
    from training.world.train_vocoder import HOP, SEGMENT, _Segments, vae_round_trip

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    vae = audio_vae_model().eval()
    plain = _Segments(4, torch.device("cpu"))
    both = _Segments(4, torch.device("cpu"), vae, vae_share=1.0)
    assert torch.equal(both.vae_mels, vae_round_trip(vae, plain.mels))
    assert both.vae_mels.shape == plain.mels.shape
    torch.manual_seed(1)
    m, wav = both.sample(3)
    torch.manual_seed(1)
    m_real, wav_real = plain.sample(3)
    assert torch.equal(wav, wav_real) and wav.shape == (3, SEGMENT * HOP)  # the target is the real wave
    assert not torch.allclose(m, m_real)  # the input is the VAE's round trip of the same segment
    for k in range(3):  # the same window of the same clip, taken from the round trip
        where = [(i, s) for i in range(4) for s in range(400 - SEGMENT)
                 if torch.equal(plain.mels[i, s:s + SEGMENT], m_real[k])]
        assert any(torch.equal(both.vae_mels[i, s:s + SEGMENT], m[k]) for i, s in where)


def test_vocoder_stage_records_vae_mels_and_needs_the_vae(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from avbridge.errors import AvbridgeError

    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    common = ["--models", str(models), "--clips", "4", "--batch", "2", "--device", "cpu", "--channels", "16"]
    with pytest.raises(AvbridgeError, match="vae.*missing.*audio-vae"):
        main(["vocoder", "--steps", "1", "--vae-mels", "0.5", *common])
    assert main(["audio-vae", "--steps", "1", *common]) == 0
    assert main(["vocoder", "--steps", "2", "--vae-mels", "0.5", *common]) == 0
    info = json.loads((models / "training.json").read_text())["vocoder"]
    assert info["steps"] == 2 and info["vae_mels"] == 0.5 and "--vae-mels 0.5" in info["command"]


def test_loud_mel_l1_weighs_the_loud_bins() -> None:
    from training.world.train_vocoder import loud_mel_l1

    target = torch.full((1, 32, 64), -10.0)
    target[0, 10:20, 30] = 0.0  # a chirp-like line, far above the background
    miss_loud, miss_quiet = target.clone(), target.clone()
    miss_loud[0, 10:20, 30] -= 4.0  # the line rendered faint
    miss_quiet[0, :, :20] -= 4.0  # a larger error, in the background only
    plain = lambda p: float((p - target).abs().mean())  # noqa: E731
    assert plain(miss_quiet) > 20 * plain(miss_loud)  # the plain L1 all but ignores the line
    assert float(loud_mel_l1(miss_loud, target)) > 3.0 > 0.05 > float(loud_mel_l1(miss_quiet, target))
    assert float(loud_mel_l1(target, target)) == 0.0


def test_vocoder_gan_stage_records_the_loud_weight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    models = tmp_path / "models"
    vocoder_model(channels=16).save_pretrained(models / "audioldm" / "vocoder", safe_serialization=True)
    assert main(["vocoder-gan", "--steps", "2", "--adv-weight", "0", "--loud-weight", "5", "--models",
                 str(models), "--clips", "4", "--batch", "2", "--device", "cpu"]) == 0
    info = json.loads((models / "training.json").read_text())["vocoder-gan"]
    assert info["loud_weight"] == 5.0 and "--loud-weight 5.0" in info["command"]
    assert info["final_losses"]["loud"] > 0
