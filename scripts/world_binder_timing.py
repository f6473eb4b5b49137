"""Does the world binder see timing, and does the guidance path show it? (a diagnostic)

On real validation clips: the per-window video-audio cosine of the binder with the audio
as recorded and shifted late by 1, 2 and 4 video frames (waveform features, the binder's
own), then the same through the vocoder-free guidance path (AudioLDM log-mel mapped to
the binder's fbank, ``embed_audio_features``) and how close those embeddings are to the
binder's own. Figures in docs/world.md.

    python scripts/world_binder_timing.py [--n 64]
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F
from training.world.train_data import load_clips

from avbridge.loading import load_binder
from avbridge.models.generators.audioldm import log_mel_features, mel_spectrogram
from avbridge.models.generators.base import SpectrogramFeatures
from avbridge.world.scene import WORLD


def mel_features(audio: torch.Tensor) -> SpectrogramFeatures:
    """What ``AudioLDMGenerator.decode_features`` hands the binder, from real audio."""
    n = audio.shape[-1]
    return log_mel_features(mel_spectrogram(audio)[:, 0, :math.ceil(n / 160)], WORLD.sample_rate, n)


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=64, help="validation clips")
    args = p.parse_args(argv)
    binder = load_binder(None, "world", device="cpu", dtype=torch.float32)
    val = load_clips("val", args.n)
    audio = val.audio.float()
    ev = binder.embed_video(val.video.movedim(-1, 2), WORLD.fps).clips
    for k in (0, 1, 2, 4):
        shifted = torch.roll(audio, k * WORLD.samples_per_frame, dims=-1)
        own = binder.embed_audio(shifted, WORLD.sample_rate).clips
        mel = binder.embed_audio_features(mel_features(shifted)).clips
        c_own, c_mel = F.cosine_similarity(ev, own, -1).mean(), F.cosine_similarity(ev, mel, -1).mean()
        print(f"audio {k} frame(s) late: per-window video-audio cosine {c_own:.3f} (binder features), "
              f"{c_mel:.3f} (guidance mel path); mel path vs binder features "
              f"{F.cosine_similarity(own, mel, -1).mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
