"""Inputs longer than a model's window: generate in overlapping windows and join them.

A generator has a native length (``window_s``: e.g. ~10 s for AudioLDM, 16 frames for
AnimateDiff). A longer condition is cut into windows of exactly ``window_s`` that overlap
by at least ``overlap_s``; the last window is moved back so that it ends at the end of
the input (all windows stay full-length, the last overlap may be longer). Each window is
generated on its own, with the binder embedding *that window's* clips of the condition,
and the pieces are joined:

* audio: equal-power cross-fade (``cos``/``sin`` ramps) over each overlap, which keeps
  loudness steady when the two pieces are uncorrelated;
* video: linear cross-fade of the overlapping frames; every window starts from the
  *same* initial noise (same seed), so consecutive windows share their look and the fade
  joins two renderings of similar content. The models are not told what the previous
  window produced: objects can still drift or change across a join (see docs/batch.md).

The functions here are independent of models: ``generate_windowed`` takes a callable that
generates one window, so the batch runner and the task API share it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from avbridge.errors import AvbridgeError
from avbridge.io.media import Audio, Image, Video, mux_audio


@dataclass(frozen=True)
class Window:
    """One window of a long input: ``[start_s, end_s)`` and its index."""

    index: int
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def plan_windows(total_s: float, window_s: float, overlap_s: float) -> list[Window]:
    """Cover ``[0, total_s)`` with windows of ``window_s`` overlapping by at least ``overlap_s``.

    An input no longer than the window gives one window of its own length.
    """
    if window_s <= 0:
        raise AvbridgeError(f"window length must be positive, got {window_s}")
    if not (0 <= overlap_s < window_s):
        raise AvbridgeError(f"overlap must satisfy 0 <= overlap < window ({window_s} s), got {overlap_s}")
    if total_s <= window_s + 1e-9:
        return [Window(0, 0.0, float(total_s))]
    hop = window_s - overlap_s
    n = 1 + math.ceil((total_s - window_s) / hop - 1e-9)
    starts = [min(k * hop, total_s - window_s) for k in range(n)]
    return [Window(k, float(s), float(s + window_s)) for k, s in enumerate(starts)]


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or edge-pad the first axis of ``x`` to length ``n``."""
    if len(x) >= n:
        return x[:n]
    if len(x) == 0:
        raise AvbridgeError("a window produced no output")
    pad = [(0, n - len(x))] + [(0, 0)] * (x.ndim - 1)
    return np.pad(x, pad, mode="edge")


def _join(pieces: list[np.ndarray], offsets: list[int], total: int, ramp: Callable) -> np.ndarray:
    """Overlap-add ``pieces`` placed at ``offsets``; ``ramp(x)`` -> (fade_out, fade_in) for x in [0, 1]."""
    shape = (total,) + pieces[0].shape[1:]
    out = np.zeros(shape, np.float64)
    for k, (piece, off) in enumerate(zip(pieces, offsets, strict=True)):
        w = np.ones(len(piece))
        if k > 0:
            prev_end = offsets[k - 1] + len(pieces[k - 1])
            m = max(0, min(prev_end - off, len(piece)))
            if m > 0:
                w[:m] = ramp((np.arange(m) + 0.5) / m)[1]
        if k + 1 < len(pieces):
            m = max(0, min(off + len(piece) - offsets[k + 1], len(piece)))
            if m > 0:
                w[len(piece) - m :] = ramp((np.arange(m) + 0.5) / m)[0]
        end = min(total, off + len(piece))
        w = w.reshape((-1,) + (1,) * (piece.ndim - 1))
        out[off:end] += (piece.astype(np.float64) * w)[: end - off]
    return out


