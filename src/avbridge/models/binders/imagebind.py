"""ImageBind (vision, text, audio), written for avbridge, checkpoint-compatible.

The module tree mirrors the official model so that its state-dict keys are exactly
the official ones (``modality_preprocessors.*``, ``modality_trunks.*``,
``modality_heads.*``, ``modality_postprocessors.*``) and ``imagebind_huge.pth``
loads with ``weights_only=True``. Depth, thermal and IMU branches are not built.

Every dimension lives in :class:`ImageBindConfig`; ``"huge"`` is the official model
and the small presets serve tests and the embedded world. :class:`ImageBindBinder`
wraps the model behind the :class:`~avbridge.models.binders.base.Binder` protocol with
differentiable preprocessing (see :mod:`avbridge.models.binders.preprocess`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from avbridge.errors import CheckpointError
from avbridge.models.binders import preprocess as pp
from avbridge.models.binders.base import ClipSpec, Embedding
from avbridge.models.binders.tokenizer import ClipTokenizer
from avbridge.models.generators.base import SpectrogramFeatures

MODALITIES = ("vision", "text", "audio")
#: Branches of the official checkpoint that avbridge does not build (their keys are ignored).
IGNORED_MODALITIES = ("depth", "thermal", "imu")


@dataclass
class ImageBindConfig:
    """Every dimension of the vision/text/audio ImageBind model (JSON-serialisable).

    Defaults are the official ImageBind-huge values. ``video_frames`` is the number of
    frames per vision clip (even: the patch stem has temporal size ``vision_kernel[0]``);
    a still image is repeated to that many frames. Audio input is a (1, mel bins,
    ``audio_target_length``) fbank per clip; text input is ``text_context_length`` ids.
    """

    out_embed_dim: int = 1024
    vision_embed_dim: int = 1280
    vision_num_blocks: int = 32
    vision_num_heads: int = 16
    text_embed_dim: int = 1024
    text_num_blocks: int = 24
    text_num_heads: int = 16
    audio_embed_dim: int = 768
    audio_num_blocks: int = 12
    audio_num_heads: int = 12
    mlp_ratio: int = 4
    drop_path: float = 0.0
    image_size: int = 224
    vision_kernel: tuple[int, int, int] = (2, 14, 14)
    video_frames: int = 2
    audio_num_mel_bins: int = 128
    audio_target_length: int = 204
    audio_kernel: int = 16
    audio_stride: int = 10
    audio_sample_rate: int = 16000
    audio_mean: float = -4.268
    audio_std: float = 9.138
    text_context_length: int = 77
    vocab_size: int = 49408
    text_logit_scale_init: float = 1 / 0.07
    audio_logit_scale: float = 20.0
    max_logit_scale: float = 100.0
    # Per-modality options of the official model: LayerNorm before the vision trunk,
    # learned key/value bias tokens in the audio trunk.
    vision_pre_ln: bool = True
    audio_add_bias_kv: bool = True
    text_add_bias_kv: bool = False
    vision_add_bias_kv: bool = False

    def __post_init__(self) -> None:
        self.vision_kernel = tuple(int(k) for k in self.vision_kernel)  # type: ignore[assignment]
        if len(self.vision_kernel) != 3:
            raise ValueError(f"vision_kernel must have 3 entries (t, h, w), got {self.vision_kernel}")
        if self.video_frames < 1 or self.video_frames % self.vision_kernel[0]:
            raise ValueError(
                f"video_frames={self.video_frames} must be a positive multiple of the temporal "
                f"patch size {self.vision_kernel[0]}"
            )
        for name in ("vision", "text", "audio"):
            width, heads = getattr(self, f"{name}_embed_dim"), getattr(self, f"{name}_num_heads")
            if width % heads:
                raise ValueError(f"{name}_embed_dim={width} is not divisible by {name}_num_heads={heads}")
        if self.image_size < self.vision_kernel[1] or self.image_size < self.vision_kernel[2]:
            raise ValueError(f"image_size={self.image_size} is smaller than the patch {self.vision_kernel}")
        if min(self.audio_num_mel_bins, self.audio_target_length) < self.audio_kernel:
            raise ValueError("audio_num_mel_bins and audio_target_length must be >= audio_kernel")

    @property
    def vision_patch_grid(self) -> tuple[int, int, int]:
        """(t, h, w) patches per vision clip."""
        kt, kh, kw = self.vision_kernel
        return self.video_frames // kt, self.image_size // kh, self.image_size // kw

    @property
    def audio_patch_grid(self) -> tuple[int, int]:
        """(mel, time) patches per audio clip."""
        k, s = self.audio_kernel, self.audio_stride
        return (self.audio_num_mel_bins - k) // s + 1, (self.audio_target_length - k) // s + 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["vision_kernel"] = list(self.vision_kernel)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageBindConfig:
        """Build from a dict; unknown keys are an error (a typo must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ImageBindConfig keys: {unknown}")
        return cls(**dict(d))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> ImageBindConfig:
        """A named preset (see :data:`PRESETS`), with optional field overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown ImageBind preset {name!r}; known: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


#: Named configurations. "huge" is the official model; "tiny" has the dimensions of the
#: conformance fixture (official input sizes); "tiny-32" suits 32x32 video, 4 frames per
#: clip and 0.5-s audio clips (50 fbank frames, padded to 64).
PRESETS: dict[str, dict[str, Any]] = {
    "huge": {},
    "tiny": dict(
        out_embed_dim=16, vision_embed_dim=32, vision_num_blocks=2, vision_num_heads=2,
        text_embed_dim=32, text_num_blocks=2, text_num_heads=2,
        audio_embed_dim=32, audio_num_blocks=2, audio_num_heads=2,
    ),
    "small": dict(
        out_embed_dim=128, vision_embed_dim=128, vision_num_blocks=4, vision_num_heads=4,
        text_embed_dim=128, text_num_blocks=4, text_num_heads=4,
        audio_embed_dim=128, audio_num_blocks=4, audio_num_heads=4,
    ),
    "tiny-32": dict(
        out_embed_dim=64, vision_embed_dim=64, vision_num_blocks=2, vision_num_heads=2,
        text_embed_dim=64, text_num_blocks=2, text_num_heads=2,
        audio_embed_dim=64, audio_num_blocks=2, audio_num_heads=2,
        image_size=32, vision_kernel=(2, 8, 8), video_frames=4,
        audio_num_mel_bins=64, audio_target_length=64,
    ),
}


# ---------------------------------------------------------------------------------------
# Building blocks (parameter names follow the official checkpoint)
# ---------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names.

    Packed ``in_proj_weight``/``in_proj_bias``, ``out_proj``, and optional learned
    ``bias_k``/``bias_v`` tokens appended to keys and values. Batch-first; computed with
    ``scaled_dot_product_attention``.
    """

    def __init__(self, dim: int, num_heads: int, add_bias_kv: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.bias_k: nn.Parameter | None
        self.bias_v: nn.Parameter | None
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, dim))
            self.bias_v = nn.Parameter(torch.empty(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if self.bias_k is not None and self.bias_v is not None:  # both set, or neither
            k = torch.cat([k, self.bias_k.expand(b, 1, d)], dim=1)
            v = torch.cat([v, self.bias_v.expand(b, 1, d)], dim=1)
            if attn_mask is not None:
                attn_mask = F.pad(attn_mask, (0, 1))
        h = self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], h, d // h).transpose(1, 2)

        if attn_mask is not None:
            attn_mask = attn_mask.to(q.dtype)
        out = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=attn_mask)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth per sample (training only)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm_1(x)); x + mlp(norm_2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, add_bias_kv: bool, drop_path: float):
        super().__init__()
        self.attn = SelfAttention(dim, num_heads, add_bias_kv)
        self.drop_path = DropPath(drop_path)
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(mlp_ratio * dim))
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm_1(x), attn_mask))
        return x + self.drop_path(self.mlp(self.norm_2(x)))


