"""Stage-2 outputs: results.json, report.md (one column per group), plots.

Honest reporting: a metric computed by the binder that guided generation is marked
in the table, and each such row names an independent metric (another model, or the
model-free AV-Align) with its values beside it. If no independent metric exists,
:func:`write_report` refuses rather than print a self-graded table.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from avbridge.errors import AvbridgeError
from avbridge.eval import av_align as ava

GUIDANCE_FLAG = "⚠ scored by the guidance binder (not independent)"


def _source(metric: str) -> str | None:
    m = re.search(r"\[([^\]]+)\]$", metric)
    return m.group(1) if m else None


def _base(metric: str) -> str:
    return re.sub(r"\s*\[[^\]]+\]$", "", metric)


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def independent_for(metric: str, metrics: Sequence[str], guidance: str) -> str | None:
    """An independent metric to show beside a guidance-binder ``metric``: the same score from
    another binder, else AV-Align (fixed) for AV scores, else any metric of another model."""
    others = [m for m in metrics if _source(m) != guidance]
    same = [m for m in others if _base(m) == _base(metric)]
    if same:
        return same[0]
    if _base(metric) in ("AV-align_bind", "IB-score") and "AV-Align (fixed)" in others:
        return "AV-Align (fixed)"
    model_based = [m for m in others if _source(m) is not None and "std" not in m]
    if model_based:
        return model_based[0]
    return "AV-Align (fixed)" if "AV-Align (fixed)" in others else None


def markdown_table(results: dict[str, Any]) -> str:
    groups = results["groups"]
    names = list(groups)
    guidance = results.get("guidance_binder")
    metrics = list(dict.fromkeys(k for g in groups.values() for k in g if k not in ("n", "skipped")))
    lines = [
        "| metric | " + " | ".join(f"{g} (n={groups[g]['n']})" for g in names) + " | note |",
        "|---|" + "---|" * len(names) + "---|",
    ]
    for m in metrics:
        note = ""
        if guidance is not None and _source(m) == guidance:
            ind = independent_for(m, metrics, guidance)
            if ind is None:
                raise AvbridgeError(
                    f"'{m}' comes from the guidance binder {guidance!r} and no independent metric is "
                    "available: add another binder or extractor (e.g. --panns, another --binder)"
                )
            vals = ", ".join(f"{g}: {_fmt(groups[g].get(ind))}" for g in names)
            note = f"{GUIDANCE_FLAG}; independent check: {ind} = {vals}"
        elif m.startswith("AV-Align"):
            note = ava.LABELS["fixed" if "(fixed)" in m else "old"]
        lines.append(f"| {m} | " + " | ".join(_fmt(groups[g].get(m)) for g in names) + f" | {note} |")
    out = "\n".join(lines) + "\n"
    skipped = {g: groups[g]["skipped"] for g in names if groups[g].get("skipped")}
    for g, s in skipped.items():
        for k, why in s.items():
            out += f"\n- {g}: {k} skipped: {why}"
    return out + ("\n" if skipped else "")


def _plot_distributions(results: dict[str, Any], plots: Path) -> list[Path]:
    """One figure, one panel per per-sample metric: a box plot per group with the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["samples"]
    groups = list(results["groups"])
    skip = ("id", "group", "generated", "notes")
    keys = [
        k
        for k in dict.fromkeys(k for r in rows for k in r)
        if k not in skip
        and "hits" not in k
        and "peaks" not in k
        and any(isinstance(r.get(k), int | float) for r in rows)
    ]
    if not keys:
        return []
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
    for ax, k in zip(axes.flat, keys, strict=False):
        data = [[r[k] for r in rows if r["group"] == g and isinstance(r.get(k), int | float)] for g in groups]
        ax.boxplot([d if d else [np.nan] for d in data], showmeans=True)
        ax.set_xticks(range(1, len(groups) + 1), groups, fontsize=8)
        for i, d in enumerate(data, start=1):
            ax.scatter(np.full(len(d), i) + np.linspace(-0.1, 0.1, len(d)), d, s=8, alpha=0.6)
        title = k
        if _source(k) == results.get("guidance_binder"):
            title += "\n(guidance binder: not independent)"
        ax.set_title(title, fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    path = plots / "distributions.png"
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return [path]


def sync_plot(path: Path, sample_id: str, av: dict[str, np.ndarray]) -> Path:
    """Flow magnitude over time with video peaks (fixed) and audio onsets marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fps = float(av["fps"])
    flow = np.asarray(av["flow"])
    t = np.arange(len(flow)) / fps
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(t, flow, lw=1, color="0.3", label="mean optical flow")
    for i, v in enumerate(ava.video_peaks(flow, fps, "fixed")):
        ax.axvline(v, color="tab:blue", ls="--", lw=1, label="video peak (fixed)" if i == 0 else None)
    for i, a in enumerate(av["onset_times"]):
        ax.axvline(float(a), color="tab:red", lw=1, alpha=0.8, label="audio onset" if i == 0 else None)
    ax.axhline(ava.FLOW_PEAK_THRESHOLD, color="tab:blue", lw=0.5, alpha=0.5)
    ax.set_xlabel("time (s)")
    ax.set_title(sample_id, fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(
    results: dict[str, Any],
    out_dir: str | Path,
    sync_data: dict[str, dict[str, np.ndarray]] | None = None,
    plots: bool = True,
    max_sync_plots: int = 50,
) -> dict[str, Path]:
    """Write results.json, report.md and (optionally) plots/ under ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(results)  # raises before anything is written if self-graded only
    paths = {"json": out / "results.json", "markdown": out / "report.md"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str) + "\n")
    head = "# avbridge evaluation\n\n"
    if results.get("guidance_binder"):
        head += (
            f"Generation was guided by binder `{results['guidance_binder']}`: its scores are marked "
            "and shown beside a metric from another model.\n\n"
        )
    ext = ", ".join(f"`{k}` ({v})" for k, v in results["extractors"].items()) or "none"
    head += f"Extractors (name, version): {ext}.\n\n"
    paths["markdown"].write_text(head + table)
    if plots:
        pdir = out / "plots"
        pdir.mkdir(exist_ok=True)
        _plot_distributions(results, pdir)
        if sync_data:
            sdir = pdir / "sync"
            sdir.mkdir(exist_ok=True)
            for sid, av in list(sync_data.items())[:max_sync_plots]:
                sync_plot(sdir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', sid)}.png", sid, av)
        paths["plots"] = pdir
    return paths
