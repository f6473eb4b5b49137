"""Evaluation: AV-Align, binder scores, FD/FAD/FVD, KID/KVD, KL, ISc, and ``avbridge eval``.

Submodules: ``av_align``, ``metrics``, ``binder_scores``, ``extractors``, ``panns``,
``pipeline`` (inputs, cache, stages), ``report``, ``cli``. Importing this package is
cheap; torch, librosa and OpenCV load only when used.
"""

from __future__ import annotations

from typing import Any


def add_parser(subparsers: Any):
    """Register the ``eval`` subcommand (see :mod:`avbridge.eval.cli`)."""
    from avbridge.eval.cli import add_parser as _add

    return _add(subparsers)


__all__ = ["add_parser"]
