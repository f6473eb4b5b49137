"""Pieces shared by the adapters: a stateless DDIM step, CFG, loading helpers."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from diffusers import DDIMScheduler
from diffusers.utils import logging as diffusers_logging

from avbridge.errors import CheckpointError
from avbridge.generators.base import PromptCond


class DDIMMath:
    """Deterministic (eta = 0) DDIM arithmetic read from a scheduler's config.

    ``timesteps(n)`` asks a private copy of the scheduler for its schedule (so spacing,
    ``steps_offset`` etc. follow the checkpoint's config) and remembers, for each timestep,
    the one that follows it. ``step`` is then a pure function of (z, eps, t): no scheduler
    state is mutated, it can run under ``no_grad`` or with gradients, and two generators can
    step in lockstep. For "leading" spacing the next timestep is ``t - T // n``, exactly as
    ``DDIMScheduler.step``; for other spacings we use the true next timestep of the schedule.
    """

    def __init__(self, scheduler: DDIMScheduler):
        self.scheduler = scheduler
        self.alphas_cumprod = scheduler.alphas_cumprod.detach().to(torch.float64).clone()
        cfg = scheduler.config
        self.final_alpha = 1.0 if cfg.get("set_alpha_to_one", True) else float(self.alphas_cumprod[0])
        self.prediction_type: str = cfg.get("prediction_type", "epsilon")
        self._next: dict[int, int] = {}

    def timesteps(self, n: int) -> torch.Tensor:
        """The descending schedule of ``n`` steps, as ``DDIMScheduler.set_timesteps`` gives it."""
        if n < 1:
            raise ValueError(f"number of steps must be >= 1, got {n}")
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(n)
        ts = sched.timesteps.to(torch.long).cpu()
        self._next = {int(a): int(b) for a, b in zip(ts[:-1], ts[1:], strict=True)}
        self._next[int(ts[-1])] = -1
        return ts

    def prev_timestep(self, t: int) -> int:
        """The timestep after ``t`` in the last schedule (``t - T // 50`` if ``t`` is not in it)."""
        if t in self._next:
            return self._next[t]
        return t - self.scheduler.config.num_train_timesteps // 50

    def abar(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """alpha-bar at ``t`` broadcast to ``like`` (batch-first), in ``like``'s dtype/device."""
        tt = torch.as_tensor(t, dtype=torch.long).cpu().reshape(-1)
        vals = torch.where(
            tt >= 0,
            self.alphas_cumprod[tt.clamp(min=0)],
            torch.full_like(tt, 0, dtype=torch.float64) + self.final_alpha,
        )
        vals = vals.to(device=like.device, dtype=like.dtype)
        if vals.numel() == 1:
            vals = vals.reshape(())
        return vals.reshape(vals.shape + (1,) * (like.dim() - vals.dim())) if vals.dim() else vals

    def model_output_to_eps(self, out: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Turn the UNet's output into a noise estimate, whatever the prediction type."""
        if self.prediction_type == "epsilon":
            return out
        a = self.abar(t, z)
        if self.prediction_type == "v_prediction":
            return a.sqrt() * out + (1 - a).sqrt() * z
        if self.prediction_type == "sample":
            return (z - a.sqrt() * out) / (1 - a).sqrt()
        raise ValueError(f"unsupported prediction_type {self.prediction_type!r}")

    def x0(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``(z - sqrt(1 - abar) eps) / sqrt(abar)``."""
        a = self.abar(t, z)
        return (z - (1 - a).sqrt() * eps) / a.sqrt()

    def step(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step from ``t`` to the next timestep of the schedule."""
        t_int = int(torch.as_tensor(t).reshape(-1)[0])
        a_prev = self.abar(self.prev_timestep(t_int), z)
        x0 = self.x0(z, eps, t)
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def match_batch(x: torch.Tensor, b: int) -> torch.Tensor:
    """Repeat a batch-1 conditioning tensor to batch ``b``; anything else must already match."""
    if x.shape[0] == b:
        return x
    if x.shape[0] == 1:
        return x.expand(b, *x.shape[1:])
    if b % x.shape[0] == 0:
        return x.repeat_interleave(b // x.shape[0], dim=0)
    raise ValueError(f"prompt batch {x.shape[0]} does not match latent batch {b}")


def cfg_inputs(
    cond: PromptCond, b: int, guidance_scale: float
) -> tuple[torch.Tensor, bool]:
    """Conditioning for one UNet call: ``[uncond; cond]`` when CFG is on, else ``cond``."""
    emb = match_batch(cond.embeds, b)
    use_cfg = guidance_scale != 1.0 and cond.negative is not None
    if use_cfg:
        neg = match_batch(cond.negative, b)
        return torch.cat([neg, emb], dim=0), True
    return emb, False


def timestep_batch(t: torch.Tensor | int, n: int, device: torch.device) -> torch.Tensor:
    """A (n,) long tensor of the timestep(s) ``t``."""
    tt = torch.as_tensor(t, device=device).reshape(-1).to(torch.long)
    return tt.expand(n) if tt.numel() == 1 else tt.repeat(n // tt.numel())


def resolve_source(src: str | Path) -> tuple[str, Path | None]:
    """``(string to pass to from_pretrained, local folder or None for a hub id)``."""
    p = Path(src).expanduser()
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(p, "expected a model folder, got a file")
        return str(p), p
    s = str(src)
    if s.startswith((".", "/", "~")) or s.count("/") != 1:
        raise CheckpointError(src, "no such model folder (and not a hub id of the form owner/name)")
    return s, None


def load_part(loader: Any, src: str, local: Path | None, sub: str, **kwargs: Any) -> Any:
    """``loader.from_pretrained(src, subfolder=sub)`` with clear errors for missing parts."""
    if local is not None and not (local / sub).is_dir():
        raise CheckpointError(local / sub, f"missing '{sub}/' folder of the checkpoint")
    try:
        return loader.from_pretrained(src, subfolder=sub, **kwargs)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any loader failure becomes one clear line
        where = (local / sub) if local is not None else f"{src}/{sub}"
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(where, f"cannot load {sub}: {msg}") from e


def freeze(*modules: torch.nn.Module | None) -> None:
    """Eval mode and no parameter gradients: only latents and prompt embeddings get gradients."""
    for m in modules:
        if m is not None:
            m.eval()
            m.requires_grad_(False)


def boost_vocoder_init(vocoder: torch.nn.Module, generator: torch.Generator, gain: float = 1.0) -> None:
    """Re-initialise a (tiny, random) HiFi-GAN with fan-in scaled weights.

    The default init (std 0.01) makes a random vocoder output ~1e-6 and its gradients
    ~1e-14, which makes tiny-model tests meaningless; fan-in scaling keeps activations O(1).
    """
    with torch.no_grad():
        for m in vocoder.modules():
            if isinstance(m, torch.nn.Conv1d | torch.nn.ConvTranspose1d):
                w = m.weight
                if isinstance(m, torch.nn.ConvTranspose1d):
                    fan_in = max(1, w.shape[0] * w.shape[2] // m.stride[0])
                else:
                    fan_in = w.shape[1] * w.shape[2]
                std = gain * (2.0 / fan_in) ** 0.5
                w.copy_(torch.randn(w.shape, generator=generator) * std)
                if m.bias is not None:
                    m.bias.zero_()


@contextlib.contextmanager
def quiet_diffusers() -> Iterator[None]:
    """Silence diffusers' info/warning logs (e.g. the dtype notice from ``from_unet2d``)."""
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)
