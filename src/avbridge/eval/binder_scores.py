"""Binder-space scores: AV-align_bind, VT-align_bind, AT-align_bind and the IB-score.

The paper's *-align_bind scores are cosine similarities, in a binder's embedding
space (ImageBind in the paper), between the video (or image), audio and text of one
sample. The IB-score used by later V2A work is 100 x the cosine between the
condition and the generated output. All work with any
:class:`~avbridge.models.binders.base.Binder`: if that binder also guided generation,
these scores are not independent (the report says so).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from avbridge.eval.extractors import embed_media
from avbridge.io.media import Video
from avbridge.models.binders.base import Binder


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 if either is zero)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na == 0 or nb == 0 else float(a @ b / (na * nb))


def ib_score(condition: np.ndarray, generated: np.ndarray) -> float:
    """IB-score: 100 x cosine(condition embedding, generated embedding)."""
    return 100.0 * cosine(condition, generated)


def align_bind_scores(embeddings: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Pairwise cosines from pooled embeddings keyed "video" / "image" / "audio" / "text".

    ``AV-align_bind`` = cos(video, audio), ``VT-align_bind`` = cos(video, text),
    ``AT-align_bind`` = cos(audio, text). An image stands in for the video when there
    is none (I2A / A2I). Pairs with a missing side are left out.
    """
    visual = embeddings.get("video", embeddings.get("image"))
    audio, text = embeddings.get("audio"), embeddings.get("text")
    out: dict[str, float] = {}
    if visual is not None and audio is not None:
        out["AV-align_bind"] = cosine(visual, audio)
    if visual is not None and text is not None:
        out["VT-align_bind"] = cosine(visual, text)
    if audio is not None and text is not None:
        out["AT-align_bind"] = cosine(audio, text)
    return out


def binder_scores(
    binder: Binder,
    *,
    video: Any = None,
    audio: Any = None,
    image: Any = None,
    text: str | None = None,
    condition: str | None = None,
) -> dict[str, float]:
    """Embed the given media with ``binder`` and return the align_bind scores (and IB-score).

    ``video`` / ``audio`` / ``image`` are ``avbridge.io.media`` containers; a video with a
    soundtrack supplies the audio when ``audio`` is not given. ``condition`` names which
    of "video", "image", "audio", "text" was the condition: the IB-score is then
    100 x cos(condition, the generated other modality).
    """
    emb: dict[str, np.ndarray] = {}
    if video is not None:
        emb["video"] = embed_media(binder, video).pooled[0].double().numpy()
        if audio is None and isinstance(video, Video) and video.audio is not None:
            emb["audio"] = embed_media(binder, video, audio_of_video=True).pooled[0].double().numpy()
    if audio is not None:
        emb["audio"] = embed_media(binder, audio).pooled[0].double().numpy()
    if image is not None:
        emb["image"] = embed_media(binder, image).pooled[0].double().numpy()
    if text is not None:
        emb["text"] = embed_media(binder, text).pooled[0].double().numpy()
    out = align_bind_scores(emb)
    if condition is not None:
        others = [m for m in ("audio", "video", "image") if m in emb and m != condition]
        if condition in emb and others:
            out["IB-score"] = ib_score(emb[condition], emb[others[0]])
    return out
