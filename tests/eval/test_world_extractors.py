"""The embedded world's evaluation classifiers as ``avbridge eval`` extractors."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

from avbridge.errors import AvbridgeError
from avbridge.eval import add_parser
from avbridge.eval.extractors import accepts, extract_outputs
from avbridge.eval.world_extractors import (
    WorldAudioExtractor,
    WorldVideoExtractor,
    weights_version,
    world_extractors,
)
from avbridge.io.media import write_video
from avbridge.world.evalmodels import HEADS, WEIGHTS_DIR, EvalModels
from avbridge.world.scene import render_clip

pytestmark = pytest.mark.skipif(not EvalModels.available(), reason="world evaluation weights not shipped")


@pytest.fixture(scope="module")
def exts():
    return world_extractors()


@pytest.fixture(scope="module")
def clip():
    return render_clip(0)


def test_features_and_probabilities(exts, clip):
    audio_ex, video_ex = exts
    assert isinstance(audio_ex, WorldAudioExtractor) and isinstance(video_ex, WorldVideoExtractor)
    for ex, media in ((audio_ex, clip.audio), (audio_ex, clip.video), (video_ex, clip.video),
                      (video_ex, clip.image())):
        assert accepts(ex, media)
        out = extract_outputs(ex, media)
        assert out["features"].shape == (96,) and np.isfinite(out["features"]).all()
        assert out["probabilities"].shape == (len(HEADS["class"]),)
        assert out["probabilities"].sum() == pytest.approx(1.0, abs=1e-9)
        for head in ("colour", "size"):
            assert out[f"probabilities_{head}"].shape == (len(HEADS[head]),)
            assert out[f"probabilities_{head}"].sum() == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(ex.probabilities(media), out["probabilities"], atol=1e-6)
        assert ex.features(media).shape == (96,)
    assert not accepts(video_ex, clip.audio) and not accepts(audio_ex, clip.image())
    # the class head agrees with the truth on a clean world clip
    assert HEADS["class"][int(extract_outputs(video_ex, clip.video)["probabilities"].argmax())] \
        == clip.truth["class"]


def test_version_follows_weight_content(tmp_path, exts):
    assert exts[0].version == weights_version(WEIGHTS_DIR / "audio.safetensors")
    assert exts[1].version == weights_version(WEIGHTS_DIR / "video.safetensors")
    w = tmp_path / "audio.safetensors"
    shutil.copy(WEIGHTS_DIR / "audio.safetensors", w)
    assert weights_version(w) == exts[0].version
    w.write_bytes(w.read_bytes() + b" ")
    assert weights_version(w) != exts[0].version
    with pytest.raises(AvbridgeError, match="world evaluation weights not found"):
        world_extractors(tmp_path / "nowhere")


def test_eval_command_with_world_extractors(tmp_path):
    gen, ref = tmp_path / "gen", tmp_path / "ref"
    for d in (gen / "g", ref):
        d.mkdir(parents=True)
    for i in range(2):  # generated = seeds 0, 1; references = seeds 2, 3 (paired by name)
        write_video(gen / "g" / f"c{i}.mp4", render_clip(i).video, preset="ultrafast")
        write_video(ref / f"c{i}.mp4", render_clip(i + 2).video, preset="ultrafast")
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["eval", str(gen), "--references", str(ref), "--out", str(out),
                              "--world-extractors", "--no-av-align", "--no-plots",
                              "--kid-subsets", "2"])
    assert args.func(args) == 0
    res = json.loads((out / "results.json").read_text())
    g = res["groups"]["g"]
    for key in ("FAD [world-audio]", "FVD [world-video]", "KL(ref||gen) [world-audio]",
                "KL(ref||gen) [world-video]", "ISc [world-audio]", "ISc [world-video]"):
        assert np.isfinite(g[key]), key
    assert g["FVD [world-video]"] >= 0 and g["KL(ref||gen) [world-video]"] >= 0
    assert set(res["extractors"]) == {"world-audio", "world-video"}
    assert "world-video" in (out / "report.md").read_text()