class Trunk(nn.Module):
    """A stack of blocks with an optional LayerNorm in front (``pre_transformer_layer.0``)."""

    def __init__(
        self, dim: int, depth: int, heads: int, mlp_ratio: int, add_bias_kv: bool, pre_ln: bool,
        drop_path: float,
    ):
        super().__init__()
        self.pre_transformer_layer = nn.Sequential(nn.LayerNorm(dim, eps=1e-6) if pre_ln else nn.Identity())
        rates = [drop_path * i / (depth - 1) for i in range(depth)] if depth > 1 else [drop_path] * depth
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, add_bias_kv, r) for r in rates])
        self.gradient_checkpointing = False

    def forward(self, tokens: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.pre_transformer_layer(tokens)
        for blk in self.blocks:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                tokens = torch.utils.checkpoint.checkpoint(blk, tokens, attn_mask, use_reentrant=False)
            else:
                tokens = blk(tokens, attn_mask)
        return tokens


class PadIm2Video(nn.Module):
    """(B, C, H, W) or (B, C, 1, H, W) -> (B, C, ntimes, H, W) by repeating the frame."""

    def __init__(self, ntimes: int):
        super().__init__()
        self.ntimes = ntimes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)
        if x.ndim != 5:
            raise ValueError(f"vision input must be (B, 3, H, W) or (B, 3, T, H, W), got {tuple(x.shape)}")
        if x.shape[2] == 1:
            x = x.expand(-1, -1, self.ntimes, -1, -1)
        return x


