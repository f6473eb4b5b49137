"""registry.load_components: every preset and model-source path, and the clear errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from avbridge import loading as registry
from avbridge import presets
from avbridge.align.losses import LossWeights
from avbridge.errors import AvbridgeError, CheckpointError
from avbridge.models.captioners import BinderZeroShotCaptioner
from avbridge.tasks import Components


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No hub: the cache is empty and the endpoint is unreachable, as on a fresh offline machine."""
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def no_cache(*a: object, **k: object) -> str:
        raise FileNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_cache)


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_tiny_random_builds_every_component() -> None:
    c = registry.load_components("tiny-random")
    assert isinstance(c, Components)
    assert c.audio is not None and c.audio.modality == "audio"
    assert c.video is not None and c.video.modality == "video"
    assert c.image is not None and c.image.modality == "image"
    assert isinstance(c.audio_captioner, BinderZeroShotCaptioner)
    assert not any(p.requires_grad for p in c.binder.parameters())
    assert presets.preset_note("tiny-random") == presets.TINY_RANDOM_NOTE
    assert "noise" in presets.TINY_RANDOM_NOTE


def test_tiny_random_is_seeded_and_need_limits_loading() -> None:
    a = registry.load_components("tiny-random", need=("audio",), seed=1)
    b = registry.load_components("tiny-random", need=("audio",), seed=1)
    c = registry.load_components("tiny-random", need=("audio",), seed=2)
    assert a.video is None and a.image is None
    pa, pb, pc = _params(a.audio.unet), _params(b.audio.unet), _params(c.audio.unet)
    assert all(torch.equal(x, y) for x, y in zip(pa, pb, strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(pa, pc, strict=True))


def test_local_folders_load(tmp_path: Path) -> None:
    """--audio-model/--video-model/--image-model/--binder given as local folders."""
    from avbridge.models.binders.imagebind import ImageBindBinder
    from avbridge.models.generators.animatediff import AnimateDiffGenerator
    from avbridge.models.generators.audioldm import AudioLDMGenerator

    AudioLDMGenerator.tiny(seed=3).save_pretrained(tmp_path / "audio")
    AnimateDiffGenerator.tiny(seed=3).save_pretrained(tmp_path / "video")
    ImageBindBinder.from_preset("tiny-32", seed=3).save_pretrained(tmp_path / "binder")
    c = registry.load_components(
        "paper",  # every model is overridden, so no hub access happens
        audio_model=str(tmp_path / "audio"),
        video_model=str(tmp_path / "video"),
        binder=str(tmp_path / "binder"),
        captioner="none",
    )
    ref = AudioLDMGenerator.tiny(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(_params(c.audio.unet), _params(ref.unet), strict=True))
    assert c.video.modality == "video" and c.image.modality == "image"
    assert c.audio_captioner is None and c.visual_captioner is None
    assert presets.preset_note("paper", str(tmp_path / "audio")) is None


def test_named_presets_as_model_options() -> None:
    c = registry.load_components("world", audio_model="tiny-random", binder="tiny-random", need=("audio",))
    assert c.audio is not None and c.audio.modality == "audio"
    assert presets.preset_note("world", "tiny-random") is not None


def test_world_preset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without shipped models: a clear AvbridgeError; with them (when shipped): it loads."""
    if not presets.world_models_missing():
        c = registry.load_components("world", need=("audio", "video", "image"))
        assert c.audio is not None and c.video is not None and c.image is not None
        from avbridge.world.scene import WORLD

        spec = c.video.default_spec(2.0)  # the world's format, not SD's 512x512
        assert (spec.height, spec.width, spec.fps) == (WORLD.size, WORLD.size, WORLD.fps)
    monkeypatch.setattr(presets, "world_models_dir", lambda: tmp_path / "models")
    assert presets.world_models_missing() == list(presets.WORLD_PARTS)
    with pytest.raises(AvbridgeError, match="not shipped"):
        registry.load_components("world", need=("audio",))
    (tmp_path / "models" / "binder").mkdir(parents=True)  # a half-written folder
    with pytest.raises(AvbridgeError, match="incomplete"):
        registry.load_components("world", need=())


def test_paper_needs_binder_path() -> None:
    with pytest.raises(CheckpointError, match="--binder") as e:
        registry.load_components("paper")
    assert "imagebind_huge.pth" in str(e.value)


def test_paper_offline_is_a_fast_clear_error(offline: None, tmp_path: Path) -> None:
    from avbridge.models.binders.imagebind import ImageBindBinder

    ImageBindBinder.from_preset("tiny-32").save_pretrained(tmp_path / "binder")
    t = time.perf_counter()
    with pytest.raises(CheckpointError, match="cvssp/audioldm-m-full") as e:
        registry.load_components("paper", binder=str(tmp_path / "binder"), need=("audio",))
    assert "cache" in str(e.value)
    with pytest.raises(CheckpointError, match="stable-diffusion-v1-5"):
        registry.load_components("paper", binder=str(tmp_path / "binder"), need=("video",))
    with pytest.raises(CheckpointError, match="someone/some-model"):
        registry.load_components("tiny-random", audio_model="someone/some-model", need=("audio",))
    assert time.perf_counter() - t < 30  # no minute of HTTP retries


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("audio_model", "/no/such/folder", "no such file or folder"),
        ("video_model", "./missing-model", "no such file or folder"),
        ("binder", "/no/such/imagebind_huge.pth", "no such file or folder"),
        ("audio_model", "not a model", "not a preset"),
    ],
)
def test_missing_sources(option: str, value: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message) as e:
        registry.load_components("tiny-random", **{option: value})
    assert value in str(e.value)


def test_incomplete_folder_and_bad_checkpoint(tmp_path: Path) -> None:
    from avbridge.models.generators.audioldm import AudioLDMGenerator

    folder = AudioLDMGenerator.tiny().save_pretrained(tmp_path / "audio")
    import shutil

    shutil.rmtree(folder / "vocoder")
    with pytest.raises(CheckpointError, match="vocoder"):
        registry.load_components("tiny-random", audio_model=str(folder), need=("audio",))
    bad = tmp_path / "imagebind_huge.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as e:
        registry.load_components("tiny-random", binder=str(bad), need=())
    assert "imagebind_huge.pth" in str(e.value)
    with pytest.raises(CheckpointError, match="got a file"):
        registry.load_components("tiny-random", audio_model=str(bad), need=("audio",))


def test_unknown_preset_and_captioner() -> None:
    with pytest.raises(AvbridgeError, match="unknown preset"):
        registry.load_components("huge-random")
    with pytest.raises(AvbridgeError, match="unknown captioner"):
        registry.load_components("tiny-random", captioner="bogus:x", need=())


def test_classify() -> None:
    assert registry.classify("world").kind == "preset"
    assert registry.classify("cvssp/audioldm-m-full") == registry.Source("hub", "cvssp/audioldm-m-full")
    assert registry.classify(str(Path(__file__).parent)).kind == "dir"
    assert registry.classify(__file__).kind == "file"


def test_world_guidance_settings_replace_the_papers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    from avbridge.presets import default_config

    monkeypatch.setattr(presets, "world_models_dir", lambda: tmp_path)
    assert default_config("v2a", preset="world") == default_config("v2a")  # no file: the paper's
    (tmp_path / "guidance.json").write_text(json.dumps(
        {"_note": "chosen on val", "v2a": {"lr": 0.5, "per_clip": True, "window": [0.1, 0.9], "_why": "x"}}
    ))
    cfg = default_config("v2a", preset="world")
    assert (cfg.lr, cfg.per_clip, cfg.window) == (0.5, True, (0.1, 0.9))
    assert cfg.steps == default_config("v2a").steps
    assert default_config("a2v", preset="world") == default_config("a2v")
    assert default_config("v2a", preset="paper") == default_config("v2a")
    (tmp_path / "guidance.json").write_text(json.dumps({"a2i": {"weights": {"vt": 0}}}))
    assert default_config("a2i", preset="world").weights == LossWeights(av=1, vt=0, at=1)  # the rest stay 1
    for bad in ({"learning_rate": 1}, {"weights": {"va": 0}}, {"weights": {"vt": "none"}}, {"weights": [0]}):
        (tmp_path / "guidance.json").write_text(json.dumps({"v2a": bad}))
        match = "learning_rate" if "learning_rate" in bad else "weights must"
        with pytest.raises(CheckpointError, match=match):
            default_config("v2a", preset="world")
    (tmp_path / "guidance.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="guidance.json"):
        default_config("v2a", preset="world")


def test_world_guidance_from_steps_applies_at_and_above_its_step_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    from avbridge.apps.cli import make_config
    from avbridge.presets import default_config

    monkeypatch.setattr(presets, "world_models_dir", lambda: tmp_path)
    (tmp_path / "guidance.json").write_text(json.dumps({"v2a": {
        "lr": 0.5, "per_clip": True,
        "from_steps": {"20": {"lr": 0.3, "_val": {"sync_f1": 1}}, "40": {"lr": 0.1, "window": [0, 1]}},
    }}))
    lrs = {n: default_config("v2a", preset="world", steps=n).lr for n in (5, 19, 20, 39, 40, 80)}
    assert lrs == {5: 0.5, 19: 0.5, 20: 0.3, 39: 0.3, 40: 0.1, 80: 0.1}
    at40 = default_config("v2a", preset="world", steps=40)
    assert (at40.steps, at40.per_clip, at40.window) == (40, True, (0, 1))
    # no steps given: the task's own 30 steps pick the entry for 20
    assert default_config("v2a", preset="world").lr == 0.3
    assert default_config("v2a", steps=40).lr == default_config("v2a").lr  # no preset: the paper's
    # the CLI's --steps reaches the choice; an explicit --lr still wins
    assert make_config("v2a", {"steps": 40}, "world").lr == 0.1
    assert make_config("v2a", {"steps": 40, "lr": 0.7}, "world").lr == 0.7
    for bad, match in (({"x": {"lr": 1}}, "from_steps"), ({"10": {"learning_rate": 1}}, "learning_rate"),
                       ({"10": {"steps": 5}}, "steps"), ([1], "from_steps")):
        (tmp_path / "guidance.json").write_text(json.dumps({"v2a": {"lr": 0.5, "from_steps": bad}}))
        with pytest.raises(CheckpointError, match=match):
            default_config("v2a", preset="world")


def test_world_guidance_sampler_entries_apply_only_to_their_sampler(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    from avbridge.presets import default_config, resolve_settings

    monkeypatch.setattr(presets, "world_models_dir", lambda: tmp_path)
    (tmp_path / "guidance.json").write_text(json.dumps({"v2a": {
        "lr": 0.5, "per_clip": True, "from_steps": {"20": {"lr": 0.3, "refine": 0.6}},
        "samplers": {"dpm++": {"_how": "val", "from_steps": {"1": {"lr": 0.2}, "15": {"lr": 0.4}}}},
    }}))
    ddim = {n: default_config("v2a", preset="world", steps=n).lr for n in (10, 15, 30)}
    assert ddim == {10: 0.5, 15: 0.5, 30: 0.3}
    dpm = {n: default_config("v2a", preset="world", steps=n, sampler="dpm++") for n in (10, 15, 30)}
    assert {n: c.lr for n, c in dpm.items()} == {10: 0.2, 15: 0.4, 30: 0.4}
    assert dpm[30].refine == 0.6 and dpm[10].per_clip  # the DDIM fields of the step count stay
    settings = resolve_settings("v2a", preset="world", steps=15, sampler="dpm++")
    assert settings.sources["lr"] == "preset world"
    for bad, match in (({"dpm++": {"lr": 1}}, "only from_steps"), ({"dpm++": {"from_steps": {"x": {}}}},
                       "from_steps"), ({"dpm++": [1]}, "samplers must")):
        (tmp_path / "guidance.json").write_text(json.dumps({"v2a": {"lr": 0.5, "samplers": bad}}))
        with pytest.raises(CheckpointError, match=match):
            default_config("v2a", preset="world")


def test_batch_config_takes_the_step_counts_pick(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import json

    from avbridge.apps.batch import BatchSettings, task_settings

    monkeypatch.setattr(presets, "world_models_dir", lambda: tmp_path)
    entry = {"lr": 0.5, "from_steps": {"20": {"lr": 0.3}}}
    (tmp_path / "guidance.json").write_text(json.dumps({"v2a": entry}))
    cfg = task_settings(BatchSettings(task="v2a", out_dir=tmp_path, steps=25)).config
    assert (cfg.steps, cfg.lr) == (25, 0.3)
    cfg = task_settings(BatchSettings(task="v2a", out_dir=tmp_path, steps=10)).config
    assert (cfg.steps, cfg.lr) == (10, 0.5)
    # explicit other models: the paper's settings, whatever the step count
    cfg = task_settings(BatchSettings(task="v2a", out_dir=tmp_path, steps=25, preset="paper")).config
    assert cfg.lr == presets.default_config("v2a").lr
