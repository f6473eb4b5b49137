"""PANNs CNN14: architecture keys/shapes on the meta device, frontend vs librosa, checkpoint loading."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from avbridge.errors import CheckpointError, MediaError
from avbridge.eval import panns
from avbridge.io.media import Audio

DOCS = Path(__file__).resolve().parents[2] / "docs" / "eval.md"


def _documented_table() -> dict[str, tuple[int, ...]]:
    rows = re.findall(r"^\| `([\w.]+)` \| \(([\d, ]*)\) \|", DOCS.read_text(), flags=re.M)
    return {k: tuple(int(s) for s in shape.replace(" ", "").split(",") if s) for k, shape in rows}


def test_meta_device_architecture_matches_documented_official_keys():
    with torch.device("meta"):
        model = panns.Cnn14()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    table = _documented_table()
    assert len(table) == 84
    assert got == table
    assert got == panns.CNN14_KEYS
    # a few facts straight from the official model
    assert got["spectrogram_extractor.stft.conv_real.weight"] == (513, 1, 1024)
    assert got["logmel_extractor.melW"] == (513, 64)
    assert got["conv_block6.conv2.weight"] == (2048, 2048, 3, 3)
    assert got["fc_audioset.weight"] == (527, 2048)
    out = model(torch.empty(2, 32000, device="meta"))
    assert out["embedding"].shape == (2, 2048) and out["logits"].shape == (2, 527)


def test_frontend_matches_librosa():
    librosa = pytest.importorskip("librosa")
    model = panns.Cnn14(panns.TINY)
    mel = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000)
    np.testing.assert_allclose(model.logmel_extractor.melW.numpy().T, mel, atol=1e-7)
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    ref = np.abs(librosa.stft(x, n_fft=1024, hop_length=320, window="hann", pad_mode="reflect")) ** 2
    got = model.spectrogram_extractor(torch.from_numpy(x)[None])[0, 0].numpy().T
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-5 * ref.max())
    ref_db = 10 * np.log10(np.maximum(mel @ ref, 1e-10))
    got_db = model.logmel(torch.from_numpy(x)[None])[0, 0].numpy().T
    np.testing.assert_allclose(got_db, ref_db, atol=1e-3)


def test_checkpoint_round_trip_and_errors(tmp_path):
    torch.manual_seed(0)
    model = panns.Cnn14(panns.TINY)
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.2)
    ck = tmp_path / "cnn14.pth"
    torch.save({"model": model.state_dict(), "iteration": torch.tensor(3)}, ck)
    ext = panns.PannsExtractor.from_checkpoint(ck)
    assert ext.model.config.channels == panns.TINY.channels and ext.model.config.classes_num == 10
    audio = Audio(np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    out = ext.extract(audio)
    assert out["features"].shape == (32,) and out["probabilities"].shape == (10,)
    assert out["probabilities"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(out["features"], ext.extract(audio)["features"])  # deterministic
    assert len(ext.version) == 16

    with pytest.raises(CheckpointError, match="not found"):
        panns.PannsExtractor.from_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="junk.pth"):
        panns.PannsExtractor.from_checkpoint(tmp_path / "junk.pth")
    sd = model.state_dict()
    del sd["fc1.bias"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing keys.*fc1.bias"):
        panns.PannsExtractor.from_checkpoint(tmp_path / "partial.pth")
    sd = model.state_dict()
    sd["logmel_extractor.melW"] = torch.zeros(513, 32)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="shape mismatch.*melW"):
        panns.PannsExtractor.from_checkpoint(tmp_path / "shape.pth")

    with pytest.raises(MediaError, match="too short"):
        ext.extract(Audio(np.zeros(1000, np.float32), 16000))
