"""AV-Align: audio-video temporal alignment (TempoTokens, Yariv et al. 2023), both versions.

Audio peaks are librosa onsets; video peaks are strict local maxima of the mean
Farneback optical-flow magnitude between consecutive frames. A hit is an audio peak
strictly within one frame period of a video peak; the score is
``hits / (|A| + |V| - hits)``.

Two labelled versions (see ``shared/fixtures/av-align/README.md``):

- ``"fixed"`` (TempoTokens commit bf0b1e3): video peaks must also reach 0.1, and
  matching is greedy one-to-one (each audio peak, in order, takes the first unused
  video peak inside its window).
- ``"old"`` (commit 34d9502, with its undefined ``n`` taken as ``len(arr)``): no
  threshold, and an audio peak is a hit if *any* video peak is inside its window,
  so the score can exceed 1.

The decode path is part of the metric: video frames are decoded with PyAV as
``bgr24`` (byte-identical to ``cv2.VideoCapture``), audio is read from a ``.wav``
with ``librosa.load`` defaults (22050 Hz, soxr_hq). Library versions matter: the
reference used librosa 0.11 / OpenCV 5.0 (0.10.2 / 4.14 give the same peaks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from avbridge.errors import AvbridgeError, MediaError

Version = Literal["fixed", "old"]
VERSIONS: tuple[Version, ...] = ("fixed", "old")
#: Labels used in reports, so that the two versions are never confused.
LABELS: dict[str, str] = {
    "fixed": "AV-Align (fixed, TempoTokens bf0b1e3)",
    "old": "AV-Align (old, TempoTokens 34d9502)",
}
#: The fixed version's minimum flow value for a video peak.
FLOW_PEAK_THRESHOLD = 0.1
#: librosa.load's default rate: every file is resampled to it before onset detection.
LIBROSA_SR = 22050


class AVAlignUndefinedError(AvbridgeError):
    """Neither audio onsets nor video peaks were found: the IoU is 0/0.

    The original script raises ZeroDivisionError here; we raise a named error.
    """


def _cv2():
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AvbridgeError(
            "AV-Align needs OpenCV: pip install 'avbridge[eval]' (opencv-python-headless)"
        ) from exc
    return cv2


def _librosa():
    try:
        import librosa
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise AvbridgeError("AV-Align needs librosa: pip install 'avbridge[eval]'") from exc
    return librosa


def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"AV-Align version must be one of {VERSIONS}, got {version!r}")


@dataclass
class AVAlignResult:
    """One clip's AV-Align under one version, with the intermediates that produced it."""

    version: str
    fps: float
    audio_peaks: list[float]
    video_peaks: list[float]
    hits: int
    score: float
    flow: np.ndarray = field(repr=False)
    audio_onset_frames: list[int] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LABELS[self.version]


# --------------------------------------------------------------------------- decode


def read_bgr_frames(path: str | Path) -> tuple[list[np.ndarray], float]:
    """Decode every video frame as BGR uint8 (H, W, 3) with PyAV, and the stream's fps.

    ``to_ndarray(format="bgr24")`` uses the same conversion as ``cv2.VideoCapture``
    (limited range, BT.601), which is what the metric was defined with.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(path, "has no video stream")
            stream = container.streams.video[0]
            rate = stream.guessed_rate or stream.average_rate or stream.base_rate
            frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    except av.FFmpegError as exc:
        raise MediaError(path, f"cannot decode video: {exc}") from exc
    if rate is None or float(rate) <= 0:
        raise MediaError(path, "video stream has no frame rate")
    return frames, float(rate)


def load_audio_librosa(path: str | Path) -> tuple[np.ndarray, int]:
    """Read audio exactly as the original script does: ``librosa.load(path)`` defaults."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    librosa = _librosa()
    try:
        y, sr = librosa.load(str(path))
    except Exception as exc:  # soundfile/audioread raise many types
        raise MediaError(path, f"cannot read audio: {exc}") from exc
    return y, int(sr)


def decode_audio_track(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a container's first audio track with PyAV (float, mono mean), at its own rate.

    PyAV's demuxer applies the mp4 edit list, so AAC priming is removed. For AV-Align,
    pass the result through :func:`resample_like_librosa` to follow ``librosa.load``.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "file not found")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError(path, "has no audio stream")
            stream = container.streams.audio[0]
            sr = stream.rate
            chunks = []
            for frame in container.decode(stream):
                arr = frame.to_ndarray()
                if arr.dtype.kind == "i":
                    # a signed integer dtype (the check does not narrow PyAV's union of frame dtypes)
                    int_dtype = cast("np.dtype[np.signedinteger[Any]]", arr.dtype)
                    arr = arr.astype(np.float32) / float(np.iinfo(int_dtype).max + 1)
                if frame.format.is_planar:
                    chunks.append(arr.astype(np.float32))  # (channels, n)
                else:
                    chunks.append(arr.reshape(-1, len(frame.layout.channels)).T.astype(np.float32))
    except av.FFmpegError as exc:
        raise MediaError(path, f"cannot decode audio: {exc}") from exc
    if not chunks:
        raise MediaError(path, "audio stream has no samples")
    return np.concatenate(chunks, axis=1).mean(axis=0).astype(np.float32), int(sr)


