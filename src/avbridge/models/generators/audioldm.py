"""AudioLDM (text-to-audio latent diffusion) as a :class:`Generator`.

Components are the ones diffusers' ``AudioLDMPipeline`` uses, driven step by step:

* ``UNet2DConditionModel`` over VAE latents of a log-mel spectrogram, conditioned through
  ``class_labels`` on the L2-normalised CLAP text embedding (FiLM-style "simple_projection"
  class embedding, concatenated to the time embedding), ``encoder_hidden_states=None``;
* ``AutoencoderKL`` over log-mel spectrograms shaped (B, 1, T, 64);
* ``ClapTextModelWithProjection`` + tokenizer for the prompt;
* ``SpeechT5HifiGan`` vocoder (mel (B, T, 64) -> waveform (B, T * 160));
* ``DDIMScheduler`` (used only for its config: the step is computed statelessly).

Time axis: one mel frame per 160 samples at 16 kHz (100 frames per second), padded up to a
multiple of the VAE's downsampling factor; decoded audio is trimmed to the requested length.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.schedulers.scheduling_ddim import DDIMScheduler
from transformers import (
    AutoTokenizer,
    ClapTextConfig,
    ClapTextModelWithProjection,
    PreTrainedTokenizerBase,
    SpeechT5HifiGan,
    SpeechT5HifiGanConfig,
)

from avbridge.io.dsp import slaney_mel_filterbank
from avbridge.models.generators._common import (
    DDIMMath,
    LatentDiffusionAdapter,
    boost_vocoder_init,
    cfg_inputs,
    combine_cfg,
    config_tokenizer,
    freeze,
    load_part,
    prompt_pair,
    resolve_source,
    timestep_batch,
    unet_to_vae_latents,
    vae_to_unet_latents,
)
from avbridge.models.generators.base import MediaSpec, Modality, PromptCond, SpectrogramFeatures
from avbridge.models.generators.tokenizers import build_word_tokenizer

# ----------------------------------------------------------------------------------------
# Mel spectrogram with AudioLDM's conventions
# ----------------------------------------------------------------------------------------

MEL_SAMPLE_RATE = 16000
MEL_N_FFT = 1024
MEL_WIN_LENGTH = 1024
MEL_HOP = 160
MEL_BINS = 64
MEL_FMIN = 0.0
MEL_FMAX = 8000.0
MEL_CLAMP = 1e-5


@lru_cache(maxsize=8)
def mel_filterbank(
    sample_rate: int = MEL_SAMPLE_RATE,
    n_fft: int = MEL_N_FFT,
    n_mels: int = MEL_BINS,
    fmin: float = MEL_FMIN,
    fmax: float = MEL_FMAX,
) -> torch.Tensor:
    """Slaney-scale, Slaney-normalised triangular filters (n_mels, n_fft // 2 + 1), float32.

    The same filters as ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)`` (librosa's
    defaults: ``htk=False``, ``norm="slaney"``), which AudioLDM's STFT front end uses.
    """
    return torch.from_numpy(slaney_mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax))


def mel_spectrogram(wave: torch.Tensor) -> torch.Tensor:
    """Log-mel spectrogram (B, 1, T, 64) of 16 kHz audio (B, N) or (N,), AudioLDM-style.

    STFT: n_fft 1024, Hann window 1024, hop 160, centred with reflect padding; magnitude
    (not power); 64 Slaney mel bands from 0 to 8000 Hz; ``log(clamp(mel, 1e-5))``.
    The waveform is zero-padded at the end to a multiple of 160 and exactly
    ``T = ceil(N / 160)`` frames are kept, so that a vocoder with hop 160 maps T frames back
    to ``160 * T`` samples. Differentiable in ``wave``; deterministic.
    """
    if wave.dim() == 1:
        wave = wave[None]
    if wave.dim() != 2:
        raise ValueError(f"expected a waveform (B, N) or (N,), got shape {tuple(wave.shape)}")
    wave = wave.float()
    n = wave.shape[-1]
    frames = max(1, math.ceil(n / MEL_HOP))
    wave = F.pad(wave, (0, frames * MEL_HOP - n))
    pad = MEL_N_FFT // 2
    mode = "reflect" if wave.shape[-1] > pad else "constant"
    wave = F.pad(wave[:, None], (pad, pad), mode=mode)[:, 0]
    window = torch.hann_window(MEL_WIN_LENGTH, device=wave.device, dtype=wave.dtype)
    spec = torch.stft(
        wave, MEL_N_FFT, hop_length=MEL_HOP, win_length=MEL_WIN_LENGTH, window=window,
        center=False, return_complex=True,
    )
    mag = (spec.real.square() + spec.imag.square() + 1e-12).sqrt()
    mel = torch.matmul(mel_filterbank().to(mag.device, mag.dtype), mag)[..., :frames]
    return torch.log(torch.clamp(mel, min=MEL_CLAMP)).transpose(1, 2)[:, None]


AUDIOLDM_WINDOW_S = 10.24  # training segment length of the released AudioLDM models


# ----------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------


def log_mel_features(log_mel: torch.Tensor, sample_rate: int, num_samples: int,
                     hop: int = MEL_HOP) -> SpectrogramFeatures:
    """Wrap a log-mel (B, T, bins) in the conventions of :func:`mel_spectrogram`, so that a
    binder's ``embed_audio_features`` reads it (what ``decode_features`` returns)."""
    return SpectrogramFeatures(
        log_mel=log_mel, sample_rate=int(sample_rate), num_samples=int(num_samples), n_fft=MEL_N_FFT,
        win_length=MEL_WIN_LENGTH, hop=hop,
        filterbank=mel_filterbank(int(sample_rate), MEL_N_FFT, log_mel.shape[-1]).to(log_mel.device),
        power=1.0, centered=True,
    )


