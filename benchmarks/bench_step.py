"""Time ONE denoising step at real sizes: vanilla vs guided, with peak memory.

Builds full-size architectures with random weights (no download): AudioLDM-m-full,
AnimateDiff (SD 1.5 UNet + motion module v1-5-2), ImageBind-huge; then, per case,

- vanilla step: CFG noise prediction + sampler step (no gradients);
- guided step: the aligner's step (noise prediction, x0, differentiable decode, binder
  embedding, dual loss, backward, latent update, sampler step), paper defaults; for audio
  both through the default vocoder-free ``audio_path="mel"`` and through the vocoder
  (``"waveform"``);

and prints both times, their ratio (target <= 2.0) and peak memory.

Cases: ``audio`` (8 s of AudioLDM audio guided by a video condition), ``video256`` and
``video512`` (16 frames at 8 fps, 256x256 / 512x512, guided by 8 s audio).

    python benchmarks/bench_step.py --cases audio --device cpu
    python benchmarks/bench_step.py --cases audio,video256,video512 --device cuda --dtype fp16
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import resource
import time

import torch

from avbridge.align import AlignConfig, Condition, Stream, embed_media
from avbridge.align import extensions as ext
from avbridge.align.loop import _guided_step, _State
from avbridge.align.losses import AlignLoss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def profile_audio(gen, binder, z: torch.Tensor, spec, device: torch.device) -> dict[str, float]:
    """Seconds of each piece of a guided audio step, forward and backward separately."""
    out: dict[str, float] = {}
    x0 = z.detach().clone().requires_grad_(True)
    holder: dict[str, torch.Tensor] = {}

    def fwd(name: str, fn) -> None:
        out[f"{name}_fwd_s"] = _timed(lambda: holder.__setitem__(name, fn()), device)

    def bwd(name: str, value: torch.Tensor, inputs: torch.Tensor) -> None:
        g = torch.randn_like(value)
        out[f"{name}_bwd_s"] = _timed(lambda: torch.autograd.grad(value, inputs, g), device)

    fwd("vae", lambda: gen.decode_mel(x0))
    bwd("vae", holder["vae"], x0)
    mel = holder["vae"].detach().requires_grad_(True)
    fwd("vocoder", lambda: gen.vocode(mel))
    bwd("vocoder", holder["vocoder"], mel)
    wave = holder["vocoder"].detach()[:, : spec.num_samples(gen.sample_rate)].requires_grad_(True)
    fwd("binder_wave", lambda: binder.embed_audio(wave, gen.sample_rate).pooled)
    bwd("binder_wave", holder["binder_wave"], wave)
    feats = gen.decode_features(x0.detach(), spec)
    feats.log_mel.requires_grad_(True)
    fwd("binder_mel", lambda: binder.embed_audio_features(feats).pooled)
    bwd("binder_mel", holder["binder_mel"], feats.log_mel)
    print("[audio profile] " + " ".join(f"{k} {v:.2f}" for k, v in out.items()), flush=True)
    return out


def bench_case(
    case: str, gen, binder, device: torch.device, repeats: int, profile: bool = False
) -> dict[str, float]:
    """Vanilla and guided step times for one generator at one size (same process, same run).

    Audio: guided twice, through the default vocoder-free ``audio_path="mel"`` and through
    ``"waveform"`` (VAE -> vocoder -> fbank), so both ratios come from one run.
    """
    variants: dict[str, AlignConfig]
    if case == "audio":
        spec = gen.default_spec(8.0)
        cond = Condition("video", torch.rand(1, 64, 3, 224, 224, device=device), rate=8.0)
        cfg = AlignConfig(steps=30, lr=0.1, guidance_scale=2.5)
        variants = {"guided": cfg, "guided_waveform": dataclasses.replace(cfg, audio_path="waveform"),
                    "guided_bf16": dataclasses.replace(cfg, guidance_dtype="bfloat16")}
    else:
        side = 256 if case == "video256" else 512
        spec = gen.default_spec(2.0)
        spec = type(spec)(duration_s=2.0, fps=8.0, height=side, width=side)  # 16 frames
        cond = Condition("audio", torch.randn(1, 16000 * 8, device=device) * 0.1, rate=16000)
        cfg = AlignConfig(steps=25, lr=0.01, guidance_scale=7.5)
        variants = {"guided": cfg, "guided_bf16": dataclasses.replace(cfg, guidance_dtype="bfloat16")}
    stream = Stream(gen, spec, "a dog barking")
    key = stream.key
    with torch.no_grad():
        fixed = {cond.key: embed_media(binder, cond.modality, cond.data, cond.rate),
                 "text": binder.embed_text(["a dog barking"])}
        pc = gen.encode_prompt(["a dog barking"], [""])
        z = gen.init_latents(spec, 1, torch.Generator().manual_seed(0))
    ts = gen.timesteps(cfg.steps)
    i = len(ts) // 2
    t = ts[i]
    scale = float(cfg.guidance_scale)  # type: ignore[arg-type]
    loss_fn = AlignLoss(cfg.weights, cfg.per_clip)

    def embed(modality, data, rate):
        return embed_media(binder, modality, data, rate)

    def vanilla() -> None:
        with torch.no_grad():
            eps = gen.predict_eps(z, t, pc, scale)
            gen.step(z, eps, t)

    def guided_with(c: AlignConfig):
        def guided() -> None:
            st = _State(stream, z.clone(), pc, ts)
            _guided_step([st], i, dict(fixed), loss_fn, c, embed, binder, ext.from_config(c))

        return guided

    out: dict[str, float] = {}
    if profile and case == "audio":
        out.update(profile_audio(gen, binder, z, spec, device))
    runs = [("vanilla", vanilla)] + [(name, guided_with(c)) for name, c in variants.items()]
    for name, fn in runs:
        fn()  # warm-up
        gc.collect()
        _reset_peak(device)
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        _sync(device)
        out[f"{name}_s"] = (time.perf_counter() - t0) / repeats
        out[f"{name}_peak_mb"] = _peak_mb(device)
        print(f"[{case}] {name} {out[f'{name}_s']:.3f}s peak {out[f'{name}_peak_mb']:.0f} MiB", flush=True)
    out["ratio"] = out["guided_s"] / out["vanilla_s"]
    extra = ""
    if "guided_waveform_s" in out:
        out["ratio_waveform"] = out["guided_waveform_s"] / out["vanilla_s"]
        extra = f" (waveform path {out['guided_waveform_s']:.3f}s, ratio {out['ratio_waveform']:.2f})"
    if "guided_bf16_s" in out:
        out["ratio_bf16"] = out["guided_bf16_s"] / out["vanilla_s"]
        extra += f" (bf16 guidance branch {out['guided_bf16_s']:.3f}s, ratio {out['ratio_bf16']:.2f})"
    print(f"[{case}] key={key} latents={tuple(z.shape)} vanilla {out['vanilla_s']:.3f}s "
          f"guided {out['guided_s']:.3f}s ratio {out['ratio']:.2f}{extra} "
          f"peak vanilla {out['vanilla_peak_mb']:.0f} MiB guided {out['guided_peak_mb']:.0f} MiB", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="audio,video256,video512")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--profile", action="store_true", help="audio: time VAE / vocoder / binder fwd and bwd")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]

    from avbridge.models.binders.imagebind import ImageBindBinder

    t0 = time.perf_counter()
    binder = ImageBindBinder.from_preset("huge").to(device=device, dtype=dtype)
    binder.requires_grad_(False)
    print(f"ImageBind-huge built in {time.perf_counter() - t0:.1f}s", flush=True)
    results = {}
    if "audio" in cases:
        from avbridge.models.generators.audioldm import AudioLDMGenerator

        t0 = time.perf_counter()
        gen = AudioLDMGenerator.build("m-full", device="cpu").to(device=device, dtype=dtype)
        print(f"AudioLDM-m-full built in {time.perf_counter() - t0:.1f}s", flush=True)
        results["audio"] = bench_case("audio", gen, binder, device, args.repeats, args.profile)
        del gen
        gc.collect()
    video_cases = [c for c in cases if c.startswith("video")]
    if video_cases:
        from avbridge.models.generators.animatediff import AnimateDiffGenerator

        t0 = time.perf_counter()
        gen = AnimateDiffGenerator.build("sd15-v152", device="cpu").to(device=device, dtype=dtype)
        print(f"AnimateDiff (SD1.5 + motion v1-5-2) built in {time.perf_counter() - t0:.1f}s", flush=True)
        for c in video_cases:
            results[c] = bench_case(c, gen, binder, device, args.repeats)
    print("summary:", {k: round(v["ratio"], 2) for k, v in results.items()})


if __name__ == "__main__":
    main()