class PatchStem(nn.Module):
    """Patchify with ``proj`` (a conv or a Sequential), flatten to tokens, optional norm."""

    def __init__(self, proj: nn.Module, norm_layer: nn.Module | None = None):
        super().__init__()
        self.proj = proj
        self.norm_layer = norm_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm_layer(x) if self.norm_layer is not None else x


class PosEmbedding(nn.Module):
    """Holds the learnable ``pos_embed`` (1, cls + patches, D)."""

    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.empty(1, num_tokens, dim))


class PatchPreprocessor(nn.Module):
    """Stem -> prepend the cls token -> add position embeddings (vision and audio)."""

    def __init__(self, stem: PatchStem, num_patches: int, dim: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.empty(1, 1, dim))
        self.rgbt_stem = stem
        self.pos_embedding_helper = PosEmbedding(num_patches + 1, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.rgbt_stem(x)
        pos = self.pos_embedding_helper.pos_embed
        if tokens.shape[1] + 1 != pos.shape[1]:
            raise ValueError(
                f"input gives {tokens.shape[1]} patches but the model was configured for "
                f"{pos.shape[1] - 1}: preprocess inputs to the configured size (input {tuple(x.shape)})"
            )
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens + pos


class TextPreprocessor(nn.Module):
    """Token + position embeddings; owns the causal mask buffer ``mask`` (-inf above the diagonal)."""

    mask: torch.Tensor

    def __init__(self, vocab_size: int, context_length: int, dim: int):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.pos_embed = nn.Parameter(torch.empty(1, context_length, dim))
        self.register_buffer("mask", torch.full((context_length, context_length), float("-inf")).triu(1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.token_embedding(tokens) + self.pos_embed[:, : tokens.shape[1]]


class SelectElement(nn.Module):
    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.index]


class SelectEOSAndProject(nn.Module):
    """Pick the token at each row's end-of-text position, then ``proj`` (LayerNorm, Linear)."""

    def __init__(self, dim: int, out_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, out_dim, bias=False))

    def forward(self, x: torch.Tensor, eos_idx: torch.Tensor) -> torch.Tensor:
        return self.proj(x[torch.arange(x.shape[0], device=x.device), eos_idx])


class Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class LogitScaling(nn.Module):
    """Multiply by min(exp(log_logit_scale), max): a parameter (text) or a fixed buffer (audio)."""

    log_logit_scale: torch.Tensor

    def __init__(self, init: float, learnable: bool, max_scale: float = 100.0):
        super().__init__()
        self.max_scale = max_scale
        value = torch.full((), math.log(init))
        if learnable:
            self.log_logit_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_logit_scale", value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=self.max_scale) * x


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


class ImageBindModel(nn.Module):
    """ImageBind vision/text/audio with the official module tree and state-dict keys.

    ``forward(inputs)`` follows the reference: a dict of modality -> tensor; inputs with
    5 or more dims (audio (B, S, 1, F, T), video (B, S, 3, T, H, W)) are flattened over
    clips, run, post-processed (normalised, and scaled for text/audio), then averaged
    over clips. :meth:`embed` gives un-scaled head outputs per input row.
    """

    def __init__(self, config: ImageBindConfig):
        super().__init__()
        self.config = c = config
        v_grid = c.vision_patch_grid
        vision_stem = PatchStem(
            nn.Sequential(
                PadIm2Video(c.video_frames),
                nn.Conv3d(
                    3, c.vision_embed_dim, kernel_size=c.vision_kernel, stride=c.vision_kernel, bias=False
                ),
            )
        )
        audio_stem = PatchStem(
            nn.Conv2d(1, c.audio_embed_dim, kernel_size=c.audio_kernel, stride=c.audio_stride, bias=False),
            norm_layer=nn.LayerNorm(c.audio_embed_dim),
        )
        self.modality_preprocessors = nn.ModuleDict(
            {
                "vision": PatchPreprocessor(vision_stem, math.prod(v_grid), c.vision_embed_dim),
                "text": TextPreprocessor(c.vocab_size, c.text_context_length, c.text_embed_dim),
                "audio": PatchPreprocessor(audio_stem, math.prod(c.audio_patch_grid), c.audio_embed_dim),
            }
        )
        self.modality_trunks = nn.ModuleDict(
            {
                name: Trunk(
                    getattr(c, f"{name}_embed_dim"), getattr(c, f"{name}_num_blocks"),
                    getattr(c, f"{name}_num_heads"), c.mlp_ratio, getattr(c, f"{name}_add_bias_kv"),
                    pre_ln=(name == "vision" and c.vision_pre_ln), drop_path=c.drop_path,
                )
                for name in MODALITIES
            }
        )

        def token_head(dim: int) -> nn.Sequential:
            return nn.Sequential(
                nn.LayerNorm(dim, eps=1e-6), SelectElement(0), nn.Linear(dim, c.out_embed_dim, bias=False)
            )

        self.modality_heads = nn.ModuleDict(
            {
                "vision": token_head(c.vision_embed_dim),
                "text": SelectEOSAndProject(c.text_embed_dim, c.out_embed_dim),
                "audio": token_head(c.audio_embed_dim),
            }
        )
        self.modality_postprocessors = nn.ModuleDict(
            {
                "vision": Normalize(),
                "text": nn.Sequential(
                    Normalize(), LogitScaling(c.text_logit_scale_init, True, c.max_logit_scale)
                ),
                "audio": nn.Sequential(
                    Normalize(), LogitScaling(c.audio_logit_scale, False, c.max_logit_scale)
                ),
            }
        )
        if not any(p.is_meta for p in self.parameters()):
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random initialisation in the spirit of the reference (xavier linears, scaled tokens)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv2d, nn.Conv3d)):
                m.reset_parameters()
            elif isinstance(m, SelfAttention):
                nn.init.xavier_uniform_(m.in_proj_weight)
                nn.init.zeros_(m.in_proj_bias)
                if m.bias_k is not None and m.bias_v is not None:  # both set, or neither
                    nn.init.xavier_normal_(m.bias_k)
                    nn.init.xavier_normal_(m.bias_v)
        for name in ("vision", "audio"):
            pre = self.patch_preprocessor(name)
            scale = pre.cls_token.shape[-1] ** -0.5
            nn.init.normal_(pre.cls_token, std=scale)
            nn.init.normal_(pre.pos_embedding_helper.pos_embed, std=scale)
        text = self.text_preprocessor()
        nn.init.normal_(text.token_embedding.weight, std=0.02)
        nn.init.normal_(text.pos_embed, std=0.01)
        self.logit_scaling("text").log_logit_scale.fill_(math.log(self.config.text_logit_scale_init))
        self.logit_scaling("audio").log_logit_scale.fill_(math.log(self.config.audio_logit_scale))

    # Typed views into the ModuleDicts (whose items torch types as plain nn.Module).
    def patch_preprocessor(self, modality: str) -> PatchPreprocessor:
        """The vision or audio preprocessor (patch stem, cls token, position embedding)."""
        return cast(PatchPreprocessor, self.modality_preprocessors[modality])

    def text_preprocessor(self) -> TextPreprocessor:
        """The text preprocessor (token and position embeddings, causal mask)."""
        return cast(TextPreprocessor, self.modality_preprocessors["text"])

    def logit_scaling(self, modality: str) -> LogitScaling:
        """The LogitScaling step of the text or audio postprocessor (Normalize, LogitScaling)."""
        return cast(LogitScaling, cast(nn.Sequential, self.modality_postprocessors[modality])[1])

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute trunk blocks in backward: less memory for the huge model, more time."""
        for trunk in self.modality_trunks.values():
            cast(Trunk, trunk).gradient_checkpointing = enabled

    def embed(self, modality: str, x: torch.Tensor) -> torch.Tensor:
        """Head output (N, out_embed_dim), before normalisation and scaling.

        vision: (N, 3, H, W) or (N, 3, T, H, W) normalised pixels; text: (N, L) token ids;
        audio: (N, 1, mel bins, frames) normalised fbank.
        """
        if modality == "text":
            tokens = self.modality_preprocessors["text"](x)
            mask = self.text_preprocessor().mask[: x.shape[1], : x.shape[1]]
            h = self.modality_trunks["text"](tokens, mask)
            return self.modality_heads["text"](h, x.argmax(dim=-1))
        if modality not in ("vision", "audio"):
            raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")
        h = self.modality_trunks[modality](self.modality_preprocessors[modality](x))
        return self.modality_heads[modality](h)

    def forward(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reference-format outputs: post-processed, averaged over clips for >=5-D inputs."""
        out = {}
        for modality, x in inputs.items():
            multi = x.ndim >= 5
            if multi:
                b, s = x.shape[:2]
                x = x.reshape(b * s, *x.shape[2:])
            y = self.modality_postprocessors[modality](self.embed(modality, x))
            out[modality] = y.reshape(b, s, -1).mean(dim=1) if multi else y
        return out


