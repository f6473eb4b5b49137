"""The embedded world's evaluation classifiers (``avbridge.world.evalmodels``) as extractors.

Two extractors share one :class:`~avbridge.world.evalmodels.EvalModels`:

- ``world-audio`` (modality "audio": audio files, and the soundtrack of a video);
- ``world-video`` (modality "visual": videos, and images scored as one-frame videos).

``features`` is the classifier's pooled embedding (the input of its heads, 96-d), used
for FD/KID; ``probabilities`` is the softmax of the *class* head (KL, ISc), and
``probabilities_colour`` / ``probabilities_size`` are kept in the cache too. ``version``
is a hash of the shipped weight file's bytes (plus an output-layout tag), so retrained
weights never reuse cached features.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from avbridge.errors import AvbridgeError, MediaError
from avbridge.io.media import Audio, Image, Video

#: bump when the outputs' layout changes (part of the cache version)
LAYOUT = "v1"
#: the head whose probabilities are ``probabilities`` (KL, ISc)
MAIN_HEAD = "class"


def weights_version(path: str | Path) -> str:
    """``LAYOUT-<sha256[:16]>`` of a weight file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return f"{LAYOUT}-{h.hexdigest()[:16]}"


def _outputs(pred: Any) -> dict[str, np.ndarray]:
    vec = pred.vector()[0]
    feats = pred.features[0] if pred.features is not None else vec
    out = {"features": np.asarray(feats, dtype=np.float64),
           "label_vector": np.asarray(vec, dtype=np.float64)}
    for head, p in pred.probs.items():
        p = np.asarray(p[0], dtype=np.float64)
        out["probabilities" if head == MAIN_HEAD else f"probabilities_{head}"] = p / p.sum()
    return out


class _WorldExtractor:
    name: str
    version: str
    modality: str

    def features(self, media: Any) -> np.ndarray:
        return self.extract(media)["features"]

    def probabilities(self, media: Any) -> np.ndarray:
        return self.extract(media)["probabilities"]

    def extract(self, media: Any) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError


class WorldAudioExtractor(_WorldExtractor):
    """The world's audio classifier: audio, or a video's soundtrack."""

    modality = "audio"

    def __init__(self, models: Any, version: str, name: str = "world-audio"):
        self.models, self.version, self.name = models, version, name

    def extract(self, media: Any) -> dict[str, np.ndarray]:
        audio = media.audio if isinstance(media, Video) else media
        if not isinstance(audio, Audio):
            raise MediaError(None, f"{self.name} needs audio, got {type(media).__name__}")
        return _outputs(self.models.predict_audio([audio]))


class WorldVideoExtractor(_WorldExtractor):
    """The world's video classifier: a video, or an image as a one-frame video."""

    modality = "visual"

    def __init__(self, models: Any, version: str, name: str = "world-video"):
        self.models, self.version, self.name = models, version, name

    def extract(self, media: Any) -> dict[str, np.ndarray]:
        if not isinstance(media, (Video, Image)):
            raise MediaError(None, f"{self.name} needs a video or an image, got {type(media).__name__}")
        return _outputs(self.models.predict_video([media]))


def world_extractors(directory: str | Path | None = None, device: str = "cpu") -> list[Any]:
    """Both world extractors, from ``directory`` (default: the weights shipped with avbridge)."""
    from avbridge.world.evalmodels import WEIGHTS_DIR, EvalModels

    d = Path(directory) if directory is not None else WEIGHTS_DIR
    if not EvalModels.available(d):
        raise AvbridgeError(
            f"world evaluation weights not found in {d} (need audio.safetensors and "
            "video.safetensors; `python -m avbridge.world.evalmodels train` makes them)"
        )
    models = EvalModels.load(d, device=device)
    return [
        WorldAudioExtractor(models, weights_version(d / "audio.safetensors")),
        WorldVideoExtractor(models, weights_version(d / "video.safetensors")),
    ]
