"""Semantics of the aligner loop, on small protocol-complete components (see conftest)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from avbridge.align import (
    AlignConfig,
    Condition,
    align,
    align_joint,
    envelope_projection,
    frame_envelope_projection,
)
from avbridge.errors import AvbridgeError
from avbridge.models.generators.base import MediaSpec
from conftest import FakeBinder, FakeGenerator

SPEC_A = MediaSpec(duration_s=2.0)
SPEC_V = MediaSpec(duration_s=2.0, fps=4, height=16, width=16)


def video_condition(seed: int = 5) -> Condition:
    g = torch.Generator().manual_seed(seed)
    return Condition("video", torch.rand(1, 8, 3, 16, 16, generator=g), rate=4.0)


def v2a(gen, binder, *, guided=True, seed=0, **kw):
    cfg = AlignConfig(**{"steps": 10, "lr": 0.1, **kw})
    return align(gen, binder, spec=SPEC_A, condition=video_condition(), prompt="a dog",
                 config=cfg, seed=seed, guided=guided)


@pytest.mark.parametrize("update", ["adam-sign", "grad", "norm-grad"])
def test_guidance_lowers_final_loss_over_seeds(update):
    gen, binder = FakeGenerator("audio", seed=1), FakeBinder()
    lr = 2.0 if update == "grad" else 0.1
    for seed in range(4):
        van = v2a(gen, binder, guided=False, seed=seed)
        gui = v2a(gen, binder, guided=True, seed=seed, update=update, lr=lr)
        assert gui.trace.final_loss < van.trace.final_loss - 1e-3, seed


def test_joint_guidance_lowers_triangle_loss_over_seeds():
    ga, gv, binder = FakeGenerator("audio", seed=1), FakeGenerator("video", seed=2), FakeBinder()
    cfg = AlignConfig(steps=10, lr={"audio": 0.1, "visual": 0.05}, prompt_lr={"audio": 0, "visual": 0.01})
    for seed in range(3):
        kw = dict(audio_spec=SPEC_A, video_spec=SPEC_V, prompt="a cat", config=cfg, seed=seed)
        van = align_joint(ga, gv, binder, guided=False, **kw)
        gui = align_joint(ga, gv, binder, guided=True, **kw)
        assert set(gui.trace.final_terms) == {"av", "vt", "at"}
        assert gui.trace.final_loss < van.trace.final_loss - 1e-3, seed
        assert not torch.equal(gui.latents["audio"], van.latents["audio"])
        assert not torch.equal(gui.latents["visual"], van.latents["visual"])


def test_same_seed_same_output_and_seed_matters(fake_audio_gen, fake_binder):
    a = v2a(fake_audio_gen, fake_binder, seed=3)
    b = v2a(fake_audio_gen, fake_binder, seed=3)
    c = v2a(fake_audio_gen, fake_binder, seed=4)
    assert torch.equal(a.media["audio"], b.media["audio"])
    assert a.trace.step_loss == b.trace.step_loss
    assert not torch.equal(a.media["audio"], c.media["audio"])


def test_condition_and_text_embedded_once(fake_audio_gen, fake_binder):
    res = v2a(fake_audio_gen, fake_binder, inner_steps=3, window=(0.5, 0.8))
    guided = res.trace.guided_steps
    assert guided == [5, 6, 7]
    assert fake_binder.calls["video"] == 1  # the condition, once
    assert fake_binder.calls["text"] == 1
    # N inner steps embed the x0 prediction N times per guided step, plus the final output.
    assert fake_binder.calls["audio"] == 3 * len(guided) + 1
    assert [len(x) for x in res.trace.inner_loss] == [3, 3, 3]


def test_no_update_outside_window(fake_binder):
    def run(guided: bool) -> list[torch.Tensor]:
        gen = FakeGenerator("audio", seed=1)
        outs: list[torch.Tensor] = []
        step = gen.step
        gen.step = lambda z, eps, t: outs.append(step(z, eps, t)) or outs[-1]
        v2a(gen, fake_binder, guided=guided, window=(0.5, 0.8))
        return outs

    g, v = run(True), run(False)
    for i in range(5):
        assert torch.equal(g[i], v[i]), i
    assert not torch.equal(g[5], v[5])


@pytest.mark.parametrize("update", ["grad", "adam-sign", "norm-grad"])
def test_update_rule_and_eps_constant_gradient(fake_binder, update):
    """z moves by -lr * grad_x0 / sqrt(abar) (plain), that scaled to unit RMS per sample
    (norm-grad) or by ~lr * sign (fresh Adam)."""
    gen = FakeGenerator("audio", seed=1)
    seen: list[tuple[torch.Tensor, torch.Tensor, float]] = []
    grads: list[torch.Tensor] = []
    px0 = gen.predict_x0

    def spy(z, eps, t):
        x0 = px0(z, eps, t)
        if x0.requires_grad:
            seen.append((z, z.detach().clone(), float(gen._abar(t))))
            x0.register_hook(lambda g: grads.append(g.clone()))
        return x0

    gen.predict_x0 = spy
    lr = 0.05
    v2a(gen, fake_binder, update=update, lr=lr, inner_steps=2, window=(0.5, 0.6))
    assert len(seen) == 2 and len(grads) == 2
    (leaf, z0, abar), (_, z1, _) = seen
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0  # gradients reach the latents
    g = grads[0] / abar**0.5
    delta = z1 - z0
    if update == "grad":
        assert torch.allclose(delta, -lr * g, atol=1e-6)
    elif update == "norm-grad":
        rms = g.pow(2).mean(dim=tuple(range(1, g.dim())), keepdim=True).sqrt()
        assert torch.allclose(delta, -lr * g / rms, atol=1e-5)
        assert torch.allclose(delta.pow(2).mean().sqrt(), torch.tensor(lr), rtol=1e-4)
    else:
        mask = g.abs() > 1e-6
        assert torch.allclose(delta[mask], -lr * torch.sign(g[mask]), atol=1e-3)


def test_prompt_tuning_reaches_prompt_and_is_shared(fake_binder):
    gen = FakeGenerator("audio", seed=1)
    seen: list[torch.Tensor] = []
    pe = gen.predict_eps

    def spy(z, t, cond, scale):
        seen.append(cond.embeds.detach().clone())
        return pe(z, t, cond, scale)

    gen.predict_eps = spy
    with torch.no_grad():
        y0 = gen.encode_prompt(["a dog"]).embeds
    res = v2a(gen, fake_binder, prompt_lr=0.01, window=(0.5, 0.6))
    assert not torch.allclose(res.prompt_embeds["audio"], y0)
    # steps 0..5 see the original prompt; step 6 onward the tuned one, unchanged to the end.
    assert torch.allclose(seen[0], y0) and torch.allclose(seen[5], y0)
    for later in seen[6:]:
        assert torch.equal(later, res.prompt_embeds["audio"])
    # vanilla never tunes
    van = v2a(FakeGenerator("audio", seed=1), fake_binder, guided=False, prompt_lr=0.01)
    assert torch.allclose(van.prompt_embeds["audio"], y0)


def test_eps_reuse_vs_recompute_costs(fake_binder):
    counts = {}
    for recompute in (False, True):
        gen = FakeGenerator("audio", seed=1)
        res = v2a(gen, fake_binder, recompute_eps=recompute, inner_steps=2)
        counts[recompute] = (gen.calls["predict_eps"], len(res.trace.guided_steps))
    (plain, n_guided), (rec, _) = counts[False], counts[True]
    assert plain == 10  # one UNet call per step, guided or not
    assert rec == 10 + 2 * n_guided


def test_grad_through_unet_runs_and_lowers_loss(fake_binder):
    for seed in range(2):
        van = v2a(FakeGenerator("audio", seed=1), fake_binder, guided=False, seed=seed)
        gui = v2a(FakeGenerator("audio", seed=1), fake_binder, grad_through_unet=True, seed=seed)
        assert gui.trace.final_loss < van.trace.final_loss


def test_per_clip_loss_and_image_condition(fake_binder):
    gen = FakeGenerator("audio", seed=1)
    img = Condition("image", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    cfg = AlignConfig(steps=8, per_clip=True)
    van = align(gen, fake_binder, spec=SPEC_A, condition=img, config=cfg, guided=False)
    gui = align(gen, fake_binder, spec=SPEC_A, condition=img, config=cfg)
    assert set(gui.trace.final_terms) == {"av"}  # no prompt: the text term drops out
    assert gui.trace.final_loss < van.trace.final_loss


def test_config_validation_and_progress(fake_audio_gen, fake_binder):
    with pytest.raises(ValueError):
        AlignConfig(window=(0.8, 0.2))
    with pytest.raises(ValueError):
        AlignConfig(update="sgd")  # type: ignore[arg-type]
    assert AlignConfig(steps=30).guided_steps() == list(range(6, 30))
    ticks = []
    align(fake_audio_gen, fake_binder, spec=SPEC_A, condition=video_condition(), prompt="",
          config=AlignConfig(steps=4), progress=lambda i, n, info: ticks.append((i, n, info["guided"])))
    assert ticks == [(1, 4, False), (2, 4, True), (3, 4, True), (4, 4, True)]
    ticks.clear()  # refine steps come after the loop's, on one bar of the whole length
    align(fake_audio_gen, fake_binder, spec=SPEC_A, condition=video_condition(), prompt="",
          config=AlignConfig(steps=4, refine=0.5), progress=lambda i, n, info: ticks.append((i, n)))
    assert ticks == [(i, 6) for i in range(1, 7)]


def test_frame_subset_decodes_only_sampled_frames_with_the_same_loss(fake_binder):
    audio = Condition("audio", torch.randn(1, 1600, generator=torch.Generator().manual_seed(0)), rate=800)
    spec = MediaSpec(duration_s=3.0, fps=4, height=16, width=16)  # 12 frames, 3 clips of 2
    res = {}
    for subset in (True, False):
        gen = FakeGenerator("video", seed=2)
        cfg = AlignConfig(steps=4, lr=0.05, frame_subset=subset)
        res[subset] = (align(gen, fake_binder, spec=spec, condition=audio, prompt="a dog", config=cfg),
                       gen.frames_decoded)
    (sub, dec_sub), (full, dec_full) = res[True], res[False]
    assert dec_full == [12, 12, 12, 12]  # 3 guided steps + the final decode
    assert dec_sub == [6, 6, 6, 12]
    assert sub.trace.step_loss == pytest.approx(full.trace.step_loss, abs=1e-6)
    assert torch.allclose(sub.media["visual"], full.media["visual"], atol=1e-5)


@pytest.mark.parametrize("path", ["mel", "waveform"])
def test_audio_path_mel_skips_the_vocoder_inside_the_loop(tiny_components, path, monkeypatch):
    """mel: guided steps never call the vocoder (only the final decode does); waveform: they do."""
    gen, binder = tiny_components.audio, tiny_components.binder
    calls = {"vocode": 0, "features": 0}
    vocode, features = gen.vocode, gen.decode_features

    def counted_vocode(mel):
        calls["vocode"] += 1
        return vocode(mel)

    def counted_features(z0, spec):
        calls["features"] += 1
        return features(z0, spec)

    monkeypatch.setattr(gen, "vocode", counted_vocode)
    monkeypatch.setattr(gen, "decode_features", counted_features)
    torch.set_num_threads(1)
    cfg = AlignConfig(steps=4, window=(0.5, 1.0), audio_path=path)
    res = align(gen, binder, spec=MediaSpec(duration_s=1.0), condition=video_condition(), prompt="a dog",
                config=cfg, seed=0)
    guided = len(res.trace.guided_steps)
    assert guided == 2 and all(math.isfinite(v) for v in res.trace.step_loss)
    if path == "mel":
        assert calls == {"vocode": 1, "features": guided}
    else:
        assert calls == {"vocode": guided + 1, "features": 0}
    assert res.media["audio"].shape == (1, 16000)


def test_audio_path_validation():
    with pytest.raises(ValueError, match="audio_path"):
        AlignConfig(audio_path="spectrogram")
    with pytest.raises(ValueError, match="mel_grad"):
        AlignConfig(mel_grad="smooth")


def test_envelope_projection_keeps_the_smoothed_per_frame_mean():
    g = torch.randn(2, 30, 8, generator=torch.Generator().manual_seed(0))
    out = envelope_projection(g, sigma_frames=1.0)
    assert out.shape == g.shape
    assert torch.allclose(out, out[..., :1].expand_as(out))  # the same at every mel bin
    flat = envelope_projection(torch.ones(1, 30, 8) * 3.0)
    assert torch.allclose(flat, torch.full_like(flat, 3.0))  # a constant passes unchanged
    impulse = torch.zeros(1, 30, 8)
    impulse[0, 15, :] = 1.0
    profile = envelope_projection(impulse)[0, :, 0]
    assert int(profile.argmax()) == 15 and profile.sum() == pytest.approx(1.0, abs=1e-5)
    assert profile[14] == pytest.approx(profile[16]) and 0 < profile[13] < profile[14] < profile[15]
    assert profile[:11].abs().max() == 0 and profile[20:].abs().max() == 0  # 3-sigma support


def test_mel_grad_envelope_filters_the_gradient_reaching_the_log_mel(tiny_components, monkeypatch):
    """What reaches the decoded log-mel (and flows on to the latent) is the envelope
    projection of the binder's gradient: recorded at the first guided step, where both runs
    are in the same state."""
    gen, binder = tiny_components.audio, tiny_components.binder
    seen: dict[str, list[torch.Tensor]] = {"full": [], "envelope": []}
    features = gen.decode_features
    mode = {"now": "full"}

    def recording_features(z0, spec):
        feats = features(z0, spec)
        if feats.log_mel.requires_grad:
            feats.log_mel.register_hook(lambda g: seen[mode["now"]].append(g.detach().clone()))
        return feats

    monkeypatch.setattr(gen, "decode_features", recording_features)
    torch.set_num_threads(1)
    outs = {}
    for m in ("full", "envelope"):
        mode["now"] = m
        cfg = AlignConfig(steps=4, window=(0.5, 1.0), mel_grad=m)
        outs[m] = align(gen, binder, spec=MediaSpec(duration_s=1.0), condition=video_condition(),
                        prompt="a dog", config=cfg, seed=0)
        assert all(math.isfinite(v) for v in outs[m].trace.step_loss)
    full, env = seen["full"][0], seen["envelope"][0]
    assert not torch.allclose(full, full[..., :1].expand_as(full))
    assert torch.allclose(env, envelope_projection(full), atol=1e-7)
    assert not torch.allclose(outs["full"].media["audio"], outs["envelope"].media["audio"])


def test_guidance_dtype_autocasts_the_guidance_branch_only(tiny_components, monkeypatch):
    """bf16: decode + binder inside guided steps run under autocast, the UNet and the final
    decode do not; its losses track the fp32 guidance run's to bf16 precision."""
    gen, binder = tiny_components.audio, tiny_components.binder
    seen: dict[str, list[bool]] = {"features": [], "eps": [], "decode": []}
    features, predict_eps, decode = gen.decode_features, gen.predict_eps, gen.decode

    def spy(name, fn):
        def wrapped(*a, **k):
            seen[name].append(torch.is_autocast_enabled("cpu")
                              and torch.get_autocast_dtype("cpu") == torch.bfloat16)
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(gen, "decode_features", spy("features", features))
    monkeypatch.setattr(gen, "predict_eps", spy("eps", predict_eps))
    monkeypatch.setattr(gen, "decode", spy("decode", decode))
    torch.set_num_threads(1)
    kw = dict(spec=MediaSpec(duration_s=1.0), condition=video_condition(), prompt="a dog", seed=0)
    cfg = AlignConfig(steps=6, lr=0.3, window=(0.0, 1.0), guidance_dtype="bfloat16")
    gui = align(gen, binder, config=cfg, **kw)
    assert seen["features"] and all(seen["features"])
    assert not any(seen["eps"]) and not any(seen["decode"])
    assert gui.media["audio"].dtype == torch.float32
    ref = align(gen, binder, config=replace(cfg, guidance_dtype=None), **kw)
    assert gui.trace.step_loss[0] == pytest.approx(ref.trace.step_loss[0], rel=2e-2)
    assert gui.trace.step_loss[0] != ref.trace.step_loss[0]  # it really ran in bf16
    assert gui.trace.final_loss == pytest.approx(ref.trace.final_loss, rel=5e-2)
    with pytest.raises(ValueError, match="guidance_dtype"):
        AlignConfig(guidance_dtype="int8")


