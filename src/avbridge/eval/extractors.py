"""Feature extractors: the protocol, and binders used as extractors.

An extractor turns one media item (``avbridge.io.media`` Audio / Video / Image, or a
text string) into a feature vector, and optionally class probabilities. Its
``name`` and ``version`` are part of the feature-cache key, so a new checkpoint
(new version) never reuses stale features.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from avbridge.errors import AvbridgeError
from avbridge.io.media import Audio, Image, Video
from avbridge.models.binders.base import Binder, Embedding


@runtime_checkable
class FeatureExtractor(Protocol):
    """``name`` + ``version`` identify the model (cache key); ``modality`` what it reads.

    ``modality`` is "audio", "video", "image", "visual" (video or image), "text" or "any".
    An "audio" extractor also reads a video's soundtrack. Implementations may also
    define ``probabilities(media) -> (C,)`` (rows summing to 1) and
    ``extract(media) -> dict`` returning all outputs of one forward pass
    (``features`` plus optional ``probabilities``, ``probabilities_sigmoid``, ...).
    """

    name: str
    version: str
    modality: str

    def features(self, media: Any) -> np.ndarray: ...


def extract_outputs(extractor: FeatureExtractor, media: Any) -> dict[str, np.ndarray]:
    """Every output of ``extractor`` for ``media``: ``{"features": ..., ["probabilities": ...]}``."""
    if hasattr(extractor, "extract"):
        out = dict(extractor.extract(media))
    else:
        out = {"features": np.asarray(extractor.features(media))}
        if hasattr(extractor, "probabilities"):
            out["probabilities"] = np.asarray(extractor.probabilities(media))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def media_modality(media: Any) -> str:
    """ "video", "audio", "image" or "text" for a media container or a string."""
    if isinstance(media, Video):
        return "video"
    if isinstance(media, Audio):
        return "audio"
    if isinstance(media, Image):
        return "image"
    if isinstance(media, str):
        return "text"
    raise AvbridgeError(f"cannot extract features from {type(media).__name__}")


def accepts(extractor: FeatureExtractor, media: Any) -> bool:
    """Whether ``extractor`` reads this kind of media (a video also offers its audio track)."""
    kind = media_modality(media)
    if extractor.modality == "any" or extractor.modality == kind:
        return True
    if extractor.modality == "visual":
        return kind in ("video", "image")
    return extractor.modality == "audio" and kind == "video" and media.audio is not None


def module_fingerprint(module: torch.nn.Module) -> str:
    """A short hash of a module's tensors: the cache version for in-memory models."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().to("cpu").reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def embed_media(binder: Binder, media: Any, audio_of_video: bool = False) -> Embedding:
    """Binder embedding of one media item (batch of 1), without gradients.

    ``audio_of_video`` embeds a video's soundtrack instead of its pictures.
    """
    with torch.no_grad():
        if isinstance(media, Video) and audio_of_video:
            if media.audio is None:
                raise AvbridgeError("video has no audio track to embed")
            media = media.audio
        if isinstance(media, Video):
            frames = torch.from_numpy(np.ascontiguousarray(media.frames)).permute(0, 3, 1, 2)
            return binder.embed_video(frames[None].float() / 255.0, float(media.fps))
        if isinstance(media, Audio):
            wav = torch.from_numpy(np.ascontiguousarray(media.samples, dtype=np.float32))[None]
            return binder.embed_audio(wav, int(media.sample_rate))
        if isinstance(media, Image):
            px = torch.from_numpy(np.ascontiguousarray(media.pixels)).permute(2, 0, 1)
            return binder.embed_image(px[None].float() / 255.0)
        if isinstance(media, str):
            return binder.embed_text([media])
    raise AvbridgeError(f"cannot embed {type(media).__name__}")


class BinderExtractor:
    """Any :class:`~avbridge.models.binders.base.Binder` as an extractor of pooled embeddings.

    ``extract`` returns ``features`` (pooled, (D,)) and ``clips`` (C, D); for a video
    with sound it also returns ``audio_features`` (the soundtrack's embedding), so that
    a generated joint clip gives both sides of AV-align_bind.
    """

    modality = "any"

    def __init__(self, binder: Binder, name: str, version: str | None = None):
        self.binder = binder
        self.name = name
        if version is None:
            version = module_fingerprint(binder) if isinstance(binder, torch.nn.Module) else "unversioned"
        self.version = version

    def extract(self, media: Any) -> dict[str, np.ndarray]:
        emb = embed_media(self.binder, media)
        out = {"features": emb.pooled[0].double().numpy(), "clips": emb.clips[0].double().numpy()}
        if isinstance(media, Video) and media.audio is not None:
            out["audio_features"] = (
                embed_media(self.binder, media, audio_of_video=True).pooled[0].double().numpy()
            )
        return out

    def features(self, media: Any) -> np.ndarray:
        return self.extract(media)["features"]
