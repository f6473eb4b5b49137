"""``avbridge app`` through its HTTP API: gradio_client against the app served in-process on a
free loopback port with the tiny-random preset (outputs are noise; shapes and durations are real)."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from avbridge.apps import app as webapp  # noqa: E402
from avbridge.apps import cli  # noqa: E402
from avbridge.apps.app_support import TASK_DEFAULT, Limits  # noqa: E402
from avbridge.apps.demo import bundled_examples_dir  # noqa: E402
from avbridge.io import media  # noqa: E402

CLIP = sorted(bundled_examples_dir().glob("*.mp4"))[0]
STEPS = 2
BASE = dict(
    prompt="", negative_prompt="", seed=0, steps=STEPS, compare=True, cfg="", lr="", prompt_lr="",
    inner_steps=None, window="", refine="", update=TASK_DEFAULT, audio_path=TASK_DEFAULT,
    mel_grad=TASK_DEFAULT, frame_grad=TASK_DEFAULT, latent_grad=TASK_DEFAULT, per_clip=False,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The app with tiny random models, serving on a free port; request folders kept 2 s."""
    root = tmp_path_factory.mktemp("app-requests")
    args = cli.build_parser().parse_args(
        ["app", "--preset", "tiny-random", "--keep-minutes", str(2 / 60), "--tmp-dir", str(root)]
    )
    app = webapp.start_app(args)
    url = app.launch("127.0.0.1", webapp.free_port(), block=False)
    client = gradio_client.Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("dl")))
    yield app, client
    app.close()


def _call(client, task: str, **kw):
    return client.predict(**{**BASE, **kw}, api_name=f"/{task}")


def _paths(out) -> dict[str, Path]:
    return {Path(p).suffix: Path(p) for p in out}


def test_every_task_returns_media_of_the_right_duration(served):
    _, client = served
    clip = media.read_video(CLIP)
    upload = gradio_client.handle_file(str(CLIP))
    png = media.write_image(Path(served[0].root) / "frame.png", media.Image(clip.frames[0]))
    expected = {
        "v2a": (dict(upload=upload), clip.duration_s),
        "i2a": (dict(upload=gradio_client.handle_file(str(png)), duration=1.5), 1.5),
        "a2v": (dict(upload=upload), clip.audio.duration_s),
        "a2i": (dict(upload=upload), None),
        "joint": (dict(prompt="a small red ball bouncing", duration=1.0), 1.0),
    }
    for task, (kw, seconds) in expected.items():
        out = _call(client, task, **kw)
        status = out[0]
        assert status.startswith(f"done: {task}"), (task, status)
        assert out[1] is not None  # the loss plot
        for mode, block in (("guided", out[2:6]), ("vanilla", out[6:10])):
            player, picture, info, files = block
            assert mode in info and "binder loss" in info
            assert Path(picture).suffix == ".png" and Path(picture).stat().st_size > 0
            got = _paths(files)
            assert set(got) == set(cli.TASKS[task].outputs), (task, got)
            if seconds is None:
                img = media.read_image(got[".png"])
                assert img.pixels.ndim == 3
                continue
            for ext, path in got.items():
                if ext in (".wav", ".flac"):
                    m = media.read_audio(path)
                    assert abs(m.duration_s - seconds) < 0.05, (task, ext, m.duration_s)
                elif ext == ".mp4":
                    v = media.read_video(path, need_audio=True)
                    assert abs(v.duration_s - seconds) <= 1.0 / v.fps + 1e-6, (task, v.duration_s)
                    assert abs(v.audio.duration_s - seconds) < 0.1, (task, v.audio.duration_s)
            assert Path(player).suffix in (".mp4", ".wav")


def test_compare_off_runs_guided_only(served):
    _, client = served
    out = _call(client, "joint", prompt="a dog barking", duration=1.0, compare=False)
    assert out[2] is not None and out[6] is None
    assert "not run" in out[8]


