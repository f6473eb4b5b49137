"""Helpers of the web app (``avbridge.apps.app``) that need no Gradio: upload limits, reading
inputs with the CLI's readers, per-request folders that are removed after a while, the
guidance options of the page as an AlignConfig, and the pictures (frames strip and
spectrogram, binder loss per step) shown beside each output.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from avbridge.errors import AvbridgeError
from avbridge.io import media

#: Value of the page's drop-downs that keeps the task's own setting.
TASK_DEFAULT = "task default"
#: Prefix of the per-request folders (the sweeper removes only these).
REQUEST_PREFIX = "req-"


@dataclass(frozen=True)
class Limits:
    """What the app accepts: upload size in MB and media duration in seconds."""

    max_upload_mb: float = 50.0
    max_duration_s: float = 30.0


def display_name(path: str | Path) -> str:
    """The file's own name: uploads live in Gradio's cache under a hashed folder."""
    return Path(path).name


def one_line(message: str, path: str | Path | None = None) -> str:
    """``message`` on one line, with the upload's cache path shortened to its file name."""
    text = " ".join(str(message).split())
    if path is not None:
        text = text.replace(str(path), display_name(path))
    return text


def read_input(kind: str, path: str | Path, limits: Limits) -> media.Media:
    """Read an upload with the CLI's readers (same MediaError messages), refusing files over
    ``limits`` with the limit named."""
    p = Path(path)
    if p.is_file():
        mb = p.stat().st_size / 1e6
        if mb > limits.max_upload_mb:
            raise AvbridgeError(
                f"{p}: upload is {mb:.1f} MB, over the limit of {limits.max_upload_mb:g} MB (--max-upload-mb)"
            )
    try:
        if kind == "video":
            return media.read_video(p, max_duration_s=limits.max_duration_s)
        if kind == "image":
            return media.read_image(p)
        if kind == "audio":
            return media.read_audio(p, max_duration_s=limits.max_duration_s)
    except AvbridgeError as e:
        if "(limit" in str(e) and "too long" in str(e):
            raise AvbridgeError(f"{e} (--max-duration)") from None
        raise
    raise ValueError(f"unknown input kind {kind!r}")


# --------------------------------------------------------------------------- request folders


