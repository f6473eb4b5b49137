"""Time ONE denoising step at real sizes: vanilla, guided with the VAE, guided with a
guidance decoder; their ratios and peak memory, all in one run.

Builds full-size architectures with random weights (no download): AudioLDM-m-full,
AnimateDiff (SD 1.5 UNet + motion module v1-5-2), ImageBind-huge (the paper's 1-s clips), and the guidance
decoders (TAESD's ``AutoencoderTiny`` for SD latents, the default ``AudioGuidanceDecoder``
that ``avbridge distill-decoder`` trains for AudioLDM); then, per case,

- vanilla step: CFG noise prediction + sampler step (no gradients);
- guided step: the aligner's step (noise prediction, x0, differentiable decode, binder
  embedding, dual loss, backward, latent update, sampler step) with the model's VAE;
- guided step with ``guidance_decoder=True``: the same with the guidance decoder;
- cases with audio, guided step with the guidance decoder and ``guidance_encoder=True``:
  the audio embedded by an audio guidance encoder (``--encoder-blocks`` of ImageBind-huge's
  12 audio blocks, reading the patches that cover each 1-s clip; what ``avbridge
  distill-encoder`` trains) instead of the binder's audio tower;

paper settings with guided prompt tuning off (AudioLDM lr 0.1, CFG 2.5; AnimateDiff
lr 0.01, CFG 7.5). ``--extra`` adds the bf16 guidance branch (with the VAE and with the
guidance decoder) and, for audio, the waveform path (VAE -> vocoder -> fbank). Peak
memory: the GPU's peak allocation per variant; on CPU the process's peak RSS, which only
grows.

Cases: ``audio`` (8 s of AudioLDM audio guided by a video condition), ``video256`` and
``video512`` (16 frames at 8 fps, 256x256 / 512x512, guided by 8 s audio), ``joint``
(2 s of audio and 16 frames at 256x256 guided toward each other).

    python benchmarks/bench_step.py --cases audio,video256 --device cpu
    python benchmarks/bench_step.py --cases video512 --skip-vae video512 --no-warmup   # 24 GiB CPU
    python benchmarks/bench_step.py --device cuda --dtype fp16 --json step_fp16.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import resource
import time
from pathlib import Path

import torch

from avbridge.align import AlignConfig, Condition, Stream, embed_media
from avbridge.align.config import per_modality
from avbridge.align.extensions import from_config
from avbridge.align.loop import _guided_step, _State
from avbridge.align.losses import AlignLoss
from avbridge.models import guidance_decoders as gd
from avbridge.models.binders import guidance_encoder as ge
from avbridge.models.generators.base import MediaSpec


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


def _guidance_decoder_for(gen) -> torch.nn.Module:
    """A full-size guidance decoder with random weights: TAESD for SD latents, the default
    AudioGuidanceDecoder (what ``avbridge distill-decoder`` trains) for AudioLDM."""
    from avbridge.models import guidance_decoders as gd

    if gen.modality == "audio":
        return gd.audio_decoder_for(gen)
    return gd.AutoencoderTiny(latent_channels=gen.latent_channels)  # the TAESD architecture


def _case_setup(case: str, gens: dict, device: torch.device):
    """(streams, condition or None, config) of a case; configs as in the paper, prompt tuning off."""
    if case == "audio":
        gen = gens["audio"]
        streams = [Stream(gen, gen.default_spec(8.0), "a dog barking")]
        cond = Condition("video", torch.rand(1, 64, 3, 224, 224, device=device), rate=8.0)
        return streams, cond, AlignConfig(steps=30, lr=0.1, guidance_scale=2.5)
    if case.startswith("video"):
        gen, side = gens["video"], int(case[len("video"):] or 256)
        spec = MediaSpec(duration_s=2.0, fps=8.0, height=side, width=side)  # 16 frames
        cond = Condition("audio", torch.randn(1, 16000 * 8, device=device) * 0.1, rate=16000)
        return [Stream(gen, spec, "a dog barking")], cond, AlignConfig(steps=25, lr=0.01, guidance_scale=7.5)
    if case == "joint":  # 2 s of audio and 16 frames at 256x256, guided toward each other
        ga, gv = gens["audio"], gens["video"]
        streams = [Stream(ga, ga.default_spec(2.0), "a dog barking"),
                   Stream(gv, MediaSpec(duration_s=2.0, fps=8.0, height=256, width=256), "a dog barking")]
        cfg = AlignConfig(steps=25, lr={"audio": 0.1, "visual": 0.01},
                          guidance_scale={"audio": 2.5, "visual": 7.5})
        return streams, None, cfg
    raise ValueError(f"unknown case {case!r}")


def bench_case(
    case: str, gens: dict, binder, device: torch.device, repeats: int, profile: bool = False,
    extra: bool = False, vae: bool = True, warmup: bool = True, encoder_blocks: int = 3,
) -> dict[str, float]:
    """Vanilla step, guided step with the VAE, guided step with the guidance decoder (same
    process, same run). ``extra`` adds the bf16 guidance branch and, for audio, the waveform path.
    ``vae=False`` leaves out the guided step with the VAE (e.g. where it does not fit in memory);
    ``warmup=False`` times each variant's first call (minutes-long CPU steps).
    """
    streams, cond, cfg = _case_setup(case, gens, device)
    variants: dict[str, AlignConfig] = {"guided": cfg} if vae else {}
    variants["guided_gd"] = dataclasses.replace(cfg, guidance_decoder=True)
    audio = any(st.generator.modality == "audio" for st in streams)
    if audio and encoder_blocks > 0:
        variants["guided_gd_enc"] = dataclasses.replace(cfg, guidance_decoder=True, guidance_encoder=True)
        enc = getattr(binder, "guidance_encoder", None)
        if enc is None or int(enc.config.num_blocks) != encoder_blocks:
            enc = ge.encoder_from_binder(binder, encoder_blocks)
        ge.attach(binder, enc)  # on the binder's device and dtype
    if extra:
        variants["guided_bf16"] = dataclasses.replace(cfg, guidance_dtype="bfloat16")
        variants["guided_gd_bf16"] = dataclasses.replace(cfg, guidance_dtype="bfloat16",
                                                         guidance_decoder=True)
        if audio and encoder_blocks > 0:
            variants["guided_gd_enc_bf16"] = dataclasses.replace(cfg, guidance_dtype="bfloat16",
                                                                 guidance_decoder=True, guidance_encoder=True)
        if case == "audio":
            variants["guided_waveform"] = dataclasses.replace(cfg, audio_path="waveform")
    for st in streams:
        if getattr(st.generator, "guidance_decoder", None) is None:
            gd.attach(st.generator, _guidance_decoder_for(st.generator))
    with torch.no_grad():
        fixed = {"text": binder.embed_text(["a dog barking"])}
        if cond is not None:
            fixed[cond.key] = embed_media(binder, cond.modality, cond.data, cond.rate)
        pcs = [st.generator.encode_prompt([st.prompt], [""]) for st in streams]
        zs = [st.generator.init_latents(st.spec, 1, torch.Generator().manual_seed(0)) for st in streams]
    tss = [st.generator.timesteps(cfg.steps) for st in streams]
    i = len(tss[0]) // 2
    loss_fn = AlignLoss(cfg.weights, cfg.per_clip)

    def embed(modality, data, rate):
        return embed_media(binder, modality, data, rate)

    def vanilla() -> None:
        with torch.no_grad():
            for st, z, pc, ts in zip(streams, zs, pcs, tss, strict=True):
                eps = st.generator.predict_eps(z, ts[i], pc, per_modality(cfg.guidance_scale, st.key))
                st.generator.step(z, eps, ts[i])

    def guided_with(c: AlignConfig):
        def guided() -> None:
            rows = zip(streams, zs, pcs, tss, strict=True)
            states = [_State(st, z.clone(), pc, ts) for st, z, pc, ts in rows]
            _guided_step(states, i, dict(fixed), loss_fn, c, embed, binder, from_config(c))

        return guided

    out: dict[str, float] = {}
    if profile and case == "audio":
        out.update(profile_audio(streams[0].generator, binder, zs[0], streams[0].spec, device))
    runs = [("vanilla", vanilla)] + [(name, guided_with(c)) for name, c in variants.items()]
    for name, fn in runs:
        if warmup:
            fn()
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
    for name in variants:
        out[f"ratio{name[len('guided'):]}"] = out[f"{name}_s"] / out["vanilla_s"]
    shapes = " ".join(f"{st.key}={tuple(z.shape)}" for st, z in zip(streams, zs, strict=True))
    vae_part = (f"guided {out['guided_s']:.3f}s (ratio {out['ratio']:.2f}) " if vae
                else "guided (VAE) not run ")
    print(f"[{case}] latents {shapes} vanilla {out['vanilla_s']:.3f}s {vae_part}"
          f"guided+guidance decoder {out['guided_gd_s']:.3f}s (ratio {out['ratio_gd']:.2f})", flush=True)
    return out


def format_table(results: dict[str, dict[str, float]], peak_label: str) -> str:
    """One line per case: the step times, their ratios to vanilla and the peak memory
    (gd: guidance decoder; gd+enc: and the audio guidance encoder, cases with audio)."""
    head = (f"{'case':9} {'vanilla s':>10} {'guided s':>10} {'ratio':>6} {'guided+gd s':>12} {'ratio':>6} "
            f"{'gd+enc s':>9} {'ratio':>6} {peak_label:>26}")
    lines = [head, "-" * len(head)]
    for case, r in results.items():
        peaks = "/".join(f"{r[k]:.0f}" if k in r else "-"
                         for k in ("vanilla_peak_mb", "guided_peak_mb", "guided_gd_peak_mb"))
        vae = f"{r['guided_s']:10.2f} {r['ratio']:6.2f}" if "guided_s" in r else f"{'-':>10} {'-':>6}"
        enc = (f"{r['guided_gd_enc_s']:9.2f} {r['ratio_gd_enc']:6.2f}" if "guided_gd_enc_s" in r
               else f"{'-':>9} {'-':>6}")
        lines.append(f"{case:9} {r['vanilla_s']:10.2f} {vae} "
                     f"{r['guided_gd_s']:12.2f} {r['ratio_gd']:6.2f} {enc} {peaks:>26}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="audio,video256,video512,joint")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="fp32",
                    help="fp32, fp16 or bf16, or several comma-separated (models built once, then cast)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    ap.add_argument("--profile", action="store_true", help="audio: time VAE / vocoder / binder fwd and bwd")
    ap.add_argument("--extra", action="store_true",
                    help="also the bf16 guidance branch and the waveform path")
    ap.add_argument("--skip-vae", default="", metavar="CASES",
                    help="comma-separated cases whose guided step with the VAE is not run (out of memory)")
    ap.add_argument("--no-warmup", action="store_true", help="time each variant's first call")
    ap.add_argument("--encoder-blocks", type=int, default=3,
                    help="blocks of the audio guidance encoder (0: leave that variant out)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the results here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    names = [d.strip() for d in args.dtype.split(",") if d.strip()]
    if not names or any(d not in dtypes for d in names):
        ap.error(f"--dtype: choose from {', '.join(dtypes)} (comma-separated), got {args.dtype!r}")
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    bad = [c for c in cases if c not in ("audio", "joint", "video256", "video512")]
    if bad:
        ap.error(f"unknown case(s) {', '.join(bad)}: choose from audio, video256, video512, joint")
    keep = len(names) > 1  # several dtypes: keep every model for the next one
    # Random init straight on the target device (fast on a GPU); weights start in fp32.
    build_on = torch.device(device) if device.type == "cuda" else torch.device("cpu")

    from avbridge.models.binders.imagebind import ImageBindBinder

    t0 = time.perf_counter()
    from avbridge.presets import PAPER_BINDER_CLIPS

    with build_on:  # the paper preset's binder: 1-s clips, as `avbridge TASK --preset paper` runs
        binder = ImageBindBinder.from_preset("huge", clips=PAPER_BINDER_CLIPS).to(device=device)
    binder.requires_grad_(False)
    print(f"ImageBind-huge built in {time.perf_counter() - t0:.1f}s", flush=True)
    gens: dict = {}

    def need(kind: str, dtype: torch.dtype) -> None:
        if kind not in gens:
            t1 = time.perf_counter()
            if kind == "audio":
                from avbridge.models.generators.audioldm import AudioLDMGenerator

                gens[kind] = AudioLDMGenerator.build("m-full", device=build_on)
                what = "AudioLDM-m-full"
            else:
                from avbridge.models.generators.animatediff import AnimateDiffGenerator

                gens[kind] = AnimateDiffGenerator.build("sd15-v152", device=build_on)
                what = "AnimateDiff (SD1.5 + motion v1-5-2)"
            print(f"{what} built in {time.perf_counter() - t1:.1f}s", flush=True)
        g = gens[kind].to(device=device, dtype=dtype)
        dec = getattr(g, "guidance_decoder", None)
        if dec is not None:
            g.guidance_decoder = torch.nn.Module.to(dec, device=device, dtype=dtype)

    all_results: dict[str, dict[str, dict[str, float]]] = {}
    label = "peak MiB v/g/gd" if device.type == "cuda" else "process peak RSS MiB v/g/gd"
    for dname in names:
        dtype = dtypes[dname]
        binder.to(dtype=dtype)
        results: dict[str, dict[str, float]] = {}
        for c in cases:  # a generator is dropped once no later case needs it (one dtype only)
            kinds = ["audio"] if c == "audio" else ["video"] if c.startswith("video") else ["audio", "video"]
            for kind in kinds:
                need(kind, dtype)
            skip = {x.strip() for x in args.skip_vae.split(",")}
            results[c] = bench_case(c, gens, binder, device, args.repeats, args.profile, args.extra,
                                    vae=c not in skip, warmup=not args.no_warmup,
                                    encoder_blocks=args.encoder_blocks)
            rest = cases[cases.index(c) + 1:]
            if not keep and "audio" in gens and not any(r in ("audio", "joint") for r in rest):
                del gens["audio"]
            if not keep and "video" in gens and not any(r.startswith("video") or r == "joint" for r in rest):
                del gens["video"]
            gc.collect()
        print(f"dtype {dname}:")
        print(format_table(results, label))
        all_results[dname] = results
    if args.json:
        meta = {"device": str(device), "threads": torch.get_num_threads(), "repeats": args.repeats}
        if device.type == "cuda":
            meta["gpu"] = torch.cuda.get_device_name(device)
        Path(args.json).write_text(json.dumps({"meta": meta, "results": all_results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
