"""Evaluation classifiers of the world: class, colour and size from audio or from pictures.

Independent of everything used for guidance (other architectures, other seed, trained by
their own script), so that scores are not the guidance binder grading its own homework:

- audio: a small 2D CNN on an absolute log-mel spectrogram (no per-clip normalisation, so
  loudness - the size cue - survives);
- video: a per-frame 2D CNN followed by a temporal convolution and mean+max pooling over
  time; an image is scored as a one-frame video.

Weights ship as ``audio.safetensors`` and ``video.safetensors`` next to this file;
``python -m avbridge.world.evalmodels train`` retrains them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from avbridge.errors import CheckpointError
from avbridge.io.media import Audio, Image, Video, resample
from avbridge.world.scene import CLASSES, COLOURS, SIZES, WORLD

HEADS: dict[str, tuple[str, ...]] = {"class": CLASSES, "colour": COLOURS, "size": SIZES}
WEIGHTS_DIR = Path(__file__).resolve().parent
N_MELS, N_FFT, HOP = 64, 512, 256


def mel_filterbank(sr: int = WORLD.sample_rate, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = 30.0, fmax: float | None = None) -> np.ndarray:
    """Triangular HTK-mel filters (n_mels, n_fft // 2 + 1)."""
    fmax = fmax or sr / 2
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    imel = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    pts = imel(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lo, ce, hi = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    up = (freqs[None] - lo) / (ce - lo)
    down = (hi - freqs[None]) / (hi - ce)
    return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


class LogMel(nn.Module):
    """Waveform (B, N) at 16 kHz -> log-mel (B, 1, N_MELS, frames), fixed affine scaling."""

    fb: torch.Tensor
    window: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("fb", torch.from_numpy(mel_filterbank()), persistent=False)
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x, N_FFT, HOP, window=self.window, return_complex=True).abs() ** 2
        mel = torch.einsum("mf,bft->bmt", self.fb, spec)
        return ((torch.log(mel + 1e-6) + 6.0) / 5.0).unsqueeze(1)


def _block(cin: int, cout: int, dims: int = 2, stride: int = 1) -> nn.Sequential:
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return nn.Sequential(conv(cin, cout, 3, stride=stride, padding=1), norm(cout), nn.GELU())


class _Heads(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({k: nn.Linear(dim, len(v)) for k, v in HEADS.items()})

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: head(h) for k, head in self.heads.items()}


class AudioClassifier(nn.Module):
    """2D CNN over the log-mel image; global mean+max pooling; one linear head per label."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.frontend = LogMel()
        w = width
        self.body = nn.Sequential(
            _block(1, w, stride=2), _block(w, 2 * w), nn.MaxPool2d(2),
            _block(2 * w, 2 * w), nn.MaxPool2d(2), _block(2 * w, 3 * w),
        )
        self.heads = _Heads(6 * w)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        h = self.body(self.frontend(wave))
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)

    def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.features(wave))


class VideoClassifier(nn.Module):
    """Per-frame 2D CNN, temporal conv, mean+max over time; frames (B, T, 3, H, W) in [0, 1]."""

    def __init__(self, width: int = 12) -> None:
        super().__init__()
        w = width
        self.frame = nn.Sequential(
            _block(3, w, stride=2), _block(w, 2 * w), nn.MaxPool2d(2),
            _block(2 * w, 3 * w), nn.AdaptiveAvgPool2d(2),
        )
        self.temporal = _block(12 * w, 4 * w, dims=1)
        self.heads = _Heads(8 * w)

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        b, t = frames.shape[:2]
        if frames.shape[-2:] != (WORLD.size, WORLD.size):
            frames = nn.functional.interpolate(frames.flatten(0, 1), size=(WORLD.size, WORLD.size),
                                               mode="bilinear", antialias=True, align_corners=False)
            frames = frames.unflatten(0, (b, t))
        h = self.frame(frames.flatten(0, 1)).flatten(1).unflatten(0, (b, t))
        h = self.temporal(h.transpose(1, 2))
        return torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)

    def forward(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.features(frames))


@dataclass
class Prediction:
    """Per-head probabilities (B, K) and arg-max labels of one batch.

    ``features`` is the classifiers' pooled embedding (B, D) that feeds the heads (the
    penultimate layer; used by ``avbridge eval`` as FD/KID features), when available.
    """

    probs: dict[str, np.ndarray]
    features: np.ndarray | None = None

    def labels(self, head: str) -> list[str]:
        return [HEADS[head][i] for i in self.probs[head].argmax(1)]

    def vector(self) -> np.ndarray:
        """All heads' probabilities side by side, unit-normalised (B, 11): the label space."""
        v = np.concatenate([self.probs[h] for h in HEADS], axis=1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def label_agreement(a: Prediction, b: Prediction) -> np.ndarray:
    """Cosine similarity (B,) of two predictions in the evaluation models' label space."""
    return (a.vector() * b.vector()).sum(1)


_M = TypeVar("_M", bound=nn.Module)


def _load(model: _M, path: Path) -> _M:
    from safetensors.torch import load_file

    if not path.is_file():
        raise CheckpointError(path, "evaluation weights are missing: run "
                              "`python -m avbridge.world.evalmodels train`")
    try:
        state = load_file(str(path))
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - any failure here is a bad checkpoint
        detail = " ".join(str(e).split())[:200]
        raise CheckpointError(path, f"cannot load evaluation weights: {detail}") from e
    return model.eval()


class EvalModels:
    """The two evaluation classifiers, loaded once; inputs are avbridge media containers."""

    def __init__(self, audio: AudioClassifier, video: VideoClassifier, device: str = "cpu") -> None:
        self.audio = audio.to(device).eval()
        self.video = video.to(device).eval()
        self.device = device

    @classmethod
    def load(cls, directory: str | Path | None = None, device: str = "cpu") -> EvalModels:
        d = Path(directory) if directory is not None else WEIGHTS_DIR
        return cls(_load(AudioClassifier(), d / "audio.safetensors"),
                   _load(VideoClassifier(), d / "video.safetensors"), device)

    @staticmethod
    def available(directory: str | Path | None = None) -> bool:
        d = Path(directory) if directory is not None else WEIGHTS_DIR
        return (d / "audio.safetensors").is_file() and (d / "video.safetensors").is_file()

    @torch.no_grad()
    def predict_audio(self, audios: list[Audio]) -> Prediction:
        """Class/colour/size probabilities of each audio (resampled to 16 kHz, cut/padded to 4 s)."""
        n = WORLD.n_samples
        rows = []
        for a in audios:
            x = resample(a.samples, a.sample_rate, WORLD.sample_rate)[:n]
            rows.append(np.pad(x, (0, n - len(x))))
        batch = torch.from_numpy(np.stack(rows)).float().to(self.device)
        h = self.audio.features(batch)
        probs = {k: torch.softmax(v, 1).cpu().numpy() for k, v in self.audio.heads(h).items()}
        return Prediction(probs, h.cpu().numpy())

    @torch.no_grad()
    def predict_video(self, videos: list[Video | Image]) -> Prediction:
        """Class/colour/size probabilities of each video (or image, as a one-frame video)."""
        out: dict[str, list[np.ndarray]] = {k: [] for k in HEADS}
        feats: list[np.ndarray] = []
        for v in videos:
            frames = v.frames if isinstance(v, Video) else v.pixels[None]
            x = torch.from_numpy(np.ascontiguousarray(frames)).float().div(255.0)
            x = x.permute(0, 3, 1, 2)[None].to(self.device)
            h = self.video.features(x)
            feats.append(h.cpu().numpy())
            for k, logits in self.video.heads(h).items():
                out[k].append(torch.softmax(logits, 1).cpu().numpy())
        return Prediction({k: np.concatenate(v) for k, v in out.items()}, np.concatenate(feats))


def model_card() -> dict[str, Any]:
    """The training record shipped with the weights (``card.json``), or {} if absent."""
    p = WEIGHTS_DIR / "card.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def n_params(model: nn.Module) -> int:
    return sum(math.prod(p.shape) for p in model.parameters())
