"""What the binder sees of a latent: differentiable decode and embedding of ``z0``.

Two cost-saving paths live here (docs/method.md): video decodes only the frames the
binder's clips sample (``frame_subset``), and audio reaches the binder as the decoded
log-mel, without the vocoder (``audio_path="mel"``). Extensions may filter the
gradient that flows back through the decoded features or frames. With
``AlignConfig.guidance_decoder`` a generator's small guidance decoder
(:mod:`avbridge.models.guidance_decoders`) stands in for its VAE here, and only here;
with ``AlignConfig.guidance_encoder`` the binder's audio guidance encoder
(:mod:`avbridge.models.binders.guidance_encoder`) stands in for its audio tower.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from avbridge.align.config import AlignConfig
from avbridge.models.binders.base import Binder, Embedding
from avbridge.models.binders.preprocess import video_clip_indices
from avbridge.models.generators.base import Generator, MediaSpec

EmbedFn = Callable[[str, Any, float | None], Embedding]


def embed_media(binder: Binder, modality: str, data: Any, rate: float | None) -> Embedding:
    """Embed a media tensor (or, for ``"audio-features"``, SpectrogramFeatures) with the
    binder method that matches its modality."""
    if modality == "audio":
        if rate is None:
            raise ValueError("audio needs a sample rate")
        return binder.embed_audio(data, int(rate))
    if modality == "video":
        if rate is None:
            raise ValueError("video needs a frame rate")
        return binder.embed_video(data, float(rate))
    if modality == "image":
        return binder.embed_image(data)
    if modality == "audio-features":  # SpectrogramFeatures, the vocoder-free path
        return binder.embed_audio_features(data)  # type: ignore[attr-defined]
    raise ValueError(f"unknown modality {modality!r}")


def media_rate(generator: Generator, spec: MediaSpec) -> float | None:
    """Sample rate (audio) or frame rate (video) of a generator's output; None for images."""
    if generator.modality == "audio":
        return generator.sample_rate
    if generator.modality == "video":
        return spec.fps
    return None


def binder_frame_indices(binder: Binder, num_frames: int, fps: float) -> list[int]:
    """Sorted frame indices that the binder's clips sample from a video of ``num_frames``."""
    rows = video_clip_indices(num_frames, fps, binder.clips)
    return sorted({i for row in rows for i in row})


