"""``avbridge distill-encoder`` on tiny random models: trains, writes a folder, resumes."""

from __future__ import annotations

import json

import torch

from avbridge.apps.cli import main
from avbridge.models.binders.guidance_encoder import AudioGuidanceEncoder, load_guidance_encoder

ARGS = ["distill-encoder", "--preset", "tiny-random", "--duration", "1.0", "--batch", "2", "--blocks", "1",
        "--sample-steps", "2", "--save-every", "1", "--quiet", "--prompts", "a dog,a bell", "--lr", "1e-3"]


def test_distill_encoder_runs_and_resumes(tmp_path):
    out = tmp_path / "enc"
    assert main(ARGS + ["--out", str(out), "--iters", "2"]) == 0
    first = json.loads((out / "distill.json").read_text())
    assert first["iters_done"] == 2 and first["resumed_from"] == 0 and first["complete"]
    assert first["blocks"] == 1 and first["grad_weight"] == 1.0 and 0 < first["heldout_grad_gap"]
    assert -1 <= first["heldout_cosine"] <= 1
    w2 = load_guidance_encoder(out).state_dict()
    assert main(ARGS + ["--out", str(out), "--iters", "3"]) == 0
    second = json.loads((out / "distill.json").read_text())
    assert second["resumed_from"] == 2 and second["iters_done"] == 3
    enc = load_guidance_encoder(out)
    assert isinstance(enc, AudioGuidanceEncoder)
    assert any(not torch.equal(w2[k], v) for k, v in enc.state_dict().items())


def test_full_depth_start_matches_the_tower_exactly(tmp_path):
    """All the tower's blocks kept and no training: held-out cosine 1 and no gradient gap
    (the tiny binder's 0.5-s clips need every patch, so nothing is cut)."""
    out = tmp_path / "enc"
    argv = [a if a != "1" else "2" for a in ARGS] + ["--out", str(out), "--iters", "1", "--lr", "1e-12"]
    assert main(argv) == 0
    doc = json.loads((out / "distill.json").read_text())
    assert doc["blocks"] == 2 and doc["heldout_cosine"] > 0.99999 and doc["heldout_grad_gap"] < 1e-3


def test_distill_encoder_errors_are_one_line(tmp_path, capsys):
    out = tmp_path / "enc"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(ARGS + ["--out", str(out), "--iters", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.pt" in err[0] and err[0].startswith("avbridge: error:")
    assert main([a if a != "1" else "5" for a in ARGS] + ["--out", str(tmp_path / "x"), "--iters", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "num_blocks must be in 1..2" in err[0]
