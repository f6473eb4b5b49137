"""The five tasks end to end: media in, media out, guided vs vanilla, prompts, durations."""

from __future__ import annotations

import numpy as np
import pytest

from avbridge.align import AlignConfig
from avbridge.errors import AvbridgeError
from avbridge.io.media import Audio, Image, Video
from avbridge.models.captioners import BinderZeroShotCaptioner
from avbridge.presets import default_config
from avbridge.tasks import Components, a2i, a2v, i2a, joint, v2a
from conftest import FakeBinder, FakeGenerator

SEEDS = range(3)


def fake_components(**kw) -> Components:
    binder = FakeBinder()
    return Components(
        binder=binder,
        audio=FakeGenerator("audio", seed=1),
        video=FakeGenerator("video", seed=2),
        image=FakeGenerator("image", seed=3),
        **kw,
    )


def a_video(seconds: float = 1.5, fps: float = 6.0) -> Video:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (round(seconds * fps), 20, 28, 3), dtype=np.uint8)
    return Video(frames, fps)


def an_audio(seconds: float = 1.5, rate: int = 8000) -> Audio:
    t = np.arange(round(seconds * rate)) / rate
    return Audio((0.5 * np.sin(2 * np.pi * 220 * t) * (t % 0.5 < 0.1)).astype(np.float32), rate)


def an_image() -> Image:
    return Image(np.random.default_rng(1).integers(0, 255, (24, 30, 3), dtype=np.uint8))


CFG = {
    "v2a": AlignConfig(steps=8, lr=0.1),
    "i2a": AlignConfig(steps=8, lr=0.1),
    "a2v": AlignConfig(steps=8, lr=0.05, prompt_lr=0.01),
    "a2i": AlignConfig(steps=8, lr=0.05, prompt_lr=0.01),
    "joint": AlignConfig(steps=8, lr={"audio": 0.1, "visual": 0.05}, prompt_lr=0.01),
}


def run(task: str, comps: Components, guided: bool, seed: int, **kw):
    cfg = CFG[task]
    if task == "v2a":
        return v2a(a_video(), comps, guided=guided, seed=seed, config=cfg, **kw)
    if task == "i2a":
        return i2a(an_image(), comps, duration_s=1.25, guided=guided, seed=seed, config=cfg, **kw)
    if task == "a2v":
        return a2v(an_audio(), comps, guided=guided, seed=seed, config=cfg, **kw)
    if task == "a2i":
        return a2i(an_audio(), comps, guided=guided, seed=seed, config=cfg, **kw)
    return joint("a dog barking", comps, duration_s=1.5, guided=guided, seed=seed, config=cfg, **kw)


@pytest.mark.parametrize("task", ["v2a", "i2a", "a2v", "a2i", "joint"])
def test_guided_beats_vanilla_over_seeds(task):
    comps = fake_components()
    for seed in SEEDS:
        van = run(task, comps, False, seed)
        gui = run(task, comps, True, seed)
        assert gui.trace.final_loss < van.trace.final_loss, (task, seed)
        assert van.trace.guided_steps == [] and gui.trace.guided_steps


def test_output_types_and_durations():
    comps = fake_components()
    out = run("v2a", comps, True, 0).media
    assert isinstance(out, Audio) and out.sample_rate == 800
    assert out.duration_s == pytest.approx(1.5) and out.samples.dtype == np.float32
    assert np.abs(out.samples).max() <= 1.0
    out = run("i2a", comps, True, 0).media
    assert isinstance(out, Audio) and out.duration_s == pytest.approx(1.25)
    audio = an_audio()
    res = run("a2v", comps, True, 0)
    assert isinstance(res.media, Video) and res.media.frames.dtype == np.uint8
    assert res.media.duration_s == pytest.approx(audio.duration_s, abs=0.5 / res.media.fps)
    assert res.media.audio is not None and res.media.audio.sample_rate == audio.sample_rate
    assert np.array_equal(res.media.audio.samples, audio.samples[: len(res.media.audio.samples)])
    img = run("a2i", comps, True, 0).media
    assert isinstance(img, Image) and img.pixels.shape == (16, 16, 3)
    res = run("joint", comps, True, 0)
    assert isinstance(res.media, Video) and res.media.duration_s == pytest.approx(1.5)
    assert res.media.audio is not None and res.media.audio.duration_s == pytest.approx(1.5)
    assert res.prompt == "a dog barking"


def test_same_seed_identical_output():
    comps = fake_components()
    a, b = run("a2v", comps, True, 7), run("a2v", comps, True, 7)
    assert np.array_equal(a.media.frames, b.media.frames)
    c = run("a2v", comps, True, 8)
    assert not np.array_equal(a.media.frames, c.media.frames)


def test_prompt_user_then_caption_then_empty():
    comps = fake_components()
    comps.visual_captioner = BinderZeroShotCaptioner(comps.binder, ["dog", "rain"])
    comps.audio_captioner = BinderZeroShotCaptioner(comps.binder, ["cat", "wind"])
    vid = run("v2a", comps, False, 0)
    assert vid.prompt in ("dog", "rain")
    assert run("v2a", comps, True, 0).prompt == vid.prompt  # guided and vanilla share the prompt
    assert run("a2v", comps, False, 0).prompt in ("cat", "wind")
    assert run("v2a", comps, False, 0, prompt="a car").prompt == "a car"
    assert run("v2a", fake_components(), False, 0).prompt == ""


