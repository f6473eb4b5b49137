"""``avbridge demo``: the shipped settings, guided and vanilla, on bundled held-out examples.

For each demo example (:func:`demo_seeds`: a fixed rule, not a pick by result) and each
task (V2A and A2V by default), the demo runs what ``avbridge TASK`` ships (the preset's
resolved settings at the task's own step count) guided, and the same models and seed
vanilla. Every run goes through :func:`avbridge.world.bench.run_one`, the bench's own
code path, so each figure here is the one ``avbridge world bench`` reports for that clip
(the command that reproduces it is in ``summary.json``). Written into the output folder:
playable mp4 files (input, each task's guided and vanilla output), the ground truth as
JSON, a ``contact_sheet.png`` (frames, spectrograms, true and detected event times, each
run's figures) and ``summary.json`` (settings, per-example figures, means, timings).

The models are the embedded world's when shipped in the package, else tiny random ones,
and the demo says so plainly: tiny random models produce noise. Four examples are too
few to measure anything; ``avbridge world bench`` is the measurement.
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

#: Examples per demo run.
N_EXAMPLES = 4
#: Tasks the demo runs by default (each takes ~1-2 minutes per example on 2 CPU cores).
DEMO_TASKS = ("v2a", "a2v")
#: The line that says where the real measurement is.
BENCH_LINE = (
    "the measurement is `avbridge world bench` (100 held-out clips, 95% intervals); "
    "a few demo examples show the method, they do not measure it"
)


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
    from avbridge.presets import world_models_missing

    return not world_models_missing()


def bundled_examples_dir() -> Path:
    """The folder of the bundled example clips (``world-SEED.mp4`` + ``world-SEED.json``)."""
    return Path(__file__).resolve().parents[1] / "world" / "examples"


def demo_seeds(n: int = N_EXAMPLES) -> list[int]:
    """The demo's clips, by a rule fixed before any result was seen: the first ``n`` bundled
    test-split examples by seed (then the next test seeds if fewer are bundled)."""
    from avbridge.world.scene import seed_split, split_seeds

    bundled = []
    for js in bundled_examples_dir().glob("world-*.json"):
        seed = json.loads(js.read_text()).get("seed")
        if isinstance(seed, int) and seed_split(seed) == "test":
            bundled.append(seed)
    seeds = sorted(bundled)[:n]
    for s in split_seeds("test", n + len(seeds)):
        if len(seeds) >= n:
            break
        if s not in seeds:
            seeds.append(s)
    return sorted(seeds)


def split_index(seed: int) -> int:
    """A test clip's index inside the test split (its ``--start`` in ``avbridge world bench``)."""
    from avbridge.world.scene import SPLIT_RANGES

    return seed - SPLIT_RANGES["test"][0]


def bench_command(task: str, seed: int, gen_seed: int, steps: int | None) -> str:
    """The ``avbridge world bench`` command whose rows for this clip are the demo's figures."""
    cmd = f"avbridge world bench --tasks {task} --start {split_index(seed)} --n 1 --seed {gen_seed}"
    return cmd + (f" --steps {steps}" if steps is not None else "")


# ----------------------------------------------------------------------------- contact sheet


def frame_strip(video: media.Video, n: int = 8) -> np.ndarray:
    """``n`` frames evenly spread over the video, side by side (H, n*W, 3)."""
    idx = np.linspace(0, len(video.frames) - 1, n).round().astype(int)
    return np.concatenate([video.frames[i] for i in idx], axis=1)


