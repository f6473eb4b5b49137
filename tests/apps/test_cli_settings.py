"""The CLI's run summary (settings and where they came from), short inputs, vanilla binder use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from avbridge.apps import cli
from avbridge.io import media

STEPS = ["--preset", "tiny-random", "--steps", "2", "--quiet"]


def _one_line(rc: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("avbridge: error: "), err
    for n in needles:
        assert n in lines[0], err


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("settings-inputs")
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    frames[:, 8:20, 8:20] = (200, 50, 50)
    return media.write_output(d / "clip.mp4", media.Video(frames, 8.0))


def test_summary_records_each_setting_and_its_source(clip: Path, tmp_path: Path, capsys) -> None:
    out, summary = tmp_path / "o.wav", tmp_path / "run.json"
    rc = cli.main(["v2a", str(clip), "-o", str(out), "--lr", "0.05", "--summary", str(summary), *STEPS])
    assert rc == 0, capsys.readouterr().err
    s = json.loads(summary.read_text())
    st = s["settings"]
    assert st["lr"] == {"value": 0.05, "from": "option"}
    assert st["steps"] == {"value": 2, "from": "option"}
    assert st["guidance_scale"] == {"value": 2.5, "from": "paper"}
    assert st["window"] == {"value": [0.2, 1.0], "from": "paper"}
    assert st["update"]["from"] == "default"
    assert s["mode"] == "guided" and np.isfinite(s["final_loss"]) and s["binder_calls"] > 0
    assert s["sampler"] == "ddim"


def test_vanilla_makes_no_binder_call_unless_score_is_asked(clip: Path, tmp_path: Path, capsys) -> None:
    runs = {}
    for name, extra in (("plain", []), ("scored", ["--score"])):
        summary = tmp_path / f"{name}.json"
        argv = ["v2a", str(clip), "-o", str(tmp_path / f"{name}.wav"), "--no-guidance", "--prompt", "a drum",
                "--summary", str(summary), *STEPS, *extra]
        assert cli.main(argv) == 0, capsys.readouterr().err
        runs[name] = json.loads(summary.read_text())
    assert runs["plain"]["binder_calls"] == 0 and runs["plain"]["final_loss"] is None
    assert runs["scored"]["binder_calls"] > 0 and np.isfinite(runs["scored"]["final_loss"])
    a = media.read_audio(tmp_path / "plain.wav").samples
    b = media.read_audio(tmp_path / "scored.wav").samples
    assert np.array_equal(a, b)  # scoring changes nothing of the output


@pytest.mark.parametrize("kind", ["one-frame video", "short audio"])
def test_inputs_too_short_to_carry_a_condition_are_refused(kind: str, tmp_path: Path, capsys) -> None:
    if kind == "one-frame video":
        src = media.write_output(tmp_path / "one.mp4", media.Video(np.zeros((1, 32, 32, 3), np.uint8), 8.0))
        argv = ["v2a", str(src), "-o", str(tmp_path / "o.wav"), *STEPS]
    else:
        src = media.write_output(tmp_path / "blip.wav", media.Audio(np.zeros(160, np.float32), 16000))
        argv = ["a2v", str(src), "-o", str(tmp_path / "o.mp4"), *STEPS]
    rc = cli.main(argv)
    _one_line(rc, capsys.readouterr().err, str(src), "minimum", "0.5 s")
    assert not list(tmp_path.glob("o.*"))


def test_guidance_encoder_option_loads_it_and_is_recorded(clip: Path, tmp_path: Path, capsys) -> None:
    """``--guidance-encoder`` (bare: the preset's own) changes the guided audio and is recorded;
    a folder that is not an encoder is a one-line error naming it."""
    outs = {}
    for name, extra in (("tower", []), ("encoder", ["--guidance-encoder"])):
        summary = tmp_path / f"{name}.json"
        argv = ["v2a", str(clip), "-o", str(tmp_path / f"{name}.wav"), "--prompt", "a drum",
                "--summary", str(summary), *STEPS, "--window", "0", "1", *extra]
        assert cli.main(argv) == 0, capsys.readouterr().err
        s = json.loads(summary.read_text())
        want = {"value": True, "from": "option"} if extra else {"value": False, "from": "default"}
        assert s["settings"]["guidance_encoder"] == want
        outs[name] = media.read_audio(tmp_path / f"{name}.wav").samples
    assert not np.array_equal(outs["tower"], outs["encoder"])
    rc = cli.main(["v2a", str(clip), "-o", str(tmp_path / "x.wav"), "--guidance-encoder", str(tmp_path),
                   *STEPS])
    _one_line(rc, capsys.readouterr().err, str(tmp_path), "guidance encoder")
