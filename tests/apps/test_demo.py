"""``avbridge demo``: the example rule, the files it writes, and its figures equal the bench's.

Runs on the tiny-random fallback (what a fresh install without the world models gets) at
one step; the real demo runs the shipped settings at each task's own step count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from avbridge.apps import cli, demo
from avbridge.io import media
from avbridge.world.scene import seed_split


def test_demo_seeds_are_the_first_bundled_test_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = demo.bundled_examples_dir().glob("world-*.json")
    bundled = sorted(json.loads(p.read_text())["seed"] for p in files)
    seeds = demo.demo_seeds(4)
    assert seeds == [s for s in bundled if seed_split(s) == "test"][:4] and len(seeds) == 4
    # fewer bundled than asked: the next test seeds fill in, in order
    (tmp_path / "world-2000005.json").write_text(json.dumps({"seed": 2_000_005}))
    (tmp_path / "world-7.json").write_text(json.dumps({"seed": 7}))  # a training seed: never a demo clip
    monkeypatch.setattr(demo, "bundled_examples_dir", lambda: tmp_path)
    assert demo.demo_seeds(3) == [2_000_000, 2_000_001, 2_000_005]
    cmd = demo.bench_command("a2v", 2_000_008, 8, None)
    assert cmd == "avbridge world bench --tasks a2v --start 8 --n 1 --seed 8"


@pytest.fixture(scope="module", params=["1", "2"], ids=["in-process", "two-workers"])
def demo_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, str]:
    """``avbridge demo`` on one example, V2A and A2V, tiny random models, 1 step; in this
    process, or in two worker processes of one torch thread each."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    mp = pytest.MonkeyPatch()
    mp.setattr(demo, "world_models_available", lambda: False)
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = cli.main(["demo", "--out", str(out), "--steps", "1", "--examples", "1", "--quiet",
                       "--workers", request.param])
    mp.undo()
    assert rc == 0, stderr.getvalue()
    return out, stdout.getvalue(), stderr.getvalue()


def test_demo_writes_playable_files_sheet_and_figures(demo_run: tuple[Path, str, str]) -> None:
    d, stdout, stderr = demo_run
    assert "NOISE" in stderr  # says plainly that tiny random models make noise
    summary = json.loads((d / "summary.json").read_text())
    name = f"world-{summary['seeds'][0]}"
    for f in ("input", "v2a_shipped", "v2a_vanilla", "a2v_shipped", "a2v_vanilla"):
        out = media.read_video(d / f"{name}_{f}.mp4", need_audio=True)
        assert out.duration_s == pytest.approx(4.0, abs=0.05), f
    sheet = media.read_image(d / "contact_sheet.png")
    assert sheet.pixels.shape[0] > 500 and sheet.pixels.shape[1] > 600
    assert summary["preset"] == "tiny-random" and summary["noise"] is True
    assert summary["shipped_steps"] is False
    assert {(r["task"], r["variant"]) for r in summary["runs"]} == {
        ("v2a", "shipped"), ("v2a", "vanilla"), ("a2v", "shipped"), ("a2v", "vanilla")}
    for r in summary["runs"]:
        assert 0.0 <= r["sync_f1"] <= 1.0 and r["class_acc"] in (0.0, 1.0)
        assert r["final_binder_loss"] > 0 and "avbridge world bench" in r["bench_command"]
        assert r["bench_command"].startswith("OMP_NUM_THREADS=1 ") == (summary["workers"] > 1)
    assert summary["settings"]["v2a"]["shipped"]["steps"] == 1
    assert summary["settings"]["a2v"]["vanilla"]["per_clip"] is False
    m = summary["means"]["a2v"]["shipped"]
    assert m["n"] == 1 and m["sync_f1"] == next(
        r["sync_f1"] for r in summary["runs"] if r["task"] == "a2v" and r["variant"] == "shipped")
    assert json.loads((d / f"{name}_truth.json").read_text())["seed"] == summary["seeds"][0]
    # the terminal shows each run's figures, the means and where the real measurement is
    assert f"{name}  v2a   shipped" in stdout and "mean over 1 examples, a2v" in stdout
    assert "avbridge world bench" in stdout


def test_demo_figures_equal_a_bench_run_on_the_same_clip(demo_run: tuple[Path, str, str]) -> None:
    from avbridge import loading
    from avbridge.world.bench import run_bench

    d, _, _ = demo_run
    summary = json.loads((d / "summary.json").read_text())
    seed = summary["seeds"][0]
    comps = loading.load_components("tiny-random", need=["audio", "video"], seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(summary["torch_threads"])  # the same figures need the same thread count
    try:
        res = run_bench(1, ("v2a", "a2v"), components=comps, steps=1, start=demo.split_index(seed),
                        seed=summary["examples"][0]["gen_seed"], preset="tiny-random", log=None)
    finally:
        torch.set_num_threads(threads)
    keys = ("seed", "gen_seed", "prompt", "sync_f1", "class_acc", "events", "final_binder_loss", "pred")
    bench_rows = {(r["task"], r["variant"]): r for r in res["rows"]}
    for r in summary["runs"]:
        b = bench_rows[(r["task"], r["variant"])]
        assert {k: r[k] for k in keys} == json.loads(json.dumps({k: b[k] for k in keys})), r["task"]


def test_demo_rejects_unknown_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--tasks", "v2a,xyz", "--quiet"]) == 2
    assert "xyz" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
