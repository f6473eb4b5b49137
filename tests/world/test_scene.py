"""The procedural world: determinism, splits, and picture/sound events at the true times."""

from __future__ import annotations

import json

import numpy as np
import pytest

from avbridge.errors import AvbridgeError
from avbridge.world.scene import (
    CLASSES,
    COLOURS,
    EDGE_FRAMES,
    MIN_GAP_FRAMES,
    SIZES,
    WORLD,
    clip_params,
    render_clip,
    split_seeds,
)

SEEDS = split_seeds("val", 36)


@pytest.fixture(scope="module")
def clips():
    return [render_clip(s) for s in SEEDS]


def test_same_seed_same_clip():
    a, b = render_clip(1234), render_clip(1234)
    assert np.array_equal(a.video.frames, b.video.frames)
    assert np.array_equal(a.audio.samples, b.audio.samples)
    assert a.caption == b.caption and a.truth == b.truth
    c = render_clip(1235)
    assert not np.array_equal(a.audio.samples, c.audio.samples)


def test_format(clips):
    for c in clips:
        assert c.video.frames.shape == (WORLD.n_frames, WORLD.size, WORLD.size, 3) == (32, 32, 32, 3)
        assert c.video.frames.dtype == np.uint8 and c.video.fps == 8
        assert c.audio.samples.shape == (64000,) and c.audio.samples.dtype == np.float32
        assert c.audio.sample_rate == 16000 and np.abs(c.audio.samples).max() <= 1.0
        json.dumps(c.truth)  # JSON-serialisable
        t = c.truth
        assert t["class"] in CLASSES and t["colour"] in COLOURS and t["size"] in SIZES
        assert t["class"] in c.caption and t["colour"] in c.caption and t["size"] in c.caption


def test_event_times_inside_clip_and_apart(clips):
    for c in clips:
        fr = c.truth["event_frames"]
        assert 1 <= len(fr) <= 5
        assert fr == sorted(fr) and min(fr) >= EDGE_FRAMES and max(fr) <= WORLD.n_frames - 1 - EDGE_FRAMES
        assert all(b - a >= MIN_GAP_FRAMES for a, b in zip(fr, fr[1:], strict=False))
        assert c.truth["event_times"] == [k / WORLD.fps for k in fr]
    counts = {len(c.truth["event_frames"]) for c in clips}
    assert len(counts) >= 4  # the number of events varies


def test_sound_onsets_at_event_times(clips):
    """The 10-ms energy envelope jumps at each event time and is quiet just before it."""
    hop = 160
    for c in clips:
        x = c.audio.samples.astype(np.float64)
        env = np.sqrt((x[: len(x) // hop * hop].reshape(-1, hop) ** 2).mean(1))
        noise = np.median(np.sort(env)[: len(env) // 10])
        for t in c.truth["event_times"]:
            j = round(t * WORLD.sample_rate) // hop
            assert env[j] > 10 * noise, (c.truth, t)
            assert env[j - 1] < 0.35 * env[j] or env[j - 1] < env[j + 1] * 0.35, (c.truth, t)


def test_picture_events_at_event_frames(clips):
    """The frame difference has a strict local maximum at each event frame (flash + impact pose)."""
    for c in clips:
        f = c.video.frames.astype(np.float64)
        d = np.concatenate([[0.0], np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))])
        med = np.median(d)
        for k in c.truth["event_frames"]:
            near = np.delete(d[k - 2 : k + 3], 2)
            assert d[k] > 1.05 * near.max() and d[k] > 5 * med, (c.truth, k, d.round(1))


def test_classes_look_and_sound_distinct(clips):
    """Same attributes and event times, different class: different shape/motion and spectrum."""
    from avbridge.world.scene import render_audio, render_frames

    ev = [6, 14, 22]
    times = [k / WORLD.fps for k in ev]
    spec, masks = {}, {}
    for cls in CLASSES:
        x = render_audio(cls, "green", "large", times, 5)
        s = np.log1p(np.abs(np.fft.rfft(x))[:8000].reshape(160, 50).mean(1))
        spec[cls] = s / np.linalg.norm(s)
        f = render_frames(cls, "green", "large", ev, 5).astype(float)
        masks[cls] = np.abs(f - np.median(f, axis=(1, 2), keepdims=True)).sum(-1) > 90
    for i, a in enumerate(CLASSES):
        for b in CLASSES[i + 1 :]:
            assert float(spec[a] @ spec[b]) < 0.97, (a, b)
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.6, (a, b, iou)
    assert {c.truth["class"] for c in clips} == set(CLASSES)
    assert len({c.truth["colour"] for c in clips}) == 3 and len({c.truth["size"] for c in clips}) == 2


def test_colour_sets_pitch_size_sets_loudness():
    base = clip_params(0)
    from avbridge.world.scene import render_audio

    times = [1.0, 2.5]
    lo = render_audio(base["class"], "red", "large", times, 7)
    hi = render_audio(base["class"], "blue", "large", times, 7)
    soft = render_audio(base["class"], "red", "small", times, 7)

    def centroid(x):
        s = np.abs(np.fft.rfft(x))
        f = np.fft.rfftfreq(len(x), 1 / 16000)
        return float((s * f).sum() / s.sum())

    assert centroid(hi) > 1.5 * centroid(lo)
    assert np.sqrt((soft**2).mean()) < 0.6 * np.sqrt((lo**2).mean())


def test_splits_disjoint_and_checked():
    tr, va, te = split_seeds("train", 50), split_seeds("val", 50), split_seeds("test", 50)
    assert not (set(tr) & set(va)) and not (set(va) & set(te)) and not (set(tr) & set(te))
    assert split_seeds("test", 3, start=2) == te[2:5]
    assert render_clip(te[0]).truth["split"] == "test"
    with pytest.raises(AvbridgeError):
        split_seeds("holdout", 1)  # type: ignore[arg-type]
    with pytest.raises(AvbridgeError):
        split_seeds("val", 10**9)
    with pytest.raises(AvbridgeError):
        render_clip(-1)


def test_fast_enough():
    import time

    render_clip(0)
    t = time.perf_counter()
    for s in range(10):
        render_clip(s)
    assert (time.perf_counter() - t) / 10 < 0.2  # ~15 ms on an idle core; generous for shared CI
