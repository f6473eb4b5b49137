"""The embedded default world: procedural audio-visual clips with ground truth.

``avbridge.world.scene`` renders seeded clips (:func:`render_clip`), ``events`` detects
and scores event timing, ``evalmodels`` holds the independent evaluation classifiers and
``bench`` measures guided against vanilla generation. ``add_parser`` wires
``avbridge world samples|bench`` into the main CLI.
"""

from __future__ import annotations

from avbridge.world.cli import add_parser, main
from avbridge.world.scene import (
    CLASSES,
    COLOURS,
    SIZES,
    WORLD,
    WorldClip,
    WorldSpec,
    caption_for,
    render_clip,
    split_seeds,
)

__all__ = [
    "CLASSES",
    "COLOURS",
    "SIZES",
    "WORLD",
    "WorldClip",
    "WorldSpec",
    "add_parser",
    "caption_for",
    "main",
    "render_clip",
    "split_seeds",
]
