"""Guided vs vanilla on the world at fewer steps: DDIM and DPM-Solver++ at 10, 15 and the
tasks' own step counts, with the settings the tool ships for each (sampler, steps).

For every sampler and step count, loads the world models with that sampler and runs
``avbridge.world.bench.run_bench`` (variants ``vanilla`` and ``shipped``) on the same clips;
``shipped`` is exactly what ``avbridge TASK --steps N --sampler S`` runs (guidance.json's
``from_steps`` and ``samplers`` entries, chosen on validation clips). Prints one row per
(sampler, task, steps): sync F1 and class accuracy of both, the paired sync gain, and the
median seconds per clip of each.

    python benchmarks/world_steps.py --n 20                  # test clips: the reported figures
    python benchmarks/world_steps.py --n 20 --split val      # validation clips
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

OWN_STEPS = {"v2a": 30, "a2v": 25, "i2a": 30, "a2i": 25, "joint": 25}


def paired_gain(rows: list[dict], task: str, metric: str = "sync_f1") -> tuple[float, float]:
    """Mean and standard error of shipped minus vanilla per clip."""
    by = {}
    for r in rows:
        if r["task"] == task and r.get(metric) is not None:
            by.setdefault(r["seed"], {})[r["variant"]] = r[metric]
    d = np.array([v["shipped"] - v["vanilla"] for v in by.values() if {"shipped", "vanilla"} <= set(v)])
    if len(d) == 0:
        return float("nan"), float("nan")
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="clips per task")
    ap.add_argument("--tasks", default="v2a,a2v")
    ap.add_argument("--samplers", default="ddim,dpm++")
    ap.add_argument("--steps", default="10,15,own", help="step counts; 'own' is each task's default")
    ap.add_argument("--split", choices=("test", "val"), default="test")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from avbridge.loading import load_components
    from avbridge.tasks import TASKS
    from avbridge.world.bench import run_bench
    from avbridge.world.evalmodels import EvalModels

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    need = sorted({g for t in tasks for g in TASKS[t].needs})
    evalm = EvalModels.load()
    out: list[dict] = []
    print(f"{'sampler':8} {'task':5} {'steps':>5} {'vanilla sync/class':>19} {'shipped sync/class':>19} "
          f"{'sync gain (s.e.)':>17} {'s/clip v/g':>11}", flush=True)
    for sampler in [s.strip() for s in args.samplers.split(",") if s.strip()]:
        comps = load_components("world", need=need, sampler=sampler)
        for task in tasks:
            for item in [s.strip() for s in args.steps.split(",") if s.strip()]:
                steps = OWN_STEPS[task] if item == "own" else int(item)
                t0 = time.perf_counter()
                res = run_bench(args.n, (task,), components=comps, evalmodels=evalm, steps=steps,
                                split=args.split, log=None)
                summ = res["summary"][task]
                gain, se = paired_gain(res["rows"], task)
                secs = {v: statistics.median(r["wall_s"] for r in res["rows"] if r["variant"] == v)
                        for v in ("vanilla", "shipped")}
                keep = {v: {m: summ[v][m] for m in ("sync_f1", "class_acc") if m in summ[v]}
                        for v in ("vanilla", "shipped")}
                row = {"sampler": sampler, "task": task, "steps": steps, **keep, "sync_gain": [gain, se],
                       "s_per_clip": secs, "settings": res["settings"][task]["shipped"],
                       "wall_s": round(time.perf_counter() - t0, 1)}
                out.append(row)
                v, g = row["vanilla"], row["shipped"]
                print(f"{sampler:8} {task:5} {steps:5d} {v['sync_f1'][0]:10.3f} / {v['class_acc'][0]:.2f} "
                      f"{g['sync_f1'][0]:10.3f} / {g['class_acc'][0]:.2f} {gain:+9.3f} ({se:.3f}) "
                      f"{secs['vanilla']:5.2f}/{secs['shipped']:.2f}", flush=True)
    if args.json:
        doc = {"n": args.n, "split": args.split, "threads": args.threads, "rows": out}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
