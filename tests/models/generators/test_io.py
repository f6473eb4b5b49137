"""save_pretrained / from_pretrained round trips and clear checkpoint errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import MotionAdapter

from avbridge.errors import CheckpointError
from avbridge.models.generators.animatediff import AnimateDiffGenerator, animatediff_config
from avbridge.models.generators.audioldm import AudioLDMGenerator


def _params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _eps(gen, spec, prompt="a small red ball bouncing"):
    cond = gen.encode_prompt([prompt])
    z = gen.init_latents(spec, 1, torch.Generator().manual_seed(0))
    t = gen.timesteps(5)[1]
    with torch.no_grad():
        eps = gen.predict_eps(z, t, cond, 2.5)
        return eps, gen.decode(gen.predict_x0(z, eps, t), spec)


def test_audioldm_roundtrip(audio_gen, tmp_path):
    audio_gen.save_pretrained(tmp_path / "m")
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "vocoder", "scheduler"):
        assert (tmp_path / "m" / sub).is_dir()
    assert json.loads((tmp_path / "m" / "model_index.json").read_text())["_class_name"] == "AudioLDMPipeline"
    back = AudioLDMGenerator.from_pretrained(tmp_path / "m")
    for name in ("unet", "vae", "text_encoder", "vocoder"):
        assert _params_equal(getattr(audio_gen, name), getattr(back, name)), name
    spec = audio_gen.default_spec(0.5)
    (e1, w1), (e2, w2) = _eps(audio_gen, spec), _eps(back, spec)
    assert torch.equal(e1, e2) and torch.equal(w1, w2)


def test_animatediff_roundtrip_video_and_image(video_gen, tmp_path):
    video_gen.save_pretrained(tmp_path / "v")
    back = AnimateDiffGenerator.from_pretrained(tmp_path / "v")
    assert back.modality == "video" and (back.default_height, back.default_fps) == (32, 8.0)
    for name in ("unet", "vae", "text_encoder"):
        assert _params_equal(getattr(video_gen, name), getattr(back, name)), name
    spec = video_gen.default_spec(0.5)
    (e1, v1), (e2, v2) = _eps(video_gen, spec), _eps(back, spec)
    assert torch.equal(e1, e2) and torch.equal(v1, v2)
    img = AnimateDiffGenerator.from_pretrained(tmp_path / "v", modality="image")
    assert img.modality == "image" and type(img.unet).__name__ == "UNet2DConditionModel"
    assert _eps(img, img.default_spec())[1].shape == (1, 3, 32, 32)


def test_animatediff_from_sd_base_plus_motion_adapter(image_gen, tmp_path):
    """Layout (b): an SD base folder (2-D UNet) plus a separate MotionAdapter folder."""
    image_gen.save_pretrained(tmp_path / "sd")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        MotionAdapter(**animatediff_config("tiny")["motion_adapter"]).save_pretrained(tmp_path / "mm")
    with pytest.raises(CheckpointError, match="motion_adapter"):
        AnimateDiffGenerator.from_pretrained(tmp_path / "sd")
    gen = AnimateDiffGenerator.from_pretrained(tmp_path / "sd", motion_adapter=tmp_path / "mm")
    assert gen.modality == "video"
    assert gen.scheduler.config.beta_schedule == "linear"
    spatial = {k: v for k, v in gen.unet.state_dict().items() if "motion_modules" not in k}
    assert all(torch.equal(spatial[k], v) for k, v in image_gen.unet.state_dict().items())
    eps, vid = _eps(gen, gen.default_spec(0.5))
    assert vid.shape == (1, 4, 3, 32, 32) and torch.isfinite(eps).all()


@pytest.mark.parametrize("missing", ["unet", "vocoder", "tokenizer"])
def test_missing_folder_is_named(audio_gen, tmp_path, missing):
    audio_gen.save_pretrained(tmp_path / "m")
    shutil.rmtree(tmp_path / "m" / missing)
    with pytest.raises(CheckpointError) as err:
        AudioLDMGenerator.from_pretrained(tmp_path / "m")
    assert missing in str(err.value) and "missing" in str(err.value)


def test_animatediff_missing_folder(video_gen, tmp_path):
    video_gen.save_pretrained(tmp_path / "v")
    shutil.rmtree(tmp_path / "v" / "vae")
    with pytest.raises(CheckpointError, match="vae"):
        AnimateDiffGenerator.from_pretrained(tmp_path / "v")


def test_bad_sources(tmp_path):
    with pytest.raises(CheckpointError, match="no such model folder"):
        AudioLDMGenerator.from_pretrained(tmp_path / "nope")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="file"):
        AnimateDiffGenerator.from_pretrained(f)
    (tmp_path / "m" / "unet").mkdir(parents=True)
    (tmp_path / "m" / "unet" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unet"):
        AudioLDMGenerator.from_pretrained(tmp_path / "m")


def test_half_precision_load_keeps_float32_latents_and_media(audio_gen, tmp_path):
    audio_gen.save_pretrained(tmp_path / "m")
    gen = AudioLDMGenerator.from_pretrained(tmp_path / "m", dtype=torch.bfloat16)
    assert gen.unet.dtype == gen.vocoder.dtype == torch.bfloat16
    spec = gen.default_spec(0.5)
    cond = gen.encode_prompt(["a dog barking"])
    cond.embeds.requires_grad_(True)
    z = gen.init_latents(spec, 1, torch.Generator().manual_seed(0)).requires_grad_(True)
    t = gen.timesteps(5)[1]
    wave = gen.decode(gen.predict_x0(z, gen.predict_eps(z, t, cond, 2.5), t), spec)
    assert wave.dtype == torch.float32 and wave.shape == (1, 8000)
    wave.square().mean().backward()
    assert z.grad.dtype == torch.float32 and torch.isfinite(z.grad).all() and z.grad.abs().max() > 0
    assert torch.isfinite(cond.embeds.grad).all()
