"""Where do the world models lose class fidelity? (a diagnostic, not a test)

On validation clips, the evaluation classifiers' class accuracy on: the real audio; its
log-mel through the vocoder; through VAE + vocoder; text-to-audio samples (no guidance)
from the full caption and from the class word. Video: the real frames; the VAE round
trip; text-to-video samples (no guidance). Shows which stage bounds the bench's class
accuracy.

    python scripts/world_fidelity.py [--models DIR] [--n 30] [--steps 10] [--skip-video | --skip-audio]
        [--audio-cfg 2.5,5] [--video-cfg 7.5,12] [--samples-only] [--confusion] [--unet-likelihood]
        [--griffin-lim]

``--audio-cfg``/``--video-cfg`` sample at each classifier-free guidance scale given (default:
the task's own, ``avbridge.presets.default_config``). Clip i of the split is sampled with
generation seed i, as in the bench (before the eleventh session every sample used seed 0, so
the class-word rows repeated one sample per class). ``--confusion`` also prints, per row, which
class the classifier heard for each true class. ``--unet-likelihood`` asks whether the audio
UNet itself knows the classes: each real clip's latent is noised (t = 100, 300, 500, 700, two
draws each) and denoised under each class word ("a ball", ...); the class with the lowest
noise-prediction error is the UNet's guess (a diffusion classifier; no vocoder involved).
``--griffin-lim`` adds the VAE round trip and the full-caption samples rendered from their
log-mel by Griffin-Lim instead of the vocoder: what the classifier hears without the vocoder's
losses (a diagnostic renderer, never a pipeline part).
"""

from __future__ import annotations

import argparse
import copy
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from avbridge import tasks as T
from avbridge.align import AlignConfig
from avbridge.io.media import Audio, Video
from avbridge.loading import load_binder, world_format
from avbridge.models.generators.animatediff import AnimateDiffGenerator
from avbridge.models.generators.audioldm import (
    MEL_HOP,
    MEL_N_FFT,
    MEL_WIN_LENGTH,
    AudioLDMGenerator,
    mel_filterbank,
    mel_spectrogram,
)
from avbridge.presets import default_config, world_models_dir
from avbridge.world.evalmodels import EvalModels
from avbridge.world.scene import CLASSES, render_clip, split_seeds


def _heard(p) -> str:
    return p.labels("class")[0]


