"""Can the binder's score pick the best-timed of several generated soundtracks? (a diagnostic)

For each validation clip, K unguided V2A samples (the world models, 10 steps, the vanilla
prompt) are scored by the binder (mean per-window video-audio cosine on the waveform,
its own features) and by event-sync F1 against the clip's true events. Prints the sync F1
of the binder's top and bottom pick against the mean over all samples, and the mean
within-clip correlation of the two scores. If the top pick is no better than average, the
binder's similarity on generated audio does not reflect timing, whatever its gradient
does. Figures in docs/world.md.

    python scripts/world_binder_selection.py [--n 30] [--k 8] [--start 0] [--binder DIR]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from avbridge.io.media import Video
from avbridge.loading import load_components
from avbridge.presets import default_config
from avbridge.tasks import v2a
from avbridge.world.events import audio_onsets, event_f1
from avbridge.world.scene import WORLD, render_clip, split_seeds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=30, help="validation clips")
    p.add_argument("--k", type=int, default=8, help="unguided samples per clip")
    p.add_argument("--start", type=int, default=0, help="offset of the first validation seed")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--binder", default=None, help="binder folder (default: the world models')")
    args = p.parse_args(argv)
    comps = load_components("world", need=["audio"], binder=args.binder)
    binder = comps.binder
    cfg = default_config("v2a", preset="world", steps=args.steps)
    top, bottom, mean, corr = [], [], [], []
    for i, seed in enumerate(split_seeds("val", args.n, start=args.start)):
        clip = render_clip(seed)
        frames = torch.from_numpy(clip.video.frames).movedim(-1, 1)[None]
        with torch.no_grad():
            ev = binder.embed_video(frames, WORLD.fps).clips
        scores = []
        for j in range(args.k):
            video = Video(clip.video.frames, clip.video.fps, None)  # the condition, without its sound
            out = v2a(video, comps, guided=False, seed=1000 * (args.start + i) + j, config=cfg).media
            with torch.no_grad():
                ea = binder.embed_audio(torch.from_numpy(out.samples)[None], out.sample_rate).clips
            cos = float(F.cosine_similarity(ev, ea, -1).mean())
            scores.append((cos, event_f1(audio_onsets(out), clip.truth["event_times"])))
        s = torch.tensor(scores)
        top.append(float(s[s[:, 0].argmax(), 1]))
        bottom.append(float(s[s[:, 0].argmin(), 1]))
        mean.append(float(s[:, 1].mean()))
        c = float(torch.corrcoef(s.T)[0, 1])
        corr.append(0.0 if c != c else c)  # constant sync F1 over the samples: no correlation
        print(f"clip {seed}: sync of the top pick {top[-1]:.2f}, mean {mean[-1]:.2f}, bottom pick "
              f"{bottom[-1]:.2f}; correlation {corr[-1]:.2f}", flush=True)

    def avg(x: list[float]) -> float:
        return sum(x) / len(x)

    print(f"{args.n} clips x {args.k} samples: sync F1 of the binder's top pick {avg(top):.3f}, mean "
          f"{avg(mean):.3f}, bottom pick {avg(bottom):.3f}; within-clip correlation {avg(corr):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
