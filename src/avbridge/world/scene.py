"""The procedural audio-visual world: seeded clips with ground truth.

Every clip shows one sound source of a class (ball, drum, bell, bird, hammer,
engine) with a colour and a size. The source makes 1 to 5 discrete events; at
an event frame the picture shows the class's impact pose plus a flash, and the
sound of the event starts at exactly the same time. Colour sets the pitch (red
low, green one octave up, blue two octaves up) and size the loudness. The world
exists to make alignment measurable against ground truth, not to look pretty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from avbridge.errors import AvbridgeError
from avbridge.io.media import Audio, Image, Video


@dataclass(frozen=True)
class WorldSpec:
    """Fixed format of every world clip."""

    duration_s: float = 4.0
    fps: int = 8
    size: int = 32
    sample_rate: int = 16000

    @property
    def n_frames(self) -> int:
        return round(self.duration_s * self.fps)

    @property
    def n_samples(self) -> int:
        return round(self.duration_s * self.sample_rate)

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps


WORLD = WorldSpec()

CLASSES: tuple[str, ...] = ("ball", "drum", "bell", "bird", "hammer", "engine")
COLOURS: tuple[str, ...] = ("red", "green", "blue")
SIZES: tuple[str, ...] = ("small", "large")
VERBS: dict[str, str] = {
    "ball": "bouncing",
    "drum": "being struck",
    "bell": "ringing",
    "bird": "chirping",
    "hammer": "striking",
    "engine": "buzzing",
}

# Cross-modal attributes: colour -> RGB and pitch factor (octaves), size -> radius and loudness.
COLOUR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 40),
    "green": (45, 205, 65),
    "blue": (55, 95, 235),
}
PITCH_FACTOR: dict[str, float] = {"red": 1.0, "green": 2.0, "blue": 4.0}
RADIUS: dict[str, float] = {"small": 4.0, "large": 7.0}
LOUDNESS: dict[str, float] = {"small": 0.25, "large": 0.7}
# Base frequency (Hz) of each class's sound at the "red" pitch.
BASE_HZ: dict[str, float] = {
    "ball": 100.0,
    "drum": 150.0,
    "bell": 440.0,
    "bird": 900.0,
    "hammer": 600.0,
    "engine": 80.0,
}

MIN_EVENTS, MAX_EVENTS = 1, 5
MIN_GAP_FRAMES = 4  # 0.5 s at 8 fps: events stay >= 0.4 s apart
EDGE_FRAMES = 3  # no event in the first 3 frames (0.375 s) or the last 3 frames
FLASH_DECAY = 0.25  # flash intensity on frames k, k+1, k+2: 1, 0.25, 0.06
SPLIT_RANGES: dict[str, tuple[int, int]] = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 1_100_000),
    "test": (2_000_000, 2_100_000),
}


@dataclass
class WorldClip:
    """One rendered clip: video with its audio track, caption, and JSON-able truth."""

    video: Video
    caption: str
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def audio(self) -> Audio:
        assert self.video.audio is not None
        return self.video.audio

    def image(self) -> Image:
        """The frame just before the first event (no flash, true colours): the still used by
        the image tasks (I2A's condition)."""
        k = self.truth["event_frames"][0] - 1
        return Image(pixels=self.video.frames[k].copy())


def caption_for(cls: str, colour: str, size: str) -> str:
    """The template caption, e.g. ``"a small red ball bouncing"``."""
    return f"a {size} {colour} {cls} {VERBS[cls]}"


def split_seeds(split: Literal["train", "val", "test"], n: int, start: int = 0) -> list[int]:
    """``n`` seeds of a split, from disjoint ranges (train, val and test never share a clip)."""
    if split not in SPLIT_RANGES:
        raise AvbridgeError(f"unknown split {split!r}: use one of {', '.join(SPLIT_RANGES)}")
    lo, hi = SPLIT_RANGES[split]
    if n < 0 or start < 0 or lo + start + n > hi:
        raise AvbridgeError(f"split {split!r} holds {hi - lo} seeds; asked for {start}..{start + n}")
    return list(range(lo + start, lo + start + n))


def seed_split(seed: int) -> str | None:
    """Which split a seed belongs to (None if it is outside every split)."""
    for name, (lo, hi) in SPLIT_RANGES.items():
        if lo <= seed < hi:
            return name
    return None


def sample_events(rng: np.random.Generator, spec: WorldSpec = WORLD) -> list[int]:
    """1..5 event frames, >= MIN_GAP_FRAMES apart and EDGE_FRAMES away from both ends."""
    n = int(rng.integers(MIN_EVENTS, MAX_EVENTS + 1))
    lo, hi = EDGE_FRAMES, spec.n_frames - 1 - EDGE_FRAMES
    # Stars and bars: spread the free slack over n+1 gaps so any layout is possible.
    slack = (hi - lo) - (n - 1) * MIN_GAP_FRAMES
    cuts = np.sort(rng.integers(0, slack + 1, size=n))
    return [int(lo + c + i * MIN_GAP_FRAMES) for i, c in enumerate(cuts)]


# ---------------------------------------------------------------- picture

def _flash(event_frames: list[int], n: int) -> np.ndarray:
    t = np.arange(n)[:, None]
    k = np.asarray(event_frames)[None, :]
    d = t - k
    return np.clip(np.where(d >= 0, FLASH_DECAY ** np.maximum(d, 0), 0.0).sum(1), 0.0, 1.0)


def _since_last(event_frames: list[int], n: int) -> np.ndarray:
    """Frames since the latest event at or before t (large before the first one)."""
    t = np.arange(n)[:, None]
    d = t - np.asarray(event_frames)[None, :]
    return np.where(d >= 0, d, 10_000).min(1).astype(np.float64)


def _alpha(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _ellipse(x, y, cx, cy, rx, ry):
    d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return (d - 1.0) * np.minimum(rx, ry)


def _box(x, y, cx, cy, hw, hh):
    return np.maximum(np.abs(x - cx) - hw, np.abs(y - cy) - hh)


def _segment(x, y, ax, ay, bx, by, width):
    px, py, dx, dy = x - ax, y - ay, bx - ax, by - ay
    h = np.clip((px * dx + py * dy) / (dx * dx + dy * dy + 1e-9), 0.0, 1.0)
    return np.sqrt((px - h * dx) ** 2 + (py - h * dy) ** 2) - width / 2


def _ball_height(ev: list[int], n: int, top: float) -> np.ndarray:
    """Height above the ground: parabolic arcs landing exactly on the event frames."""
    t = np.arange(n, dtype=np.float64)
    h = np.zeros(n)
    first, last = ev[0], ev[-1]
    pre = t < first
    h[pre] = top * (1 - (t[pre] / first) ** 2)
    for a, b in zip(ev[:-1], ev[1:], strict=False):
        m = (t > a) & (t < b)
        u = (t[m] - a) / (b - a)
        h[m] = min(top, 1.6 * (b - a)) * 4 * u * (1 - u)
    rise = 4.0
    post = t > last
    u = np.clip((t[post] - last) / rise, 0.0, 1.0)
    h[post] = min(top, 1.6 * rise * 2) * (1 - (1 - u) ** 2)
    return h


def _render_alpha(cls: str, ev: list[int], spec: WorldSpec, r: float, rng: np.random.Generator):
    """Coverage (T, H, W) of the source and of static scenery, for one class."""
    n, s = spec.n_frames, spec.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    x, y = xx[None] + 0.5, yy[None] + 0.5
    t = np.arange(n, dtype=np.float64)
    fl = _flash(ev, n)
    since = _since_last(ev, n)
    col = lambda a: a[:, None, None]  # noqa: E731
    scenery = np.zeros((n, s, s))
    cx0 = float(rng.uniform(r + 3, s - r - 3))

    if cls == "ball":
        ground = s - 2.0
        h = _ball_height(ev, n, top=s - 2 * r - 6)
        rx, ry = r * (1 + 0.3 * fl), r * (1 - 0.3 * fl)
        cy = ground - ry - h
        sdf = _ellipse(x, y, cx0, col(cy), col(rx), col(ry))
    elif cls == "drum":
        # The drum shakes for a few frames after each hit.
        shake = np.where(since < 4, 1.5 * (0.5 ** since) * (-1.0) ** since, 0.0)
        cy = s * 0.62 + shake
        sdf = _box(x, y, cx0, col(cy), r + 2, r * 0.6)
        skin = _box(x, y, cx0, col(cy - r * 0.6), r + 2.5, 0.6)
        sdf = np.minimum(sdf, skin)
    elif cls == "bell":
        # A triangle that starts to swing at each strike.
        swing = np.where(since < 8, 2.0 * np.exp(-since / 3) * np.sin(np.pi * since / 2), 0.0)
        cx = cx0 + swing
        top, bot = s * 0.5 - r, s * 0.5 + r
        half = (y - top) / (bot - top) * (r + 1)
        sdf = np.maximum(np.maximum(np.abs(x - col(cx)) - half, top - y), y - bot)
        clapper = _ellipse(x, y, col(cx), bot + 1.5, 1.5, 1.5)
        sdf = np.minimum(sdf, clapper)
        scenery = _alpha(_box(x, y, cx0, top - 2, 0.5, 2.0)).repeat(n, 0) * 0.6
    elif cls == "bird":
        # Flies sideways; wings go fully up at each chirp and settle down after.
        vx = float(rng.choice([-0.45, 0.45]))
        start = 7.0 if vx > 0 else s - 7.0
        cx = start + vx * t
        cy = s * 0.45 + 1.0 * np.sin(t * 0.8)
        lift = np.where(since < 10_000, np.exp(-since / 1.5), 0.0)
        ang = np.deg2rad(-15 + 60 * lift)
        span = r + 2
        wx, wy = span * np.cos(ang), -span * np.sin(ang)
        left = _segment(x, y, col(cx), col(cy), col(cx - wx), col(cy + wy), 2.2)
        right = _segment(x, y, col(cx), col(cy), col(cx + wx), col(cy + wy), 2.2)
        body = _ellipse(x, y, col(cx), col(cy), 2.0, 1.6)
        sdf = np.minimum(np.minimum(left, right), body)
    elif cls == "hammer":
        # Held high, strikes the anvil on the event frame, lifts back over 3 frames.
        anvil_y = s - 4.0
        lift = np.clip(since / 3.0, 0.0, 1.0)
        lift = np.where(since >= 10_000, 1.0, lift)
        head_y = anvil_y - 2.0 - r * 0.5 - 8.0 * lift
        head = _box(x, y, cx0, col(head_y), r, r * 0.5)
        handle = _box(x, y, cx0, col(head_y - r * 0.5 - 4.0), 0.9, 4.0)
        sdf = np.minimum(head, handle)
        scenery = _alpha(_box(x, y, cx0, anvil_y + 1.0, r + 3, 1.0)).repeat(n, 0) * 0.6
    elif cls == "engine":
        # A hollow square that idles with a tremble and shakes hard while it buzzes.
        shake = np.where(since < 3, 1.2 * (-1.0) ** since, 0.0) + 0.25 * np.sin(t * 2.5)
        cx, cy = cx0 + shake, s * 0.5 + 0.3 * np.cos(t * 3.1)
        outer = _box(x, y, col(cx), col(cy), r, r)
        inner = _box(x, y, col(cx), col(cy), r - 2.0, r - 2.0)
        sdf = np.minimum(np.maximum(outer, -inner), _ellipse(x, y, col(cx), col(cy), 1.2, 1.2))
    else:  # pragma: no cover - CLASSES is fixed
        raise AvbridgeError(f"unknown class {cls!r}")
    return _alpha(sdf), scenery, fl


def render_frames(cls: str, colour: str, size: str, event_frames: list[int], seed: int,
                  spec: WorldSpec = WORLD) -> np.ndarray:
    """Frames uint8 (T, S, S, 3) of one source with events at ``event_frames``."""
    rng = np.random.default_rng([seed, 1])
    alpha, scenery, fl = _render_alpha(cls, event_frames, spec, RADIUS[size], rng)
    n, s = spec.n_frames, spec.size
    bg_level = rng.uniform(18, 34, size=3)
    bg = np.broadcast_to(bg_level, (n, s, s, 3)) + 45.0 * fl[:, None, None, None]
    base = np.asarray(COLOUR_RGB[colour], dtype=np.float64)
    obj = base[None] + (255.0 - base[None]) * 0.75 * fl[:, None]
    out = bg + scenery[..., None] * (140.0 - bg)
    a = alpha[..., None]
    out = out * (1 - a) + obj[:, None, None, :] * a
    out = out + rng.normal(0.0, 3.0, size=out.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- sound

def _event_sound(cls: str, f0: float, sr: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """One event's sound, peak-normalised, starting with a sharp (2-3 ms) attack."""
    t = np.arange(length) / sr
    noise = rng.standard_normal(length)
    attack = 1.0 - np.exp(-t / 0.002)
    if cls == "ball":  # thud: a low sine that drops in pitch, plus a soft click
        f = f0 * (1 + 0.8 * np.exp(-t / 0.02))
        x = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.09) + 0.3 * noise * np.exp(-t / 0.008)
    elif cls == "drum":  # membrane tone under a noise burst
        x = 0.6 * np.sin(2 * np.pi * f0 * t) * np.exp(-t / 0.12) + 0.7 * noise * np.exp(-t / 0.045)
    elif cls == "bell":  # chime: inharmonic partials with a long decay
        parts = np.array([1.0, 2.0, 2.76])[:, None]
        amps = np.array([1.0, 0.5, 0.3])[:, None]
        x = (amps * np.sin(2 * np.pi * f0 * parts * t[None])).sum(0) * np.exp(-t / 0.15)
    elif cls == "bird":  # chirp: an upward sweep of ~150 ms
        f = f0 * (1 + 0.8 * np.clip(t / 0.12, 0, 1))
        x = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.where(t < 0.12, 1.0, np.exp(-(t - 0.12) / 0.02))
    elif cls == "hammer":  # metallic click: very short noise plus two ringing partials
        x = (noise * np.exp(-t / 0.004) + 0.5 * np.sin(2 * np.pi * f0 * t) * np.exp(-t / 0.06)
             + 0.3 * np.sin(2 * np.pi * 2.4 * f0 * t) * np.exp(-t / 0.04))
    elif cls == "engine":  # buzz: band-limited sawtooth held for 200 ms
        h = np.arange(1, min(24, int(7000 // f0)) + 1)[:, None]
        saw = (np.sin(2 * np.pi * f0 * h * t[None]) / h).sum(0)
        x = saw * np.where(t < 0.2, 1.0, np.exp(-(t - 0.2) / 0.03))
    else:  # pragma: no cover
        raise AvbridgeError(f"unknown class {cls!r}")
    # A 60-ms fade at the end so that cutting the tail never makes a click (a false onset).
    fade = np.clip((length - np.arange(length)) / (0.06 * sr), 0.0, 1.0)
    x = x * attack * fade
    return x / (np.abs(x).max() + 1e-9)


def render_audio(cls: str, colour: str, size: str, event_times: list[float], seed: int,
                 spec: WorldSpec = WORLD) -> np.ndarray:
    """Mono float32 samples (N,) with one event sound starting at each event time."""
    rng = np.random.default_rng([seed, 2])
    sr, n = spec.sample_rate, spec.n_samples
    out = rng.normal(0.0, 0.003, size=n)  # mild background noise
    f0 = BASE_HZ[cls] * PITCH_FACTOR[colour]
    for et in event_times:
        start = round(et * sr)
        length = min(n - start, round(0.45 * sr))
        gain = LOUDNESS[size] * rng.uniform(0.85, 1.0)
        out[start:start + length] += gain * _event_sound(cls, f0, sr, length, rng)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------- clips

def clip_params(seed: int, spec: WorldSpec = WORLD) -> dict[str, Any]:
    """Class, attributes and event frames of a seed, without rendering anything."""
    rng = np.random.default_rng([seed, 0])
    cls = CLASSES[int(rng.integers(len(CLASSES)))]
    colour = COLOURS[int(rng.integers(len(COLOURS)))]
    size = SIZES[int(rng.integers(len(SIZES)))]
    frames = sample_events(rng, spec)
    return {"class": cls, "colour": colour, "size": size, "event_frames": frames}


def render_clip(seed: int, spec: WorldSpec = WORLD) -> WorldClip:
    """Render the clip of ``seed``: same seed, identical arrays, caption and truth."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise AvbridgeError(f"world seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    p = clip_params(seed, spec)
    frames_idx = p["event_frames"]
    times = [k / spec.fps for k in frames_idx]
    frames = render_frames(p["class"], p["colour"], p["size"], frames_idx, seed, spec)
    samples = render_audio(p["class"], p["colour"], p["size"], times, seed, spec)
    caption = caption_for(p["class"], p["colour"], p["size"])
    truth = {
        "seed": seed,
        "split": seed_split(seed),
        "class": p["class"],
        "colour": p["colour"],
        "size": p["size"],
        "pitch_hz": BASE_HZ[p["class"]] * PITCH_FACTOR[p["colour"]],
        "caption": caption,
        "n_events": len(frames_idx),
        "event_frames": frames_idx,
        "event_times": times,
        "duration_s": spec.duration_s,
        "fps": spec.fps,
        "size_px": spec.size,
        "sample_rate": spec.sample_rate,
    }
    audio = Audio(samples=samples, sample_rate=spec.sample_rate)
    return WorldClip(video=Video(frames=frames, fps=spec.fps, audio=audio), caption=caption, truth=truth)