def spectrogram_db(audio: media.Audio) -> tuple[np.ndarray, float]:
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

    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 1.9 * len(rows) + 0.9), squeeze=False)
    for r, row in enumerate(rows):
        ax_v, ax_a = axes[r]
        dur = row.video.duration_s if row.video is not None else (row.audio.duration_s if row.audio else 1.0)
        if row.video is not None:
            ax_v.imshow(frame_strip(row.video), extent=(0, dur, 0, 1), aspect="auto")
        else:
            ax_v.text(0.5, 0.5, "(no video)", ha="center", va="center", transform=ax_v.transAxes)
        if row.audio is not None:
            db, top = spectrogram_db(row.audio)
            ax_a.imshow(db, origin="lower", aspect="auto", extent=(0, row.audio.duration_s, 0, top / 1000),
                        cmap="magma", vmin=db.max() - 80, vmax=db.max())
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
        ax_a.set_title("spectrogram (dashed: true event times; green ticks: detected events)",
                       fontsize=8, loc="left")
        if r == len(rows) - 1:
            ax_v.set_xlabel("time (s)", fontsize=7)
            ax_a.set_xlabel("time (s)", fontsize=7)
    height = 1.9 * len(rows) + 0.9
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / height)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.16 * (title.count("\n") + 1) + 0.05) / height))
    with media.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- scoring


