"""The audio guidance encoder: a shallow copy of the binder's audio tower, used only in guidance."""

from __future__ import annotations

import pytest
import torch

from avbridge.align import AlignConfig, Condition
from avbridge.align.loop import align
from avbridge.errors import CheckpointError
from avbridge.models.binders import guidance_encoder as ge
from avbridge.models.binders.base import ClipSpec
from avbridge.models.binders.imagebind import ImageBindBinder
from avbridge.models.generators.audioldm import AudioLDMGenerator


def _features(seconds: float, batch: int = 2):
    gen = AudioLDMGenerator.tiny()
    spec = gen.default_spec(seconds)
    z = gen.init_latents(spec, batch, torch.Generator().manual_seed(0))
    with torch.no_grad():
        return gen.decode_features(z, spec)


def test_full_depth_copy_equals_the_tower_when_clips_fill_the_input():
    """2-s clips fill ImageBind's 204 frames: all blocks kept, the encoder is the tower itself."""
    binder = ImageBindBinder.from_preset("tiny", seed=1)
    binder.requires_grad_(False)
    enc = ge.encoder_from_binder(binder, 2)
    assert enc.config.target_length == binder.config.audio_target_length
    feats = _features(4.0)
    with torch.no_grad():
        want = binder.embed_audio_features(feats)
        got = enc.embed_input(binder.audio_input_from_features(feats))
    torch.testing.assert_close(got.clips, want.clips, atol=1e-5, rtol=1e-5)


def test_short_clips_read_only_their_patches_with_the_towers_positions():
    """1-s clips (98 fbank frames, padded to 204): the encoder reads the 10 time patches that
    cover them, each with the tower's position embedding of the same (frequency, time) patch."""
    binder = ImageBindBinder.from_preset("tiny", seed=1, clips=ClipSpec(duration_s=1.0, count=None))
    enc = ge.encoder_from_binder(binder, 1)
    assert enc.config.target_length == 106 and enc.patch_grid == (12, 10)
    f_t, t_t = binder.config.audio_patch_grid
    teacher = binder.model.patch_preprocessor("audio").pos_embedding_helper.pos_embed
    own = enc.preprocessor.pos_embedding_helper.pos_embed
    torch.testing.assert_close(own[0, 0], teacher[0, 0])  # cls
    for f, t in ((0, 0), (3, 7), (11, 9)):
        torch.testing.assert_close(own[0, 1 + f * 10 + t], teacher[0, 1 + f * t_t + t])
    assert len(enc.trunk.blocks) == 1
    feats = _features(3.0)
    x = binder.audio_input_from_features(feats)
    assert x.shape[1] == 3 and x.shape[-1] == 204
    e = enc.embed_input(x)
    assert e.clips.shape == (2, 3, binder.config.out_embed_dim)
    with pytest.raises(ValueError, match="num_blocks"):
        ge.encoder_from_binder(binder, 3)


@pytest.mark.parametrize("use", [True, False])
def test_used_in_the_guidance_branch_only(use):
    """With ``guidance_encoder`` the guided steps embed the audio with the encoder; the binder's
    audio tower runs only for the final score. Without it the encoder is never called."""
    binder = ImageBindBinder.from_preset("tiny")
    binder.requires_grad_(False)
    enc = ge.encoder_from_binder(binder, 1)
    ge.attach(binder, enc)
    calls = {"encoder": 0, "tower": 0}
    enc.register_forward_hook(lambda *a: calls.__setitem__("encoder", calls["encoder"] + 1))
    binder.model.modality_trunks["audio"].register_forward_hook(
        lambda *a: calls.__setitem__("tower", calls["tower"] + 1))
    gen = AudioLDMGenerator.tiny()
    cond = Condition("video", torch.rand(1, 8, 3, 32, 32), rate=8.0)
    cfg = AlignConfig(steps=3, window=(0.0, 1.0), guidance_encoder=use)
    res = align(gen, binder, spec=gen.default_spec(1.0), condition=cond, prompt="a dog", config=cfg, seed=0)
    assert calls == ({"encoder": 3, "tower": 1} if use else {"encoder": 0, "tower": 4})
    assert res.trace.settings["guidance_encoder"]["value"] is use


def test_attach_stays_outside_the_binder_and_checks_the_fit(tmp_path):
    binder = ImageBindBinder.from_preset("tiny")
    keys = set(binder.state_dict())
    enc = ge.encoder_from_binder(binder, 1)
    ge.attach(binder, enc)
    assert binder.guidance_encoder is not None and set(binder.state_dict()) == keys
    enc.save_pretrained(str(tmp_path / "e"))
    back = ge.load_guidance_encoder(tmp_path / "e")
    x = torch.randn(2, 1, 128, 204)
    torch.testing.assert_close(back(x), enc(x))
    other = ImageBindBinder.from_preset("tiny-32")
    with pytest.raises(CheckpointError, match="does not fit"):
        ge.attach(other, back)
    with pytest.raises(CheckpointError, match="no config.json"):
        ge.load_guidance_encoder(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "config.json").write_text('{"_class_name": "AutoencoderTiny"}')
    with pytest.raises(CheckpointError, match="not a guidance encoder"):
        ge.load_guidance_encoder(tmp_path / "d")
    ge.attach(binder, None)
    assert binder.guidance_encoder is None


def test_load_components_auto():
    from avbridge.loading import load_components

    comps = load_components("tiny-random", need=["audio"], captioner="none", guidance_encoder="auto")
    assert isinstance(comps.binder.guidance_encoder, ge.AudioGuidanceEncoder)
    plain = load_components("tiny-random", need=["audio"], captioner="none")
    assert getattr(plain.binder, "guidance_encoder", None) is None
    from avbridge.errors import AvbridgeError
    from avbridge.loading import attach_guidance_encoder

    with pytest.raises(AvbridgeError, match="paper preset has no audio guidance"):
        attach_guidance_encoder("auto", "paper", plain.binder)


def test_world_ships_an_encoder_that_tracks_the_binder():
    """``--guidance-encoder auto`` with the world preset attaches the shipped encoder (one of the
    binder's two audio blocks, distilled); on the world generator's own log-mels its clip
    embeddings are closer to the binder's than the undistilled one-block copy's."""
    from avbridge.apps.distill_encoder import sample_inputs
    from avbridge.loading import load_components

    comps = load_components("world", need=["audio"], captioner="none", guidance_encoder="auto")
    enc = comps.binder.guidance_encoder
    assert isinstance(enc, ge.AudioGuidanceEncoder) and int(enc.config.num_blocks) == 1
    x = sample_inputs(comps.audio, comps.binder, ["a dog barking", "a bell ringing"],
                      comps.audio.default_spec(4.0), 4, 2.5, seed=123)
    copy = ge.encoder_from_binder(comps.binder, 1)
    with torch.no_grad():
        want = torch.nn.functional.normalize(comps.binder.model.embed("audio", x), dim=-1)

        def cos(m):
            return float((torch.nn.functional.normalize(m(x), dim=-1) * want).sum(-1).mean())

        shipped, undistilled = cos(enc), cos(copy)
    assert shipped > 0.9 and shipped > undistilled + 0.05, (shipped, undistilled)
