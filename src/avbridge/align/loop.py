"""Algorithm 1 of "Seeing and Hearing" (Xing et al., CVPR 2024), for one or two generators.

At each denoising step ``t`` inside the guidance window:

1. ``eps = predict_eps(z_t, t, y)`` (classifier-free guidance inside the adapter);
2. ``z0 = predict_x0(z_t, eps, t)``, decoded differentiably and embedded by the binder;
3. ``L`` = dual loss (one generator) or triangle loss (two generators), see ``losses``;
4. ``z_t <- z_t - lr * grad_z L`` (or a fresh-Adam "sign" step), ``inner_steps`` times;
5. if ``prompt_lr > 0``: ``y <- y - prompt_lr * grad_y L``; the tuned ``y`` is kept;
6. ``z_{t-1} = step(z_t, eps, t)``.

Outside the window the step is the plain sampler step, so ``guided=False`` (vanilla) runs
the same models, seed and schedule with no binder in the loop. By default eps is a
constant of ``z`` for the x0 gradient (no backward through the UNet) and the sampler step
reuses the eps computed before the update (``grad_through_unet`` and ``recompute_eps``
switch each back on). Options tuned on the world enter only through the hooks of
:mod:`avbridge.align.extensions`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from avbridge.align.config import AlignConfig, per_modality, settings_record
from avbridge.align.decode import embed_media, embed_prediction, media_rate
from avbridge.align.extensions import Extension, from_config
from avbridge.align.losses import AlignLoss, LossWeights
from avbridge.align.types import AlignResult, AlignTrace, Condition, ProgressFn, Stream
from avbridge.errors import AvbridgeError
from avbridge.models.binders.base import Binder, Embedding
from avbridge.models.generators.base import Generator, MediaSpec, PromptCond


class _State:
    """Per-stream state of the loop (what extensions see as a ``GuidedStream``)."""

    def __init__(self, stream: Stream, z: torch.Tensor, cond: PromptCond, timesteps: torch.Tensor):
        self.stream, self.z, self.cond, self.timesteps = stream, z, cond, timesteps
        self.generator, self.key = stream.generator, stream.key
        self.modality: str = stream.generator.modality
        self.tuned: torch.Tensor | None = None


def _autocast(device: torch.device, dtype: str | None) -> Any:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


def run_streams(
    streams: Sequence[Stream], binder: Binder, *, config: AlignConfig, condition: Condition | None = None,
    loss_text: str | None = None, seed: int = 0, guided: bool = True, batch: int = 1,
    progress: ProgressFn | None = None, score: bool = True,
) -> AlignResult:
    """Denoise one or two generators in lockstep, steering them toward one loss.

    ``condition`` (a fixed input, e.g. the video of V2A) and ``loss_text`` (the prompt's
    text term) are embedded once, before the loop; the output once more after it, to
    report ``trace.final_loss`` for guided and vanilla alike. ``score=False`` skips that
    final embedding; a vanilla run then calls the binder not at all (``final_loss`` is nan).
    """
    keys = [s.key for s in streams]
    if not streams or len(set(keys)) != len(keys):
        raise ValueError(f"one or two streams of different modalities are needed, got {keys}")
    if condition is not None and condition.key in keys:
        raise ValueError(f"condition modality {condition.key!r} is also being generated")
    extensions = from_config(config)
    stages = extensions if guided else []  # vanilla runs have no guided steps and no refine
    # AlignConfig.__post_init__ turns a weights mapping (from JSON) into LossWeights
    assert isinstance(config.weights, LossWeights), "AlignConfig.weights was not normalised"
    loss_fn = AlignLoss(config.weights)
    for e in extensions:
        loss_fn = e.loss(loss_fn)
    trace, calls = AlignTrace(settings=settings_record(config)), [0]

    def embed(modality: str, data: Any, rate: float | None) -> Embedding:
        calls[0] += 1
        return embed_media(binder, modality, data, rate)

    fixed: dict[str, Embedding | None] = {}
    with torch.no_grad():
        if condition is not None and (guided or score):
            given = condition.embedding
            fixed[condition.key] = given if given is not None else embed(
                condition.modality, condition.data, condition.rate
            )
        if loss_text and (guided or score):
            calls[0] += 1
            fixed["text"] = binder.embed_text([loss_text] * batch)

    rng = torch.Generator(device="cpu").manual_seed(int(seed))
    states: list[_State] = []
    for s in streams:
        neg = None if config.negative_prompt is None else [config.negative_prompt] * batch
        with torch.no_grad():
            cond = s.generator.encode_prompt([s.prompt] * batch, neg)
            z = s.generator.init_latents(s.spec, batch, rng)
        st = _State(s, z, cond.detach(), s.generator.timesteps(config.steps))
        if guided and per_modality(config.prompt_lr, s.key) > 0:
            st.tuned = cond.embeds.detach().clone().requires_grad_(True)
            st.cond = PromptCond(st.tuned, st.cond.negative, st.cond.extra)
        states.append(st)
    n_steps = min(len(st.timesteps) for st in states)
    total = n_steps + sum(e.extra_steps(states, n_steps) for e in stages)

    window = set(config.guided_steps()) if guided else set()
    for i in range(n_steps):
        t0 = time.perf_counter()
        info: dict[str, Any] = {"guided": i in window}
        if i in window:
            losses = _guided_step(states, i, fixed, loss_fn, config, embed, binder, extensions)
            trace.guided_steps.append(i)
            trace.inner_loss.append(losses)
            trace.step_loss.append(losses[0])
            info["loss"] = losses[0]
        else:
            with torch.no_grad():
                for st in states:
                    t, scale = st.timesteps[i], per_modality(config.guidance_scale, st.key)
                    eps = st.generator.predict_eps(st.z, t, st.cond, scale)
                    st.z = st.generator.step(st.z, eps, t)
        trace.step_seconds.append(time.perf_counter() - t0)
        if progress is not None:
            progress(i + 1, total, info)
    for e in stages:
        e.after_loop(states, n_steps, rng, progress)

    latents: dict[str, torch.Tensor] = {}
    media: dict[str, torch.Tensor] = {}
    embs: dict[str, Embedding | None] = dict(fixed)
    with torch.no_grad():
        for st in states:
            if guided and not bool(torch.isfinite(st.z).all()):
                raise AvbridgeError(
                    f"guidance diverged: the {st.key} latents are not finite after {n_steps} steps; "
                    "lower the "
                    f"latent learning rate (lr={per_modality(config.lr, st.key):g}, update={config.update})"
                )
            out = st.generator.decode(st.z, st.stream.spec)
            latents[st.key], media[st.key] = st.z.detach(), out.detach()
            if score:
                embs[st.key] = embed(st.modality, out, media_rate(st.generator, st.stream.spec))
        if score:
            final = loss_fn(embs, generated=keys)
            trace.final_loss = float(final.total.mean())
            trace.final_loss_per_sample = [float(v) for v in final.total]
            trace.final_terms = final.item_terms()
    trace.binder_calls = calls[0]
    prompts = {st.key: st.cond.embeds.detach() for st in states}
    return AlignResult(latents=latents, media=media, prompt_embeds=prompts, trace=trace)


def _guided_step(
    states: list[_State], i: int, fixed: dict[str, Embedding | None], loss_fn: AlignLoss,
    config: AlignConfig, embed: Callable[[str, Any, float | None], Embedding], binder: Binder,
    extensions: Sequence[Extension],
) -> list[float]:
    """Inner updates of the latents (and prompts) at step ``i``, then the sampler step."""
    groups: list[dict[str, Any]] = []
    for st in states:
        st.z = st.z.detach().clone().requires_grad_(True)  # updated in place: no aliasing
        groups.append({"params": [st.z], "lr": per_modality(config.lr, st.key)})
        if st.tuned is not None:
            groups.append({"params": [st.tuned], "lr": per_modality(config.prompt_lr, st.key)})
    opt = torch.optim.Adam(groups) if config.update == "adam-sign" else torch.optim.SGD(groups)

    eps_now: list[torch.Tensor | None] = [None] * len(states)
    losses: list[float] = []
    for n in range(config.inner_steps):
        opt.zero_grad(set_to_none=True)
        embs: dict[str, Embedding | None] = dict(fixed)
        for k, st in enumerate(states):
            t, scale = st.timesteps[i], per_modality(config.guidance_scale, st.key)
            if config.grad_through_unet or (st.tuned is not None and n == 0):
                # Graph through the UNet: to z only if asked, to the prompt when tuning it.
                eps = st.generator.predict_eps(st.z if config.grad_through_unet else st.z.detach(),
                                               t, st.cond, scale)
                eps_now[k] = eps.detach()
            else:
                cached = eps_now[k]
                if cached is None or config.recompute_eps:
                    with torch.no_grad():
                        cached = eps_now[k] = st.generator.predict_eps(st.z.detach(), t, st.cond, scale)
                eps = cached
            x0 = st.generator.predict_x0(st.z, eps, t)
            with _autocast(st.z.device, config.guidance_dtype):
                embs[st.key] = embed_prediction(st.generator, st.stream.spec, x0, binder, config, embed,
                                                extensions)
        with _autocast(states[0].z.device, config.guidance_dtype):
            out = loss_fn(embs, generated=[st.key for st in states])
        out.total.sum().backward()
        for e in extensions:
            e.filter_grads(states)
        opt.step()
        losses.append(float(out.total.detach().mean()))

    with torch.no_grad():
        for k, st in enumerate(states):
            t, z, last = st.timesteps[i], st.z.detach(), eps_now[k]
            if config.recompute_eps or last is None:
                last = st.generator.predict_eps(z, t, st.cond, per_modality(config.guidance_scale, st.key))
            st.z = st.generator.step(z, last, t)
    return losses


def align(
    generator: Generator, binder: Binder, *, spec: MediaSpec, condition: Condition | None, prompt: str = "",
    config: AlignConfig | None = None, seed: int = 0, guided: bool = True, progress: ProgressFn | None = None,
    score: bool = True,
) -> AlignResult:
    """One generator guided by a fixed condition (V2A, I2A, A2V, A2I).

    The prompt conditions the generator and, when not empty, adds the text term of the
    dual loss. ``guided=False`` is the vanilla baseline with the same seed and models.
    """
    batch = 1 if condition is None else int(condition.data.shape[0])
    return run_streams([Stream(generator, spec, prompt)], binder, config=config or AlignConfig(),
                       condition=condition, loss_text=prompt or None, seed=seed, guided=guided, batch=batch,
                       progress=progress, score=score)


def align_joint(
    audio_generator: Generator, video_generator: Generator, binder: Binder, *, audio_spec: MediaSpec,
    video_spec: MediaSpec, prompt: str, config: AlignConfig | None = None, seed: int = 0, guided: bool = True,
    progress: ProgressFn | None = None, score: bool = True,
) -> AlignResult:
    """Joint-VA: two generators in lockstep, one triangle loss, gradients to both latents."""
    streams = [Stream(audio_generator, audio_spec, prompt), Stream(video_generator, video_spec, prompt)]
    return run_streams(streams, binder, config=config or AlignConfig(), loss_text=prompt or None, seed=seed,
                       guided=guided, progress=progress, score=score)
