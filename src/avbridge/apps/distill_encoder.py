"""``avbridge distill-encoder``: distil the binder's audio tower into an audio guidance encoder.

The student (:class:`~avbridge.models.binders.guidance_encoder.AudioGuidanceEncoder`)
starts as the tower's first ``--blocks`` blocks, stem and head, reading only the patches
that cover each clip's real frames. No dataset is needed: the audio generator samples
from prompts (vanilla DDIM with CFG); every predicted clean latent ``x0`` along each
trajectory is decoded by its VAE to the log-mel the guidance branch embeds, and the binder
turns it into its per-clip input. The loss is ``1 - cos`` between the student's and the
tower's clip embeddings, plus ``--grad-weight`` times the relative L1 gap between their
input gradients for a random direction in the embedding space (guidance reads the
encoder only through that gradient). ``--out`` receives ``checkpoint.pt`` every
``--save-every`` iterations (a rerun with the same ``--out`` resumes from it) and, at the
end, the encoder folder (loadable with ``--guidance-encoder``) and ``distill.json``
(settings, held-out cosine and gradient gap, wall time).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from avbridge.apps.distill import (
    CHECKPOINT,
    add_training_options,
    load_checkpoint,
    prompts_from_args,
    train_loop,
    trajectory_x0,
)
from avbridge.errors import AvbridgeError


@torch.no_grad()
def sample_inputs(generator: Any, binder: Any, prompts: list[str], spec: Any, steps: int, cfg: float,
                  seed: int) -> torch.Tensor:
    """Binder audio inputs (N, 1, bins, T), one row per clip, of the VAE's log-mels of the x0
    predictions along one vanilla trajectory per prompt."""
    x0 = trajectory_x0(generator, prompts, spec, steps, cfg, seed)
    x = binder.audio_input_from_features(generator.decode_features(x0, spec))
    return x.flatten(0, 1).float()


def _double_backward_attention() -> Any:
    """The gradient-matching term differentiates an input gradient, which the fused
    attention kernels cannot do twice: use the math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(SDPBackend.MATH)


def _teacher(binder: Any) -> Any:
    return lambda x: binder.model.embed("audio", x.to(binder.dtype)).float()


