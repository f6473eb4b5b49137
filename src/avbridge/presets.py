"""Presets as data: which models a preset loads and the guidance settings tuned for them,
and :func:`resolve_settings`, the one place where a run's settings are decided.

A run's :class:`~avbridge.align.AlignConfig` is built in three layers, each recorded:
the paper's settings of the task (``avbridge.tasks.TASKS``; "paper", or "default" for
AlignConfig's own defaults), then the preset's tuned settings when every model is the
preset's own ("preset <name>"), then the user's options ("option").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from avbridge.align import AlignConfig
from avbridge.align.config import Settings
from avbridge.align.losses import LossWeights
from avbridge.errors import AvbridgeError, CheckpointError
from avbridge.models.binders.base import ClipSpec
from avbridge.tasks import TASKS


@dataclass(frozen=True)
class Preset:
    """A named model set. ``models`` maps each role (audio, video, image, binder, captioner)
    to where it comes from: a hub id, a folder of the embedded world (``world:NAME``) or a
    tiny random build (``tiny``/an ImageBind preset name). ``guidance`` names the file of
    settings tuned for exactly these models (in the world's model folder), if any."""

    name: str
    description: str
    models: dict[str, str]
    guidance: str | None = None
    note: str | None = None


#: The paper's models by hub id.
PAPER_AUDIO = "cvssp/audioldm-m-full"
PAPER_VIDEO_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
PAPER_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"

#: Clip layout of the binder in the paper preset (the authors' V2A code: 1-s clips, 2 frames each).
PAPER_BINDER_CLIPS = ClipSpec(duration_s=1.0, count=None, frames_per_clip=2)

TINY_RANDOM_NOTE = (
    "tiny-random models: tiny untrained networks, the outputs are noise (for tests and smoke runs)"
)



def world_models_dir() -> Path:
    """Where the embedded world's shipped models live (inside the installed package)."""
    return Path(__file__).resolve().parent / "world" / "models"




#: The tiny random binder: 32x32 vision, 4 frames per clip, 0.5-s clips tiled over the input
#: (matches the tiny generators' 32x32, 8-fps output and keeps tests fast).
TINY_BINDER = ("tiny-32", ClipSpec(duration_s=0.5, count=None, frames_per_clip=4))




#: The shipped world models: folder -> the file whose presence means the folder is complete
#: (the trainer writes it last).
WORLD_PARTS: dict[str, str] = {
    "audioldm": "model_index.json",
    "animatediff": "model_index.json",
    "image": "model_index.json",
    "binder": "model.safetensors",
    "captioner": "config.json",
}


def world_guidance(steps: int | None = None, sampler: str = "ddim") -> dict[str, dict[str, Any]]:
    """The world models' tuned AlignConfig fields per task (``models/guidance.json``; ``{}``
    when absent). Lists become tuples (``window``); keys starting with ``_`` are notes.

    A task's ``from_steps`` maps a step count to the fields chosen for runs of at least
    that many steps (more guided updates want a smaller step): with ``steps`` given, the
    entry with the largest such count not above ``steps`` is applied over the task's base
    fields, which were chosen at fewer steps. A task's ``samplers`` maps a sampler other
    than DDIM (``"dpm++"``) to its own ``from_steps``, applied the same way on top when
    ``sampler`` is that one.
    """
    path = world_models_dir() / "guidance.json"
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(path, f"unreadable guidance settings: {e}") from e
    out: dict[str, dict[str, Any]] = {}
    for task, fields in raw.items():
        if task.startswith("_"):
            continue
        if task not in TASKS or not isinstance(fields, dict):
            raise CheckpointError(path, f"unknown task {task!r} or malformed entry")
        samplers = fields.get("samplers", {})
        if not isinstance(samplers, dict) or not all(isinstance(v, dict) for v in samplers.values()):
            raise CheckpointError(path, f"{task}: samplers must map sampler names to entries")
        base = {k: v for k, v in fields.items() if k not in ("from_steps", "samplers")}
        chosen = _guidance_fields(path, task, base)
        chosen = _apply_from_steps(path, task, chosen, fields.get("from_steps", {}), steps)
        for name, entry in samplers.items():
            where = f"{task} samplers {name}"
            if set(entry) - {"from_steps"} - {k for k in entry if k.startswith("_")}:
                raise CheckpointError(path, f"{where}: only from_steps (and _ notes) may be given")
            picked = _apply_from_steps(path, where, chosen, entry.get("from_steps", {}), steps)
            if name == sampler:
                chosen = picked
        out[task] = chosen
    return out


def _apply_from_steps(path: Path, where: str, chosen: dict[str, Any], by_steps: Any,
                      steps: int | None) -> dict[str, Any]:
    """``chosen`` with the ``from_steps`` entries of counts not above ``steps`` applied in
    order (all of them validated)."""
    try:
        by_steps = {int(k): v for k, v in by_steps.items()}
        if any(k < 1 or not isinstance(v, dict) for k, v in by_steps.items()):
            raise ValueError
    except (AttributeError, TypeError, ValueError):
        raise CheckpointError(path, f"{where}: from_steps must map step counts to settings") from None
    for n in sorted(by_steps):
        extra = _guidance_fields(path, f"{where} from_steps {n}", by_steps[n])
        if steps is not None and n <= steps:
            chosen = {**chosen, **extra}
    return chosen


def _guidance_fields(path: Path, where: str, fields: dict[str, Any]) -> dict[str, Any]:
    """AlignConfig fields of one guidance.json entry, notes (``_``) dropped."""
    known = {f.name for f in dataclasses.fields(AlignConfig)} - {"steps"}
    bad = sorted(k for k in fields if not k.startswith("_") and k not in known)
    if bad:
        raise CheckpointError(path, f"{where}: unknown setting(s) {', '.join(bad)}")
    weights = fields.get("weights", {})
    pairs = {f.name for f in dataclasses.fields(LossWeights)}
    if not isinstance(weights, dict) or not set(weights) <= pairs or not all(
        isinstance(v, (int, float)) for v in weights.values()
    ):
        raise CheckpointError(path, f"{where}: weights must map {', '.join(sorted(pairs))} to numbers")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items() if not k.startswith("_")}


