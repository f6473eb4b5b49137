"""ImageBindBinder: the Binder protocol, shapes, determinism, gradients, save/load."""

from __future__ import annotations

import pytest
import torch

from avbridge.errors import CheckpointError
from avbridge.models.binders.base import Binder, ClipSpec
from avbridge.models.binders.imagebind import ImageBindBinder


@pytest.fixture(scope="module")
def world_binder() -> ImageBindBinder:
    """The 32x32 / 4-frame / 0.5-s-clip configuration of the embedded world."""
    return ImageBindBinder.from_preset("tiny-32", seed=0, clips=ClipSpec(0.5, None, frames_per_clip=4))


def _unit(x: torch.Tensor) -> bool:
    return torch.allclose(x.norm(dim=-1), torch.ones(x.shape[:-1]), atol=1e-5)


def test_binder_protocol_and_shapes(world_binder):
    b = world_binder
    assert isinstance(b, Binder)
    video = torch.rand(2, 8, 3, 40, 48)  # 1 s at 8 fps, any frame size
    ev = b.embed_video(video, fps=8.0)
    assert ev.clips.shape == (2, 2, 64) and ev.pooled.shape == (2, 64)
    ea = b.embed_audio(torch.randn(2, 22050) * 0.1, sample_rate=22050)
    assert ea.clips.shape == (2, 2, 64)  # same clip times as the video
    ei = b.embed_image((torch.rand(3, 3, 32, 32) * 255).to(torch.uint8))
    et = b.embed_text(["a red ball", "a dog"])
    assert ei.clips.shape == (3, 1, 64) and et.pooled.shape == (2, 64)
    for e in (ev, ea, ei, et):
        assert _unit(e.clips) and _unit(e.pooled)


def test_same_seed_same_output_other_seed_differs():
    a = ImageBindBinder.from_preset("tiny-32", seed=1).embed_text(["piano"]).pooled
    b = ImageBindBinder.from_preset("tiny-32", seed=1).embed_text(["piano"]).pooled
    c = ImageBindBinder.from_preset("tiny-32", seed=2).embed_text(["piano"]).pooled
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_gradients_finite_for_silence_and_constant_frames(world_binder):
    b = world_binder
    wave = torch.zeros(1, 8000, requires_grad=True)
    frames = torch.full((1, 4, 3, 32, 32), 0.5, requires_grad=True)
    loss = 1 - (b.embed_audio(wave, 16000).pooled * b.embed_video(frames, 8.0).pooled).sum()
    loss.backward()
    assert torch.isfinite(wave.grad).all() and torch.isfinite(frames.grad).all()
    assert frames.grad.abs().sum() > 0
    images = torch.zeros(1, 3, 64, 64, requires_grad=True)
    b.embed_image(images).pooled.sum().backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_audio_gradient_reaches_a_nonsilent_waveform(world_binder):
    wave = (0.1 * torch.randn(1, 44100)).requires_grad_(True)
    world_binder.embed_audio(wave, 44100).clips[0, 0, 0].backward()
    assert torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0


def test_frames_per_clip_must_match_the_model():
    with pytest.raises(ValueError, match="frames_per_clip"):
        ImageBindBinder.from_preset("tiny-32", clips=ClipSpec(0.5, None, frames_per_clip=2))


def test_save_and_load_pretrained(tmp_path, world_binder):
    world_binder.save_pretrained(tmp_path / "binder")
    again = ImageBindBinder.from_pretrained(tmp_path / "binder")
    assert again.config == world_binder.config and again.clips == world_binder.clips
    saved, loaded = world_binder.model.state_dict(), again.model.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    # Same weights; two instances may still take kernels that differ in the last float bit.
    texts = ["a small red ball bouncing"]
    assert torch.allclose(again.embed_text(texts).pooled, world_binder.embed_text(texts).pooled, atol=1e-6)
    with pytest.raises(CheckpointError, match="config.json"):
        ImageBindBinder.from_pretrained(tmp_path / "empty")


def test_official_default_clips_and_video_input_shape():
    b = ImageBindBinder.from_preset("tiny")
    assert b.clips == ClipSpec(2.0, 3, 2)
    x = b.preprocess_video(torch.rand(1, 50, 3, 120, 160), fps=10.0)
    assert x.shape == (1, 3, 3, 2, 224, 224)


def test_end_to_end_from_raw_media_matches_reference(small_fixture):
    """Waveform and [0, 1] pixels through the Binder give the reference embeddings."""
    from avbridge.models.binders.imagebind import ImageBindModel, load_imagebind_weights
    from avbridge.models.binders.preprocess import CLIP_MEAN, CLIP_STD

    t = small_fixture["tensors"]
    with torch.device("meta"):
        model = ImageBindModel(ImageBindBinder.from_preset("tiny").config)
    binder = ImageBindBinder(load_imagebind_weights(model, small_fixture["weights"]))

    def close(got: torch.Tensor, ref: torch.Tensor) -> bool:
        ref = torch.nn.functional.normalize(ref, dim=-1)
        return ((got - ref).norm() / ref.norm()).item() < 1e-4

    assert close(binder.embed_audio(t["waveform"], 16000).pooled, t["embed_audio"])
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    pixels = t["images"] * std + mean
    assert close(binder.embed_image(pixels).pooled, t["embed_image"])
    # (B, clips, 3, 2, H, W) -> frames (B, 4, 3, H, W): two 1-s clips at 2 fps.
    frames = (t["video"].permute(0, 1, 3, 2, 4, 5) * std + mean).flatten(1, 2)
    binder.clips = ClipSpec(duration_s=1.0, count=None, frames_per_clip=2)
    assert close(binder.embed_video(frames, fps=2.0).pooled, t["embed_video"])
