"""Peak memory of one full-size guided step with and without the low-memory options.

Each (case, variant) runs in its own subprocess, so that every peak is that variant's
own: full-size architectures with random weights (no download; AudioLDM-m-full or
AnimateDiff = SD 1.5 UNet + motion module v1-5-2, and ImageBind-huge or, with
``--binder tiny``, the tiny binder), then ``align`` with one guided step (noise prediction,
x0, differentiable decode, binder, dual loss, backward, latent update, sampler step) and
the final decode. Variants:

- ``plain``: every module on the device;
- ``offload``: ``gen.enable_model_cpu_offload(device)`` (accelerate hooks; modules on the
  CPU, each moved to the device while it runs; nothing is offloaded under gradients);
- ``slicing``: ``gen.enable_vae_slicing()`` (the VAE decodes one item / frame at a time);
- ``offload+slicing``: both.

Reported per variant: seconds, the peak (CUDA: ``max_memory_allocated``; CPU: the
subprocess's peak RSS, ``ru_maxrss``) and the step's own peak above the memory held before
it (CPU: peak RSS minus the RSS after loading). On CPU, offload moves nothing (the
execution device is the CPU): it can only show that the hooks cost no memory; its saving
is accelerator memory, which ``--device cuda`` measures.

    python benchmarks/bench_memory.py --device cuda --cases audio,video256
    python benchmarks/bench_memory.py --device cpu --cases audio --duration 2 --binder tiny
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ("plain", "offload", "slicing", "offload+slicing")


def _rss_mb() -> float:
    """Current resident set size of this process (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(case: str, variant: str, device: str, duration: float, binder_name: str) -> dict[str, float]:
    """Build, apply the variant, run one guided step through ``align``; measure."""
    import torch

    from avbridge.align import AlignConfig, Condition, align
    from avbridge.models.binders.imagebind import ImageBindBinder
    from avbridge.models.generators.animatediff import AnimateDiffGenerator
    from avbridge.models.generators.audioldm import AudioLDMGenerator
    from avbridge.models.generators.base import MediaSpec

    torch.manual_seed(0)
    dev = torch.device(device)
    t0 = time.perf_counter()
    binder = ImageBindBinder.from_preset("huge" if binder_name == "huge" else "tiny").to(dev)
    if case == "audio":
        gen = AudioLDMGenerator.build("m-full", device="cpu")
        spec = gen.default_spec(duration)
        cond = Condition("video", torch.rand(1, round(8 * duration), 3, 224, 224), rate=8.0)
        cfg = AlignConfig(steps=1, window=(0.0, 1.0), lr=0.1, guidance_scale=2.5)
    elif case.startswith("video"):
        side = int(case[len("video"):] or 256)
        gen = AnimateDiffGenerator.build("sd15-v152", device="cpu")
        spec = MediaSpec(duration_s=duration, fps=8.0, height=side, width=side)
        cond = Condition("audio", torch.randn(1, round(16000 * duration)) * 0.1, rate=16000)
        cfg = AlignConfig(steps=1, window=(0.0, 1.0), lr=0.01, guidance_scale=7.5)
    else:
        raise SystemExit(f"unknown case {case!r}")
    if "offload" in variant:
        gen.enable_model_cpu_offload(dev)
    else:
        gen.to(dev)
    if "slicing" in variant:
        gen.enable_vae_slicing()
    build_s = time.perf_counter() - t0
    if dev.type == "cuda":
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        held = _rss_mb()
    t0 = time.perf_counter()
    res = align(gen, binder, spec=spec, condition=cond, prompt="a dog barking", config=cfg, seed=0)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"build_s": build_s, "step_s": time.perf_counter() - t0, "held_mb": held, "peak_mb": peak,
            "step_peak_mb": peak - held, "final_loss": res.trace.final_loss}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--cases", default="audio", help="comma list of audio, video256, video512")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of media (default: 8 for audio, 2 = 16 frames for video)")
    p.add_argument("--binder", choices=("huge", "tiny"), default="huge")
    p.add_argument("--threads", type=int, default=None, help="torch threads in each worker")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", nargs=2, metavar=("CASE", "VARIANT"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        import torch

        if a.threads:
            torch.set_num_threads(a.threads)
        case, variant = a.worker
        dur = a.duration if a.duration is not None else (8.0 if case == "audio" else 2.0)
        print(json.dumps(worker(case, variant, a.device, dur, a.binder)))
        return
    results: dict[str, dict[str, dict[str, float]]] = {}
    for case in a.cases.split(","):
        for variant in a.variants.split(","):
            cmd = [sys.executable, __file__, "--worker", case, variant, "--device", a.device,
                   "--binder", a.binder]
            cmd += ["--duration", str(a.duration)] if a.duration is not None else []
            cmd += ["--threads", str(a.threads)] if a.threads else []
            proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
            if proc.returncode != 0:
                print(f"[{case}] {variant}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.setdefault(case, {})[variant] = r
            print(f"[{case}] {variant:16s} step {r['step_s']:7.1f}s  peak {r['peak_mb']:8.0f} MiB  "
                  f"step peak above held {r['step_peak_mb']:8.0f} MiB  (held {r['held_mb']:.0f} MiB, "
                  f"final loss {r['final_loss']:.6f})", flush=True)
    if a.json:
        a.json.write_text(json.dumps({"device": a.device, "binder": a.binder, "results": results}, indent=2))


if __name__ == "__main__":
    main()
