"""The video UNet stage: zero-mean latents, object-weighted loss, min-SNR, the text-contrast term
and ``--init``."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from training.world.train import build_parser, object_profile, run_stage

from avbridge.errors import AvbridgeError


def test_object_profile_marks_the_cells_that_hold_the_object() -> None:
    frames = torch.full((2, 3, 32, 32), -0.8)
    frames[0, 0, 4:8, 20:24] = 0.9  # a red square in latent cell (1, 5) of frame 0
    p = object_profile(frames, 8)
    assert p.shape == (2, 8, 8)
    assert p[0, 1, 5] > 0.9
    rest = torch.ones(8, 8, dtype=torch.bool)
    rest[1, 5] = False
    assert p[0][rest].max() < 0.05 and p[1].max() < 1e-6  # background and an empty frame


def _common(out) -> list[str]:
    return ["--clips", "4", "--batch", "2", "--frames", "8", "--models", str(out), "--device", "cpu"]


def test_video_unet_stage_centres_latents_weights_objects_and_fine_tunes(tmp_path, monkeypatch) -> None:
    from diffusers import AutoencoderKL, UNetMotionModel

    monkeypatch.chdir(tmp_path)  # the clip cache and the work folder are relative to it
    first, second = tmp_path / "first", tmp_path / "second"
    run_stage("video-vae", build_parser().parse_args(["video-vae", "--steps", "1", *_common(first)]))
    assert AutoencoderKL.from_pretrained(first / "animatediff" / "vae").config.latents_mean is None
    run_stage("video-unet", build_parser().parse_args(["video-unet", "--steps", "1", *_common(first)]))
    mean = AutoencoderKL.from_pretrained(first / "animatediff" / "vae").config.latents_mean
    assert len(mean) == 4 and any(abs(m) > 1e-3 for m in mean)

    (second / "animatediff").mkdir(parents=True)
    shutil.copytree(first / "animatediff" / "vae", second / "animatediff" / "vae")
    init = first / "animatediff"
    run_stage("video-unet", build_parser().parse_args(
        ["video-unet", "--steps", "2", "--object-weight", "4", "--min-snr", "5", "--text-contrast", "1",
         "--init", str(init), *_common(second)]))
    info = json.loads((second / "training.json").read_text())["video-unet"]
    assert info["steps"] == 2 and info["object_weight"] == 4.0 and info["min_snr"] == 5.0
    assert info["text_contrast"] == 1.0
    assert f"--init {init} --object-weight 4.0 --text-contrast 1.0 --min-snr 5.0" in info["command"]
    assert torch.isfinite(torch.tensor(info["final_losses"]["loss"]))
    assert info["final_losses"]["contrast"] > 0  # the contrastive term ran and was logged
    a = UNetMotionModel.from_pretrained(init / "unet").state_dict()
    b = UNetMotionModel.from_pretrained(second / "animatediff" / "unet").state_dict()
    assert a.keys() == b.keys()
    # Started from the first run's weights: close to them after two steps, but trained.
    k = next(k for k in a if k.endswith("conv_in.weight"))
    assert not torch.equal(a[k], b[k]) and (a[k].float() - b[k].float()).abs().max() < 0.05


def test_video_unet_init_names_a_missing_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    run_stage("video-vae", build_parser().parse_args(["video-vae", "--steps", "1", *_common(out)]))
    with pytest.raises(AvbridgeError, match="nowhere"):
        run_stage("video-unet", build_parser().parse_args(
            ["video-unet", "--steps", "1", "--init", str(tmp_path / "nowhere"), *_common(out)]))


def test_image_share_trains_the_spatial_layers_alone(tmp_path, monkeypatch) -> None:
    """``--image-share 1``: every step is a single-frame step through the image UNet, so the
    spatial weights move and the bypassed motion modules do not."""
    from diffusers import UNetMotionModel

    monkeypatch.chdir(tmp_path)
    first, second = tmp_path / "first", tmp_path / "second"
    run_stage("video-vae", build_parser().parse_args(["video-vae", "--steps", "1", *_common(first)]))
    run_stage("video-unet", build_parser().parse_args(["video-unet", "--steps", "1", *_common(first)]))
    (second / "animatediff").mkdir(parents=True)
    shutil.copytree(first / "animatediff" / "vae", second / "animatediff" / "vae")
    init = first / "animatediff"
    run_stage("video-unet", build_parser().parse_args(
        ["video-unet", "--steps", "2", "--image-share", "1", "--object-weight", "4", "--init", str(init),
         *_common(second)]))
    info = json.loads((second / "training.json").read_text())["video-unet"]
    assert info["image_share"] == 1.0 and "--image-share 1.0" in info["command"]
    assert torch.isfinite(torch.tensor(info["final_losses"]["image"]))
    a = UNetMotionModel.from_pretrained(init / "unet").state_dict()
    b = UNetMotionModel.from_pretrained(second / "animatediff" / "unet").state_dict()
    spatial = [k for k in a if "motion_modules" not in k and k.endswith(".weight")]
    motion = [k for k in a if "motion_modules" in k]
    assert motion and all(torch.equal(a[k], b[k]) for k in motion)
    assert sum(not torch.equal(a[k], b[k]) for k in spatial) > len(spatial) // 2
    # The stage also exports the spatial weights as the SD-format image model (image/).
    from avbridge.models.generators.animatediff import AnimateDiffGenerator

    img = AnimateDiffGenerator.from_pretrained(second / "image", modality="image")
    assert type(img.unet).__name__ == "UNet2DConditionModel" and img.default_height == 32
    u2 = img.unet.state_dict()
    assert u2.keys() == {k for k in b if "motion_modules" not in k}
    assert all(torch.equal(u2[k].to(b[k].dtype), b[k]) for k in u2)
