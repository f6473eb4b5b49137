"""Train the world's evaluation classifiers: ``python -m training.world.train_evalmodels train``.

Clips are rendered on the fly from train-split seeds (offset 500 000, so that the
classifiers see other clips than the generators and the binder), with augmentations that
mimic generated media (noise, blur, gain, single still frames). A checkpoint is written
every ``--save-every`` steps under ``--work`` and ``--resume`` continues from it. At the end
the weights go to ``--out`` (default: the package folder) as safetensors with ``card.json``
(steps, seed, final losses, validation accuracy per head).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from avbridge.errors import AvbridgeError
from avbridge.world.evalmodels import (
    HEADS,
    WEIGHTS_DIR,
    AudioClassifier,
    EvalModels,
    VideoClassifier,
    n_params,
)
from avbridge.world.scene import render_clip, split_seeds

SEED = 1234
TRAIN_OFFSET = 500_000
N_VAL = 300


def _labels(clips) -> dict[str, torch.Tensor]:
    return {h: torch.tensor([HEADS[h].index(c.truth[h]) for c in clips]) for h in HEADS}


def _augment_audio(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    b = x.shape[0]
    gain = 10 ** (torch.empty(b, 1).uniform_(-2, 2, generator=g) / 20)
    noise = torch.randn(x.shape, generator=g) * torch.empty(b, 1).uniform_(0, 0.01, generator=g)
    return (x * gain + noise).clamp(-1, 1)


def _augment_video(x: torch.Tensor, g: torch.Generator, still: float = 0.2) -> torch.Tensor:
    """x (B, T, 3, H, W) in [0, 1]; with probability ``still`` the batch becomes one frame
    per clip (the image tasks' outputs are scored as one-frame videos)."""
    b, t = x.shape[:2]
    if torch.rand(1, generator=g).item() < still:
        k = int(torch.randint(0, t, (1,), generator=g))
        x = x[:, k : k + 1]
        t = 1
    if torch.rand(1, generator=g).item() < 0.4:
        x = nn.functional.avg_pool2d(x.flatten(0, 1), 3, 1, 1, count_include_pad=False).unflatten(0, (b, t))
    x = x + torch.empty(b, 1, 1, 1, 1).uniform_(-0.05, 0.05, generator=g)
    x = x + torch.randn(x.shape, generator=g) * torch.empty(b, 1, 1, 1, 1).uniform_(0, 0.04, generator=g)
    return x.clamp(0, 1)


def _batch(seeds: list[int]):
    clips = [render_clip(s) for s in seeds]
    audio = torch.from_numpy(np.stack([c.audio.samples for c in clips]))
    video = torch.from_numpy(np.stack([c.video.frames for c in clips])).float().div(255)
    video = video.permute(0, 1, 4, 2, 3)
    return audio, video, _labels(clips)


def _loss(out: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(nn.functional.cross_entropy(out[h], y[h]) for h in HEADS)


@torch.no_grad()
def validate(models: EvalModels, n: int = N_VAL) -> dict[str, dict[str, float]]:
    """Accuracy per head of both classifiers (and of the video one on still images) on val clips."""
    clips = [render_clip(s) for s in split_seeds("val", n)]
    pa = models.predict_audio([c.audio for c in clips])
    pv = models.predict_video([c.video for c in clips])
    pi = models.predict_video([c.image() for c in clips])
    out: dict[str, dict[str, float]] = {}
    for name, p in (("audio", pa), ("video", pv), ("image", pi)):
        out[name] = {h: float(np.mean([a == c.truth[h] for a, c in zip(p.labels(h), clips, strict=True)]))
                     for h in HEADS}
    return out


def _lr(step: int, total: int, peak: float) -> float:
    warm = max(1, total // 10)
    if step < warm:
        return peak * (step + 1) / warm
    return peak * 0.5 * (1 + np.cos(np.pi * min(1.0, (step - warm) / max(1, total - warm))))


def train(args: argparse.Namespace) -> int:
    from safetensors.torch import save_file

    torch.manual_seed(SEED)
    torch.set_num_threads(max(1, min(args.threads, torch.get_num_threads())))
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "evalmodels.pt"
    audio, video = AudioClassifier(), VideoClassifier()
    params = list(audio.parameters()) + list(video.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(SEED)
    step, history = 0, []
    if args.resume and ckpt.is_file():
        st = torch.load(ckpt, weights_only=True)
        audio.load_state_dict(st["audio"])
        video.load_state_dict(st["video"])
        opt.load_state_dict(st["opt"])
        g.set_state(st["gen"])
        step, history = st["step"], st["history"]
        print(f"resumed at step {step}")
    audio.train()
    video.train()
    t0 = time.time()
    while step < args.steps:
        seeds = split_seeds("train", args.batch, start=TRAIN_OFFSET + step * args.batch)
        a, v, y = _batch(seeds)
        la = _loss(audio(_augment_audio(a, g)), y)
        lv = _loss(video(_augment_video(v, g, args.still)), y)
        for group in opt.param_groups:  # warm-up then cosine; --steps may grow on resume
            group["lr"] = _lr(step, args.steps, args.lr)
        opt.zero_grad()
        (la + lv).backward()
        opt.step()
        step += 1
        history.append((float(la.detach()), float(lv.detach())))
        if step % 10 == 0 or step == args.steps:
            ra, rv = np.mean(history[-10:], axis=0)
            print(f"step {step}/{args.steps} audio loss {ra:.3f} video loss {rv:.3f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
        if step % args.save_every == 0 or step == args.steps:
            torch.save({"audio": audio.state_dict(), "video": video.state_dict(), "opt": opt.state_dict(),
                        "gen": g.get_state(), "step": step, "history": history},
                       ckpt)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in audio.state_dict().items()}, str(out / "audio.safetensors"))
    save_file({k: v.contiguous() for k, v in video.state_dict().items()}, str(out / "video.safetensors"))
    acc = validate(EvalModels.load(out))
    final = np.mean(history[-20:], axis=0)
    card = {
        "what": "evaluation classifiers of the embedded world (never used for guidance)",
        "architectures": {"audio": f"2D CNN on log-mel, {n_params(audio)} parameters",
                          "video": f"per-frame 2D CNN + temporal conv, {n_params(video)} parameters"},
        "data": f"train-split seeds from {TRAIN_OFFSET}, rendered on the fly, batch {args.batch}",
        "seed": SEED,
        "steps": step,
        "lr": args.lr,
        "final_loss": {"audio": round(float(final[0]), 4), "video": round(float(final[1]), 4)},
        "val_accuracy": acc,
        "val_clips": N_VAL,
        "still": args.still,
        "command": f"python -m training.world.train_evalmodels train --steps {args.steps} "
                   f"--batch {args.batch} "
                   f"--still {args.still}",
    }
    for f in ("audio.safetensors", "video.safetensors"):
        (out / f).chmod(0o644)
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n")
    print(json.dumps(card["val_accuracy"], indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.world.train_evalmodels",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train (or resume) both classifiers")
    t.add_argument("--steps", type=int, default=400)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--still", type=float, default=0.2,
                   help="share of video batches cut to one still frame per clip (images are scored as "
                        "one-frame videos)")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--save-every", type=int, default=25)
    t.add_argument("--work", default="runs/evalmodels", help="checkpoint folder")
    t.add_argument("--out", default="runs/evalmodels-out", help="where the safetensors go (copy them to "
                   f"{WEIGHTS_DIR} to ship them)")
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint in --work")
    v = sub.add_parser("validate", help="accuracy of the shipped classifiers on validation clips")
    v.add_argument("--n", type=int, default=N_VAL)
    args = p.parse_args(argv)
    try:
        if args.cmd == "train":
            return train(args)
        print(json.dumps(validate(EvalModels.load(), args.n), indent=1))
        return 0
    except AvbridgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
