"""The latent aligner: a denoising loop that steers latents (and prompts) through a binder.

Algorithm 1 of "Seeing and Hearing" (Xing et al., CVPR 2024), generalised to one or two
generators. At each denoising step ``t`` inside the guidance window:

1. ``eps = predict_eps(z_t, t, y)`` (classifier-free guidance inside the adapter);
2. ``z0 = predict_x0(z_t, eps, t)``, decoded differentiably and embedded by the binder;
3. ``L`` = dual loss (one generator) or triangle loss (two generators), see ``losses``;
4. ``z_t <- z_t - lr * grad_z L`` (or a fresh-Adam "sign" step), ``inner_steps`` times;
5. if ``prompt_lr > 0``: ``y <- y - prompt_lr * grad_y L``; the tuned ``y`` is kept;
6. ``z_{t-1} = step(z_t, eps, t)``.

Outside the window the step is the plain sampler step, so ``guided=False`` (vanilla)
runs exactly the same models, seed and schedule with no binder in the loop.

Cost choices (see docs/method.md): by default eps is treated as a constant of ``z``
for the x0 gradient (``grad_z = grad_x0 / sqrt(abar)``; no backward through the UNet),
and the scheduler step reuses the eps computed before the update instead of running
the UNet again. ``grad_through_unet`` and ``recompute_eps`` switch each back on.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch

from avbridge.binders.base import Binder, Embedding
from avbridge.binders.preprocess import video_clip_indices
from avbridge.errors import AvbridgeError
from avbridge.generators.base import Generator, MediaSpec, PromptCond
from avbridge.losses import AlignLoss, LossOutput, LossWeights

ProgressFn = Callable[[int, int, dict[str, Any]], None]
PerModality = float | Mapping[str, float]
UPDATES = ("adam-sign", "grad", "norm-grad")


def _per(value: PerModality, key: str) -> float:
    """A setting that is either one number or a number per modality ("audio"/"visual")."""
    if isinstance(value, Mapping):
        if key not in value:
            raise ValueError(f"no value for modality {key!r} in {dict(value)}")
        return float(value[key])
    return float(value)


@dataclass
class AlignConfig:
    """Settings of one aligned (or vanilla) generation.

    ``lr``, ``prompt_lr`` and ``guidance_scale`` take one number or a mapping
    ``{"audio": ..., "visual": ...}`` (joint generation guides two models whose
    sensible rates differ: 0.1 for AudioLDM, 0.01 for AnimateDiff).

    ``window=(start, stop)``: denoising step ``i`` of ``steps`` (0-based) is guided
    when ``start <= i / steps < stop``; ``(0.2, 1.0)`` with 30 steps guides steps
    6..29, i.e. all but the first 20% (the authors' V2A code).
    ``update="adam-sign"``: a fresh Adam per denoising step over ``inner_steps``
    iterations (the authors' code; its first move is ``lr * sign(grad)``);
    ``"grad"``: ``z <- z - lr * grad``; ``"norm-grad"``: ``z <- z - lr * grad / rms(grad)``
    (per sample: the same overall step as a sign step, spread as the gradient is, so the
    elements the loss barely depends on barely move).
    ``frame_subset``: for video, decode only the frames the binder's clips sample.
    ``audio_path``: how generated audio reaches the binder *inside the loop*. ``"mel"``
    (default): the generator's decoded log-mel is mapped straight to the binder's fbank
    (no vocoder; used when the generator has ``decode_features`` and the binder
    ``embed_audio_features``, else the waveform path); ``"waveform"``: VAE -> vocoder ->
    waveform -> fbank. The final output and ``trace.final_loss`` always use the vocoder.
    ``mel_grad``: on the mel path, what of the binder's gradient reaches the log-mel.
    ``"full"``: all of it; ``"envelope"``: only its loudness-over-time part (per frame,
    the mean over mel bins, smoothed over a few frames), a smoothing preconditioner in
    the spirit of Sobolev gradients. A small binder's full gradient is dominated by
    fine time-frequency detail nearly orthogonal to the way to the right audio; its
    envelope is what moves sound events (docs/world.md).
    ``frame_grad``: the same for video frames: ``"envelope"`` passes only the per-frame,
    per-channel mean over pixels of the gradient (brightness over time).
    ``latent_grad``: ``"frame-mean"`` replaces the gradient on video latents (B, C, F, H, W)
    by its mean over each frame's latent pixels, per channel: guidance then shifts whole
    latent frames (brightness, colour over time) and leaves their spatial layout, the
    shapes the prompt made, to the generator. Audio and image latents are not touched.
    ``refine``: after a guided loop, bring the output back to the noise level of step
    ``round((1 - refine) * steps)`` with fresh noise and denoise it again without the
    binder (SDEdit, Meng et al. 2022): the generator re-synthesises the fine detail that
    guidance pushed off its manifold (the timbre a sound class is heard by) while the
    coarse structure guidance made (when events happen) survives the partial noise.
    ``0``: off. Vanilla runs never refine. Costs ``refine * steps`` plain UNet steps.
    One number, or one per modality where a modality not named is not refined (joint
    can refine its audio only: ``{"audio": 0.6}``).
    ``guidance_dtype``: run the guidance branch only (differentiable decode, binder,
    loss and their backward) under ``torch.autocast`` in this dtype; the UNet, the sampler
    and the final decode keep the models' dtype. The update is a sign step (Adam-sign) or
    a small gradient step, so the gradient's low bits matter little while decode +
    binder dominate a guided step (docs/method.md); ``None``: no autocast.
    """

    steps: int = 30
    guidance_scale: PerModality = 2.5
    negative_prompt: str | None = None
    lr: PerModality = 0.1
    update: Literal["adam-sign", "grad", "norm-grad"] = "adam-sign"
    inner_steps: int = 1
    window: tuple[float, float] = (0.2, 1.0)
    prompt_lr: PerModality = 0.0
    weights: LossWeights | Mapping[str, float] = field(default_factory=LossWeights)
    per_clip: bool = False
    grad_through_unet: bool = False
    recompute_eps: bool = False
    frame_subset: bool = True
    audio_path: Literal["mel", "waveform"] = "mel"
    mel_grad: Literal["full", "envelope"] = "full"
    frame_grad: Literal["full", "envelope"] = "full"
    latent_grad: Literal["full", "frame-mean"] = "full"
    guidance_dtype: Literal["bfloat16", "float16"] | None = None
    refine: PerModality = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.weights, Mapping):  # from JSON (guidance.json, --set weights.at=2)
            unknown = set(self.weights) - {f.name for f in fields(LossWeights)}
            if unknown:
                raise ValueError(f"unknown loss weights {sorted(unknown)}; expected av, vt, at")
            self.weights = LossWeights(**{k: float(v) for k, v in self.weights.items()})
        if self.guidance_dtype not in (None, "bfloat16", "float16"):
            raise ValueError(
                f"guidance_dtype must be None, 'bfloat16' or 'float16', got {self.guidance_dtype!r}"
            )
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.inner_steps < 1:
            raise ValueError(f"inner_steps must be >= 1, got {self.inner_steps}")
        if self.audio_path not in ("mel", "waveform"):
            raise ValueError(f"audio_path must be 'mel' or 'waveform', got {self.audio_path!r}")
        if self.mel_grad not in ("full", "envelope"):
            raise ValueError(f"mel_grad must be 'full' or 'envelope', got {self.mel_grad!r}")
        if self.frame_grad not in ("full", "envelope"):
            raise ValueError(f"frame_grad must be 'full' or 'envelope', got {self.frame_grad!r}")
        if self.latent_grad not in ("full", "frame-mean"):
            raise ValueError(f"latent_grad must be 'full' or 'frame-mean', got {self.latent_grad!r}")
        if self.update not in UPDATES:
            raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {self.update!r}")
        values = self.refine.values() if isinstance(self.refine, Mapping) else [self.refine]
        if not all(0.0 <= float(v) < 1.0 for v in values):
            raise ValueError(f"refine must satisfy 0 <= refine < 1, got {self.refine}")
        start, stop = self.window
        if not 0.0 <= start <= stop <= 1.0:
            raise ValueError(f"window must satisfy 0 <= start <= stop <= 1, got {self.window}")

    def guided_steps(self) -> list[int]:
        """0-based indices of the denoising steps inside the guidance window."""
        start, stop = self.window
        lo = math.ceil(start * self.steps - 1e-9)
        hi = math.ceil(stop * self.steps - 1e-9)
        return list(range(lo, hi))

    def refine_from(self, key: str = "audio") -> int | None:
        """0-based step at which ``refine`` restarts the denoising of modality ``key``
        ("audio"/"visual"), or None when it is off."""
        refine = float(self.refine.get(key, 0.0) if isinstance(self.refine, Mapping) else self.refine)
        if refine <= 0:
            return None
        return min(self.steps - 1, round((1.0 - refine) * self.steps))


@dataclass
class Condition:
    """A conditioning input as tensors: audio (B, N) at ``rate`` Hz, video (B, T, 3, H, W)
    in [0, 1] at ``rate`` fps, or images (B, 3, H, W) in [0, 1]."""

    modality: Literal["audio", "video", "image"]
    data: torch.Tensor
    rate: float | None = None

    @property
    def key(self) -> str:
        return loss_key(self.modality)


@dataclass
class Stream:
    """One generator being denoised: what to make and from which prompt."""

    generator: Generator
    spec: MediaSpec
    prompt: str = ""

    @property
    def key(self) -> str:
        return loss_key(self.generator.modality)


@dataclass
class AlignTrace:
    """What happened: losses at the guided steps and the binder loss of the output."""

    guided_steps: list[int] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    inner_loss: list[list[float]] = field(default_factory=list)
    final_loss: float = float("nan")
    final_loss_per_sample: list[float] = field(default_factory=list)
    final_terms: dict[str, float] = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)
    binder_calls: int = 0


@dataclass
class AlignResult:
    """Final latents and decoded media (detached) per loss key ("audio"/"visual")."""

    latents: dict[str, torch.Tensor]
    media: dict[str, torch.Tensor]
    prompt_embeds: dict[str, torch.Tensor]
    trace: AlignTrace


def loss_key(modality: str) -> str:
    """Loss-side name of a media modality: audio -> "audio", video/image -> "visual"."""
    if modality == "audio":
        return "audio"
    if modality in ("video", "image", "visual"):
        return "visual"
    raise ValueError(f"unknown modality {modality!r}")


def embed_media(binder: Binder, modality: str, data: Any, rate: float | None) -> Embedding:
    """Embed a media tensor (or, for ``"audio-features"``, SpectrogramFeatures) with the
    binder method that matches its modality."""
    if modality == "audio":
        if rate is None:
            raise ValueError("audio needs a sample rate")
        return binder.embed_audio(data, int(rate))
    if modality == "video":
        if rate is None:
            raise ValueError("video needs a frame rate")
        return binder.embed_video(data, float(rate))
    if modality == "image":
        return binder.embed_image(data)
    if modality == "audio-features":  # SpectrogramFeatures, the vocoder-free path
        return binder.embed_audio_features(data)  # type: ignore[attr-defined]
    raise ValueError(f"unknown modality {modality!r}")


def _media_rate(stream: Stream) -> float | None:
    gen = stream.generator
    if gen.modality == "audio":
        return gen.sample_rate
    if gen.modality == "video":
        return stream.spec.fps
    return None


def binder_frame_indices(binder: Binder, num_frames: int, fps: float) -> list[int]:
    """Sorted frame indices that the binder's clips sample from a video of ``num_frames``."""
    rows = video_clip_indices(num_frames, fps, binder.clips)
    return sorted({i for row in rows for i in row})


def _decode_for_binder(stream: Stream, z0: torch.Tensor, binder: Binder, frame_subset: bool) -> torch.Tensor:
    """Differentiable decode of ``z0`` for the binder.

    Video with ``frame_subset``: the binder looks at only ``frames_per_clip`` frames per
    clip, so only those latent frames are decoded (latents (B, C, F, h, w), per-frame
    VAE as in AnimateDiff); every other frame is filled with the nearest decoded one,
    so the binder receives exactly the decoded frames it samples. This is what keeps a
    guided video step near the cost of a vanilla one (see docs/method.md).
    """
    gen = stream.generator
    if not (frame_subset and gen.modality == "video" and z0.dim() == 5 and stream.spec.fps):
        return gen.decode(z0, stream.spec)
    total = z0.shape[2]
    idx = binder_frame_indices(binder, total, float(stream.spec.fps))
    if len(idx) >= total:
        return gen.decode(z0, stream.spec)
    part = gen.decode(z0[:, :, idx], stream.spec)  # (B, len(idx), 3, H, W)
    pos = torch.tensor(idx, dtype=torch.float32)
    nearest = (torch.arange(total, dtype=torch.float32)[:, None] - pos[None]).abs().argmin(dim=1)
    return part[:, nearest.to(part.device)]


def uses_mel_path(generator: Generator, binder: Binder, config: AlignConfig) -> bool:
    """Whether guidance embeds this audio generator's log-mel directly (see ``audio_path``)."""
    return (
        config.audio_path == "mel"
        and generator.modality == "audio"
        and callable(getattr(generator, "decode_features", None))
        and callable(getattr(binder, "embed_audio_features", None))
    )


def envelope_projection(grad: torch.Tensor, sigma_frames: float = 1.0) -> torch.Tensor:
    """Keep the loudness-over-time part of a (B, T, n_mels) log-mel gradient: its mean over
    mel bins at each frame, smoothed along time by a Gaussian of ``sigma_frames``."""
    profile = grad.mean(dim=-1)  # (B, T)
    radius = max(1, math.ceil(3 * sigma_frames))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=grad.device)
    kernel = torch.exp(-0.5 * (taps / sigma_frames) ** 2)
    kernel = (kernel / kernel.sum()).to(profile.dtype)
    padded = torch.nn.functional.pad(profile[:, None], (radius, radius), mode="replicate")
    smooth = torch.nn.functional.conv1d(padded, kernel.view(1, 1, -1))[:, 0]
    return smooth[..., None].expand_as(grad).contiguous()


def frame_envelope_projection(grad: torch.Tensor) -> torch.Tensor:
    """Keep the brightness-over-time part of a (B, T, C, H, W) frame gradient: its mean over
    the pixels of each frame and channel (any layout whose last two dims are pixels, e.g.
    video latents (B, C, F, H, W) for ``latent_grad="frame-mean"``)."""
    return grad.mean(dim=(-2, -1), keepdim=True).expand_as(grad).contiguous()


class _ProjectedGradient(torch.autograd.Function):
    """Identity forward; backward passes only ``project(grad)``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, project: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.project = project
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.project(grad), None


def _embed_for_binder(
    stream: Stream, z0: torch.Tensor, binder: Binder, config: AlignConfig,
    embed: Callable[[str, torch.Tensor, float | None], Embedding],
) -> Embedding:
    """Differentiable decode + embedding of ``z0`` inside the loop (mel or media path)."""
    gen = stream.generator
    if uses_mel_path(gen, binder, config):
        feats = gen.decode_features(z0, stream.spec)  # type: ignore[attr-defined]
        if config.mel_grad == "envelope":
            feats.log_mel = _ProjectedGradient.apply(feats.log_mel, envelope_projection)
        accepts = getattr(binder, "accepts_audio_features", None)
        if accepts is None or accepts(feats):
            return embed("audio-features", feats, None)  # type: ignore[arg-type]
    media = _decode_for_binder(stream, z0, binder, config.frame_subset)
    if config.frame_grad == "envelope" and gen.modality == "video" and media.dim() == 5:
        media = _ProjectedGradient.apply(media, frame_envelope_projection)
    return embed(gen.modality, media, _media_rate(stream))


def _autocast(device: torch.device, dtype: str | None) -> Any:
    """``torch.autocast`` in ``dtype`` on ``device``, or a no-op context for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


class _State:
    """Per-stream mutable state of the loop."""

    def __init__(self, stream: Stream, z: torch.Tensor, cond: PromptCond, timesteps: torch.Tensor):
        self.stream = stream
        self.z = z
        self.cond = cond
        self.timesteps = timesteps
        self.tuned: torch.Tensor | None = None


def run_streams(
    streams: Sequence[Stream],
    binder: Binder,
    *,
    config: AlignConfig,
    condition: Condition | None = None,
    loss_text: str | None = None,
    seed: int = 0,
    guided: bool = True,
    batch: int = 1,
    progress: ProgressFn | None = None,
) -> AlignResult:
    """Denoise one or two generators in lockstep, steering them toward one loss.

    ``condition`` (a fixed input, e.g. the video of V2A) and ``loss_text`` (the prompt's
    text term) are embedded once, before the loop. The final output is embedded once
    more after the loop to report ``trace.final_loss`` for guided and vanilla alike.
    """
    if not streams:
        raise ValueError("at least one generator stream is needed")
    keys = [s.key for s in streams]
    if len(set(keys)) != len(keys):
        raise ValueError(f"two streams of the same modality: {keys}")
    if condition is not None and condition.key in keys:
        raise ValueError(f"condition modality {condition.key!r} is also being generated")

    loss_fn = AlignLoss(config.weights, config.per_clip)
    trace = AlignTrace()
    calls = [0]

    def embed(modality: str, data: torch.Tensor, rate: float | None) -> Embedding:
        calls[0] += 1
        return embed_media(binder, modality, data, rate)

    fixed: dict[str, Embedding | None] = {}
    with torch.no_grad():
        if condition is not None:
            fixed[condition.key] = embed(condition.modality, condition.data, condition.rate)
        if loss_text:
            calls[0] += 1
            fixed["text"] = binder.embed_text([loss_text] * batch)

    rng = torch.Generator(device="cpu").manual_seed(int(seed))
    states: list[_State] = []
    for s in streams:
        gen = s.generator
        neg = None if config.negative_prompt is None else [config.negative_prompt] * batch
        with torch.no_grad():
            cond = gen.encode_prompt([s.prompt] * batch, neg)
            z = gen.init_latents(s.spec, batch, rng)
        st = _State(s, z, cond.detach(), gen.timesteps(config.steps))
        if guided and _per(config.prompt_lr, s.key) > 0:
            st.tuned = cond.embeds.detach().clone().requires_grad_(True)
            st.cond = PromptCond(st.tuned, st.cond.negative, st.cond.extra)
        states.append(st)
    n_steps = min(len(st.timesteps) for st in states)
    total = n_steps + (n_steps - _first_refine_step(states, config, n_steps) if guided else 0)

    window = set(config.guided_steps()) if guided else set()
    for i in range(n_steps):
        t0 = time.perf_counter()
        info: dict[str, Any] = {"guided": i in window}
        if i in window:
            losses = _guided_step(states, i, fixed, loss_fn, config, embed, binder)
            trace.guided_steps.append(i)
            trace.inner_loss.append(losses)
            trace.step_loss.append(losses[0])
            info["loss"] = losses[0]
        else:
            with torch.no_grad():
                for st in states:
                    t = st.timesteps[i]
                    eps = st.stream.generator.predict_eps(
                        st.z, t, st.cond, _per(config.guidance_scale, st.stream.key)
                    )
                    st.z = st.stream.generator.step(st.z, eps, t)
        trace.step_seconds.append(time.perf_counter() - t0)
        if progress is not None:
            progress(i + 1, total, info)

    if guided:
        _refine(states, n_steps, config, rng, progress)

    latents: dict[str, torch.Tensor] = {}
    media: dict[str, torch.Tensor] = {}
    embs: dict[str, Embedding | None] = dict(fixed)
    with torch.no_grad():
        for st in states:
            s = st.stream
            if guided and not bool(torch.isfinite(st.z).all()):
                raise AvbridgeError(
                    f"guidance diverged: the {s.key} latents are not finite after {n_steps} steps; "
                    f"lower the latent learning rate (lr={_per(config.lr, s.key):g}, update={config.update})"
                )
            out = s.generator.decode(st.z, s.spec)
            latents[s.key], media[s.key] = st.z.detach(), out.detach()
            embs[s.key] = embed(s.generator.modality, out, _media_rate(s))
        final = loss_fn(embs, generated=keys)
    trace.final_loss = float(final.total.mean())
    trace.final_loss_per_sample = [float(v) for v in final.total]
    trace.final_terms = final.item_terms()
    trace.binder_calls = calls[0]
    prompts = {st.stream.key: st.cond.embeds.detach() for st in states}
    return AlignResult(latents=latents, media=media, prompt_embeds=prompts, trace=trace)


def _first_refine_step(states: list[_State], config: AlignConfig, n_steps: int) -> int:
    """The earliest restart step of any refined stream (``n_steps``: none is refined)."""
    starts = [config.refine_from(st.stream.key) for st in states]
    return min((r for r in starts if r is not None), default=n_steps)


def _refine(
    states: list[_State], n_steps: int, config: AlignConfig, rng: torch.Generator,
    progress: ProgressFn | None,
) -> None:
    """SDEdit pass (``AlignConfig.refine``): at its restart step, re-noise each refined
    stream's clean latents to that step's level, then run the plain sampler to the end;
    streams in lockstep, each refine step reported to ``progress`` after the loop's."""
    starts = [config.refine_from(st.stream.key) for st in states]
    first = _first_refine_step(states, config, n_steps)
    total = n_steps + (n_steps - first)
    with torch.no_grad():
        for i in range(first, n_steps):
            for st, restart in zip(states, starts, strict=True):
                if restart is None or i < restart:
                    continue
                gen, t = st.stream.generator, st.timesteps[i]
                if i == restart:
                    st.z = gen.renoise(st.z.detach(), t, rng)
                eps = gen.predict_eps(st.z, t, st.cond, _per(config.guidance_scale, st.stream.key))
                st.z = gen.step(st.z, eps, t)
            if progress is not None:
                progress(n_steps + i - first + 1, total, {"guided": False, "refine": True})


def _normalise_grads(groups: list[dict[str, Any]]) -> None:
    """Divide each parameter's gradient by its per-sample RMS (batch is dim 0)."""
    for g in groups:
        for p in g["params"]:
            if p.grad is not None:
                dims = tuple(range(1, p.grad.dim()))
                rms = p.grad.pow(2).mean(dim=dims, keepdim=True).sqrt() if dims else p.grad.abs()
                p.grad.div_(rms.clamp_min(1e-12))


def _guided_step(
    states: list[_State],
    i: int,
    fixed: dict[str, Embedding | None],
    loss_fn: AlignLoss,
    config: AlignConfig,
    embed: Callable[[str, torch.Tensor, float | None], Embedding],
    binder: Binder,
) -> list[float]:
    """Inner updates of the latents (and prompts) at step ``i``, then the sampler step."""
    groups: list[dict[str, Any]] = []
    for st in states:
        st.z = st.z.detach().clone().requires_grad_(True)  # updated in place: no aliasing
        groups.append({"params": [st.z], "lr": _per(config.lr, st.stream.key)})
        if st.tuned is not None:
            groups.append({"params": [st.tuned], "lr": _per(config.prompt_lr, st.stream.key)})
    opt: torch.optim.Optimizer
    if config.update == "adam-sign":
        opt = torch.optim.Adam(groups)
    else:
        opt = torch.optim.SGD(groups)

    eps_now: list[torch.Tensor | None] = [None] * len(states)
    losses: list[float] = []
    for n in range(config.inner_steps):
        opt.zero_grad(set_to_none=True)
        embs: dict[str, Embedding | None] = dict(fixed)
        for k, st in enumerate(states):
            gen, key = st.stream.generator, st.stream.key
            t = st.timesteps[i]
            scale = _per(config.guidance_scale, key)
            tune_now = st.tuned is not None and n == 0
            if config.grad_through_unet or tune_now:
                # Graph through the UNet: to z only if asked, to the prompt when tuning it.
                z_in = st.z if config.grad_through_unet else st.z.detach()
                eps = gen.predict_eps(z_in, t, st.cond, scale)
                eps_now[k] = eps.detach()
            else:
                if eps_now[k] is None or config.recompute_eps:
                    with torch.no_grad():
                        eps_now[k] = gen.predict_eps(st.z.detach(), t, st.cond, scale)
                eps = eps_now[k]
            x0 = gen.predict_x0(st.z, eps, t)
            with _autocast(st.z.device, config.guidance_dtype):
                embs[key] = _embed_for_binder(st.stream, x0, binder, config, embed)
        with _autocast(states[0].z.device, config.guidance_dtype):
            out: LossOutput = loss_fn(embs, generated=[st.stream.key for st in states])
        out.total.sum().backward()
        if config.latent_grad == "frame-mean":
            for st in states:
                if st.stream.generator.modality == "video" and st.z.dim() == 5 and st.z.grad is not None:
                    st.z.grad = frame_envelope_projection(st.z.grad)
        if config.update == "norm-grad":
            _normalise_grads(groups)
        opt.step()
        losses.append(float(out.total.detach().mean()))

    with torch.no_grad():
        for k, st in enumerate(states):
            gen = st.stream.generator
            t = st.timesteps[i]
            z = st.z.detach()
            eps = eps_now[k]
            if config.recompute_eps or eps is None:
                eps = gen.predict_eps(z, t, st.cond, _per(config.guidance_scale, st.stream.key))
            st.z = gen.step(z, eps, t)
    return losses


def align(
    generator: Generator,
    binder: Binder,
    *,
    spec: MediaSpec,
    condition: Condition | None,
    prompt: str = "",
    config: AlignConfig | None = None,
    seed: int = 0,
    guided: bool = True,
    progress: ProgressFn | None = None,
) -> AlignResult:
    """One generator guided by a fixed condition (V2A, I2A, A2V, A2I).

    The prompt conditions the generator and, when not empty, adds the text term of the
    dual loss. ``guided=False`` is the vanilla baseline with the same seed and models.
    """
    config = config or AlignConfig()
    batch = 1 if condition is None else int(condition.data.shape[0])
    return run_streams(
        [Stream(generator, spec, prompt)],
        binder,
        config=config,
        condition=condition,
        loss_text=prompt or None,
        seed=seed,
        guided=guided,
        batch=batch,
        progress=progress,
    )


def align_joint(
    audio_generator: Generator,
    video_generator: Generator,
    binder: Binder,
    *,
    audio_spec: MediaSpec,
    video_spec: MediaSpec,
    prompt: str,
    config: AlignConfig | None = None,
    seed: int = 0,
    guided: bool = True,
    progress: ProgressFn | None = None,
) -> AlignResult:
    """Joint-VA: two generators in lockstep, one triangle loss, gradients to both latents."""
    config = config or AlignConfig()
    streams = [Stream(audio_generator, audio_spec, prompt), Stream(video_generator, video_spec, prompt)]
    return run_streams(
        streams, binder, config=config, loss_text=prompt or None, seed=seed, guided=guided,
        progress=progress,
    )
