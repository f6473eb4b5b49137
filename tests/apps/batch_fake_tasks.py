"""A stand-in for ``avbridge.tasks`` with the same signatures, for fast tests of batch logic.

Outputs are deterministic functions of (input, seed); ``AVBRIDGE_FAKE_DELAY`` (seconds)
slows each call down so that a test can kill a run in the middle.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from avbridge.io.media import Audio, Image, Video, mux_audio


@dataclass
class TaskResult:
    media: Audio | Video | Image


CALLS: list[tuple[str, float]] = []


def _rng(seed: int, data: np.ndarray | None) -> np.random.Generator:
    salt = 0 if data is None else int(np.asarray(data, np.float64).sum() * 1000) % (2**31)
    return np.random.default_rng([seed, salt])


def _slow() -> None:
    time.sleep(float(os.environ.get("AVBRIDGE_FAKE_DELAY", "0")))


def v2a(video: Video, components, *, prompt=None, guided=True, seed=0, config=None, progress=None):
    _slow()
    CALLS.append(("v2a", video.duration_s))
    if os.environ.get("AVBRIDGE_FAKE_FAIL_ON") and video.frames[0, 0, 0, 0] == 255:
        raise RuntimeError("model exploded on a white frame")
    n = round(video.duration_s * 16000)
    return TaskResult(
        Audio((0.3 * _rng(seed, video.frames[:, 0, 0]).standard_normal(n)).astype(np.float32), 16000)
    )


def i2a(
    image: Image, components, *, prompt=None, guided=True, seed=0, config=None, progress=None, duration_s=2.0
):
    _slow()
    n = round(duration_s * 16000)
    return TaskResult(Audio((0.3 * _rng(seed, image.pixels).standard_normal(n)).astype(np.float32), 16000))


def a2v(audio: Audio, components, *, prompt=None, guided=True, seed=0, config=None, progress=None):
    _slow()
    CALLS.append(("a2v", audio.duration_s))
    t = max(1, round(audio.duration_s * 8))
    frames = _rng(seed, audio.samples[:100]).integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)
    return TaskResult(mux_audio(Video(frames, 8.0), audio))


def a2i(audio: Audio, components, *, prompt=None, guided=True, seed=0, config=None, progress=None):
    _slow()
    return TaskResult(Image(_rng(seed, audio.samples[:100]).integers(0, 256, (16, 16, 3), dtype=np.uint8)))


def joint(prompt: str, components, *, duration_s, guided=True, seed=0, config=None, progress=None):
    _slow()
    t = max(1, round(duration_s * 8))
    frames = _rng(seed, np.frombuffer(prompt.encode(), np.uint8)).integers(
        0, 256, (t, 16, 16, 3), dtype=np.uint8
    )
    n = round(duration_s * 16000)
    return TaskResult(Video(frames, 8.0, Audio(np.zeros(n, np.float32), 16000)))


def load_components(preset: str = "tiny-random", **kwargs):
    """No models: the fake tasks need none."""
    return {"preset": preset}