def _losses(student: Any, teacher: Any, x: torch.Tensor, target: torch.Tensor,
            grad_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean ``1 - cos`` to the tower's embeddings ``target``, relative input-gradient gap for
    one random embedding direction; 0 when ``grad_weight`` is 0). Both differentiable in the student."""
    length = int(student.config.target_length)
    if grad_weight <= 0:
        e = F.normalize(student(x), dim=-1)
        return (1 - (e * target).sum(-1)).mean(), torch.zeros(())
    xs = x.detach().requires_grad_(True)
    e = F.normalize(student(xs), dim=-1)
    v = F.normalize(torch.randn_like(e), dim=-1)
    with torch.enable_grad():
        xt = x.detach().requires_grad_(True)
        (g_t,) = torch.autograd.grad((F.normalize(teacher(xt), dim=-1) * v).sum(), xt)
    (g_s,) = torch.autograd.grad((e * v).sum(), xs, create_graph=True)
    g_t, g_s = g_t[..., :length], g_s[..., :length]
    gap = (g_s - g_t).abs().mean() / g_t.abs().mean().clamp_min(1e-12)
    return (1 - (e * target).sum(-1)).mean(), gap


def distill_encoder(
    generator: Any,
    binder: Any,
    out: str | Path,
    *,
    prompts: list[str],
    blocks: int = 3,
    iters: int = 1000,
    batch: int = 32,
    lr: float = 1e-4,
    sample_steps: int = 10,
    cfg: float = 2.5,
    duration_s: float | None = None,
    refresh_every: int = 25,
    save_every: int = 100,
    max_minutes: float | None = None,
    seed: int = 0,
    grad_weight: float = 1.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume) an audio guidance encoder of ``binder`` into ``out``; returns the
    summary written to ``out/distill.json``. ``batch`` counts clips. Every ``refresh_every``
    iterations one new trajectory of ``sample_steps`` steps joins a pool (the latest 64)."""
    from avbridge.models.binders.guidance_encoder import AudioGuidanceEncoder, encoder_from_binder

    if generator.modality != "audio":
        raise AvbridgeError(f"distill-encoder: needs the audio generator, got a {generator.modality!r} one")
    if not callable(getattr(binder, "audio_input_from_features", None)):
        raise AvbridgeError("distill-encoder: the binder cannot read log-mel features (ImageBind only)")
    if iters < 1 or batch < 1 or sample_steps < 1:
        raise AvbridgeError("--iters, --batch and --sample-steps must be at least 1")
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    spec = generator.default_spec(duration_s)
    ckpt_path = outdir / CHECKPOINT
    ckpt: dict[str, Any] | None = None
    if ckpt_path.is_file():
        student, ckpt = load_checkpoint(ckpt_path, AudioGuidanceEncoder.from_config)
        start = int(ckpt["iter"])
    else:
        start = 0
        student = encoder_from_binder(binder, blocks)
    student = student.to(binder.device).float().train()
    teacher = _teacher(binder)
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    if ckpt is not None:
        opt.load_state_dict(ckpt["opt"])
    rng = random.Random(seed + start)
    held_x = sample_inputs(generator, binder, prompts[: min(len(prompts), 4)], spec, sample_steps, cfg,
                           seed=10**6 + seed)
    with torch.no_grad():
        held_t = F.normalize(teacher(held_x), dim=-1)
    t0 = time.perf_counter()

    def new_pairs(it: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = sample_inputs(generator, binder, [rng.choice(prompts)], spec, sample_steps, cfg,
                          seed=seed * 100003 + it)
        with torch.no_grad():
            return x.cpu(), F.normalize(teacher(x), dim=-1).cpu()

    def loss_fn(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with _double_backward_attention():
            cos_loss, gap = _losses(student, teacher, x.to(binder.device), target.to(binder.device),
                                    grad_weight)
        return cos_loss + grad_weight * gap

    it, loss_v = train_loop(student, opt, ckpt_path, start=start, iters=iters, batch=batch, rng=rng,
                            new_pairs=new_pairs, loss_fn=loss_fn, refresh_every=refresh_every,
                            save_every=save_every, max_minutes=max_minutes, t0=t0, desc="distill-encoder",
                            progress=progress)
    student.eval()
    torch.manual_seed(seed)
    with _double_backward_attention():
        held_cos, held_gap = _losses(student, teacher, held_x, held_t, 1.0)
    student.save_pretrained(str(outdir))
    summary = {
        "iters_done": it, "iters": iters, "resumed_from": start, "blocks": int(student.config.num_blocks),
        "target_length": int(student.config.target_length), "batch": batch, "lr": lr,
        "sample_steps": sample_steps, "cfg": cfg, "duration_s": spec.duration_s, "prompts": len(prompts),
        "seed": seed, "grad_weight": grad_weight, "train_loss_last": round(loss_v, 5),
        "heldout_cosine": round(1 - float(held_cos.detach()), 5),
        "heldout_grad_gap": round(float(held_gap.detach()), 4),
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
    device = resolve_device(args.device)
    registry.quiet_libraries()
    kw = dict(device=device, dtype=torch.float32, seed=args.seed)
    gen = registry.load_audio(args.audio_model, args.preset, **kw)
    binder = registry.load_binder(args.binder, args.preset, **kw)
    binder.requires_grad_(False)
    prompts = prompts_from_args(args)
    try:
        s = distill_encoder(gen, binder, args.out, prompts=prompts, blocks=args.blocks, iters=args.iters,
                            batch=args.batch, lr=args.lr, sample_steps=args.sample_steps, cfg=args.cfg,
                            duration_s=args.duration, save_every=args.save_every,
                            max_minutes=args.max_minutes, seed=args.seed, grad_weight=args.grad_weight,
                            progress=not args.quiet)
    except ValueError as e:
        raise AvbridgeError(f"distill-encoder: {e}") from e
    state = "done" if s["complete"] else "stopped early (rerun to resume)"
    print(f"distill-encoder: {state} at {s['iters_done']}/{s['iters']} iterations; {s['blocks']} blocks, "
          f"held-out cosine to the binder {s['heldout_cosine']:.4f}, relative gradient gap "
          f"{s['heldout_grad_gap']:.3f}; wrote {args.out}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``distill-encoder`` to the CLI."""
    p = subparsers.add_parser(
        "distill-encoder",
        help="distil the binder's audio tower into a shallow audio guidance encoder (resumable)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (resumes from its checkpoint.pt)")
    p.add_argument("--preset", default="world", choices=("world", "paper", "tiny-random"),
                   help="where the models come from unless --audio-model / --binder is given")
    p.add_argument("--audio-model", default=None, metavar="DIR|ID", help="AudioLDM folder or hub id")
    p.add_argument("--binder", default=None, metavar="FILE|DIR",
                   help="ImageBind checkpoint (imagebind_huge.pth) or avbridge folder")
    p.add_argument("--blocks", type=int, default=3,
                   help="transformer blocks the encoder keeps from the tower (default 3; ImageBind-huge "
                   "has 12)")
    add_training_options(p, iters=1000, batch=32, batch_help="binder clips per iteration", lr=1e-4)
    p.add_argument("--grad-weight", type=float, default=1.0,
                   help="weight of the gradient-matching term (0: embeddings only)")
    p.set_defaults(func=_run)
    return p
