"""How far can the binder's gradient move sound events? (a diagnostic of the guidance signal)

On validation clips: start from the audio latent of *another* clip (VAE-encoded real audio,
so its events are at the wrong times), then optimise that latent directly (Adam, no
diffusion prior) to raise the per-window cosine between the binder's embedding of the
decoded audio and of this clip's video, the V2A guidance objective with the per-clip loss.
Prints, before and after, the binder's cosine on the vocoded waveform (its own features)
and the sync F1 of the detected onsets against this clip's true events. If the cosine
rises but the onsets stay where they were, the binder can be satisfied without moving
events, and no sampler setting can make guidance place them. Also printed: the cosine
between the objective's gradient with respect to the start log-mel and the direction
from the start log-mel to this clip's true one (about 0 for a random direction; positive
if the gradient points at the right audio), the same for the gradient's envelope (what
``AlignConfig(mel_grad="envelope")`` lets through: per-frame mean over mel bins, smoothed;
at most 0.69 here, the cosine of the true direction's own envelope with it), and the
correlation of the gradient's sum over mel bins (the energy it adds per frame) with the
first 60 ms after each true event, from the start latent and from a silent (all-zero) one.
Figures in docs/world.md.

    python scripts/world_guidance_ceiling.py [--n 10] [--iters 100] [--path mel|waveform] [--binder DIR]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from avbridge.align import envelope_projection
from avbridge.loading import load_components
from avbridge.models.generators.audioldm import mel_spectrogram
from avbridge.models.generators.base import MediaSpec
from avbridge.world.events import audio_onsets, event_f1
from avbridge.world.scene import WORLD, render_clip, split_seeds


def window_cosine(a: torch.Tensor, b: torch.Tensor, objective: str) -> torch.Tensor:
    """Mean per-window cosine of (B, C, D) embeddings, optionally of their deviations from
    the clip mean (what differs between windows: the events)."""
    if objective == "centred":
        a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return F.cosine_similarity(a, b, -1).mean()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10, help="validation clips")
    p.add_argument("--iters", type=int, default=100, help="Adam steps on the latent")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--path", choices=("mel", "waveform"), default="mel",
                   help="how the latent reaches the binder while optimising (the aligner's audio_path)")
    p.add_argument("--objective", choices=("per-clip", "centred"), default="per-clip",
                   help="per-window cosine, or that of the windows' deviations from their clip mean")
    p.add_argument("--binder", default=None, help="binder folder (default: the world models')")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    comps = load_components("world", need=["audio"], binder=args.binder)
    gen, binder = comps.audio, comps.binder
    spec = MediaSpec(duration_s=WORLD.duration_s)
    clips = [render_clip(s) for s in split_seeds("val", args.n + 1)]
    frames = gen.mel_frames(spec)

    def encode(samples) -> torch.Tensor:
        mel = mel_spectrogram(torch.from_numpy(samples).float()[None])[..., :frames, :]
        mel = F.pad(mel, (0, 0, 0, frames - mel.shape[-2]))
        with torch.no_grad():
            return gen.encode_mel(mel)

    def embed(z: torch.Tensor) -> torch.Tensor:
        if args.path == "mel":
            return binder.embed_audio_features(gen.decode_features(z, spec)).clips
        return binder.embed_audio(gen.decode(z, spec), gen.sample_rate).clips

    @torch.no_grad()
    def measure(z: torch.Tensor, ev: torch.Tensor, truth: list[float]) -> tuple[float, float, list[float]]:
        wave = gen.decode(z, spec)
        cos = F.cosine_similarity(ev, binder.embed_audio(wave, gen.sample_rate).clips, -1).mean()
        onsets = audio_onsets(wave[0].numpy(), gen.sample_rate)
        return float(cos), event_f1(onsets, truth), onsets

    def mel_gradient(z: torch.Tensor, ev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective's gradient w.r.t. the log-mel decoded from z, and that log-mel."""
        feats = gen.decode_features(z.detach(), spec)
        mel = feats.log_mel.detach().requires_grad_(True)
        feats.log_mel = mel
        (g,) = torch.autograd.grad(window_cosine(ev, binder.embed_audio_features(feats).clips,
                                                 args.objective), mel)
        return g, mel.detach()

    def gradient_alignment(z: torch.Tensor, ev: torch.Tensor, z_true: torch.Tensor) -> tuple[float, float]:
        g, mel = mel_gradient(z, ev)
        with torch.no_grad():
            toward = gen.decode_features(z_true, spec).log_mel - mel
        return (float(F.cosine_similarity(g.flatten(), toward.flatten(), 0)),
                float(F.cosine_similarity(envelope_projection(g).flatten(), toward.flatten(), 0)))

    def onset_correlation(z: torch.Tensor, ev: torch.Tensor, times: list[float]) -> float:
        """Correlation over mel frames of the gradient's per-frame sum (energy it adds) with
        an indicator of the first 60 ms after each true event."""
        g, _ = mel_gradient(z, ev)
        profile = g.reshape(-1, g.shape[-2], g.shape[-1])[0].sum(-1)
        hop_s = spec.duration_s / profile.numel()
        ind = torch.zeros_like(profile)
        for t in times:
            k = int(round(t / hop_s))
            ind[k:k + max(1, round(0.06 / hop_s))] = 1
        a, b = profile - profile.mean(), ind - ind.mean()
        return float((a * b).sum() / (a.norm() * b.norm() + 1e-12))

    totals = torch.zeros(8)
    for i in range(args.n):
        clip, other = clips[i], clips[i + 1]
        video = torch.from_numpy(clip.video.frames).movedim(-1, 1)[None]
        ev = binder.embed_video(video, WORLD.fps).clips.detach()
        z = encode(other.audio.samples).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=args.lr)

        truth = clip.truth["event_times"]
        c0, f0, on0 = measure(z, ev, truth)
        gcos, gcos_env = gradient_alignment(z, ev, encode(clip.audio.samples))
        ocor = onset_correlation(z, ev, truth)
        ocor_silent = onset_correlation(torch.zeros_like(z), ev, truth)
        for _ in range(args.iters):
            opt.zero_grad()
            (1 - window_cosine(ev, embed(z), args.objective)).backward()
            opt.step()
        c1, f1, on1 = measure(z, ev, truth)
        totals += torch.tensor([c0, f0, c1, f1, gcos, ocor, ocor_silent, gcos_env])
        print(f"clip {clip.truth['seed']}: truth {clip.truth['event_times']}\n"
              f"  start {[round(t, 2) for t in on0]} cosine {c0:.3f} sync F1 {f0:.2f} "
              f"(gradient vs the way to the true log-mel: cosine {gcos:.4f}, its envelope {gcos_env:.4f}; "
              f"its per-frame sum "
              f"vs the true onsets: correlation {ocor:.3f}, from silence {ocor_silent:.3f})\n"
              f"  after {[round(t, 2) for t in on1]} cosine {c1:.3f} sync F1 {f1:.2f}", flush=True)
    c0, f0, c1, f1, gcos, ocor, ocor_silent, gcos_env = (totals / args.n).tolist()
    print(f"mean over {args.n} clips: binder cosine {c0:.3f} -> {c1:.3f}, sync F1 {f0:.3f} -> {f1:.3f}; "
          f"gradient vs the way to the true log-mel: cosine {gcos:.4f} (its envelope: {gcos_env:.4f}); "
          f"gradient's per-frame sum vs "
          f"the true onsets: correlation {ocor:.3f} (from silence {ocor_silent:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