def _equal_power(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.cos(0.5 * np.pi * x), np.sin(0.5 * np.pi * x)


def _linear(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 1.0 - x, x


def join_audio(pieces: list[Audio], windows: list[Window], total_s: float) -> Audio:
    """Place each window's audio at its start time and cross-fade overlaps with equal power."""
    sr = pieces[0].sample_rate
    if any(p.sample_rate != sr for p in pieces):
        raise AvbridgeError("windows produced audio at different sample rates")
    offsets = [round(w.start_s * sr) for w in windows]
    fitted = [
        _fit(np.asarray(p.samples, np.float32), round(w.end_s * sr) - off)
        for p, w, off in zip(pieces, windows, offsets, strict=True)
    ]
    total = round(total_s * sr)
    return Audio(_join(fitted, offsets, total, _equal_power).astype(np.float32), sr)


def join_video(pieces: list[Video], windows: list[Window], total_s: float) -> Video:
    """Place each window's frames at its start time and cross-fade overlapping frames linearly.

    Audio tracks of the pieces are joined the same way as :func:`join_audio`.
    """
    fps = float(pieces[0].fps)
    if any(abs(float(p.fps) - fps) > 1e-6 for p in pieces):
        raise AvbridgeError("windows produced video at different frame rates")
    offsets = [round(w.start_s * fps) for w in windows]
    fitted = [
        _fit(np.asarray(p.frames), max(1, round(w.end_s * fps) - off))
        for p, w, off in zip(pieces, windows, offsets, strict=True)
    ]
    total = max(1, round(total_s * fps))
    frames = np.clip(np.rint(_join(fitted, offsets, total, _linear)), 0, 255).astype(np.uint8)
    audio: Audio | None = None
    tracks = [p.audio for p in pieces if p.audio is not None]
    if len(tracks) == len(pieces):
        audio = join_audio(tracks, windows, total_s)
    return Video(frames, fps, audio)


def slice_condition(cond: Audio | Video, window: Window) -> Audio | Video:
    """The part of a condition (audio or video, with its audio track) inside ``window``."""
    if isinstance(cond, Audio):
        return _slice_audio(cond, window)
    fps = float(cond.fps)
    a, b = round(window.start_s * fps), round(window.end_s * fps)
    audio = None
    if cond.audio is not None:
        audio = _slice_audio(cond.audio, window)
    return Video(cond.frames[a : max(b, a + 1)], fps, audio)


def _slice_audio(audio: Audio, window: Window) -> Audio:
    sr = audio.sample_rate
    return Audio(audio.samples[round(window.start_s * sr) : round(window.end_s * sr)], sr)


def window_seed(seed: int, index: int, output_kind: str) -> int:
    """Seed of window ``index``: shared by all windows for video (continuity), distinct for audio."""
    if output_kind == "audio":
        return (seed + 1_000_003 * index) % (2**63)
    return seed


WindowFn = Callable[[Audio | Video | None, Window, int], Audio | Video | Image]


def generate_windowed(
    generate: WindowFn,
    *,
    total_s: float,
    window_s: float | None,
    overlap_s: float,
    seed: int,
    output_kind: str,
    cond: Audio | Video | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> Audio | Video:
    """Generate ``total_s`` seconds in overlapping windows and join them.

    ``generate(cond_slice, window, seed)`` returns one window's Audio or Video;
    ``cond`` (if any) is sliced per window. ``window_s=None`` or an input that fits in one
    window calls ``generate`` once on the whole input. A video output gets the whole input
    audio (when ``cond`` is audio) muxed back after joining.
    """
    if output_kind not in ("audio", "video"):
        raise AvbridgeError(f"long-form generation makes audio or video, not {output_kind}")
    windows = (
        [Window(0, 0.0, float(total_s))] if window_s is None else plan_windows(total_s, window_s, overlap_s)
    )
    pieces = []
    for w in windows:
        part = None if cond is None else (cond if len(windows) == 1 else slice_condition(cond, w))
        pieces.append(generate(part, w, window_seed(seed, w.index, output_kind)))
        if on_window is not None:
            on_window(w.index + 1, len(windows))
    if output_kind == "audio":
        audios = [p for p in pieces if isinstance(p, Audio)]
        if len(audios) != len(pieces):
            raise AvbridgeError("a window of an audio task did not return audio")
        return audios[0] if len(audios) == 1 else join_audio(audios, windows, total_s)
    videos = [p for p in pieces if isinstance(p, Video)]
    if len(videos) != len(pieces):
        raise AvbridgeError("a window of a video task did not return video")
    if len(videos) == 1:
        return videos[0]
    out = join_video(videos, windows, total_s)
    if isinstance(cond, Audio):
        out = mux_audio(out, cond)
    return out
