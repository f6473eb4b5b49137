"""``avbridge demo``: joint generation and V2A on bundled examples, guided and vanilla.

Writes, into the output folder, playable mp4 files (the example input, V2A guided and
vanilla, joint guided and vanilla), the examples' ground truth as JSON, a
``contact_sheet.png`` (frames, spectrograms, true event times as markers) and a
``summary.json`` (models, steps, timings, final binder losses). The models are the
embedded world's when they are shipped in the package, else tiny random ones, and the
demo says so plainly: tiny random models produce noise.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avbridge.io import media

#: Denoising steps per preset: small enough for < 2 minutes on 2 CPU cores.
DEMO_STEPS = {"world": 12, "tiny-random": 4, "paper": 25}
#: Length of the joint generations (2 s, the joint task's default: keeps the demo < 2 min on CPU).
DEMO_JOINT_S = 2.0
#: The demo clips: held-out (test-split) seeds of the embedded world.
DEMO_SEEDS = (2_000_000,)


@dataclass
class Example:
    """A demo input: a video with its sound, a caption and (when known) its ground truth."""

    name: str
    video: media.Video
    caption: str
    truth: dict[str, Any] | None = None


@dataclass
class Row:
    """One row of the contact sheet."""

    title: str
    video: media.Video | None = None
    audio: media.Audio | None = None
    events: list[float] = field(default_factory=list)
    audio_onsets: list[float] = field(default_factory=list)
    video_events: list[float] = field(default_factory=list)


def world_models_available() -> bool:
    """Whether the embedded world's trained models are shipped (complete) in this install."""
    from avbridge.models.loading import world_models_missing

    return not world_models_missing()


def bundled_examples_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "world" / "examples"


def load_examples(n: int = 1) -> list[Example]:
    """Bundled example clips (mp4 + JSON truth) if shipped, else clips rendered by the world generator."""
    out: list[Example] = []
    d = bundled_examples_dir()
    if d.is_dir():
        for mp4 in sorted(d.glob("*.mp4"))[:n]:
            truth_path = mp4.with_suffix(".json")
            truth = json.loads(truth_path.read_text()) if truth_path.is_file() else None
            video = media.read_video(mp4, need_audio=True)
            caption = (truth or {}).get("caption", mp4.stem.replace("_", " "))
            out.append(Example(mp4.stem, video, caption, truth))
    if out:
        return out
    from avbridge.world.scene import render_clip

    for seed in DEMO_SEEDS[:n]:
        clip = render_clip(seed)
        out.append(Example(f"world-{seed}", clip.video, clip.caption, dict(clip.truth)))
    return out


# ----------------------------------------------------------------------------- contact sheet


def _frame_strip(video: media.Video, n: int = 8) -> np.ndarray:
    """``n`` frames evenly spread over the video, side by side (H, n*W, 3)."""
    idx = np.linspace(0, len(video.frames) - 1, n).round().astype(int)
    return np.concatenate([video.frames[i] for i in idx], axis=1)


def _spectrogram_db(audio: media.Audio) -> tuple[np.ndarray, float]:
    """Log-magnitude STFT (freq, time) in dB, and the top frequency shown."""
    from scipy.signal import stft

    _, _, z = stft(audio.samples, fs=audio.sample_rate, nperseg=512, noverlap=384)
    db = 20 * np.log10(np.abs(z) + 1e-6)
    return db, audio.sample_rate / 2


