"""Choose the world models' guidance settings on the **validation** split.

For each task, runs the world bench on ``--n`` validation clips (never the test clips that
``avbridge world bench`` reports on) for every learning rate of the grid, with the plain
and the per-clip loss, prints mean [95% CI] of sync F1 and class accuracy, and picks the
setting with the highest ``sync_f1 + class_acc`` (class accuracy alone for I2A/A2I);
``--pick targets`` instead takes the best sync among the settings that beat vanilla's sync
by 0.15 without losing class on the same clips (how A2V's 25-step setting was picked).
``--write`` stores the picks in the models' ``guidance.json``, which
``avbridge.presets.default_config(task, preset="world")`` then uses.

    python -m training.world.tune_guidance --tasks v2a,a2v --n 30 --steps 10 --write
    python -m training.world.tune_guidance --tasks v2a --n 50 --grid lr=0.1,0.2,0.3 \
        --grid mel_grad=full,envelope --write

``--write --from-steps`` stores the picks for runs of ``--steps`` steps or more instead
(``from_steps`` in guidance.json): more steps mean more guided updates, which want a
smaller step.

``--grid FIELD=V1,V2,...`` (repeatable) tries every combination of these values of
``AlignConfig`` fields, ``lr`` replacing the tasks' own learning-rate grids; ``--set
FIELD=VALUE`` (repeatable, as in ``avbridge world bench``) fixes a field for every
guided run. Both are stored with the picks. ``--per-clip-only`` halves a sweep's cost
where the pooled loss is not in question.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from pathlib import Path

GRID = {"v2a": [0.1, 0.3, 1.0], "i2a": [0.1, 0.3, 1.0], "a2v": [0.01, 0.03, 0.1],
        "a2i": [0.01, 0.03, 0.1], "joint": [None]}


NOTE = ("AlignConfig fields of the world models per task, over the paper's settings "
        "(avbridge.presets.resolve_settings); from_steps: the fields for runs of at least that many "
        "steps, applied over the task's base ones; samplers: per sampler other than DDIM, a from_steps "
        "applied over those when a run uses it. Chosen on validation clips only, never the test clips "
        "the bench reports on; validation figures and the settings compared: docs/results/2026-12-07.md")
SYNC_GAIN = 0.15  # the floor for V2A/A2V: guided sync F1 over vanilla's


def score(summary: dict) -> float:
    s = summary["class_acc"][0]
    return s + summary["sync_f1"][0] if "sync_f1" in summary else s


def meets_targets(summary: dict, vanilla: dict, task: str) -> bool:
    """The issue's targets on these clips: class at least vanilla's and 0.8; sync F1 above
    vanilla's, by at least SYNC_GAIN for V2A and A2V."""
    if summary["class_acc"][0] < max(vanilla["class_acc"][0], 0.8):
        return False
    if "sync_f1" not in summary:
        return True
    gain = summary["sync_f1"][0] - vanilla["sync_f1"][0]
    return gain >= SYNC_GAIN if task in ("v2a", "a2v") else gain > 0


def pick_best(guided: list[dict], vanilla: dict | None, rule: str, task: str) -> dict:
    """``rule="sum"``: the best sync F1 + class accuracy (class alone without sync).
    ``"targets"``: among the settings that meet the issue's targets against ``vanilla``,
    the best sync F1 (class for the image tasks); none meets them: as ``"sum"``."""
    if rule == "targets" and vanilla is not None:
        ok = [r for r in guided if meets_targets(r["summary"], vanilla, task)]
        if ok:
            key = "sync_f1" if "sync_f1" in ok[0]["summary"] else "class_acc"
            return max(ok, key=lambda r: r["summary"][key][0])
    return max(guided, key=lambda r: score(r["summary"]))


