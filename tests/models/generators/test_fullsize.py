"""The full-size architectures build on the meta device with the published sizes."""

from __future__ import annotations

import torch
from diffusers import MotionAdapter

from avbridge.models.generators.animatediff import animatediff_config, build_animatediff
from avbridge.models.generators.audioldm import build_audioldm


def _m(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_audioldm_m_full_meta():
    gen = build_audioldm("m-full")
    assert gen.unet.device.type == "meta"
    assert gen.unet.config.block_out_channels == (192, 384, 576, 960)
    assert gen.unet.config.class_embed_type == "simple_projection"
    assert gen.sample_rate == 16000 and gen.hop_length == 160 and gen.vae_scale_factor == 4
    total = sum(_m(m) for m in (gen.unet, gen.vae, gen.text_encoder, gen.vocoder))
    # The AudioLDM model card lists 652M parameters for m-full (421M for s-full).
    assert 640 < total < 665, total
    assert 400 < _m(gen.unet) < 430


def test_audioldm_s_full_meta():
    gen = build_audioldm("s-full")
    total = sum(_m(m) for m in (gen.unet, gen.vae, gen.text_encoder, gen.vocoder))
    assert 410 < total < 432, total


def test_animatediff_sd15_v152_meta():
    gen = build_animatediff()
    assert gen.unet.device.type == "meta" and type(gen.unet).__name__ == "UNetMotionModel"
    with torch.device("meta"):
        adapter = MotionAdapter(**animatediff_config()["motion_adapter"])
    # SD 1.5 UNet ~859.5M; mm_sd_v15_v2 motion module ~453M; VAE ~83.7M; CLIP-L text ~123M.
    assert 450 < _m(adapter) < 456
    assert 1300 < _m(gen.unet) < 1325
    assert 83 < _m(gen.vae) < 84.5 and 122 < _m(gen.text_encoder) < 124
    img = build_animatediff(modality="image")
    assert 855 < _m(img.unet) < 865
    assert abs(_m(gen.unet) - _m(img.unet) - _m(adapter)) < 1.0
