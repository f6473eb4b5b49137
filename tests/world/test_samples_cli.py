"""`python -m avbridge.world samples` and the bundled examples."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from avbridge.io.media import read_video
from avbridge.world import add_parser, main
from avbridge.world.events import audio_onsets, event_f1
from avbridge.world.scene import render_clip

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "avbridge" / "world" / "examples"


def test_samples_writes_mp4_and_truth(tmp_path):
    assert main(["samples", "--n", "2", "--out", str(tmp_path), "--split", "val"]) == 0
    mp4s = sorted(tmp_path.glob("*.mp4"))
    assert len(mp4s) == 2
    truth = json.loads(mp4s[0].with_suffix(".json").read_text())
    clip = render_clip(truth["seed"])
    assert truth == clip.truth and truth["split"] == "val"
    v = read_video(mp4s[0], need_audio=True)
    assert v.frames.shape == (32, 32, 32, 3) and v.fps == 8
    assert v.audio is not None and v.audio.sample_rate == 16000
    # Lossy codecs keep the timing: onsets of the decoded audio still match the truth.
    assert event_f1(audio_onsets(v.audio), truth["event_times"]) == 1.0
    assert np.abs(v.frames.astype(int) - clip.video.frames).mean() < 12


def test_bad_options_exit_2(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["samples", "--n", "0", "--out", str(tmp_path)]) == 2
    assert main(["samples", "--n", "1", "--out", str(tmp_path / "f")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_add_parser_wires_world_commands():
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="cmd"))
    args = p.parse_args(["world", "samples", "--n", "3"])
    assert args.n == 3 and callable(args.func)
    args = p.parse_args(["world", "bench", "--n", "5", "--tasks", "v2a"])
    assert args.n == 5 and callable(args.func)


def test_bundled_examples_are_test_clips():
    mp4s = sorted(EXAMPLES.glob("*.mp4"))
    assert len(mp4s) >= 6 and sum(p.stat().st_size for p in EXAMPLES.iterdir()) < 1_000_000
    classes = set()
    for mp4 in mp4s:
        truth = json.loads(mp4.with_suffix(".json").read_text())
        assert truth["split"] == "test" and truth == render_clip(truth["seed"]).truth
        classes.add(truth["class"])
    assert len(classes) == 6
