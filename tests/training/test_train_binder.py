"""Pieces of the binder stage: the adversarial negatives (``--adv-steps``), the gradient
alignment term (``--grad-align``) and the InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from training.world.train_binder import (
    BINDER_CLIPS,
    _info_nce,
    adversarial_inputs,
    binder_config,
    gradient_alignment_loss,
)

from avbridge.models.binders.imagebind import ImageBindBinder


def test_adversarial_inputs_stay_in_budget_and_raise_the_match() -> None:
    binder = ImageBindBinder.from_config(binder_config(), seed=0, clips=BINDER_CLIPS).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 64, 64, generator=g) * 0.3
    target = F.normalize(torch.randn(6, binder_config().out_embed_dim, generator=g), dim=-1)
    eps = 0.1
    adv = adversarial_inputs(binder, "audio", x, target, eps, steps=3)
    assert adv.shape == x.shape and not adv.requires_grad
    assert (adv - x).abs().max() <= eps + 1e-6
    assert (adv - x).abs().max() > eps / 2  # it did move

    def cos(inp: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return (F.normalize(binder.model.embed("audio", inp), dim=-1) * target).sum(-1)

    before, after = cos(x), cos(adv)
    assert (after > before).all(), (before, after)
    assert all(p.grad is None for p in binder.model.parameters())  # the binder itself is untouched


def test_gradient_alignment_loss_is_the_input_gradient_cosine_and_trains() -> None:
    binder = ImageBindBinder.from_config(binder_config(), seed=0, clips=BINDER_CLIPS).eval()
    g = torch.Generator().manual_seed(3)
    x_from = torch.randn(4, 1, 64, 64, generator=g) * 0.3
    x_to = x_from + torch.randn(4, 1, 64, 64, generator=g) * 0.3
    target = F.normalize(torch.randn(4, binder_config().out_embed_dim, generator=g), dim=-1)

    x = x_from.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((F.normalize(binder.model.embed("audio", x), dim=-1) * target).sum(), x)
    toward = x_to - x_from
    expected = (2 - F.cosine_similarity(grad.flatten(1), toward.flatten(1), dim=1)
                - F.cosine_similarity(grad.sum(-2).flatten(1), toward.sum(-2).flatten(1), dim=1)).mean()
    loss = gradient_alignment_loss(binder, "audio", x_from, x_to, target)
    assert torch.allclose(loss, expected, atol=1e-4), (loss, expected)

    # Double backward reaches the weights, and a few steps on it raise the alignment.
    params = list(binder.model.modality_trunks["audio"].parameters())
    opt = torch.optim.Adam(params, lr=3e-3)
    first = float(loss.detach())
    for _ in range(15):
        opt.zero_grad()
        gradient_alignment_loss(binder, "audio", x_from, x_to, target).backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
        opt.step()
    assert float(gradient_alignment_loss(binder, "audio", x_from, x_to, target).detach()) < first - 0.05


def test_gradient_alignment_loss_video_profile_is_per_frame() -> None:
    binder = ImageBindBinder.from_config(binder_config(), seed=0, clips=BINDER_CLIPS).eval()
    g = torch.Generator().manual_seed(4)
    x_from = torch.randn(2, 3, 4, 32, 32, generator=g) * 0.3
    # A change confined to frame 2: the per-frame target is one-hot in time.
    toward = torch.zeros_like(x_from)
    toward[:, :, 2] = torch.randn(2, 3, 32, 32, generator=g)
    target = F.normalize(torch.randn(2, binder_config().out_embed_dim, generator=g), dim=-1)
    x = x_from.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((F.normalize(binder.model.embed("vision", x), dim=-1) * target).sum(), x)
    expected = (2 - F.cosine_similarity(grad.flatten(1), toward.flatten(1), dim=1)
                - F.cosine_similarity(grad.sum((1, 3, 4)), toward.sum((1, 3, 4)), dim=1)).mean()
    loss = gradient_alignment_loss(binder, "vision", x_from, x_from + toward, target)
    assert torch.allclose(loss, expected, atol=1e-4), (loss, expected)


def test_info_nce_extra_negatives_act_in_their_own_direction() -> None:
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    k = F.normalize(q + 0.1 * torch.randn(4, 8, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    base = _info_nce(q, k, scale)
    # A copy of the positives as extra negatives of one direction costs that direction
    # about log 2 (each positive now ties with its copy), i.e. the mean by about log(2) / 2.
    for extra in ({"extra_k": k.clone()}, {"extra_q": q.clone()}):
        harder = _info_nce(q, k, scale, **extra)
        assert 0.25 < float(harder - base) < float(torch.log(torch.tensor(2.0))) / 2 + 1e-4
    assert torch.allclose(_info_nce(q, k, scale, extra_k=k.clone(), extra_q=q.clone()) - base,
                          2 * (_info_nce(q, k, scale, extra_k=k.clone()) - base), atol=1e-5)


def test_latent_adversary_makes_guidance_like_negatives(tmp_path) -> None:
    from training.world.train_binder import LatentAdversary
    from training.world.train_data import ClipSet

    from avbridge.models.generators.audioldm import AudioLDMGenerator
    from avbridge.world.scene import WORLD

    AudioLDMGenerator.tiny(seed=0).save_pretrained(tmp_path / "audioldm")
    g = torch.Generator().manual_seed(2)
    n = 3
    audio = 0.1 * torch.randn(n, int(WORLD.duration_s * WORLD.sample_rate), generator=g)
    clips = ClipSet(video=torch.zeros(n, 1, 1, 1, 3, dtype=torch.uint8), audio=audio,
                    captions=[""] * n, truths=[{}] * n, seeds=list(range(n)))
    adv = LatentAdversary(tmp_path, clips, torch.device("cpu"), steps=3)
    binder = ImageBindBinder.from_config(binder_config(), seed=0, clips=BINDER_CLIPS).eval()
    windows = BINDER_CLIPS.starts(WORLD.duration_s)
    assert adv.latents.shape[0] == n
    target = F.normalize(torch.randn(2, len(windows), binder_config().out_embed_dim, generator=g), dim=-1)
    idx = [0, 2]
    neg = adv.negatives(binder, idx, target)
    assert neg.shape == target.shape and neg.requires_grad  # the binder is trained through them
    with torch.no_grad():
        start = adv.embed(binder, adv.latents[[2, 0]])  # each row starts from the next clip's latent
    assert float((neg.detach() * target).sum()) > float((start * target).sum())


def test_init_from_a_binder_with_other_clips_is_a_clear_error(tmp_path) -> None:
    import pytest
    from training.world.train import build_parser, run_stage

    from avbridge.errors import AvbridgeError
    from avbridge.models.binders.base import ClipSpec

    other = ImageBindBinder.from_config(binder_config(), seed=0, clips=ClipSpec(1.0, None, 4))
    other.save_pretrained(tmp_path / "binder")
    args = build_parser().parse_args(["binder", "--steps", "1", "--init", str(tmp_path / "binder"),
                                      "--models", str(tmp_path / "out"), "--device", "cpu"])
    with pytest.raises(AvbridgeError, match="binder clips"):
        run_stage("binder", args)


def test_binder_stage_runs_with_gradient_alignment(tmp_path, monkeypatch) -> None:
    import json

    from training.world.train import build_parser, run_stage

    monkeypatch.chdir(tmp_path)  # the clip cache and the work folder are relative to it
    args = build_parser().parse_args(["binder", "--steps", "2", "--clips", "4", "--batch", "2",
                                      "--grad-align", "1", "--grad-align-video", "0.5",
                                      "--models", str(tmp_path / "out"), "--device", "cpu"])
    run_stage("binder", args)
    info = json.loads((tmp_path / "out" / "training.json").read_text())["binder"]
    assert info["steps"] == 2 and info["grad_align"] == 1.0 and info["grad_align_video"] == 0.5
    assert "--grad-align 1.0 --grad-align-video 0.5" in info["command"]
    assert 0 < info["final_losses"]["ga"] < 2 * 1.5 + 1e-6  # both terms, each in [0, 2] x weight
    assert ImageBindBinder.from_pretrained(tmp_path / "out" / "binder").clips == BINDER_CLIPS


def test_binder_align_stage_fine_tunes_the_trained_binder_in_place(tmp_path, monkeypatch) -> None:
    import json

    import pytest
    from safetensors.torch import load_file
    from training.world.train import build_parser, run_stage

    from avbridge.errors import AvbridgeError

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    common = ["--clips", "4", "--batch", "2", "--models", str(out), "--device", "cpu"]
    with pytest.raises(AvbridgeError, match="binder.*missing.*train binder"):
        run_stage("binder-align", build_parser().parse_args(["binder-align", "--steps", "1", *common]))
    run_stage("binder", build_parser().parse_args(["binder", "--steps", "1", *common]))
    before = load_file(out / "binder" / "model.safetensors")
    run_stage("binder-align", build_parser().parse_args(["binder-align", "--steps", "2", *common]))
    after = load_file(out / "binder" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    info = json.loads((out / "training.json").read_text())
    assert set(info) == {"binder", "binder-align"}
    align = info["binder-align"]
    assert align["steps"] == 2 and align["grad_align"] == 4.0 and align["init"] == str(out / "binder")
    assert "binder-align" in align["command"] and "--cosine" in align["command"]
    assert align["final_losses"]["ga"] > 0
    before = load_file(out / "binder" / "model.safetensors")
    run_stage("binder-align-av", build_parser().parse_args(["binder-align-av", "--steps", "1", *common]))
    after = load_file(out / "binder" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    av = json.loads((out / "training.json").read_text())["binder-align-av"]
    assert av["grad_align"] == 4.0 and av["grad_align_video"] == 2.0 and av["steps"] == 1
