"""Sample the shipped world models (no guidance) and save a contact sheet, for eyeballing.

    python scripts/world_samples.py [--models DIR] [--out runs/world-samples.png] [--steps 20]

For a few captions: the generated log-mel (audio model, through VAE + vocoder + the
adapter's mel function) with its per-frame energy, and 8 frames of the generated
video. Prints simple numbers: audio peak-to-median energy ratio (are there events?) and
the mean absolute frame difference (is there motion?).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from avbridge.models.generators.animatediff import AnimateDiffGenerator
from avbridge.models.generators.audioldm import AudioLDMGenerator, mel_spectrogram
from avbridge.models.generators.base import MediaSpec

CAPTIONS = ["a large red ball bouncing", "a small blue bell ringing", "a large green drum being struck",
            "a small red bird chirping"]


@torch.no_grad()
def sample(gen, spec: MediaSpec, prompts: list[str], steps: int, scale: float, seed: int) -> torch.Tensor:
    cond = gen.encode_prompt(prompts)
    z = gen.init_latents(spec, len(prompts), torch.Generator().manual_seed(seed))
    for t in gen.timesteps(steps):
        eps = gen.predict_eps(z, t, cond, guidance_scale=scale)
        z = gen.step(z, eps, t)
    return gen.decode(z, spec)


def main() -> int:
    root = Path(__file__).resolve().parents[1] / "src/avbridge/world/models"
    p = argparse.ArgumentParser()
    p.add_argument("--models", type=Path, default=root)
    p.add_argument("--out", type=Path, default=Path("runs/world-samples.png"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--scale", type=float, default=3.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    audio = AudioLDMGenerator.from_pretrained(a.models / "audioldm")
    video = AnimateDiffGenerator.from_pretrained(a.models / "animatediff")
    wave = sample(audio, MediaSpec(duration_s=4.0), CAPTIONS, a.steps, a.scale, a.seed)
    frames = sample(video, MediaSpec(duration_s=4.0, fps=8, height=32, width=32), CAPTIONS, a.steps, a.scale,
                    a.seed)
    mel = mel_spectrogram(wave)[:, 0].numpy()  # (B, T, 64)
    fig, axes = plt.subplots(len(CAPTIONS), 2, figsize=(14, 2.2 * len(CAPTIONS)))
    for i, cap in enumerate(CAPTIONS):
        energy = np.exp(mel[i]).mean(1)
        ratio = float(np.percentile(energy, 99) / (np.median(energy) + 1e-8))
        motion = float((frames[i, 1:] - frames[i, :-1]).abs().mean())
        print(f"{cap!r}: audio rms {float(wave[i].pow(2).mean().sqrt()):.4f}, energy p99/median {ratio:.1f}, "
              f"mean |frame diff| {motion:.4f}")
        axes[i, 0].imshow(mel[i].T, origin="lower", aspect="auto")
        axes[i, 0].set_title(cap, fontsize=8)
        strip = frames[i, ::4].permute(0, 2, 3, 1).numpy()  # 8 frames
        axes[i, 1].imshow(np.concatenate(list(strip), axis=1))
        axes[i, 1].axis("off")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(a.out, dpi=80)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