def decode_for_binder(
    generator: Generator, spec: MediaSpec, z0: torch.Tensor, binder: Binder, frame_subset: bool,
    decode: Callable[[torch.Tensor, MediaSpec], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Differentiable decode of ``z0`` for the binder (``decode``: default ``generator.decode``).

    Video with ``frame_subset``: the binder looks at only ``frames_per_clip`` frames per
    clip, so only those latent frames are decoded (latents (B, C, F, h, w), per-frame VAE
    as in AnimateDiff); every other frame is filled with the nearest decoded one, so the
    binder receives exactly the decoded frames it samples.
    """
    decode = decode or generator.decode
    if not (frame_subset and generator.modality == "video" and z0.dim() == 5 and spec.fps):
        return decode(z0, spec)
    total = z0.shape[2]
    idx = binder_frame_indices(binder, total, float(spec.fps))
    if len(idx) >= total:
        return decode(z0, spec)
    part = decode(z0[:, :, idx], spec)  # (B, len(idx), 3, H, W)
    pos = torch.tensor(idx, dtype=torch.float32)
    nearest = (torch.arange(total, dtype=torch.float32)[:, None] - pos[None]).abs().argmin(dim=1)
    return part[:, nearest.to(part.device)]


def uses_mel_path(generator: Generator, binder: Binder, config: AlignConfig) -> bool:
    """Whether guidance embeds this audio generator's log-mel directly (``audio_path``)."""
    return (
        config.audio_path == "mel"
        and generator.modality == "audio"
        and callable(getattr(generator, "decode_features", None))
        and callable(getattr(binder, "embed_audio_features", None))
    )


def active_guidance_decoder(generator: Generator, config: AlignConfig) -> Any:
    """The generator's guidance decoder when the config asks for it and it carries one, else None."""
    if not config.guidance_decoder:
        return None
    return getattr(generator, "guidance_decoder", None)


def _embed_audio(
    binder: Binder, config: AlignConfig, embed: EmbedFn, data: Any, rate: float | None
) -> Embedding:
    """Embed decoded audio (SpectrogramFeatures when ``rate`` is None, else a waveform) in the
    guidance branch: with the binder's guidance encoder when the config asks for it and the
    binder carries one, else with the binder (through ``embed``)."""
    encoder = getattr(binder, "guidance_encoder", None) if config.guidance_encoder else None
    if encoder is None:
        return embed("audio" if rate is not None else "audio-features", data, rate)
    b: Any = binder
    x = b.audio_input_from_features(data) if rate is None else b.preprocess_audio(data, int(rate))
    return encoder.embed_input(x)


def _embed_with_guidance_decoder(
    generator: Generator, spec: MediaSpec, z0: torch.Tensor, binder: Binder, config: AlignConfig,
    embed: EmbedFn, filters: Sequence[Any], decoder: Any,
) -> Embedding:
    """Guidance decoder in place of the VAE: log-mel for audio (to the binder's fbank, or through
    the vocoder when the binder cannot read features), frames for video and images."""
    from avbridge.models import guidance_decoders as gd

    if generator.modality == "audio":
        feats = gd.decode_features(decoder, generator, z0, spec)
        for f in filters:
            feats = f.filter_features(feats)
        accepts = getattr(binder, "accepts_audio_features", None)
        if config.audio_path == "mel" and callable(getattr(binder, "embed_audio_features", None)) and (
            accepts is None or accepts(feats)
        ):
            return _embed_audio(binder, config, embed, feats, None)
        wave = generator.vocode(feats.log_mel[:, None])  # type: ignore[attr-defined]
        n = feats.num_samples
        wave = torch.nn.functional.pad(wave, (0, max(0, n - wave.shape[-1])))[:, :n]
        for f in filters:
            wave = f.filter_media("audio", wave)
        return _embed_audio(binder, config, embed, wave, media_rate(generator, spec))
    media = decode_for_binder(generator, spec, z0, binder, config.frame_subset,
                              decode=lambda z, s: gd.decode_frames(decoder, generator, z, s))
    for f in filters:
        media = f.filter_media(generator.modality, media)
    return embed(generator.modality, media, media_rate(generator, spec))


def embed_prediction(
    generator: Generator,
    spec: MediaSpec,
    z0: torch.Tensor,
    binder: Binder,
    config: AlignConfig,
    embed: EmbedFn,
    filters: Sequence[Any] = (),
) -> Embedding:
    """Differentiable decode + embedding of ``z0`` inside the loop (mel or media path).

    ``filters`` are extensions with ``filter_features(features)`` / ``filter_media(modality,
    media)`` hooks that change the gradient flowing back into the decoded output.
    """
    decoder = active_guidance_decoder(generator, config)
    if decoder is not None:
        return _embed_with_guidance_decoder(generator, spec, z0, binder, config, embed, filters, decoder)
    if uses_mel_path(generator, binder, config):
        feats = generator.decode_features(z0, spec)  # type: ignore[attr-defined]
        for f in filters:
            feats = f.filter_features(feats)
        accepts = getattr(binder, "accepts_audio_features", None)
        if accepts is None or accepts(feats):
            return _embed_audio(binder, config, embed, feats, None)
    media = decode_for_binder(generator, spec, z0, binder, config.frame_subset)
    for f in filters:
        media = f.filter_media(generator.modality, media)
    if generator.modality == "audio":
        return _embed_audio(binder, config, embed, media, media_rate(generator, spec))
    return embed(generator.modality, media, media_rate(generator, spec))
