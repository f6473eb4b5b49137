"""Event detectors and event-sync F1: how well the timing of sound and picture agree.

Plain numpy functions, no learned parts, so that the sync score cannot be gamed by the
models that guidance uses. Audio: spectral-flux onsets (half-wave rectified rise of the
log spectrum). Video: peaks of the frame difference (a flash or a sudden move). Both
pick peaks with non-maximum suppression and a threshold relative to the clip's own
range, with an absolute floor so that a silent or static clip yields no events.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avbridge.io.media import Audio, Video

#: Shortest gap between two detected events (the world keeps true events >= 0.5 s apart).
MIN_GAP_S = 0.35
#: A detected peak must rise this fraction of the way from the clip's median to its maximum.
REL_THRESHOLD = 0.3


def _pick_peaks(curve: np.ndarray, rate: float, min_gap_s: float, floor: float,
                rel: float = REL_THRESHOLD) -> list[int]:
    """Indices of peaks above ``median + max(floor, rel * (max - median))``, greedily by height,
    at least ``min_gap_s`` apart."""
    if curve.size == 0:
        return []
    med = float(np.median(curve))
    thr = med + max(floor, rel * (float(curve.max()) - med))
    gap = max(1, int(round(min_gap_s * rate)))
    taken: list[int] = []
    for i in np.argsort(-curve, kind="stable"):
        if curve[i] < thr:
            break
        if all(abs(int(i) - j) >= gap for j in taken):
            taken.append(int(i))
    return sorted(taken)


def onset_strength(samples: np.ndarray, sample_rate: int, hop_s: float = 0.008,
                   win_s: float = 0.032) -> tuple[np.ndarray, float]:
    """Spectral flux per hop (rectified rise of log-magnitude, summed over bins), and the hop rate."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    hop = max(1, int(round(hop_s * sample_rate)))
    win = max(hop, int(round(win_s * sample_rate)))
    if x.size < win:
        return np.zeros(0), sample_rate / hop
    n = 1 + (x.size - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    frames = x[idx] * np.hanning(win)[None, :]
    mag = np.abs(np.fft.rfft(frames, axis=1))
    logmag = np.log1p(10.0 * mag)
    flux = np.maximum(logmag[1:] - logmag[:-1], 0.0).mean(axis=1)
    return np.concatenate([[0.0], flux]), sample_rate / hop


def audio_onsets(audio: Audio | np.ndarray, sample_rate: int | None = None, *,
                 min_gap_s: float = MIN_GAP_S, floor: float = 0.02, min_rise_db: float = 6.0) -> list[float]:
    """Onset times in seconds of the sound events in ``audio`` (an Audio or samples + rate)."""
    if isinstance(audio, Audio):
        samples, sr = audio.samples, audio.sample_rate
    else:
        if sample_rate is None:
            raise ValueError("sample_rate is needed with a bare sample array")
        samples, sr = audio, sample_rate
    hop_s, win_s = 0.008, 0.032
    flux, rate = onset_strength(samples, sr, hop_s, win_s)
    peaks = _pick_peaks(flux, rate, min_gap_s, floor)
    # Keep a peak only if the level really rises (>= min_rise_db within ~25 ms over the
    # ~50 ms before): steady noise has flux peaks too, but no rise in level.
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    hop = int(round(hop_s * sr))
    n = flux.size
    lvl = 10 * np.log10((x[: n * hop].reshape(n, hop) ** 2).mean(1) + 1e-10) if n else np.zeros(0)
    peaks = [p for p in peaks
             if lvl[p : p + 4].max() - lvl[max(0, p - 6) : max(1, p - 1)].mean() >= min_rise_db]
    # Flux at hop j compares the windows starting at (j-1)*hop and j*hop: a sound starting
    # anywhere in between shows there; the window's centre is the best single estimate.
    return [round(p / rate + win_s / 2 - hop_s / 2, 4) for p in peaks]


def motion_strength(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference (0..255 scale) between each frame and the one before (0 first)."""
    f = np.asarray(frames, dtype=np.float32)
    if f.ndim != 4 or f.shape[0] < 2:
        return np.zeros(f.shape[0] if f.ndim else 0)
    d = np.abs(f[1:] - f[:-1]).mean(axis=(1, 2, 3))
    return np.concatenate([[0.0], d])


def video_events(video: Video | np.ndarray, fps: float | None = None, *,
                 min_gap_s: float = MIN_GAP_S, floor: float = 2.0) -> list[float]:
    """Times in seconds of the frames where the picture changes most abruptly (impacts, flashes).

    Frame k covers [k/fps, (k+1)/fps): an event detected at frame k is reported at k/fps,
    the convention of the world's ground truth.
    """
    if isinstance(video, Video):
        frames, rate = video.frames, float(video.fps)
    else:
        if fps is None:
            raise ValueError("fps is needed with a bare frame array")
        frames, rate = video, float(fps)
    strength = motion_strength(frames)
    peaks = _pick_peaks(strength, rate, min_gap_s, floor)
    return [round(p / rate, 4) for p in peaks if p > 0]


def match_events(pred: Sequence[float], ref: Sequence[float], tol_s: float) -> list[tuple[int, int]]:
    """Greedy one-to-one matching: closest pairs first, each event used once, |dt| <= tol_s."""
    pairs = sorted(
        (abs(p - r), i, j)
        for i, p in enumerate(pred)
        for j, r in enumerate(ref)
        if abs(p - r) <= tol_s + 1e-9
    )
    used_p: set[int] = set()
    used_r: set[int] = set()
    out: list[tuple[int, int]] = []
    for _, i, j in pairs:
        if i not in used_p and j not in used_r:
            used_p.add(i)
            used_r.add(j)
            out.append((i, j))
    return out


def event_f1(pred: Sequence[float], ref: Sequence[float], tol_s: float = 0.125) -> float:
    """F1 of detected vs reference event times (1.0 when both are empty, 0.0 when only one is).

    The default tolerance is one video frame of the world (8 fps).
    """
    if not pred and not ref:
        return 1.0
    tp = len(match_events(pred, ref, tol_s))
    return 2.0 * tp / (len(pred) + len(ref))