# ---------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types for bad headers
            raise CheckpointError(
                path, f"not a readable safetensors file (truncated or corrupt?): {e}"
            ) from e
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        try:  # mmap needs the zip format; legacy pickles load without it
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e2:
            detail = str(e2).split(". ")[0].splitlines()[0][:160] if str(e2) else ""
            problem = "not a readable PyTorch checkpoint (truncated or corrupt?)"
            raise CheckpointError(path, f"{problem}: {type(e2).__name__}: {detail}") from e
    if isinstance(sd, Mapping) and len(sd) == 1 and next(iter(sd)) in ("model", "state_dict"):
        sd = next(iter(sd.values()))
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(path, "does not contain a state dict (a mapping of names to tensors)")
    return dict(sd)


def _short_list(keys: Sequence[str], n: int = 8) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_imagebind_weights(model: ImageBindModel, path: str | Path) -> ImageBindModel:
    """Load an official-format checkpoint (.pth with weights_only=True, or .safetensors).

    Depth/thermal/IMU keys are ignored. Any other mismatch (missing or unexpected keys,
    wrong shapes) raises :class:`CheckpointError` naming the file and the keys. A model
    built on the meta device receives the checkpoint's tensors directly (no copy).
    """
    path = Path(path)
    sd = _read_state_dict(path)
    sd = {k: v for k, v in sd.items() if k.split(".")[1:2] not in ([m] for m in IGNORED_MODALITIES)}
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_short_list(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_short_list(unexpected)}")
    bad_shapes = [
        f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(sd))
        if sd[k].shape != own[k].shape
    ]
    if bad_shapes:
        problems.append(f"{len(bad_shapes)} shape mismatches: {_short_list(bad_shapes, 4)}")
    if problems:
        raise CheckpointError(path, "does not match the ImageBind model: " + "; ".join(problems))
    on_meta = any(t.is_meta for t in own.values())
    if on_meta:
        dtype = next(iter(own.values())).dtype
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=on_meta)
    return model


