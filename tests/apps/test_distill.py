"""``avbridge distill-decoder`` on tiny random models: trains, writes a folder, resumes."""

from __future__ import annotations

import json

import pytest
import torch

from avbridge.apps.cli import main
from avbridge.models.guidance_decoders import AudioGuidanceDecoder, AutoencoderTiny, load_guidance_decoder

ARGS = ["distill-decoder", "--preset", "tiny-random", "--duration", "0.5", "--batch", "2",
        "--sample-steps", "2", "--save-every", "1", "--quiet", "--prompts", "a dog,a bell"]


def test_distill_runs_and_resumes(tmp_path):
    out = tmp_path / "dec"
    assert main(ARGS + ["--out", str(out), "--iters", "2"]) == 0
    first = json.loads((out / "distill.json").read_text())
    assert first["iters_done"] == 2 and first["resumed_from"] == 0 and first["complete"]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iter"] == 2
    w2 = load_guidance_decoder(out).state_dict()
    assert main(ARGS + ["--out", str(out), "--iters", "3"]) == 0
    second = json.loads((out / "distill.json").read_text())
    assert second["resumed_from"] == 2 and second["iters_done"] == 3
    dec = load_guidance_decoder(out)
    assert isinstance(dec, AudioGuidanceDecoder)
    assert any(not torch.equal(w2[k], v) for k, v in dec.state_dict().items())


def test_distill_broken_checkpoint_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "dec"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(ARGS + ["--out", str(out), "--iters", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.pt" in err[0] and err[0].startswith("avbridge: error:")


def test_vjp_gap_zero_for_the_vae_itself_and_positive_for_a_random_student():
    from avbridge.apps.distill import _vjp_gap, teacher_decode
    from avbridge.loading import load_audio
    from avbridge.models.guidance_decoders import audio_decoder_for

    gen = load_audio(None, "tiny-random", device=torch.device("cpu"), dtype=torch.float32, seed=0)
    z = gen.init_latents(gen.default_spec(0.5), 2, torch.Generator().manual_seed(0)).requires_grad_(True)

    class VaeAsStudent(torch.nn.Module):
        def forward(self, x):
            return gen.decode_mel(x)

    teacher = teacher_decode(gen, gen.default_spec(0.5))
    torch.manual_seed(0)
    same = _vjp_gap(teacher, z, VaeAsStudent()(z))
    assert float(same.detach()) < 1e-5
    student = audio_decoder_for(gen)
    other = _vjp_gap(teacher, z, student(z))
    assert other.requires_grad and float(other.detach()) > 0.1  # differentiable in the student


def test_distill_with_gradient_matching_records_it(tmp_path):
    out = tmp_path / "dec"
    assert main(ARGS + ["--out", str(out), "--iters", "2", "--grad-weight", "0.5"]) == 0
    doc = json.loads((out / "distill.json").read_text())
    assert doc["grad_weight"] == 0.5 and doc["heldout_vjp_gap"] > 0


@pytest.mark.parametrize("modality", ["video", "image"])
def test_distill_a_visual_decoder_into_autoencoder_tiny(tmp_path, modality):
    """--modality video/image: an AutoencoderTiny student trained on the frames the tiny
    AnimateDiff's VAE decodes; it loads and attaches as that generator's guidance decoder."""
    from avbridge.loading import attach_guidance_decoders, load_video

    out = tmp_path / modality
    argv = ARGS + ["--modality", modality, "--channels", "8", "--out", str(out), "--iters", "2"]
    if modality == "video":
        argv = [a if a != "0.5" else "0.25" for a in argv]  # 2 frames at 8 fps
    assert main(argv) == 0
    doc = json.loads((out / "distill.json").read_text())
    assert doc["modality"] == modality and doc["iters_done"] == 2 and doc["heldout_l1"] > 0
    dec = load_guidance_decoder(out)
    assert isinstance(dec, AutoencoderTiny)
    gen = load_video(None, "tiny-random", device="cpu", dtype=torch.float32, modality=modality)
    assert attach_guidance_decoders(str(out), "tiny-random", [gen]) == [gen]


def test_distill_visual_takes_one_width(tmp_path, capsys):
    argv = ARGS + ["--modality", "video", "--channels", "8,4", "--out", str(tmp_path / "v"), "--iters", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--channels" in err[0] and not (tmp_path / "v" / "distill.json").exists()
