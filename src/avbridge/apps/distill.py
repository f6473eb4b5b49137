"""``avbridge distill-decoder``: distil a generator's VAE decoder into a guidance decoder.

No dataset is needed: the generator samples from prompts (vanilla DDIM with CFG), and
every predicted clean latent ``x0`` along each trajectory, the latents the guidance branch
decodes, is a training input; its target is what the model's own VAE decodes from it and
the binder reads: the log-mel of an AudioLDM (student:
:class:`~avbridge.models.guidance_decoders.AudioGuidanceDecoder`), the frames of an
AnimateDiff or its image mode (student: diffusers' ``AutoencoderTiny``, the TAESD
architecture, for a model whose latents TAESD itself does not read), with an L1 loss.
``--out`` receives ``checkpoint.pt`` every
``--save-every`` iterations (a rerun with the same ``--out`` resumes from it) and, at the
end, the decoder folder (``config.json`` + weights, loadable with ``--guidance-decoder``)
and ``distill.json`` (settings, held-out L1 against the VAE, wall time).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from avbridge.errors import AvbridgeError

CHECKPOINT = "checkpoint.pt"


Decode = Callable[[torch.Tensor], torch.Tensor]


def teacher_decode(generator: Any, spec: Any) -> Decode:
    """The VAE's decode of latents into what the binder reads: log-mel (B, 1, T, bins) for
    audio, frames in [0, 1] for video (B, F, 3, H, W) and images (B, 3, H, W)."""
    if generator.modality == "audio":
        return lambda x: generator.decode_mel(x).float()
    return lambda x: generator.decode(x, spec).float()


def student_decode(student: torch.nn.Module, generator: Any, spec: Any) -> Decode:
    """A guidance decoder's decode, in the layout of :func:`teacher_decode`."""
    if generator.modality == "audio":
        return lambda x: student(x)
    from avbridge.models.guidance_decoders import decode_frames

    return lambda x: decode_frames(student, generator, x, spec)


@torch.no_grad()
def trajectory_x0(generator: Any, prompts: list[str], spec: Any, steps: int, cfg: float,
                  seed: int) -> torch.Tensor:
    """The x0 predictions along a vanilla trajectory per prompt (and the final latents): the
    latents a guidance branch decodes."""
    g = torch.Generator().manual_seed(seed)
    cond = generator.encode_prompt(prompts, [""] * len(prompts))
    z = generator.init_latents(spec, len(prompts), g)
    xs = []
    for t in generator.timesteps(steps):
        eps = generator.predict_eps(z, t, cond, cfg)
        xs.append(generator.predict_x0(z, eps, t))
        z = generator.step(z, eps, t)
    xs.append(z)
    return torch.cat(xs)


