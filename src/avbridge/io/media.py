"""Typed media containers and reading/writing through PyAV and soundfile.

Containers hold numpy arrays: audio float32 mono (N,) in [-1, 1]; video frames
uint8 (T, H, W, 3) RGB; images uint8 (H, W, 3) RGB.

Readers validate their input and raise :class:`MediaError` (file + one-line problem)
for anything unusable: missing, empty, not media, truncated, no stream of the needed
kind, zero length, absurd frame sizes or durations. Durations are checked from the
container's metadata before anything is decoded.

Writers are atomic (temporary file in the destination folder, fsync, ``os.replace``)
so that a crash or a kill never leaves a half-written output under the final name.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from avbridge.errors import AvbridgeError, MediaError


@dataclass
class Audio:
    """Mono audio: ``samples`` float32 (N,) at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


@dataclass
class Video:
    """RGB video: ``frames`` uint8 (T, H, W, 3) at ``fps``, with an optional audio track."""

    frames: np.ndarray
    fps: float
    audio: Audio | None = None

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps


@dataclass
class Image:
    """An RGB image: ``pixels`` uint8 (H, W, 3)."""

    pixels: np.ndarray


Media = Audio | Video | Image

#: Default limits; every reader takes keyword overrides.
MAX_DURATION_S = 600.0
MAX_SIDE = 8192
MAX_DECODED_BYTES = 8 * 1024**3

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".aac", ".opus", ".aiff", ".aif")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif", ".m4v")

#: Prefix of the temporary files of atomic writes (batch runs sweep leftovers of killed writes).
TMP_PREFIX = ".avbridge-tmp-"

# Sample rates the AAC encoder accepts; others are resampled to 48 kHz when muxing.
_AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)


