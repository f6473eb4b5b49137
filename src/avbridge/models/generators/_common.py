"""Pieces shared by the adapters: DDIM and DPM-Solver++ steps, CFG, loading helpers, a base mixin."""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import torch
from accelerate.hooks import ModelHook, add_hook_to_module, remove_hook_from_module
from accelerate.utils import send_to_device
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from diffusers.schedulers.scheduling_dpmsolver_multistep import DPMSolverMultistepScheduler
from diffusers.utils import logging as diffusers_logging

from avbridge.errors import CheckpointError
from avbridge.models.generators.base import SAMPLERS, PromptCond
from avbridge.models.generators.tokenizers import Flavour, build_word_tokenizer


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
        return t - self.scheduler.config["num_train_timesteps"] // 50

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

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``sqrt(abar) x0 + sqrt(1 - abar) noise``: a clean latent brought to the noise level of ``t``."""
        a = self.abar(t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def step(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One deterministic DDIM step from ``t`` to the next timestep of the schedule."""
        t_int = int(torch.as_tensor(t).reshape(-1)[0])
        a_prev = self.abar(self.prev_timestep(t_int), z)
        x0 = self.x0(z, eps, t)
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


class DPMSolverMath:
    """Deterministic DPM-Solver++ (2M) steps, as diffusers' ``DPMSolverMultistepScheduler``
    with ``algorithm_type="dpmsolver++"``, ``solver_order=2`` built from the model's scheduler
    config (same betas, ``timestep_spacing`` and ``steps_offset``).

    The solver is multistep: each step reuses the clean-latent estimate (x0) of the step
    before. That history lives here, keyed by timestep: ``timesteps(n)`` (a new run) and
    ``reset()`` (a re-noised latent) clear it, and ``step(z, eps, t)`` computes x0 from the
    ``z`` and ``eps`` it is given, so guided updates of ``z`` between the UNet call and the
    step are taken into account as in DDIM. The first step after a reset, and the last step
    (to sigma 0), are first order, as in diffusers.
    """

    def __init__(self, scheduler: Any):
        self.scheduler = DPMSolverMultistepScheduler.from_config(
            scheduler.config, algorithm_type="dpmsolver++", solver_order=2
        )
        self._sigma: dict[int, tuple[float, float]] = {}  # t -> (sigma at t, sigma after t)
        self._prev: dict[int, int] = {}  # t -> the timestep before it in the schedule
        self._x0: dict[int, torch.Tensor] = {}

    def timesteps(self, n: int) -> torch.Tensor:
        """The descending schedule of ``n`` steps, as ``DPMSolverMultistepScheduler.set_timesteps``
        gives it; starts a new run (clears the multistep history)."""
        if n < 1:
            raise ValueError(f"number of steps must be >= 1, got {n}")
        sched = copy.deepcopy(self.scheduler)
        sched.set_timesteps(n)
        ts = [int(x) for x in sched.timesteps]
        sig = [float(x) for x in sched.sigmas]  # float32 values, as diffusers steps with them
        self._sigma = {t: (sig[i], sig[i + 1]) for i, t in enumerate(ts)}
        self._prev = {t: ts[i - 1] for i, t in enumerate(ts) if i > 0}
        self.reset()
        return torch.tensor(ts, dtype=torch.long)

    def reset(self) -> None:
        """Forget the multistep history: the next step is first order."""
        self._x0 = {}

    @staticmethod
    def _alpha_sigma(sigma: float) -> tuple[float, float]:
        alpha = 1.0 / (sigma**2 + 1.0) ** 0.5
        return alpha, sigma * alpha

    def step(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """One DPM-Solver++ (2M) step from ``t`` to the next timestep of the last schedule."""
        t_int = int(torch.as_tensor(t).reshape(-1)[0])
        if t_int not in self._sigma:
            raise ValueError(f"timestep {t_int} is not in the schedule; call timesteps(n) first")
        s0, s_next = self._sigma[t_int]
        alpha_s0, sigma_s0 = self._alpha_sigma(s0)
        x0 = (z.to(torch.float32) - sigma_s0 * eps.to(torch.float32)) / alpha_s0
        prev = self._prev.get(t_int)
        m1 = self._x0.get(prev) if prev is not None else None
        self._x0 = {t_int: x0.detach()}
        if s_next == 0.0:  # the last step, to sigma 0: first order, which is x0 itself
            return x0.to(z.dtype)
        alpha_t, sigma_t = self._alpha_sigma(s_next)
        lam_t = math.log(alpha_t) - math.log(sigma_t)
        lam_s0 = math.log(alpha_s0) - math.log(sigma_s0)
        h = lam_t - lam_s0
        out = (sigma_t / sigma_s0) * z.to(torch.float32) - (alpha_t * (math.exp(-h) - 1.0)) * x0
        if m1 is not None and m1.shape == x0.shape and prev is not None:
            alpha_s1, sigma_s1 = self._alpha_sigma(self._sigma[prev][0])
            r0 = (lam_s0 - (math.log(alpha_s1) - math.log(sigma_s1))) / h
            d1 = (1.0 / r0) * (x0 - m1.to(x0.device))
            out = out - 0.5 * (alpha_t * (math.exp(-h) - 1.0)) * d1
        return out.to(z.dtype)


def _channel_stat(vae: Any, name: str, like: torch.Tensor) -> torch.Tensor | None:
    v = getattr(vae.config, name, None)
    if v is None:
        return None
    return torch.as_tensor(v, dtype=like.dtype, device=like.device).view(1, -1, *[1] * (like.dim() - 2))


def vae_to_unet_latents(vae: Any, z: torch.Tensor) -> torch.Tensor:
    """Raw VAE latents (B, C, ...) -> the UNet's space: ``(z - latents_mean) * scaling_factor
    / latents_std``, diffusers' convention; the per-channel stats apply only when the VAE's
    config sets them (the world's audio VAE sets ``latents_mean``; SD and AudioLDM do not)."""
    mean, std = _channel_stat(vae, "latents_mean", z), _channel_stat(vae, "latents_std", z)
    z = (z - mean if mean is not None else z) * float(vae.config.scaling_factor)
    return z / std if std is not None else z


def unet_to_vae_latents(vae: Any, z: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`vae_to_unet_latents` (what goes into ``vae.decode``)."""
    mean, std = _channel_stat(vae, "latents_mean", z), _channel_stat(vae, "latents_std", z)
    z = (z * std if std is not None else z) / float(vae.config.scaling_factor)
    return z + mean if mean is not None else z


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
    negative = cond.negative if guidance_scale != 1.0 else None
    if negative is not None:
        return torch.cat([match_batch(negative, b), emb], dim=0), True
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


class ModelOffloadHook(ModelHook):
    """Accelerate hook of model CPU offload: the module is kept on the CPU and moved to
    ``device`` (with its inputs) when it runs; a run without gradients first moves its
    ``peers`` (the adapter's other modules) back to the CPU.

    A run under gradients offloads nothing: a live autograd graph may still need the weights
    of a module that ran before it (the VAE between the guided decode and the backward, the
    UNet while a prompt is tuned), and moving them would change what backward reads. So the
    guided steps keep the modules they differentiate through on ``device`` together; every
    other forward holds one module at a time, as diffusers' ``enable_model_cpu_offload``.
    """

    def __init__(self, device: torch.device, peers: list[torch.nn.Module]):
        super().__init__()
        self.device, self.peers = device, peers

    def init_hook(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to("cpu")

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        if not torch.is_grad_enabled():
            for p in self.peers:
                if p is not module:
                    p.to("cpu")
        module.to(self.device)
        return send_to_device(args, self.device), send_to_device(kwargs, self.device)


_A = TypeVar("_A", bound="LatentDiffusionAdapter")


class LatentDiffusionAdapter:
    """What the UNet + VAE + text-encoder adapters have in common (a mixin, not a protocol).

    A subclass sets ``unet``, ``vae``, ``text_encoder``, ``scheduler`` and ``_ddim``
    (a :class:`DDIMMath`) and lists in ``_movable`` the attribute names of the modules that
    :meth:`to` moves. The protocol methods delegate to ``_ddim``, or, after
    ``set_sampler("dpm++")``, ``timesteps``/``step`` to a :class:`DPMSolverMath`.
    """

    _movable: tuple[str, ...] = ("unet", "vae", "text_encoder")
    unet: Any
    vae: Any
    tokenizer: Any
    max_text_length: int
    scheduler: DDIMScheduler
    _ddim: DDIMMath
    _dpm: DPMSolverMath | None = None

    _offload_device: torch.device | None = None

    @property
    def device(self) -> torch.device:
        """Where the computation runs (with CPU offload: the execution device, not the CPU)."""
        if self._offload_device is not None:
            return self._offload_device
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def latent_channels(self) -> int:
        return int(self.unet.config.in_channels)

    def to(self: _A, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> _A:
        """Move all modules (in place) and return self. A device ends CPU offload."""
        if device is not None and self._offload_device is not None:
            self.disable_model_cpu_offload()
        with quiet_diffusers():
            for name in self._movable:
                m = getattr(self, name)
                if device is not None:
                    m.to(device)
                if dtype is not None:
                    m.to(dtype)
        return self

    def enable_model_cpu_offload(self: _A, device: torch.device | str = "cuda") -> _A:
        """Model CPU offload (accelerate hooks, see :class:`ModelOffloadHook`): the modules
        live on the CPU and each is moved to ``device`` while it runs; outputs are unchanged.

        Saves accelerator memory at the cost of transfers; the binder is not offloaded.
        On ``device="cpu"`` the hooks run but move nothing (how the tests check equality).
        """
        dev = torch.device(device)
        self.disable_model_cpu_offload()
        mods = [getattr(self, n) for n in self._movable]
        for m in mods:
            add_hook_to_module(m, ModelOffloadHook(dev, mods))
        self._offload_device = dev
        return self

    def disable_model_cpu_offload(self: _A) -> _A:
        """Remove the offload hooks; the modules stay where they are (on the CPU)."""
        if self._offload_device is not None:
            for name in self._movable:
                remove_hook_from_module(getattr(self, name))
            self._offload_device = None
        return self

    def enable_vae_slicing(self: _A, enabled: bool = True) -> _A:
        """Decode a batch (for video: the frames) one item at a time: same output, lower peak
        memory of the VAE decode (diffusers' ``AutoencoderKL.enable_slicing``)."""
        if enabled:
            self.vae.enable_slicing()
        else:
            self.vae.disable_slicing()
        return self

    def enable_vae_tiling(self: _A, enabled: bool = True) -> _A:
        """Decode large latents in overlapping tiles blended at the seams (diffusers'
        ``AutoencoderKL.enable_tiling``): lower memory for large frames or long spectrograms,
        but an approximation of the full decode; inputs smaller than one tile are unchanged."""
        if enabled:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()
        return self

    def enable_gradient_checkpointing(self: _A, enabled: bool = True) -> _A:
        """Recompute UNet/VAE activations in backward: less memory for guided steps at full size."""
        for m in (self.unet, self.vae):
            if enabled:
                m.enable_gradient_checkpointing()
            else:
                m.disable_gradient_checkpointing()
        return self

    def _tokenize(self, prompts: list[str]) -> Any:
        """Token ids (and attention mask) padded/truncated to ``max_text_length``, as tensors."""
        return self.tokenizer(
            list(prompts), padding="max_length", max_length=self.max_text_length,
            truncation=True, return_tensors="pt",
        )

    def _save_parts(self, directory: str | Path, names: tuple[str, ...], index: dict[str, Any]) -> Path:
        """Save each part to ``directory/<name>/`` and write ``index`` as ``model_index.json``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name in names:
            getattr(self, name).save_pretrained(d / name)
        (d / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        return d

    def _noise(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Gaussian latents of ``shape`` drawn on ``generator``'s device, scaled for the scheduler."""
        z = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        return z.to(self.device) * float(self.scheduler.init_noise_sigma)

    @property
    def sampler(self) -> str:
        """The sampler that :meth:`timesteps` / :meth:`step` follow: "ddim" (default) or "dpm++"."""
        return "dpm++" if self._dpm is not None else "ddim"

    def set_sampler(self: _A, name: str) -> _A:
        """Step with deterministic DDIM (``"ddim"``, the default) or DPM-Solver++ 2M (``"dpm++"``,
        diffusers' ``DPMSolverMultistepScheduler`` from the model's scheduler config); returns self."""
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
        self._dpm = DPMSolverMath(self.scheduler) if name == "dpm++" else None
        return self

    def timesteps(self, n: int) -> torch.Tensor:
        if self._dpm is not None:
            return self._dpm.timesteps(n)
        return self._ddim.timesteps(n)

    def predict_x0(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._ddim.x0(z, eps, t)

    def step(self, z: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self._dpm is not None:
            return self._dpm.step(z, eps, t)
        return self._ddim.step(z, eps, t)

    def renoise(self, z0: torch.Tensor, t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``z0`` brought to the noise level of ``t`` (for DPM-Solver++ also a fresh history:
        ``alpha_t z0 + sigma_t noise`` is the same latent, ``alpha_t = sqrt(abar_t)``)."""
        shape = tuple(z0.shape)
        noise = torch.randn(shape, generator=generator, device=generator.device, dtype=torch.float32)
        if self._dpm is not None:
            self._dpm.reset()
        return self._ddim.add_noise(z0, noise.to(device=z0.device, dtype=z0.dtype), t)


def prompt_pair(
    prompts: list[str] | str,
    negative: list[str] | str | None,
    embed: Callable[[list[str]], torch.Tensor],
) -> PromptCond:
    """``PromptCond(embed(prompts), embed(negatives))``; a str is one prompt, negatives default to ``""``."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if negative is None:
        negative = [""] * len(prompts)
    elif isinstance(negative, str):
        negative = [negative] * len(prompts)
    if len(negative) != len(prompts):
        raise ValueError(f"{len(negative)} negative prompts for {len(prompts)} prompts")
    return PromptCond(embed(prompts), embed(negative))


def combine_cfg(out: torch.Tensor, use_cfg: bool, guidance_scale: float) -> torch.Tensor:
    """``uncond + s * (cond - uncond)`` of a ``[uncond; cond]`` UNet output (as is without CFG)."""
    if not use_cfg:
        return out
    uncond, text = out.chunk(2)
    return uncond + guidance_scale * (text - uncond)


def config_tokenizer(
    config: dict[str, dict[str, Any]], tokenizer: Any, words: list[str] | None, flavour: Flavour
) -> tuple[Any, dict[str, Any]]:
    """``(tokenizer, text-encoder config)`` for a random build: ``tokenizer`` or a word tokenizer
    over ``words``, with the encoder's vocabulary resized to a word tokenizer built from ``words``."""
    tok = tokenizer or build_word_tokenizer(
        words, flavour, model_max_length=config["tokenizer"]["model_max_length"]
    )
    te_cfg = dict(config["text_encoder"])
    if tokenizer is None and words is not None:
        te_cfg["vocab_size"] = len(tok)
    return tok, te_cfg


def apply_memory_options(
    generator: Any,
    *,
    offload: torch.device | str | None = None,
    vae_slicing: bool = False,
    vae_tiling: bool = False,
) -> Any:
    """Turn on the low-memory options a generator supports; return it (others pass through).

    ``offload``: the execution device of model CPU offload (``enable_model_cpu_offload``);
    ``vae_slicing`` / ``vae_tiling``: the VAE decode options. What the CLI's ``--offload`` and
    ``--vae-slicing`` ask of every loaded generator.
    """
    if offload is not None and hasattr(generator, "enable_model_cpu_offload"):
        generator.enable_model_cpu_offload(offload)
    if vae_slicing and hasattr(generator, "enable_vae_slicing"):
        generator.enable_vae_slicing()
    if vae_tiling and hasattr(generator, "enable_vae_tiling"):
        generator.enable_vae_tiling()
    return generator