@torch.no_grad()
def sample_pairs(generator: Any, prompts: list[str], spec: Any, steps: int, cfg: float,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0 predictions along a vanilla trajectory per prompt, the VAE's decode of each)."""
    x = trajectory_x0(generator, prompts, spec, steps, cfg, seed)
    return x.float(), teacher_decode(generator, spec)(x)


def _vjp_gap(teacher: Decode, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Mean L1 gap between the student's VJP (``pred`` computed from ``x``) and the VAE's
    (``teacher``) for one random cotangent, relative to the VAE's mean absolute VJP
    (differentiable in the student)."""
    v = torch.randn_like(pred)
    with torch.enable_grad():
        xt = x.detach().requires_grad_(True)
        (g_teacher,) = torch.autograd.grad(teacher(xt), xt, v)
    (g_student,) = torch.autograd.grad(pred, x, v, create_graph=True)
    return (g_student - g_teacher).abs().mean() / g_teacher.abs().mean().clamp_min(1e-8)


def save_checkpoint(path: Path, model: Any, opt: torch.optim.Optimizer, it: int) -> None:
    """Write ``checkpoint.pt`` (config, weights, optimiser, iteration) atomically."""
    tmp = path.with_suffix(".tmp")
    state = {"config": dict(model.config), "model": model.state_dict(), "opt": opt.state_dict(), "iter": it}
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, cls: Callable[[dict[str, Any]], Any]) -> tuple[Any, dict[str, Any]]:
    """(student rebuilt by ``cls(config)`` with its weights, the checkpoint); a broken file is a
    one-line error naming it."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(ckpt["config"])
        model.load_state_dict(ckpt["model"])
    except Exception as e:  # noqa: BLE001 - a broken checkpoint is a one-line error
        raise AvbridgeError(f"{path}: unreadable checkpoint ({' '.join(str(e).split())})") from e
    return model, ckpt


def train_loop(
    student: Any, opt: torch.optim.Optimizer, ckpt_path: Path, *, start: int, iters: int, batch: int,
    rng: random.Random, new_pairs: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], refresh_every: int, save_every: int,
    max_minutes: float | None, t0: float, desc: str, progress: bool,
) -> tuple[int, float]:
    """The distil commands' loop from iteration ``start``: every ``refresh_every`` iterations
    ``new_pairs(it)`` (inputs, targets on the CPU) joins a pool of the latest 64; each
    iteration fits ``loss_fn`` on ``batch`` rows drawn from it; ``checkpoint.pt`` every
    ``save_every`` iterations and when ``max_minutes`` after ``t0`` have passed (then it
    stops). Returns (iterations done, last loss)."""
    pool: list[tuple[torch.Tensor, torch.Tensor]] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=iters, initial=start, desc=desc, unit="it", file=sys.stderr)
    it, loss_v = start, float("nan")
    while it < iters:
        if not pool or (it - start) % refresh_every == 0:
            pool.append(new_pairs(it))
            pool = pool[-64:]
        xs = torch.cat([p[0] for p in pool])
        ys = torch.cat([p[1] for p in pool])
        idx = torch.tensor(rng.sample(range(xs.shape[0]), min(batch, xs.shape[0])))
        loss = loss_fn(xs[idx], ys[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        loss_v = float(loss.detach())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss_v:.4f}", refresh=False)
        if it % save_every == 0 or it == iters:
            save_checkpoint(ckpt_path, student, opt, it)
        if max_minutes is not None and time.perf_counter() - t0 > 60 * max_minutes:
            save_checkpoint(ckpt_path, student, opt, it)
            break
    if bar is not None:
        bar.close()
    return it, loss_v


def prompts_from_args(args: argparse.Namespace) -> list[str]:
    """``--prompts`` split on commas, or the preset's labels."""
    prompts = [p.strip() for p in args.prompts.split(",") if p.strip()] if args.prompts else \
        _default_prompts(args.preset)
    if not prompts:
        raise AvbridgeError("--prompts: no prompt given")
    return prompts


def add_training_options(p: argparse.ArgumentParser, *, iters: int, batch: int, batch_help: str,
                         lr: float) -> None:
    """The options ``distill-decoder`` and ``distill-encoder`` share: sampling, schedule, run."""
    p.add_argument("--iters", type=int, default=iters, help=f"training iterations in total (default {iters})")
    p.add_argument("--batch", type=int, default=batch, help=batch_help)
    p.add_argument("--lr", type=float, default=lr, help="Adam learning rate")
    p.add_argument("--sample-steps", type=int, default=10, help="DDIM steps of each sampled trajectory")
    p.add_argument("--cfg", type=float, default=2.5, help="CFG scale of the sampled trajectories")
    p.add_argument("--duration", type=float, default=None, help="seconds per sample (model default)")
    p.add_argument("--prompts", default=None, help="comma-separated prompts (default: the preset's labels)")
    p.add_argument("--save-every", type=int, default=100, help="checkpoint every N iterations")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (resumably) after this wall time")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _default_prompts(preset: str) -> list[str]:
    if preset == "world":
        from avbridge.world.scene import CLASSES, COLOURS, SIZES, caption_for

        return [caption_for(c, k, s) for c in CLASSES for k in COLOURS for s in SIZES] + list(CLASSES)
    from avbridge.models.captioners import DEFAULT_LABELS

    return list(DEFAULT_LABELS)


def distill(
    generator: Any,
    out: str | Path,
    *,
    prompts: list[str],
    iters: int = 2000,
    batch: int = 8,
    lr: float = 1e-3,
    sample_steps: int = 10,
    cfg: float = 2.5,
    duration_s: float | None = None,
    refresh_every: int = 25,
    save_every: int = 100,
    max_minutes: float | None = None,
    seed: int = 0,
    channels: tuple[int, ...] | None = None,
    grad_weight: float = 0.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) a guidance decoder for ``generator`` into ``out``; returns the summary
    written to ``out/distill.json``. Every ``refresh_every`` iterations one new trajectory of
    ``sample_steps`` steps per batch of prompts joins a pool (the latest 64 batches).
    ``channels``: the student's widths per scale (audio) or its one width (video, images).

    ``grad_weight`` > 0 adds a gradient-matching term: for a random cotangent ``v`` on the
    decoded output, the L1 distance between the student's and the VAE's vector-Jacobian
    products ``v^T d out/dz`` (scaled by ``grad_weight``). Guidance reads the decoder through
    exactly that product, so this fits what guidance uses, at the cost of one VAE backward
    per iteration."""
    from avbridge.models import guidance_decoders as gd

    if generator.modality not in ("audio", "video", "image"):
        raise AvbridgeError(f"distill-decoder: cannot distil a {generator.modality!r} generator")
    if iters < 1 or batch < 1 or sample_steps < 1:
        raise AvbridgeError("--iters, --batch and --sample-steps must be at least 1")
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    spec = generator.default_spec(duration_s)
    ckpt_path = outdir / CHECKPOINT
    ckpt: dict[str, Any] | None = None
    if ckpt_path.is_file():
        cls = gd.AudioGuidanceDecoder if generator.modality == "audio" else gd.AutoencoderTiny
        student, ckpt = load_checkpoint(ckpt_path, cls.from_config)
        start = int(ckpt["iter"])
    else:
        start = 0
        if generator.modality == "audio":
            student = gd.audio_decoder_for(generator, channels=channels, seed=seed)
        else:
            student = gd.visual_decoder_for(generator, width=channels[0] if channels else 32, seed=seed)
    student = student.to(generator.device).float().train()
    teacher, apply = teacher_decode(generator, spec), student_decode(student, generator, spec)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    if ckpt is not None:
        opt.load_state_dict(ckpt["opt"])
    rng = random.Random(seed + start)
    # Held-out pairs (fixed seed, never trained on) for the reported error.
    held_x, held_y = sample_pairs(generator, prompts[: min(len(prompts), 4)], spec, sample_steps, cfg,
                                  seed=10**6 + seed)
    t0 = time.perf_counter()

    def new_pairs(it: int) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = [rng.choice(prompts) for _ in range(max(1, batch // 2))]
        x, y = sample_pairs(generator, chosen, spec, sample_steps, cfg, seed=seed * 100003 + it)
        return x.cpu(), y.cpu()

    def loss_fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        xb = x.to(generator.device)
        if grad_weight > 0:
            xb.requires_grad_(True)
        pred = apply(xb)
        loss = (pred - y.to(pred.device)).abs().mean()
        if grad_weight > 0:
            loss = loss + grad_weight * _vjp_gap(teacher, xb, pred)
        return loss

    it, loss_v = train_loop(student, opt, ckpt_path, start=start, iters=iters, batch=batch, rng=rng,
                            new_pairs=new_pairs, loss_fn=loss_fn, refresh_every=refresh_every,
                            save_every=save_every, max_minutes=max_minutes, t0=t0, desc="distill-decoder",
                            progress=progress)
    student.eval()
    with torch.no_grad():
        held_l1 = float((apply(held_x) - held_y).abs().mean())
        scale = float((held_y - held_y.mean()).abs().mean())
    torch.manual_seed(seed)
    hx = held_x.clone().requires_grad_(True)
    held_vjp = float(_vjp_gap(teacher, hx, apply(hx)).detach())
    student.save_pretrained(str(outdir))
    summary = {
        "modality": generator.modality, "iters_done": it, "iters": iters, "resumed_from": start,
        "batch": batch, "lr": lr, "sample_steps": sample_steps,
        "cfg": cfg, "duration_s": spec.duration_s, "prompts": len(prompts), "seed": seed,
        "grad_weight": grad_weight, "train_loss_last": round(loss_v, 4),
        "heldout_l1": round(held_l1, 4), "heldout_mean_abs_dev": round(scale, 4),
        "heldout_vjp_gap": round(held_vjp, 4),
        "params": sum(p.numel() for p in student.parameters()),
        "wall_s_this_run": round(time.perf_counter() - t0, 1), "complete": it >= iters,
    }
    (outdir / "distill.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _run(args: argparse.Namespace) -> int:
    from avbridge import loading as registry
    from avbridge.apps.cli import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    channels = tuple(int(c) for c in args.channels.split(",")) if args.channels else None
    if channels and args.modality != "audio" and len(channels) != 1:
        raise AvbridgeError(f"--channels: one width for --modality {args.modality}, got {args.channels!r}")
    device = resolve_device(args.device)
    registry.quiet_libraries()
    if args.modality == "audio":
        gen = registry.load_audio(args.audio_model, args.preset, device=device, dtype=torch.float32,
                                  seed=args.seed)
    else:
        gen = registry.load_video(args.video_model, args.preset, device=device, dtype=torch.float32,
                                  seed=args.seed, modality=args.modality)
    prompts = prompts_from_args(args)
    s = distill(gen, args.out, prompts=prompts, iters=args.iters, batch=args.batch, lr=args.lr,
                sample_steps=args.sample_steps, cfg=args.cfg, duration_s=args.duration,
                save_every=args.save_every, max_minutes=args.max_minutes, seed=args.seed, channels=channels,
                grad_weight=args.grad_weight, progress=not args.quiet)
    state = "done" if s["complete"] else "stopped early (rerun to resume)"
    what = "log-mel" if args.modality == "audio" else "frame"
    print(f"distill-decoder: {state} at {s['iters_done']}/{s['iters']} iterations; held-out {what} L1 "
          f"{s['heldout_l1']:.4f} (target spread {s['heldout_mean_abs_dev']:.4f}), relative VJP gap "
          f"{s['heldout_vjp_gap']:.3f}; wrote {args.out}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``distill-decoder`` to the CLI."""
    p = subparsers.add_parser(
        "distill-decoder",
        help="distil a generator's VAE decoder into a small guidance decoder (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (resumes from its checkpoint.pt)")
    p.add_argument("--modality", default="audio", choices=("audio", "video", "image"),
                   help="whose VAE: the audio model's (AudioLDM), the video model's (AnimateDiff) or its "
                   "image mode's (default audio)")
    p.add_argument("--preset", default="world", choices=("world", "paper", "tiny-random"),
                   help="where the model comes from unless --audio-model / --video-model is given")
    p.add_argument("--audio-model", default=None, metavar="DIR|ID", help="AudioLDM folder or hub id")
    p.add_argument("--video-model", default=None, metavar="DIR|ID",
                   help="AnimateDiff (or SD 1.5-style) folder or hub id, for --modality video/image")
    add_training_options(p, iters=2000, batch=8, batch_help="latents per iteration", lr=1e-3)
    p.add_argument("--channels", default=None,
                   help="decoder widths per scale for audio, e.g. 96,48,24; one width for video/images "
                   "(default 32)")
    p.add_argument("--grad-weight", type=float, default=0.0,
                   help="weight of the gradient-matching term (0: log-mel L1 only); see docs/method.md")
    p.set_defaults(func=_run)
    return p