class RequestFolders:
    """One folder per request under ``root``, removed ``keep_s`` seconds after the request ends.

    Folders in use are never removed; a background thread (:meth:`start`) and every new
    request sweep the old ones, so disk use stays bounded over any number of requests.
    """

    def __init__(self, root: str | Path, keep_s: float):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep_s = max(0.5, float(keep_s))
        self._active: set[Path] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def request(self) -> Iterator[Path]:
        """A fresh folder for one request; its age counts from when the request ends."""
        self.sweep()
        folder = Path(tempfile.mkdtemp(prefix=REQUEST_PREFIX, dir=self.root))
        with self._lock:
            self._active.add(folder)
        try:
            yield folder
        finally:
            with contextlib.suppress(OSError):
                os.utime(folder)
            with self._lock:
                self._active.discard(folder)

    def folders(self) -> list[Path]:
        """The request folders on disk now."""
        return sorted(p for p in self.root.glob(REQUEST_PREFIX + "*") if p.is_dir())

    def sweep(self, now: float | None = None) -> int:
        """Remove request folders idle for more than ``keep_s``; returns how many went."""
        now = time.time() if now is None else now
        removed = 0
        with self._lock:
            active = set(self._active)
        for folder in self.folders():
            if folder in active:
                continue
            try:
                age = now - folder.stat().st_mtime
            except OSError:
                continue
            if age > self.keep_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed

    def start(self) -> None:
        """Sweep in a daemon thread every ``min(keep_s / 2, 60)`` seconds until :meth:`stop`."""
        if self._thread is not None:
            return
        period = max(0.25, min(self.keep_s / 2, 60.0))

        def loop() -> None:
            while not self._stop.wait(period):
                self.sweep()

        self._thread = threading.Thread(target=loop, name="avbridge-app-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# --------------------------------------------------------------------------- guidance options


#: The guidance options of the page, with the CLI option each one mirrors.
ADVANCED_OPTIONS: dict[str, str] = {
    "cfg": "--cfg",
    "lr": "--lr",
    "prompt_lr": "--prompt-lr",
    "inner_steps": "--inner-steps",
    "window": "--window",
    "update": "--update",
    "audio_path": "--audio-path",
    "mel_grad": "--mel-grad",
    "frame_grad": "--frame-grad",
    "latent_grad": "--latent-grad",
    "refine": "--refine",
    "per_clip": "--per-clip",
}


def _per_modality(text: Any, option: str) -> float | dict[str, float] | None:
    from avbridge.apps.cli import per_modality

    if text is None or str(text).strip() == "":
        return None
    try:
        return per_modality(str(text).strip())
    except (argparse.ArgumentTypeError, ValueError):
        raise AvbridgeError(
            f"{option}: expected NUMBER or audio=NUMBER,visual=NUMBER, got {str(text).strip()!r}"
        ) from None


def _window(text: Any) -> list[float] | None:
    if text is None or str(text).strip() == "":
        return None
    parts = str(text).replace(",", " ").split()
    try:
        values = [float(x) for x in parts]
    except ValueError:
        values = []
    if len(values) != 2:
        raise AvbridgeError(f"--window: expected two fractions START STOP such as '0.2 1.0', got {text!r}")
    return values


def _choice(value: Any) -> str | None:
    return None if value in (None, "", TASK_DEFAULT) else str(value)


def options_namespace(
    *, steps: Any, negative_prompt: str | None, advanced: dict[str, Any]
) -> argparse.Namespace:
    """The page's values as the CLI's parsed arguments (blank = the task's own setting)."""
    inner = advanced.get("inner_steps")
    if inner is not None and inner != "":
        if float(inner) != int(float(inner)) or int(float(inner)) < 1:
            raise AvbridgeError(f"--inner-steps: expected a positive whole number, got {inner}")
        inner = int(float(inner))
    else:
        inner = None
    n_steps = None if steps in (None, "") else int(steps)
    if n_steps is not None and n_steps < 1:
        raise AvbridgeError(f"--steps: expected a positive whole number, got {steps}")
    neg = (negative_prompt or "").strip() or None
    return argparse.Namespace(
        steps=n_steps,
        negative_prompt=neg,
        cfg=_per_modality(advanced.get("cfg"), "--cfg"),
        lr=_per_modality(advanced.get("lr"), "--lr"),
        prompt_lr=_per_modality(advanced.get("prompt_lr"), "--prompt-lr"),
        refine=_per_modality(advanced.get("refine"), "--refine"),
        inner_steps=inner,
        window=_window(advanced.get("window")),
        update=_choice(advanced.get("update")),
        audio_path=_choice(advanced.get("audio_path")),
        mel_grad=_choice(advanced.get("mel_grad")),
        frame_grad=_choice(advanced.get("frame_grad")),
        latent_grad=_choice(advanced.get("latent_grad")),
        guidance_dtype=None,
        per_clip=bool(advanced.get("per_clip")),
    )


def resolve_settings(task: str, ns: argparse.Namespace, guidance_preset: str | None) -> Any:
    """The settings the CLI would resolve from the same options, with where each value came from
    (``avbridge.presets.Settings``)."""
    from avbridge import presets
    from avbridge.apps import cli

    return presets.resolve_settings(task, preset=guidance_preset, options=cli.config_overrides(ns))


# --------------------------------------------------------------------------- pictures


def _visual_and_audio(shown: Any, condition: Any) -> tuple[Any, media.Audio | None]:
    """What the picture shows: the output's frames (else the input's) and its sound (else the input's)."""
    visual = shown if isinstance(shown, (media.Video, media.Image)) else None
    if visual is None and isinstance(condition, (media.Video, media.Image)):
        visual = condition
    audio = shown if isinstance(shown, media.Audio) else getattr(shown, "audio", None)
    if audio is None:
        audio = condition if isinstance(condition, media.Audio) else getattr(condition, "audio", None)
    return visual, audio


def picture(path: Path, shown: Any, condition: Any, title: str) -> Path:
    """A PNG with the frames strip (or the image) and the spectrogram, as the demo's contact sheet."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from avbridge.apps.demo import frame_strip, spectrogram_db

    visual, audio = _visual_and_audio(shown, condition)
    fig = Figure(figsize=(9, 2.2))
    FigureCanvasAgg(fig)
    ax_v, ax_a = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    if isinstance(visual, media.Video):
        ax_v.imshow(frame_strip(visual), extent=(0, visual.duration_s, 0, 1), aspect="auto")
        ax_v.set_xlabel("time (s)", fontsize=7)
        ax_v.set_title("frames", fontsize=8, loc="left")
    elif isinstance(visual, media.Image):
        ax_v.imshow(visual.pixels)
        ax_v.set_xticks([])
        ax_v.set_title("image", fontsize=8, loc="left")
    else:
        ax_v.text(0.5, 0.5, "(no picture)", ha="center", va="center", transform=ax_v.transAxes)
    ax_v.set_yticks([])
    if audio is not None and len(audio.samples) > 0:
        db, top = spectrogram_db(audio)
        ax_a.imshow(db, origin="lower", aspect="auto", extent=(0, audio.duration_s, 0, top / 1000),
                    cmap="magma", vmin=float(db.max()) - 80, vmax=float(db.max()))
        ax_a.set_ylabel("kHz", fontsize=7)
        ax_a.set_xlabel("time (s)", fontsize=7)
        ax_a.set_title("spectrogram", fontsize=8, loc="left")
    else:
        ax_a.text(0.5, 0.5, "(no sound)", ha="center", va="center", transform=ax_a.transAxes)
    for ax in (ax_v, ax_a):
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80, format="png")
    return path


def loss_figure(guided: Any | None, vanilla: Any | None, total_steps: int) -> Any:
    """Binder loss at each guided step (``trace.step_loss``), with the final binder loss of the
    guided and the vanilla output as horizontal lines; a matplotlib Figure (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 2.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if guided is not None and guided.step_loss:
        x = np.asarray(guided.guided_steps[: len(guided.step_loss)]) + 1
        ax.plot(x, guided.step_loss, "o-", color="tab:blue", ms=3, lw=1.2,
                label="guided: loss at guided steps")
    for trace, colour, label in ((guided, "tab:blue", "guided"), (vanilla, "tab:orange", "vanilla")):
        final = getattr(trace, "final_loss", None)
        if final is not None and np.isfinite(final):
            ax.axhline(final, color=colour, ls="--", lw=1, label=f"{label}: final {final:.3f}")
    ax.set_xlim(0.5, max(1, total_steps) + 0.5)
    ax.set_xlabel("denoising step", fontsize=8)
    ax.set_ylabel("binder loss", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    if ax.has_data():
        ax.legend(fontsize=7, loc="best")
    ax.set_title("binder loss per step (lower = better aligned)", fontsize=8, loc="left")
    fig.tight_layout()
    return fig