def test_broken_file_gets_the_cli_message_and_the_app_keeps_serving(served, tmp_path):
    _, client = served
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(CLIP.read_bytes()[:4000])
    out = _call(client, "v2a", upload=gradio_client.handle_file(str(broken)))
    assert out[0].startswith("avbridge: error: broken.mp4: truncated"), out[0]
    assert "\n" not in out[0] and "Traceback" not in out[0]
    assert all(x is None for x in (out[2], out[6]))
    bad = _call(client, "v2a", upload=gradio_client.handle_file(str(CLIP)), lr="fast")
    assert bad[0] == "avbridge: error: --lr: expected NUMBER or audio=NUMBER,visual=NUMBER, got 'fast'"
    ok = _call(client, "a2i", upload=gradio_client.handle_file(str(CLIP)), compare=False)
    assert ok[0].startswith("done: a2i")


def test_limits_are_refused_naming_the_limit(served):
    app, _ = served
    small = webapp.WebApp(app.components, dataclasses.replace(app.settings, root=app.root,
                                                              limits=Limits(max_upload_mb=0.01,
                                                                            max_duration_s=1.0)))
    out = small.generate("v2a", str(CLIP), "", "", 0, STEPS, None, False, {})
    assert out[0].startswith(f"avbridge: error: {CLIP.name}: upload is 0.0") and "limit of 0.01 MB" in out[0]
    roomy = webapp.WebApp(app.components, dataclasses.replace(app.settings, root=app.root,
                                                              limits=Limits(max_duration_s=1.0)))
    out = roomy.generate("a2v", str(CLIP), "", "", 0, STEPS, None, False, {})
    assert out[0] == f"avbridge: error: {CLIP.name}: too long: 4.0 s (limit 1 s) (--max-duration)"
    out = roomy.generate("joint", None, "a ball", "", 0, STEPS, 2.0, False, {})
    assert "duration must be in (0, 1] seconds" in out[0]
    # Over HTTP, Gradio itself refuses the upload at the same size, before it is stored.
    url = small.launch("127.0.0.1", webapp.free_port(), block=False)
    try:
        client = gradio_client.Client(url, verbose=False)
        with pytest.raises(ValueError, match="exceeds the maximum file size of 10000 bytes"):
            _call(client, "v2a", upload=gradio_client.handle_file(str(CLIP)))
    finally:
        small.close()


def test_progress_reports_steps_and_binder_loss(served):
    app, _ = served
    calls = []

    def progress(value, desc=None):
        calls.append((value, desc))

    out = app.generate("v2a", str(CLIP), "", "", 0, 3, None, True, {}, progress)
    assert out[0].startswith("done: v2a")
    guided = [d for _, d in calls if d.startswith("guided")]
    vanilla = [d for _, d in calls if d.startswith("vanilla")]
    assert [v for v, d in calls if d.startswith("guided")] == [(1, 3), (2, 3), (3, 3)]
    assert len(vanilla) == 3 and not any("binder loss" in d for d in vanilla)
    assert any("binder loss" in d for d in guided)


def test_concurrent_requests_all_complete_and_folders_are_removed(served):
    app, client = served
    upload = gradio_client.handle_file(str(CLIP))
    jobs = [
        client.submit(**{**BASE, "upload": upload, "seed": i, "compare": i % 2 == 0}, api_name="/v2a")
        if i % 2 else
        client.submit(**{**BASE, "prompt": f"a ball {i}", "duration": 1.0, "seed": i}, api_name="/joint")
        for i in range(8)
    ]
    results = [j.result(timeout=240) for j in jobs]
    assert all(r[0].startswith("done:") for r in results), [r[0] for r in results]
    assert sorted({r[0].split(",")[2] for r in results}) == sorted({f" seed {i}" for i in range(8)})
    assert app.folders.folders(), "the requests' folders should still be there right after"
    deadline = time.time() + 20
    while app.folders.folders() and time.time() < deadline:
        time.sleep(0.5)
    assert app.folders.folders() == []


def test_bad_app_options_are_one_line_errors(capsys):
    assert cli.main(["app", "--port", "0", "--preset", "tiny-random"]) == 2
    assert capsys.readouterr().err.strip() == "avbridge: error: --port must be in 1..65535, got 0"
    assert cli.main(["app", "--concurrency", "0"]) == 2
    assert "--concurrency must be at least 1" in capsys.readouterr().err