def test_condition_embedded_once_per_task():
    comps = fake_components()
    run("v2a", comps, True, 0)
    assert comps.binder.calls["video"] == 1
    comps = fake_components()
    run("a2v", comps, True, 0)
    assert comps.binder.calls["audio"] == 1


def test_missing_generator_is_a_clear_error():
    comps = Components(binder=FakeBinder())
    with pytest.raises(AvbridgeError, match="audio generator"):
        run("v2a", comps, True, 0)
    with pytest.raises(AvbridgeError, match="video generator"):
        run("a2v", comps, True, 0)


def test_default_configs_follow_the_paper():
    assert default_config("v2a").steps == 30 and default_config("v2a").lr == 0.1
    assert default_config("v2a").guided_steps() == list(range(6, 30))
    a2v_cfg = default_config("a2v")
    assert a2v_cfg.steps == 25 and a2v_cfg.lr == 0.01 and a2v_cfg.prompt_lr > 0
    j = default_config("joint")
    assert j.steps == 25 and j.lr == {"audio": 0.1, "visual": 0.01} and j.prompt_lr > 0


@pytest.mark.slow
@pytest.mark.parametrize("task", ["v2a", "i2a", "a2v", "a2i", "joint"])
def test_real_tiny_components_guided_beats_vanilla(task, tiny_components):
    """Real tiny AudioLDM / AnimateDiff / ImageBind, 2 steps (the last one guided), 0.5-s media."""
    c = tiny_components
    rng = np.random.default_rng(0)
    video = Video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), 8.0)
    audio = Audio((0.3 * np.sin(np.arange(8000) / 16000 * 2 * np.pi * 440)).astype(np.float32), 16000)
    visual = "visual" if task in ("a2v", "a2i") else None
    cfg = AlignConfig(steps=2, window=(0.5, 1.0), lr={"audio": 0.1, "visual": 0.05},
                      prompt_lr=0.01 if visual or task == "joint" else 0.0)
    calls = {
        "v2a": lambda g: v2a(video, c, prompt="a dog", guided=g, config=cfg),
        "i2a": lambda g: i2a(Image(video.frames[0]), c, prompt="a dog", duration_s=0.5, guided=g, config=cfg),
        "a2v": lambda g: a2v(audio, c, prompt="a dog", guided=g, config=cfg),
        "a2i": lambda g: a2i(audio, c, prompt="a dog", guided=g, config=cfg),
        "joint": lambda g: joint("a dog", c, duration_s=0.5, guided=g, config=cfg),
    }
    van, gui = calls[task](False), calls[task](True)
    assert gui.trace.final_loss < van.trace.final_loss
    media = gui.media
    if isinstance(media, Audio):
        assert media.sample_rate == 16000 and media.duration_s == pytest.approx(0.5)
    elif isinstance(media, Video):
        assert media.duration_s == pytest.approx(0.5) and media.audio is not None
    else:
        assert media.pixels.shape == (32, 32, 3)


def test_trace_records_every_setting_and_where_it_came_from():
    from avbridge.presets import resolve_settings

    comps = fake_components()
    given = run("v2a", comps, False, 0)
    assert given.trace.settings["steps"] == {"value": 8, "from": "given"}
    paper = v2a(a_video(), comps, guided=False, seed=0)
    assert paper.trace.settings["steps"] == {"value": 30, "from": "paper"}
    assert paper.trace.settings["update"] == {"value": "adam-sign", "from": "default"}
    resolved = resolve_settings("a2v", options={"steps": 3, "lr": 0.02})
    out = a2v(an_audio(), comps, guided=True, seed=0, config=resolved)
    s = out.trace.settings
    assert s["lr"] == {"value": 0.02, "from": "option"} and s["prompt_lr"] == {"value": 0.01, "from": "paper"}
    assert len(out.trace.guided_steps) == len(resolved.config.guided_steps())


def test_conditions_too_short_are_refused_before_any_model_runs():
    comps = fake_components()
    with pytest.raises(AvbridgeError, match="minimum is 2 frames"):
        v2a(a_video(seconds=1 / 6), comps)
    with pytest.raises(AvbridgeError, match="minimum is 0.5 s"):
        a2i(an_audio(seconds=0.01), comps)
    assert sum(comps.binder.calls.values()) == 0


def test_a_binder_captioner_and_the_guidance_share_one_embedding_of_the_condition():
    shared = fake_components()
    shared.visual_captioner = BinderZeroShotCaptioner(shared.binder, ["dog", "rain"])
    apart = fake_components()
    apart.visual_captioner = BinderZeroShotCaptioner(FakeBinder(), ["dog", "rain"])
    a, b = run("v2a", shared, True, 0), run("v2a", apart, True, 0)
    assert shared.binder.calls["video"] == 1  # the caption and the loop used one embedding
    assert apart.binder.calls["video"] == 1 and apart.visual_captioner.binder.calls["video"] == 1
    assert a.prompt == b.prompt and np.array_equal(a.media.samples, b.media.samples)