# --------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException | str) -> str:
    text = exc if isinstance(exc, str) else (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
    return " ".join(str(text).split())


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(p, "file not found")
    if p.is_dir():
        raise MediaError(p, "is a directory, not a media file")
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except OSError as e:
        raise MediaError(p, f"cannot open file ({_one_line(e)})") from None
    if size == 0:
        raise MediaError(p, "empty file (0 bytes)")
    return p


def _iso_box_problem(p: Path) -> str | None:
    """For an ISO-BMFF (mp4/mov) file, say why it is truncated, or None if its box layout is whole."""
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[4:8] != b"ftyp":
            return None
        pos, seen = 0, set()
        while pos < size:
            fh.seek(pos)
            hdr = fh.read(16)
            if len(hdr) < 8:
                return "truncated MP4 (cut inside a box header)"
            box_size, kind = int.from_bytes(hdr[:4], "big"), hdr[4:8].decode("latin-1")
            if box_size == 1 and len(hdr) == 16:
                box_size = int.from_bytes(hdr[8:16], "big")
            elif box_size == 0:
                box_size = size - pos
            if box_size < 8:
                return None
            if pos + box_size > size:
                return f"truncated MP4 (box '{kind}' runs past the end of the file)"
            seen.add(kind)
            pos += box_size
    if "moov" not in seen and "moof" not in seen:
        return "incomplete MP4 (no 'moov' index: the writer did not finish)"
    return None


def _wav_problem(p: Path) -> str | None:
    """For a RIFF/WAVE file, say why it is truncated (data chunk shorter than declared), or None."""
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            hdr = fh.read(8)
            cid, csize = hdr[:4], int.from_bytes(hdr[4:8], "little")
            if cid == b"data":
                # 0 and 0xFFFFFFFF mark streamed WAVs whose length was never filled in.
                if csize not in (0, 0xFFFFFFFF) and pos + 8 + csize > size:
                    return f"truncated WAV ({size - pos - 8} of {csize} data bytes present)"
                return None
            pos += 8 + csize + (csize & 1)
    return None


def _open_container(p: Path):
    import av

    try:
        return av.open(str(p), "r")
    except av.error.FFmpegError as e:
        msg = _one_line(e)
        problem = _iso_box_problem(p)
        if problem is not None:
            raise MediaError(p, problem) from None
        raise MediaError(p, f"unreadable or not a media file ({msg})") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise MediaError(p, f"unreadable or not a media file ({_one_line(e)})") from None


def _check_duration(p: Path, duration: float | None, max_duration_s: float | None) -> None:
    if duration is not None and max_duration_s is not None and duration > max_duration_s:
        raise MediaError(p, f"too long: {duration:.1f} s (limit {max_duration_s:g} s)")


def _stream_duration(stream, container) -> float | None:
    """Duration in seconds from metadata (stream, then container), or None if unknown."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def to_mono(samples: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) or (C, N)-as-given-by-PyAV -> float32 (N,), averaging channels."""
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        return x
    return x.mean(axis=1).astype(np.float32)


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling (scipy) of mono float audio; exact-length ``ceil(N * target / orig)``."""
    if orig_rate == target_rate:
        return np.asarray(samples, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_rate), int(target_rate))
    up, down = int(target_rate) // g, int(orig_rate) // g
    return resample_poly(np.asarray(samples, dtype=np.float64), up, down).astype(np.float32)


def _decode_audio_stream(p: Path, container, stream) -> tuple[np.ndarray, int]:
    """Decode one audio stream to mono float32 at its native rate, trimmed to its declared length.

    FFmpeg's mp4 demuxer applies the edit list and the decoder skips the AAC priming
    samples; what is left over is the padding of the last AAC frame, removed here by
    trimming to the stream's expected length.
    """
    import av

    rate = int(stream.codec_context.sample_rate or stream.rate or 0)
    if rate <= 0:
        raise MediaError(p, "audio stream has no sample rate")
    resampler = av.AudioResampler(format="fltp")
    chunks: list[np.ndarray] = []
    try:
        for frame in container.decode(stream):
            for f in resampler.resample(frame):
                chunks.append(f.to_ndarray().mean(axis=0))
        for f in resampler.resample(None):
            chunks.append(f.to_ndarray().mean(axis=0))
    except av.error.FFmpegError as e:
        raise MediaError(p, f"truncated or corrupt audio (decode error: {_one_line(e)})") from None
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        expected = round(float(stream.duration * stream.time_base) * rate)
        if 0 < expected < len(samples):
            samples = samples[:expected]
    return samples, rate


# --------------------------------------------------------------------------- readers


def read_video(
    path: str | Path,
    *,
    need_audio: bool = False,
    max_duration_s: float | None = MAX_DURATION_S,
    max_side: int = MAX_SIDE,
    max_decoded_bytes: int = MAX_DECODED_BYTES,
) -> Video:
    """Read a video file: RGB uint8 frames, fps, and its audio track (mono float32) if any.

    ``need_audio=True`` makes a missing audio track an error. Limits are checked from
    metadata before decoding (duration, frame size, decoded size) and again while decoding.
    """
    import av

    p = _check_file(path)
    container = _open_container(p)
    with container:
        if not container.streams.video:
            kind = "an audio file" if container.streams.audio else "no streams"
            raise MediaError(p, f"no video stream ({kind})")
        has_audio = bool(container.streams.audio)
        if need_audio and not has_audio:
            raise MediaError(p, "no audio stream (this task needs the video's soundtrack)")
        vs = container.streams.video[0]
        w, h = int(vs.codec_context.width or 0), int(vs.codec_context.height or 0)
        if w <= 0 or h <= 0:
            raise MediaError(p, "video stream has no frame size")
        if w > max_side or h > max_side:
            raise MediaError(p, f"frame size {w}x{h} too large (limit {max_side} px per side)")
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else 0.0
        if not (0.0 < fps <= 1000.0):
            raise MediaError(p, f"unusable frame rate {fps:g}")
        duration = _stream_duration(vs, container)
        _check_duration(p, duration, max_duration_s)
        declared_frames = int(vs.frames or 0)
        est_frames = declared_frames or (round(duration * fps) if duration else 0)
        if est_frames * w * h * 3 > max_decoded_bytes:
            raise MediaError(
                p, f"too large to decode: ~{est_frames * w * h * 3 / 1024**3:.1f} GiB of frames "
                f"(limit {max_decoded_bytes / 1024**3:.1f} GiB)"
            )
        max_frames = None if max_duration_s is None else int(math.ceil(max_duration_s * fps)) + 1
        frames: list[np.ndarray] = []
        try:
            for frame in container.decode(vs):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(frames) > max_frames:
                    raise MediaError(p, f"too long: more than {max_duration_s:g} s of frames")
        except av.error.FFmpegError as e:
            if not frames:
                raise MediaError(p, f"truncated or corrupt video (decode error: {_one_line(e)})") from None
            raise MediaError(
                p, f"truncated or corrupt video (decode error after {len(frames)} frames: {_one_line(e)})"
            ) from None
        if not frames:
            raise MediaError(p, "zero-length video (no frames could be decoded)")
        if declared_frames > 1 and len(frames) < declared_frames - max(1, declared_frames // 50):
            raise MediaError(p, f"truncated video: decoded {len(frames)} of {declared_frames} frames")
        # Frames can change size mid-stream; this library does not resize behind the user's back.
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise MediaError(p, f"frame size changes within the video ({len(shapes)} sizes)")

    audio = None
    if has_audio:
        container = _open_container(p)
        with container:
            samples, sr = _decode_audio_stream(p, container, container.streams.audio[0])
        if len(samples) == 0:
            if need_audio:
                raise MediaError(p, "audio stream is empty (zero-length)")
        else:
            audio = Audio(samples, sr)
    return Video(np.stack(frames), fps, audio)


def read_audio(
    path: str | Path,
    *,
    sample_rate: int | None = None,
    max_duration_s: float | None = MAX_DURATION_S,
) -> Audio:
    """Read mono float32 audio from an audio file (soundfile) or any container's audio stream (PyAV).

    Multichannel is averaged to mono. ``sample_rate`` resamples (polyphase, scipy).
    """
    p = _check_file(path)
    samples: np.ndarray | None = None
    sr = 0
    sf_error: str | None = None
    if p.suffix.lower() in (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif"):
        import soundfile as sf

        problem = _wav_problem(p) if p.suffix.lower() == ".wav" else None
        if problem is not None:
            raise MediaError(p, problem)
        try:
            info = sf.info(str(p))
            if info.samplerate > 0 and info.frames >= 0:
                _check_duration(p, info.frames / info.samplerate, max_duration_s)
            data, sr = sf.read(str(p), dtype="float32", always_2d=True)
            samples = data.mean(axis=1).astype(np.float32)
            if info.frames > 0 and len(samples) < info.frames:
                raise MediaError(p, f"truncated audio: read {len(samples)} of {info.frames} samples")
        except MediaError:
            raise
        except (RuntimeError, sf.LibsndfileError, ValueError) as e:
            sf_error = _one_line(e)
            samples = None
    if samples is None:
        container = _open_container(p)
        with container:
            if not container.streams.audio:
                if sf_error is not None and not container.streams.video:
                    raise MediaError(p, f"unreadable audio file ({sf_error})")
                raise MediaError(p, "no audio stream")
            stream = container.streams.audio[0]
            _check_duration(p, _stream_duration(stream, container), max_duration_s)
            samples, sr = _decode_audio_stream(p, container, stream)
    if len(samples) == 0:
        raise MediaError(p, "zero-length audio (no samples)")
    _check_duration(p, len(samples) / sr, max_duration_s)
    if not np.all(np.isfinite(samples)):
        raise MediaError(p, "audio contains NaN or infinite samples")
    if sample_rate is not None and sample_rate != sr:
        samples = resample(samples, sr, sample_rate)
        sr = sample_rate
    return Audio(samples.astype(np.float32), int(sr))


def read_image(path: str | Path, *, max_side: int = MAX_SIDE) -> Image:
    """Read an image (PIL) as RGB uint8; the first frame of animated images."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    p = _check_file(path)
    try:
        with PILImage.open(p) as im:
            w, h = im.size
            if w <= 0 or h <= 0:
                raise MediaError(p, "image has zero size")
            if w > max_side or h > max_side:
                raise MediaError(p, f"image size {w}x{h} too large (limit {max_side} px per side)")
            im.load()
            pixels = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise MediaError(p, "not an image file (unrecognised format)") from None
    except MediaError:
        raise
    except (OSError, ValueError, SyntaxError) as e:
        msg = _one_line(e)
        problem = "truncated image" if "truncated" in msg else "unreadable image"
        raise MediaError(p, f"{problem} ({msg})") from None
    return Image(pixels.copy())


def read_media(path: str | Path, **limits) -> Media:
    """Read whatever ``path`` holds: Image for still-image files, Audio for audio-only files, else Video."""
    p = _check_file(path)
    ext = p.suffix.lower()
    if ext in IMAGE_EXTS:
        return read_image(p, **{k: v for k, v in limits.items() if k == "max_side"})
    if ext in AUDIO_EXTS:
        return read_audio(p, **{k: v for k, v in limits.items() if k in ("sample_rate", "max_duration_s")})
    container = _open_container(p)
    with container:
        has_video, has_audio = bool(container.streams.video), bool(container.streams.audio)
    if has_video:
        return read_video(p, **{k: v for k, v in limits.items() if k != "sample_rate"})
    if has_audio:
        return read_audio(p, **{k: v for k, v in limits.items() if k in ("sample_rate", "max_duration_s")})
    raise MediaError(p, "no audio or video stream")


# --------------------------------------------------------------------------- writers


def ensure_not_input(out: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """Raise AvbridgeError if ``out`` is (the same file as) one of ``inputs``."""
    o = Path(out)
    ro = o.resolve()
    for i in inputs:
        if i is None:
            continue
        ip = Path(i)
        same = ip.resolve() == ro
        if not same and o.exists() and ip.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(o, ip)
        if same:
            raise AvbridgeError(f"{out}: refusing to write the output over an input file")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success fsync it and rename it to ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    dest = Path(path)
    if dest.is_dir():
        raise AvbridgeError(f"{dest}: output path is a directory")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + dest.name + ".", suffix=dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; give the output the permissions a plain open() would.
    with contextlib.suppress(OSError):
        os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file (a JSON summary, say) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_audio(audio: Audio) -> np.ndarray:
    x = np.asarray(audio.samples, dtype=np.float32)
    if x.ndim != 1 or len(x) == 0:
        raise AvbridgeError(f"cannot write audio of shape {x.shape}: need non-empty mono (N,)")
    if int(audio.sample_rate) <= 0:
        raise AvbridgeError(f"cannot write audio with sample rate {audio.sample_rate}")
    return np.clip(np.nan_to_num(x), -1.0, 1.0)


def _check_frames(frames: np.ndarray) -> np.ndarray:
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.shape[0] == 0 or f.shape[1] == 0 or f.shape[2] == 0:
        raise AvbridgeError(f"cannot write video frames of shape {f.shape}: need (T>0, H, W, 3)")
    if f.dtype != np.uint8:
        raise AvbridgeError(f"cannot write video frames of dtype {f.dtype}: need uint8")
    return np.ascontiguousarray(f)


def write_audio(path: str | Path, audio: Audio, *, subtype: str = "PCM_16") -> Path:
    """Write mono audio as .wav or .flac (16-bit PCM by default), atomically."""
    import soundfile as sf

    p = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC"}.get(p.suffix.lower())
    if fmt is None:
        raise AvbridgeError(f"{p}: audio can be written as .wav or .flac, not {p.suffix or 'no extension'}")
    x = _check_audio(audio)
    with atomic_path(p) as tmp:
        sf.write(str(tmp), x, int(audio.sample_rate), subtype=subtype, format=fmt)
    return p


def _fps_fraction(fps: float) -> Fraction:
    if not (fps > 0 and math.isfinite(fps)):
        raise AvbridgeError(f"cannot write video at {fps} fps")
    f = Fraction(fps).limit_denominator(1001)
    if abs(float(f) - fps) > 1e-6 * fps:
        f = Fraction(fps).limit_denominator(1_000_000)
    return f


def write_video(path: str | Path, video: Video, *, crf: int = 18, preset: str = "medium") -> Path:
    """Write an .mp4: H.264 video plus, if ``video.audio`` is set, an AAC track; atomically.

    Even frame sizes use yuv420p (plays everywhere). H.264 4:2:0 cannot represent odd
    sizes, so odd sizes use yuv444p (High 4:4:4 profile), which keeps the exact size and
    decodes with FFmpeg-based players, though not in some browsers.
    """
    import av

    p = Path(path)
    if p.suffix.lower() not in (".mp4", ".m4v", ".mov"):
        raise AvbridgeError(f"{p}: video can be written as .mp4, not {p.suffix or 'no extension'}")
    frames = _check_frames(video.frames)
    rate = _fps_fraction(float(video.fps))
    _, h, w, _ = frames.shape
    pix_fmt = "yuv420p" if (w % 2 == 0 and h % 2 == 0) else "yuv444p"
    audio = video.audio
    if audio is not None:
        samples = _check_audio(audio)
        sr = int(audio.sample_rate)
        if sr not in _AAC_RATES:
            samples, sr = resample(samples, sr, 48000), 48000
    with atomic_path(p) as tmp:
        with av.open(str(tmp), "w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=rate)
            vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
            vs.options = {"crf": str(crf), "preset": preset}
            as_ = None
            if audio is not None:
                as_ = out.add_stream("aac", rate=sr)
                as_.layout = "mono"
            for i, arr in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(arr, format="rgb24").reformat(format=pix_fmt)
                vf.pts = i
                vf.time_base = 1 / rate
                out.mux(vs.encode(vf))
            out.mux(vs.encode(None))
            if as_ is not None:
                af = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
                af.sample_rate = sr
                af.pts = 0
                af.time_base = Fraction(1, sr)
                out.mux(as_.encode(af))
                out.mux(as_.encode(None))
    return p


def write_image(path: str | Path, image: Image) -> Path:
    """Write an RGB image as .png (or .jpg), atomically."""
    from PIL import Image as PILImage

    p = Path(path)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(p.suffix.lower())
    if fmt is None:
        raise AvbridgeError(f"{p}: images can be written as .png or .jpg, not {p.suffix or 'no extension'}")
    px = np.asarray(image.pixels)
    if px.ndim != 3 or px.shape[-1] != 3 or px.dtype != np.uint8 or px.shape[0] == 0 or px.shape[1] == 0:
        raise AvbridgeError(f"cannot write image of shape {px.shape} {px.dtype}: need uint8 (H, W, 3)")
    with atomic_path(p) as tmp:
        PILImage.fromarray(np.ascontiguousarray(px), "RGB").save(tmp, format=fmt)
    return p


def write_gif(path: str | Path, media: Video | Image) -> Path:
    """Write an animated GIF (looping) from a video's frames, or a one-frame GIF from an image.

    GIF stores frame delays in 1/100 s and 256 colours per frame; audio is dropped.
    """
    from PIL import Image as PILImage

    p = Path(path)
    if p.suffix.lower() != ".gif":
        raise AvbridgeError(f"{p}: write_gif needs a .gif extension")
    if isinstance(media, Image):
        frames, fps = np.asarray(media.pixels)[None], 1.0
    else:
        frames, fps = _check_frames(media.frames), float(media.fps)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise AvbridgeError(f"cannot write GIF from array of shape {frames.shape} {frames.dtype}")
    ims = [PILImage.fromarray(f, "RGB") for f in frames]
    delay_ms = max(10, round(1000.0 / fps / 10) * 10)
    with atomic_path(p) as tmp:
        ims[0].save(tmp, format="GIF", save_all=True, append_images=ims[1:], duration=delay_ms, loop=0)
    return p


def write_output(path: str | Path, media: Media) -> Path:
    """Write ``media`` in the format chosen by ``path``'s extension.

    Audio: .wav/.flac. Video: .mp4 (with its audio track) or .gif. Image: .png/.jpg or .gif.
    A mismatch between the extension and the kind of media raises AvbridgeError.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if isinstance(media, Audio):
        if ext in (".wav", ".flac"):
            return write_audio(p, media)
        raise AvbridgeError(f"{p}: the output is audio; use a .wav or .flac extension")
    if isinstance(media, Video):
        if ext in (".mp4", ".m4v", ".mov"):
            return write_video(p, media)
        if ext == ".gif":
            return write_gif(p, media)
        raise AvbridgeError(f"{p}: the output is a video; use a .mp4 (or .gif, no sound) extension")
    if isinstance(media, Image):
        if ext in (".png", ".jpg", ".jpeg"):
            return write_image(p, media)
        if ext == ".gif":
            return write_gif(p, media)
        raise AvbridgeError(f"{p}: the output is an image; use a .png or .gif extension")
    raise AvbridgeError(f"{p}: cannot write an object of type {type(media).__name__}")


def mux_audio(video: Video, audio: Audio) -> Video:
    """A copy of ``video`` whose audio track is ``audio`` trimmed or zero-padded to the video's duration."""
    n = round(video.duration_s * audio.sample_rate)
    x = np.asarray(audio.samples, dtype=np.float32)
    x = x[:n] if len(x) >= n else np.concatenate([x, np.zeros(n - len(x), np.float32)])
    return Video(video.frames, video.fps, Audio(x, int(audio.sample_rate)))


def output_suffixes(kind: str) -> tuple[str, ...]:
    """Extensions that :func:`write_output` accepts for a kind of media ("audio", "video", "image")."""
    return {
        "audio": (".wav", ".flac"),
        "video": (".mp4", ".m4v", ".mov", ".gif"),
        "image": (".png", ".jpg", ".jpeg", ".gif"),
    }[kind]
