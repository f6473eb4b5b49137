"""Helpers shared by the world's training stages (summaries, checkpoints, mel caches, losses)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from avbridge.errors import AvbridgeError
from avbridge.world.scene import WORLD
from training.world.train_data import (
    ClipSet,
    mel_spectrogram,
    save_json,
)
from training.world.train_loop import Loop

#: Default output folder; copy a finished set into ``src/avbridge/world/models`` to ship it.
MODELS_DIR = Path("runs/world-models")
WORK_ROOT = Path("runs/world-train")
MAX_TOKENS = 16

# Noise schedules of the real backends (AudioLDM; AnimateDiff / SD 1.5).
AUDIO_BETAS = {"beta_start": 0.0015, "beta_end": 0.0195, "beta_schedule": "scaled_linear"}
VIDEO_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "linear"}


# ---------------------------------------------------------------- helpers

def _summary(models: Path, stage: str, info: dict) -> None:
    """Merge a stage's summary into models/training.json (locked: stages may run in parallel)."""
    import fcntl

    models.mkdir(parents=True, exist_ok=True)
    path = models / "training.json"
    with open(models / ".training.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[stage] = info
        save_json(path, data)
    (models / ".training.lock").unlink(missing_ok=True)


def save_half(model, folder: Path) -> None:
    """Save a diffusers model with fp16 safetensors (diffusers loads them back as fp32)."""
    import copy

    copy.deepcopy(model).to(torch.float16).save_pretrained(folder, safe_serialization=True)


def _finish(args, loop: Loop, stage: str, extra: dict | None = None) -> dict:
    info = {
        "steps": loop.step_i,
        "wall_s": round(loop.elapsed, 1),
        "final_losses": {k: round(v, 5) for k, v in loop.final_losses().items()},
        "device": _device_name(args.device),
        "seed": args.seed,
        "clips": args.clips,
        "batch": args.batch,
        "lr": args.lr,
        "world": {"duration_s": WORLD.duration_s, "fps": WORLD.fps, "size": WORLD.size,
                  "sample_rate": WORLD.sample_rate},
        "command": f"python -m training.world.train {stage} --steps {args.steps} --minutes {args.minutes} "
        f"--clips {args.clips} --batch {args.batch} --lr {args.lr} --seed {args.seed}"
        + (f" --channels {args.channels}" if getattr(args, "channels", "") else "")
        + (" --wide" if getattr(args, "wide", False) else "")
        + (" --cosine" if getattr(args, "cosine", False) else "")
        + (f" --init {args.init}" if getattr(args, "init", None) else "")
        + (f" --recon-weight {args.recon_weight} --adv-weight {args.adv_weight}"
           if stage == "vocoder-gan" else "")
        + (f" --adv-steps {args.adv_steps} --adv-eps {args.adv_eps}"
           if getattr(args, "adv_steps", 0) else "")
        + (f" --adv-latent-steps {args.adv_latent_steps}" if getattr(args, "adv_latent_steps", 0) else "")
        + (f" --grad-align {args.grad_align}" if getattr(args, "grad_align", 0) else "")
        + (f" --grad-align-video {args.grad_align_video}" if getattr(args, "grad_align_video", 0) else "")
        + (f" --event-weight {args.event_weight}" if getattr(args, "event_weight", 0) else "")
        + (f" --object-weight {args.object_weight}" if getattr(args, "object_weight", 0) else "")
        + (f" --text-contrast {args.text_contrast}" if getattr(args, "text_contrast", 0) else "")
        + (f" --min-snr {args.min_snr}" if getattr(args, "min_snr", 0) else "")
        + (f" --image-share {args.image_share}" if getattr(args, "image_share", 0) else "")
        + (f" --vae-mels {args.vae_mels}" if getattr(args, "vae_mels", 0) else "")
        + (f" --loud-weight {args.loud_weight}" if getattr(args, "loud_weight", 0) else ""),
    }
    info.update(extra or {})
    _summary(args.models, stage, info)
    loop.save()
    print(f"[{stage}] done: {json.dumps(info)}", flush=True)
    return info


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _mels(clips: ClipSet, device: torch.device, chunk: int = 256) -> torch.Tensor:
    """(N, 400, 64) log-mels of every clip's audio."""
    out = []
    with torch.no_grad():
        for i in range(0, len(clips), chunk):
            out.append(mel_spectrogram(clips.audio[i:i + chunk].to(device).float()))
    return torch.cat(out)


def _require(path: Path, stage: str) -> Path:
    if not path.exists():
        raise AvbridgeError(f"{path} is missing: run `python -m training.world.train {stage}` first")
    return path


def _channels(args) -> tuple:
    """``--channels 16,32,32`` as a one-element tuple of ints (or nothing: model default)."""
    return (tuple(int(c) for c in args.channels.split(",")),) if args.channels else ()


def _compat(captions: list[str], truths: list[dict]) -> torch.Tensor:
    """(B_text, B_media) 1 where the media's truth satisfies every attribute the caption names."""
    rows = []
    for c in captions:
        words = set(c.split())
        row = []
        for t in truths:
            ok = all(t[k] in words or not (set(v) & words) for k, v in _ATTR_WORDS.items())
            row.append(1.0 if ok else 0.0)
        rows.append(row)
    return torch.tensor(rows)


def _attr_words() -> dict[str, tuple[str, ...]]:
    from avbridge.world.scene import CLASSES, COLOURS, SIZES

    return {"class": CLASSES, "colour": COLOURS, "size": SIZES}


_ATTR_WORDS = _attr_words()


def soft_info_nce(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where each row may have several positives (uniform target over them)."""
    pos = pos.to(logits.device)
    t_rows = pos / pos.sum(1, keepdim=True).clamp(min=1)
    t_cols = pos.t() / pos.t().sum(1, keepdim=True).clamp(min=1)
    a = -(t_rows * logits.log_softmax(1)).sum(1).mean()
    b = -(t_cols * logits.t().log_softmax(1)).sum(1).mean()
    return (a + b) / 2


