"""`accelerate launch` with 2 real CPU processes and the real tiny-random models.

tests/test_batch.py checks sharding with the environment accelerate sets and a fake task
module; this test goes through the real launcher (``accelerate launch --multi_gpu
--num_processes 2``, which starts 2 CPU processes and a gloo process group when there is
no GPU) and the real v2a task, and compares the outputs byte for byte with a
single-process run of the same manifest. Both runs use 1 thread per process: accelerate
sets ``OMP_NUM_THREADS`` per process, and a different thread count can change the last
bits of float results.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from avbridge.apps import batch
from avbridge.io.media import Video, read_audio, write_video

pytest.importorskip("accelerate.commands.launch")
pytest.importorskip("avbridge.tasks")

SRC = Path(__file__).resolve().parents[1] / "src"
IDS = [f"c{i}" for i in range(4)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    # CPU only, offline, and the same thread count in every process of both runs.
    env.update(
        CUDA_VISIBLE_DEVICES="",
        ACCELERATE_USE_CPU="1",
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return env


def _batch_args(clips: Path, out: Path) -> list[str]:
    return [
        "-m", "avbridge", "batch", "v2a", "--manifest", str(clips), "--out", str(out),
        "--preset", "tiny-random", "--steps", "2", "--no-progress",
    ]  # fmt: skip


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_match_one_process(tmp_path):
    clips = tmp_path / "clips"
    for i, name in enumerate(IDS):
        rng = np.random.default_rng(i)
        fps = 4.0 if i < 2 else 8.0  # 1.0 s and 0.5 s
        write_video(clips / f"{name}.mp4", Video(rng.integers(0, 256, (4, 16, 16, 3), np.uint8), fps))
    one, two = tmp_path / "one", tmp_path / "two"

    r1 = subprocess.run(
        [sys.executable, *_batch_args(clips, one)], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert r1.returncode == 0, r1.stderr[-3000:]

    launch = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--num_cpu_threads_per_process", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
    ]  # fmt: skip
    r2 = subprocess.run(
        [*launch, *_batch_args(clips, two)], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert r2.returncode == 0, (r2.stdout[-2000:], r2.stderr[-3000:])
    assert "[rank 1/2]" in r2.stderr and "[rank 0/2]" in r2.stderr, r2.stderr[-3000:]

    # Each item ran exactly once, on rank index % 2 (both ranks running everything, or an
    # item left out, would show here).
    shard_records = [rec for p in sorted(two.glob("results.r*.jsonl")) for rec in batch._iter_records(p)]
    assert sorted(p.name for p in two.glob("results.r*.jsonl")) == ["results.r0.jsonl", "results.r1.jsonl"]
    assert sorted(r["id"] for r in shard_records) == IDS
    assert {r["id"]: (r["rank"], r["world_size"], r["status"]) for r in shard_records} == {
        name: (i % 2, 2, "done") for i, name in enumerate(IDS)
    }
    merged = [json.loads(line) for line in (two / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in merged] == IDS and {r["status"] for r in merged} == {"done"}

    # The same files, byte for byte, as the single-process run.
    wavs = sorted(p.name for p in one.glob("*.wav"))
    assert wavs == [f"{n}.wav" for n in IDS] == sorted(p.name for p in two.glob("*.wav"))
    for n in wavs:
        assert (one / n).read_bytes() == (two / n).read_bytes(), n
    assert read_audio(two / "c0.wav").duration_s == pytest.approx(1.0, abs=1e-3)
    assert read_audio(two / "c3.wav").duration_s == pytest.approx(0.5, abs=1e-3)
