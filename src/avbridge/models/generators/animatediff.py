"""AnimateDiff (text-to-video) and its Stable Diffusion image mode as a :class:`Generator`.

Video mode: ``UNetMotionModel`` (SD 1.5 UNet + motion modules) over VAE latents laid out
(B, C, F, h, w) as in diffusers' AnimateDiff; CLIP text hidden states as cross-attention
context; ``AutoencoderKL`` decoded frame by frame; DDIM with linear betas 0.00085..0.012,
"linspace" spacing (the AnimateDiff recipe).

Image mode (for audio-to-image): the *same spatial weights* as a plain
``UNet2DConditionModel`` (the motion modules dropped), latents (B, C, h, w). Running the
motion UNet on a single frame would not reproduce the image model: a temporal attention over
one frame is not the identity (it adds ``W_o W_v norm(x + pos[0])``), so the motion modules
would perturb every block. Dropping them gives exactly the SD 1.5 image model AnimateDiff
was built on.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models import AutoencoderKL, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerBase

from avbridge.errors import AvbridgeError, CheckpointError
from avbridge.models.generators._common import (
    DDIMMath,
    LatentDiffusionAdapter,
    cfg_inputs,
    combine_cfg,
    config_tokenizer,
    freeze,
    load_part,
    prompt_pair,
    quiet_diffusers,
    resolve_source,
    timestep_batch,
    unet_to_vae_latents,
)
from avbridge.models.generators.base import MediaSpec, Modality, PromptCond
from avbridge.models.generators.tokenizers import build_word_tokenizer

# AnimateDiff's sampling recipe (linear betas, as in its inference configs).
ANIMATEDIFF_SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear",
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="linspace",
    prediction_type="epsilon",
)


ANIMATEDIFF_WINDOW_FRAMES = 16  # clip length the released motion modules were trained on
TINY_WINDOW_FRAMES = 32  # tiny preset: its motion module's limit (= the world's 4-s clips at 8 fps)


def animatediff_config(variant: str = "sd15-v152") -> dict[str, dict[str, Any]]:
    """Component configs: ``sd15-v152`` (SD 1.5 + motion adapter v1-5-2) or ``tiny``.

    SD 1.5: UNet block_out (320, 640, 1280, 1280), 2 layers per block, cross-attention 768,
    8 heads; VAE (128, 256, 512, 512), 4 latent channels, scaling 0.18215; CLIP ViT-L/14 text
    encoder (12 layers, width 768, 77 tokens). Motion adapter v1-5-2: 2 motion layers per
    block, 8 heads, max sequence 32, with a motion mid block.
    """
    if variant == "tiny":
        ch: tuple[int, ...] = (32, 64)
        return {
            "unet": dict(
                sample_size=8, in_channels=4, out_channels=4,
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                block_out_channels=ch, layers_per_block=1, cross_attention_dim=32,
                attention_head_dim=2, norm_num_groups=8,
            ),
            "motion_adapter": dict(
                block_out_channels=ch, motion_layers_per_block=1, motion_num_attention_heads=2,
                motion_norm_num_groups=8, motion_max_seq_length=32, use_motion_mid_block=True,
            ),
            "vae": dict(
                in_channels=3, out_channels=3, latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8,
                sample_size=32, scaling_factor=1.0,
            ),
            "text_encoder": dict(
                vocab_size=len(build_word_tokenizer(flavour="clip")), hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                projection_dim=32, bos_token_id=0, eos_token_id=1, pad_token_id=1,
            ),
            "scheduler": dict(ANIMATEDIFF_SCHEDULER),
            "tokenizer": dict(model_max_length=16),
            "defaults": dict(height=32, width=32, fps=8.0),
        }
    if variant not in ("sd15-v152", "sd15"):
        raise ValueError(f"unknown AnimateDiff variant {variant!r} (known: tiny, sd15-v152)")
    ch = (320, 640, 1280, 1280)
    return {
        "unet": dict(
            sample_size=64, in_channels=4, out_channels=4,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=ch, layers_per_block=2, cross_attention_dim=768, attention_head_dim=8,
        ),
        "motion_adapter": dict(
            block_out_channels=ch, motion_layers_per_block=2, motion_mid_block_layers_per_block=1,
            motion_num_attention_heads=8, motion_norm_num_groups=32, motion_max_seq_length=32,
            use_motion_mid_block=True,
        ),
        "vae": dict(
            in_channels=3, out_channels=3, latent_channels=4,
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512), layers_per_block=2, sample_size=512,
            scaling_factor=0.18215,
        ),
        "text_encoder": dict(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
            projection_dim=768,
        ),
        "scheduler": dict(ANIMATEDIFF_SCHEDULER),
        "tokenizer": dict(model_max_length=77),
        "defaults": dict(height=512, width=512, fps=8.0),
    }


def unet2d_from_motion(unet: UNetMotionModel) -> UNet2DConditionModel:
    """The image UNet inside a ``UNetMotionModel``: same spatial weights, motion modules dropped."""
    c = unet.config
    cfg = dict(
        sample_size=c["sample_size"], in_channels=c["in_channels"], out_channels=c["out_channels"],
        down_block_types=tuple(t.replace("Motion", "2D") for t in c["down_block_types"]),
        up_block_types=tuple(t.replace("Motion", "2D") for t in c["up_block_types"]),
        block_out_channels=tuple(c["block_out_channels"]), layers_per_block=c["layers_per_block"],
        downsample_padding=c["downsample_padding"], mid_block_scale_factor=c["mid_block_scale_factor"],
        act_fn=c["act_fn"], norm_num_groups=c["norm_num_groups"], norm_eps=c["norm_eps"],
        cross_attention_dim=c["cross_attention_dim"],
        transformer_layers_per_block=c["transformer_layers_per_block"],
        attention_head_dim=c["num_attention_heads"], use_linear_projection=c["use_linear_projection"],
    )
    param = next(unet.parameters())
    with torch.device(param.device), quiet_diffusers():
        u2 = UNet2DConditionModel(**cfg).to(param.dtype)
    sd = {k: v for k, v in unet.state_dict().items() if "motion_modules" not in k}
    if param.device.type != "meta":
        u2.load_state_dict(sd, strict=True)
    return u2


class AnimateDiffGenerator(LatentDiffusionAdapter):
    """AnimateDiff video generation (``modality="video"``) or its SD image mode (``"image"``)."""

    def __init__(
        self,
        *,
        unet: UNetMotionModel | UNet2DConditionModel,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: PreTrainedTokenizerBase,
        scheduler: DDIMScheduler,
        modality: Modality | None = None,
        default_height: int = 512,
        default_width: int = 512,
        default_fps: float = 8.0,
        default_duration_s: float = 2.0,
        window_frames: int | None = None,
        sampler: str = "ddim",
    ):
        if modality is None:
            modality = "video" if isinstance(unet, UNetMotionModel) else "image"
        if modality == "video" and not isinstance(unet, UNetMotionModel):
            raise CheckpointError(None, "video mode needs a UNetMotionModel (SD UNet + motion adapter)")
        if modality == "image" and isinstance(unet, UNetMotionModel):
            unet = unet2d_from_motion(unet)
        if modality not in ("video", "image"):
            raise ValueError(f"AnimateDiffGenerator modality must be 'video' or 'image', got {modality!r}")
        self.modality: Modality = modality
        self.sample_rate: int | None = None
        self.unet, self.vae, self.text_encoder = unet, vae, text_encoder
        self.tokenizer, self.scheduler = tokenizer, scheduler
        freeze(unet, vae, text_encoder)
        self.vae_scale_factor = 2 ** (len(vae.config["block_out_channels"]) - 1)
        self.default_height, self.default_width = int(default_height), int(default_width)
        self.default_fps, self.default_duration_s = float(default_fps), float(default_duration_s)
        self.decode_chunk_size: int | None = None
        max_seq = int(getattr(unet.config, "motion_max_seq_length", 0) or 32)
        # Native clip length: AnimateDiff's motion modules were trained on 16-frame clips.
        self.window_frames = int(window_frames) if window_frames else min(ANIMATEDIFF_WINDOW_FRAMES, max_seq)
        self._ddim = DDIMMath(scheduler)
        self.set_sampler(sampler)
        max_pos = getattr(text_encoder.config, "max_position_embeddings", 77)
        self.max_text_length = int(min(tokenizer.model_max_length, max_pos))

    # -- basics (device, dtype, latent_channels, to, enable_gradient_checkpointing: base) --
    @property
    def window_s(self) -> float | None:
        """Native length in seconds (``window_frames / default_fps``); None in image mode.

        Read by ``avbridge.io.longform`` / ``batch`` to cut longer inputs into windows."""
        if self.modality == "image":
            return None
        return self.window_frames / self.default_fps

    def default_spec(self, duration_s: float | None = None) -> MediaSpec:
        if self.modality == "image":
            return MediaSpec(duration_s=0.0, fps=None, height=self.default_height, width=self.default_width)
        d = float(duration_s if duration_s is not None else self.default_duration_s)
        return MediaSpec(
            duration_s=d, fps=self.default_fps, height=self.default_height, width=self.default_width
        )

    def _hw(self, spec: MediaSpec) -> tuple[int, int]:
        h = spec.height or self.default_height
        w = spec.width or self.default_width
        if h < 1 or w < 1:
            raise ValueError(f"bad frame size {h}x{w}")
        return h, w

    def latent_size(self, spec: MediaSpec) -> tuple[int, int]:
        """Latent (h, w): the frame size over the VAE factor, rounded up."""
        h, w = self._hw(spec)
        f = self.vae_scale_factor
        return math.ceil(h / f), math.ceil(w / f)

    # -- protocol ---------------------------------------------------------------------
    @torch.no_grad()
    def _text_states(self, prompts: list[str]) -> torch.Tensor:
        tok = self._tokenize(prompts)
        out = self.text_encoder(input_ids=tok["input_ids"].to(self.device))
        return out.last_hidden_state.float()

    def encode_prompt(self, prompts: list[str], negative: list[str] | None = None) -> PromptCond:
        """CLIP last hidden states (B, L, D) for prompts and negatives (default ``""``)."""
        return prompt_pair(prompts, negative, self._text_states)

    def init_latents(self, spec: MediaSpec, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Gaussian latents: (B, C, F, h, w) for video (F = ``spec.num_frames``), (B, C, h, w) for images."""
        h, w = self.latent_size(spec)
        if self.modality == "video":
            limit = int(getattr(self.unet.config, "motion_max_seq_length", 32) or 32)
            if spec.num_frames > limit:
                raise AvbridgeError(
                    f"{spec.num_frames} frames requested but the motion module handles at most {limit} "
                    "per window: lower the fps or the duration, or generate in windows"
                )
            shape: tuple[int, ...] = (batch, self.latent_channels, spec.num_frames, h, w)
        else:
            shape = (batch, self.latent_channels, h, w)
        return self._noise(shape, generator)

    def predict_eps(
        self, z: torch.Tensor, t: torch.Tensor, cond: PromptCond, guidance_scale: float
    ) -> torch.Tensor:
        """CFG noise estimate; differentiable in ``z`` and ``cond.embeds`` (v-pred converted)."""
        ctx, use_cfg = cfg_inputs(cond, z.shape[0], guidance_scale)
        zin = torch.cat([z, z]) if use_cfg else z
        tb = timestep_batch(t, zin.shape[0], z.device)
        if self.modality == "video":
            # UNetMotionModel folds frames into the batch; its context must be per frame.
            ctx = ctx.repeat_interleave(zin.shape[2], dim=0)
        out = self.unet(zin.to(self.dtype), tb, encoder_hidden_states=ctx.to(self.dtype)).sample.float()
        out = combine_cfg(out, use_cfg, guidance_scale)
        return self._ddim.model_output_to_eps(out, z, t)

    def _decode_images(self, z: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        z = unet_to_vae_latents(self.vae, z)
        chunk = self.decode_chunk_size or z.shape[0]
        parts = [self.vae.decode(c.to(self.vae.dtype)).sample.float() for c in z.split(chunk)]
        x = torch.cat(parts)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        return (x / 2 + 0.5).clamp(0, 1)

    def decode(self, z0: torch.Tensor, spec: MediaSpec) -> torch.Tensor:
        """Video (B, F, 3, H, W) or image (B, 3, H, W) in [0, 1]; per-frame VAE, differentiable.

        A frame size that is not a multiple of the VAE factor is decoded at the rounded-up
        size and resized (bilinear, antialiased) to ``spec``'s size.
        """
        size = self._hw(spec)
        if self.modality == "image":
            return self._decode_images(z0, size)
        b, c, f, h, w = z0.shape
        frames = z0.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        x = self._decode_images(frames, size)
        return x.reshape(b, f, *x.shape[1:])

    # -- loading / saving -------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str | Path,
        motion_adapter: str | Path | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        modality: Modality = "video",
        scheduler: DDIMScheduler | None = None,
        **kwargs: Any,
    ) -> AnimateDiffGenerator:
        """Load (a) a folder/id whose ``unet/`` is a saved ``UNetMotionModel`` or (b) an SD 1.5
        base (``unet/`` a ``UNet2DConditionModel``) plus ``motion_adapter`` (id or folder).

        Also needs ``vae/ text_encoder/ tokenizer/ scheduler/``. For an SD base the scheduler
        config is turned into AnimateDiff's DDIM recipe (linear betas, linspace spacing) unless a
        ``scheduler`` is passed. Image mode needs no motion adapter.
        """
        src, local = resolve_source(id_or_dir)
        unet_cls = _unet_class(src, local)
        if unet_cls == "UNetMotionModel":
            unet: Any = load_part(UNetMotionModel, src, local, "unet", torch_dtype=dtype)
            sched = scheduler or load_part(DDIMScheduler, src, local, "scheduler")
        else:
            unet2d = load_part(UNet2DConditionModel, src, local, "unet", torch_dtype=dtype)
            if modality == "video":
                if motion_adapter is None:
                    raise CheckpointError(
                        local / "unet" if local else f"{src}/unet",
                        "holds an image UNet; video mode needs motion_adapter= (e.g. "
                        "guoyww/animatediff-motion-adapter-v1-5-2)",
                    )
                a_src, a_local = resolve_source(motion_adapter)
                try:
                    adapter = MotionAdapter.from_pretrained(a_src, torch_dtype=dtype)
                except Exception as e:  # noqa: BLE001
                    raise CheckpointError(a_local or a_src, f"cannot load motion adapter: {e}") from e
                with quiet_diffusers():
                    unet = UNetMotionModel.from_unet2d(unet2d, adapter)
            else:
                unet = unet2d
            if scheduler is None:
                base = load_part(DDIMScheduler, src, local, "scheduler")
                cfg = {**dict(base.config), **ANIMATEDIFF_SCHEDULER}
                sched = DDIMScheduler.from_config(cfg)
            else:
                sched = scheduler
        vae = load_part(AutoencoderKL, src, local, "vae", torch_dtype=dtype)
        text_encoder = load_part(CLIPTextModel, src, local, "text_encoder", dtype=dtype)
        tokenizer = load_part(AutoTokenizer, src, local, "tokenizer")
        defaults = _read_defaults(local)
        defaults.update(kwargs)
        return cls(
            unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=sched,
            modality=modality, **defaults,
        ).to(device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``unet/ vae/ text_encoder/ tokenizer/ scheduler/`` (+ ``model_index.json``)."""
        pipe = "AnimateDiffPipeline" if self.modality == "video" else "StableDiffusionPipeline"
        index = {
            "_class_name": pipe,
            "unet": ["diffusers", type(self.unet).__name__],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", type(self.tokenizer).__name__],
            "scheduler": ["diffusers", "DDIMScheduler"],
            "avbridge_defaults": {
                "default_height": self.default_height, "default_width": self.default_width,
                "default_fps": self.default_fps, "default_duration_s": self.default_duration_s,
            },
        }
        return self._save_parts(directory, ("unet", "vae", "text_encoder", "tokenizer", "scheduler"), index)

    # -- builders ---------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: dict[str, dict[str, Any]],
        modality: Modality = "video",
        tokenizer: PreTrainedTokenizerBase | None = None,
        words: list[str] | None = None,
        device: torch.device | str = "cpu",
        **kwargs: Any,
    ) -> AnimateDiffGenerator:
        """Random-weight components from :func:`animatediff_config`-style dicts, built on ``device``."""
        tok, te_cfg = config_tokenizer(config, tokenizer, words, "clip")
        scheduler = DDIMScheduler(**config["scheduler"])
        with torch.device(device):
            unet2d = UNet2DConditionModel(**config["unet"])
            if modality == "video":
                adapter = MotionAdapter(**config["motion_adapter"])
                with quiet_diffusers():
                    unet: Any = UNetMotionModel.from_unet2d(
                        unet2d, adapter, load_weights=torch.device(device).type != "meta"
                    )
            else:
                unet = unet2d
            vae = AutoencoderKL(**config["vae"])
            text_encoder = CLIPTextModel(CLIPTextConfig(**te_cfg))
        d = config.get("defaults", {})
        defaults = dict(default_height=d.get("height", 512), default_width=d.get("width", 512),
                        default_fps=d.get("fps", 8.0))
        defaults.update(kwargs)
        return cls(
            unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tok, scheduler=scheduler,
            modality=modality, **defaults,
        )

    @classmethod
    def tiny(
        cls, seed: int = 0, modality: Modality = "video", words: list[str] | None = None, **kwargs: Any
    ) -> AnimateDiffGenerator:
        """A tiny random AnimateDiff (32x32, 8 fps by default; CPU-fast, offline).

        The same seed gives the same spatial weights in video and image mode, so the image
        mode is exactly the video model's image UNet.
        """
        kwargs.setdefault("window_frames", TINY_WINDOW_FRAMES)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = cls.from_config(animatediff_config("tiny"), modality="video", words=words, **kwargs)
        if modality == "image":
            gen = cls(unet=gen.unet, vae=gen.vae, text_encoder=gen.text_encoder, tokenizer=gen.tokenizer,
                      scheduler=gen.scheduler, modality="image", default_height=gen.default_height,
                      default_width=gen.default_width, default_fps=gen.default_fps, sampler=gen.sampler)
        return gen

    @classmethod
    def build(
        cls, variant: str = "sd15-v152", device: torch.device | str = "meta", modality: Modality = "video"
    ) -> AnimateDiffGenerator:
        """Full-size architecture with random (on ``meta``: no) weights, for shape/memory checks."""
        return cls.from_config(animatediff_config(variant), modality=modality, device=device)


def build_animatediff(
    variant: str = "sd15-v152", device: torch.device | str = "meta", modality: Modality = "video"
) -> AnimateDiffGenerator:
    """Full-size AnimateDiff (SD 1.5 UNet + motion module v1-5-2) on ``device`` (default meta)."""
    return AnimateDiffGenerator.build(variant, device, modality)


def _unet_class(src: str, local: Path | None) -> str:
    """``_class_name`` of the checkpoint's ``unet/config.json`` (hub ids: via the hub cache)."""
    if local is not None:
        cfg = local / "unet" / "config.json"
        if not cfg.is_file():
            raise CheckpointError(local / "unet", "missing 'unet/' folder (or its config.json)")
        try:
            return str(json.loads(cfg.read_text()).get("_class_name", "UNet2DConditionModel"))
        except (OSError, ValueError) as e:
            raise CheckpointError(cfg, f"unreadable config: {e}") from e
    try:
        cfg_dict = UNet2DConditionModel.load_config(src, subfolder="unet")
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{src}/unet", f"cannot load unet config: {e}") from e
    return str(cfg_dict.get("_class_name", "UNet2DConditionModel"))


def _read_defaults(local: Path | None) -> dict[str, Any]:
    if local is None or not (local / "model_index.json").is_file():
        return {}
    try:
        return dict(json.loads((local / "model_index.json").read_text()).get("avbridge_defaults", {}))
    except (OSError, ValueError):
        return {}
