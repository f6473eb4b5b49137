"""AV-Align against the reference fixture (both versions), and its edge cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("librosa")
pytest.importorskip("cv2")

from avbridge.errors import AvbridgeError, MediaError  # noqa: E402
from avbridge.eval import av_align as ava  # noqa: E402


@pytest.fixture(scope="module")
def clips(av_align_fixture):
    """Per clip: reference entry, decoded frames, fps, flow, onsets from the WAV and from the AAC track."""
    ref = json.loads((av_align_fixture / "reference_scores.json").read_text())
    out = {}
    for name, c in ref["clips"].items():
        frames, fps = ava.read_bgr_frames(av_align_fixture / c["mp4"])
        y_wav, sr = ava.load_audio_librosa(av_align_fixture / c["wav"])
        y_aac, _ = ava.resample_like_librosa(*ava.decode_audio_track(av_align_fixture / c["mp4"]))
        out[name] = dict(
            ref=c,
            frames=frames,
            fps=fps,
            sr=sr,
            n_wav=len(y_wav),
            flow=ava.flow_series(frames),
            onsets_wav=ava.audio_onsets(y_wav, sr),
            onsets_aac=ava.audio_onsets(y_aac, ava.LIBROSA_SR),
        )
    return ref, out


def _check(c, frames, fps, flow, onsets):
    for version in ava.VERSIONS:
        r = ava.av_align_from_arrays(frames, fps, np.zeros(1), version, flow=flow, onsets=onsets)
        assert r.audio_onset_frames == c["audio_onset_frames"]
        assert r.audio_peaks == c["audio_peaks"]  # exact
        assert r.video_peaks == c[f"video_peaks_{version}"]  # exact
        assert r.hits == c[f"hits_{version}"]
        assert r.score == pytest.approx(c[f"score_{version}"], abs=1e-6)
        yield version, r.score


def test_every_clip_matches_reference_from_wav(clips):
    ref, data = clips
    means = {v: [] for v in ava.VERSIONS}
    for d in data.values():
        c = d["ref"]
        assert d["fps"] == c["fps"]
        assert len(d["frames"]) == c["n_frames"]
        assert d["frames"][0].shape == (c["height"], c["width"], 3)
        assert d["sr"] == c["librosa_load_sr"] and d["n_wav"] == c["librosa_num_samples"]
        np.testing.assert_allclose(d["flow"], c["flow_trajectory"], rtol=1e-6, atol=1e-9)
        assert d["flow"][0] == d["flow"][1]  # the (f0, f1) pair is computed once
        for version, score in _check(c, d["frames"], d["fps"], d["flow"], d["onsets_wav"]):
            means[version].append(score)
    assert len(means["fixed"]) == 12
    assert np.mean(means["fixed"]) == pytest.approx(ref["set_mean_score_fixed"], abs=1e-6)
    assert np.mean(means["old"]) == pytest.approx(ref["set_mean_score_old"], abs=1e-6)


def test_every_clip_matches_reference_from_aac_track(clips):
    _, data = clips
    for d in data.values():
        assert list(_check(d["ref"], d["frames"], d["fps"], d["flow"], d["onsets_aac"]))


def test_file_level_entry_point(av_align_fixture):
    ref = json.loads((av_align_fixture / "reference_scores.json").read_text())
    c = ref["clips"]["12_double_onsets_10fps_16k.mp4"]
    res = ava.av_align_file(av_align_fixture / c["mp4"])  # picks up the sibling .wav
    assert res["fixed"].score == pytest.approx(c["score_fixed"], abs=1e-6)
    assert res["old"].score == pytest.approx(c["score_old"], abs=1e-6)
    assert res["old"].score > res["fixed"].score  # caveat 7: OLD rewards double onsets
    assert "fixed" in res["fixed"].label and "old" in res["old"].label


def test_matching_rules_by_hand():
    fps = 10.0
    # two audio peaks near one video peak: old counts both, fixed only one
    assert ava.count_hits([0.50, 0.55], [0.5], fps, "old") == 2
    assert ava.count_hits([0.50, 0.55], [0.5], fps, "fixed") == 1
    # strict window: exactly one frame away is not a hit
    assert ava.count_hits([0.6], [0.5], fps, "fixed") == 0
    # greedy: first audio takes the first unused peak in its window
    assert ava.count_hits([0.45, 0.52], [0.4, 0.5], fps, "fixed") == 2
    assert ava.iou_score(2, 1, 2) == 2.0  # old can exceed 1
    assert ava.video_peaks([0, 0.05, 0, 0.2, 0.2, 0, 0.3, 0], 10, "old") == [0.1, 0.6]
    assert ava.video_peaks([0, 0.05, 0, 0.2, 0.2, 0, 0.3, 0], 10, "fixed") == [0.6]


def test_undefined_and_bad_inputs(tmp_path, av_align_fixture):
    with pytest.raises(ava.AVAlignUndefinedError, match="clip.mp4"):
        ava.iou_score(0, 0, 0, name="clip.mp4")
    assert issubclass(ava.AVAlignUndefinedError, AvbridgeError)
    with pytest.raises(MediaError, match="nope.mp4"):
        ava.av_align_file(tmp_path / "nope.mp4")
    with pytest.raises(ValueError):
        ava.video_peaks([1, 2, 1], 10, "new")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    with pytest.raises(MediaError, match="junk.mp4"):
        ava.av_align_file(junk)
