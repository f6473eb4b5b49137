"""The stateless DDIM arithmetic agrees with diffusers and handles v-prediction."""

from __future__ import annotations

import copy

import torch
from diffusers import DDIMScheduler

from avbridge.models.generators._common import DDIMMath


def test_step_matches_diffusers_ddim(audio_gen):
    """For AudioLDM's "leading" schedule our step is exactly DDIMScheduler.step (eta 0)."""
    sched = copy.deepcopy(audio_gen.scheduler)
    sched.set_timesteps(10)
    ts = audio_gen.timesteps(10)
    assert torch.equal(ts, sched.timesteps)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 4, 8, 16, generator=g)
    for t in ts:
        eps = torch.randn(z.shape, generator=g)
        ours = audio_gen.step(z, eps, t)
        ref = sched.step(eps, t, z, eta=0.0).prev_sample
        assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5)
        z = ours


def test_linspace_schedule_steps_to_next_timestep(video_gen):
    ts = video_gen.timesteps(25)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 25
    ddim = video_gen._ddim
    assert ddim.prev_timestep(int(ts[3])) == int(ts[4])
    assert ddim.prev_timestep(int(ts[-1])) == -1


def test_x0_identity_and_v_prediction():
    """x0 recovers the clean sample from (z_t, eps); v outputs are converted to eps."""
    cfg = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 4, 6, 6, generator=g), torch.randn(2, 4, 6, 6, generator=g)
    t = torch.tensor(600)
    for pred in ("epsilon", "v_prediction"):
        sched = DDIMScheduler(**cfg, prediction_type=pred)
        ddim = DDIMMath(sched)
        zt = sched.add_noise(x0, noise, t.reshape(1))
        out = noise if pred == "epsilon" else sched.get_velocity(x0, noise, t.reshape(1))
        eps = ddim.model_output_to_eps(out, zt, t)
        assert torch.allclose(eps, noise, atol=1e-4)
        assert torch.allclose(ddim.x0(zt, eps, t), x0, atol=1e-4)


def test_step_is_differentiable_and_pure(audio_gen):
    audio_gen.timesteps(4)
    z = torch.randn(1, 4, 8, 16, requires_grad=True)
    eps = torch.randn(1, 4, 8, 16)
    t = audio_gen.timesteps(4)[1]
    a = audio_gen.step(z, eps, t)
    b = audio_gen.step(z, eps, t)
    assert torch.equal(a, b)
    a.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_renoise_matches_diffusers_add_noise_and_is_seeded(audio_gen):
    """``renoise`` is DDIMScheduler.add_noise with noise drawn from the caller's generator."""
    ts = audio_gen.timesteps(10)
    z0 = torch.randn(2, 4, 8, 16, generator=torch.Generator().manual_seed(1))
    t = ts[4]
    ours = audio_gen.renoise(z0, t, torch.Generator().manual_seed(7))
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(7))
    ref = audio_gen.scheduler.add_noise(z0, noise, t.reshape(1))
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5)
    again = audio_gen.renoise(z0, t, torch.Generator().manual_seed(7))
    assert torch.equal(ours, again)
    assert not torch.equal(ours, audio_gen.renoise(z0, t, torch.Generator().manual_seed(8)))
