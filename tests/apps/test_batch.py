"""Batch runs: manifests, seeds, resume after a kill, bad items, sharding, long inputs.

These tests drive the batch machinery with ``batch_fake_tasks`` (same signatures as
``avbridge.tasks``, deterministic, no models) so that they are fast and can time a kill;
tests/test_batch_real.py runs the same paths with the real tiny-random models.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import batch_fake_tasks
import numpy as np
import pytest

from avbridge.apps import batch
from avbridge.apps.batch import BatchSettings, derive_seed, load_manifest, read_results, run_batch
from avbridge.errors import AvbridgeError
from avbridge.io import longform
from avbridge.io.media import TMP_PREFIX, Audio, Video, read_audio, read_video, write_audio, write_video

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parents[1] / "src"
FAKE_MAIN = TESTS / "batch_fake_main.py"
FAKES = {"tasks": batch_fake_tasks, "load": batch_fake_tasks.load_components}


def _video(path: Path, seconds: float, fps: float = 4.0, value: int = 0, size: int = 16) -> Path:
    t = max(1, round(seconds * fps))
    frames = np.full((t, size, size, 3), value, np.uint8)
    frames[:, :, :, 1] = (np.arange(t) * 7 % 256)[:, None, None]
    return write_video(path, Video(frames, fps))


def _settings(out: Path, task: str = "v2a", **kw) -> BatchSettings:
    kw.setdefault("progress", False)
    return BatchSettings(task=task, out_dir=out, **kw)


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _cli(manifest: Path, out: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        str(FAKE_MAIN),
        "v2a",
        "--manifest",
        str(manifest),
        "--out",
        str(out),
        "--no-progress",
        *args,
    ]


def _records(out: Path) -> list[dict]:
    return [r for p in sorted(out.glob("results.r*.jsonl")) for r in batch._iter_records(p)]


@pytest.fixture
def clips(tmp_path) -> Path:
    d = tmp_path / "clips"
    for i in range(5):
        _video(d / f"clip{i}.mp4", 1.0 + 0.25 * i, value=10 * i)
    return d


# ------------------------------------------------------------------ manifests and seeds


def test_manifest_formats(tmp_path, clips):
    (tmp_path / "m.csv").write_text("id,input,prompt,seed\na,clips/clip0.mp4,a dog,7\nb,clips/clip1.mp4,,\n")
    items = load_manifest(tmp_path / "m.csv", "v2a")
    assert [(it.id, it.input, it.prompt, it.seed) for it in items] == [
        ("a", clips / "clip0.mp4", "a dog", 7),
        ("b", clips / "clip1.mp4", None, None),
    ]
    rows = [{"input": str(clips / "clip2.mp4"), "seed": "x"}, {"id": "j", "prompt": "hi"}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{not json\n")
    items = load_manifest(tmp_path / "m.jsonl", "v2a")
    assert items[0].id == "clip2" and "seed" in items[0].error
    assert "no input" in items[1].error and "bad JSON" in items[2].error
    folder = load_manifest(clips, "v2a")
    assert [it.id for it in folder] == [f"clip{i}" for i in range(5)]
    with pytest.raises(AvbridgeError, match="no items"):
        load_manifest(clips, "a2v")
    (tmp_path / "dup.csv").write_text("id,input\nx,a.mp4\nx,b.mp4\n")
    with pytest.raises(AvbridgeError, match="duplicate"):
        load_manifest(tmp_path / "dup.csv", "v2a")
    with pytest.raises(AvbridgeError, match="not found"):
        load_manifest(tmp_path / "nope.csv", "v2a")


def test_seed_depends_on_base_and_id_only():
    assert derive_seed(0, "clip3") == derive_seed(0, "clip3")
    assert derive_seed(0, "clip3") != derive_seed(1, "clip3")
    assert derive_seed(0, "clip3") != derive_seed(0, "clip4")
    items = [batch.Item(i, f"c{i}") for i in range(7)]
    shards = [batch.shard(items, r, 3) for r in range(3)]
    assert sorted(it.index for s in shards for it in s) == list(range(7))
    assert [it.index for it in shards[1]] == [1, 4]


# ------------------------------------------------------------------ runs


def test_bad_item_is_recorded_and_others_succeed(tmp_path, clips):
    (clips / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 40)
    out = tmp_path / "out"
    items = load_manifest(clips, "v2a")
    s = run_batch(items, _settings(out), log=lambda m: None, **FAKES)
    assert (s.done, s.failed, s.skipped) == (5, 1, 0)
    res = read_results(out)
    assert res["broken"]["status"] == "failed"
    assert "broken.mp4" in res["broken"]["error"] and "MediaError" in res["broken"]["error"]
    for i in range(5):
        r = res[f"clip{i}"]
        assert r["status"] == "done" and r["seed"] == derive_seed(0, f"clip{i}")
        assert set(r["timings"]) >= {"read_s", "generate_s", "write_s", "total_s"}
        a = read_audio(out / f"clip{i}.wav")
        assert a.duration_s == pytest.approx(1.0 + 0.25 * i, abs=1e-3)
    merged = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in merged] == [it.id for it in items]


def test_rerun_skips_done_and_retries_failed_when_asked(tmp_path, clips):
    (clips / "broken.mp4").write_text("garbage")
    out = tmp_path / "out"
    items = load_manifest(clips, "v2a")
    run_batch(items, _settings(out), log=lambda m: None, **FAKES)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    s = run_batch(items, _settings(out), log=lambda m: None, **FAKES)
    assert (s.done, s.failed, s.skipped) == (0, 0, 6)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")} == mtimes
    _video(clips / "broken.mp4", 1.0)  # the user fixes the file
    s = run_batch(items, _settings(out, retry_failed=True), log=lambda m: None, **FAKES)
    assert (s.done, s.failed, s.skipped) == (1, 0, 5)
    assert read_results(out)["broken"]["status"] == "done"
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav") if p.name != "broken.wav"} == mtimes


def test_exit_codes_and_output_format(tmp_path, clips):
    out = tmp_path / "out"
    r = subprocess.run(_cli(clips, out, "--ext", ".mp4"), env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "done 5, failed 0, skipped 0" in r.stderr and "items/min" in r.stderr
    v = read_video(out / "clip2.mp4", need_audio=True)
    assert v.duration_s == pytest.approx(1.5) and v.audio.duration_s == pytest.approx(1.5, abs=0.07)
    r = subprocess.run(_cli(clips, out, "--ext", ".png"), env=_env(), capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--ext .png" in r.stderr
    (clips / "bad.mp4").write_text("x")
    r = subprocess.run(_cli(clips, out, "--ext", ".mp4"), env=_env(), capture_output=True, text=True)
    assert r.returncode == 1 and "done 0, failed 1, skipped 5" in r.stderr


def test_killed_run_resumes_without_loss_or_rework(tmp_path, clips):
    out = tmp_path / "out"
    cmd = _cli(clips, out)
    proc = subprocess.Popen(
        cmd, env=_env(AVBRIDGE_FAKE_DELAY="1.5"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if sum(r["status"] == "done" for r in _records(out)) >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {r["id"] for r in _records(out) if r["status"] == "done"}
    assert 2 <= len(before) < 5, "the kill did not land in the middle of the run"
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    assert {f"{i}.wav" for i in before} <= set(mtimes)
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    recs = _records(out)
    for i in range(5):
        done = [x for x in recs if x["id"] == f"clip{i}" and x["status"] == "done"]
        assert len(done) == 1, f"clip{i} generated {len(done)} times"
    for name, m in mtimes.items():
        assert (out / name).stat().st_mtime_ns == m, f"{name} was redone"
    assert not list(out.glob(TMP_PREFIX + "*"))
    # Identical to an uninterrupted run.
    ref = tmp_path / "ref"
    subprocess.run(_cli(clips, ref), env=_env(), check=True, capture_output=True)
    for i in range(5):
        assert (out / f"clip{i}.wav").read_bytes() == (ref / f"clip{i}.wav").read_bytes()


def test_torn_results_line_is_ignored_and_kept_separate(tmp_path, clips):
    out = tmp_path / "out"
    items = load_manifest(clips, "v2a")[:2]
    run_batch(items, _settings(out), log=lambda m: None, **FAKES)
    shard = out / "results.r0.jsonl"
    with open(shard, "ab") as fh:
        fh.write(b'{"id": "clip0", "status": "fai')  # a kill in the middle of an append
    (out / "clip1.wav").unlink()
    run_batch(items, _settings(out), log=lambda m: None, **FAKES)
    res = read_results(out)
    assert res["clip0"]["status"] == "done" and res["clip1"]["status"] == "done"
    assert len([r for r in _records(out) if r["id"] == "clip1" and r["status"] == "done"]) == 2


def test_sharded_processes_write_the_same_files(tmp_path, clips):
    """Two real processes with the environment `accelerate launch` sets, vs one process."""
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_cli(clips, one), env=_env(), check=True, capture_output=True)
    port = str(29600 + os.getpid() % 300)
    procs = [
        subprocess.Popen(
            _cli(clips, two),
            env=_env(
                RANK=str(r),
                LOCAL_RANK=str(r),
                WORLD_SIZE="2",
                LOCAL_WORLD_SIZE="2",
                MASTER_ADDR="127.0.0.1",
                MASTER_PORT=port,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert "[rank 1/2]" in outs[1][1]
    ranks = {r["id"]: r["rank"] for r in _records(two)}
    assert ranks == {f"clip{i}": i % 2 for i in range(5)}
    names = sorted(p.name for p in one.glob("*.wav"))
    assert names == sorted(p.name for p in two.glob("*.wav")) and len(names) == 5
    for n in names:
        assert (one / n).read_bytes() == (two / n).read_bytes()
    merged = [json.loads(line) for line in (two / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in merged] == ["done"] * 5


# ------------------------------------------------------------------ long inputs


def test_plan_windows_cover_the_input():
    ws = longform.plan_windows(30.0, 10.0, 2.0)
    assert ws[0].start_s == 0 and ws[-1].end_s == 30.0
    assert all(w.duration_s == 10.0 for w in ws)
    assert all(a.end_s - b.start_s >= 2.0 for a, b in zip(ws, ws[1:], strict=False))
    assert longform.plan_windows(7.0, 10.0, 2.0) == [longform.Window(0, 0.0, 7.0)]
    with pytest.raises(AvbridgeError):
        longform.plan_windows(30.0, 10.0, 10.0)


def test_audio_crossfade_is_equal_power():
    ws = [longform.Window(0, 0.0, 2.0), longform.Window(1, 1.0, 3.0)]
    ones, zeros = np.ones(2000, np.float32), np.zeros(2000, np.float32)
    a = longform.join_audio([Audio(ones, 1000), Audio(zeros, 1000)], ws, 3.0).samples
    b = longform.join_audio([Audio(zeros, 1000), Audio(ones, 1000)], ws, 3.0).samples
    assert len(a) == 3000
    np.testing.assert_allclose(a**2 + b**2, 1.0, atol=1e-6)
    assert a[500] == 1.0 and b[2500] == 1.0 and a[1000] > a[1999]


def test_video_crossfade_and_lengths():
    ws = longform.plan_windows(5.0, 2.0, 0.5)
    pieces = [Video(np.full((round(w.duration_s * 4), 4, 4, 3), 40 * w.index, np.uint8), 4.0) for w in ws]
    v = longform.join_video(pieces, ws, 5.0)
    assert v.frames.shape == (20, 4, 4, 3)
    vals = v.frames[:, 0, 0, 0].astype(int)
    assert np.all(np.diff(vals) >= 0) and vals[0] == 0 and vals[-1] == 40 * ws[-1].index


@pytest.mark.parametrize("task", ["v2a", "a2v"])
def test_thirty_second_input_in_windows(tmp_path, task):

    if task == "v2a":
        _video(tmp_path / "long.mp4", 30.0, fps=2.0, size=8)
    else:
        write_audio(
            tmp_path / "long.wav", Audio(np.sin(np.arange(30 * 16000) / 50).astype(np.float32), 16000)
        )
    out = tmp_path / "out"
    batch_fake_tasks.CALLS.clear()
    items = load_manifest(tmp_path, task)
    s = run_batch(items, _settings(out, task=task, window_s=10.0, overlap_s=2.0), log=lambda m: None, **FAKES)
    assert s.done == 1
    assert [round(d, 3) for _, d in batch_fake_tasks.CALLS] == [10.0, 10.0, 10.0, 10.0]
    if task == "v2a":
        a = read_audio(out / "long.wav")
        assert a.duration_s == pytest.approx(30.0, abs=1e-3)
    else:
        v = read_video(out / "long.mp4", need_audio=True)
        assert len(v.frames) == 240 and v.fps == 8.0
        assert v.audio.duration_s == pytest.approx(30.0, abs=0.07)


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path, clips):
    out = tmp_path / "out"
    cmd = _cli(clips, out)
    # A test run started in the background (`cmd &`, nohup) hands SIGINT down as ignored;
    # give the child the default disposition so that it sees Ctrl-C as a terminal would.
    proc = subprocess.Popen(
        cmd, env=_env(AVBRIDGE_FAKE_DELAY="1.5"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while time.time() < deadline and not any(r["status"] == "done" for r in _records(out)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert not list(out.glob(TMP_PREFIX + "*"))
    merged = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    done = {r["id"] for r in merged if r["status"] == "done"}
    assert done and {p.stem for p in out.glob("*.wav")} == done
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
    assert r.returncode == 0 and f"skipped {len(done)}" in r.stderr


def test_joint_long_prompt_in_windows(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"id": "dog", "prompt": "a dog barks", "duration": 25}\n')
    out = tmp_path / "out"
    items = load_manifest(tmp_path / "p.jsonl", "joint")
    settings = _settings(out, task="joint", window_s=10.0, overlap_s=1.0)
    s = run_batch(items, settings, log=lambda m: None, **FAKES)
    assert s.done == 1
    v = read_video(out / "dog.mp4", need_audio=True)
    assert v.duration_s == pytest.approx(25.0) and v.audio.duration_s == pytest.approx(25.0, abs=0.07)
