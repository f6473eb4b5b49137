"""``avbridge world bench``: what ``avbridge TASK`` ships, against vanilla, on held-out world clips.

For each test clip (``split_seeds("test", n)``) and each task, the same models, the same
generation seed and the same prompt policy run once per variant (:data:`VARIANTS`): by
default ``vanilla`` (no guidance) and ``shipped`` (guided with exactly the settings
``avbridge TASK`` uses with the world models: ``default_config(task, preset="world",
steps)``). Other variants (``pooled``, ``per-clip``: the shipped settings with the
per-clip loss forced off or on) run only when asked for. ``bench.json`` records every
variant's full resolved settings. Scores use only ground truth, plain signal processing
and the evaluation classifiers (``avbridge.world.evalmodels``), never the guidance binder:

- ``sync_f1``: event-sync F1 with a tolerance of one video frame (0.125 s). V2A: onsets of
  the generated audio vs the condition's true event times; A2V: motion events of the
  generated video vs the input audio's true event times; joint: generated video events vs
  generated audio onsets. (I2A/A2I have no timing.)
- ``class_acc``, ``colour_acc``, ``size_acc``: the evaluation classifier of the output's
  modality against the clip's truth (joint: against the prompt's truth, both outputs).
- ``label_agreement``: cosine in the evaluation models' label space between the output and
  the condition (joint: between the two outputs); the binder-space score by the
  evaluation models.
- ``av_align``: AV-Align (fixed version, ``avbridge.eval.av_align``) of the pair, when
  OpenCV and librosa are installed.

Every mean comes with a 95% bootstrap interval (2000 resamples, fixed seed).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from avbridge.errors import AvbridgeError
from avbridge.io.media import Audio, Image, Video
from avbridge.models.generators.base import SAMPLERS
from avbridge.world.events import audio_onsets, event_f1, video_events
from avbridge.world.scene import WORLD, WorldClip, render_clip, split_seeds

TASKS = ("v2a", "i2a", "a2v", "a2i", "joint")
TOL_S = 1.0 / WORLD.fps
METRICS = ("sync_f1", "class_acc", "colour_acc", "size_acc", "label_agreement", "av_align")
#: Variant name -> (guided, per_clip override or None = the shipped value).
VARIANTS: dict[str, tuple[bool, bool | None]] = {
    "vanilla": (False, False),
    "shipped": (True, None),
    "pooled": (True, False),
    "per-clip": (True, True),
}
#: What ``avbridge world bench`` runs without ``--variants``.
DEFAULT_VARIANTS = ("vanilla", "shipped")


def bootstrap_ci(values: list[float], n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval of ``values`` (nan if empty)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    if x.size == 1:
        return (float(x[0]), float(x[0]), float(x[0]))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def _av_align(video: Video, audio: Audio) -> float | None:
    """AV-Align (fixed version) of frames and audio, or None when its dependencies are missing."""
    try:
        from avbridge.eval.av_align import av_align_from_arrays, resample_like_librosa
    except Exception:  # noqa: BLE001 - the metric is optional
        return None
    try:
        y, _ = resample_like_librosa(audio.samples, audio.sample_rate)
        frames_bgr = [np.ascontiguousarray(f[..., ::-1]) for f in video.frames]
        return float(av_align_from_arrays(frames_bgr, float(video.fps), y, "fixed").score)
    except AvbridgeError:  # undefined (no peaks at all): report as missing, not as 0
        return None
    except ImportError:
        return None


def _truth_acc(pred_labels: dict[str, str], truth: dict[str, Any]) -> dict[str, float]:
    return {f"{h}_acc": float(pred_labels[h] == truth[h]) for h in ("class", "colour", "size")}


def score_output(task: str, clip: WorldClip, out: Audio | Video | Image, evalm: Any) -> dict[str, Any]:
    """All metrics of one generated output against its clip's truth (see the module doc)."""
    truth = clip.truth
    row: dict[str, Any] = {}

    def labels(p: Any) -> dict[str, str]:
        return {h: p.labels(h)[0] for h in ("class", "colour", "size")}

    from avbridge.world.evalmodels import label_agreement

    if task in ("v2a", "i2a"):
        assert isinstance(out, Audio)
        pa = evalm.predict_audio([out])
        row["pred"] = labels(pa)
        row.update(_truth_acc(row["pred"], truth))
        cond = clip.video if task == "v2a" else clip.image()
        row["label_agreement"] = float(label_agreement(pa, evalm.predict_video([cond]))[0])
        if task == "v2a":
            onsets = audio_onsets(out)
            row["events"] = onsets
            row["sync_f1"] = event_f1(onsets, truth["event_times"], TOL_S)
            row["av_align"] = _av_align(clip.video, out)
    elif task in ("a2v", "a2i"):
        pv = evalm.predict_video([out])
        row["pred"] = labels(pv)
        row.update(_truth_acc(row["pred"], truth))
        row["label_agreement"] = float(label_agreement(pv, evalm.predict_audio([clip.audio]))[0])
        if task == "a2v":
            assert isinstance(out, Video)
            ev = video_events(out)
            row["events"] = ev
            row["sync_f1"] = event_f1(ev, truth["event_times"], TOL_S)
            row["av_align"] = _av_align(out, clip.audio)
    elif task == "joint":
        assert isinstance(out, Video) and out.audio is not None
        pv, pa = evalm.predict_video([out]), evalm.predict_audio([out.audio])
        lv, la = labels(pv), labels(pa)
        row["pred"] = {"video": lv, "audio": la}
        # Both outputs must show the prompt's class/attributes: a hit needs both right.
        for h in ("class", "colour", "size"):
            row[f"{h}_acc"] = float(lv[h] == truth[h] and la[h] == truth[h])
        ev, on = video_events(out), audio_onsets(out.audio)
        row["events"] = {"video": ev, "audio": on}
        row["sync_f1"] = event_f1(ev, on, TOL_S)
        row["label_agreement"] = float(label_agreement(pv, pa)[0])
        row["av_align"] = _av_align(out, out.audio)
    else:
        raise AvbridgeError(f"unknown task {task!r}")
    return row


