"""The DPM-Solver++ sampler option (``set_sampler("dpm++")``, ``--sampler dpm++``).

Vanilla generation with it equals diffusers' own pipelines given a
``DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2)`` built from the
same scheduler config, with the same initial latents (the DDIM equivalence tests'
folders and helpers, ``test_conformance.py``); guided runs lower the binder loss; the
multistep history is reset per run; the default stays DDIM.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline, AudioLDMPipeline, DPMSolverMultistepScheduler, MotionAdapter
from tests.models.generators import test_conformance as conformance

from avbridge.align import AlignConfig, Condition, align
from avbridge.models.generators.animatediff import AnimateDiffGenerator
from avbridge.models.generators.audioldm import AudioLDMGenerator
from avbridge.models.generators.base import MediaSpec

# the DDIM conformance tests' saved tiny models (module-scoped fixtures) and quiet logs
audioldm_dir, sd_dirs, _quiet = conformance.audioldm_dir, conformance.sd_dirs, conformance._quiet
PROMPT, NEGATIVE, TOL = conformance.PROMPT, conformance.NEGATIVE, conformance.TOL

STEPS = 4  # first order, two second-order steps, the first-order last step
SPEC_A = MediaSpec(duration_s=1.0)
SPEC_V = MediaSpec(duration_s=0.5, fps=8.0, height=32, width=32)


def _dpm(gen) -> DPMSolverMultistepScheduler:
    return DPMSolverMultistepScheduler.from_config(gen.scheduler.config, algorithm_type="dpmsolver++",
                                                   solver_order=2)


def _run(gen, binder, spec, *, scale=2.5, guided=False, seed=0, steps=STEPS, **kw):
    cfg = AlignConfig(steps=steps, guidance_scale=scale, negative_prompt=NEGATIVE, **kw)
    return align(gen, binder, spec=spec, condition=None, prompt=PROMPT, config=cfg, seed=seed, guided=guided)


def test_audioldm_dpm_equals_audioldm_pipeline(audioldm_dir, fake_binder):
    gen = AudioLDMGenerator.from_pretrained(audioldm_dir, sampler="dpm++")
    assert gen.sampler == "dpm++"
    pipe = AudioLDMPipeline.from_pretrained(audioldm_dir)
    pipe.scheduler = _dpm(gen)
    z0 = gen.init_latents(SPEC_A, 1, torch.Generator(device="cpu").manual_seed(0))
    res = _run(gen, fake_binder, SPEC_A, scale=2.5)
    ref = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=2.5,
               audio_length_in_s=1.0, latents=z0.clone(), output_type="pt").audios
    ours = res.media["audio"]
    assert ours.shape == ref.shape == (1, 16000)
    assert float(ours.std()) > 1e-2
    assert float((ours - ref).abs().max()) <= TOL
    # the comparison can fail: DDIM on the same latents is far from it
    ddim = _run(AudioLDMGenerator.from_pretrained(audioldm_dir), fake_binder, SPEC_A, scale=2.5)
    assert float((ddim.media["audio"] - ref).abs().max()) > 100 * TOL


def test_animatediff_dpm_equals_animatediff_pipeline(sd_dirs, fake_binder):
    sd, motion = sd_dirs
    gen = AnimateDiffGenerator.from_pretrained(sd, motion_adapter=motion, sampler="dpm++")
    pipe = AnimateDiffPipeline.from_pretrained(sd, motion_adapter=MotionAdapter.from_pretrained(motion))
    pipe.scheduler = _dpm(gen)
    z0 = gen.init_latents(SPEC_V, 1, torch.Generator(device="cpu").manual_seed(0))
    res = _run(gen, fake_binder, SPEC_V, scale=7.5)
    ref = pipe(PROMPT, negative_prompt=NEGATIVE, num_inference_steps=STEPS, guidance_scale=7.5,
               num_frames=SPEC_V.num_frames, height=32, width=32, latents=z0.clone(), output_type="pt").frames
    ours = res.media["visual"]
    assert ours.shape == ref.shape == (1, 4, 3, 32, 32)
    assert float(ours.std()) > 1e-2
    assert float((ours - ref).abs().max()) <= TOL
    gen.set_sampler("ddim")
    ddim = _run(gen, fake_binder, SPEC_V, scale=7.5)
    assert float((ddim.media["visual"] - ref).abs().max()) > 100 * TOL


@pytest.mark.parametrize("modality", ["audio", "video"])
def test_guided_dpm_lowers_binder_loss(modality, fake_binder):
    """Seed 0 and these settings were fixed before the first run."""
    if modality == "audio":
        gen, spec, cond_kind = AudioLDMGenerator.tiny(seed=0, sampler="dpm++"), SPEC_A, "video"
    else:
        gen, spec, cond_kind = AnimateDiffGenerator.tiny(seed=0, sampler="dpm++"), SPEC_V, "audio"

    g = torch.Generator().manual_seed(5)
    if cond_kind == "video":
        cond = Condition("video", torch.rand(1, 8, 3, 16, 16, generator=g), rate=8.0)
    else:
        cond = Condition("audio", torch.rand(1, 16000, generator=g) * 2 - 1, rate=16000)
    cfg = AlignConfig(steps=6, guidance_scale=2.5, lr=0.1)
    kw = dict(spec=spec, condition=cond, prompt=PROMPT, config=cfg, seed=0)
    van = align(gen, fake_binder, guided=False, score=True, **kw)
    gui = align(gen, fake_binder, guided=True, **kw)
    assert gui.trace.final_loss < van.trace.final_loss - 1e-3


def test_default_is_ddim_and_switching_back_is_exact(audio_gen, fake_binder):
    assert audio_gen.sampler == "ddim"
    before = _run(audio_gen, fake_binder, SPEC_A)
    audio_gen.set_sampler("dpm++")
    try:
        dpm = _run(audio_gen, fake_binder, SPEC_A)
    finally:
        audio_gen.set_sampler("ddim")
    after = _run(audio_gen, fake_binder, SPEC_A)
    assert torch.equal(before.media["audio"], after.media["audio"])
    assert not torch.allclose(before.latents["audio"], dpm.latents["audio"], atol=1e-4)
    # and a default DDIM step is DDIMMath's, untouched
    ts = audio_gen.timesteps(5)
    z, eps = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    assert torch.equal(audio_gen.step(z, eps, ts[1]), audio_gen._ddim.step(z, eps, ts[1]))
    with pytest.raises(ValueError, match="unknown sampler"):
        audio_gen.set_sampler("euler")


def test_two_runs_in_a_row_are_identical(fake_binder):
    """The multistep history is reset by each run's ``timesteps(n)``."""
    gen = AnimateDiffGenerator.tiny(seed=0, modality="image", sampler="dpm++")
    spec = MediaSpec(duration_s=0.0, height=32, width=32)
    a = _run(gen, fake_binder, spec, scale=7.5)
    b = _run(gen, fake_binder, spec, scale=7.5)
    assert torch.equal(a.media["visual"], b.media["visual"])
    # without the reset the second run would start from the first run's last x0: a step at the
    # schedule's second timestep after a fresh timesteps() is first order, not second
    ts = gen.timesteps(STEPS)
    z, eps = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    gen.step(z, eps, ts[0])
    second = gen.step(z, eps, ts[1])
    gen.timesteps(STEPS)
    fresh = gen.step(z, eps, ts[1])
    assert not torch.allclose(second, fresh)