# ---------------------------------------------------------------------------------------
# The Binder
# ---------------------------------------------------------------------------------------


class ImageBindBinder(nn.Module):
    """The :class:`~avbridge.models.binders.base.Binder` over ImageBind, differentiable end to end.

    ``clips`` cuts audio and video into the same time spans (clip i of the audio matches
    clip i of the video); its ``frames_per_clip`` must equal the model's ``video_frames``.
    Video/images: resize the short side to ``image_size`` (antialiased bicubic), center
    crop, CLIP-normalise. Audio: resample to 16 kHz, per-clip kaldi fbank, pad/cut to
    ``audio_target_length``, normalise. All methods return :class:`Embedding`.
    """

    def __init__(self, model: ImageBindModel, clips: ClipSpec | None = None):
        super().__init__()
        self.model = model
        self.config = model.config
        if clips is None:
            clips = ClipSpec(duration_s=2.0, count=3, frames_per_clip=self.config.video_frames)
        if clips.frames_per_clip != self.config.video_frames:
            raise ValueError(
                f"clips.frames_per_clip={clips.frames_per_clip} but the model takes "
                f"{self.config.video_frames} frames per clip"
            )
        self.clips = clips
        self.tokenizer = ClipTokenizer(context_length=self.config.text_context_length)
        self.eval()

    # -- constructors ------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, config: ImageBindConfig, seed: int = 0, clips: ClipSpec | None = None
    ) -> ImageBindBinder:
        """Randomly initialised (deterministic for a given seed)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ImageBindModel(config)
        return cls(model, clips)

    @classmethod
    def from_preset(
        cls, name: str, seed: int = 0, clips: ClipSpec | None = None, **overrides: Any
    ) -> ImageBindBinder:
        """Random weights for a named preset (tests, benchmarks, training from scratch)."""
        return cls.from_config(ImageBindConfig.preset(name, **overrides), seed=seed, clips=clips)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, preset: str = "huge", clips: ClipSpec | None = None, trainable: bool = False,
    ) -> ImageBindBinder:
        """Load an official-format checkpoint (e.g. ``imagebind_huge.pth``) into ``preset``.

        The model is built on the meta device and takes the checkpoint's tensors, so
        memory holds one copy of the weights. Parameters are frozen unless ``trainable``.
        """
        with torch.device("meta"):
            model = ImageBindModel(ImageBindConfig.preset(preset))
        load_imagebind_weights(model, path)
        model.requires_grad_(trainable)
        return cls(model, clips)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` (model config + clip spec) and ``model.safetensors``."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "model_type": "imagebind",
            "config": self.config.to_dict(),
            "clips": dataclasses.asdict(self.clips),
        }
        (directory / "config.json").write_text(json.dumps(meta, indent=1))
        sd = {k: v.detach().contiguous().cpu() for k, v in self.model.state_dict().items()}
        save_file(sd, str(directory / "model.safetensors"))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, trainable: bool = True) -> ImageBindBinder:
        """Load what :meth:`save_pretrained` wrote."""
        directory = Path(directory)
        cfg_path = directory / "config.json"
        if not cfg_path.is_file():
            raise CheckpointError(cfg_path, "config.json not found (not an avbridge ImageBind folder?)")
        try:
            meta = json.loads(cfg_path.read_text())
            config = ImageBindConfig.from_dict(meta["config"])
            clips = ClipSpec(**meta["clips"]) if meta.get("clips") else None
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(cfg_path, f"invalid ImageBind config: {e}") from e
        with torch.device("meta"):
            model = ImageBindModel(config)
        load_imagebind_weights(model, directory / "model.safetensors")
        model.requires_grad_(trainable)
        return cls(model, clips)

    # -- helpers -------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.model.patch_preprocessor("vision").cls_token.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.patch_preprocessor("vision").cls_token.dtype

    def _clip_embedding(self, modality: str, x: torch.Tensor, batch: int) -> Embedding:
        # float32 out, whatever the model's dtype: the loss (1 - cos) is computed on these,
        # and bf16 would quantise it to ~0.01.
        e = self.model.embed(modality, x).float()
        return Embedding.from_clips(e.reshape(batch, -1, e.shape[-1]))

    # -- preprocessing (differentiable) ----------------------------------------------------

    def preprocess_video(self, frames: torch.Tensor, fps: float) -> torch.Tensor:
        """(B, T, 3, H, W) -> (B, C, 3, frames_per_clip, S, S) normalised model input."""
        c = self.config
        frames = pp.to_unit_float(frames).to(self.device, self.dtype)
        if frames.ndim != 5:
            raise ValueError(f"video must be (B, T, 3, H, W), got {tuple(frames.shape)}")
        clips = pp.sample_video_clips(frames, fps, self.clips)  # (B, C, F, 3, H, W)
        b, n, f = clips.shape[:3]
        x = pp.prepare_images(clips.flatten(0, 2), c.image_size)  # (B*C*F, 3, S, S)
        return x.reshape(b, n, f, 3, c.image_size, c.image_size).transpose(2, 3)

    def preprocess_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, S, S) normalised model input."""
        images = pp.to_unit_float(images).to(self.device, self.dtype)
        if images.ndim != 4:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        return pp.prepare_images(images, self.config.image_size)

    def preprocess_audio(self, waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """(B, N) or (N,) at ``sample_rate`` -> (B, C, 1, mel bins, target length)."""
        c = self.config
        # Resampling and the fbank run in float32 whatever the model's dtype (CPU FFTs take no
        # half types, and the features are those of the float32 reference); the result is cast.
        waveform = waveform.to(self.device, torch.float32)
        if waveform.ndim == 1:
            waveform = waveform.unsqueeze(0)
        if waveform.ndim != 2:
            raise ValueError(f"waveform must be (B, N) mono, got {tuple(waveform.shape)}")
        waveform = pp.resample(waveform, sample_rate, c.audio_sample_rate)
        return pp.audio_to_model_input(
            waveform, c.audio_sample_rate, self.clips, num_mel_bins=c.audio_num_mel_bins,
            target_length=c.audio_target_length, mean=c.audio_mean, std=c.audio_std,
        ).to(self.dtype)

    # -- the Binder protocol ---------------------------------------------------------------

    def embed_video(self, frames: torch.Tensor, fps: float) -> Embedding:
        """Video (B, T, 3, H, W) uint8 or float in [0, 1] at ``fps`` -> per-clip and pooled."""
        x = self.preprocess_video(frames, fps)
        return self._clip_embedding("vision", x.flatten(0, 1), x.shape[0])

    def embed_image(self, images: torch.Tensor) -> Embedding:
        """Images (B, 3, H, W) uint8 or float in [0, 1] -> one clip each."""
        x = self.preprocess_image(images)
        return self._clip_embedding("vision", x, x.shape[0])

    def embed_audio(self, waveform: torch.Tensor, sample_rate: int) -> Embedding:
        """Mono audio (B, N) at any ``sample_rate`` -> per-clip and pooled."""
        x = self.preprocess_audio(waveform, sample_rate)
        return self._clip_embedding("audio", x.flatten(0, 1), x.shape[0])

    def embed_audio_fbank(self, fbank: torch.Tensor, num_samples: int) -> Embedding:
        """Embed a whole-input kaldi fbank (B, frames, bins) of ``num_samples`` 16-kHz samples.

        Frames in kaldi's layout (frame m covers samples [160 m, 160 m + 400)); each clip of
        ``self.clips`` takes the frames its own fbank would have. For a real waveform this
        equals :meth:`embed_audio` up to the per-clip mean removal (DC only) and clip starts
        rounded to 10 ms.
        """
        c = self.config
        if fbank.ndim != 3 or fbank.shape[-1] != c.audio_num_mel_bins:
            raise ValueError(f"fbank must be (B, frames, {c.audio_num_mel_bins}), got {tuple(fbank.shape)}")
        x = self._fbank_input(fbank, num_samples)
        return self._clip_embedding("audio", x.flatten(0, 1), x.shape[0])

    def _fbank_input(self, fbank: torch.Tensor, num_samples: int) -> torch.Tensor:
        c = self.config
        return pp.fbank_to_model_input(
            fbank.to(self.device, self.dtype), int(num_samples), c.audio_sample_rate, self.clips,
            target_length=c.audio_target_length, mean=c.audio_mean, std=c.audio_std,
        )

    def accepts_audio_features(self, features: SpectrogramFeatures) -> bool:
        """Whether :meth:`embed_audio_features` can read ``features`` (same sample rate)."""
        return int(features.sample_rate) == int(self.config.audio_sample_rate)

    def embed_audio_features(self, features: SpectrogramFeatures) -> Embedding:
        """Embed a generator's log-mel directly (no vocoder): approximate kaldi fbank
        (:func:`~avbridge.models.binders.preprocess.logmel_to_kaldi_fbank`), then
        :meth:`embed_audio_fbank`. Differentiable in ``features.log_mel``."""
        x = self.audio_input_from_features(features)
        return self._clip_embedding("audio", x.flatten(0, 1), x.shape[0])

    def audio_input_from_features(self, features: SpectrogramFeatures) -> torch.Tensor:
        """A generator's log-mel -> the audio tower's input (B, C, 1, bins, target length), as
        :meth:`embed_audio_features` feeds it (approximate kaldi fbank, clips, normalised)."""
        if not self.accepts_audio_features(features):
            raise ValueError(
                f"features at {features.sample_rate} Hz, the binder takes {self.config.audio_sample_rate} Hz"
            )
        fbank = pp.logmel_to_kaldi_fbank(features, num_mel_bins=self.config.audio_num_mel_bins)
        return self._fbank_input(fbank, features.num_samples)

    def embed_text(self, texts: Sequence[str]) -> Embedding:
        """A list of strings -> one clip each."""
        if isinstance(texts, str):
            texts = [texts]
        tokens = self.tokenizer(texts).to(self.device)
        return self._clip_embedding("text", tokens, tokens.shape[0])

    def reference_outputs(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The reference model's outputs for already-preprocessed inputs (scaled text/audio)."""
        return self.model(inputs)