def _runner(task: str) -> Callable[..., Any]:
    from avbridge import tasks as T

    def v2a(clip: WorldClip, comps: Any, **kw: Any) -> Any:
        return T.v2a(Video(clip.video.frames, clip.video.fps, None), comps, **kw)

    def i2a(clip: WorldClip, comps: Any, **kw: Any) -> Any:
        return T.i2a(clip.image(), comps, duration_s=WORLD.duration_s, **kw)

    def a2v(clip: WorldClip, comps: Any, **kw: Any) -> Any:
        return T.a2v(clip.audio, comps, **kw)

    def a2i(clip: WorldClip, comps: Any, **kw: Any) -> Any:
        return T.a2i(clip.audio, comps, **kw)

    def joint(clip: WorldClip, comps: Any, **kw: Any) -> Any:
        return T.joint(clip.caption, comps, duration_s=WORLD.duration_s, **kw)

    return {"v2a": v2a, "i2a": i2a, "a2v": a2v, "a2i": a2i, "joint": joint}[task]


def variant_config(base: Any, variant: str) -> Any:
    """The AlignConfig of ``variant`` over the task's shipped settings ``base``."""
    if variant not in VARIANTS:
        raise AvbridgeError(f"unknown variant {variant!r}: choose from {', '.join(VARIANTS)}")
    per_clip = VARIANTS[variant][1]
    return base if per_clip is None else replace(base, per_clip=per_clip)


def settings_record(config: Any) -> dict[str, Any]:
    """Every AlignConfig field of ``config`` as JSON-safe values (tuples become lists)."""
    return json.loads(json.dumps(asdict(config), default=str))


def run_one(task: str, clip: WorldClip, components: Any, evalm: Any, *, guided: bool, config: Any,
            gen_seed: int, progress: Any = None) -> tuple[Any, dict[str, Any]]:
    """Generate one output of ``task`` for ``clip`` and score it: ``(TaskResult, row)``.

    The one code path of a bench row; ``avbridge demo`` calls it too, so the demo's figures
    are a bench run's on the same clips."""
    t1 = time.time()
    kw = {"progress": progress} if progress is not None else {}
    res = _runner(task)(clip, components, guided=guided, seed=gen_seed, config=config, **kw)
    row = {"task": task, "seed": clip.truth["seed"], "gen_seed": gen_seed, "prompt": res.prompt,
           "truth_events": clip.truth["event_times"], "wall_s": round(time.time() - t1, 2),
           "final_binder_loss": round(float(res.trace.final_loss), 5)}
    row.update(score_output(task, clip, res.media, evalm))
    return res, row