def test_load_components_and_cli_pass_the_sampler(monkeypatch, tmp_path):
    from avbridge import loading
    from avbridge.apps import cli
    from avbridge.errors import AvbridgeError
    from avbridge.io import media
    from avbridge.loading import load_components

    comps = load_components("tiny-random", need=("audio", "image"), sampler="dpm++")
    assert comps.audio.sampler == comps.image.sampler == "dpm++"
    assert load_components("tiny-random", need=("audio",)).audio.sampler == "ddim"
    with pytest.raises(AvbridgeError, match="unknown sampler"):
        load_components("tiny-random", need=("audio",), sampler="euler")
    p = cli.build_parser()
    assert p.parse_args(["v2a", "in.mp4", "-o", "out.wav"]).sampler == "ddim"
    assert p.parse_args(["v2a", "in.mp4", "-o", "out.wav", "--sampler", "dpm++"]).sampler == "dpm++"
    # the CLI hands it to load_components
    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    def fake_load(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(loading, "load_components", fake_load)
    video = tmp_path / "in.mp4"
    media.write_output(video, media.Video(np.full((8, 32, 32, 3), 128, np.uint8), 8.0, None))
    with pytest.raises(Stop):
        cli.main(["v2a", str(video), "-o", str(tmp_path / "o.wav"), "--preset", "tiny-random", "--quiet",
                  "--sampler", "dpm++"])
    assert seen["sampler"] == "dpm++"


def test_renoise_starts_a_fresh_history(fake_binder):
    """Refine re-noises to the level of ``t`` and steps on: that step is first order, as a
    fresh run's would be; a guided run with refine works with dpm++."""
    gen = AnimateDiffGenerator.tiny(seed=0, modality="image", sampler="dpm++")
    ts = gen.timesteps(STEPS)
    z, eps = torch.randn(1, 4, 4, 4), torch.randn(1, 4, 4, 4)
    gen.step(z, eps, ts[0])
    gen.step(z, eps, ts[1])
    zr = gen.renoise(z, ts[2], torch.Generator().manual_seed(1))
    after = gen.step(zr, eps, ts[2])
    gen.timesteps(STEPS)
    fresh = gen.step(zr, eps, ts[2])
    assert torch.equal(after, fresh)
    spec = MediaSpec(duration_s=0.0, height=32, width=32)
    res = _run(gen, fake_binder, spec, guided=True, refine=0.5, lr=0.1)
    assert torch.isfinite(res.media["visual"]).all()
