"""The audio UNet stage's loss weights: event frames (--event-weight) and min-SNR (--min-snr)."""

from __future__ import annotations

import json

import torch
from training.world.train import _mels, build_parser, event_profile, min_snr_weight, run_stage
from training.world.train_data import load_clips


def test_event_profile_marks_the_frames_where_the_sound_rises() -> None:
    mel = torch.full((2, 400, 64), -8.0) + 0.05 * torch.randn(2, 400, 64)
    mel[0, 120:150] += 6.0  # one loud event in clip 0 (mel frames 120-149: latent frames 30-37)
    mel[1, 300:310] += 0.5  # a faint one in clip 1: scaled to peak at 1 all the same
    p = event_profile(mel, 100)
    assert p.shape == (2, 100)
    assert torch.all((p >= 0) & (p <= 1))
    assert p[0, 30:37].min() > 0.9 and p[1, 75:77].max() > 0.9
    quiet = torch.ones(100, dtype=torch.bool)
    quiet[29:39] = False
    assert p[0, quiet].max() < 0.1


def test_min_snr_weight_caps_the_signal_to_noise_ratio() -> None:
    abar = torch.tensor([0.999, 0.9, 0.5, 0.01])
    assert torch.equal(min_snr_weight(abar, 0.0), torch.ones(4))
    snr = abar / (1 - abar)
    w = min_snr_weight(abar, 5.0)
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert w[0] < 0.01 and torch.allclose(w[2:], torch.ones(2))  # only SNR above 5 is down-weighted


def test_audio_unet_stage_trains_with_both_weights_and_records_them(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the clip cache and the work folder are relative to it
    out = tmp_path / "out"
    common = ["--clips", "4", "--batch", "2", "--models", str(out), "--device", "cpu"]
    run_stage("audio-vae", build_parser().parse_args(["audio-vae", "--steps", "1", *common]))
    run_stage("audio-text", build_parser().parse_args(["audio-text", "--steps", "1", *common]))
    run_stage("audio-unet", build_parser().parse_args(
        ["audio-unet", "--steps", "2", "--event-weight", "4", "--min-snr", "5", *common]))
    info = json.loads((out / "training.json").read_text())["audio-unet"]
    assert info["steps"] == 2 and info["event_weight"] == 4.0 and info["min_snr"] == 5.0
    assert "--event-weight 4.0 --min-snr 5.0" in info["command"]
    assert torch.isfinite(torch.tensor(info["final_losses"]["loss"]))
    assert (out / "audioldm" / "unet" / "diffusion_pytorch_model.safetensors").exists()


def test_audio_unet_stage_centres_its_latents_and_records_the_mean(tmp_path, monkeypatch) -> None:
    """The UNet is trained on zero-mean latents; the mean goes into the VAE's config."""
    from diffusers import AutoencoderKL

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    common = ["--clips", "4", "--batch", "2", "--models", str(out), "--device", "cpu"]
    run_stage("audio-vae", build_parser().parse_args(["audio-vae", "--steps", "1", *common]))
    assert AutoencoderKL.from_pretrained(out / "audioldm" / "vae").config.latents_mean is None
    run_stage("audio-text", build_parser().parse_args(["audio-text", "--steps", "1", *common]))
    run_stage("audio-unet", build_parser().parse_args(["audio-unet", "--steps", "1", *common]))
    vae = AutoencoderKL.from_pretrained(out / "audioldm" / "vae")
    with torch.no_grad():
        mels = _mels(load_clips("train", 4), torch.device("cpu")).unsqueeze(1)
        want = vae.encode(mels).latent_dist.mean.mean((0, 2, 3))
    got = torch.tensor(vae.config.latents_mean)
    assert got.shape == (vae.config.latent_channels,)
    assert torch.allclose(got, want, atol=1e-4)
    info = json.loads((out / "training.json").read_text())["audio-unet"]
    assert info["latents_mean"] == vae.config.latents_mean


def test_audio_unet_stage_fine_tunes_from_init(tmp_path, monkeypatch) -> None:
    """``--init DIR`` starts from DIR's UNet instead of a fresh one."""
    import shutil

    from diffusers import UNet2DConditionModel

    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    common = ["--clips", "4", "--batch", "2", "--device", "cpu"]
    for stage in ("audio-vae", "audio-text", "audio-unet"):
        run_stage(stage, build_parser().parse_args([stage, "--steps", "1", "--models", str(first), *common]))
    shutil.copytree(first / "audioldm", second / "audioldm")
    run_stage("audio-unet", build_parser().parse_args(
        ["audio-unet", "--steps", "2", "--init", str(first / "audioldm"), "--models", str(second), *common]))
    a = UNet2DConditionModel.from_pretrained(first / "audioldm" / "unet").state_dict()
    b = UNet2DConditionModel.from_pretrained(second / "audioldm" / "unet").state_dict()
    k = next(k for k in a if k.endswith("conv_in.weight"))
    assert not torch.equal(a[k], b[k]) and (a[k].float() - b[k].float()).abs().max() < 0.05
    info = json.loads((second / "training.json").read_text())["audio-unet"]
    assert f"--init {first / 'audioldm'}" in info["command"]