def _real_mel(gen: AudioLDMGenerator, clip) -> torch.Tensor:
    """The clip's log-mel (1, 1, T, 64), T cut to a multiple of the VAE's factor."""
    mel = mel_spectrogram(torch.from_numpy(clip.audio.samples).float()[None])
    mel = mel[:, None] if mel.dim() == 3 else mel
    return mel[:, :, : mel.shape[2] // gen.vae_scale_factor * gen.vae_scale_factor]


def _audio_latent(gen: AudioLDMGenerator, mel: torch.Tensor) -> torch.Tensor:
    return gen.encode_mel(mel)


@torch.no_grad()
def audio_rows(gen: AudioLDMGenerator, clip, griffin: AudioLDMGenerator | None = None) -> dict[str, Audio]:
    """Real audio, its log-mel through the vocoder, the VAE round trip through the vocoder
    (and through ``griffin``'s renderer when given)."""
    mel = _real_mel(gen, clip)
    rec = gen.decode_mel(_audio_latent(gen, mel))
    sr = int(gen.sample_rate)
    rows = {"real": clip.audio, "vocoder": Audio(gen.vocode(mel)[0].numpy(), sr),
            "vae+vocoder": Audio(gen.vocode(rec)[0].numpy(), sr)}
    if griffin is not None:
        rows["vae+Griffin-Lim"] = Audio(griffin.vocode(rec)[0].numpy(), sr)
    return rows


@torch.no_grad()
def video_rows(gen: AnimateDiffGenerator, clip) -> dict[str, Video]:
    x = torch.from_numpy(clip.video.frames).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    r = gen.vae.decode(gen.vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    frames = ((r.permute(0, 2, 3, 1) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
    return {"real": clip.video, "vae": Video(frames, clip.video.fps, None)}


@torch.no_grad()
def unet_guess(gen: AudioLDMGenerator, clip, seed: int, timesteps=(100, 300, 500, 700), draws: int = 2
               ) -> str:
    """The class whose word makes the audio UNet predict the noise on the clip's latent best."""
    z0 = _audio_latent(gen, _real_mel(gen, clip))
    conds = gen.encode_prompt([f"a {c}" for c in CLASSES]).embeds
    abar = gen.scheduler.alphas_cumprod
    g = torch.Generator().manual_seed(seed)
    err = torch.zeros(len(CLASSES))
    for t in timesteps:
        for _ in range(draws):
            eps = torch.randn(z0.shape, generator=g)
            zt = abar[t].sqrt() * z0 + (1 - abar[t]).sqrt() * eps
            pred = gen.unet(zt.repeat(len(CLASSES), 1, 1, 1), torch.full((len(CLASSES),), t),
                            encoder_hidden_states=None, class_labels=conds).sample
            err += ((pred - eps) ** 2).mean((1, 2, 3))
    return CLASSES[int(err.argmin())]


def griffin_lim(log_mel: torch.Tensor, iters: int = 48, seed: int = 0) -> torch.Tensor:
    """Log-mel (B, 1, T, 64) in ``mel_spectrogram``'s conventions -> waveform (B, hop x T), peak 0.7.

    Magnitude from the filterbank's pseudo-inverse, phase by Griffin-Lim with the same STFT.
    """
    fb = mel_filterbank()
    mag = (torch.linalg.pinv(fb) @ log_mel[:, 0].float().exp().transpose(1, 2)).clamp(min=0)  # (B, F, T)
    n, win = MEL_HOP * mag.shape[-1], torch.hann_window(MEL_WIN_LENGTH)
    stft = dict(n_fft=MEL_N_FFT, hop_length=MEL_HOP, win_length=MEL_WIN_LENGTH, window=win, center=True)
    phase = torch.rand(mag.shape, generator=torch.Generator().manual_seed(seed)) * 2 * math.pi
    spec = mag * torch.exp(1j * phase)
    for _ in range(iters):
        x = torch.istft(spec, length=n, **stft)
        spec = mag * torch.exp(1j * torch.stft(x, return_complex=True, **stft)[..., : mag.shape[-1]].angle())
    x = torch.istft(spec, length=n, **stft)
    return 0.7 * x / x.abs().amax(-1, keepdim=True).clamp(min=1e-9)


def with_griffin_lim(gen: AudioLDMGenerator) -> AudioLDMGenerator:
    """A shallow copy of ``gen`` whose ``vocode`` is :func:`griffin_lim` (same models otherwise)."""
    g = copy.copy(gen)
    g.vocode = lambda mel: griffin_lim(mel.detach())  # type: ignore[method-assign]
    return g


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",")]


def _configs(task: str, steps: int, scales: list[float] | None) -> list[tuple[str, AlignConfig]]:
    """(label suffix, config) per CFG scale; ``None``: the task's own scale, no suffix."""
    base = default_config(task, steps=steps)
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
    p.add_argument("--confusion", action="store_true", help="print a confusion matrix per row")
    p.add_argument("--griffin-lim", action="store_true",
                   help="add rows rendered by Griffin-Lim instead of the vocoder (VAE round trip, samples)")
    p.add_argument("--unet-likelihood", action="store_true",
                   help="add a row: the audio UNet's own class guess on the real clip (diffusion classifier)")
    args = p.parse_args(argv)
    ev = EvalModels.load()
    binder = load_binder(None, "world", device="cpu", dtype=torch.float32)
    agen = AudioLDMGenerator.from_pretrained(args.models / "audioldm", device="cpu", dtype=torch.float32)
    vgen = None if args.skip_video else AnimateDiffGenerator.from_pretrained(
        args.models / "animatediff", device="cpu", dtype=torch.float32, **world_format())
    comps = T.Components(binder=binder, audio=agen, video=vgen)
    audio_cfgs = _configs("v2a", args.steps, args.audio_cfg)
    video_cfgs = _configs("a2v", args.steps, args.video_cfg)
    gl = with_griffin_lim(agen) if args.griffin_lim and not args.skip_audio else None
    heard: dict[str, list[tuple[str, str]]] = {}  # row -> (true class, heard class) per clip
    for i, s in enumerate(split_seeds("val", args.n)):
        clip = render_clip(s)
        outs: dict[str, Audio | Video] = {}
        if not args.skip_audio and not args.samples_only:
            outs.update({f"audio {k}": v for k, v in audio_rows(agen, clip, gl).items()})
        if vgen is not None and not args.samples_only:
            outs.update({f"video {k}": v for k, v in video_rows(vgen, clip).items()})
        for name, prompt in (("full caption", clip.caption), ("class word", clip.truth["class"])):
            if not args.skip_audio:
                for tag, cfg in audio_cfgs:
                    outs[f"audio sample ({name}{tag})"] = T.v2a(
                        clip.video, comps, prompt=prompt, guided=False, seed=i, config=cfg).media
            if vgen is not None:
                for tag, cfg in video_cfgs:
                    outs[f"video sample ({name}{tag})"] = T.a2v(
                        clip.audio, comps, prompt=prompt, guided=False, seed=i, config=cfg).media
        if gl is not None:
            for tag, cfg in audio_cfgs:
                outs[f"audio sample (full caption{tag}, Griffin-Lim)"] = T.v2a(
                    clip.video, replace(comps, audio=gl), prompt=clip.caption, guided=False, seed=i,
                    config=cfg).media
        for k, o in outs.items():
            pred = ev.predict_audio([o]) if k.startswith("audio") else ev.predict_video([o])
            heard.setdefault(k, []).append((clip.truth["class"], _heard(pred)))
        if args.unet_likelihood and not args.skip_audio:
            heard.setdefault("audio UNet's guess (real latent)", []).append(
                (clip.truth["class"], unet_guess(agen, clip, s)))
    print(f"class accuracy of the evaluation classifiers on {args.n} validation clips ({args.models}):")
    for k, v in heard.items():
        print(f"  {k:40s} {np.mean([t == h for t, h in v]):.3f}")
    if args.confusion:
        for k, v in heard.items():
            print(f"\n{k}: rows true class, columns heard class")
            print("  " + " ".join(f"{c:>7s}" for c in ("", *CLASSES)))
            for c in CLASSES:
                print("  " + " ".join([f"{c:>7s}", *(f"{sum(1 for t, h in v if t == c and h == o):7d}"
                                                    for o in CLASSES)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
