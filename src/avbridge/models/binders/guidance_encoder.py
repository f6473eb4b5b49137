"""The audio guidance encoder: a shallow copy of ImageBind's audio tower, for guidance only.

At full size the guided audio step spends most of its excess in ImageBind-huge's audio
tower (12 blocks, forward and backward, over 1-s clips padded to 2.04 s). The guidance
encoder keeps the tower's first ``num_blocks`` blocks, its stem and head, and reads only
the patches that cover each clip's real frames (its position embeddings are the
tower's, cut to those patches); ``avbridge distill-encoder`` then fits it to the tower's
clip embeddings, and their gradients, on the generator's own log-mels. It stands in for
the binder's audio tower in the guidance branch only (``AlignConfig.guidance_encoder``);
the condition, the prompt's text and every reported score use the binder itself.

A binder carries its guidance encoder as the plain attribute ``guidance_encoder``
(:func:`attach`), outside its module tree: the binder's ``state_dict``, ``save_pretrained``
and ``.to()`` never see it, so :func:`attach` moves it to the binder's device and dtype.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models import ModelMixin
from torch import nn

from avbridge.errors import CheckpointError
from avbridge.models.binders.base import Embedding
from avbridge.models.binders.imagebind import (
    ImageBindBinder,
    PatchPreprocessor,
    PatchStem,
    SelectElement,
    Trunk,
)
from avbridge.models.binders.preprocess import fbank_clip_frames


class AudioGuidanceEncoder(ModelMixin, ConfigMixin):
    """ImageBind-style audio tower: normalised fbank clips (N, 1, bins, T) -> head outputs (N, D).

    Inputs may be longer than ``target_length`` (the binder's padded clips): only the first
    ``target_length`` frames are read. The layout and parameter names follow the binder's
    audio preprocessor, trunk and head, so :func:`encoder_from_binder` copies them over.
    """

    config_name = "config.json"  # type: ignore[assignment]  # ConfigMixin declares it as a bare None

    @register_to_config
    def __init__(
        self,
        embed_dim: int = 768,
        num_blocks: int = 3,
        num_heads: int = 12,
        mlp_ratio: int = 4,
        add_bias_kv: bool = True,
        mel_bins: int = 128,
        kernel: int = 16,
        stride: int = 10,
        target_length: int = 106,
        out_embed_dim: int = 1024,
    ):
        super().__init__()
        if target_length < kernel or mel_bins < kernel:
            raise ValueError(f"target_length {target_length} and mel_bins {mel_bins} must be at least "
                             f"kernel {kernel}")
        stem = PatchStem(nn.Conv2d(1, embed_dim, kernel_size=kernel, stride=stride, bias=False),
                         norm_layer=nn.LayerNorm(embed_dim))
        self.preprocessor = PatchPreprocessor(stem, math.prod(self.patch_grid), embed_dim)
        self.trunk = Trunk(embed_dim, num_blocks, num_heads, mlp_ratio, add_bias_kv, pre_ln=False,
                           drop_path=0.0)
        self.head = nn.Sequential(nn.LayerNorm(embed_dim, eps=1e-6), SelectElement(0),
                                  nn.Linear(embed_dim, out_embed_dim, bias=False))

    @property
    def patch_grid(self) -> tuple[int, int]:
        """(frequency patches, time patches) of one clip."""
        c: Any = self.config
        return (c.mel_bins - c.kernel) // c.stride + 1, (c.target_length - c.kernel) // c.stride + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[..., : int(self.config.target_length)]  # type: ignore[attr-defined]
        return self.head(self.trunk(self.preprocessor(x)))

    def embed_input(self, x: torch.Tensor) -> Embedding:
        """Binder-layout audio input (B, C, 1, bins, T) -> per-clip and pooled embeddings."""
        b, n = x.shape[:2]
        e = self(x.flatten(0, 1).to(next(self.parameters()).dtype)).float()
        return Embedding.from_clips(e.reshape(b, n, e.shape[-1]))


def covering_length(frames: int, kernel: int, stride: int) -> int:
    """The shortest input length whose patches cover ``frames`` frames (at least one patch)."""
    patches = max(1, math.ceil(max(0, frames - kernel) / stride) + 1)
    return (patches - 1) * stride + kernel


def encoder_from_binder(binder: ImageBindBinder, num_blocks: int, clip_samples: int | None = None,
                        ) -> AudioGuidanceEncoder:
    """A guidance encoder initialised from ``binder``'s audio tower: its first ``num_blocks``
    blocks, stem, cls token, head, and the position embeddings of the patches that cover one
    clip's frames (``clip_samples`` 16-kHz samples; default the binder's clip duration)."""
    c = binder.config
    if not 1 <= num_blocks <= c.audio_num_blocks:
        raise ValueError(f"num_blocks must be in 1..{c.audio_num_blocks} (the binder's audio depth), "
                         f"got {num_blocks}")
    sr = int(c.audio_sample_rate)
    n = int(clip_samples or round(binder.clips.duration_s * sr))
    ((_, frames),) = fbank_clip_frames(n, sr, type(binder.clips)(duration_s=n / sr, count=1))
    length = min(c.audio_target_length, covering_length(frames, c.audio_kernel, c.audio_stride))
    enc = AudioGuidanceEncoder(
        embed_dim=c.audio_embed_dim, num_blocks=num_blocks, num_heads=c.audio_num_heads,
        mlp_ratio=c.mlp_ratio, add_bias_kv=c.audio_add_bias_kv, mel_bins=c.audio_num_mel_bins,
        kernel=c.audio_kernel, stride=c.audio_stride, target_length=length, out_embed_dim=c.out_embed_dim,
    )
    model = binder.model
    pre, own = model.patch_preprocessor("audio"), enc.preprocessor
    f_t, t_t = c.audio_patch_grid
    f_s, t_s = enc.patch_grid
    with torch.no_grad():
        own.cls_token.copy_(pre.cls_token)
        own.rgbt_stem.load_state_dict(pre.rgbt_stem.state_dict())
        pos = pre.pos_embedding_helper.pos_embed
        grid = pos[:, 1:].reshape(1, f_t, t_t, -1)[:, :f_s, :t_s].reshape(1, f_s * t_s, -1)
        own.pos_embedding_helper.pos_embed.copy_(torch.cat([pos[:, :1], grid], dim=1))
        trunk: Any = model.modality_trunks["audio"]
        for i, blk in enumerate(enc.trunk.blocks):
            blk.load_state_dict(trunk.blocks[i].state_dict())
        enc.head.load_state_dict(model.modality_heads["audio"].state_dict())
    return nn.Module.to(enc, dtype=torch.float32)  # ModelMixin.to warns about fp32 modules it has not


def load_guidance_encoder(where: str | Path) -> AudioGuidanceEncoder:
    """An :class:`AudioGuidanceEncoder` from a folder ``avbridge distill-encoder`` wrote."""
    folder = Path(where)
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise CheckpointError(folder, "not a guidance encoder folder (no config.json)")
    try:
        name = json.loads(cfg.read_text()).get("_class_name")
    except (OSError, ValueError) as e:
        raise CheckpointError(cfg, f"unreadable config: {e}") from e
    if name != "AudioGuidanceEncoder":
        raise CheckpointError(cfg, f"not a guidance encoder ({name!r}, expected AudioGuidanceEncoder)")
    try:
        model = AudioGuidanceEncoder.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - any load failure is a checkpoint problem
        raise CheckpointError(folder, f"cannot load AudioGuidanceEncoder: {' '.join(str(e).split())}") from e
    model.requires_grad_(False)
    return model.eval()


def attach(binder: Any, encoder: AudioGuidanceEncoder | None) -> Any:
    """Give ``binder`` a guidance encoder (frozen, on its device and dtype); ``None`` removes it.
    Raises CheckpointError when the encoder does not fit the binder's audio input."""
    if encoder is not None:
        c: Any = encoder.config
        bc = binder.config
        want = (bc.audio_num_mel_bins, bc.audio_kernel, bc.audio_stride, bc.out_embed_dim)
        got = (c.mel_bins, c.kernel, c.stride, c.out_embed_dim)
        if want != got or c.target_length > bc.audio_target_length:
            raise CheckpointError(None, f"guidance encoder (mel bins, kernel, stride, embedding) {got} "
                                  f"does not fit the binder's audio tower {want}")
        encoder.requires_grad_(False)
        encoder = nn.Module.to(encoder, device=binder.device, dtype=binder.dtype).eval()
    object.__setattr__(binder, "guidance_encoder", encoder)  # outside the binder's module tree
    return binder