def world_models_missing() -> list[str]:
    """The embedded world's model folders that are absent or incomplete in this install."""
    d = world_models_dir()
    return [name for name, marker in WORLD_PARTS.items() if not (d / name / marker).is_file()]











#: The options that take a generator or binder from elsewhere than the preset.
MODEL_OPTIONS = ("audio_model", "video_model", "image_model", "binder")


def guidance_preset(preset: str | None, options: Mapping[str, Any]) -> str | None:
    """The preset whose tuned guidance settings apply (``tasks.default_config(task, preset)``):
    ``preset`` when none of ``options``' :data:`MODEL_OPTIONS` is set, else ``None`` (the paper's)."""
    return None if any(options.get(k) is not None for k in MODEL_OPTIONS) else preset


def preset_note(preset: str, *sources: str | None) -> str | None:
    """A plain warning when some of the models are tiny random ones (their outputs are noise)."""
    if preset == "tiny-random" and all(s is None or s == "tiny-random" for s in sources):
        return TINY_RANDOM_NOTE
    if preset == "tiny-random" or any(s in ("tiny-random", "tiny") for s in sources):
        return "some models are tiny random ones: their outputs are noise"
    return None


PRESETS: dict[str, Preset] = {
    "world": Preset(
        "world",
        "the small models trained on the embedded procedural world, shipped in the package",
        {"audio": "world:audioldm", "video": "world:animatediff", "image": "world:image",
         "binder": "world:binder", "captioner": "world:captioner"},
        guidance="guidance.json",
    ),
    "tiny-random": Preset(
        "tiny-random",
        "tiny random models built offline from a seed (tests and smoke runs)",
        {"audio": "tiny", "video": "tiny", "image": "tiny", "binder": TINY_BINDER[0], "captioner": "binder"},
        note=TINY_RANDOM_NOTE,
    ),
    "paper": Preset(
        "paper",
        "the paper's models: AudioLDM-m-full, SD 1.5 + AnimateDiff motion adapter v1-5-2, ImageBind-huge",
        {"audio": PAPER_AUDIO, "video": f"{PAPER_VIDEO_BASE} + {PAPER_MOTION_ADAPTER}",
         "image": PAPER_VIDEO_BASE, "binder": "imagebind_huge.pth (--binder)", "captioner": "binder"},
    ),
}


def resolve_settings(
    task: str,
    *,
    preset: str | None = None,
    steps: int | None = None,
    options: Mapping[str, Any] | None = None,
    models: Mapping[str, Any] | None = None,
    sampler: str = "ddim",
) -> Settings:
    """The settings of one run of ``task``: the paper's, then ``preset``'s tuned ones (only
    when no model in ``models`` replaces the preset's, see :func:`guidance_preset`), then
    ``options`` (AlignConfig fields given by the user; ``steps`` is one of them).

    The preset's settings may depend on the step count and the sampler (``from_steps`` and
    ``samplers`` in guidance.json), so the final step count is known before they are
    chosen. AvbridgeError if an option is invalid.
    """
    if task not in TASKS:
        raise AvbridgeError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    opts = dict(options or {})
    if steps is not None:
        opts["steps"] = steps
    values: dict[str, Any] = dict(TASKS[task].paper)
    sources = {k: "paper" for k in values}
    which = guidance_preset(preset, models or {})
    if which is not None and which in PRESETS and PRESETS[which].guidance:
        n = int(opts.get("steps", values["steps"]))
        tuned = world_guidance(steps=n, sampler=sampler).get(task, {})
        values.update(tuned)
        sources.update({k: f"preset {which}" for k in tuned})
    values.update(opts)
    sources.update({k: "option" for k in opts})
    try:
        config = AlignConfig(**values)
    except (TypeError, ValueError) as e:
        raise AvbridgeError(f"invalid option: {' '.join(str(e).split())}") from e
    return Settings(config, sources)


def default_config(task: str, preset: str | None = None, steps: int | None = None,
                   sampler: str = "ddim") -> AlignConfig:
    """The task's settings without user options: the paper's, or ``preset``'s tuned ones."""
    return resolve_settings(task, preset=preset, steps=steps, sampler=sampler).config