def audioldm_config(variant: str = "m-full") -> dict[str, dict[str, Any]]:
    """Component configs of a released AudioLDM checkpoint (or ``"tiny"``), as plain dicts.

    ``s-full`` / ``m-full`` follow diffusers' conversion of the original checkpoints
    (model_channels 128 / 192, channel_mult (1, 2, 3, 5), attention at downsampling 2, 4, 8,
    FiLM text condition of dim 512 concatenated to the time embedding; VAE ch 128,
    ch_mult (1, 2, 4), 8 latent channels; HiFi-GAN 16 kHz with upsample rates (5, 4, 2, 2, 2);
    the CLAP text branch of ``laion/clap-htsat-unfused``; DDIM with scaled-linear betas
    0.0015..0.0195). The VAE ``scaling_factor`` of a real checkpoint is learnt and is read from
    its config; the value here is only a placeholder for random-weight builds.
    """
    if variant == "tiny":
        ch: tuple[int, ...] = (32, 64)
        return {
            "unet": dict(
                sample_size=32, in_channels=4, out_channels=4,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                block_out_channels=ch, layers_per_block=1, cross_attention_dim=ch,
                attention_head_dim=8, norm_num_groups=8,
                class_embed_type="simple_projection", projection_class_embeddings_input_dim=32,
                class_embeddings_concat=True,
            ),
            "vae": dict(
                in_channels=1, out_channels=1, latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8,
                sample_size=64, scaling_factor=1.0,
            ),
            "text_encoder": dict(
                vocab_size=len(build_word_tokenizer()), hidden_size=32, num_hidden_layers=2,
                num_attention_heads=2, intermediate_size=64, max_position_embeddings=34,
                projection_dim=32, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            ),
            "vocoder": dict(
                model_in_dim=MEL_BINS, sampling_rate=MEL_SAMPLE_RATE, upsample_initial_channel=64,
                upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[11, 8, 4, 4, 4],
                resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], normalize_before=False,
            ),
            "scheduler": dict(
                num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195,
                beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                steps_offset=1, prediction_type="epsilon",
            ),
            "tokenizer": dict(model_max_length=32),
        }
    model_channels = {"s-full": 128, "m-full": 192}.get(variant)
    if model_channels is None:
        raise ValueError(f"unknown AudioLDM variant {variant!r} (known: tiny, s-full, m-full)")
    ch = tuple(model_channels * m for m in (1, 2, 3, 5))
    return {
        "unet": dict(
            sample_size=128, in_channels=8, out_channels=8,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                              "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=ch, layers_per_block=2, cross_attention_dim=ch,
            class_embed_type="simple_projection", projection_class_embeddings_input_dim=512,
            class_embeddings_concat=True,
        ),
        "vae": dict(
            in_channels=1, out_channels=1, latent_channels=8,
            down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
            block_out_channels=(128, 256, 512), layers_per_block=2, sample_size=512,
            scaling_factor=1.0,
        ),
        "text_encoder": dict(
            vocab_size=50265, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
            intermediate_size=3072, max_position_embeddings=514, type_vocab_size=1,
            projection_dim=512, projection_hidden_act="relu",
        ),
        "vocoder": dict(
            model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024,
            upsample_rates=[5, 4, 2, 2, 2], upsample_kernel_sizes=[16, 16, 8, 4, 4],
            resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=[[1, 3, 5]] * 3,
            normalize_before=False,
        ),
        "scheduler": dict(
            num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
        ),
        "tokenizer": dict(model_max_length=512),
    }


