"""PANNs CNN14 (Kong et al. 2020) audio tagger, our own code, official checkpoint key names.

Architecture facts (from the public ``audioset_tagging_cnn`` models.py and torchlibrosa):
32 kHz mono input; STFT as two frozen Conv1d (n_fft 1024, hop 320, periodic Hann,
centre reflect padding), power spectrum, a frozen 64-band Slaney mel matrix
(50-14000 Hz) and ``10 log10(max(x, 1e-10))``; BatchNorm over mel bands (``bn0``); six
conv blocks (two 3x3 conv + BN + ReLU, 2x2 average pool except the last: 1x1) with
64..2048 channels; mean over frequency, max + mean over time; ``fc1`` (2048 -> 2048,
ReLU) gives the 2048-d embedding used for FD/FAD/KID; ``fc_audioset`` (527 AudioSet
classes) gives logits (the official model applies a sigmoid: multi-label).

The key/shape table is in ``docs/eval.md``; :data:`CNN14_KEYS` generates it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avbridge.errors import CheckpointError, MediaError
from avbridge.io.dsp import slaney_mel_filterbank


@dataclass(frozen=True)
class Cnn14Config:
    """CNN14 hyper-parameters; defaults are the official 32 kHz AudioSet model."""

    sample_rate: int = 32000
    window_size: int = 1024
    hop_size: int = 320
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0
    classes_num: int = 527
    channels: tuple[int, ...] = field(default=(64, 128, 256, 512, 1024, 2048))

    @property
    def embedding_dim(self) -> int:
        return self.channels[-1]

    @property
    def min_samples(self) -> int:
        """Shortest input that survives the five 2x2 poolings (>= 32 STFT frames)."""
        return (2 ** (len(self.channels) - 1) - 1) * self.hop_size


#: A small configuration with the same structure, for tests (random weights only).
TINY = Cnn14Config(channels=(4, 8, 8, 16, 16, 32), classes_num=10)


def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """Triangular Slaney-normalised mel filters (n_mels, n_fft // 2 + 1), as librosa.filters.mel."""
    return slaney_mel_filterbank(sr, n_fft, n_mels, fmin, fmax)


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and imaginary STFT kernels (n_fft // 2 + 1, 1, n_fft): periodic Hann x exp(-2 pi i k n / N)."""
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    angle = -2 * np.pi * k * n[None, :] / n_fft
    return (
        (np.cos(angle) * window)[:, None, :].astype(np.float32),
        (np.sin(angle) * window)[:, None, :].astype(np.float32),
    )


class _STFT(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        bins = n_fft // 2 + 1
        self.n_fft = n_fft
        self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)
        self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.pad(x[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        return self.conv_real(x).transpose(1, 2), self.conv_imag(x).transpose(1, 2)  # (B, T, F)


class _Spectrogram(nn.Module):
    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.stft = _STFT(n_fft, hop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        real, imag = self.stft(x)
        return (real**2 + imag**2)[:, None]  # (B, 1, T, F) power


class _LogMel(nn.Module):
    def __init__(self, n_fft: int, n_mels: int):
        super().__init__()
        self.melW = nn.Parameter(torch.empty(n_fft // 2 + 1, n_mels), requires_grad=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return 10.0 * torch.log10(torch.clamp(power @ self.melW, min=1e-10))  # ref 1.0, no top_db


class _ConvBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool > 1 else x


class Cnn14(nn.Module):
    """CNN14 in inference form (dropout and SpecAugment are training-only and omitted)."""

    def __init__(self, config: Cnn14Config = Cnn14Config()):
        super().__init__()
        c = config
        self.config = c
        self.spectrogram_extractor = _Spectrogram(c.window_size, c.hop_size)
        self.logmel_extractor = _LogMel(c.window_size, c.mel_bins)
        self.bn0 = nn.BatchNorm2d(c.mel_bins)
        ins = (1, *c.channels[:-1])
        for i, (a, b) in enumerate(zip(ins, c.channels, strict=True), start=1):
            setattr(self, f"conv_block{i}", _ConvBlock(a, b))
        self.fc1 = nn.Linear(c.embedding_dim, c.embedding_dim)
        self.fc_audioset = nn.Linear(c.embedding_dim, c.classes_num)
        if not any(p.is_meta for p in self.parameters()):
            self.reset_frontend()

    def reset_frontend(self) -> None:
        """Fill the frozen STFT and mel weights (the checkpoint stores the same values)."""
        c = self.config
        real, imag = dft_kernels(c.window_size)
        mel = mel_filterbank(c.sample_rate, c.window_size, c.mel_bins, c.fmin, c.fmax)
        with torch.no_grad():
            self.spectrogram_extractor.stft.conv_real.weight.copy_(torch.from_numpy(real))
            self.spectrogram_extractor.stft.conv_imag.weight.copy_(torch.from_numpy(imag))
            self.logmel_extractor.melW.copy_(torch.from_numpy(mel.T))
        for p in (*self.spectrogram_extractor.parameters(), self.logmel_extractor.melW):
            p.requires_grad_(False)

    def logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        """(B, N) at 32 kHz -> log-mel (B, 1, T, mel_bins)."""
        return self.logmel_extractor(self.spectrogram_extractor(waveform))

    def forward(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, N) mono at ``config.sample_rate`` -> ``{"embedding", "logits", "clipwise_output"}``."""
        x = self.logmel(waveform)
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        n = len(self.config.channels)
        for i in range(1, n + 1):
            x = getattr(self, f"conv_block{i}")(x, 2 if i < n else 1)
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        emb = F.relu(self.fc1(x))
        logits = self.fc_audioset(emb)
        return {"embedding": emb, "logits": logits, "clipwise_output": torch.sigmoid(logits)}


def cnn14_key_shapes(config: Cnn14Config = Cnn14Config()) -> dict[str, tuple[int, ...]]:
    """State-dict keys and shapes of CNN14, built from the official layer list (no model needed)."""
    c = config
    bins = c.window_size // 2 + 1
    out: dict[str, tuple[int, ...]] = {
        "spectrogram_extractor.stft.conv_real.weight": (bins, 1, c.window_size),
        "spectrogram_extractor.stft.conv_imag.weight": (bins, 1, c.window_size),
        "logmel_extractor.melW": (bins, c.mel_bins),
    }

    def bn(prefix: str, n: int) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            out[f"{prefix}.{k}"] = (n,)
        out[f"{prefix}.num_batches_tracked"] = ()

    bn("bn0", c.mel_bins)
    ins = (1, *c.channels[:-1])
    for i, (a, b) in enumerate(zip(ins, c.channels, strict=True), start=1):
        out[f"conv_block{i}.conv1.weight"] = (b, a, 3, 3)
        out[f"conv_block{i}.conv2.weight"] = (b, b, 3, 3)
        bn(f"conv_block{i}.bn1", b)
        bn(f"conv_block{i}.bn2", b)
    d = c.embedding_dim
    out.update({"fc1.weight": (d, d), "fc1.bias": (d,)})
    out.update({"fc_audioset.weight": (c.classes_num, d), "fc_audioset.bias": (c.classes_num,)})
    return out


#: The official CNN14 keys and shapes (documented in docs/eval.md).
CNN14_KEYS = cnn14_key_shapes()


def load_cnn14_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a CNN14 checkpoint: a state dict, or the official ``{"model": state_dict, ...}``.

    Loads with ``weights_only=True`` unless ``trust_pickle`` (only for files you trust:
    the training scripts also pickle sampler state, which plain loading refuses).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "checkpoint file not found")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(p))
        else:
            obj = torch.load(str(p), map_location="cpu", weights_only=not trust_pickle)
    except Exception as exc:
        hint = "" if trust_pickle else " (if you trust this file, retry with trust_pickle=True)"
        raise CheckpointError(p, f"cannot read checkpoint: {str(exc).splitlines()[0]}{hint}") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(p, "not a CNN14 state dict (expected tensors, or {'model': state_dict})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def config_from_state_dict(sd: dict[str, torch.Tensor], base: Cnn14Config = Cnn14Config()) -> Cnn14Config:
    """Infer channel widths and class count from the tensors (official model or smaller variants)."""
    channels = []
    i = 1
    while f"conv_block{i}.conv1.weight" in sd:
        channels.append(int(sd[f"conv_block{i}.conv1.weight"].shape[0]))
        i += 1
    if not channels or "fc_audioset.weight" not in sd:
        return base
    return Cnn14Config(
        **{**asdict(base), "channels": tuple(channels), "classes_num": int(sd["fc_audioset.weight"].shape[0])}
    )


def cnn14_from_checkpoint(path: str | Path, trust_pickle: bool = False) -> Cnn14:
    """Build CNN14 and load an official-format checkpoint; every mismatch is a CheckpointError."""
    sd = load_cnn14_state_dict(path, trust_pickle)
    config = config_from_state_dict(sd)
    model = Cnn14(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(path, "not a CNN14 checkpoint: " + "; ".join(parts))
    bad = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if sd[k].shape != v.shape
    ]
    if bad:
        raise CheckpointError(path, "shape mismatch: " + "; ".join(bad[:3]))
    model.load_state_dict(sd)
    return model.eval()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class PannsExtractor:
    """CNN14 as a feature extractor: 2048-d embedding (FD/FAD/KID), logits -> probabilities (KL, ISc).

    ``probabilities`` are the softmax of the logits and ``probabilities_sigmoid`` the
    official multi-label output, matching the field's KL-softmax / KL-sigmoid / ISc.
    """

    modality = "audio"

    def __init__(self, model: Cnn14, version: str, name: str = "panns-cnn14"):
        self.model = model.eval()
        self.name = name
        self.version = version

    @classmethod
    def from_checkpoint(cls, path: str | Path, trust_pickle: bool = False) -> PannsExtractor:
        """Load an official CNN14 checkpoint; the file's SHA-256 is the cache version."""
        model = cnn14_from_checkpoint(path, trust_pickle)
        return cls(model, version=file_sha256(path)[:16])

    def _waveform(self, media: Any) -> torch.Tensor:
        from avbridge.io.media import Audio, Video, resample

        audio = media.audio if isinstance(media, Video) else media
        if not isinstance(audio, Audio):
            raise MediaError(None, f"{self.name} needs audio, got {type(media).__name__}")
        sr = self.model.config.sample_rate
        y = audio.samples if audio.sample_rate == sr else resample(audio.samples, audio.sample_rate, sr)
        if len(y) < self.model.config.min_samples:
            raise MediaError(
                None,
                f"audio too short for {self.name}: {len(y) / sr:.3f} s "
                f"(needs >= {self.model.config.min_samples / sr:.3f} s)",
            )
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None]

    @torch.no_grad()
    def extract(self, media: Any) -> dict[str, np.ndarray]:
        """All outputs of one forward pass (the cache stores them together)."""
        out = self.model(self._waveform(media))
        logits = out["logits"][0].double()
        return {
            "features": out["embedding"][0].double().numpy(),
            "logits": logits.numpy(),
            "probabilities": torch.softmax(logits, 0).numpy(),
            "probabilities_sigmoid": torch.sigmoid(logits).numpy(),
        }

    def features(self, media: Any) -> np.ndarray:
        return self.extract(media)["features"]

    def probabilities(self, media: Any) -> np.ndarray:
        return self.extract(media)["probabilities"]
