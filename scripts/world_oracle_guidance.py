"""Can the sampler place events at all, given a perfect timing signal? (V2A / A2V diagnostic)

Runs the V2A (or A2V) task on validation clips with the world's generators and aligner
settings, but with an *oracle binder* in place of the trained one: its per-window
"embeddings" are timing only. The condition -> an indicator of where its detected events
fall (the bench's own detectors); the generated stream -> a differentiable event strength:
for audio the rectified rise of the log-mel's per-frame energy (log-mel frame grid), for
video the mean absolute frame difference (video frame grid); both get a constant
component so that empty windows compare too. The per-clip loss then rewards events
exactly where the condition has them and calm elsewhere, and its gradient points there by
construction. If guided sync F1 stays low even with this oracle, the sampler settings
(learning rate, steps, update rule) limit guidance, not the binder; if it rises far, the
binder's gradient is what is missing. Prints vanilla and guided sync F1. Figures in
docs/world.md.

    python scripts/world_oracle_guidance.py [--task v2a|a2v] [--n 20] [--steps 10] [--set lr=0.1 ...]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from avbridge.loading import load_components
from avbridge.models.binders.base import ClipSpec, Embedding
from avbridge.models.generators.audioldm import mel_spectrogram
from avbridge.models.generators.base import SpectrogramFeatures
from avbridge.presets import default_config
from avbridge.tasks import a2v, v2a
from avbridge.world.bench import parse_overrides
from avbridge.world.events import audio_onsets, event_f1, video_events
from avbridge.world.scene import WORLD, render_clip, split_seeds

HOP_S = 0.01  # log-mel frame period of the world's audio generator (hop 160 at 16 kHz)
WINDOW_S = 0.5


class OracleBinder:
    """A timing-only stand-in for the binder (see the module docstring). ``generated`` is
    the modality guidance steers; the other one is the condition."""

    clips = ClipSpec(duration_s=WINDOW_S, count=None, frames_per_clip=4)

    def __init__(self, generated: str) -> None:
        self.generated = generated
        # Both sides on the generated stream's time grid.
        self.period = HOP_S if generated == "audio" else 1.0 / WORLD.fps

    def _windows(self, x: torch.Tensor) -> Embedding:
        """(B, T) per-step values -> per-window vectors with a constant component."""
        per = round(WINDOW_S / self.period)
        n = x.shape[1] // per
        w = x[:, : n * per].reshape(x.shape[0], n, per)
        return Embedding.from_clips(torch.cat([w, torch.ones_like(w[..., :1])], dim=-1))

    def _indicator(self, times_per_item: list[list[float]], duration_s: float, device) -> Embedding:
        rows = []
        for times in times_per_item:
            ind = torch.zeros(round(duration_s / self.period))
            width = 3 if self.generated == "audio" else 1
            for t in times:
                k = round(t / self.period)
                ind[k:k + width] = 3.0
            rows.append(ind)
        return self._windows(torch.stack(rows).to(device))

    def embed_video(self, frames: torch.Tensor, fps: float) -> Embedding:
        if self.generated == "video":
            x = frames.float() / (255.0 if frames.dtype == torch.uint8 else 1.0)
            diff = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(2, 3, 4))
            return self._windows(F.pad(diff, (1, 0)))
        times = []
        for v in frames:
            video = v.movedim(1, -1).detach().cpu().numpy()
            if video.dtype != np.uint8:
                video = (video.clip(0, 1) * 255).astype(np.uint8)
            times.append(video_events(video, fps))
        return self._indicator(times, frames.shape[1] / fps, frames.device)

    def embed_audio_features(self, features: SpectrogramFeatures) -> Embedding:
        energy = torch.logsumexp(features.log_mel, dim=-1)  # (B, T)
        rise = F.relu(energy[:, 1:] - energy[:, :-1])
        return self._windows(F.pad(rise, (1, 0)))

    def embed_audio(self, waveform: torch.Tensor, sample_rate: int) -> Embedding:
        if self.generated == "audio":
            return self.embed_audio_features(_features(waveform))
        times = [audio_onsets(w.detach().cpu().numpy(), sample_rate) for w in waveform]
        return self._indicator(times, waveform.shape[-1] / sample_rate, waveform.device)

    def embed_image(self, images: torch.Tensor) -> Embedding:
        raise NotImplementedError("the oracle binder only times video and audio")

    def embed_text(self, texts: Sequence[str]) -> Embedding:
        return Embedding.from_clips(torch.ones(len(texts), 1, round(WINDOW_S / self.period) + 1))


def _features(waveform: torch.Tensor) -> SpectrogramFeatures:
    from avbridge.models.generators.audioldm import log_mel_features

    mel = mel_spectrogram(waveform)[:, 0]
    return log_mel_features(mel, 16000, waveform.shape[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=("v2a", "a2v"), default="v2a")
    p.add_argument("--n", type=int, default=20, help="validation clips")
    p.add_argument("--steps", type=int, default=10, help="denoising steps")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                   help="replace an AlignConfig field of the world's V2A settings (as the bench's --set)")
    args = p.parse_args(argv)
    generated = "audio" if args.task == "v2a" else "video"
    comps = replace(load_components("world", need=[generated]), binder=OracleBinder(generated))
    cfg = default_config(args.task, preset="world", steps=args.steps)
    cfg = replace(cfg, per_clip=True, **parse_overrides(args.overrides))
    scores: dict[str, list[float]] = {"vanilla": [], "guided": []}
    for i, seed in enumerate(split_seeds("val", args.n)):
        clip = render_clip(seed)
        truth = clip.truth["event_times"]
        line = []
        for name, guided in (("vanilla", False), ("guided", True)):
            if args.task == "v2a":
                res = v2a(clip.video, comps, guided=guided, seed=i, config=cfg)
                found = audio_onsets(res.media.samples, res.media.sample_rate)
            else:
                res = a2v(clip.audio, comps, guided=guided, seed=i, config=cfg)
                found = video_events(res.media.frames, res.media.fps)
            scores[name].append(event_f1(found, truth))
            line.append(f"{name} {scores[name][-1]:.2f} {[round(t, 2) for t in found]}")
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
