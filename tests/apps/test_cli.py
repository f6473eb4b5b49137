"""The avbridge command line, end to end on the tiny-random preset (few steps, 1-s inputs)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avbridge import loading as registry
from avbridge.apps import cli
from avbridge.io import media

STEPS = ["--preset", "tiny-random", "--steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 1-s 32x32 8-fps video with sound, its sound alone, a still, and bad files."""
    d = tmp_path_factory.mktemp("cli-inputs")
    t = np.arange(8)
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    for i in t:
        frames[i, 8:20, 2 + 3 * i : 12 + 3 * i] = (220, 40, 40)
    sr = 16000
    x = np.arange(sr) / sr
    audio = media.Audio((0.3 * np.sin(2 * np.pi * 440 * x) * (x % 0.5 < 0.1)).astype(np.float32), sr)
    paths = {
        "video": media.write_output(d / "in.mp4", media.Video(frames, 8.0, audio)),
        "audio": media.write_output(d / "in.wav", audio),
        "image": media.write_output(d / "in.png", media.Image(frames[3])),
    }
    (d / "notes.mp4").write_text("this is not a video\n")
    paths["text"] = d / "notes.mp4"
    data = paths["video"].read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 3])
    paths["truncated"] = d / "cut.mp4"
    return paths


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    rc = cli.main(argv)
    return rc, capsys.readouterr().err


def assert_one_line_error(rc: int, err: str, name: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("avbridge: error: "), err
    assert name in lines[0], err
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- every task


def test_v2a_subprocess_mp4(inputs: dict[str, Path], tmp_path: Path) -> None:
    """The real console entry point: the input video with the new audio muxed in."""
    out = tmp_path / "v2a.mp4"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "avbridge", "v2a", str(inputs["video"]), "-o", str(out), *STEPS],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    v = media.read_video(out, need_audio=True)
    src = media.read_video(inputs["video"])
    assert v.frames.shape == src.frames.shape
    assert v.duration_s == pytest.approx(1.0, abs=0.01)
    assert v.audio is not None and v.audio.duration_s == pytest.approx(1.0, abs=0.03)
    # The sound track is the generated one, not the input's 440-Hz bursts.
    n = min(len(v.audio.samples), len(src.audio.samples))
    assert not np.allclose(v.audio.samples[:n], src.audio.samples[:n], atol=1e-2)


