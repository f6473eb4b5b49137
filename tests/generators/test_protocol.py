"""Each tiny adapter satisfies the Generator protocol, with the right shapes and gradients."""

from __future__ import annotations

import pytest
import torch

from avbridge.generators.base import Generator, MediaSpec


@pytest.fixture(params=["audio", "video", "image"])
def gen(request, audio_gen, video_gen, image_gen):
    return {"audio": audio_gen, "video": video_gen, "image": image_gen}[request.param]


def _spec(gen, duration=1.0):
    return gen.default_spec(duration)


def test_is_generator(gen):
    assert isinstance(gen, Generator)
    assert gen.modality in ("audio", "video", "image")


def test_gradients_reach_latents_and_prompt(gen):
    spec = _spec(gen)
    cond = gen.encode_prompt(["a small red ball bouncing"])
    cond.embeds.requires_grad_(True)
    z = gen.init_latents(spec, 1, torch.Generator().manual_seed(0)).requires_grad_(True)
    t = gen.timesteps(10)[4]
    eps = gen.predict_eps(z, t, cond, 3.0)
    media = gen.decode(gen.predict_x0(z, eps, t), spec)
    media.square().mean().backward()
    for g in (z.grad, cond.embeds.grad):
        assert g is not None and torch.isfinite(g).all()
        assert g.abs().max() > 1e-8


def test_decode_shapes(audio_gen, video_gen, image_gen):
    spec = MediaSpec(duration_s=1.3)
    z = audio_gen.init_latents(spec, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        wave = audio_gen.decode(z, spec)
    assert wave.shape == (2, spec.num_samples(16000))

    vspec = MediaSpec(duration_s=1.0, fps=8, height=32, width=40)
    z = video_gen.init_latents(vspec, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        vid = video_gen.decode(z, vspec)
    assert vid.shape == (1, 8, 3, 32, 40)
    assert vid.min() >= 0 and vid.max() <= 1

    ispec = MediaSpec(height=32, width=32)
    z = image_gen.init_latents(ispec, 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = image_gen.decode(z, ispec)
    assert img.shape == (2, 3, 32, 32)
