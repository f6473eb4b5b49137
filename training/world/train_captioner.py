"""The ``captioner`` stage of ``python -m training.world.train``: a linear probe on the
shipped binder's pooled embeddings that reads each clip's class, colour and size from its
audio, its video or a still frame (:class:`avbridge.models.captioners.ProbeCaptioner`).

The vanilla baselines caption the condition and generate from the caption, and the
guided tasks use the same prompt, so a wrong caption sinks both. Zero-shot text matching
with the binder reads a still image's class poorly: the binder was trained on video. The
probe is fitted on training clips only (embeddings of the clip's audio, its video, its
I2A still and one other frame) and scored on validation clips beside the zero-shot
captioner. It is a few kB and is refitted whenever the binder changes.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from avbridge.models.binders.base import Binder
from avbridge.models.captioners import ProbeCaptioner
from avbridge.world.scene import CLASSES, COLOURS, SIZES, WORLD
from training.world.train_data import ClipSet, load_clips

ATTRIBUTES: dict[str, tuple[str, ...]] = {"class": CLASSES, "colour": COLOURS, "size": SIZES}
VAL_CLIPS = 200


@torch.no_grad()
def clip_embeddings(binder: Binder, clips: ClipSet, rng: random.Random, extra_frames: int = 1,
                    chunk: int = 64) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Normalised pooled embeddings per modality and the matching label indices.

    ``image`` holds each clip's still (the frame before its first event, I2A's condition)
    and ``extra_frames`` other random frames, so the probe does not learn one frame only.
    """
    feats: dict[str, list[torch.Tensor]] = {"audio": [], "video": [], "image": []}
    frame_ids: list[list[int]] = []
    n_frames = clips.video.shape[1]
    for t in clips.truths:
        still = (t["event_frames"][0] - 1) % n_frames  # as WorldClip.image()
        others = [k for k in range(n_frames) if k != still]
        frame_ids.append([still, *rng.sample(others, extra_frames)])
    for i in range(0, len(clips), chunk):
        sl = slice(i, i + chunk)
        video = clips.video[sl].permute(0, 1, 4, 2, 3).float() / 255.0  # (B, T, 3, H, W), as video_to_tensor
        feats["audio"].append(binder.embed_audio(clips.audio[sl], WORLD.sample_rate).pooled)
        feats["video"].append(binder.embed_video(video, float(WORLD.fps)).pooled)
        frames = torch.stack([video[j, k] for j, ids in enumerate(frame_ids[sl]) for k in ids])
        feats["image"].append(binder.embed_image(frames).pooled)
    emb = {m: F.normalize(torch.cat(v).float(), dim=-1) for m, v in feats.items()}
    idx = {a: torch.tensor([labels.index(t[a]) for t in clips.truths]) for a, labels in ATTRIBUTES.items()}
    per_image = 1 + extra_frames
    labels = {
        "audio": idx, "video": idx,
        "image": {a: v.repeat_interleave(per_image) for a, v in idx.items()},
    }
    return emb, labels


def fit_head(x: torch.Tensor, y: torch.Tensor, k: int, *, scale: float, steps: int, lr: float,
             weight_decay: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on ``scale * x`` by full-batch Adam: (weight, bias)."""
    g = torch.Generator().manual_seed(seed)
    lin = torch.nn.Linear(x.shape[1], k)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * 0.01)
        lin.bias.zero_()
    opt = torch.optim.AdamW(lin.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(lin(x * scale), y).backward()
        opt.step()
    return lin.weight.detach().clone(), lin.bias.detach().clone()


def _kept(modality: str, stills_only: int) -> slice:
    """The rows scored: for images with ``stills_only``, the first of every group of that
    many (the I2A stills, as ``clip_embeddings`` lays them out)."""
    return slice(None, None, stills_only) if modality == "image" and stills_only else slice(None)


def accuracy(
    captioner: ProbeCaptioner, emb: dict[str, torch.Tensor], labels: dict[str, dict[str, torch.Tensor]],
    stills_only: int = 0,
) -> dict[str, dict[str, float]]:
    """Per modality and attribute accuracy of ``captioner``'s heads. ``stills_only``: for
    images, score only the first frame of every group of that many (the I2A stills)."""
    out: dict[str, dict[str, float]] = {}
    for m, e in emb.items():
        keep = _kept(m, stills_only)
        scores = captioner.logits(m, e[keep])
        out[m] = {a: round(float((s.argmax(-1) == labels[m][a][keep]).float().mean()), 4)
                  for a, s in scores.items()}
    return out


@torch.no_grad()
def zero_shot_class_accuracy(
    binder: Binder, emb: dict[str, torch.Tensor], labels: dict, stills_only: int
) -> dict[str, float]:
    """Class accuracy of zero-shot matching against "a {class}" (the binder captioner)."""
    text = F.normalize(binder.embed_text([f"a {c}" for c in CLASSES]).pooled.float(), dim=-1)
    out = {}
    for m, e in emb.items():
        keep = _kept(m, stills_only)
        pred = (e[keep] @ text.T).argmax(-1)
        out[m] = round(float((pred == labels[m]["class"][keep]).float().mean()), 4)
    return out


def stage_captioner(args: argparse.Namespace) -> dict:
    """Fit the probe captioner for ``models/binder`` and save it as ``models/captioner``."""
    from avbridge.models.binders.imagebind import ImageBindBinder
    from training.world.common import _device_name, _require, _summary

    t0 = time.time()
    models: Path = args.models
    binder = ImageBindBinder.from_pretrained(_require(models / "binder", "binder"), trainable=False)
    binder.to(args.device)
    rng = random.Random(args.seed)
    train_emb, train_y = clip_embeddings(binder, load_clips("train", args.clips), rng)
    val_emb, val_y = clip_embeddings(binder, load_clips("val", VAL_CLIPS), rng)
    scale = 10.0
    heads = {
        m: {a: fit_head(train_emb[m].cpu(), train_y[m][a], len(labels), scale=scale, steps=args.steps,
                        lr=args.lr, weight_decay=1e-3, seed=args.seed)
            for a, labels in ATTRIBUTES.items()}
        for m in train_emb
    }
    cap = ProbeCaptioner(binder, heads, ATTRIBUTES, template="{class}", scale=scale)
    val_emb = {m: e.cpu() for m, e in val_emb.items()}
    info = {
        "steps": args.steps, "lr": args.lr, "seed": args.seed, "clips": args.clips,
        "wall_s": round(time.time() - t0, 1), "device": _device_name(args.device),
        "train_acc": accuracy(cap, {m: e.cpu() for m, e in train_emb.items()}, train_y, stills_only=2),
        "val_acc": accuracy(cap, val_emb, val_y, stills_only=2),
        "val_zero_shot_class_acc": zero_shot_class_accuracy(binder, val_emb, val_y, stills_only=2),
        "val_clips": f"the first {VAL_CLIPS} of the val split; image: the I2A stills only",
        "command": f"python -m training.world.train captioner --steps {args.steps} --clips {args.clips} "
        f"--lr {args.lr} --seed {args.seed}",
    }
    cap.save_pretrained(models / "captioner")
    _summary(models, "captioner", info)
    print(f"[captioner] val accuracy {info['val_acc']}; zero-shot class {info['val_zero_shot_class_acc']}",
          flush=True)
    return info