def test_diverged_guidance_is_a_clear_error_not_nan_media():
    gen, binder = FakeGenerator("audio", seed=1), FakeBinder()
    with pytest.raises(AvbridgeError, match="guidance diverged.*lower the latent learning rate"):
        v2a(gen, binder, update="grad", lr=float("inf"))
    assert torch.isfinite(v2a(gen, binder, update="grad", lr=2.0).media["audio"]).all()


def test_frame_envelope_projection_keeps_per_frame_channel_means():
    g = torch.randn(1, 5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = frame_envelope_projection(g)
    assert out.shape == g.shape
    assert torch.allclose(out, g.mean(dim=(-2, -1), keepdim=True).expand_as(g))
    assert torch.allclose(out.sum(dim=(-2, -1)), g.sum(dim=(-2, -1)), atol=1e-5)
    with pytest.raises(ValueError, match="frame_grad"):
        AlignConfig(frame_grad="blur")


def test_frame_grad_envelope_filters_the_gradient_reaching_the_frames(fake_binder):
    """A2V: what reaches the decoded frames is the per-frame mean of the binder's gradient,
    recorded at the first guided step, where both runs are in the same state."""
    audio = Condition("audio", torch.randn(1, 1600, generator=torch.Generator().manual_seed(0)), rate=800)
    seen: dict[str, torch.Tensor] = {}
    outs = {}
    for mode in ("full", "envelope"):
        gen = FakeGenerator("video", seed=2)
        decode = gen.decode

        def recording_decode(z0, spec, decode=decode, mode=mode):
            frames = decode(z0, spec)
            if frames.requires_grad and mode not in seen:
                frames.register_hook(lambda g: seen.setdefault(mode, g.detach().clone()))
            return frames

        gen.decode = recording_decode
        cfg = AlignConfig(steps=4, lr=0.05, frame_subset=False, frame_grad=mode)
        outs[mode] = align(gen, fake_binder, spec=SPEC_V, condition=audio, prompt="a dog", config=cfg)
    full, env = seen["full"], seen["envelope"]
    assert not torch.allclose(full, frame_envelope_projection(full))
    assert torch.allclose(env, frame_envelope_projection(full), atol=1e-7)
    assert not torch.allclose(outs["full"].media["visual"], outs["envelope"].media["visual"])


def test_latent_grad_frame_mean_shifts_whole_latent_frames(fake_binder):
    """A2V: with ``latent_grad="frame-mean"`` each guided update of the video latents is one
    value per batch item, channel and frame (the spatial layout is left alone)."""
    audio = Condition("audio", torch.randn(1, 1600, generator=torch.Generator().manual_seed(0)), rate=800)
    deltas: dict[str, list[torch.Tensor]] = {}
    for mode in ("full", "frame-mean"):
        gen = FakeGenerator("video", seed=2)
        predict_eps, step = gen.predict_eps, gen.step
        seen: dict[str, torch.Tensor] = {}

        def recording_eps(z, t, cond, scale, predict_eps=predict_eps, seen=seen):
            seen["z"] = z.detach().clone()
            return predict_eps(z, t, cond, scale)

        def recording_step(z, eps, t, step=step, seen=seen, mode=mode):
            deltas.setdefault(mode, []).append(z.detach() - seen["z"])
            return step(z, eps, t)

        gen.predict_eps, gen.step = recording_eps, recording_step
        cfg = AlignConfig(steps=4, lr=0.5, update="grad", latent_grad=mode, window=(0.5, 1.0))
        align(gen, fake_binder, spec=SPEC_V, condition=audio, prompt="a dog", config=cfg)
    for mode, ds in deltas.items():
        guided = ds[2:]  # steps 2 and 3 are guided; 0 and 1 plain
        assert all(torch.equal(d, torch.zeros_like(d)) for d in ds[:2])
        assert all(d.abs().sum() > 0 for d in guided)
        flat = [(d - d.mean(dim=(-2, -1), keepdim=True)).abs().max() < 1e-2 * d.abs().max() for d in guided]
        assert all(flat) if mode == "frame-mean" else not any(flat)
    with pytest.raises(ValueError, match="latent_grad"):
        AlignConfig(latent_grad="blur")


def test_refine_renoises_guided_output_and_reruns_the_last_steps(fake_binder):
    assert AlignConfig(steps=10, refine=0.3).refine_from() == 7
    assert AlignConfig(steps=10).refine_from() is None
    gen = FakeGenerator("audio", seed=1)
    plain = v2a(gen, fake_binder, seed=2)
    unet_calls = gen.calls["predict_eps"]
    gen.calls.clear()
    refined = v2a(gen, fake_binder, seed=2, refine=0.3)
    assert gen.calls["renoise"] == 1
    assert gen.calls["predict_eps"] == unet_calls + 3
    assert not torch.equal(refined.media["audio"], plain.media["audio"])
    assert torch.equal(refined.media["audio"], v2a(gen, fake_binder, seed=2, refine=0.3).media["audio"])


def test_vanilla_ignores_refine_and_joint_refines_both_streams(fake_binder):
    gen = FakeGenerator("audio", seed=1)
    van = v2a(gen, fake_binder, seed=2, guided=False)
    gen.calls.clear()
    same = v2a(gen, fake_binder, seed=2, guided=False, refine=0.5)
    assert torch.equal(van.media["audio"], same.media["audio"])
    assert gen.calls["renoise"] == 0
    ga, gv = FakeGenerator("audio", seed=1), FakeGenerator("video", seed=2)
    cfg = AlignConfig(steps=10, lr={"audio": 0.1, "visual": 0.05}, refine=0.2)
    align_joint(ga, gv, fake_binder, audio_spec=SPEC_A, video_spec=SPEC_V, prompt="a cat", config=cfg)
    assert ga.calls["renoise"] == gv.calls["renoise"] == 1
    cfg = replace(cfg, refine={"audio": 0.2})  # a modality not named is not refined
    assert (cfg.refine_from("audio"), cfg.refine_from("visual")) == (8, None)
    align_joint(ga, gv, fake_binder, audio_spec=SPEC_A, video_spec=SPEC_V, prompt="a cat", config=cfg)
    assert (ga.calls["renoise"], gv.calls["renoise"]) == (2, 1)


@pytest.mark.parametrize("refine", [-0.1, 1.0, {"audio": 0.5, "visual": 1.0}])
def test_refine_must_leave_some_of_the_schedule(refine):
    with pytest.raises(ValueError, match="refine"):
        AlignConfig(refine=refine)
