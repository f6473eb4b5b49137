"""Media I/O: roundtrips through PyAV/soundfile, odd sizes and rates, validation, atomic writes."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from avbridge.errors import AvbridgeError, MediaError
from avbridge.io import media
from avbridge.io.media import (
    Audio,
    Image,
    Video,
    ensure_not_input,
    mux_audio,
    read_audio,
    read_image,
    read_media,
    read_video,
    write_audio,
    write_gif,
    write_image,
    write_output,
    write_video,
)


def _frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth, compressible frames (a moving gradient) so that lossy roundtrips stay close."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((t, h, w, 3), np.uint8)
    for i in range(t):
        out[i, ..., 0] = (xx * 255 // max(w - 1, 1) + 8 * i + seed) % 256
        out[i, ..., 1] = yy * 255 // max(h - 1, 1)
        out[i, ..., 2] = 128
    return out


def _tone(seconds: float, sr: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def av_mp4(tmp_path_factory) -> tuple[Path, Video]:
    d = tmp_path_factory.mktemp("media")
    v = Video(_frames(25, 24, 32), 12.5, Audio(_tone(2.0, 16000), 16000))
    p = write_video(d / "clip.mp4", v)
    return p, v


def _no_tmp_left(folder: Path) -> bool:
    return not [f for f in os.listdir(folder) if f.startswith(media.TMP_PREFIX)]


# ------------------------------------------------------------------ roundtrips


def test_mp4_roundtrip_with_audio(av_mp4):
    p, v = av_mp4
    r = read_video(p, need_audio=True)
    assert r.frames.shape == v.frames.shape and r.frames.dtype == np.uint8
    assert r.fps == pytest.approx(12.5)
    assert r.duration_s == pytest.approx(2.0)
    assert np.abs(r.frames.astype(int) - v.frames.astype(int)).mean() < 8
    assert r.audio is not None and r.audio.sample_rate == 16000
    assert abs(len(r.audio.samples) - len(v.audio.samples)) <= 1024
    n = min(len(r.audio.samples), len(v.audio.samples))
    # Priming removed: the decoded tone is aligned with the original (no 1024-sample shift).
    corr = np.corrcoef(r.audio.samples[:n], v.audio.samples[:n])[0, 1]
    assert corr > 0.99


def test_read_audio_from_mp4_resampled(av_mp4):
    p, _ = av_mp4
    a = read_audio(p, sample_rate=48000)
    assert a.sample_rate == 48000
    assert abs(len(a.samples) - 96000) <= 3 * 1024


def test_odd_size_video_keeps_size(tmp_path):
    v = Video(_frames(6, 17, 33), 10.0)
    p = write_video(tmp_path / "odd.mp4", v)
    r = read_video(p)
    assert r.frames.shape == (6, 17, 33, 3)
    assert np.abs(r.frames.astype(int) - v.frames.astype(int)).mean() < 8
    assert r.audio is None


@pytest.mark.parametrize("fps", [12.5, 30000 / 1001, 8.0])
def test_any_fps(tmp_path, fps):
    p = write_video(tmp_path / "f.mp4", Video(_frames(10, 16, 16), fps))
    r = read_video(p)
    assert len(r.frames) == 10
    assert r.fps == pytest.approx(fps, rel=1e-4)


@pytest.mark.parametrize(("ext", "sr"), [(".wav", 48000), (".flac", 44100)])
def test_stereo_high_rate_audio(tmp_path, ext, sr):
    left, right = _tone(1.5, sr, 300), _tone(1.5, sr, 500)
    p = tmp_path / f"s{ext}"
    sf.write(p, np.stack([left, right], axis=1), sr)
    a = read_audio(p)
    assert a.sample_rate == sr and a.samples.ndim == 1 and a.samples.dtype == np.float32
    np.testing.assert_allclose(a.samples, (left + right) / 2, atol=2e-4)
    r = read_audio(p, sample_rate=16000)
    assert r.sample_rate == 16000 and len(r.samples) == 24000


def test_stereo_48k_aac_track_in_mp4(tmp_path):
    p = tmp_path / "st.mp4"
    sr = 48000
    with av.open(str(p), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 16, 16, "yuv420p"
        a_s = out.add_stream("aac", rate=sr)
        a_s.layout = "stereo"
        for i, f in enumerate(_frames(10, 16, 16)):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
        x = np.stack([_tone(1.0, sr, 300), _tone(1.0, sr, 300)])
        af = av.AudioFrame.from_ndarray(x, format="fltp", layout="stereo")
        af.sample_rate, af.pts, af.time_base = sr, 0, Fraction(1, sr)
        out.mux(a_s.encode(af))
        out.mux(a_s.encode(None))
    r = read_video(p, need_audio=True)
    assert r.audio.sample_rate == sr
    assert abs(len(r.audio.samples) - sr) <= 1024
    assert 0.2 < np.abs(r.audio.samples).max() < 0.6


def test_wav_flac_png_gif_roundtrip(tmp_path):
    a = Audio(_tone(0.5, 16000), 16000)
    for ext in (".wav", ".flac"):
        r = read_audio(write_output(tmp_path / f"a{ext}", a))
        assert r.sample_rate == 16000
        np.testing.assert_allclose(r.samples, a.samples, atol=1e-4)
    img = Image(_frames(1, 17, 9)[0])
    np.testing.assert_array_equal(read_image(write_output(tmp_path / "i.png", img)).pixels, img.pixels)
    g = read_media(write_gif(tmp_path / "v.gif", Video(_frames(5, 16, 16), 10.0)))
    assert isinstance(g, Video) and g.frames.shape == (5, 16, 16, 3)
    assert g.fps == pytest.approx(10.0)


def test_read_media_detects_kind(tmp_path, av_mp4):
    assert isinstance(read_media(av_mp4[0]), Video)
    sf.write(tmp_path / "a.wav", _tone(0.2, 8000), 8000)
    assert isinstance(read_media(tmp_path / "a.wav"), Audio)
    write_image(tmp_path / "i.png", Image(np.zeros((4, 4, 3), np.uint8)))
    assert isinstance(read_media(tmp_path / "i.png"), Image)


def test_write_output_rejects_wrong_extension(tmp_path):
    a = Audio(np.zeros(100, np.float32), 16000)
    v = Video(np.zeros((2, 8, 8, 3), np.uint8), 5.0)
    i = Image(np.zeros((8, 8, 3), np.uint8))
    for m, name in [(a, "x.mp4"), (a, "x.png"), (v, "x.wav"), (v, "x.png"), (i, "x.wav"), (i, "x.mp4")]:
        with pytest.raises(AvbridgeError, match=name):
            write_output(tmp_path / name, m)
    assert os.listdir(tmp_path) == []


def test_mux_audio_trims_and_pads():
    v = Video(np.zeros((10, 4, 4, 3), np.uint8), 5.0)  # 2 s
    long = mux_audio(v, Audio(np.ones(48000, np.float32), 16000))
    assert len(long.audio.samples) == 32000
    short = mux_audio(v, Audio(np.ones(16000, np.float32), 16000))
    assert len(short.audio.samples) == 32000 and short.audio.samples[-1] == 0.0
    assert short.audio.samples[15999] == 1.0


# ------------------------------------------------------------------ validation


def _bad_cases(tmp: Path, good_mp4: Path):
    """(name, callable) pairs that must each raise MediaError naming the file."""
    cases = []
    cases.append(("missing", tmp / "missing.mp4", lambda p: read_video(p)))
    (tmp / "empty.mp4").write_bytes(b"")
    cases.append(("empty", tmp / "empty.mp4", lambda p: read_video(p)))
    (tmp / "dir.wav").mkdir()
    cases.append(("directory", tmp / "dir.wav", lambda p: read_audio(p)))
    (tmp / "text.mp4").write_text("hello, I am not a video\n" * 10)
    cases.append(("not media", tmp / "text.mp4", lambda p: read_video(p)))
    (tmp / "text.wav").write_text("not a wav either\n" * 10)
    cases.append(("not audio", tmp / "text.wav", lambda p: read_audio(p)))
    data = good_mp4.read_bytes()
    (tmp / "trunc.mp4").write_bytes(data[: len(data) // 2])
    cases.append(("truncated mp4", tmp / "trunc.mp4", lambda p: read_video(p)))
    sf.write(tmp / "full.wav", _tone(1.0, 16000), 16000)
    wav = (tmp / "full.wav").read_bytes()
    (tmp / "trunc.wav").write_bytes(wav[: len(wav) // 2])
    cases.append(("truncated wav", tmp / "trunc.wav", lambda p: read_audio(p)))
    sf.write(tmp / "zero.wav", np.zeros(0, np.float32), 16000)
    cases.append(("zero-length", tmp / "zero.wav", lambda p: read_audio(p)))
    cases.append(("audio where video needed", tmp / "full.wav", lambda p: read_video(p)))
    write_video(tmp / "silent.mp4", Video(_frames(4, 16, 16), 4.0))
    cases.append(("no audio track", tmp / "silent.mp4", lambda p: read_video(p, need_audio=True)))
    cases.append(("no audio stream", tmp / "silent.mp4", lambda p: read_audio(p)))
    cases.append(("too long video", good_mp4, lambda p: read_video(p, max_duration_s=1.0)))
    cases.append(("too long audio", tmp / "full.wav", lambda p: read_audio(p, max_duration_s=0.5)))
    cases.append(("too large frames", good_mp4, lambda p: read_video(p, max_side=16)))
    write_image(tmp / "big.png", Image(np.zeros((40, 20, 3), np.uint8)))
    cases.append(("too large image", tmp / "big.png", lambda p: read_image(p, max_side=32)))
    (tmp / "fake.png").write_bytes(b"\x00\x01garbage" * 20)
    cases.append(("not an image", tmp / "fake.png", lambda p: read_image(p)))
    png = (tmp / "big.png").read_bytes()
    (tmp / "trunc.png").write_bytes(png[: len(png) // 2])
    cases.append(("truncated image", tmp / "trunc.png", lambda p: read_image(p)))
    return cases


def test_every_bad_input_gives_one_line_media_error(tmp_path, av_mp4):
    problems = {}
    for label, path, fn in _bad_cases(tmp_path, av_mp4[0]):
        with pytest.raises(MediaError) as ei:
            fn(path)
        err = ei.value
        assert err.path == Path(path), label
        msg = str(err)
        assert msg.startswith(str(path)) and "\n" not in msg, (label, msg)
        problems[label] = err.problem
    assert "not found" in problems["missing"]
    assert "empty" in problems["empty"]
    assert "truncated" in problems["truncated mp4"]
    assert "truncated" in problems["truncated wav"]
    assert "truncated" in problems["truncated image"]
    assert "zero-length" in problems["zero-length"]
    assert "no video stream" in problems["audio where video needed"]
    assert "no audio stream" in problems["no audio track"]
    assert "no audio stream" in problems["no audio stream"]
    assert "too long" in problems["too long video"]
    assert "too long" in problems["too long audio"]
    assert "too large" in problems["too large frames"]
    assert "too large" in problems["too large image"]


def test_duration_limit_checked_before_decoding(av_mp4, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("decoded before checking the duration")

    monkeypatch.setattr(av.container.InputContainer, "decode", boom)
    with pytest.raises(MediaError, match="too long"):
        read_video(av_mp4[0], max_duration_s=1.0)


# ------------------------------------------------------------------ atomic writes


def test_failed_write_leaves_no_temp_and_keeps_old_file(tmp_path, monkeypatch):
    out = tmp_path / "out.wav"
    out.write_bytes(b"old content")

    def failing_write(path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf, "write", failing_write)
    with pytest.raises(RuntimeError):
        write_audio(out, Audio(np.zeros(100, np.float32), 16000))
    assert out.read_bytes() == b"old content"
    assert _no_tmp_left(tmp_path)


def test_failed_video_encode_leaves_nothing(tmp_path, monkeypatch):
    real = av.VideoFrame.from_ndarray
    calls = {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", flaky)
    with pytest.raises(KeyboardInterrupt):
        write_video(tmp_path / "v.mp4", Video(_frames(5, 16, 16), 5.0))
    assert os.listdir(tmp_path) == []


def test_successful_write_is_complete_and_readable(tmp_path):
    p = write_video(tmp_path / "sub" / "v.mp4", Video(_frames(3, 8, 8), 3.0, Audio(_tone(1.0, 16000), 16000)))
    assert p.exists() and _no_tmp_left(p.parent)
    assert p.stat().st_mode & 0o777 == 0o666 & ~media._umask()
    assert len(read_video(p, need_audio=True).frames) == 3


def test_refuses_to_overwrite_an_input(tmp_path, av_mp4):
    src = av_mp4[0]
    with pytest.raises(AvbridgeError, match="input"):
        ensure_not_input(src, [tmp_path / "other.wav", src])
    rel = os.path.relpath(src)
    with pytest.raises(AvbridgeError):
        ensure_not_input(rel, [src])
    link = tmp_path / "link.mp4"
    os.link(src, link)
    with pytest.raises(AvbridgeError):
        ensure_not_input(link, [src])
    ensure_not_input(tmp_path / "new.mp4", [src, None])