def contact_sheet(rows: list[Row], path: Path, title: str) -> Path:
    """Frames and spectrograms, one row per output, true event times as dashed lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 1.9 * len(rows) + 0.6), squeeze=False)
    for r, row in enumerate(rows):
        ax_v, ax_a = axes[r]
        dur = row.video.duration_s if row.video is not None else (row.audio.duration_s if row.audio else 1.0)
        if row.video is not None:
            ax_v.imshow(_frame_strip(row.video), extent=(0, dur, 0, 1), aspect="auto")
        else:
            ax_v.text(0.5, 0.5, "(no video)", ha="center", va="center", transform=ax_v.transAxes)
        if row.audio is not None:
            db, top = _spectrogram_db(row.audio)
            ax_a.imshow(
                db,
                origin="lower",
                aspect="auto",
                extent=(0, row.audio.duration_s, 0, top / 1000),
                cmap="magma",
                vmin=db.max() - 80,
                vmax=db.max(),
            )
            ax_a.set_ylabel("kHz", fontsize=7)
        else:
            ax_a.text(0.5, 0.5, "(no audio)", ha="center", va="center", transform=ax_a.transAxes)
        for ax in (ax_v, ax_a):
            for t in row.events:
                ax.axvline(t, color="cyan", ls="--", lw=1.2)
            ax.tick_params(labelsize=7)
        for t in row.video_events:
            ax_v.axvline(t, color="lime", ls="-", lw=1.0, ymax=0.15)
        for t in row.audio_onsets:
            ax_a.axvline(t, color="lime", ls="-", lw=1.0, ymax=0.15)
        ax_v.set_yticks([])
        ax_v.set_title(row.title, fontsize=8, loc="left")
        ax_a.set_title(
            "spectrogram"
            + (" (dashed: true event times)" if row.events else "")
            + ("; green ticks: detected events" if row.audio_onsets or row.video_events else ""),
            fontsize=8,
            loc="left",
        )
        if r == len(rows) - 1:
            ax_v.set_xlabel("time (s)", fontsize=7)
            ax_a.set_xlabel("time (s)", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with media.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- event sync


def _events_module() -> Any:
    """``avbridge.world.events`` (onset detectors, event F1) or None if unavailable."""
    try:
        from avbridge.world import events
    except Exception:  # noqa: BLE001 - the demo still runs without event scoring
        return None
    return events


def score_events(
    audio: media.Audio | None, video: media.Video | None, truth_times: list[float]
) -> dict[str, Any]:
    """Detected audio onsets / video events, and event-sync F1 (tolerance: one 8-fps frame)."""
    ev = _events_module()
    if ev is None:
        return {}
    out: dict[str, Any] = {}
    if audio is not None:
        out["audio_onsets"] = [round(t, 3) for t in ev.audio_onsets(audio)]
    if video is not None:
        out["video_events"] = [round(t, 3) for t in ev.video_events(video)]
    if truth_times and "audio_onsets" in out:
        out["sync_f1_audio_vs_truth"] = round(ev.event_f1(out["audio_onsets"], truth_times), 3)
    if not truth_times and "audio_onsets" in out and "video_events" in out:
        out["sync_f1_audio_vs_video"] = round(ev.event_f1(out["audio_onsets"], out["video_events"]), 3)
    return out


def _f1_text(scores: dict[str, Any]) -> str:
    for key, label in (
        ("sync_f1_audio_vs_truth", "event-sync F1 vs truth"),
        ("sync_f1_audio_vs_video", "audio-video event-sync F1"),
    ):
        if key in scores:
            return f"; {label} {scores[key]:.2f}"
    return ""


# ----------------------------------------------------------------------------- the run


def _say(msg: str, quiet: bool) -> None:
    if not quiet:
        print(f"avbridge demo: {msg}", file=sys.stderr)


def run_demo(
    out: str | Path,
    *,
    preset: str | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    quiet: bool = False,
    n_examples: int = 1,
) -> int:
    """Run the demo into folder ``out``; returns 0. See the module docstring for what it writes."""
    from avbridge import tasks
    from avbridge.apps.cli import ProgressBar
    from avbridge.models import loading as registry

    t_start = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        from avbridge.errors import AvbridgeError

        raise AvbridgeError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    if preset is None:
        preset = "world" if world_models_available() else "tiny-random"
        if preset == "tiny-random":
            _say(
                "the embedded world's trained models are not shipped in this install yet, so this "
                "demo uses TINY RANDOM models: the generated audio and video are NOISE; it shows the "
                "pipeline, not the method's quality",
                quiet,
            )
    elif preset == "tiny-random":
        _say("tiny random models: the generated audio and video are NOISE", quiet)
    n_steps = steps or DEMO_STEPS.get(preset, 10)

    examples = load_examples(n_examples)
    t0 = time.perf_counter()
    components = registry.load_components(preset, device=device, need=("audio", "video"), seed=seed)
    t_load = time.perf_counter() - t0
    _say(f"models: preset {preset} loaded in {t_load:.1f}s; {n_steps} denoising steps per run", quiet)

    summary: dict[str, Any] = {
        "preset": preset,
        "noise": preset == "tiny-random",
        "steps": n_steps,
        "seed": seed,
        "device": device,
        "load_s": round(t_load, 2),
        "runs": [],
    }
    rows: list[Row] = []
    bar = ProgressBar("demo", enabled=not quiet)

    def run(task: str, guided: bool, *args: Any, **kw: Any) -> Any:
        cfg = tasks.default_config(task, preset=preset, steps=n_steps)
        bar.desc = f"{task} ({'guided' if guided else 'vanilla'})"
        t = time.perf_counter()
        res = getattr(tasks, task)(
            *args, components, guided=guided, seed=seed, config=cfg, progress=bar, **kw
        )
        bar.close()
        return res, time.perf_counter() - t

    for ex in examples:
        events = list((ex.truth or {}).get("event_times", []))
        inp = media.write_output(out / f"{ex.name}_input.mp4", ex.video)
        if ex.truth is not None:
            with media.atomic_path(out / f"{ex.name}_truth.json") as tmp:
                tmp.write_text(json.dumps(ex.truth, indent=1) + "\n")
        sc_in = score_events(ex.video.audio, ex.video, events)
        rows.append(
            Row(
                f"{ex.name}: input ({ex.caption})",
                ex.video,
                ex.video.audio,
                events,
                audio_onsets=sc_in.get("audio_onsets", []),
                video_events=sc_in.get("video_events", []),
            )
        )
        files = {"input": inp.name}

        for guided in (True, False):
            mode = "guided" if guided else "vanilla"
            res, secs = run("v2a", guided, ex.video)
            video = media.mux_audio(media.Video(ex.video.frames, ex.video.fps), res.media)
            path = media.write_output(out / f"{ex.name}_v2a_{mode}.mp4", video)
            files[f"v2a_{mode}"] = path.name
            sc = score_events(video.audio, None, events)
            rows.append(
                Row(
                    f"V2A {mode}: input frames + generated audio (prompt {res.prompt!r}){_f1_text(sc)}",
                    video,
                    video.audio,
                    events,
                    audio_onsets=sc.get("audio_onsets", []),
                )
            )
            summary["runs"].append({**_run_info("v2a", mode, res, secs, path), **sc})
            _say(f"wrote {path} ({secs:.1f}s, binder loss {res.trace.final_loss:.3f}{_f1_text(sc)})", quiet)

        for guided in (True, False):
            mode = "guided" if guided else "vanilla (independent)"
            tag = "guided" if guided else "vanilla"
            res, secs = run("joint", guided, ex.caption, duration_s=min(DEMO_JOINT_S, ex.video.duration_s))
            path = media.write_output(out / f"{ex.name}_joint_{tag}.mp4", res.media)
            files[f"joint_{tag}"] = path.name
            sc = score_events(res.media.audio, res.media, [])
            rows.append(
                Row(
                    f"Joint {mode}: prompt {ex.caption!r}{_f1_text(sc)}",
                    res.media,
                    res.media.audio,
                    audio_onsets=sc.get("audio_onsets", []),
                    video_events=sc.get("video_events", []),
                )
            )
            summary["runs"].append({**_run_info("joint", tag, res, secs, path), **sc})
            _say(f"wrote {path} ({secs:.1f}s, binder loss {res.trace.final_loss:.3f}{_f1_text(sc)})", quiet)
        summary.setdefault("examples", []).append({"name": ex.name, "caption": ex.caption, "files": files})

    title = (
        f"avbridge demo, preset {preset}, {n_steps} steps, seed {seed} "
        "(single examples; `avbridge world bench` measures guided vs vanilla over many clips)"
    )
    if preset == "tiny-random":
        title += " - TINY RANDOM MODELS: outputs are noise"
    sheet = contact_sheet(rows, out / "contact_sheet.png", title)
    summary["total_s"] = round(time.perf_counter() - t_start, 2)
    with media.atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    _say(f"wrote {sheet} and {out / 'summary.json'}; total {summary['total_s']:.1f}s", quiet)
    return 0


def _run_info(task: str, mode: str, res: Any, secs: float, path: Path) -> dict[str, Any]:
    return {
        "task": task,
        "mode": mode,
        "file": path.name,
        "prompt": res.prompt,
        "seconds": round(secs, 2),
        "final_binder_loss": round(float(res.trace.final_loss), 5),
        "final_terms": {k: round(float(v), 5) for k, v in res.trace.final_terms.items()},
    }