# ----------------------------------------------------------------------------------------
# The adapter
# ----------------------------------------------------------------------------------------

_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "vocoder", "scheduler")


class AudioLDMGenerator(LatentDiffusionAdapter):
    """AudioLDM text-to-audio, one denoising step at a time (see the module docstring)."""

    modality: Modality = "audio"
    _movable = ("unet", "vae", "text_encoder", "vocoder")

    def __init__(
        self,
        *,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        text_encoder: ClapTextModelWithProjection,
        tokenizer: PreTrainedTokenizerBase,
        vocoder: SpeechT5HifiGan,
        scheduler: DDIMScheduler,
        default_duration_s: float = 5.0,
        window_s: float | None = None,
        sampler: str = "ddim",
    ):
        self.unet, self.vae, self.text_encoder, self.vocoder = unet, vae, text_encoder, vocoder
        self.tokenizer, self.scheduler = tokenizer, scheduler
        freeze(unet, vae, text_encoder, vocoder)
        self.default_duration_s = float(default_duration_s)
        self.sample_rate: int = int(vocoder.config.sampling_rate)
        self.hop_length = int(np.prod(vocoder.config.upsample_rates))
        self.n_mels = int(vocoder.config.model_in_dim)
        self.vae_scale_factor = 2 ** (len(vae.config["block_out_channels"]) - 1)
        self._ddim = DDIMMath(scheduler)
        self.set_sampler(sampler)
        max_pos = getattr(text_encoder.config, "max_position_embeddings", 514)
        self.max_text_length = int(min(tokenizer.model_max_length, max_pos - 2))
        # Native length: AudioLDM was trained on 10.24-s segments (1024 mel frames). The
        # UNet is convolutional and runs at any length; longer inputs are best generated
        # in windows of this size (``avbridge.io.longform``).
        self.window_s: float | None = AUDIOLDM_WINDOW_S if window_s is None else float(window_s)

    # -- basics (device, dtype, latent_channels, to, enable_gradient_checkpointing: base) --
    def default_spec(self, duration_s: float | None = None) -> MediaSpec:
        return MediaSpec(duration_s=float(duration_s if duration_s is not None else self.default_duration_s))

    def mel_frames(self, spec: MediaSpec) -> int:
        """Mel frames for ``spec`` (100 per second), padded to the VAE's downsampling factor."""
        frames = math.ceil(spec.num_samples(self.sample_rate) / self.hop_length)
        return math.ceil(frames / self.vae_scale_factor) * self.vae_scale_factor

    # -- protocol ---------------------------------------------------------------------
    @torch.no_grad()
    def _text_embeds(self, prompts: list[str]) -> torch.Tensor:
        tok = self._tokenize(prompts)
        out = self.text_encoder(
            input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device)
        )
        return F.normalize(out.text_embeds.float(), dim=-1)

    def encode_prompt(self, prompts: list[str], negative: list[str] | None = None) -> PromptCond:
        """L2-normalised CLAP text embeddings (B, D); the negative defaults to ``""``."""
        return prompt_pair(prompts, negative, self._text_embeds)

    def init_latents(self, spec: MediaSpec, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Gaussian latents (B, C, frames / f, 64 / f), drawn on ``generator``'s device."""
        shape = (batch, self.latent_channels, self.mel_frames(spec) // self.vae_scale_factor,
                 self.n_mels // self.vae_scale_factor)
        return self._noise(shape, generator)

    def predict_eps(
        self, z: torch.Tensor, t: torch.Tensor, cond: PromptCond, guidance_scale: float
    ) -> torch.Tensor:
        """CFG noise estimate; differentiable in ``z`` and in ``cond.embeds``.

        The text embedding is L2-normalised here (as AudioLDM normalises CLAP embeddings), so
        prompt tuning moves its direction only. v-prediction checkpoints are converted to eps.
        """
        labels, use_cfg = cfg_inputs(cond, z.shape[0], guidance_scale)
        labels = F.normalize(labels.float(), dim=-1)
        zin = torch.cat([z, z]) if use_cfg else z
        tb = timestep_batch(t, zin.shape[0], z.device)
        out = self.unet(
            zin.to(self.dtype), tb, encoder_hidden_states=None, class_labels=labels.to(self.dtype)
        ).sample.float()
        out = combine_cfg(out, use_cfg, guidance_scale)
        return self._ddim.model_output_to_eps(out, z, t)

    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """VAE encode: log-mel (B, 1, T, 64) -> the UNet's latents (posterior mean); the inverse
        of :meth:`decode_mel` up to the VAE's reconstruction error."""
        z = self.vae.encode(mel.to(self.vae.dtype)).latent_dist.mean.float()
        return vae_to_unet_latents(self.vae, z)

    def decode_mel(self, z0: torch.Tensor) -> torch.Tensor:
        """VAE decode: latents -> log-mel (B, 1, T, 64). Differentiable."""
        return self.vae.decode(unet_to_vae_latents(self.vae, z0).to(self.vae.dtype)).sample

    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """Vocoder: log-mel (B, 1, T, 64) -> waveform. Differentiable.

        The tiny preset gives exactly 160 T samples; the released HiFi-GAN's odd kernel/stride
        pairs give 160 T + 32 (``decode`` trims to the requested length either way).
        """
        wave = self.vocoder(mel[:, 0].to(self.vocoder.dtype))
        return wave.reshape(mel.shape[0], -1).float()

    def decode_features(self, z0: torch.Tensor, spec: MediaSpec) -> SpectrogramFeatures:
        """Latents -> the VAE's log-mel, without the vocoder. Differentiable.

        Returns :class:`SpectrogramFeatures` with ``log_mel`` (B, T, 64), T = ``ceil(N / 160)``
        for N = ``spec.num_samples``, in the conventions of :func:`mel_spectrogram` (the
        feature AudioLDM's VAE and vocoder work in). A binder with ``embed_audio_features``
        maps it to its own input directly: the cheap guidance path of docs/method.md.
        """
        n = spec.num_samples(self.sample_rate)
        frames = math.ceil(n / self.hop_length)
        mel = self.decode_mel(z0)[:, 0, :frames].float()
        if mel.shape[1] < frames:  # latents shorter than the spec: repeat the last frame
            mel = torch.cat([mel, mel[:, -1:].expand(-1, frames - mel.shape[1], -1)], dim=1)
        return log_mel_features(mel, int(self.sample_rate), n, hop=self.hop_length)

    def decode(self, z0: torch.Tensor, spec: MediaSpec) -> torch.Tensor:
        """Latents -> waveform (B, N) at ``sample_rate``, N = ``spec.num_samples``."""
        wave = self.vocode(self.decode_mel(z0))
        n = spec.num_samples(self.sample_rate)
        if wave.shape[-1] < n:
            wave = F.pad(wave, (0, n - wave.shape[-1]))
        return wave[:, :n]

    # -- loading / saving -------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        id_or_dir: str | Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        **kwargs: Any,
    ) -> AudioLDMGenerator:
        """Load from a hub id (``cvssp/audioldm-m-full``) or a diffusers-layout folder.

        The folder must hold ``unet/ vae/ text_encoder/ tokenizer/ vocoder/ scheduler/``;
        a missing one raises :class:`CheckpointError` naming it.
        """
        src, local = resolve_source(id_or_dir)
        parts = dict(
            unet=load_part(UNet2DConditionModel, src, local, "unet", torch_dtype=dtype),
            vae=load_part(AutoencoderKL, src, local, "vae", torch_dtype=dtype),
            text_encoder=load_part(ClapTextModelWithProjection, src, local, "text_encoder", dtype=dtype),
            tokenizer=load_part(AutoTokenizer, src, local, "tokenizer"),
            vocoder=load_part(SpeechT5HifiGan, src, local, "vocoder", dtype=dtype),
            scheduler=load_part(DDIMScheduler, src, local, "scheduler"),
        )
        return cls(**parts, **kwargs).to(device)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the diffusers folder layout that :meth:`from_pretrained` (and diffusers) read."""
        index = {
            "_class_name": "AudioLDMPipeline",
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
            "text_encoder": ["transformers", "ClapTextModelWithProjection"],
            "tokenizer": ["transformers", type(self.tokenizer).__name__],
            "vocoder": ["transformers", "SpeechT5HifiGan"],
            "scheduler": ["diffusers", "DDIMScheduler"],
        }
        return self._save_parts(directory, _PARTS, index)

    # -- builders ---------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        config: dict[str, dict[str, Any]],
        tokenizer: PreTrainedTokenizerBase | None = None,
        words: list[str] | None = None,
        device: torch.device | str = "cpu",
        **kwargs: Any,
    ) -> AudioLDMGenerator:
        """Random-weight components from :func:`audioldm_config`-style dicts, built on ``device``."""
        tok, te_cfg = config_tokenizer(config, tokenizer, words, "roberta")
        scheduler = DDIMScheduler(**config["scheduler"])
        with torch.device(device):
            unet = UNet2DConditionModel(**config["unet"])
            vae = AutoencoderKL(**config["vae"])
            text_encoder = ClapTextModelWithProjection(ClapTextConfig(**te_cfg))
            vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(**config["vocoder"]))
        return cls(
            unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tok, vocoder=vocoder,
            scheduler=scheduler, **kwargs,
        )

    @classmethod
    def tiny(cls, seed: int = 0, words: list[str] | None = None, **kwargs: Any) -> AudioLDMGenerator:
        """A tiny random AudioLDM (CPU-fast, offline). Same seed, same weights.

        ``words`` replaces the default tokenizer vocabulary (see ``tokenizers.py``). The vocoder
        gets fan-in scaled weights so that its output and gradients are O(1), not ~1e-6.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = cls.from_config(audioldm_config("tiny"), words=words, **kwargs)
            boost_vocoder_init(gen.vocoder, torch.Generator().manual_seed(seed + 1))
        return gen

    @classmethod
    def build(cls, variant: str = "m-full", device: torch.device | str = "meta") -> AudioLDMGenerator:
        """A full-size architecture with random (or, on ``meta``, no) weights, for shape/memory checks."""
        return cls.from_config(audioldm_config(variant), device=device)


def build_audioldm(variant: str = "m-full", device: torch.device | str = "meta") -> AudioLDMGenerator:
    """Full-size AudioLDM architecture (``s-full`` / ``m-full``) on ``device`` (default meta)."""
    return AudioLDMGenerator.build(variant, device)
