"""Benchmark (not a test): ImageBind-huge forward+backward on CPU with random weights.

Cases, as used for guidance (weights frozen, gradient w.r.t. the input):
- audio: 8 s of 16 kHz audio, 1-s clips (the authors' V2A setting) -> 8 fbank clips;
- video: 8 two-frame clips at 224x224 (16 frames at 2 fps, 1-s clips).

Each case runs in its own subprocess so that its peak resident memory
(``ru_maxrss``) is its own; "model" is the peak after building the model alone.

    .venv/bin/python benchmarks/bench_imagebind.py [--preset huge] [--repeats 1] [--checkpointing]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_case(case: str, preset: str, repeats: int, checkpointing: bool) -> dict:
    import torch

    from avbridge.models.binders.base import ClipSpec
    from avbridge.models.binders.imagebind import ImageBindBinder

    t0 = time.perf_counter()
    binder = ImageBindBinder.from_preset(preset, seed=0, clips=ClipSpec(duration_s=1.0, count=None))
    binder.requires_grad_(False)
    binder.model.set_gradient_checkpointing(checkpointing)
    build_s = time.perf_counter() - t0
    model_rss = _peak_rss_gib()
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(repeats):
        if case == "audio":
            x = (0.1 * torch.randn(1, 8 * 16000, generator=gen)).requires_grad_(True)
        else:
            x = torch.rand(1, 16, 3, 224, 224, generator=gen).requires_grad_(True)
        t0 = time.perf_counter()
        emb = binder.embed_audio(x, 16000) if case == "audio" else binder.embed_video(x, fps=2.0)
        loss = 1 - emb.pooled[0, 0]
        loss.backward()
        times.append(time.perf_counter() - t0)
        assert torch.isfinite(x.grad).all()
        n_clips = emb.clips.shape[1]
    return {
        "case": case, "preset": preset, "clips": n_clips, "threads": torch.get_num_threads(),
        "checkpointing": checkpointing, "build_s": round(build_s, 1),
        "fwd_bwd_s": [round(t, 2) for t in times], "model_peak_rss_gib": round(model_rss, 2),
        "peak_rss_gib": round(_peak_rss_gib(), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="huge")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--checkpointing", action="store_true", help="recompute trunk blocks in backward")
    ap.add_argument("--case", choices=["audio", "video"], help="run one case in this process")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.preset, args.repeats, args.checkpointing)))
        return
    for case in ("audio", "video"):
        cmd = [sys.executable, __file__, "--case", case, "--preset", args.preset]
        cmd += ["--repeats", str(args.repeats)]
        if args.checkpointing:
            cmd.append("--checkpointing")
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        print(out.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
