"""Vanilla generation equals diffusers' own reference pipelines on the same weights.

Tiny random models are saved in the diffusers layout, loaded once by our adapters
(``from_pretrained``) and once by diffusers' ``AudioLDMPipeline``, ``AnimateDiffPipeline`` (an
SD folder plus a ``MotionAdapter`` folder) and ``StableDiffusionPipeline``. Both sides get the
same prompt, negative prompt, CFG scale, scheduler, step count and initial latents (ours
drawn by ``align``'s seeded generator, passed to diffusers with ``latents=``), so text
encoders, CFG arithmetic, scheduler set-up, latent scaling, VAE decode and the vocoder are
all inside one comparison. Tolerance: 1e-5 absolute on the decoded media.

One difference is by design (docs/generators.md, "What is checked against what"): for
``timestep_spacing="linspace"`` (AnimateDiff's recipe) our DDIM steps to the next timestep
of the schedule, while ``DDIMScheduler.step`` steps to ``t - 1000 // n``, which is not on
the schedule. The video/image tests therefore run twice: with "leading" spacing, where
the two rules coincide, against the unmodified pipeline; and with the shipped "linspace"
recipe against the pipeline whose scheduler uses the schedule's successor (everything
else is diffusers' code). A third test shows that the rule is the only difference.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from diffusers import (
    AnimateDiffPipeline,
    AudioLDMPipeline,
    DDIMScheduler,
    MotionAdapter,
    StableDiffusionPipeline,
)
from diffusers.utils import logging as diffusers_logging

from avbridge.align import AlignConfig, AlignResult, align
from avbridge.models.generators._common import boost_vocoder_init
from avbridge.models.generators.animatediff import AnimateDiffGenerator, animatediff_config
from avbridge.models.generators.audioldm import AudioLDMGenerator
from avbridge.models.generators.base import MediaSpec

TOL = 1e-5
PROMPT, NEGATIVE = "a dog barking", "rain"
STEPS = 3


@pytest.fixture(autouse=True)
def _quiet():
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    yield
    diffusers_logging.enable_progress_bar()
    diffusers_logging.set_verbosity(level)


class SuccessorDDIM(DDIMScheduler):
    """``DDIMScheduler`` whose step lands on the schedule's next timestep instead of
    ``t - T // n``: diffusers' own step arithmetic with only the target alpha-bar replaced."""

    def step(self, model_output, timestep, sample, *args, **kwargs):  # type: ignore[override]
        ts = [int(x) for x in self.timesteps]
        t = int(timestep)
        i = ts.index(t)
        prev_diffusers = t - self.config.num_train_timesteps // self.num_inference_steps
        if i + 1 < len(ts) and prev_diffusers >= 0:
            saved = self.alphas_cumprod
            patched = saved.clone()
            patched[prev_diffusers] = saved[ts[i + 1]]
            self.alphas_cumprod = patched
            try:
                return super().step(model_output, timestep, sample, *args, **kwargs)
            finally:
                self.alphas_cumprod = saved
        if i + 1 < len(ts):  # the schedule continues but t - T // n < 0: not reached here
            raise AssertionError(f"unexpected schedule {ts}")
        return super().step(model_output, timestep, sample, *args, **kwargs)


def _vanilla(gen, binder, spec: MediaSpec, scale: float, seed: int = 0) -> tuple[torch.Tensor, AlignResult]:
    """(initial latents, result) of ``align(..., guided=False)``: the latents are what
    ``align`` draws from ``seed``, computed again here to hand them to diffusers."""
    z0 = gen.init_latents(spec, 1, torch.Generator(device="cpu").manual_seed(seed))
    cfg = AlignConfig(steps=STEPS, guidance_scale=scale, negative_prompt=NEGATIVE)
    res = align(gen, binder, spec=spec, condition=None, prompt=PROMPT, config=cfg, seed=seed, guided=False)
    return z0, res


# ----------------------------------------------------------------------------------- audio


@pytest.fixture(scope="module")
def audioldm_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("audioldm")
    gen = AudioLDMGenerator.tiny(seed=3)
    # Gain 0.7 keeps the random vocoder out of tanh saturation (at the tiny preset's 1.0 most
    # samples are +-1, and equal waveforms would prove little).
    boost_vocoder_init(gen.vocoder, torch.Generator().manual_seed(4), gain=0.7)
    gen.save_pretrained(d)
    return d


