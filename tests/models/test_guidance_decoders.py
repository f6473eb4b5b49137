"""Guidance decoders: used in the guidance branch when asked, never for the final output."""

from __future__ import annotations

import pytest
import torch

from avbridge.align import AlignConfig, Condition
from avbridge.align.loop import align
from avbridge.errors import CheckpointError
from avbridge.loading import attach_guidance_decoders
from avbridge.models import guidance_decoders as gd
from avbridge.models.binders.imagebind import ImageBindBinder
from avbridge.models.generators.animatediff import AnimateDiffGenerator
from avbridge.models.generators.audioldm import AudioLDMGenerator


class Spy(torch.nn.Module):
    """Counts the calls of a wrapped module's forward (audio) or decode (TAESD)."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.calls = inner, 0
        self.config = inner.config

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(z)

    def decode(self, z: torch.Tensor):
        self.calls += 1
        return self.inner.decode(z)


@pytest.fixture(scope="module")
def binder() -> ImageBindBinder:
    b = ImageBindBinder.from_preset("tiny")
    b.requires_grad_(False)
    return b


def _count(module: torch.nn.Module, name: str, box: list[int]):
    orig = getattr(module, name)

    def wrapped(*a, **k):
        box[0] += 1
        return orig(*a, **k)

    setattr(module, name, wrapped)


@pytest.mark.parametrize("use", [True, False])
def test_audio_guidance_decoder_used_when_asked_output_from_vae(binder, use):
    gen = AudioLDMGenerator.tiny()
    spy = Spy(gd.audio_decoder_for(gen, channels=(8, 8, 8)))
    spy.inner.requires_grad_(False)
    gen.guidance_decoder = spy
    vae_calls = [0]
    _count(gen.vae, "decode", vae_calls)
    spec = gen.default_spec(1.0)
    cond = Condition("video", torch.rand(1, 8, 3, 32, 32), rate=8.0)
    cfg = AlignConfig(steps=3, window=(0.0, 1.0), guidance_decoder=use)
    res = align(gen, binder, spec=spec, condition=cond, prompt="a dog", config=cfg, seed=0)
    assert spy.calls == (3 if use else 0)
    assert vae_calls[0] == (1 if use else 4)  # the final output always comes from the VAE
    with torch.no_grad():
        expect = gen.decode(res.latents["audio"], spec)
    torch.testing.assert_close(res.media["audio"], expect)


def test_video_taesd_guidance_and_final_vae(binder):
    gen = AnimateDiffGenerator.tiny()
    taesd = gd.tiny_taesd(gen.latent_channels, gen.vae_scale_factor)
    gd.attach(gen, taesd)
    spy = Spy(taesd)
    gen.guidance_decoder = spy
    vae_calls = [0]
    _count(gen.vae, "decode", vae_calls)
    spec = gen.default_spec(1.0)
    z = gen.init_latents(spec, 1, torch.Generator().manual_seed(0))
    frames = gd.decode_frames(taesd, gen, z, spec)
    assert frames.shape == gen.decode(z, spec).shape and 0 <= float(frames.min()) <= float(frames.max()) <= 1
    vae_calls[0] = 0
    cond = Condition("audio", torch.randn(1, 16000) * 0.1, rate=16000)
    cfg = AlignConfig(steps=2, lr=0.01, window=(0.0, 1.0), guidance_decoder=True)
    res = align(gen, binder, spec=spec, condition=cond, prompt="a dog", config=cfg, seed=0)
    assert spy.calls >= 2 and vae_calls[0] == 1
    assert res.media["visual"].shape == frames.shape


def test_save_load_attach_and_errors(tmp_path):
    gen = AudioLDMGenerator.tiny()
    dec = gd.audio_decoder_for(gen, channels=(8, 8, 8), seed=3)
    dec.save_pretrained(str(tmp_path / "a"))
    back = gd.load_guidance_decoder(tmp_path / "a")
    z = torch.randn(1, gen.latent_channels, 8, 16)
    torch.testing.assert_close(back(z), dec(z))
    assert back(z).shape == gen.decode_mel(z).shape
    gd.tiny_taesd().save_pretrained(str(tmp_path / "t"))
    taesd = gd.load_guidance_decoder(tmp_path / "t")
    with pytest.raises(CheckpointError, match="cannot decode audio"):
        gd.attach(gen, taesd)
    with pytest.raises(CheckpointError, match="no config.json"):
        gd.load_guidance_decoder(tmp_path)
    with pytest.raises(CheckpointError, match="fits none"):
        attach_guidance_decoders(str(tmp_path / "t"), "tiny-random", [gen])


def test_load_components_auto_tiny_random():
    from avbridge.loading import load_components

    comps = load_components("tiny-random", need=["audio", "video"], captioner="none", guidance_decoder="auto")
    assert isinstance(comps.audio.guidance_decoder, gd.AudioGuidanceDecoder)
    assert isinstance(comps.video.guidance_decoder, gd.AutoencoderTiny)
    plain = load_components("tiny-random", need=["audio"], captioner="none")
    assert getattr(plain.audio, "guidance_decoder", None) is None


def test_world_ships_guidance_decoders_that_track_their_vaes():
    """``--guidance-decoder auto`` with the world preset attaches the shipped distilled decoders:
    the audio one's log-mel and the visual one's frames of the world's own latents are close
    to the VAE's (error well under the spread of the targets); video and image share one."""
    from avbridge.apps.distill import sample_pairs
    from avbridge.loading import load_components

    comps = load_components("world", need=["audio", "video", "image"], captioner="none",
                            guidance_decoder="auto")
    dec = comps.audio.guidance_decoder
    assert isinstance(dec, gd.AudioGuidanceDecoder)
    x, y = sample_pairs(comps.audio, ["a dog barking"], comps.audio.default_spec(4.0), 4, 2.5, seed=123)
    with torch.no_grad():
        pred = gd.decode_mel(dec, x)
    assert pred.shape == y.shape
    err = float((pred - y).abs().mean())
    spread = float((y - y.mean()).abs().mean())
    assert err < 0.5 * spread, (err, spread)
    vis = comps.video.guidance_decoder
    assert isinstance(vis, gd.AutoencoderTiny)
    assert isinstance(comps.image.guidance_decoder, gd.AutoencoderTiny)
    spec = comps.video.default_spec(1.0)
    x, y = sample_pairs(comps.video, ["a red ball bouncing"], spec, 4, 2.5, seed=123)
    with torch.no_grad():
        pred = gd.decode_frames(vis, comps.video, x, spec)
    assert pred.shape == y.shape
    err = float((pred - y).abs().mean())
    spread = float((y - y.mean()).abs().mean())
    assert err < 0.75 * spread, (err, spread)  # a random decoder: about 1.9