def run_bench(
    n: int = 100,
    tasks: tuple[str, ...] = TASKS,
    *,
    components: Any = None,
    evalmodels: Any = None,
    steps: int | None = None,
    variants: tuple[str, ...] | list[str] = DEFAULT_VARIANTS,
    seed: int = 0,
    device: str = "cpu",
    start: int = 0,
    split: str = "test",
    overrides: dict[str, Any] | None = None,
    binder: str | None = None,
    audio_model: str | None = None,
    video_model: str | None = None,
    preset: str = "world",
    sampler: str = "ddim",
    guidance_decoder: str | None = None,
    guidance_encoder: str | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run the bench; returns ``{"config", "settings": {task: {variant: {field: value}}},
    "summary": {task: {variant: {metric: [mean, lo, hi]}}}, "rows": [...]}``.
    ``components`` defaults to ``load_components("world")``.

    ``variants`` names the runs per clip (:data:`VARIANTS`; default vanilla and shipped).
    Every variant starts from the task's shipped settings, ``default_config(task,
    preset="world", steps=steps)``, with ``overrides`` (AlignConfig fields) on top.
    ``split`` is ``"test"`` for reported figures; ``"val"`` is for choosing settings
    (``python -m training.world.tune_guidance``), so the test clips never steer a choice.
    Clip ``i`` of the run (test seed ``start + i``) is generated with seed ``seed + i``.
    ``binder`` replaces the world binder by another folder (e.g. a retrained one), for every
    variant; ``audio_model`` and ``video_model`` likewise replace the world's AudioLDM or
    AnimateDiff folder (the video one also serves the image tasks). All three are ignored
    when ``components`` is given, as is ``sampler`` (the loaded generators' sampler, whose
    tuned settings the shipped variant then uses). ``guidance_decoder`` (``"auto"`` or
    folders, as ``--guidance-decoder``) loads guidance decoders and switches them on in the
    guided variants; ``overrides`` asking for them with none loaded is an error;
    ``guidance_encoder`` (``"auto"`` or a folder, as ``--guidance-encoder``) likewise for the
    binder's audio guidance encoder. ``preset``
    names whose settings ``shipped`` runs (tests pass "tiny-random" with tiny components; the
    world's for every reported figure).
    """
    from avbridge.world.evalmodels import EvalModels

    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise AvbridgeError(f"unknown task(s) {', '.join(bad)}: choose from {', '.join(TASKS)}")
    if n < 1:
        raise AvbridgeError(f"--n must be at least 1, got {n}")
    if split not in ("val", "test"):
        raise AvbridgeError(f"split must be 'val' or 'test', got {split!r}")
    variants = tuple(variants)
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise AvbridgeError(f"unknown variant(s) {', '.join(bad) or '(none given)'}: "
                            f"choose from {', '.join(VARIANTS)}")
    from avbridge.tasks import TASKS as TASK_TABLE

    need = sorted({g for t in tasks for g in TASK_TABLE[t].needs})
    if components is None:
        from avbridge.loading import load_components

        components = load_components("world", device=device, need=need, binder=binder,
                                     audio_model=audio_model, video_model=video_model, sampler=sampler,
                                     guidance_decoder=guidance_decoder, guidance_encoder=guidance_encoder)
    if guidance_decoder:
        overrides = {**(overrides or {}), "guidance_decoder": True}
    if (overrides or {}).get("guidance_decoder"):
        if not any(getattr(getattr(components, g, None), "guidance_decoder", None) is not None for g in need):
            raise AvbridgeError("guidance_decoder=true but no guidance decoder is loaded "
                                "(--guidance-decoder auto or DIR)")
    if guidance_encoder:
        overrides = {**(overrides or {}), "guidance_encoder": True}
    if (overrides or {}).get("guidance_encoder") and \
            getattr(components.binder, "guidance_encoder", None) is None:
        raise AvbridgeError("guidance_encoder=true but the binder has no guidance encoder "
                            "(--guidance-encoder auto or DIR)")
    evalm = evalmodels if evalmodels is not None else EvalModels.load()
    seeds = split_seeds(split, n, start=start)  # type: ignore[arg-type]
    rows: list[dict[str, Any]] = []
    settings: dict[str, dict[str, Any]] = {}
    t0 = time.time()
    sampler = components_sampler(components)
    for task in tasks:
        base = shipped_config(task, steps, preset, sampler=sampler)
        if overrides:
            base = replace(base, **overrides)
        configs = {v: variant_config(base, v) for v in variants}
        settings[task] = {v: settings_record(c) for v, c in configs.items()}
        for i, s in enumerate(seeds):
            clip = render_clip(s)
            for name in variants:
                _, row = run_one(task, clip, components, evalm, guided=VARIANTS[name][0],
                                 config=configs[name], gen_seed=seed + i)
                rows.append({"variant": name, **row})
            if log is not None:
                done = [r for r in rows if r["task"] == task and r["seed"] == s]
                msg = "  ".join(f"{r['variant']}: sync {r.get('sync_f1', float('nan')):.2f} "
                                f"class {r['class_acc']:.0f}" for r in done)
                log(f"[{task} {i + 1}/{n}] seed {s} {clip.truth['class']}: {msg} ({time.time() - t0:.0f} s)")
    summary: dict[str, Any] = {}
    for task in tasks:
        summary[task] = {}
        for name in variants:
            sel = [r for r in rows if r["task"] == task and r["variant"] == name]
            summary[task][name] = {
                m: list(bootstrap_ci([r[m] for r in sel if r.get(m) is not None]))
                for m in METRICS if any(r.get(m) is not None for r in sel)
            }
            summary[task][name]["n"] = len(sel)
    config = {"n": n, "tasks": list(tasks), "steps": steps, "sampler": sampler, "variants": list(variants),
              "seed": seed, "device": device, "split": split, "seeds": [seeds[0], seeds[-1]],
              "overrides": overrides or {}, "binder": binder, "audio_model": audio_model,
              "video_model": video_model, "guidance_decoder": guidance_decoder,
              "guidance_encoder": guidance_encoder, "preset": preset,
              "tolerance_s": TOL_S,
              "wall_s": round(time.time() - t0, 1)}
    return {"config": config, "settings": settings, "summary": summary, "rows": rows}


def shipped_config(task: str, steps: int | None = None, preset: str = "world", sampler: str = "ddim") -> Any:
    """The settings ``avbridge TASK --preset PRESET [--sampler S]`` runs (the preset's resolved ones)."""
    from avbridge.presets import default_config

    return default_config(task, preset=preset, steps=steps, sampler=sampler)


def components_sampler(components: Any) -> str:
    """The sampler the components' generators step with ("ddim" when they do not say)."""
    gens = [getattr(components, k, None) for k in ("audio", "video", "image")]
    names = {getattr(g, "sampler", "ddim") for g in gens if g is not None}
    if len(names) > 1:
        raise AvbridgeError(f"the generators step with different samplers: {', '.join(sorted(names))}")
    return names.pop() if names else "ddim"


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table: one line per task and variant, mean [95% CI] per metric."""
    head = f"{'task':6} {'variant':16} " + " ".join(f"{m:>22}" for m in METRICS)
    lines = [head, "-" * len(head)]
    for task, by in result["summary"].items():
        for name, ms in by.items():
            cells = []
            for m in METRICS:
                if m in ms and not math.isnan(ms[m][0]):
                    mean, lo, hi = ms[m]
                    cells.append(f"{mean:6.3f} [{lo:5.3f},{hi:5.3f}]")
                else:
                    cells.append("-")
            lines.append(f"{task:6} {name:16} " + " ".join(f"{c:>22}" for c in cells))
    return "\n".join(lines)


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``avbridge world bench``."""
    p.add_argument("--n", type=int, default=100, help="held-out clips per task")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the task's)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), metavar="LIST",
                   help="comma-separated runs per clip: vanilla (no guidance), shipped (the settings "
                   "`avbridge TASK` uses with the world models), pooled / per-clip (shipped with the "
                   "per-clip loss forced off / on)")
    p.add_argument("--per-clip", action="store_true",
                   help="shorthand: add the pooled and per-clip variants to --variants")
    p.add_argument("--seed", type=int, default=0, help="generation seed of the first clip (+i per clip)")
    p.add_argument("--start", type=int, default=0, help="offset of the first test seed")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--sampler", choices=SAMPLERS, default="ddim",
                   help="denoising sampler (the shipped settings follow it, see guidance.json)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="held-out clips to run on: test (reported figures) or val (trying settings)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                   help="replace an AlignConfig field of the shipped settings in every variant, e.g. "
                   "--set update=norm-grad --set lr=0.3 (repeatable; guidance fields change the guided "
                   "runs only; per_clip is set by the variant, see --variants)")
    p.add_argument("--binder", default=None, metavar="DIR",
                   help="use this binder folder instead of the world's (a retrained one; for every variant)")
    p.add_argument("--audio-model", default=None, metavar="DIR",
                   help="use this AudioLDM folder instead of the world's (a retrained one; every variant)")
    p.add_argument("--video-model", default=None, metavar="DIR",
                   help="use this AnimateDiff folder instead of the world's (also for the image tasks)")
    p.add_argument("--guidance-decoder", nargs="?", const="auto", default=None, metavar="auto|DIR",
                   help="guided variants decode for the binder with guidance decoders: 'auto' (the "
                   "world's shipped ones, the default when given bare) or folders (comma-separated)")
    p.add_argument("--guidance-encoder", nargs="?", const="auto", default=None, metavar="auto|DIR",
                   help="guided variants embed the generated audio with the binder's audio guidance encoder: "
                   "'auto' (the world's shipped one, the default when given bare) or a folder")
    p.add_argument("--out", default="out/world-bench", metavar="DIR", help="folder for bench.json")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.3", "update=norm-grad"]`` -> AlignConfig field values of the fields' own types.

    Only plain fields (numbers, booleans, strings), the ``window`` pair (``window=0:1``,
    start and stop split by a colon) and the loss weights (``weights.at=2``: the named
    terms, the others at 1) can be set; an unknown field or a value of the wrong
    type is an AvbridgeError naming it."""
    from avbridge.align import AlignConfig

    defaults = AlignConfig()
    names = {f.name for f in fields(AlignConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if key.startswith("weights.") and sep:
            try:
                out.setdefault("weights", {})[key.removeprefix("weights.")] = float(raw)
            except ValueError:
                raise AvbridgeError(f"--set {item!r}: {raw!r} is not a float") from None
            continue
        if not sep or key not in names:
            known = ", ".join(sorted(names))
            raise AvbridgeError(f"--set {item!r}: expected FIELD=VALUE, FIELD one of {known}")
        if key == "per_clip":
            raise AvbridgeError("--set per_clip: each variant sets it; use --variants pooled,per-clip "
                                "(or --per-clip)")
        cur = getattr(defaults, key)
        try:
            if isinstance(cur, bool):
                if raw.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(raw)
                val: Any = raw.lower() in ("true", "1")
            elif isinstance(cur, int):
                val = int(raw)
            elif isinstance(cur, float):
                val = float(raw)
            elif isinstance(cur, tuple):
                parts = raw.split(":")
                if len(parts) != len(cur):
                    raise ValueError(raw)
                val = tuple(float(v) for v in parts)
            elif isinstance(cur, str) or cur is None:
                val = None if raw.lower() == "none" else raw
            else:
                raise AvbridgeError(f"--set {key}: a {type(cur).__name__} field cannot be set here "
                                "(loss weights: --set weights.at=2)")
        except ValueError:
            kind = "START:STOP pair of numbers" if isinstance(cur, tuple) else type(cur).__name__
            raise AvbridgeError(f"--set {item!r}: {raw!r} is not a {kind}") from None
        out[key] = val
    try:
        replace(defaults, **out)
    except (TypeError, ValueError) as e:
        raise AvbridgeError(f"--set: {e}") from None
    return out


def run_from_args(args: argparse.Namespace) -> int:
    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.per_clip:
        variants += [v for v in ("pooled", "per-clip") if v not in variants]
    result = run_bench(args.n, tasks, steps=args.steps, variants=variants, seed=args.seed,
                       device=args.device, start=args.start, split=args.split,
                       overrides=parse_overrides(args.overrides), binder=args.binder,
                       audio_model=args.audio_model, video_model=args.video_model, sampler=args.sampler,
                       guidance_decoder=args.guidance_decoder, guidance_encoder=args.guidance_encoder,
                       log=lambda s: print(s, file=sys.stderr, flush=True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    print(format_table(result))
    print(f"\nwrote {out / 'bench.json'}")
    return 0
