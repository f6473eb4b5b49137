"""Guidance decoders: small decoders used only inside the guidance branch.

A guided step decodes the predicted clean latent ``z0`` and backpropagates through the
decoder (docs/method.md). With the model's own VAE that decode and its backward cost
several UNet steps at full size; a guidance decoder maps the latent to what the binder
reads (log-mel for audio, frames for video and images) at a fraction of the cost. The
final output is always decoded by the model's own VAE.

* SD 1.5 latents (AnimateDiff, its image mode): diffusers' :class:`AutoencoderTiny`, the
  TAESD architecture (``madebyollin/taesd`` for real use), decoding the UNet's latents
  directly to frames in [-1, 1].
* AudioLDM: :class:`AudioGuidanceDecoder`, a small convolutional decoder distilled from the
  model's own VAE decoder by ``avbridge distill-decoder`` (:mod:`avbridge.apps.distill`).

A generator carries its guidance decoder as the attribute ``guidance_decoder``
(:func:`attach`); the aligner uses it when ``AlignConfig.guidance_decoder`` is set.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models import AutoencoderTiny, ModelMixin
from torch import nn

from avbridge.errors import CheckpointError
from avbridge.models.generators.base import MediaSpec, SpectrogramFeatures

#: Hub id of TAESD, the tiny decoder for SD 1.5 latents (AnimateDiff, its image mode).
TAESD_HUB_ID = "madebyollin/taesd"


class _ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class AudioGuidanceDecoder(ModelMixin, ConfigMixin):
    """UNet latents (B, C, h, w) of an AudioLDM -> its VAE's log-mel (B, 1, h * f, w * f).

    ``channels[i]`` is the width after ``i`` upsamplings (nearest x2 + conv), so
    ``len(channels) - 1 == log2(upsample_factor)``; each scale has ``blocks`` residual
    blocks. It reads the UNet's latents as they are (the VAE's scaling and shift are
    learnt), so it replaces ``generator.decode_mel`` one for one.
    """

    config_name = "config.json"  # type: ignore[assignment]  # ConfigMixin declares it as a bare None

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 8,
        upsample_factor: int = 4,
        channels: tuple[int, ...] = (96, 48, 24),
        blocks: int = 1,
        out_channels: int = 1,
    ):
        super().__init__()
        ups = int(round(math.log2(upsample_factor)))
        if 2**ups != upsample_factor or len(channels) != ups + 1:
            raise ValueError(
                f"upsample_factor {upsample_factor} must be a power of 2 with len(channels) == log2 + 1, "
                f"got channels {tuple(channels)}"
            )
        self.conv_in = nn.Conv2d(latent_channels, channels[0], 3, padding=1)
        self.stages = nn.ModuleList()
        for i, ch in enumerate(channels):
            layers: list[nn.Module] = [_ResBlock(ch) for _ in range(blocks)]
            if i + 1 < len(channels):
                layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                           nn.Conv2d(ch, channels[i + 1], 3, padding=1)]
            self.stages.append(nn.Sequential(*layers))
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)
        for stage in self.stages:
            x = stage(x)
        return self.conv_out(F.silu(x))


def audio_decoder_for(generator: Any, channels: tuple[int, ...] | None = None, blocks: int = 1,
                      seed: int = 0) -> AudioGuidanceDecoder:
    """A fresh (random) :class:`AudioGuidanceDecoder` shaped for an AudioLDM generator's latents."""
    factor = int(generator.vae_scale_factor)
    ups = int(round(math.log2(factor)))
    if channels is None:
        channels = tuple(max(16, 96 // 2**i) for i in range(ups + 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AudioGuidanceDecoder(latent_channels=int(generator.latent_channels), upsample_factor=factor,
                                    channels=tuple(channels), blocks=blocks)


def _taesd(latent_channels: int, upsample_factor: int, width: int, encoder_width: int, blocks: int,
           seed: int) -> AutoencoderTiny:
    """A random :class:`AutoencoderTiny` (the TAESD architecture), one width per part."""
    n = int(round(math.log2(upsample_factor))) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderTiny(
            encoder_block_out_channels=(encoder_width,) * n, decoder_block_out_channels=(width,) * n,
            num_encoder_blocks=(1,) * n, num_decoder_blocks=(blocks,) * n, latent_channels=latent_channels,
        )


def tiny_taesd(latent_channels: int = 4, upsample_factor: int = 4, width: int = 8,
               seed: int = 0) -> AutoencoderTiny:
    """A tiny random :class:`AutoencoderTiny` (the TAESD architecture) for tests."""
    return _taesd(latent_channels, upsample_factor, width, width, 1, seed)


def visual_decoder_for(generator: Any, width: int = 32, blocks: int = 1, seed: int = 0) -> AutoencoderTiny:
    """A fresh (random) :class:`AutoencoderTiny` (the TAESD architecture) shaped for a video or
    image generator's latents, to distil from its VAE (``avbridge distill-decoder``); its
    encoder, which guidance never runs, is kept 4 channels wide."""
    return _taesd(int(generator.latent_channels), int(generator.vae_scale_factor), width, 4, blocks, seed)


def load_guidance_decoder(where: str | Path) -> nn.Module:
    """An :class:`AudioGuidanceDecoder` or :class:`AutoencoderTiny` from a saved folder (or a
    hub id already resolved to a folder), chosen by its ``config.json`` ``_class_name``."""
    folder = Path(where)
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise CheckpointError(folder, "not a guidance decoder folder (no config.json)")
    try:
        name = json.loads(cfg.read_text()).get("_class_name")
    except (OSError, ValueError) as e:
        raise CheckpointError(cfg, f"unreadable config: {e}") from e
    classes: dict[str, type[ModelMixin]] = {"AudioGuidanceDecoder": AudioGuidanceDecoder,
                                            "AutoencoderTiny": AutoencoderTiny}
    if name not in classes:
        raise CheckpointError(cfg, f"unknown guidance decoder class {name!r} (AudioGuidanceDecoder or "
                              "AutoencoderTiny)")
    try:
        model = classes[name].from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - any load failure is a checkpoint problem
        raise CheckpointError(folder, f"cannot load {name}: {' '.join(str(e).split())}") from e
    model.requires_grad_(False)
    return model.eval()


def decoder_modality(decoder: nn.Module) -> str:
    """``"audio"`` for an AudioGuidanceDecoder, ``"visual"`` for AutoencoderTiny (video/images)."""
    return "audio" if isinstance(decoder, AudioGuidanceDecoder) else "visual"


def attach(generator: Any, decoder: nn.Module | None) -> Any:
    """Give ``generator`` a guidance decoder (frozen, on its device and dtype); returns the
    generator. ``None`` removes it. Raises CheckpointError when the decoder does not fit."""
    if decoder is None:
        generator.guidance_decoder = None
        return generator
    want = "audio" if generator.modality == "audio" else "visual"
    if decoder_modality(decoder) != want:
        raise CheckpointError(None, f"a {type(decoder).__name__} cannot decode {generator.modality} latents")
    # a diffusers ConfigMixin's FrozenDict (nn.Module.__getattr__ types it as Tensor | Module)
    config: Any = decoder.config
    if int(config.latent_channels) != int(generator.latent_channels):
        raise CheckpointError(None, f"guidance decoder reads {config.latent_channels} latent "
                              f"channels, the {generator.modality} generator has {generator.latent_channels}")
    decoder.requires_grad_(False)
    # nn.Module.to: ModelMixin.to warns about fp32 modules this decoder does not have
    generator.guidance_decoder = nn.Module.to(decoder, device=generator.device, dtype=generator.dtype).eval()
    return generator


def decode_mel(decoder: nn.Module, z0: torch.Tensor) -> torch.Tensor:
    """Guidance decode of audio latents -> log-mel (B, 1, T, bins), like ``decode_mel``."""
    return decoder(z0.to(next(decoder.parameters()).dtype)).float()


def decode_features(
    decoder: nn.Module, generator: Any, z0: torch.Tensor, spec: MediaSpec
) -> SpectrogramFeatures:
    """Guidance decode of audio latents -> SpectrogramFeatures (as ``generator.decode_features``)."""
    from avbridge.models.generators.audioldm import log_mel_features

    n = spec.num_samples(generator.sample_rate)
    frames = math.ceil(n / generator.hop_length)
    mel = decode_mel(decoder, z0)[:, 0, :frames]
    if mel.shape[1] < frames:
        mel = torch.cat([mel, mel[:, -1:].expand(-1, frames - mel.shape[1], -1)], dim=1)
    return log_mel_features(mel, int(generator.sample_rate), n, hop=generator.hop_length)


def decode_frames(decoder: nn.Module, generator: Any, z0: torch.Tensor, spec: MediaSpec) -> torch.Tensor:
    """Guidance decode of SD latents with TAESD -> video (B, F, 3, H, W) or images (B, 3, H, W)
    in [0, 1], as ``generator.decode`` returns them."""
    size = generator._hw(spec)
    video = z0.dim() == 5
    if video:
        b, c, f, h, w = z0.shape
        z = z0.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    else:
        z = z0
    dt = next(decoder.parameters()).dtype
    taesd = cast(AutoencoderTiny, decoder)  # the visual guidance decoder is TAESD
    x = taesd.decode(z.to(dt)).sample.float()
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    x = (x / 2 + 0.5).clamp(0, 1)
    return x.reshape(b, f, *x.shape[1:]) if video else x


