"""Shared fixtures: small components for tests of the aligner, the tasks and the CLI.

``FakeGenerator`` and ``FakeBinder`` are deliberately small stand-ins that satisfy the
Generator and Binder protocols with real torch modules and a real diffusers DDIM
scheduler; they make loop-logic tests run in milliseconds. The fixtures named
``tiny_*`` return the project's real tiny components when they are importable.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from avbridge.models.binders.base import ClipSpec, Embedding
from avbridge.models.binders.preprocess import sample_video_clips
from avbridge.models.generators.base import MediaSpec, PromptCond


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` (the scripts are not a package) for testing its functions."""
    path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _text_features(texts: Sequence[str], dim: int = 32) -> torch.Tensor:
    """A deterministic bag-of-characters vector per text."""
    out = torch.zeros(len(texts), dim)
    for i, text in enumerate(texts):
        for j, ch in enumerate(text):
            out[i, (ord(ch) * 7 + j) % dim] += 1.0
    return out


class FakeGenerator(torch.nn.Module):
    """A tiny latent 'diffusion model' for audio, video or images (protocol-complete)."""

    def __init__(self, modality: str = "audio", seed: int = 0, channels: int = 4):
        super().__init__()
        self.modality = modality
        self.sample_rate = 800 if modality == "audio" else None
        self.channels = channels
        g = torch.Generator().manual_seed(seed)
        self.mix = torch.nn.Parameter(torch.randn(channels, channels, generator=g) * 0.3)
        self.text = torch.nn.Parameter(torch.randn(32, channels, generator=g) * 0.1)
        out_ch = 1 if modality == "audio" else 3
        self.dec = torch.nn.Parameter(torch.randn(channels, out_ch, generator=g))
        self.scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear",
                                       beta_start=0.00085, beta_end=0.012, clip_sample=False,
                                       set_alpha_to_one=False)
        self.calls: Counter[str] = Counter()
        self.frames_decoded: list[int] = []
        self.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def default_spec(self, duration_s: float | None = None) -> MediaSpec:
        if self.modality == "audio":
            return MediaSpec(duration_s=duration_s or 2.0)
        if self.modality == "video":
            return MediaSpec(duration_s=duration_s or 2.0, fps=4, height=16, width=16)
        return MediaSpec(height=16, width=16)

    def encode_prompt(self, prompts: list[str], negative: list[str] | None = None) -> PromptCond:
        self.calls["encode_prompt"] += 1
        emb = _text_features(prompts) @ self.text
        neg = _text_features(negative or [""] * len(prompts)) @ self.text
        return PromptCond(embeds=emb, negative=neg)

    def _latent_shape(self, spec: MediaSpec, batch: int) -> tuple[int, ...]:
        if self.modality == "audio":
            return (batch, self.channels, max(1, round(spec.duration_s * 8)))
        h, w = (spec.height or 16) // 4, (spec.width or 16) // 4
        if self.modality == "video":
            return (batch, self.channels, spec.num_frames, h, w)
        return (batch, self.channels, h, w)

    def init_latents(self, spec: MediaSpec, batch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self._latent_shape(spec, batch), generator=generator)

    def timesteps(self, n: int) -> torch.Tensor:
        self.scheduler.set_timesteps(n)
        return self.scheduler.timesteps

    def _eps(self, z: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        zc = z.movedim(1, -1)
        bias = emb.view(emb.shape[0], *([1] * (zc.dim() - 2)), -1)
        return torch.tanh(zc @ self.mix + bias).movedim(-1, 1) * 0.5 + 0.5 * z

    def predict_eps(self, z: torch.Tensor, t: torch.Tensor, cond: PromptCond, guidance_scale: float):
        self.calls["predict_eps"] += 1
        eps_c = self._eps(z, cond.embeds)
        if guidance_scale == 1.0 or cond.negative is None:
            return eps_c
        eps_u = self._eps(z, cond.negative)
        return eps_u + guidance_scale * (eps_c - eps_u)

    def _abar(self, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.alphas_cumprod[int(t)]

    def predict_x0(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self._abar(t)
        return (z - (1 - a).sqrt() * eps) / a.sqrt()

    def step(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.step(eps, t, z).prev_sample

    def renoise(self, z0: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.calls["renoise"] += 1
        noise = torch.randn(z0.shape, generator=generator)
        return self.scheduler.add_noise(z0, noise, torch.as_tensor(t).reshape(1))

    def decode(self, z0: torch.Tensor, spec: MediaSpec) -> torch.Tensor:
        self.calls["decode"] += 1
        if self.modality == "video":
            self.frames_decoded.append(z0.shape[2])
        x = (z0.movedim(1, -1) @ self.dec).movedim(-1, 1)
        if self.modality == "audio":
            n = spec.num_samples(self.sample_rate)
            return torch.tanh(F.interpolate(x, size=n, mode="linear", align_corners=False)[:, 0])
        h, w = spec.height or 16, spec.width or 16
        if self.modality == "video":
            x = F.interpolate(x, size=(x.shape[2], h, w), mode="trilinear", align_corners=False)
            return torch.sigmoid(x).permute(0, 2, 1, 3, 4)
        return torch.sigmoid(F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False))


class FakeBinder(torch.nn.Module):
    """A tiny differentiable binder with ImageBind's clip logic; counts its calls."""

    def __init__(self, seed: int = 0, dim: int = 16, clips: ClipSpec | None = None):
        super().__init__()
        self.clips = clips or ClipSpec(duration_s=1.0, count=None, frames_per_clip=2)
        g = torch.Generator().manual_seed(seed)
        self.audio = torch.nn.Parameter(torch.randn(32, dim, generator=g))
        self.vision = torch.nn.Parameter(torch.randn(48, dim, generator=g))
        self.text = torch.nn.Parameter(torch.randn(32, dim, generator=g))
        self.calls: Counter[str] = Counter()
        self.frames_seen: list[int] = []
        self.requires_grad_(False)

    def embed_audio(self, waveform: torch.Tensor, sample_rate: int) -> Embedding:
        self.calls["audio"] += 1
        total = waveform.shape[-1] / sample_rate
        feats = []
        for s in self.clips.starts(total):
            a = int(s * sample_rate)
            seg = waveform[:, a : a + int(self.clips.duration_s * sample_rate)]
            pooled = F.adaptive_avg_pool1d(seg[:, None], 16)[:, 0]
            energy = F.adaptive_avg_pool1d(seg[:, None].abs(), 16)[:, 0]
            feats.append(torch.cat([pooled, energy], dim=-1) @ self.audio)
        return Embedding.from_clips(torch.stack(feats, dim=1))

    def _frames(self, frames: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(frames.flatten(0, 1), 4).flatten(1)
        return x.view(frames.shape[0], frames.shape[1], -1).mean(1) @ self.vision

    def embed_video(self, frames: torch.Tensor, fps: float) -> Embedding:
        self.calls["video"] += 1
        self.frames_seen.append(frames.shape[1])
        clips = sample_video_clips(frames, fps, self.clips)  # (B, C, F, 3, H, W)
        feats = [self._frames(clips[:, c]) for c in range(clips.shape[1])]
        return Embedding.from_clips(torch.stack(feats, dim=1))

    def embed_image(self, images: torch.Tensor) -> Embedding:
        self.calls["image"] += 1
        return Embedding.from_clips(self._frames(images[:, None])[:, None])

    def embed_text(self, texts: Sequence[str]) -> Embedding:
        self.calls["text"] += 1
        return Embedding.from_clips((_text_features(texts) @ self.text)[:, None])


@pytest.fixture
def fake_binder() -> FakeBinder:
    return FakeBinder()


@pytest.fixture
def fake_audio_gen() -> FakeGenerator:
    return FakeGenerator("audio", seed=1)


@pytest.fixture
def fake_video_gen() -> FakeGenerator:
    return FakeGenerator("video", seed=2)


@pytest.fixture
def fake_image_gen() -> FakeGenerator:
    return FakeGenerator("image", seed=3)


@pytest.fixture(scope="session")
def tiny_components():
    """The project's real tiny components (ImageBind tiny, AudioLDM tiny, AnimateDiff tiny
    in video and image mode), built once per session; skipped where one is missing."""
    try:
        from avbridge.models.binders.imagebind import ImageBindBinder
        from avbridge.models.generators.animatediff import AnimateDiffGenerator
        from avbridge.models.generators.audioldm import AudioLDMGenerator
    except ImportError as exc:  # pragma: no cover - only while a component is being built
        pytest.skip(f"tiny components not available: {exc}")
    from avbridge.tasks import Components

    return Components(
        binder=ImageBindBinder.from_preset("tiny"),
        audio=AudioLDMGenerator.tiny(),
        video=AnimateDiffGenerator.tiny(),
        image=AnimateDiffGenerator.tiny(modality="image"),
    )
