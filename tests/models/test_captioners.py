"""Captioners with tiny random transformers models built offline, and binder zero-shot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from avbridge.errors import AvbridgeError, CheckpointError
from avbridge.io.media import Audio, Image, Video
from avbridge.models.binders.base import ClipSpec, Embedding
from avbridge.models.captioners import (
    BinderZeroShotCaptioner,
    BlipCaptioner,
    Captioner,
    ClapZeroShotCaptioner,
    ProbeCaptioner,
    load_captioner,
)
from avbridge.models.generators.tokenizers import build_word_tokenizer


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory) -> str:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    tok = build_word_tokenizer(flavour="roberta", model_max_length=32)
    text = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=37, bos_token_id=0, eos_token_id=2, pad_token_id=1, sep_token_id=2,
                max_position_embeddings=40)
    vision = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                  image_size=32, patch_size=8)
    torch.manual_seed(0)
    cfg = BlipConfig(text_config=text, vision_config=vision, projection_dim=16)
    model = BlipForConditionalGeneration(cfg)
    proc = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    path = tmp_path_factory.mktemp("blip")
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def clap_dir(tmp_path_factory) -> str:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    tok = build_word_tokenizer(flavour="roberta", model_max_length=16)
    text = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=37, max_position_embeddings=40, pad_token_id=1, bos_token_id=0,
                eos_token_id=2)
    audio = dict(spec_size=64, window_size=4, num_mel_bins=16, depths=[1, 1], num_heads=[2, 2],
                 patch_embeds_hidden_size=16, hidden_size=32, enable_fusion=False, patch_stride=(4, 4),
                 patch_size=4)
    torch.manual_seed(0)
    model = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=16))
    fe = ClapFeatureExtractor(feature_size=16, sampling_rate=8000, hop_length=80, max_length_s=1,
                              fft_window_size=512, truncation="rand_trunc")
    path = tmp_path_factory.mktemp("clap")
    model.save_pretrained(path)
    ClapProcessor(feature_extractor=fe, tokenizer=tok).save_pretrained(path)
    return str(path)


def test_blip_captions_key_frame(blip_dir):
    cap = load_captioner("blip", blip_dir)
    assert isinstance(cap, Captioner)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 40, 48, 3), dtype=np.uint8)
    text = cap.caption(Video(frames, fps=5.0))
    assert isinstance(text, str) and text
    # the key frame is the middle one: an image of it captions the same
    assert cap.caption(Image(frames[2])) == text
    with pytest.raises(AvbridgeError):
        cap.caption(Audio(np.zeros(100, np.float32), 16000))


def test_clap_zero_shot_picks_best_label(clap_dir):
    labels = ["dog barking", "rain", "car engine"]
    cap = load_captioner("clap", clap_dir, labels=labels)
    assert isinstance(cap, ClapZeroShotCaptioner)
    rng = np.random.default_rng(1)
    audio = Audio(rng.standard_normal(44100 * 2).astype(np.float32) * 0.1, 44100)  # resampled + cropped
    scores = cap.scores(audio)
    assert scores.shape == (3,)
    assert cap.caption(audio) == labels[int(scores.argmax())]
    assert cap.caption(audio) == cap.caption(audio)  # deterministic: no random crop
    assert cap.caption(Video(np.zeros((2, 8, 8, 3), np.uint8), 2.0, audio)) == cap.caption(audio)
    with pytest.raises(AvbridgeError):
        cap.caption(Video(np.zeros((2, 8, 8, 3), np.uint8), 2.0))


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError):
        BlipCaptioner.from_pretrained(tmp_path / "missing")
    with pytest.raises(AvbridgeError):
        load_captioner("nope")
    with pytest.raises(AvbridgeError):
        load_captioner("binder")


class ColourBinder:
    """Embeds pictures by mean colour and texts by the colour word they contain."""

    clips = ClipSpec()
    WORDS = ("red", "green", "blue")

    def embed_image(self, images: torch.Tensor) -> Embedding:
        return Embedding.from_clips(images.mean(dim=(2, 3))[:, None])

    def embed_video(self, frames: torch.Tensor, fps: float) -> Embedding:
        return Embedding.from_clips(frames.mean(dim=(1, 3, 4))[:, None])

    def embed_audio(self, waveform: torch.Tensor, sample_rate: int) -> Embedding:
        raise NotImplementedError

    def embed_text(self, texts: Sequence[str]) -> Embedding:
        vecs = torch.tensor([[float(w in t) for w in self.WORDS] for t in texts]) + 1e-3
        return Embedding.from_clips(vecs[:, None])


def test_binder_zero_shot_with_known_embeddings():
    cap = BinderZeroShotCaptioner(ColourBinder(), ["blue", "red", "green"], template="a {label} thing")
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200
    assert cap.caption(Image(red)) == "red"
    green_video = np.zeros((3, 8, 8, 3), np.uint8)
    green_video[..., 1] = 150
    assert cap.caption(Video(green_video, 3.0)) == "green"


def test_binder_zero_shot_with_fake_binder(fake_binder):
    labels = ["dog", "cat", "rain"]
    cap = BinderZeroShotCaptioner(fake_binder, labels)
    audio = Audio(np.sin(np.linspace(0, 200, 1600)).astype(np.float32), 800)
    scores = cap.scores(audio)
    assert cap.caption(audio) == labels[int(scores.argmax())]
    assert fake_binder.calls["text"] == 1  # label texts embedded once, then cached


def _colour_heads(scale: float = 1.0) -> dict:
    """Heads that read ColourBinder's mean-colour embedding: the class is the strongest
    channel, the size whether that channel is bright."""
    eye = torch.eye(3) / scale
    size = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0]]) / scale
    heads = {"class": (eye, torch.zeros(3)), "size": (size, torch.tensor([0.0, 0.0]))}
    return {"image": heads, "video": heads}


def _picture(channel: int, value: int, frames: int | None = None) -> Image | Video:
    px = np.zeros((frames or 1, 8, 8, 3), np.uint8)
    px[..., channel] = value
    return Image(px[0]) if frames is None else Video(px, 4.0)


def test_probe_captioner_reads_attributes_through_its_heads_and_round_trips(tmp_path):
    labels = {"class": ["red", "green", "blue"], "size": ["bright", "dim"]}
    cap = ProbeCaptioner(ColourBinder(), _colour_heads(), labels, template="a {size} {class}", scale=1.0)
    assert cap.caption(_picture(0, 200)) == "a bright red"
    assert cap.caption(_picture(2, 90, frames=3)) == "a bright blue"
    assert cap.predict(_picture(1, 200)) == {"class": "green", "size": "bright"}
    cap.save_pretrained(tmp_path / "cap")
    assert sorted(p.name for p in (tmp_path / "cap").iterdir()) == ["config.json", "heads.safetensors"]
    again = load_captioner("probe", tmp_path / "cap", binder=ColourBinder())
    assert isinstance(again, ProbeCaptioner) and again.template == "a {size} {class}"
    assert again.caption(_picture(1, 120, frames=2)) == "a bright green"
    assert ProbeCaptioner.from_pretrained(tmp_path / "cap", ColourBinder(), template="{class}").caption(
        _picture(2, 50)) == "blue"


def test_probe_captioner_errors(tmp_path):
    labels = {"class": ["red", "green", "blue"], "size": ["bright", "dim"]}
    with pytest.raises(ValueError, match="shape"):
        ProbeCaptioner(ColourBinder(), {"image": {"class": (torch.zeros(2, 3), torch.zeros(2))}}, labels)
    with pytest.raises(ValueError, match="template"):
        ProbeCaptioner(ColourBinder(), _colour_heads(), labels, template="{shape}")
    cap = ProbeCaptioner(ColourBinder(), _colour_heads(), labels)
    with pytest.raises(AvbridgeError, match="no heads for audio"):
        cap.caption(Audio(np.zeros(800, np.float32), 800))
    wide = {"image": {"class": (torch.zeros(3, 5), torch.zeros(3))}}
    with pytest.raises(AvbridgeError, match="5-d embeddings.*gives 3"):
        ProbeCaptioner(ColourBinder(), wide, {"class": ["a", "b", "c"]}).caption(_picture(0, 9))
    with pytest.raises(CheckpointError, match="no config.json"):
        ProbeCaptioner.from_pretrained(tmp_path / "missing", ColourBinder())
    cap.save_pretrained(tmp_path / "cap")
    (tmp_path / "cap" / "heads.safetensors").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="unreadable probe captioner"):
        ProbeCaptioner.from_pretrained(tmp_path / "cap", ColourBinder())
    with pytest.raises(AvbridgeError, match="probe captioner needs"):
        load_captioner("probe", tmp_path / "cap")
