"""Time whole runs at real sizes: V2A and A2V, vanilla, guided with the VAE, guided with a
guidance decoder; their ratios and peak memory, all in one run.

What ``avbridge v2a`` / ``avbridge a2v`` do after loading the models, with the paper's
models at full size and random weights (no download): AudioLDM-m-full, AnimateDiff
(SD 1.5 + motion module v1-5-2), ImageBind-huge with the paper's 1-s clips, the binder's
zero-shot captioner (the CLI's default without ``--prompt``), and random-weight guidance
decoders of the shipped architectures (TAESD's ``AutoencoderTiny``, the default
``AudioGuidanceDecoder``) and, for V2A, an audio guidance encoder (``--encoder-blocks`` of
the tower's 12 blocks, what ``avbridge distill-encoder`` trains). Each run is the task
function end to end (condition embedding, captioning, sampling, final VAE decode and
score); model loading and file writing are not timed. Paper settings
(``avbridge.tasks.paper_config``); ``--steps`` shortens every run alike.

    python benchmarks/bench_run.py --tasks v2a --steps 5 --threads 2
    python benchmarks/bench_run.py --tasks v2a --threads 2 --skip-vae --extra   # + bf16 guidance branch
    python benchmarks/bench_run.py --tasks a2v --size 256 --steps 5 --threads 2
    python benchmarks/bench_run.py --device cuda --dtype fp16 --json run_fp16.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build_components(tasks: list[str], device: torch.device, dtype: torch.dtype, size: int,
                     encoder_blocks: int = 3):
    """Full-size random-weight Components for ``tasks``, each generator with a guidance decoder,
    the binder with an audio guidance encoder of ``encoder_blocks`` blocks (0: none)."""
    from avbridge.models import guidance_decoders as gd
    from avbridge.models.binders import guidance_encoder as ge
    from avbridge.models.binders.imagebind import ImageBindBinder
    from avbridge.models.captioners import DEFAULT_LABELS, load_captioner
    from avbridge.models.components import Components
    from avbridge.presets import PAPER_BINDER_CLIPS

    binder = ImageBindBinder.from_preset("huge", clips=PAPER_BINDER_CLIPS).to(device=device, dtype=dtype)
    binder.requires_grad_(False)
    if encoder_blocks > 0:
        ge.attach(binder, ge.encoder_from_binder(binder, encoder_blocks))
    audio = video = None
    if "v2a" in tasks:
        from avbridge.models.generators.audioldm import AudioLDMGenerator

        audio = AudioLDMGenerator.build("m-full", device="cpu").to(device=device, dtype=dtype)
        gd.attach(audio, gd.audio_decoder_for(audio))
    if "a2v" in tasks:
        from avbridge.models.generators.animatediff import AnimateDiffGenerator

        video = AnimateDiffGenerator.build("sd15-v152", device="cpu").to(device=device, dtype=dtype)
        video.default_height = video.default_width = size
        gd.attach(video, gd.AutoencoderTiny(latent_channels=video.latent_channels))
    cap = load_captioner("binder", binder=binder, labels=tuple(DEFAULT_LABELS))
    return Components(binder=binder, audio=audio, video=video, audio_captioner=cap, visual_captioner=cap)


def condition(task: str, duration_s: float, seed: int = 0):
    """A noise condition of the CLI's input kind: video (8 fps, 256x256) for V2A, audio for A2V."""
    from avbridge.io.media import Audio, Video

    rng = np.random.default_rng(seed)
    if task == "v2a":
        frames = rng.integers(0, 256, size=(round(8 * duration_s), 256, 256, 3), dtype=np.uint8)
        return Video(frames=frames, fps=8.0)
    return Audio(samples=(0.1 * rng.standard_normal(round(16000 * duration_s))).astype(np.float32),
                 sample_rate=16000)


