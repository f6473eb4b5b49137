"""The captioner stage fits linear heads for the binder in --models and records its accuracy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from training.world import train_captioner
from training.world.train import build_parser, run_stage

MODELS = Path(__file__).resolve().parents[2] / "src" / "avbridge" / "world" / "models"


def test_captioner_stage_fits_heads_for_the_binder_in_models(tmp_path, monkeypatch) -> None:
    from avbridge.errors import AvbridgeError
    from avbridge.loading import load_captioners
    from avbridge.models.captioners import ProbeCaptioner
    from avbridge.world.scene import render_clip, split_seeds

    if not (MODELS / "binder").is_dir():
        pytest.skip("no shipped binder")
    monkeypatch.chdir(tmp_path)  # the clip cache and the work folder are relative to it
    monkeypatch.setattr(train_captioner, "VAL_CLIPS", 12)
    out = tmp_path / "models"
    args = ["captioner", "--clips", "36", "--steps", "200", "--models", str(out), "--device", "cpu"]
    with pytest.raises(AvbridgeError, match="binder.*missing"):
        run_stage("captioner", build_parser().parse_args(args))
    shutil.copytree(MODELS / "binder", out / "binder")
    run_stage("captioner", build_parser().parse_args(args))

    info = json.loads((out / "training.json").read_text())["captioner"]
    assert info["clips"] == 36 and info["steps"] == 200
    assert set(info["val_acc"]) == {"audio", "video", "image"}
    assert info["val_acc"]["video"]["class"] >= 0.75  # 12 held-out clips; the binder reads video well
    assert info["train_acc"]["video"]["class"] == 1.0
    audio_cap, visual_cap = load_captioners(f"probe:{out / 'captioner'}", "world", _binder(out), device="cpu")
    assert isinstance(visual_cap, ProbeCaptioner) and audio_cap is visual_cap
    clip = render_clip(split_seeds("val", 1, start=900)[0])
    assert visual_cap.caption(clip.video) in ("ball", "drum", "bell", "bird", "hammer", "engine")


def _binder(models: Path):
    from avbridge.models.binders.imagebind import ImageBindBinder

    return ImageBindBinder.from_pretrained(models / "binder", trainable=False)
