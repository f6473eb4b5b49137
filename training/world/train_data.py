"""Data side of world training: cached rendered clips, log-mels, tokenizers, captions.

Rendering a clip takes ~0.1 s, and every stage reads the same clips, so the first
stage that needs a set renders it once (in parallel) and stores it as tensors under
``runs/world-cache``; later stages load that file.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from avbridge.io.dsp import slaney_mel_filterbank
from avbridge.world import scene
from avbridge.world.scene import CLASSES, COLOURS, SIZES, VERBS, WORLD

CACHE_VERSION = 1
DEFAULT_CACHE = Path("runs/world-cache")


@dataclass
class ClipSet:
    """Rendered clips as tensors: video uint8 (N, T, H, W, 3), audio float32 (N, S)."""

    video: torch.Tensor
    audio: torch.Tensor
    captions: list[str]
    truths: list[dict]
    seeds: list[int]

    def __len__(self) -> int:
        return len(self.seeds)


def _render(seed: int) -> tuple[np.ndarray, np.ndarray, str, dict]:
    clip = scene.render_clip(seed)
    return clip.video.frames, clip.audio.samples, clip.caption, clip.truth


def load_clips(split: str, n: int, cache_dir: Path = DEFAULT_CACHE, workers: int | None = None) -> ClipSet:
    """The first ``n`` clips of ``split``, rendered once and cached as a .pt file."""
    cache_dir = Path(cache_dir)
    path = cache_dir / f"{split}-{n}-v{CACHE_VERSION}.pt"
    if path.exists():
        d = torch.load(path, weights_only=True)
        return ClipSet(**d)
    seeds = scene.split_seeds(split, n)  # type: ignore[arg-type]
    workers = workers or max(1, min(len(os.sched_getaffinity(0)), 16))
    if workers > 1 and n > 32:
        with get_context("fork").Pool(workers) as pool:
            rows = pool.map(_render, seeds, chunksize=16)
    else:
        rows = [_render(s) for s in seeds]
    d = {
        "video": torch.from_numpy(np.stack([r[0] for r in rows])),
        "audio": torch.from_numpy(np.stack([r[1] for r in rows])),
        "captions": [r[2] for r in rows],
        "truths": [r[3] for r in rows],
        "seeds": list(seeds),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(d, tmp)
    tmp.replace(path)
    return ClipSet(**d)


# ---------------------------------------------------------------- captions

def caption_variants(truth: dict) -> list[str]:
    """Full caption plus shorter ones (class word only, one attribute), so that the text
    encoders also understand the short prompts the vanilla baselines use."""
    c, col, s, v = truth["class"], truth["colour"], truth["size"], VERBS[truth["class"]]
    return [
        f"a {s} {col} {c} {v}",
        f"a {s} {col} {c}",
        f"a {col} {c} {v}",
        f"a {s} {c} {v}",
        f"a {col} {c}",
        f"a {s} {c}",
        f"a {c} {v}",
        f"a {c}",
        c,
    ]


def sample_caption(truth: dict, rng: random.Random, p_full: float = 0.5) -> str:
    """The full caption with probability ``p_full``, otherwise a random shorter variant."""
    variants = caption_variants(truth)
    if rng.random() < p_full:
        return variants[0]
    return rng.choice(variants[1:])


def vocabulary() -> list[str]:
    """Every word the world's captions (and the usual short prompts) use, lower case."""
    words: list[str] = ["a", "an", "the", "of", "sound", "video", "and", "with"]
    words += list(SIZES) + list(COLOURS) + list(CLASSES)
    for v in VERBS.values():
        words += v.split()
    out: list[str] = []
    for w in words:
        if w not in out:
            out.append(w)
    return out


def build_tokenizer(kind: str, max_length: int):
    """A word-level fast tokenizer over :func:`vocabulary` that ``AutoTokenizer`` loads.

    ``kind="roberta"`` uses RoBERTa's special tokens (as CLAP's text model expects:
    <s>=0, <pad>=1, </s>=2); ``kind="clip"`` uses CLIP's (<|startoftext|>, <|endoftext|>
    also used for padding, as in CLIP).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if kind == "roberta":
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        bos, eos, pad, unk = "<s>", "</s>", "<pad>", "<unk>"
    elif kind == "clip":
        special = ["<|startoftext|>", "<|endoftext|>", "<unk>"]
        bos, eos, pad, unk = "<|startoftext|>", "<|endoftext|>", "<|endoftext|>", "<unk>"
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}")
    vocab = {t: i for i, t in enumerate(special)}
    for w in vocabulary():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", special_tokens=[(bos, vocab[bos]), (eos, vocab[eos])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk,
        model_max_length=max_length,
    )


# ---------------------------------------------------------------- log-mel

_MEL_BASIS: dict[str, torch.Tensor] = {}


def _fallback_mel(wave: torch.Tensor) -> torch.Tensor:
    """AudioLDM's log-mel (16 kHz, n_fft 1024, hop 160, 64 slaney mels, 0-8 kHz,
    magnitude, log of clamp 1e-5): (B, N) -> (B, frames, 64)."""
    key = str(wave.device)
    if key not in _MEL_BASIS:
        basis = slaney_mel_filterbank(16000, 1024, 64, 0.0, 8000.0)
        _MEL_BASIS[key] = torch.from_numpy(basis).to(wave.device)
    pad = (1024 - 160) // 2
    x = torch.nn.functional.pad(wave.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    spec = torch.stft(x, 1024, hop_length=160, win_length=1024,
                      window=torch.hann_window(1024, device=wave.device), center=False, return_complex=True)
    mag = torch.sqrt(spec.real**2 + spec.imag**2 + 1e-9)
    mel = torch.matmul(_MEL_BASIS[key], mag)
    return torch.log(torch.clamp(mel, min=1e-5)).transpose(1, 2)


def mel_spectrogram(wave: torch.Tensor) -> torch.Tensor:
    """(B, N) 16-kHz waves -> (B, frames, 64) log-mels, through the AudioLDM adapter's own
    function when it exists (so training and inference agree), else an identical fallback."""
    try:
        from avbridge.models.generators.audioldm import mel_spectrogram as adapter_mel
    except ImportError:
        return _fallback_mel(wave)
    out = adapter_mel(wave)
    if out.dim() == 4:  # (B, 1, frames, mels)
        out = out[:, 0]
    return out


def mel_frames(n_samples: int = WORLD.n_samples) -> int:
    """Number of mel frames of an ``n_samples`` wave (400 for the world's 4 s)."""
    return n_samples // 160


def save_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")
