"""``avbridge eval``: the two-stage evaluation command and its programmatic entry point."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avbridge.errors import AvbridgeError

if TYPE_CHECKING:  # heavy imports (torch, scipy) happen only when the command runs
    from avbridge.eval.extractors import FeatureExtractor
    from avbridge.eval.pipeline import EvalItem, MetricOptions


def load_items(
    inputs: str | Path, conditions: str | Path | None = None, references: str | Path | None = None
) -> list[EvalItem]:
    """A manifest file (.csv / .jsonl) or a folder of generated files (subfolders = groups)."""
    from avbridge.eval.pipeline import items_from_folder, load_manifest

    p = Path(inputs)
    if p.is_dir():
        return items_from_folder(p, conditions, references)
    if conditions or references:
        raise AvbridgeError(
            "--conditions/--references pair files in folder mode; a manifest lists them itself"
        )
    return load_manifest(p)


def run_eval(
    items: Sequence[EvalItem],
    out_dir: str | Path,
    extractors: Sequence[FeatureExtractor] = (),
    *,
    cache_dir: str | Path | None = None,
    stage: str = "all",
    guidance_binder: str | None = None,
    options: MetricOptions | None = None,
    av_align: bool = True,
    plots: bool = True,
) -> dict[str, Any]:
    """Run stage 1 (``stage`` "extract" or "all") and stage 2 ("metrics" or "all").

    Returns the results dict (also written to ``out_dir/results.json``) for stage 2, or
    the stage-1 counts for "extract". "metrics" reads only the cache.
    """
    from avbridge.eval.pipeline import FeatureCache, extract_stage, metrics_stage
    from avbridge.eval.report import write_report

    if stage not in ("all", "extract", "metrics"):
        raise AvbridgeError(f"stage must be all, extract or metrics, got {stage!r}")
    cache = FeatureCache(cache_dir if cache_dir is not None else Path(out_dir) / "cache")
    data, stats = extract_stage(items, cache, extractors, av_align=av_align, compute=stage != "metrics")
    if stage == "extract":
        return {"computed": stats.computed, "cached": stats.cached}
    results = metrics_stage(data, extractors, options, guidance_binder)
    results["cache"] = {"computed": stats.computed, "cached": stats.cached, "dir": str(cache.root)}
    sync = {sd.item.id: sd.av_align for sd in data if sd.av_align is not None}
    write_report(results, out_dir, sync, plots=plots)
    return results


def binder_from_spec(spec: str) -> Any:
    """``preset:NAME[:SEED]`` (random weights, for smoke tests), a saved folder, or an official checkpoint."""
    from avbridge.models.binders.imagebind import ImageBindBinder

    if spec.startswith("preset:"):
        parts = spec.split(":")
        seed = int(parts[2]) if len(parts) > 2 else 0
        return ImageBindBinder.from_preset(parts[1], seed=seed)
    p = Path(spec)
    if p.is_dir():
        return ImageBindBinder.from_pretrained(p, trainable=False)
    return ImageBindBinder.from_checkpoint(p)


def build_extractors(args: argparse.Namespace) -> list[FeatureExtractor]:
    from avbridge.eval.extractors import BinderExtractor

    exts: list[FeatureExtractor] = []
    for b in args.binder or []:
        if "=" not in b:
            raise AvbridgeError(f"--binder expects NAME=SPEC, got {b!r}")
        name, spec = b.split("=", 1)
        exts.append(BinderExtractor(binder_from_spec(spec), name=name))
    if args.panns:
        from avbridge.eval.panns import PannsExtractor

        exts.append(PannsExtractor.from_checkpoint(args.panns, trust_pickle=args.trust_pickle))
    if getattr(args, "world_extractors", False) or getattr(args, "world_weights", None):
        from avbridge.eval.world_extractors import world_extractors

        exts.extend(world_extractors(getattr(args, "world_weights", None)))
    return exts


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` on an argparse subparsers object; its ``func(args)`` returns an exit code."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate generated outputs (AV-Align, binder scores, FAD/FVD/KID/KL/ISc)",
        description="Stage 1 extracts and caches features per file (keyed by content hash and "
        "extractor); stage 2 writes results.json, report.md and plots.",
    )
    p.add_argument(
        "inputs",
        help="folder of generated files (subfolders = groups) or a .csv/.jsonl manifest "
        "with columns generated, condition, reference, prompt, group",
    )
    p.add_argument("--out", required=True, help="output folder for results.json, report.md, plots/")
    p.add_argument("--cache", default=None, help="feature cache folder (default OUT/cache)")
    p.add_argument("--conditions", default=None, help="folder mode: conditions, paired by file name")
    p.add_argument("--references", default=None, help="folder mode: references, paired by file name")
    p.add_argument("--stage", choices=("all", "extract", "metrics"), default="all")
    p.add_argument(
        "--binder",
        action="append",
        metavar="NAME=SPEC",
        help="scoring binder: NAME=imagebind checkpoint file | saved folder | preset:NAME[:SEED]",
    )
    p.add_argument(
        "--guidance-binder",
        default=None,
        metavar="NAME",
        help="the --binder NAME that guided generation: its scores are flagged as not independent",
    )
    p.add_argument("--panns", default=None, metavar="CKPT", help="PANNs CNN14 checkpoint (FAD, KL, ISc)")
    p.add_argument("--trust-pickle", action="store_true", help="allow pickled checkpoint contents")
    p.add_argument(
        "--world-extractors",
        action="store_true",
        help="also score with the embedded world's evaluation classifiers (world-audio, "
        "world-video: FAD/FVD/KID, KL and ISc over the world's classes)",
    )
    p.add_argument(
        "--world-weights",
        default=None,
        metavar="DIR",
        help="folder with the world classifiers' audio/video.safetensors (implies "
        "--world-extractors; default: the weights shipped with avbridge)",
    )
    p.add_argument("--no-av-align", action="store_true")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--kid-subset-size", type=int, default=1000)
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--is-splits", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_main)
    return p


def _main(args: argparse.Namespace) -> int:
    from avbridge.eval.pipeline import MetricOptions

    items = load_items(args.inputs, args.conditions, args.references)
    opts = MetricOptions(args.kid_subset_size, args.kid_subsets, args.is_splits, args.seed)
    res = run_eval(
        items,
        args.out,
        build_extractors(args),
        cache_dir=args.cache,
        stage=args.stage,
        guidance_binder=args.guidance_binder,
        options=opts,
        av_align=not args.no_av_align,
        plots=not args.no_plots,
    )
    if args.stage == "extract":
        print(f"extracted: {res['computed']} computed, {res['cached']} from cache")
    else:
        print(
            f"wrote {Path(args.out) / 'report.md'} and results.json "
            f"({res['cache']['computed']} computed, {res['cache']['cached']} cached)"
        )
    return 0
