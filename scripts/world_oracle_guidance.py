"""Can the sampler place sound events at all, given a perfect timing signal? (V2A diagnostic)

Runs the V2A task on validation clips with the world's audio generator and aligner
settings, but with an *oracle binder* in place of the trained one: its per-window
"embeddings" are timing only. Video window -> an indicator of the frames where the
condition video's detected events fall (at the log-mel frame rate); audio window -> the
rectified rise of the log-mel's per-frame energy (onset strength); both get a constant
component so that empty windows compare too. The per-clip loss then rewards onsets exactly
where the video has events and silence elsewhere, and its gradient points there by
construction. If guided sync F1 stays low even with this oracle, the sampler settings
(learning rate, steps, update rule) limit guidance, not the binder; if it rises far, the
binder's gradient is what is missing. Prints vanilla and guided sync F1. Figures in
docs/world.md.

    python scripts/world_oracle_guidance.py [--n 20] [--steps 10] [--set lr=0.1 ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from avbridge.binders.base import ClipSpec, Embedding
from avbridge.generators.audioldm import mel_spectrogram
from avbridge.generators.base import SpectrogramFeatures
from avbridge.registry import load_components
from avbridge.tasks import default_config, v2a, with_steps
from avbridge.world.bench import parse_overrides
from avbridge.world.events import audio_onsets, event_f1, video_events
from avbridge.world.scene import render_clip, split_seeds

HOP_S = 0.01  # log-mel frame period of the world's audio generator (hop 160 at 16 kHz)
WINDOW_S = 0.5
PER_WINDOW = round(WINDOW_S / HOP_S)


class OracleBinder:
    """A timing-only stand-in for the binder (see the module docstring)."""

    clips = ClipSpec(duration_s=WINDOW_S, count=None, frames_per_clip=4)

    def _windows(self, x: torch.Tensor) -> Embedding:
        """(B, T) per-frame values -> per-window vectors with a constant component."""
        n = x.shape[1] // PER_WINDOW
        w = x[:, : n * PER_WINDOW].reshape(x.shape[0], n, PER_WINDOW)
        return Embedding.from_clips(torch.cat([w, torch.ones_like(w[..., :1])], dim=-1))

    def embed_video(self, frames: torch.Tensor, fps: float) -> Embedding:
        rows = []
        for v in frames:
            video = v.movedim(1, -1).detach().cpu().numpy()
            if video.dtype != np.uint8:
                video = (video.clip(0, 1) * 255).astype(np.uint8)
            ind = torch.zeros(round(len(video) / fps / HOP_S))
            for t in video_events(video, fps):
                k = round(t / HOP_S)
                ind[k:k + 3] = 3.0
            rows.append(ind)
        return self._windows(torch.stack(rows).to(frames.device))

    def embed_audio_features(self, features: SpectrogramFeatures) -> Embedding:
        energy = torch.logsumexp(features.log_mel, dim=-1)  # (B, T)
        rise = F.relu(energy[:, 1:] - energy[:, :-1])
        return self._windows(F.pad(rise, (1, 0)))

    def embed_audio(self, waveform: torch.Tensor, sample_rate: int) -> Embedding:
        return self.embed_audio_features(_features(waveform))

    def embed_image(self, images: torch.Tensor) -> Embedding:
        raise NotImplementedError("the oracle binder only times video and audio")

    def embed_text(self, texts: Sequence[str]) -> Embedding:
        return Embedding.from_clips(torch.ones(len(texts), 1, PER_WINDOW + 1))


def _features(waveform: torch.Tensor) -> SpectrogramFeatures:
    from avbridge.generators.audioldm import log_mel_features

    mel = mel_spectrogram(waveform)[:, 0]
    return log_mel_features(mel, 16000, waveform.shape[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20, help="validation clips")
    p.add_argument("--steps", type=int, default=10, help="denoising steps")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                   help="replace an AlignConfig field of the world's V2A settings (as the bench's --set)")
    args = p.parse_args(argv)
    comps = replace(load_components("world", need=["audio"]), binder=OracleBinder())
    cfg = with_steps(default_config("v2a", preset="world"), args.steps)
    cfg = replace(cfg, per_clip=True, **parse_overrides(args.overrides))
    scores: dict[str, list[float]] = {"vanilla": [], "guided": []}
    for i, seed in enumerate(split_seeds("val", args.n)):
        clip = render_clip(seed)
        truth = clip.truth["event_times"]
        line = []
        for name, guided in (("vanilla", False), ("guided", True)):
            res = v2a(clip.video, comps, guided=guided, seed=i, config=cfg)
            onsets = audio_onsets(res.media.samples, res.media.sample_rate)
            scores[name].append(event_f1(onsets, truth))
            line.append(f"{name} {scores[name][-1]:.2f} {[round(t, 2) for t in onsets]}")
        print(f"clip {seed} truth {truth}: " + "; ".join(line), flush=True)
    for name, s in scores.items():
        a = np.array(s)
        print(f"{name}: sync F1 {a.mean():.3f} (s.e. {a.std(ddof=1) / np.sqrt(len(a)):.3f}, n {len(a)})")
    d = np.array(scores["guided"]) - np.array(scores["vanilla"])
    print(f"guided - vanilla: {d.mean():+.3f} (paired s.e. {d.std(ddof=1) / np.sqrt(len(d)):.3f}); "
          f"settings: {cfg}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
