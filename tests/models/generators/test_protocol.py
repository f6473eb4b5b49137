"""Each tiny adapter satisfies the Generator protocol, with the right shapes and gradients."""

from __future__ import annotations

import pytest
import torch

from avbridge.errors import AvbridgeError
from avbridge.models.generators.animatediff import AnimateDiffGenerator
from avbridge.models.generators.audioldm import AudioLDMGenerator
from avbridge.models.generators.base import Generator, MediaSpec


@pytest.fixture(params=["audio", "video", "image"])
def gen(request, audio_gen, video_gen, image_gen):
    return {"audio": audio_gen, "video": video_gen, "image": image_gen}[request.param]


def _sample(gen, spec, seed, steps=3, guidance=3.0):
    """A plain DDIM loop through the protocol, as the aligner's vanilla path runs it."""
    cond = gen.encode_prompt(["a small red ball bouncing"], negative=["noise"])
    z = gen.init_latents(spec, 1, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        for t in gen.timesteps(steps):
            eps = gen.predict_eps(z, t, cond, guidance)
            z = gen.step(z, eps, t)
        return gen.decode(z, spec)


def test_is_generator(gen):
    assert isinstance(gen, Generator)
    assert gen.modality in ("audio", "video", "image")
    assert gen.device == torch.device("cpu")


def test_gradients_reach_latents_and_prompt(gen):
    spec = gen.default_spec(1.0)
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
    # no parameter of the frozen backbone collects gradients
    assert all(p.grad is None for p in gen.unet.parameters())


def test_same_seed_same_output_and_seed_matters(gen):
    spec = gen.default_spec(1.0)
    a, b, c = _sample(gen, spec, 1), _sample(gen, spec, 1), _sample(gen, spec, 2)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_tiny_is_deterministic_per_seed():
    a, b, c = AudioLDMGenerator.tiny(3), AudioLDMGenerator.tiny(3), AudioLDMGenerator.tiny(4)
    pa, pb, pc = (torch.cat([p.flatten() for p in g.unet.parameters()]) for g in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    va, vb = AnimateDiffGenerator.tiny(3), AnimateDiffGenerator.tiny(3)
    assert all(torch.equal(x, y) for x, y in zip(va.unet.parameters(), vb.unet.parameters(), strict=True))


def test_cfg_batch_and_negative(audio_gen):
    """Batch-1 prompts broadcast to the latent batch; guidance 1 ignores the negative."""
    spec = MediaSpec(duration_s=0.5)
    cond = audio_gen.encode_prompt(["a dog barking"], negative=["music"])
    z = audio_gen.init_latents(spec, 2, torch.Generator().manual_seed(0))
    t = audio_gen.timesteps(5)[0]
    with torch.no_grad():
        e1 = audio_gen.predict_eps(z, t, cond, 1.0)
        e3 = audio_gen.predict_eps(z, t, cond, 3.0)
        e_nonneg = audio_gen.predict_eps(z, t, type(cond)(cond.embeds), 3.0)
    assert e1.shape == z.shape == e3.shape
    assert not torch.allclose(e1, e3)
    assert torch.allclose(e_nonneg, e1)


@pytest.mark.parametrize("duration", [0.3, 1.0, 2.05])
def test_audio_length_follows_spec(audio_gen, duration):
    spec = MediaSpec(duration_s=duration)
    z = audio_gen.init_latents(spec, 2, torch.Generator().manual_seed(0))
    assert z.shape[2] * audio_gen.vae_scale_factor == audio_gen.mel_frames(spec)
    assert audio_gen.mel_frames(spec) % audio_gen.vae_scale_factor == 0
    with torch.no_grad():
        wave = audio_gen.decode(z, spec)
    assert wave.shape == (2, spec.num_samples(16000))
    assert audio_gen.sample_rate == 16000
    assert 1e-3 < wave.std() < 1.0  # the boosted tiny vocoder is audible, not ~1e-6


def test_video_and_image_shapes(video_gen, image_gen):
    vspec = MediaSpec(duration_s=1.5, fps=6, height=32, width=40)
    z = video_gen.init_latents(vspec, 1, torch.Generator().manual_seed(0))
    assert z.shape[2] == vspec.num_frames == 9
    with torch.no_grad():
        vid = video_gen.decode(z, vspec)
    assert vid.shape == (1, 9, 3, 32, 40)
    assert vid.min() >= 0 and vid.max() <= 1

    ispec = image_gen.default_spec()
    assert ispec.num_frames == 1
    z = image_gen.init_latents(MediaSpec(height=24, width=36), 2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        img = image_gen.decode(z, MediaSpec(height=24, width=36))
    assert img.shape == (2, 3, 24, 36)


def test_image_mode_shares_spatial_weights(video_gen, image_gen):
    """Image mode is the video model's image UNet: the same spatial weights, no motion modules."""
    sd_video = {k: v for k, v in video_gen.unet.state_dict().items() if "motion_modules" not in k}
    sd_image = image_gen.unet.state_dict()
    assert sd_video.keys() == sd_image.keys()
    assert all(torch.equal(sd_video[k], sd_image[k]) for k in sd_image)


def test_too_many_frames_is_a_clear_error(video_gen):
    with pytest.raises(AvbridgeError, match="at most 32"):
        video_gen.init_latents(MediaSpec(duration_s=5.0, fps=8, height=32, width=32), 1, torch.Generator())


def test_gradient_checkpointing_gives_the_same_gradient():
    gen = AnimateDiffGenerator.tiny(seed=1)
    spec = gen.default_spec(0.5)
    cond = gen.encode_prompt(["a blue cube"])

    def grad():
        z = gen.init_latents(spec, 1, torch.Generator().manual_seed(0)).requires_grad_(True)
        t = gen.timesteps(5)[2]
        gen.decode(gen.predict_x0(z, gen.predict_eps(z, t, cond, 2.0), t), spec).mean().backward()
        return z.grad

    plain = grad()
    ckpt = grad() if gen.enable_gradient_checkpointing() else None
    gen.enable_gradient_checkpointing(False)
    assert torch.allclose(plain, ckpt, atol=1e-6, rtol=1e-4)
