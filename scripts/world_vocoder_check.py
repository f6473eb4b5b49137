"""Per-class log-mel error of a vocoder on real validation clips (a diagnostic, not a test).

    python scripts/world_vocoder_check.py [--vocoder DIR] [--n 60]

Each clip's real log-mel goes through the vocoder and back through the same log-mel; printed
per class: the L1 over the whole clip and over its loud bins (within 4 nats of the clip's
loudest), where a class's own sound lives. The whole-clip L1 is dominated by quiet background
bins and can look fine while a class's events are lost (docs/world-models.md, v7 vocoder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    from training.world.train import _mels
    from training.world.train_data import load_clips, mel_spectrogram
    from transformers import SpeechT5HifiGan

    from avbridge.presets import world_models_dir
    from avbridge.world.scene import CLASSES

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vocoder", type=Path, default=world_models_dir() / "audioldm" / "vocoder")
    p.add_argument("--n", type=int, default=60, help="validation clips")
    args = p.parse_args(argv)
    voc = SpeechT5HifiGan.from_pretrained(args.vocoder).eval()
    data = load_clips("val", args.n)
    mels = _mels(data, torch.device("cpu"))
    with torch.no_grad():
        out = mel_spectrogram(torch.cat([voc(m) for m in mels.split(16)]))
    err = (out - mels).abs()
    print(f"{args.vocoder}, {args.n} validation clips: log-mel L1, whole clip / loud bins")
    for c in CLASSES:
        idx = [i for i, t in enumerate(data.truths) if t["class"] == c]
        if not idx:
            continue
        loud = mels[idx] > mels[idx].amax(dim=(1, 2), keepdim=True) - 4
        print(f"  {c:7s} n={len(idx):3d}  {err[idx].mean():.3f} / {err[idx][loud].mean():.3f}")
    print(f"  all             {err.mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
