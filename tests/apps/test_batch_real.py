"""Batch runs through the real task functions with the tiny-random models (in-process).

The kill/resume and multi-process tests in test_batch.py use a fake task module so that
they can run several Python processes quickly; these tests check that the same machinery
drives the real tasks: valid outputs of the right length, a bad item recorded as failed,
shard-independent outputs and a 30-s input generated in windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avbridge.apps.batch import BatchSettings, load_manifest, read_results, run_batch
from avbridge.io.media import Video, read_audio, write_video

tasks = pytest.importorskip("avbridge.tasks")
registry = pytest.importorskip("avbridge.loading")


@pytest.fixture(scope="module")
def audio_components():
    return registry.load_components("tiny-random", need=("audio",))


def _clip(path: Path, seconds: float, fps: float, seed: int, size: int = 16) -> Path:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (max(1, round(seconds * fps)), size, size, 3), dtype=np.uint8)
    return write_video(path, Video(frames, fps))


def _settings(out: Path, **kw) -> BatchSettings:
    kw.setdefault("progress", False)
    return BatchSettings(task="v2a", out_dir=out, preset="tiny-random", **kw)


def test_tiny_random_batch_bad_item_and_shard_independence(tmp_path, audio_components):
    clips = tmp_path / "clips"
    _clip(clips / "a.mp4", 1.0, 4.0, 0)
    _clip(clips / "b.mp4", 1.5, 4.0, 1)
    (clips / "c.mp4").write_text("not a video")
    items = load_manifest(clips, "v2a")
    one = tmp_path / "one"
    s = run_batch(items, _settings(one, steps=2), components=audio_components, log=lambda m: None)
    assert (s.done, s.failed) == (2, 1)
    res = read_results(one)
    assert res["c"]["status"] == "failed" and "c.mp4" in res["c"]["error"]
    for name, dur in (("a", 1.0), ("b", 1.5)):
        a = read_audio(one / f"{name}.wav")
        assert a.duration_s == pytest.approx(dur, abs=1e-3)
        assert np.abs(a.samples).max() > 0
    # The same items split over two "ranks" (each its own order of work) give the same bytes.
    two = tmp_path / "two"
    for rank in (1, 0):
        run_batch(
            items,
            _settings(two, steps=2),
            rank=rank,
            world_size=2,
            components=audio_components,
            log=lambda m: None,
        )
    for name in ("a", "b"):
        assert (one / f"{name}.wav").read_bytes() == (two / f"{name}.wav").read_bytes()
    assert {r["id"]: r["rank"] for r in read_results(two).values()} == {"a": 0, "b": 1, "c": 0}


@pytest.mark.slow
def test_tiny_random_thirty_second_video_gets_thirty_seconds_of_audio(tmp_path, audio_components):
    _clip(tmp_path / "long.mp4", 30.0, 1.0, 2, size=8)
    items = load_manifest(tmp_path, "v2a")
    out = tmp_path / "out"
    s = run_batch(
        items,
        _settings(out, steps=1, guided=False, window_s=16.0, overlap_s=2.0),
        components=audio_components,
        log=lambda m: None,
    )
    assert s.done == 1, read_results(out)
    a = read_audio(out / "long.wav")
    assert a.duration_s == pytest.approx(30.0, abs=1e-3)
    assert np.isfinite(a.samples).all() and np.abs(a.samples).max() > 0


def test_guidance_cost_options_load_the_models_and_reach_every_item(tmp_path):
    """``avbridge batch --guidance-decoder --guidance-encoder --guidance-dtype``: every process
    loads the guidance models (tiny-random: the preset's own) and every item runs and records
    those settings."""
    from avbridge.apps import batch

    clips = tmp_path / "clips"
    _clip(clips / "a.mp4", 1.0, 4.0, 0)
    seen: dict = {}

    def load(preset, **kw):
        comps = registry.load_components(preset, **kw)
        seen["decoder"] = getattr(comps.audio, "guidance_decoder", None)
        seen["encoder"] = getattr(comps.binder, "guidance_encoder", None)
        return comps

    out = tmp_path / "out"
    argv = ["v2a", "--manifest", str(clips), "--out", str(out), "--preset", "tiny-random", "--steps", "2",
            "--no-progress", "--guidance-decoder", "--guidance-encoder", "--guidance-dtype", "bfloat16"]
    assert batch.main(argv, load=load) == 0
    assert seen["decoder"] is not None and seen["encoder"] is not None
    rec = read_results(out)["a"]
    assert rec["status"] == "done"
    st = rec["settings"]
    assert st["guidance_decoder"]["value"] is True and st["guidance_encoder"]["value"] is True
    assert st["guidance_dtype"] == {"value": "bfloat16", "from": "option"}
