"""``avbridge world bench``: guided vs vanilla on held-out world clips (work in progress)."""

from __future__ import annotations

import argparse

from avbridge.errors import AvbridgeError

TASKS = ("v2a", "i2a", "a2v", "a2i", "joint")


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``avbridge world bench``."""
    p.add_argument("--n", type=int, default=100, help="held-out test clips per task")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the task's)")
    p.add_argument("--per-clip", action="store_true", help="also run with the per-clip loss")
    p.add_argument("--seed", type=int, default=0, help="generation seed")
    p.add_argument("--device", default="cpu", help="torch device")
    p.add_argument("--out", default="out/world-bench", metavar="DIR", help="folder for results JSON")


def run_from_args(args: argparse.Namespace) -> int:
    raise AvbridgeError("avbridge world bench is not implemented yet")
