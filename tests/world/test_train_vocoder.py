"""The vocoder stages: the adversarial fine-tune (``vocoder-gan``) runs, saves in place,
resumes with its discriminators' optimiser, and its discriminators learn to tell real from
generated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avbridge.world.train import main
from avbridge.world.train_vocoder import (
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
