"""The extensions a config switches on, and that the paper's settings switch none on."""

from __future__ import annotations

import torch

from avbridge.align import AlignConfig
from avbridge.align.extensions import (
    EnvelopeGradient,
    LatentFrameMean,
    NormalizedGradient,
    PerClipLoss,
    Refine,
    from_config,
)
from avbridge.align.losses import AlignLoss
from avbridge.tasks import TASKS


def test_the_papers_settings_use_no_extension() -> None:
    for spec in TASKS.values():
        assert from_config(spec.paper_config()) == []


def test_each_setting_switches_on_its_named_extension_in_a_fixed_order() -> None:
    cfg = AlignConfig(per_clip=True, mel_grad="envelope", latent_grad="frame-mean", update="norm-grad",
                      refine={"audio": 0.5})
    got = from_config(cfg)
    want = [PerClipLoss, EnvelopeGradient, LatentFrameMean, NormalizedGradient, Refine]
    assert [type(e) for e in got] == want
    assert got[1].mel and not got[1].frames
    assert from_config(AlignConfig(refine={"audio": 0.0})) == []


def test_per_clip_loss_replaces_the_loss_keeping_its_weights() -> None:
    base = AlignLoss(AlignConfig(weights={"at": 0.0}).weights)  # type: ignore[arg-type]
    out = PerClipLoss().loss(base)
    assert out.per_clip and out.weights == base.weights and not base.per_clip


class _S:
    def __init__(self, modality: str, z: torch.Tensor) -> None:
        self.modality, self.z, self.key = modality, z, "visual" if modality != "audio" else "audio"


def test_normalized_gradient_gives_unit_rms_per_sample_and_frame_mean_flattens_video_only() -> None:
    g = torch.Generator().manual_seed(0)
    video = torch.zeros(2, 4, 3, 5, 5, requires_grad=True)
    video.grad = torch.randn(2, 4, 3, 5, 5, generator=g) * torch.tensor([1.0, 50.0]).view(2, 1, 1, 1, 1)
    audio = torch.zeros(2, 8, 16, 4, requires_grad=True)
    audio.grad = torch.randn(2, 8, 16, 4, generator=g)
    before = audio.grad.clone()
    streams = [_S("video", video), _S("audio", audio)]
    LatentFrameMean().filter_grads(streams)
    assert torch.allclose(video.grad, video.grad.mean(dim=(-2, -1), keepdim=True).expand_as(video.grad))
    assert torch.equal(audio.grad, before)
    NormalizedGradient().filter_grads(streams)
    rms = video.grad.pow(2).mean(dim=(1, 2, 3, 4)).sqrt()
    assert torch.allclose(rms, torch.ones(2), atol=1e-5)
