"""Small fakes shared by the evaluation tests (a unique module name: tests/eval is on sys.path)."""

from __future__ import annotations

import torch

from avbridge.models.binders.base import ClipSpec, Embedding


class FixedBinder:
    """Protocol-satisfying fake: each modality maps to a fixed direction."""

    clips = ClipSpec()
    DIRS = {"video": [1.0, 0, 0], "image": [1.0, 0, 0], "audio": [1.0, 1.0, 0], "text": [0, 0, 1.0]}

    def _e(self, kind: str, b: int) -> Embedding:
        return Embedding.from_clips(torch.tensor(self.DIRS[kind]).repeat(b, 2, 1))

    def embed_video(self, frames, fps):
        return self._e("video", frames.shape[0])

    def embed_image(self, images):
        return self._e("image", images.shape[0])

    def embed_audio(self, waveform, sample_rate):
        return self._e("audio", waveform.shape[0])

    def embed_text(self, texts):
        return self._e("text", len(texts))


def tiny_panns_extractor(version: str = "tiny-test"):
    """A CNN14 of the TINY config with default init (conv weights doubled so features vary)."""
    from avbridge.eval import panns

    torch.manual_seed(0)
    model = panns.Cnn14(panns.TINY)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and p.ndim == 4:
                p.mul_(2.0)
    return panns.PannsExtractor(model, version=version)
