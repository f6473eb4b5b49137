"""Where do the world models lose class fidelity? (a diagnostic, not a test)

On validation clips, the evaluation classifiers' class accuracy on: the real audio; its
log-mel through the vocoder; through VAE + vocoder; text-to-audio samples (no guidance)
from the full caption and from the class word. Video: the real frames; the VAE round
trip; text-to-video samples (no guidance). Shows which stage bounds the bench's class
accuracy.

    python scripts/world_fidelity.py [--models DIR] [--n 30] [--steps 10] [--skip-video | --skip-audio]
        [--audio-cfg 2.5,5] [--video-cfg 7.5,12] [--samples-only]

``--audio-cfg``/``--video-cfg`` sample at each classifier-free guidance scale given (default:
the task's own, ``avbridge.tasks.default_config``).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from avbridge import tasks as T
from avbridge.aligner import AlignConfig
from avbridge.generators.animatediff import AnimateDiffGenerator
from avbridge.generators.audioldm import AudioLDMGenerator, mel_spectrogram
from avbridge.media import Audio, Video
from avbridge.registry import load_binder, world_format, world_models_dir
from avbridge.world.evalmodels import EvalModels
from avbridge.world.scene import render_clip, split_seeds


def _hit(p, clip) -> bool:
    return p.labels("class")[0] == clip.truth["class"]


@torch.no_grad()
def audio_rows(gen: AudioLDMGenerator, clip) -> dict[str, Audio]:
    mel = mel_spectrogram(torch.from_numpy(clip.audio.samples).float()[None])
    mel = mel[:, None] if mel.dim() == 3 else mel
    mel = mel[:, :, : mel.shape[2] // gen.vae_scale_factor * gen.vae_scale_factor]
    z = gen.vae.encode(mel).latent_dist.mode() * gen.vae.config.scaling_factor
    sr = int(gen.sample_rate)
    return {"real": clip.audio, "vocoder": Audio(gen.vocode(mel)[0].numpy(), sr),
            "vae+vocoder": Audio(gen.vocode(gen.decode_mel(z))[0].numpy(), sr)}


@torch.no_grad()
def video_rows(gen: AnimateDiffGenerator, clip) -> dict[str, Video]:
    x = torch.from_numpy(clip.video.frames).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    r = gen.vae.decode(gen.vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    frames = ((r.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    return {"real": clip.video, "vae": Video(frames, clip.video.fps, None)}


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",")]


def _configs(task: str, steps: int, scales: list[float] | None) -> list[tuple[str, AlignConfig]]:
    """(label suffix, config) per CFG scale; ``None``: the task's own scale, no suffix."""
    base = T.default_config(task, steps=steps)
    if scales is None:
        return [("", base)]
    return [(f", cfg {g:g}", replace(base, guidance_scale=g)) for g in scales]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=world_models_dir())
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--steps", type=int, default=10)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--skip-video", action="store_true")
    g.add_argument("--skip-audio", action="store_true")
    p.add_argument("--audio-cfg", type=_floats, default=None, help="comma-separated CFG scales")
    p.add_argument("--video-cfg", type=_floats, default=None, help="comma-separated CFG scales")
    p.add_argument("--samples-only", action="store_true", help="skip the real/round-trip rows")
    args = p.parse_args(argv)
    ev = EvalModels.load()
    binder = load_binder(None, "world", device="cpu", dtype=torch.float32)
    agen = AudioLDMGenerator.from_pretrained(args.models / "audioldm", device="cpu", dtype=torch.float32)
    vgen = None if args.skip_video else AnimateDiffGenerator.from_pretrained(
        args.models / "animatediff", device="cpu", dtype=torch.float32, **world_format())
    comps = T.Components(binder=binder, audio=agen, video=vgen)
    audio_cfgs = _configs("v2a", args.steps, args.audio_cfg)
    video_cfgs = _configs("a2v", args.steps, args.video_cfg)
    acc: dict[str, list[bool]] = {}
    for s in split_seeds("val", args.n):
        clip = render_clip(s)
        outs: dict[str, Audio | Video] = {}
        if not args.skip_audio and not args.samples_only:
            outs.update({f"audio {k}": v for k, v in audio_rows(agen, clip).items()})
        if vgen is not None and not args.samples_only:
            outs.update({f"video {k}": v for k, v in video_rows(vgen, clip).items()})
        for name, prompt in (("full caption", clip.caption), ("class word", clip.truth["class"])):
            if not args.skip_audio:
                for tag, cfg in audio_cfgs:
                    outs[f"audio sample ({name}{tag})"] = T.v2a(
                        clip.video, comps, prompt=prompt, guided=False, config=cfg).media
            if vgen is not None:
                for tag, cfg in video_cfgs:
                    outs[f"video sample ({name}{tag})"] = T.a2v(
                        clip.audio, comps, prompt=prompt, guided=False, config=cfg).media
        for k, o in outs.items():
            pred = ev.predict_audio([o]) if k.startswith("audio") else ev.predict_video([o])
            acc.setdefault(k, []).append(_hit(pred, clip))
    print(f"class accuracy of the evaluation classifiers on {args.n} validation clips ({args.models}):")
    for k, v in acc.items():
        print(f"  {k:40s} {np.mean(v):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
