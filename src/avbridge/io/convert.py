"""Conversions between the numpy media containers and the tensors models take.

Tensors follow the Binder/Generator conventions: audio (B, N) float; video
(B, T, 3, H, W) float in [0, 1]; images (B, 3, H, W) float in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from avbridge.io.media import Audio, Image, Video, resample


def audio_to_tensor(audio: Audio, sample_rate: int | None = None) -> torch.Tensor:
    """(1, N) float32, resampled to ``sample_rate`` when given."""
    x = np.asarray(audio.samples, dtype=np.float32)
    if sample_rate is not None and int(sample_rate) != int(audio.sample_rate):
        x = resample(x, int(audio.sample_rate), int(sample_rate))
    return torch.from_numpy(np.ascontiguousarray(x))[None]


def video_to_tensor(video: Video) -> torch.Tensor:
    """(1, T, 3, H, W) float in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(video.frames)).float().div_(255.0)
    return x.permute(0, 3, 1, 2)[None]


def image_to_tensor(image: Image) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(image.pixels)).float().div_(255.0)
    return x.permute(2, 0, 1)[None]


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def tensor_to_audio(x: torch.Tensor, sample_rate: int, num_samples: int | None = None) -> Audio:
    """First item of (B, N) or (N,) audio as an Audio, clipped to [-1, 1] and cut/padded to length."""
    s = x.detach().float().reshape(-1, x.shape[-1])[0].clamp(-1, 1).cpu().numpy().astype(np.float32)
    if num_samples is not None:
        s = s[:num_samples] if len(s) >= num_samples else np.pad(s, (0, num_samples - len(s)))
    return Audio(np.ascontiguousarray(s), int(sample_rate))


def tensor_to_video(x: torch.Tensor, fps: float, audio: Audio | None = None) -> Video:
    """First item of (B, T, 3, H, W) as a uint8 Video."""
    frames = _to_uint8(x[0].permute(0, 2, 3, 1))
    return Video(np.ascontiguousarray(frames), float(fps), audio)


def tensor_to_image(x: torch.Tensor) -> Image:
    """First item of (B, 3, H, W) as a uint8 Image."""
    return Image(np.ascontiguousarray(_to_uint8(x[0].permute(1, 2, 0))))


def key_frame(media: Video | Image) -> np.ndarray:
    """The middle frame of a video (or the image itself), uint8 (H, W, 3)."""
    if isinstance(media, Image):
        return media.pixels
    return media.frames[len(media.frames) // 2]