def _fmt(x: Any, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def mean_figures(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{task: {variant: {"sync_f1": mean, "class_acc": mean, "n": count}}}`` over ``runs``."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        out.setdefault(r["task"], {}).setdefault(r["variant"], {})
    for task, by in out.items():
        for variant in by:
            sel = [r for r in runs if r["task"] == task and r["variant"] == variant]
            by[variant] = {m: round(float(np.mean([r[m] for r in sel])), 3)
                           for m in ("sync_f1", "class_acc") if all(r.get(m) is not None for r in sel)}
            by[variant]["n"] = len(sel)
    return out


def format_table(runs: list[dict[str, Any]], means: dict[str, Any]) -> str:
    """Per-example figures, then the means of guided (shipped) vs vanilla."""
    head = (f"{'example':14} {'task':5} {'variant':8} {'sync F1':>7} {'class':>9} "
            f"{'events (true)':>14} {'loss':>6}")
    lines = [head, "-" * len(head)]
    for r in runs:
        pred = r.get("pred", {}).get("class") if isinstance(r.get("pred"), dict) else None
        cls = "-" if r.get("class_acc") is None else f"{'ok' if r['class_acc'] else 'no'} {pred or ''}"
        ev = r.get("events", [])
        ev_text = f"{len(ev) if isinstance(ev, list) else '-'} ({len(r['truth_events'])})"
        lines.append(f"{r['example']:14} {r['task']:5} {r['variant']:8} {_fmt(r.get('sync_f1')):>7} "
                     f"{cls:>9} {ev_text:>14} {_fmt(r.get('final_binder_loss'), '.3f'):>6}")
    lines.append("")
    for task, by in means.items():
        cells = [f"{v} sync F1 {_fmt(m.get('sync_f1'))} class {_fmt(m.get('class_acc'))}"
                 for v, m in by.items()]
        lines.append(f"mean over {next(iter(by.values()))['n']} examples, {task}: " + "; ".join(cells))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the run


#: Per-process state of the demo's worker processes (``workers > 1``).
_WORKER: dict[str, Any] = {}


def _worker_init(preset: str, device: str, need: list[str], seed: int) -> None:
    """Load the models once in a worker process, on one torch thread."""
    import torch

    from avbridge import loading
    from avbridge.world.evalmodels import EvalModels

    torch.set_num_threads(1)
    _WORKER["components"] = loading.load_components(preset, device=device, need=need, seed=seed)
    _WORKER["evalmodels"] = EvalModels.load()


def _worker_run(job: tuple[int, str, bool, Any, int]) -> tuple[Any, dict[str, Any]]:
    """One demo run in a worker: (clip seed, task, guided, config, generation seed) -> (media, row)."""
    from avbridge.world import bench
    from avbridge.world.scene import render_clip

    seed_i, task, guided, config, gen_seed = job
    res, row = bench.run_one(task, render_clip(seed_i), _WORKER["components"], _WORKER["evalmodels"],
                             guided=guided, config=config, gen_seed=gen_seed)
    return res.media, row


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
    n_examples: int = N_EXAMPLES,
    tasks: tuple[str, ...] = DEMO_TASKS,
    progress: Any = None,
    evalmodels: Any = None,
    workers: int = 1,
) -> int:
    """Run the demo into folder ``out``; returns 0. See the module docstring for what it writes.

    ``steps`` replaces the tasks' own step counts (tests; the figures are then no longer the
    shipped settings'). ``seed`` is added to each clip's generation seed (its index in the
    test split, as in the bench) and seeds the tiny random models. ``progress`` is a
    ``progress(step, total, info)`` callable (e.g. the CLI's bar); ``evalmodels`` replaces
    the shipped evaluation classifiers. ``workers > 1`` spreads the runs over that many
    processes with one torch thread each (the figures are then those of
    ``OMP_NUM_THREADS=1 avbridge world bench``; ``progress`` and ``evalmodels`` are not used
    there)."""
    import torch

    from avbridge import loading
    from avbridge.errors import AvbridgeError
    from avbridge.tasks import TASKS as TASK_TABLE
    from avbridge.world import bench
    from avbridge.world.evalmodels import EvalModels
    from avbridge.world.scene import render_clip

    t_start = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AvbridgeError(f"{out}: exists and is not a folder")
    bad = [t for t in tasks if t not in ("v2a", "a2v", "joint")]
    if bad or not tasks:
        raise AvbridgeError(f"demo tasks must be among v2a, a2v, joint; got {', '.join(bad) or 'none'}")
    out.mkdir(parents=True, exist_ok=True)
    if preset is None:
        preset = "world" if world_models_available() else "tiny-random"
        if preset == "tiny-random":
            _say("the embedded world's trained models are not shipped in this install, so this demo "
                 "uses TINY RANDOM models: the generated audio and video are NOISE; it shows the "
                 "pipeline, not the method's quality", False)
    elif preset == "tiny-random":
        _say("tiny random models: the generated audio and video are NOISE", False)

    seeds = demo_seeds(n_examples)
    need = sorted({g for t in tasks for g in TASK_TABLE[t].needs})
    t0 = time.perf_counter()
    pool = None
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(preset, device, need, seed))
    else:
        components = loading.load_components(preset, device=device, need=need, seed=seed)
        evalm = evalmodels if evalmodels is not None else EvalModels.load()
    t_load = time.perf_counter() - t0
    # what `avbridge TASK --preset PRESET` runs (the same resolver as the CLI and the bench)
    configs = {t: bench.shipped_config(t, steps, preset) for t in tasks}
    variant_cfg = {t: {v: bench.variant_config(c, v) for v in ("shipped", "vanilla")}
                   for t, c in configs.items()}
    _say(f"models: preset {preset} loaded in {t_load:.1f}s; examples {', '.join(map(str, seeds))}; "
         + ", ".join(f"{t} {c.steps} steps" for t, c in configs.items())
         + ("" if steps is None else " (--steps: NOT the shipped step counts)"), quiet)

    rows: list[Row] = []
    runs: list[dict[str, Any]] = []
    examples: list[dict[str, Any]] = []
    futures: dict[tuple[int, str, str], Any] = {}
    if pool is not None:  # submit every run at once; results are taken in the demo's order
        for seed_i in seeds:
            for task in tasks:
                for variant in ("shipped", "vanilla"):
                    job = (seed_i, task, variant == "shipped", variant_cfg[task][variant],
                           split_index(seed_i) + seed)
                    futures[(seed_i, task, variant)] = pool.submit(_worker_run, job)
    for seed_i in seeds:
        clip = render_clip(seed_i)
        name = f"world-{seed_i}"
        gen_seed = split_index(seed_i) + seed
        truth_t = list(clip.truth["event_times"])
        files = {"input": media.write_output(out / f"{name}_input.mp4", clip.video).name}
        with media.atomic_path(out / f"{name}_truth.json") as tmp:
            tmp.write_text(json.dumps(clip.truth, indent=1) + "\n")
        rows.append(Row(f"{name}: input ({clip.caption}); {len(truth_t)} true events", clip.video,
                        clip.audio, truth_t))
        for task in tasks:
            for variant in ("shipped", "vanilla"):
                if progress is not None and hasattr(progress, "desc"):
                    progress.desc = f"{name} {task} {variant}"
                guided = variant == "shipped"
                if pool is not None:
                    out_media, row = futures[(seed_i, task, variant)].result()
                else:
                    res, row = bench.run_one(task, clip, components, evalm, guided=guided,
                                             config=variant_cfg[task][variant], gen_seed=gen_seed,
                                             progress=progress)
                    out_media = res.media
                if progress is not None and hasattr(progress, "close"):
                    progress.close()
                if task == "v2a":
                    video = media.mux_audio(media.Video(clip.video.frames, clip.video.fps), out_media)
                else:
                    video = out_media
                path = media.write_output(out / f"{name}_{task}_{variant}.mp4", video)
                files[f"{task}_{variant}"] = path.name
                row = {"example": name, "variant": variant, **row, "file": path.name,
                       "bench_command": ("OMP_NUM_THREADS=1 " if pool is not None else "")
                       + bench_command(task, seed_i, gen_seed, steps)}
                runs.append(row)
                ev = row.get("events", [])
                ev_audio = ev if task == "v2a" else (ev.get("audio", []) if isinstance(ev, dict) else [])
                ev_video = ev if task == "a2v" else (ev.get("video", []) if isinstance(ev, dict) else [])
                label = "guided (shipped)" if guided else "vanilla"
                cls = row.get("class_acc")
                rows.append(Row(
                    f"{task.upper()} {label}: sync F1 {_fmt(row.get('sync_f1'))}, "
                    f"class {'-' if cls is None else ('right' if cls else 'wrong')}, "
                    f"{len(ev_audio or ev_video)} events detected, "
                    f"binder loss {row['final_binder_loss']:.3f}",
                    video, video.audio, truth_t if task != "joint" else [],
                    audio_onsets=list(ev_audio), video_events=list(ev_video)))
                _say(f"{name} {task} {variant}: sync F1 {_fmt(row.get('sync_f1'))}, class "
                     f"{_fmt(cls, '.0f')} ({row['wall_s']:.1f}s)", quiet)
        examples.append({"name": name, "seed": seed_i, "caption": clip.caption, "gen_seed": gen_seed,
                         "files": files})

    if pool is not None:
        pool.shutdown()
    means = mean_figures(runs)
    mean_lines = [
        f"mean over {len(seeds)} examples, {t.upper()}: sync F1 {_fmt(by.get('shipped', {}).get('sync_f1'))} "
        f"guided vs {_fmt(by.get('vanilla', {}).get('sync_f1'))} vanilla; class "
        f"{_fmt(by.get('shipped', {}).get('class_acc'))} vs {_fmt(by.get('vanilla', {}).get('class_acc'))}"
        for t, by in means.items()]
    title = "\n".join([
        f"avbridge demo: preset {preset}, shipped settings ("
        + ", ".join(f"{t} {c.steps} steps" for t, c in configs.items())
        + f"), {len(seeds)} held-out examples (seeds {', '.join(map(str, seeds))})",
        *mean_lines, BENCH_LINE])
    if preset == "tiny-random":
        title = "TINY RANDOM MODELS: the outputs are noise\n" + title
    sheet = contact_sheet(rows, out / "contact_sheet.png", title)
    summary: dict[str, Any] = {
        "preset": preset,
        "noise": preset == "tiny-random",
        "shipped_steps": steps is None,
        "example_rule": "the first bundled test-split examples by seed (avbridge.apps.demo.demo_seeds)",
        "seeds": seeds,
        "tasks": list(tasks),
        "settings": {t: {v: bench.settings_record(c) for v, c in by.items()}
                     for t, by in variant_cfg.items()},
        "device": device,
        "torch_threads": 1 if pool is not None else torch.get_num_threads(),
        "workers": workers,
        "load_s": round(t_load, 2),
        "examples": examples,
        "runs": runs,
        "means": means,
        "measurement": BENCH_LINE,
        "total_s": round(time.perf_counter() - t_start, 2),
    }
    with media.atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(format_table(runs, means))
    print(BENCH_LINE)
    _say(f"wrote {sheet} and {out / 'summary.json'}; total {summary['total_s']:.1f}s", quiet)
    return 0
