"""ImageBind model: official key names, reference equality, checkpoint loading."""

from __future__ import annotations

import json

import pytest
import torch

from avbridge.errors import CheckpointError
from avbridge.models.binders.imagebind import (
    ImageBindBinder,
    ImageBindConfig,
    ImageBindModel,
    load_imagebind_weights,
)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_huge_preset_has_exactly_the_official_keys_and_shapes(fixtures_dir):
    tsv = fixtures_dir / "imagebind_huge_keys.tsv"
    if not tsv.is_file():
        pytest.skip(f"{tsv} missing")
    rows = [line.split("\t") for line in tsv.read_text().splitlines()[1:]]
    expected = {k: tuple(int(d) for d in s.split("x")) if s else () for k, s in rows}
    with torch.device("meta"):
        model = ImageBindModel(ImageBindConfig.preset("huge"))
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(got) - set(expected)) == []
    assert sorted(set(expected) - set(got)) == []
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
    assert len(got) == 864


def test_config_json_round_trip_and_validation():
    cfg = ImageBindConfig.preset("tiny-32", video_frames=6)
    again = ImageBindConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.vision_patch_grid == (3, 4, 4)
    with pytest.raises(ValueError, match="multiple"):
        ImageBindConfig.preset("tiny", video_frames=3)
    with pytest.raises(ValueError, match="unknown"):
        ImageBindConfig.from_dict({"vision_width": 3})
    with pytest.raises(ValueError, match="preset"):
        ImageBindConfig.preset("gigantic")


def test_reproduces_reference_embeddings(small_fixture):
    t, meta = small_fixture["tensors"], small_fixture["meta"]
    cfg = ImageBindConfig.preset("tiny", **meta["config"])
    with torch.device("meta"):
        model = ImageBindModel(cfg)
    load_imagebind_weights(model, small_fixture["weights"]).eval()
    binder = ImageBindBinder(model)
    out = binder.reference_outputs(
        {"vision": t["images"], "text": t["tokens"], "audio": t["audio_input"]}
    )
    assert rel(out["vision"], t["embed_image"]) < 1e-4
    assert rel(out["text"], t["embed_text"]) < 1e-4
    assert rel(out["audio"], t["embed_audio"]) < 1e-4
    assert rel(binder.reference_outputs({"vision": t["video"]})["vision"], t["embed_video"]) < 1e-4
    # The Binder's tokenizer + model agree with the reference's text embedding (unit-norm).
    emb = binder.embed_text(meta["texts"])
    assert rel(emb.pooled, torch.nn.functional.normalize(t["embed_text"], dim=-1)) < 1e-4


def _tiny_state_dict() -> dict[str, torch.Tensor]:
    return ImageBindBinder.from_preset("tiny", seed=3).model.state_dict()


def test_loads_pth_ignoring_other_modalities(tmp_path):
    sd = dict(_tiny_state_dict())
    sd["modality_trunks.depth.blocks.0.norm_1.weight"] = torch.ones(4)
    sd["modality_preprocessors.imu.pos_embed"] = torch.ones(1, 2, 3)
    sd["modality_heads.thermal.0.weight"] = torch.ones(4)
    path = tmp_path / "imagebind_tiny.pth"
    torch.save(sd, path)
    binder = ImageBindBinder.from_checkpoint(path, preset="tiny")
    for k, v in binder.model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert not any(p.requires_grad for p in binder.model.parameters())


def test_missing_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="nope.pth.*not found"):
        ImageBindBinder.from_checkpoint(path, preset="tiny")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path, suffix):
    sd = _tiny_state_dict()
    path = tmp_path / f"model{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"model\\{suffix}.*truncated"):
        ImageBindBinder.from_checkpoint(path, preset="tiny")


def test_wrong_checkpoint_names_missing_and_unexpected_keys(tmp_path):
    sd = dict(_tiny_state_dict())
    del sd["modality_heads.vision.2.weight"]
    sd["model.encoder.layer.0.weight"] = torch.zeros(3)
    path = tmp_path / "other.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError) as err:
        ImageBindBinder.from_checkpoint(path, preset="tiny")
    msg = str(err.value)
    assert "other.pth" in msg
    assert "missing keys: modality_heads.vision.2.weight" in msg
    assert "unexpected keys: model.encoder.layer.0.weight" in msg
    # Right keys, wrong preset: the shape mismatch is named.
    torch.save(_tiny_state_dict(), path)
    with pytest.raises(CheckpointError, match="shape mismatches"):
        ImageBindBinder.from_checkpoint(path, preset="small")
    # Not a checkpoint at all.
    path.write_text("hello")
    with pytest.raises(CheckpointError, match="other.pth"):
        ImageBindBinder.from_checkpoint(path, preset="tiny")