def bench_task(task: str, components, device: torch.device, steps: int | None, duration_s: float,
               prompt: str | None, vae: bool = True, extra: bool = False) -> dict[str, float]:
    """Vanilla, guided and guided-with-guidance-decoder runs of one task, timed end to end;
    ``vae=False`` leaves out the guided run with the VAE, ``extra`` adds the guidance branch
    in bf16 (``guided_gd_bf16``, and ``guided_gd_enc_bf16`` where the encoder runs). V2A with
    a binder that carries an audio guidance encoder adds ``guided_gd_enc``."""
    from avbridge import tasks

    base = tasks.paper_config(task)
    if steps is not None:
        base = dataclasses.replace(base, steps=steps)
    cond = condition(task, duration_s)
    fn = getattr(tasks, task)
    variants = {"vanilla": (False, base)}
    if vae:
        variants["guided"] = (True, base)
    variants["guided_gd"] = (True, dataclasses.replace(base, guidance_decoder=True))
    encoder = task == "v2a" and getattr(components.binder, "guidance_encoder", None) is not None
    if encoder:
        variants["guided_gd_enc"] = (True, dataclasses.replace(base, guidance_decoder=True,
                                                               guidance_encoder=True))
    if extra:
        variants["guided_gd_bf16"] = (True, dataclasses.replace(base, guidance_decoder=True,
                                                                guidance_dtype="bfloat16"))
        if encoder:
            variants["guided_gd_enc_bf16"] = (True, dataclasses.replace(
                base, guidance_decoder=True, guidance_encoder=True, guidance_dtype="bfloat16"))
    out: dict[str, float] = {}
    # Untimed warm-up (one guided step of the first guided variant, one-time initialisation)
    # so that no variant pays it.
    first = next(cfg for guided, cfg in variants.values() if guided)
    fn(cond, components, prompt=prompt, guided=True, seed=0,
       config=dataclasses.replace(first, steps=1, window=(0.0, 1.0)))
    for name, (guided, cfg) in variants.items():
        gc.collect()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = fn(cond, components, prompt=prompt, guided=guided, seed=0, config=cfg)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[f"{name}_s"] = time.perf_counter() - t0
        out[f"{name}_peak_mb"] = _peak_mb(device)
        steps_s = sum(res.trace.step_seconds) if res.trace.step_seconds else float("nan")
        out[f"{name}_steps_s"] = steps_s
        print(f"[{task}] {name} {out[f'{name}_s']:.1f}s (steps {steps_s:.1f}s) peak "
              f"{out[f'{name}_peak_mb']:.0f} MiB prompt {res.prompt!r}", flush=True)
    for name in variants:
        if name != "vanilla":
            out[f"ratio{name[len('guided'):]}"] = out[f"{name}_s"] / out["vanilla_s"]
    out["steps"] = base.steps
    return out


def main() -> None:
    from bench_step import format_table

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="v2a,a2v")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the paper's)")
    ap.add_argument("--size", type=int, default=512, help="A2V frame size (AnimateDiff's default 512)")
    ap.add_argument("--v2a-seconds", type=float, default=8.0, help="V2A clip length")
    ap.add_argument("--a2v-seconds", type=float, default=2.0, help="A2V clip length (16 frames at 8 fps)")
    ap.add_argument("--prompt", default=None, help="skip the captioner with this prompt")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--skip-vae", action="store_true", help="leave out the guided runs with the VAE")
    ap.add_argument("--extra", action="store_true",
                    help="also the guidance decoder with the guidance branch in bf16")
    ap.add_argument("--encoder-blocks", type=int, default=3,
                    help="blocks of the audio guidance encoder for V2A (0: leave that variant out)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    task_list = [t.strip() for t in args.tasks.split(",") if t.strip()]
    bad = [t for t in task_list if t not in ("v2a", "a2v")]
    if bad:
        ap.error(f"unknown task(s) {', '.join(bad)}: choose from v2a, a2v")
    t0 = time.perf_counter()
    comps = build_components(task_list, device, dtype, args.size, args.encoder_blocks)
    print(f"models built in {time.perf_counter() - t0:.1f}s", flush=True)
    results = {}
    for t in task_list:
        dur = args.v2a_seconds if t == "v2a" else args.a2v_seconds
        results[t] = bench_task(t, comps, device, args.steps, dur, args.prompt, vae=not args.skip_vae,
                                extra=args.extra)
    label = "peak MiB v/g/gd" if device.type == "cuda" else "process peak RSS MiB v/g/gd"
    print(format_table(results, label))
    if args.json:
        meta = {"device": str(device), "dtype": args.dtype, "threads": torch.get_num_threads(),
                "steps": args.steps, "size": args.size}
        if device.type == "cuda":
            meta["gpu"] = torch.cuda.get_device_name(device)
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
