"""Report on ``avbridge world bench`` results: markdown rows, paired gains, timing vs chance.

    python scripts/world_bench_report.py out/bench-v2a/bench.json [more bench.json ...]

For each task in the given ``bench.json`` files (rows of several files are merged, e.g. a
bench run in halves with ``--start``), prints

- one markdown table row per variant: mean [95% bootstrap CI] of sync F1 and class
  accuracy, means of the other metrics (the table format of docs/world.md);
- each guided variant's paired difference from vanilla on the same clips (mean and its
  standard error) for sync F1 and class accuracy;
- for tasks with timing against the condition (V2A, A2V): the precision of the detected
  events against the clip's own true events and against the *next* clip's true events
  (chance: what precision events with no relation to the condition get), both with the
  bench's one-frame tolerance, and the mean number of detected and true events per clip.
  Precision above chance is evidence that events are placed, not only added.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def _precision(pred: list[float], ref: list[float], tol: float) -> float | None:
    from avbridge.world.events import match_events

    return None if not pred else len(match_events(pred, ref, tol)) / len(pred)


def _mean(xs: list[float | None]) -> float:
    vals = [x for x in xs if x is not None]
    return float(np.mean(vals)) if vals else math.nan


def report(rows: list[dict], tol: float) -> str:
    """The report text for merged bench rows."""
    from avbridge.world.bench import bootstrap_ci

    out: list[str] = []
    for task in dict.fromkeys(r["task"] for r in rows):
        by: dict[str, dict[int, dict]] = {}
        for r in rows:
            if r["task"] == task:
                by.setdefault(r["variant"], {})[r["seed"]] = r
        out.append(f"## {task}")
        out.append("| task | variant | n | sync F1 | class acc | colour acc | size acc "
                   "| label agreement | AV-Align |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for name, rs in by.items():
            sel = list(rs.values())

            def ci(m: str, sel: list[dict] = sel) -> str:
                vals = [r[m] for r in sel if r.get(m) is not None]
                if not vals:
                    return "-"
                mean, lo, hi = bootstrap_ci(vals)
                return f"{mean:.3f} [{lo:.3f}, {hi:.3f}]" if m == "sync_f1" else \
                    f"{mean:.2f} [{lo:.2f}, {hi:.2f}]"

            def mn(m: str, sel: list[dict] = sel) -> str:
                v = _mean([r.get(m) for r in sel])
                return "-" if math.isnan(v) else f"{v:.2f}"

            out.append(f"| {task} | {name} | {len(sel)} | {ci('sync_f1')} | {ci('class_acc')} | "
                       f"{mn('colour_acc')} | {mn('size_acc')} | {mn('label_agreement')} | "
                       f"{mn('av_align')} |")
        base = by.get("vanilla", {})
        for name, rs in by.items():
            if name == "vanilla" or not base:
                continue
            seeds = [s for s in rs if s in base]
            for m in ("sync_f1", "class_acc"):
                d = [rs[s][m] - base[s][m] for s in seeds
                     if rs[s].get(m) is not None and base[s].get(m) is not None]
                if d:
                    se = float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
                    out.append(f"- {name} - vanilla, {m}: {np.mean(d):+.3f} (s.e. {se:.3f}, "
                               f"{len(d)} paired clips)")
        if task in ("v2a", "a2v"):
            for name, rs in by.items():
                sel = list(rs.values())
                own = [_precision(r["events"], r["truth_events"], tol) for r in sel]
                other = [_precision(r["events"], sel[(i + 1) % len(sel)]["truth_events"], tol)
                         for i, r in enumerate(sel)]
                out.append(f"- {name}: precision {_mean(own):.3f} (chance {_mean(other):.3f}), "
                           f"{_mean([len(r['events']) for r in sel]):.2f} detected events per "
                           f"clip, {_mean([len(r['truth_events']) for r in sel]):.2f} true")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    from avbridge.world.bench import TOL_S

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("bench", nargs="+", type=Path, help="bench.json files (rows are merged)")
    args = p.parse_args(argv)
    rows: list[dict] = []
    tol = None
    for f in args.bench:
        try:
            res = json.loads(f.read_text())
            rows += res["rows"]
            tol = res["config"].get("tolerance_s", tol)
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"{f}: not a readable bench.json ({type(e).__name__}: {e})")
    print(report(rows, tol if tol is not None else TOL_S))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