@pytest.mark.parametrize(
    ("task", "source", "ext", "extra"),
    [
        ("v2a", "video", ".wav", ["--no-guidance"]),
        ("i2a", "image", ".flac", ["--duration", "1.5"]),
        ("a2v", "audio", ".mp4", ["--prompt", "a red ball", "--per-clip", "--update", "grad"]),
        ("a2i", "audio", ".png", ["--window", "0.0", "1.0", "--inner-steps", "2"]),
        (
            "joint",
            None,
            ".mp4",
            [
                "--prompt",
                "a red ball bouncing",
                "--duration",
                "1",
                "--cfg",
                "3",
                "--lr",
                "audio=0.2,video=0.02",
            ],
        ),
    ],
)
def test_task_in_process(
    task: str,
    source: str | None,
    ext: str,
    extra: list[str],
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / f"{task}{ext}"
    argv = [task] + ([str(inputs[source])] if source else []) + ["-o", str(out), *STEPS, *extra]
    rc, err = run(argv, capsys)
    assert rc == 0, err
    if ext in (".wav", ".flac"):
        a = media.read_audio(out)
        want = 1.5 if task == "i2a" else 1.0
        assert a.duration_s == pytest.approx(want, abs=0.01)
        assert np.isfinite(a.samples).all() and np.abs(a.samples).max() > 0
    elif ext == ".mp4":
        v = media.read_video(out, need_audio=True)
        assert v.duration_s == pytest.approx(1.0, abs=0.01)
        assert v.audio is not None and v.audio.duration_s == pytest.approx(1.0, abs=0.03)
        if task == "a2v":  # the input audio is the sound track
            src = media.read_audio(inputs["audio"], sample_rate=v.audio.sample_rate)
            n = min(len(src.samples), len(v.audio.samples))
            assert np.corrcoef(src.samples[:n], v.audio.samples[:n])[0, 1] > 0.9
    else:
        img = media.read_image(out)
        assert img.pixels.ndim == 3 and img.pixels.shape[2] == 3


def test_same_seed_same_output(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outs = []
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        out = tmp_path / f"{name}.png"
        rc, err = run(["a2i", str(inputs["audio"]), "-o", str(out), *STEPS, "--seed", seed], capsys)
        assert rc == 0, err
        outs.append(media.read_image(out).pixels)
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def no_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bad input must be caught before any model is loaded."""

    def fail(*a: object, **k: object) -> None:
        raise AssertionError("models were loaded before the input was validated")

    monkeypatch.setattr(registry, "load_components", fail)


@pytest.mark.parametrize(
    ("task", "key", "out_name", "named"),
    [
        ("v2a", "missing", "o.wav", "nope.mp4"),
        ("v2a", "text", "o.wav", "notes.mp4"),
        ("v2a", "truncated", "o.wav", "cut.mp4"),
        ("v2a", "audio", "o.wav", "in.wav"),  # audio given to v2a: no video stream
        ("a2v", "image", "o.mp4", "in.png"),  # an image has no audio
        ("v2a", "video", "o.png", "o.png"),  # wrong output extension
        ("a2i", "audio", "o.mp3", "o.mp3"),
        ("joint", None, "o", "o"),  # no extension at all
    ],
)
def test_bad_input_one_line_exit_2(
    task: str,
    key: str | None,
    out_name: str,
    named: str,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_models: None,
) -> None:
    src = [] if key is None else [str(tmp_path / "nope.mp4") if key == "missing" else str(inputs[key])]
    argv = [task, *src, "-o", str(tmp_path / out_name), *STEPS]
    if task == "joint":
        argv += ["--prompt", "x"]
    rc, err = run(argv, capsys)
    assert_one_line_error(rc, err, named)
    assert not (tmp_path / out_name).exists()


def test_output_over_input_refused(
    inputs: dict[str, Path], capsys: pytest.CaptureFixture[str], no_models: None
) -> None:
    before = inputs["video"].read_bytes()
    rc, err = run(["v2a", str(inputs["video"]), "-o", str(inputs["video"]), *STEPS], capsys)
    assert_one_line_error(rc, err, "in.mp4")
    assert "input" in err
    assert inputs["video"].read_bytes() == before


def test_bad_option_values(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_models: None
) -> None:
    rc, err = run(
        ["v2a", str(inputs["video"]), "-o", str(tmp_path / "o.wav"), *STEPS, "--window", "0.9", "0.1"], capsys
    )
    assert_one_line_error(rc, err, "window")
    rc, err = run(["joint", "--prompt", " ", "-o", str(tmp_path / "o.mp4"), *STEPS], capsys)
    assert_one_line_error(rc, err, "--prompt")
    rc, err = run(
        ["a2i", str(inputs["audio"]), "-o", str(tmp_path / "o.png"), *STEPS, "--device", "gpu7"], capsys
    )
    assert_one_line_error(rc, err, "gpu7")


def test_missing_checkpoint_is_one_line(
    inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-model"
    rc, err = run(
        ["v2a", str(inputs["video"]), "-o", str(tmp_path / "o.wav"), *STEPS, "--audio-model", str(missing)],
        capsys,
    )
    assert_one_line_error(rc, err, str(missing))
    rc, err = run(
        ["v2a", str(inputs["video"]), "-o", str(tmp_path / "o.wav"), "--preset", "paper", "--quiet"], capsys
    )
    assert_one_line_error(rc, err, "imagebind_huge.pth")


def test_ctrl_c_exits_130(
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(registry, "load_components", interrupted)
    rc, err = run(["v2a", str(inputs["video"]), "-o", str(tmp_path / "o.wav"), *STEPS], capsys)
    assert rc == 130
    assert "Traceback" not in err
    assert not (tmp_path / "o.wav").exists()


# ----------------------------------------------------------------------------- help and plugins


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


TASK_OPTIONS = [
    "--output",
    "--preset",
    "--audio-model",
    "--video-model",
    "--image-model",
    "--binder",
    "--device",
    "--steps",
    "--seed",
    "--cfg",
    "--negative-prompt",
    "--prompt",
    "--lr",
    "--prompt-lr",
    "--inner-steps",
    "--window",
    "--update",
    "--per-clip",
    "--no-guidance",
]


@pytest.mark.parametrize("task", list(cli.TASKS))
def test_help_lists_every_option(task: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main([task, "--help"])
    text = capsys.readouterr().out
    assert rc == 0
    for opt in TASK_OPTIONS + (["--duration"] if task in ("joint", "i2a") else []):
        assert opt in text, f"{opt} missing from `avbridge {task} --help`"
    sub = _subparsers(cli.build_parser())[task]
    for action in sub._actions:
        assert action.help and len(action.help) > 10, (
            f"option {action.option_strings or action.dest} has no help"
        )


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for name in (*cli.TASKS, "demo", "batch", "eval", "world"):
        assert name in text


def test_broken_plugin_does_not_break_core(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "PLUGINS", (("ghost", "avbridge.no_such_module", "a missing plugin"),))
    rc, err = run(["ghost", "anything"], capsys)
    assert_one_line_error(rc, err, "ghost")
    assert cli.main(["v2a", "--help"]) == 0


def test_progress_bar_follows_callback(capsys: pytest.CaptureFixture[str]) -> None:
    bar = cli.ProgressBar("x")
    for i in range(1, 4):
        bar(i, 3, {"guided": True, "loss": 0.5})
    assert bar._bar is not None and bar._bar.n == 3 and bar._bar.total == 3
    bar(1, 5, {})  # a new run (e.g. the demo's next task) starts a fresh bar
    assert bar._bar.n == 1 and bar._bar.total == 5
    bar.close()
    assert bar._bar is None
    assert "x:" in capsys.readouterr().err


def test_per_modality_values() -> None:
    assert cli.per_modality("0.5") == 0.5
    assert cli.per_modality("audio=0.1, video=0.01") == {"audio": 0.1, "visual": 0.01}
    with pytest.raises(argparse.ArgumentTypeError):
        cli.per_modality("depth=1")


def test_options_reach_the_align_config() -> None:
    args = cli.build_parser().parse_args(
        ["joint", "--prompt", "x", "-o", "o.mp4", "--lr", "audio=0.2,video=0.02", "--steps", "7",
         "--window", "0.1", "0.9", "--update", "grad", "--per-clip", "--inner-steps", "3",
         "--prompt-lr", "0", "--cfg", "4", "--negative-prompt", "noisy", "--audio-path", "waveform",
         "--guidance-dtype", "bfloat16", "--mel-grad", "envelope",
         "--frame-grad", "envelope", "--latent-grad", "frame-mean", "--refine", "0.4"]
    )  # fmt: skip
    cfg = cli.make_config("joint", cli.config_overrides(args))
    assert cfg.lr == {"audio": 0.2, "visual": 0.02}
    assert (cfg.steps, cfg.window, cfg.update, cfg.per_clip, cfg.inner_steps) == (
        7,
        (0.1, 0.9),
        "grad",
        True,
        3,
    )
    assert (cfg.prompt_lr, cfg.guidance_scale, cfg.negative_prompt) == (0.0, 4.0, "noisy")
    assert cfg.audio_path == "waveform" and cfg.guidance_dtype == "bfloat16"
    assert cfg.mel_grad == "envelope" and cli.make_config("v2a", {}).mel_grad == "full"
    assert cfg.frame_grad == "envelope" and cli.make_config("a2v", {}).frame_grad == "full"
    assert cfg.latent_grad == "frame-mean" and cli.make_config("a2v", {}).latent_grad == "full"
    assert cli.make_config("v2a", {}).guidance_dtype is None
    assert cfg.refine == 0.4 and cli.make_config("joint", {}).refine == 0.0
    default = cli.make_config("a2v", {})
    assert default.steps == 25 and default.prompt_lr > 0  # unset options keep the paper's task defaults


def test_preset_guidance_settings_only_apply_to_the_presets_own_models() -> None:
    import argparse

    from avbridge.apps.cli import config_preset

    base = dict(preset="world", audio_model=None, video_model=None, image_model=None, binder=None)
    assert config_preset(argparse.Namespace(**base)) == "world"
    assert config_preset(argparse.Namespace(**{**base, "audio_model": "some/folder"})) is None