def main(argv: list[str] | None = None) -> int:
    from avbridge.errors import AvbridgeError
    from avbridge.loading import load_components
    from avbridge.models.generators.base import SAMPLERS
    from avbridge.presets import world_models_dir
    from avbridge.tasks import TASKS
    from avbridge.world.bench import parse_overrides, run_bench
    from avbridge.world.evalmodels import EvalModels

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="v2a,a2v")
    p.add_argument("--n", type=int, default=30, help="validation clips per setting")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--sampler", choices=SAMPLERS, default="ddim",
                   help="denoising sampler; --write stores a non-DDIM pick under the task's "
                        "samplers.SAMPLER.from_steps.STEPS in guidance.json")
    p.add_argument("--out", type=Path, default=Path("runs/tune-guidance.json"))
    p.add_argument("--write", action="store_true", help="merge the picks into models/guidance.json")
    p.add_argument("--from-steps", action="store_true",
                   help="with --write: store the picks as the task's settings for runs of --steps steps or "
                        "more (guidance.json's from_steps), keeping its base settings")
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                   help="values of an AlignConfig field to try (repeatable: every combination; "
                        "lr replaces the tasks' own grids)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="fix an AlignConfig field for every guided run (repeatable)")
    p.add_argument("--start", type=int, default=0, help="offset of the first validation seed")
    p.add_argument("--seed", type=int, default=0, help="generation seed of the first clip (+i per clip)")
    p.add_argument("--audio-model", default=None, metavar="DIR",
                   help="tune for this AudioLDM folder instead of the world's (a retrained one)")
    p.add_argument("--video-model", default=None, metavar="DIR",
                   help="tune for this AnimateDiff folder instead of the world's")
    p.add_argument("--pick", choices=("sum", "targets"), default="sum",
                   help="sum: the best sync F1 + class accuracy; targets: the best sync F1 among the "
                        "settings that meet the issue's targets against vanilla on these clips "
                        "(sync gain >= 0.15 for V2A/A2V, class >= vanilla's and 0.8), else as sum")
    p.add_argument("--per-clip-only", action="store_true",
                   help="V2A/A2V/joint: try the per-clip loss only (no pooled-loss runs)")
    args = p.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    try:
        fixed = parse_overrides(args.sets)
        axes = []  # one list of {field: value} per --grid field
    except AvbridgeError as e:
        p.error(str(e))
    for item in args.grid:
        field, _, values = item.partition("=")
        try:
            axes.append([parse_overrides([f"{field}={v}"]) for v in values.split(",")])
        except AvbridgeError as e:
            p.error(f"--grid {item!r}: {e}")

    def settings(task: str) -> list[dict]:
        """Every combination: the task's lr grid (unless --grid lr) x the --grid fields."""
        combos = [{}] if any("lr" in a[0] for a in axes) else [
            {} if lr is None else {"lr": lr} for lr in GRID[task]]
        for axis in axes:
            combos = [{**c, **v} for c in combos for v in axis]
        return combos

    need = sorted({g for t in tasks for g in TASKS[t].needs})
    comps = load_components("world", need=need, audio_model=args.audio_model,
                            video_model=args.video_model, sampler=args.sampler)
    evalm = EvalModels.load()
    results: dict = {}
    picks: dict = {}
    t0 = time.time()
    for task in tasks:
        results[task] = []
        for j, setting in enumerate(settings(task)):
            runs = (("per-clip",) if args.per_clip_only else ("pooled", "per-clip")) \
                if task in ("v2a", "a2v", "joint") else ("pooled",)
            # vanilla does not depend on guidance settings: run it once
            r = run_bench(args.n, (task,), components=comps, evalmodels=evalm, steps=args.steps,
                          variants=(("vanilla",) if j == 0 else ()) + runs, split="val",
                          start=args.start, seed=args.seed,
                          overrides={**fixed, **setting}, log=None)
            for variant, summ in r["summary"][task].items():
                row = {"setting": setting, "variant": variant, "summary": summ}
                results[task].append(row)
                fmt = "  ".join(f"{m} {v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]" for m, v in summ.items()
                                if m in ("sync_f1", "class_acc"))
                label = " ".join(f"{k}={v}" for k, v in setting.items()) or "defaults"
                print(f"{task} {label} {variant:16s} {fmt}  ({time.time() - t0:.0f} s)", flush=True)
        guided = [r for r in results[task] if r["variant"] != "vanilla"]
        vanilla = next((r["summary"] for r in results[task] if r["variant"] == "vanilla"), None)
        best = pick_best(guided, vanilla, args.pick, task)
        pick = {"per_clip": best["variant"] == "per-clip", **fixed, **best["setting"]}
        pick["_val"] = {m: round(v[0], 3) for m, v in best["summary"].items() if m != "n"}
        picks[task] = pick
        print(f"{task}: pick {pick}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"n": args.n, "steps": args.steps, "sampler": args.sampler,
                                    "start": args.start, "seed": args.seed, "audio_model": args.audio_model,
                                    "video_model": args.video_model, "results": results,
                                    "picks": picks}, indent=1) + "\n")
    if args.write:
        path = world_models_dir() / "guidance.json"
        with open(args.out.parent / "guidance.lock", "w") as lock:  # other tasks' tunings may run beside
            fcntl.flock(lock, fcntl.LOCK_EX)
            cur = json.loads(path.read_text()) if path.is_file() else {}
            cur["_note"] = NOTE
            from avbridge.world.scene import split_seeds

            val = split_seeds("val", args.n, start=args.start)
            for task, pick in picks.items():
                how = (f"chosen on validation clips {val[0]}-{val[-1]} at {args.steps} steps by "
                       f"training/world/tune_guidance.py (--pick {args.pick})")
                if args.sampler != "ddim":
                    how += f" with --sampler {args.sampler}"
                entry = {"_how": how, **{k: v for k, v in pick.items() if k != "_val"}}
                old = cur.get(task, {})
                if args.sampler != "ddim":
                    samplers = old.setdefault("samplers", {}).setdefault(args.sampler, {})
                    samplers.setdefault("from_steps", {})[str(args.steps)] = entry
                    cur[task] = old
                elif args.from_steps:
                    old.setdefault("from_steps", {})[str(args.steps)] = entry
                    cur[task] = old
                else:
                    kept = {k: old[k] for k in ("from_steps", "samplers") if k in old}
                    cur[task] = {**entry, **kept}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cur, indent=1) + "\n")
            tmp.replace(path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