def resample_like_librosa(y: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Resample mono float audio to 22050 Hz as ``librosa.load`` does (soxr_hq)."""
    librosa = _librosa()
    y = np.asarray(y, dtype=np.float32)
    if sr != LIBROSA_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=LIBROSA_SR, res_type="soxr_hq")
    return y, LIBROSA_SR


# --------------------------------------------------------------------------- peaks


def flow_series(frames_bgr: Sequence[np.ndarray]) -> np.ndarray:
    """Mean Farneback flow magnitude per frame: ``s[0] = s[1] = flow(f0, f1)``, ``s[i] = flow(f[i-1], f[i])``.

    The (f0, f1) pair is computed once and copied: computing it twice (as the original
    does) is not bit-reproducible and can make index 1 a spurious peak.
    """
    cv2 = _cv2()
    if len(frames_bgr) < 2:
        raise ValueError(f"AV-Align needs at least 2 video frames, got {len(frames_bgr)}")
    gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_BGR2GRAY) for f in frames_bgr]
    values = []
    for prev, nxt in zip(gray[:-1], gray[1:], strict=True):
        flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        mag = cv2.magnitude(flow[..., 0], flow[..., 1])
        values.append(cv2.mean(mag)[0])
    return np.array([values[0], *values], dtype=np.float64)


def video_peaks(series: Sequence[float] | np.ndarray, fps: float, version: Version = "fixed") -> list[float]:
    """Times ``i / fps`` of strict local maxima of ``series`` (i = 1..N-2); fixed also needs >= 0.1."""
    _check_version(version)
    s = [float(x) for x in series]
    peaks = []
    for i in range(1, len(s) - 1):
        if s[i - 1] < s[i] > s[i + 1] and (version == "old" or s[i] >= FLOW_PEAK_THRESHOLD):
            peaks.append(i / fps)
    return peaks


def audio_onsets(y: np.ndarray, sr: int = LIBROSA_SR) -> tuple[list[int], list[float]]:
    """Onset frames and times (s) from librosa's default onset strength and detector."""
    librosa = _librosa()
    # float64 for the peak picker: numba 0.68's gufunc crashes (segfault) on float32 input.
    env = librosa.onset.onset_strength(y=y, sr=sr).astype(np.float64)
    frames = librosa.onset.onset_detect(onset_envelope=env, sr=sr)
    times = librosa.frames_to_time(frames, sr=sr)
    return [int(f) for f in frames], [float(t) for t in times]


def count_hits(
    audio_peaks: Sequence[float], video_peaks_s: Sequence[float], fps: float, version: Version = "fixed"
) -> int:
    """Hits: audio peaks with a video peak strictly inside ``(v - 1/fps, v + 1/fps)``.

    fixed: greedy one-to-one (first unused video peak, both in ascending order);
    old: any video peak counts, and one video peak may serve many audio peaks.
    """
    _check_version(version)
    used = [False] * len(video_peaks_s)
    hits = 0
    for a in sorted(audio_peaks):
        for j, v in enumerate(video_peaks_s):
            if version == "fixed" and used[j]:
                continue
            if v - 1 / fps < a < v + 1 / fps:
                hits += 1
                used[j] = True
                break
    return hits


def iou_score(n_audio: int, n_video: int, hits: int, name: str | Path | None = None) -> float:
    """``hits / (|A| + |V| - hits)``; raises :class:`AVAlignUndefinedError` when both sets are empty."""
    denom = n_audio + n_video - hits
    if denom == 0:
        where = f"{name}: " if name is not None else ""
        raise AVAlignUndefinedError(f"{where}AV-Align undefined: no audio onsets and no video peaks")
    return hits / denom


# --------------------------------------------------------------------------- scoring


def av_align_from_arrays(
    frames_bgr: Sequence[np.ndarray],
    fps: float,
    audio_22k: np.ndarray,
    version: Version = "fixed",
    *,
    flow: np.ndarray | None = None,
    onsets: tuple[list[int], list[float]] | None = None,
    name: str | Path | None = None,
) -> AVAlignResult:
    """AV-Align of BGR frames at ``fps`` and mono audio already at 22050 Hz.

    ``flow`` / ``onsets`` may be passed in to share them between the two versions.
    """
    _check_version(version)
    if flow is None:
        flow = flow_series(frames_bgr)
    if onsets is None:
        onsets = audio_onsets(audio_22k, LIBROSA_SR)
    onset_frames, a_peaks = onsets
    v_peaks = video_peaks(flow, fps, version)
    hits = count_hits(a_peaks, v_peaks, fps, version)
    score = iou_score(len(a_peaks), len(v_peaks), hits, name)
    return AVAlignResult(version, fps, list(a_peaks), v_peaks, hits, score, flow, list(onset_frames))


def av_align_file(
    video_path: str | Path,
    audio_path: str | Path | None = None,
    versions: Sequence[Version] = VERSIONS,
) -> dict[str, AVAlignResult]:
    """AV-Align of one clip under each version: ``{"fixed": ..., "old": ...}``.

    Video frames come from ``video_path``. Audio comes from ``audio_path`` when given
    (the original reads ``X.wav`` beside ``X.mp4``; any librosa-readable file works),
    else from ``X.wav`` if it exists, else from the video's own audio track (decoded
    with PyAV and resampled like ``librosa.load``).
    """
    video_path = Path(video_path)
    frames, fps = read_bgr_frames(video_path)
    if len(frames) < 3:
        raise MediaError(video_path, f"too short for AV-Align: {len(frames)} frames (need >= 3)")
    if audio_path is None and video_path.with_suffix(".wav").is_file():
        audio_path = video_path.with_suffix(".wav")
    if audio_path is not None:
        y, _ = load_audio_librosa(audio_path)
    else:
        y, _ = resample_like_librosa(*decode_audio_track(video_path))
    flow = flow_series(frames)
    onsets = audio_onsets(y, LIBROSA_SR)
    return {
        v: av_align_from_arrays(frames, fps, y, v, flow=flow, onsets=onsets, name=video_path)
        for v in versions
    }
