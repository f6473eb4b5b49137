"""Event detectors and event-sync F1 on world clips with known event times."""

from __future__ import annotations

import numpy as np
import pytest

from avbridge.io.media import Audio
from avbridge.world.events import audio_onsets, event_f1, match_events, video_events
from avbridge.world.scene import render_clip, split_seeds


def test_f1_greedy_one_to_one():
    assert event_f1([], []) == 1.0
    assert event_f1([1.0], []) == 0.0
    assert event_f1([1.0, 2.0], [1.1, 2.0]) == 1.0
    assert event_f1([1.0, 2.0], [1.2, 2.0], tol_s=0.125) == pytest.approx(0.5)
    # Two predictions near one reference: only one may match.
    assert match_events([1.0, 1.03], [1.02], 0.125) == [(1, 0)]
    assert event_f1([1.0, 1.05], [1.02]) == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def clips():
    return [render_clip(s) for s in split_seeds("val", 24)]


def test_detectors_find_true_events(clips):
    fa = [event_f1(audio_onsets(c.audio), c.truth["event_times"]) for c in clips]
    fv = [event_f1(video_events(c.video), c.truth["event_times"]) for c in clips]
    assert np.mean(fa) > 0.95 and np.mean(fv) > 0.95
    for c in clips:  # onsets land within 20 ms of the truth
        for t, o in zip(c.truth["event_times"], audio_onsets(c.audio), strict=False):
            if event_f1([o], [t]) == 1.0:
                assert abs(o - t) < 0.02


def test_wrong_timing_scores_low(clips):
    """Another clip's sound against this clip's events: the F1 is far below the true pairing."""
    f = [event_f1(audio_onsets(clips[(i + 5) % len(clips)].audio), c.truth["event_times"])
         for i, c in enumerate(clips)]
    assert np.mean(f) < 0.45


def test_silence_and_static_have_no_events():
    rng = np.random.default_rng(0)
    assert audio_onsets(Audio(rng.normal(0, 0.003, 64000).astype(np.float32), 16000)) == []
    frames = np.full((32, 32, 32, 3), 40, np.uint8)
    assert video_events(frames, 8) == []
    frames = (frames + rng.integers(0, 3, frames.shape)).astype(np.uint8)
    assert video_events(frames, 8) == []
