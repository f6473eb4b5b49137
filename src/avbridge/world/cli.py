"""``avbridge world samples|bench`` (also ``python -m avbridge.world``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from avbridge.errors import AvbridgeError


def write_clip(clip: Any, out_dir: Path, name: str | None = None) -> tuple[Path, Path]:
    """Write one world clip as ``NAME.mp4`` (H.264 + AAC) and ``NAME.json`` (ground truth)."""
    from avbridge.io.media import write_video

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or f"world-{clip.truth['seed']}"
    mp4 = write_video(out_dir / f"{stem}.mp4", clip.video)
    js = out_dir / f"{stem}.json"
    js.write_text(json.dumps(clip.truth, indent=1) + "\n")
    return mp4, js


def _samples(args: argparse.Namespace) -> int:
    from avbridge.world.scene import render_clip, split_seeds

    if args.n < 1:
        raise AvbridgeError(f"--n must be at least 1, got {args.n}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise AvbridgeError(f"{out}: exists and is not a folder")
    for seed in split_seeds(args.split, args.n, start=args.start):
        clip = render_clip(seed)
        mp4, _ = write_clip(clip, out)
        print(f"{mp4}  {clip.caption}  events at {clip.truth['event_times']} s")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from avbridge.world.bench import run_from_args

    return run_from_args(args)


def _add_samples(sub: Any) -> None:
    p = sub.add_parser("samples", help="write N world clips (mp4 + JSON ground truth) to look at",
                       description="Render N clips of the procedural world and write NAME.mp4 + NAME.json.")
    p.add_argument("--n", type=int, default=8, help="number of clips")
    p.add_argument("--out", default="out/world-samples", metavar="DIR", help="output folder")
    p.add_argument("--split", choices=("train", "val", "test"), default="test", help="seed range")
    p.add_argument("--start", type=int, default=0, help="offset of the first seed inside the split")
    p.set_defaults(func=_samples)


def _add_bench(sub: Any) -> None:
    from avbridge.world.bench import add_bench_arguments

    p = sub.add_parser("bench", help="guided vs vanilla on held-out world clips, with 95%% intervals",
                       description="Run every task guided and vanilla on held-out test clips of the world "
                       "and report event-sync F1, class/attribute accuracy, AV-Align and binder-space "
                       "scores (evaluation models only) with 95% confidence intervals.")
    add_bench_arguments(p)
    p.set_defaults(func=_bench)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``world`` (with ``samples`` and ``bench``) to an argparse subparsers object."""
    p = subparsers.add_parser("world", help="the embedded procedural world: sample clips, bench",
                              description="The embedded procedural audio-visual world.")
    sub = p.add_subparsers(dest="world_command", metavar="{samples,bench}")
    sub.required = True
    _add_samples(sub)
    _add_bench(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m avbridge.world``."""
    parser = argparse.ArgumentParser(prog="python -m avbridge.world")
    sub = parser.add_subparsers(dest="cmd")
    sub.required = True
    world = add_parser(sub)
    args = parser.parse_args(["world", *(sys.argv[1:] if argv is None else argv)])
    del world
    try:
        return int(args.func(args) or 0)
    except AvbridgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