def test_audioldm_vanilla_equals_audioldm_pipeline(audioldm_dir, fake_binder):
    gen = AudioLDMGenerator.from_pretrained(audioldm_dir)
    pipe = AudioLDMPipeline.from_pretrained(audioldm_dir)
    mels: list[torch.Tensor] = []
    pipe.vocoder.register_forward_pre_hook(lambda _m, args: mels.append(args[0].detach().clone()))
    spec = MediaSpec(duration_s=1.0)
    z0, res = _vanilla(gen, fake_binder, spec, 2.5)
    ours = res.media["audio"]
    ref = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=2.5,
               audio_length_in_s=1.0, latents=z0.clone(), output_type="pt").audios
    assert ours.shape == ref.shape == (1, 16000)
    # the comparison means something: an unsaturated, non-trivial waveform
    assert float(ours.std()) > 1e-2 and float((ours.abs() > 0.99).float().mean()) < 0.01
    assert float((ours - ref).abs().max()) <= TOL
    # the vocoder's input, before tanh: the VAE's log-mel of the final latents
    with torch.no_grad():
        mel = gen.decode_mel(res.latents["audio"])[:, 0]
    assert float((mel - mels[0]).abs().max()) <= TOL
    # and it is sensitive to what it checks: another CFG scale moves it far beyond the tolerance
    other = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=4.0,
                 audio_length_in_s=1.0, latents=z0.clone(), output_type="pt").audios
    assert float((other - ref).abs().max()) > 100 * TOL


# ---------------------------------------------------------------------------- video, image


@pytest.fixture(scope="module")
def sd_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """An SD-layout folder (image UNet) and a MotionAdapter folder with random motion weights."""
    d = tmp_path_factory.mktemp("animatediff")
    AnimateDiffGenerator.tiny(seed=3, modality="image").save_pretrained(d / "sd")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        MotionAdapter(**animatediff_config("tiny")["motion_adapter"]).save_pretrained(d / "motion")
    return d / "sd", d / "motion"


def _leading() -> DDIMScheduler:
    return DDIMScheduler(**{**animatediff_config("tiny")["scheduler"], "timestep_spacing": "leading"})


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
def test_animatediff_vanilla_equals_animatediff_pipeline(sd_dirs, fake_binder, spacing):
    sd, motion = sd_dirs
    sched = _leading() if spacing == "leading" else None  # None: the shipped linspace recipe
    gen = AnimateDiffGenerator.from_pretrained(sd, motion_adapter=motion, scheduler=sched)
    assert gen.scheduler.config.timestep_spacing == spacing
    pipe = AnimateDiffPipeline.from_pretrained(sd, motion_adapter=MotionAdapter.from_pretrained(motion))
    ref_cls = DDIMScheduler if spacing == "leading" else SuccessorDDIM
    pipe.scheduler = ref_cls.from_config(gen.scheduler.config)
    spec = MediaSpec(duration_s=0.5, fps=8.0, height=32, width=32)
    z0, res = _vanilla(gen, fake_binder, spec, 7.5)
    ours = res.media["visual"]
    ref = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=7.5,
               num_frames=spec.num_frames, height=32, width=32, latents=z0.clone(), output_type="pt").frames
    assert ours.shape == ref.shape == (1, 4, 3, 32, 32)
    assert float(ours.std()) > 1e-2
    assert float((ours - ref).abs().max()) <= TOL


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
def test_stable_diffusion_image_mode_equals_sd_pipeline(sd_dirs, fake_binder, spacing):
    """A2I's generator (the SD UNet without motion modules) is Stable Diffusion."""
    sd, _ = sd_dirs
    sched = _leading() if spacing == "leading" else None
    gen = AnimateDiffGenerator.from_pretrained(sd, modality="image", scheduler=sched)
    pipe = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    ref_cls = DDIMScheduler if spacing == "leading" else SuccessorDDIM
    pipe.scheduler = ref_cls.from_config(gen.scheduler.config)
    spec = MediaSpec(duration_s=0.0, height=32, width=32)
    z0, res = _vanilla(gen, fake_binder, spec, 7.5)
    ours = res.media["visual"]
    ref = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=7.5,
               height=32, width=32, latents=z0.clone(), output_type="pt").images
    assert ours.shape == ref.shape == (1, 3, 32, 32)
    assert float(ours.std()) > 1e-2
    assert float((ours - ref).abs().max()) <= TOL


def test_linspace_difference_is_the_step_target_only(sd_dirs, fake_binder):
    """With the shipped linspace recipe, unmodified ``DDIMScheduler.step`` lands on
    ``t - T // n`` and the images differ; with that target substituted they are equal
    (previous test). The by-design difference shrinks with the step count."""
    sd, _ = sd_dirs
    gen = AnimateDiffGenerator.from_pretrained(sd, modality="image")
    pipe = StableDiffusionPipeline.from_pretrained(sd, safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(gen.scheduler.config)
    spec = MediaSpec(duration_s=0.0, height=32, width=32)
    z0, res = _vanilla(gen, fake_binder, spec, 7.5)
    ours = res.media["visual"]
    ref = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=7.5,
               height=32, width=32, latents=z0.clone(), output_type="pt").images
    assert float((ours - ref).abs().max()) > 100 * TOL
    sched = copy.deepcopy(pipe.scheduler)
    sched.set_timesteps(STEPS)
    ts = [int(t) for t in sched.timesteps]
    assert [ts[i] - ts[i + 1] for i in range(STEPS - 1)] != [1000 // STEPS] * (STEPS - 1)
