"""Train the embedded world's tiny models, one stage per command.

    python -m training.world.train STAGE [--steps N] [--minutes M] [--resume] [--device cuda]

Stages, in dependency order (the UNets need their VAE and text encoder):

- ``audio-vae``   AutoencoderKL on AudioLDM log-mels (1, 400, 64) -> latents (8, 100, 16)
- ``vocoder``     SpeechT5HifiGan, log-mel -> 16-kHz wave (mel L1 + multi-resolution STFT)
- ``vocoder-gan`` fine-tunes that vocoder with HiFi-GAN's adversarial and feature-matching
  losses (train_vocoder.py); optional, the shipped vocoder is without it (the measured
  trade-off is in docs/world-models.md)
- ``audio-text``  ClapTextModelWithProjection + word-level tokenizer, contrastive vs audio
- ``audio-unet``  UNet2DConditionModel (simple_projection class embedding of the CLAP text)
- ``video-vae``   AutoencoderKL on 32x32 frames -> latents (4, 8, 8)
- ``video-unet``  UNetMotionModel + CLIPTextModel (trained jointly) on 32-frame clips
  (with ``--image-share``, also single frames through the spatial weights alone; it then
  exports them as ``image/``, the SD-format image model that audio-to-image uses)
- ``binder``      ImageBind-architecture binder, InfoNCE video-audio-text (train_binder.py)
- ``binder-align`` fine-tunes that binder with the gradient-alignment term added, so that
  its input gradient points at correctly timed audio (``--grad-align``, default 4)
- ``binder-align-av`` fine-tunes it once more with the term on both inputs (audio 4,
  video 2: ``--grad-align-video``), so the video gradient that A2V follows is trained too
- ``captioner``   linear probe on the binder's embeddings that writes the prompts of the
  vanilla baselines and guided tasks (train_captioner.py); refit after any binder stage

Each stage writes diffusers/transformers folders into ``--models`` (default
``runs/world-models``; never the installed package), its running log and checkpoint into
``runs/world-train/STAGE``, and its summary (steps, losses, seconds, device) into
``models/training.json``, which docs/world-models.md reports.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from avbridge.errors import AvbridgeError
from training.world.common import (  # noqa: F401
    _ATTR_WORDS,
    AUDIO_BETAS,
    MAX_TOKENS,
    MODELS_DIR,
    VIDEO_BETAS,
    WORK_ROOT,
    _attr_words,
    _channels,
    _compat,
    _device_name,
    _finish,
    _mels,
    _require,
    _summary,
    save_half,
    soft_info_nce,
)
from training.world.train_captioner import stage_captioner
from training.world.train_data import (
    build_tokenizer,
    load_clips,
    sample_caption,
    save_json,
)
from training.world.train_loop import EMA, Loop, pick_device, seed_everything
from training.world.train_vocoder import stage_vocoder, stage_vocoder_gan


def _kl(post) -> torch.Tensor:
    """Mean KL per latent element of a diagonal Gaussian posterior."""
    return 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()


@torch.no_grad()
def _latent_stats(vae, batches, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and stds of every input batch (kept on device)."""
    means, stds = [], []
    for x in batches:
        post = vae.encode(x.to(device)).latent_dist
        means.append(post.mean)
        stds.append(post.std)
    return torch.cat(means), torch.cat(stds)


def set_latents_mean(vae, latents: torch.Tensor, folder: Path) -> None:
    """Record the per-channel mean of ``latents`` (B, C, ..., raw VAE units) as the VAE's
    ``latents_mean`` (diffusers' convention) in ``folder``'s config; weights are untouched."""
    mean = latents.mean(dim=[d for d in range(latents.dim()) if d != 1])
    vae.register_to_config(latents_mean=[round(float(v), 6) for v in mean])
    vae.save_config(folder)


def _write_model_index(folder: Path, pipeline: str, parts: dict[str, tuple[str, str]],
                       defaults: dict | None = None) -> None:
    """``model_index.json``; ``defaults`` go to ``avbridge_defaults`` (the adapter's native
    format when the folder is loaded by path)."""
    import diffusers

    idx: dict = {"_class_name": pipeline, "_diffusers_version": diffusers.__version__}
    idx.update({k: list(v) for k, v in parts.items()})
    if defaults:
        idx["avbridge_defaults"] = defaults
    save_json(folder / "model_index.json", idx)


# ---------------------------------------------------------------- audio VAE

def audio_vae_model():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=1, out_channels=1, latent_channels=8,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8,
        sample_size=256,
    )


def stage_audio_vae(args) -> dict:
    dev = args.device
    clips = load_clips("train", args.clips)
    mels = _mels(clips, dev).unsqueeze(1)  # (N, 1, 400, 64)
    vae = audio_vae_model().to(dev).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    loop = Loop.from_args(args, {"vae": vae}, opt)
    crop = 64
    while loop.running():
        idx = torch.randint(0, len(mels), (args.batch,), device=dev)
        start = random.randrange(0, (400 - crop) // 4 + 1) * 4
        x = mels[idx, :, start:start + crop]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        l1 = (rec - x).abs().mean()
        kl = _kl(post)
        loss = l1 + 0.5 * F.mse_loss(rec, x) + args.kl_weight * kl
        loop.update(loss, {"l1": l1.item(), "kl": kl.item()})
    vae.eval()
    mu, sd = _latent_stats(vae, mels.split(64), dev)
    std = float(mu.std())
    vae.register_to_config(scaling_factor=1.0 / std)
    with torch.no_grad():
        rec = vae.decode(mu[:64]).sample
        l1_full = float((rec - mels[:64]).abs().mean())
    out = args.models / "audioldm" / "vae"
    save_half(vae, out)
    return _finish(args, loop, "audio-vae", {"latent_std": round(std, 4), "scaling_factor": round(1 / std, 4),
                                            "full_clip_l1": round(l1_full, 4)})


# ---------------------------------------------------------------- text encoders

def clap_text_model(vocab_size: int):
    from transformers import ClapTextConfig, ClapTextModelWithProjection

    cfg = ClapTextConfig(
        vocab_size=vocab_size, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=MAX_TOKENS + 2, projection_dim=32,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, type_vocab_size=1,
    )
    return ClapTextModelWithProjection(cfg)


def _encode_clap(text_model, tok, texts: list[str], dev) -> torch.Tensor:
    ids = tok(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    out = text_model(input_ids=ids.input_ids.to(dev), attention_mask=ids.attention_mask.to(dev))
    return F.normalize(out.text_embeds, dim=-1)


def _combos() -> list[tuple[str, str, str]]:
    from avbridge.world.scene import CLASSES, COLOURS, SIZES

    return [(c, col, s) for c in CLASSES for col in COLOURS for s in SIZES]


def stage_audio_text(args) -> dict:
    """CLAP text encoder, contrastive against a learned embedding per (class, colour, size).

    The world's sounds are fully described by these three labels, so a label tower is a
    cheap stand-in for an audio tower (an audio CNN over log-mels did not fit the CPU
    budget); the UNet stage then learns the sound of each text embedding. Captions that
    name fewer attributes count every compatible label as a positive.
    """
    dev = args.device
    tok = build_tokenizer("roberta", MAX_TOKENS)
    text = clap_text_model(len(tok)).to(dev).train()
    combos = _combos()
    truths = [{"class": c, "colour": col, "size": s} for c, col, s in combos]
    labels = torch.nn.Embedding(len(combos), text.config.projection_dim).to(dev)
    scale = torch.nn.Parameter(torch.tensor(math.log(10.0), device=dev))
    opt = torch.optim.AdamW([*text.parameters(), *labels.parameters(), scale], lr=args.lr)
    loop = Loop.from_args(args, {"text": text, "labels": labels}, opt)
    rng = random.Random(args.seed)
    while loop.running():
        idx = [rng.randrange(len(combos)) for _ in range(args.batch)]
        caps = [sample_caption(truths[i], rng) for i in idx]
        te = _encode_clap(text, tok, caps, dev)
        le = F.normalize(labels.weight, dim=-1)
        # every caption against every label (36 columns): soft targets over compatible labels
        loss = soft_info_nce(scale.exp().clamp(max=100) * te @ le.t(), _compat(caps, truths))
        loop.update(loss)
    text.eval()
    with torch.no_grad():
        from avbridge.world.scene import caption_for

        te = _encode_clap(text, tok, [caption_for(*k) for k in combos], dev)
        acc = float(((te @ F.normalize(labels.weight, dim=-1).t()).argmax(1).cpu()
                     == torch.arange(len(combos))).float().mean())
        sims = te @ te.t()
        off = float(sims[~torch.eye(len(combos), dtype=torch.bool, device=dev)].max())
    out = args.models / "audioldm"
    text.save_pretrained(out / "text_encoder", safe_serialization=True)
    tok.save_pretrained(out / "tokenizer")
    return _finish(args, loop, "audio-text", {"full_caption_top1": round(acc, 4),
                                             "max_cos_between_captions": round(off, 4)})


# ---------------------------------------------------------------- audio UNet

def audio_unet_model(text_dim: int, channels: tuple[int, ...] = (16, 32, 32)):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=(100, 16), in_channels=8, out_channels=8,
        down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
        mid_block_type="UNetMidBlock2D", block_out_channels=tuple(channels), layers_per_block=1,
        norm_num_groups=8, attention_head_dim=16, cross_attention_dim=channels[-1],
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=text_dim,
        class_embeddings_concat=True,
    )


def audio_scheduler_config() -> dict:
    return dict(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                prediction_type="epsilon", **AUDIO_BETAS)


def event_profile(log_mel: torch.Tensor, frames: int) -> torch.Tensor:
    """Per latent frame, how much the clip's sound rises above its own background, in [0, 1].

    ``log_mel`` (N, T, n_mels) -> (N, frames): the mean over mel bins of the log-mel above the
    clip's median frame, max-pooled to the latent frame rate and scaled so each clip peaks at 1.
    Most of a world clip is background; this lets the UNet's loss weigh its events more.
    """
    level = log_mel.mean(-1)
    rise = (level - level.median(dim=1, keepdim=True).values).clamp(min=0)
    pooled = F.adaptive_max_pool1d(rise[:, None], frames)[:, 0]
    return pooled / pooled.amax(dim=1, keepdim=True).clamp(min=1e-6)


def min_snr_weight(abar_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weight for eps-prediction, ``min(SNR, gamma) / SNR`` (0: all ones).

    Hang et al. 2023: it down-weights the low-noise steps, which otherwise dominate training.
    """
    if gamma <= 0:
        return torch.ones_like(abar_t)
    snr = abar_t / (1 - abar_t)
    return snr.clamp(max=gamma) / snr


def noised(z0: torch.Tensor, abar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DDPM forward process at a random timestep per sample: ``(z_t, eps, t)``."""
    t = torch.randint(0, len(abar), (z0.shape[0],), device=z0.device)
    eps = torch.randn_like(z0)
    a = abar[t].view(-1, *([1] * (z0.dim() - 1)))
    return a.sqrt() * z0 + (1 - a).sqrt() * eps, eps, t


def weighted_eps_loss(pred: torch.Tensor, eps: torch.Tensor, w: torch.Tensor, abar_t: torch.Tensor,
                      gamma: float) -> torch.Tensor:
    """Noise-prediction MSE per sample, weighted over positions by ``w`` (broadcast to
    ``pred``; normalised per sample), then min-SNR-weighted over the batch."""
    dims = tuple(range(1, pred.dim()))
    w = w.expand_as(pred)
    err = ((pred - eps) ** 2 * w).mean(dims) / w.mean(dims)
    return (err * min_snr_weight(abar_t, gamma)).mean()


def stage_audio_unet(args) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler
    from transformers import AutoTokenizer, ClapTextModelWithProjection

    from avbridge.models.generators._common import vae_to_unet_latents

    dev = args.device
    root = args.models / "audioldm"
    vae = AutoencoderKL.from_pretrained(_require(root / "vae", "audio-vae")).to(dev).eval()
    text_dir = _require(root / "text_encoder", "audio-text")
    text = ClapTextModelWithProjection.from_pretrained(text_dir).to(dev).eval()
    tok = AutoTokenizer.from_pretrained(root / "tokenizer")
    clips = load_clips("train", args.clips)
    mels = _mels(clips, dev).unsqueeze(1)
    mu, sd = _latent_stats(vae, mels.split(64), dev)
    # The UNet works on zero-mean latents: with AudioLDM's betas almost none of a latent's
    # mean leaks into the noisiest training inputs, so a UNet trained on offset latents and
    # started from N(0, I) samples latents centred on zero instead (twelfth session).
    set_latents_mean(vae, mu, root / "vae")
    frame_w = 1.0 + args.event_weight * event_profile(mels[:, 0], mu.shape[2])
    del mels
    # Every caption variant of every (class, colour, size) is encoded once (frozen encoder).
    cache: dict[str, torch.Tensor] = {}

    def embed(caps: list[str]) -> torch.Tensor:
        missing = sorted({c for c in caps if c not in cache})
        if missing:
            with torch.no_grad():
                e = _encode_clap(text, tok, missing, dev)
            cache.update(dict(zip(missing, e, strict=True)))
        return torch.stack([cache[c] for c in caps])

    if args.init is not None:
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(_require(args.init / "unet", "audio-unet --init"),
                                                    torch_dtype=torch.float32).to(dev).train()
    else:
        unet = audio_unet_model(text.config.projection_dim, *_channels(args)).to(dev).train()
    ema = EMA(unet, args.ema)
    noise_sched = DDPMScheduler(num_train_timesteps=1000, clip_sample=False, **AUDIO_BETAS)
    abar = noise_sched.alphas_cumprod.to(dev)
    opt = torch.optim.AdamW(unet.parameters(), lr=args.lr, weight_decay=0.01)
    loop = Loop.from_args(args, {"unet": unet}, opt, emas={"unet": ema})
    rng = random.Random(args.seed)
    while loop.running():
        idx = torch.randint(0, len(mu), (args.batch,), device=dev)
        z0 = vae_to_unet_latents(vae, mu[idx] + sd[idx] * torch.randn_like(mu[idx]))
        caps = ["" if rng.random() < args.uncond else sample_caption(clips.truths[i], rng)
                for i in idx.tolist()]
        cond = embed(caps)
        zt, eps, t = noised(z0, abar)
        pred = unet(zt, t, encoder_hidden_states=None, class_labels=cond).sample
        w = frame_w[idx].view(-1, 1, frame_w.shape[1], 1)
        loss = weighted_eps_loss(pred, eps, w, abar[t], args.min_snr)
        loop.update(loss)
    save_half(ema.shadow, root / "unet")
    DDIMScheduler(**audio_scheduler_config()).save_pretrained(root / "scheduler")
    _write_model_index(root, "AudioLDMPipeline", {
        "vae": ("diffusers", "AutoencoderKL"), "unet": ("diffusers", "UNet2DConditionModel"),
        "scheduler": ("diffusers", "DDIMScheduler"),
        "text_encoder": ("transformers", "ClapTextModelWithProjection"),
        "tokenizer": ("transformers", "PreTrainedTokenizerFast"),
        "vocoder": ("transformers", "SpeechT5HifiGan"),
    })
    return _finish(args, loop, "audio-unet", {"uncond_prob": args.uncond, "ema": args.ema,
                                              "event_weight": args.event_weight, "min_snr": args.min_snr,
                                              "latents_mean": vae.config.latents_mean})


# ---------------------------------------------------------------- video VAE

def video_vae_model():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8, sample_size=32,
    )


def _frames01(video_u8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return video_u8.movedim(-1, -3).float() / 127.5 - 1.0


def stage_video_vae(args) -> dict:
    dev = args.device
    clips = load_clips("train", args.clips)
    frames = clips.video.flatten(0, 1).to(dev)  # (N*T, H, W, 3) uint8
    vae = video_vae_model().to(dev).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    loop = Loop.from_args(args, {"vae": vae}, opt)
    while loop.running():
        x = _frames01(frames[torch.randint(0, len(frames), (args.batch,), device=dev)])
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        l1 = (rec - x).abs().mean()
        kl = _kl(post)
        # Objects are small: weight pixels that differ from the background more.
        w = 1.0 + 4.0 * (x - x.mean(dim=(2, 3), keepdim=True)).abs().amax(1, keepdim=True)
        loss = (w * (rec - x).abs()).mean() + F.mse_loss(rec, x) + args.kl_weight * kl
        loop.update(loss, {"l1": l1.item(), "kl": kl.item()})
    vae.eval()
    sub = _frames01(frames[:: max(1, len(frames) // 4096)])
    mu, _ = _latent_stats(vae, sub.split(256), dev)
    std = float(mu.std())
    vae.register_to_config(scaling_factor=1.0 / std)
    with torch.no_grad():
        l1_eval = float((vae.decode(mu[:256]).sample - sub[:256]).abs().mean())
    save_half(vae, args.models / "animatediff" / "vae")
    return _finish(args, loop, "video-vae", {"latent_std": round(std, 4), "scaling_factor": round(1 / std, 4),
                                            "eval_l1": round(l1_eval, 4)})


# ---------------------------------------------------------------- video UNet

def clip_text_model(vocab_size: int, eos_id: int, bos_id: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=MAX_TOKENS, projection_dim=64,
        pad_token_id=eos_id, bos_token_id=bos_id, eos_token_id=eos_id, attention_dropout=0.0,
    )
    return CLIPTextModel(cfg)


def video_unet_model(cross_dim: int, frames: int, channels: tuple[int, ...] = (16, 32)):
    from diffusers import UNetMotionModel

    return UNetMotionModel(
        sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
        up_block_types=("UpBlockMotion", "CrossAttnUpBlockMotion"),
        block_out_channels=tuple(channels), layers_per_block=1, norm_num_groups=8,
        cross_attention_dim=cross_dim, num_attention_heads=2, motion_num_attention_heads=2,
        motion_max_seq_length=max(32, frames), use_motion_mid_block=True,
    )


def video_scheduler_config() -> dict:
    return dict(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                prediction_type="epsilon", timestep_spacing="linspace", **VIDEO_BETAS)


def _encode_clip(text_model, tok, texts: list[str], dev) -> tuple[torch.Tensor, torch.Tensor]:
    """(last hidden states, pooled EOS states) of ``texts``."""
    ids = tok(texts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt")
    out = text_model(input_ids=ids.input_ids.to(dev))
    return out.last_hidden_state, out.pooler_output


def object_profile(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) frames in [-1, 1] -> (N, size, size) in [0, 1]: how far each latent
    cell's pixels stand out from their frame's mean colour (the world's objects are small on a
    plain background), for ``--object-weight``."""
    dev_px = (frames - frames.mean(dim=(2, 3), keepdim=True)).abs().amax(1, keepdim=True)
    return F.adaptive_max_pool2d(dev_px, size).squeeze(1).clamp(max=1.0)


class ImageStep:
    """``--image-share``: diffusion loss on single frames through the motion UNet's spatial
    weights alone, its motion modules bypassed, which is what image mode (audio-to-image)
    samples with (``unet2d_from_motion``). Trained only with the motion modules in the path,
    the spatial layers drew poorly on their own (A2I class 0.46 against A2V's 0.86,
    fourteenth session)."""

    def __init__(self, unet, vae) -> None:
        from avbridge.models.generators.animatediff import unet2d_from_motion

        self.vae = vae
        self.image_unet = unet2d_from_motion(unet).eval().requires_grad_(False)
        own = dict(unet.named_parameters())
        # The image UNet's parameter names are the motion UNet's, less its motion modules;
        # calling it with the motion UNet's live parameters (updated in place) trains those.
        names = [k for k, _ in self.image_unet.named_parameters()]
        missing = [k for k in names if k not in own]
        if missing:
            raise AvbridgeError(f"image UNet parameters without a motion-UNet counterpart: {missing[:3]}")
        self.params = {k: own[k] for k in names}

    def loss(self, mu, sd, obj, truths, text, tok, abar, args, rng: random.Random) -> torch.Tensor:
        from avbridge.models.generators._common import vae_to_unet_latents

        n, _, t_len = mu.shape[:3]
        dev = mu.device
        b = args.batch * (args.frames or t_len)
        idx = torch.randint(0, n, (b,), device=dev)
        f = torch.randint(0, t_len, (b,), device=dev)
        m, v = mu[idx, :, f], sd[idx, :, f]  # (b, 4, 8, 8)
        z0 = vae_to_unet_latents(self.vae, m + v * torch.randn_like(m))
        caps = ["" if rng.random() < args.uncond else sample_caption(truths[i], rng) for i in idx.tolist()]
        cond, _ = _encode_clip(text, tok, caps, dev)
        zt, eps, t = noised(z0, abar)
        pred = torch.func.functional_call(self.image_unet, self.params, (zt, t),
                                          {"encoder_hidden_states": cond}).sample
        w = (1.0 + args.object_weight * obj[idx, f]).unsqueeze(1)  # (b, 1, 8, 8)
        return weighted_eps_loss(pred, eps, w, abar[t], args.min_snr)


def export_image_model(animatediff: Path, out: Path) -> None:
    """Write the spatial weights of an animatediff folder's motion UNet, with its VAE, text
    encoder, tokenizer and scheduler, as an SD-format image model (``unet/`` a
    ``UNet2DConditionModel``): the world's image generator for audio-to-image, as Stable
    Diffusion is the paper's. The motion modules are dropped (``unet2d_from_motion``)."""
    from diffusers import UNetMotionModel

    from avbridge.loading import world_format
    from avbridge.models.generators.animatediff import unet2d_from_motion

    unet = UNetMotionModel.from_pretrained(animatediff / "unet", torch_dtype=torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    save_half(unet2d_from_motion(unet), out / "unet")
    for part in ("vae", "text_encoder", "tokenizer", "scheduler"):
        if (out / part).exists():
            shutil.rmtree(out / part)
        shutil.copytree(animatediff / part, out / part)
    _write_model_index(out, "StableDiffusionPipeline", {
        "vae": ("diffusers", "AutoencoderKL"), "unet": ("diffusers", "UNet2DConditionModel"),
        "scheduler": ("diffusers", "DDIMScheduler"), "text_encoder": ("transformers", "CLIPTextModel"),
        "tokenizer": ("transformers", "PreTrainedTokenizerFast"),
    }, defaults=world_format())


def stage_video_unet(args) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNetMotionModel
    from transformers import CLIPTextModel

    from avbridge.loading import world_format
    from avbridge.models.generators._common import vae_to_unet_latents

    dev = args.device
    root = args.models / "animatediff"
    vae = AutoencoderKL.from_pretrained(_require(root / "vae", "video-vae")).to(dev).eval()
    clips = load_clips("train", args.clips)
    n, t_len = clips.video.shape[:2]
    frames = _frames01(clips.video.flatten(0, 1))
    mu, sd = _latent_stats(vae, frames.split(512), dev)
    obj = object_profile(frames, mu.shape[-1]).view(n, t_len, *mu.shape[-2:]).to(dev)
    del frames
    mu = mu.view(n, t_len, *mu.shape[1:]).transpose(1, 2).contiguous()  # (N, 4, T, 8, 8)
    sd = sd.view(n, t_len, *sd.shape[1:]).transpose(1, 2).contiguous()
    # Zero-mean latents, as for audio (fourteenth session): the mean is the VAE's
    # ``latents_mean``, which the adapter adds back before decoding.
    set_latents_mean(vae, mu, root / "vae")
    tok = build_tokenizer("clip", MAX_TOKENS)
    nf = args.frames or t_len
    if args.init is not None:
        text = CLIPTextModel.from_pretrained(_require(args.init / "text_encoder", "video-unet --init"),
                                             torch_dtype=torch.float32).to(dev).train()
        unet = UNetMotionModel.from_pretrained(_require(args.init / "unet", "video-unet --init"),
                                               torch_dtype=torch.float32).to(dev).train()
        if text.config.vocab_size != len(tok):
            raise AvbridgeError(f"{args.init / 'text_encoder'}: vocabulary of {text.config.vocab_size} "
                                f"tokens, the world's tokenizer has {len(tok)}")
    else:
        text = clip_text_model(len(tok), tok.eos_token_id, tok.bos_token_id).to(dev).train()
        unet = video_unet_model(text.config.hidden_size, nf, *_channels(args)).to(dev).train()
    ema_u, ema_t = EMA(unet, args.ema), EMA(text, args.ema)
    noise_sched = DDPMScheduler(num_train_timesteps=1000, clip_sample=False, **VIDEO_BETAS)
    abar = noise_sched.alphas_cumprod.to(dev)
    # --text-contrast: the text encoder's pooled state is also pulled towards a learned
    # embedding per (class, colour, size), as in the audio-text stage; trained by the
    # diffusion loss alone it left "drum" and "bell" almost the same (fourteenth session).
    truths = [{"class": c, "colour": col, "size": sz} for c, col, sz in _combos()]
    models = {"unet": unet, "text": text}
    head = None
    if args.text_contrast > 0:
        head = torch.nn.Module()
        head.labels = torch.nn.Embedding(len(truths), text.config.hidden_size)
        head.scale = torch.nn.Parameter(torch.tensor(math.log(10.0)))
        models["labels"] = head.to(dev)
    params = [q for m in models.values() for q in m.parameters()]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    loop = Loop.from_args(args, models, opt, emas={"unet": ema_u, "text": ema_t})
    rng = random.Random(args.seed)
    image_step = ImageStep(unet, vae) if args.image_share > 0 else None
    while loop.running():
        if image_step is not None and rng.random() < args.image_share:
            loss = image_step.loss(mu, sd, obj, clips.truths, text, tok, abar, args, rng)
            loop.update(loss, {"image": loss.item()})
            continue
        idx = torch.randint(0, n, (args.batch,), device=dev)
        s = random.randrange(0, t_len - nf + 1)
        m, v = mu[idx, :, s:s + nf], sd[idx, :, s:s + nf]
        z0 = vae_to_unet_latents(vae, m + v * torch.randn_like(m))
        caps = ["" if rng.random() < args.uncond else sample_caption(clips.truths[i], rng)
                for i in idx.tolist()]
        cond, pooled = _encode_clip(text, tok, caps, dev)
        zt, eps, t = noised(z0, abar)
        # diffusers' UNetMotionModel wants one prompt per frame, as AnimateDiffPipeline passes it.
        pred = unet(zt, t, encoder_hidden_states=cond.repeat_interleave(nf, dim=0)).sample
        w = (1.0 + args.object_weight * obj[idx, s:s + nf]).unsqueeze(1)  # (B, 1, F, 8, 8)
        loss = weighted_eps_loss(pred, eps, w, abar[t], args.min_snr)
        named = [i for i, c in enumerate(caps) if c]
        logs = {}
        if head is not None and named:
            te = F.normalize(pooled[named], dim=-1)
            logits = head.scale.exp().clamp(max=100) * te @ F.normalize(head.labels.weight, dim=-1).t()
            contrast = soft_info_nce(logits, _compat([caps[i] for i in named], truths))
            loss = loss + args.text_contrast * contrast
            logs["contrast"] = contrast.item()
        loop.update(loss, logs)
    save_half(ema_u.shadow, root / "unet")
    ema_t.shadow.save_pretrained(root / "text_encoder", safe_serialization=True)
    tok.save_pretrained(root / "tokenizer")
    DDIMScheduler(**video_scheduler_config()).save_pretrained(root / "scheduler")
    _write_model_index(root, "AnimateDiffPipeline", {
        "vae": ("diffusers", "AutoencoderKL"), "unet": ("diffusers", "UNetMotionModel"),
        "scheduler": ("diffusers", "DDIMScheduler"), "text_encoder": ("transformers", "CLIPTextModel"),
        "tokenizer": ("transformers", "PreTrainedTokenizerFast"),
    }, defaults=world_format())
    if args.image_share > 0:  # the spatial weights were trained for image mode too
        export_image_model(root, args.models / "image")
    return _finish(args, loop, "video-unet", {"frames": nf, "uncond_prob": args.uncond, "ema": args.ema,
                                              "object_weight": args.object_weight, "min_snr": args.min_snr,
                                              "text_contrast": args.text_contrast,
                                              "image_share": args.image_share,
                                              "latents_mean": vae.config.latents_mean})


# ---------------------------------------------------------------- CLI

def stage_binder(args) -> dict:
    from training.world.train_binder import stage_binder as run

    return run(args)


def _fine_tune_binder(args, stage: str, video_weight: float) -> dict:
    """Fine-tune the trained binder (``--init``, default ``--models``/binder) in place with
    the gradient-alignment term (audio ``--grad-align``, default 4; video
    ``--grad-align-video``, default ``video_weight``) and cosine decay."""
    from training.world.train_binder import stage_binder as run

    if args.init is None:
        args.init = _require(args.models / "binder" / "model.safetensors", "binder").parent
    if args.grad_align <= 0:
        args.grad_align = 4.0
    if args.grad_align_video <= 0:
        args.grad_align_video = video_weight
    args.cosine = True
    return run(args, stage=stage)


def stage_binder_align(args) -> dict:
    """The audio input gradient only."""
    return _fine_tune_binder(args, "binder-align", video_weight=0.0)


def stage_binder_align_av(args) -> dict:
    """A second fine-tune after ``binder-align`` with the video input gradient too (weight
    2), for A2V's guidance through the video tower."""
    return _fine_tune_binder(args, "binder-align-av", video_weight=2.0)


STAGES: dict[str, tuple[Callable, dict]] = {
    # name: (function, defaults)
    "audio-vae": (stage_audio_vae, dict(steps=4000, batch=16, lr=1e-3, seed=11)),
    "vocoder": (stage_vocoder, dict(steps=6000, batch=8, lr=2e-3, seed=12)),
    "vocoder-gan": (stage_vocoder_gan, dict(steps=100000, batch=8, lr=2e-4, seed=19)),
    "audio-text": (stage_audio_text, dict(steps=600, batch=64, lr=1e-3, seed=13)),
    "audio-unet": (stage_audio_unet, dict(steps=8000, batch=8, lr=1e-3, seed=14)),
    "video-vae": (stage_video_vae, dict(steps=4000, batch=32, lr=1e-3, seed=15)),
    "video-unet": (stage_video_unet, dict(steps=8000, batch=4, lr=1e-3, seed=16)),
    "binder": (stage_binder, dict(steps=3000, batch=64, lr=5e-4, seed=17)),
    "binder-align": (stage_binder_align, dict(steps=100000, batch=32, lr=3e-4, seed=18)),
    "binder-align-av": (stage_binder_align_av, dict(steps=100000, batch=32, lr=3e-4, seed=18)),
    "captioner": (stage_captioner, dict(steps=500, lr=1e-2, seed=20)),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.world.train", description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=[*STAGES, "all", "data"], help="a stage, all of them in order, or "
                   "data (only render and cache the training clips)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (stage default)")
    p.add_argument("--minutes", type=float, default=12.0, help="wall-time budget; stops early and saves")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--clips", type=int, default=600, help="training clips rendered from the train split")
    p.add_argument("--frames", type=int, default=16, help="video-unet: frames per training window (0: all)")
    p.add_argument("--resume", action="store_true", help="continue from runs/world-train/STAGE/checkpoint.pt")
    p.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    p.add_argument("--models", type=Path, default=MODELS_DIR, help="where the model folders are written")
    p.add_argument("--ckpt-every", type=float, default=180.0, help="seconds between checkpoints")
    p.add_argument("--kl-weight", type=float, default=1e-4)
    p.add_argument("--uncond", type=float, default=0.1, help="caption dropout for classifier-free guidance")
    p.add_argument("--ema", type=float, default=0.995)
    p.add_argument("--event-weight", type=float, default=0.0,
                   help="audio-unet: extra loss weight on latent frames where the clip's sound rises "
                        "above its background (0: a plain mean)")
    p.add_argument("--object-weight", type=float, default=0.0,
                   help="video-unet: weight each latent cell's loss by 1 + W x how far its pixels stand "
                        "out from the frame's background (0: plain MSE)")
    p.add_argument("--text-contrast", type=float, default=0.0,
                   help="video-unet: weight of a contrastive term that keeps the text encoder's pooled "
                        "state apart per (class, colour, size) (0: the diffusion loss alone)")
    p.add_argument("--image-share", type=float, default=0.0,
                   help="video-unet: share of steps on single frames with the motion modules bypassed, "
                        "which trains the spatial layers for image mode (audio-to-image) (0: none)")
    p.add_argument("--min-snr", type=float, default=0.0,
                   help="audio-unet / video-unet: min-SNR-gamma loss weighting with this gamma (0: off)")
    p.add_argument("--channels", default="", help="UNet block widths, e.g. 16,32,32, or the vocoder's "
                   "first width, e.g. 128 (default: the model's)")
    p.add_argument("--wide", action="store_true", help="vocoder: HiFi-GAN V1 residual stacks (3/7/11)")
    p.add_argument("--recon-weight", type=float, default=15.0,
                   help="vocoder-gan: weight of the reconstruction losses against the adversarial ones")
    p.add_argument("--adv-weight", type=float, default=1.0,
                   help="vocoder-gan: weight of the adversarial + feature-matching losses (0: a control)")
    p.add_argument("--vae-mels", type=float, default=0.0,
                   help="vocoder / vocoder-gan: share of training segments whose log-mel is the audio "
                        "VAE's round trip (what generated audio is), the target wave the real one (0: none)")
    p.add_argument("--loud-weight", type=float, default=0.0,
                   help="vocoder / vocoder-gan: weight of a log-mel L1 weighted by each bin's loudness "
                        "(the chirps and chimes; 0: none)")
    p.add_argument("--cosine", action="store_true", help="cosine learning-rate decay over the budget")
    p.add_argument("--init", type=Path, default=None,
                   help="binder / vocoder-gan: start from this trained folder (default: the shipped one); "
                        "video-unet / audio-unet: from this animatediff / audioldm folder's UNet (video: "
                        "and its text encoder)")
    p.add_argument("--adv-steps", type=int, default=0,
                   help="binder: signed-gradient steps of the adversarial video-audio negatives (0: none)")
    p.add_argument("--adv-eps", type=float, default=0.15,
                   help="binder: audio input budget of those negatives (video: twice this)")
    p.add_argument("--grad-align", type=float, default=0.0,
                   help="binder: weight of the gradient-alignment term (0: none): the input gradient of the "
                        "video-audio cosine at time-shifted audio must point at the clip's true audio")
    p.add_argument("--grad-align-video", type=float, default=0.0,
                   help="binder: the same for the video input gradient, towards the true video (0: none)")
    p.add_argument("--adv-latent-steps", type=int, default=0,
                   help="binder: sign steps of the guidance-like negatives on audio latents (0: none)")
    return p


def run_stage(stage: str, args: argparse.Namespace) -> dict:
    fn, defaults = STAGES[stage]
    a = argparse.Namespace(**vars(args))
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.device = pick_device(args.device)
    a.work = WORK_ROOT / stage
    seed_everything(a.seed)
    if a.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    t0 = time.time()
    print(f"[{stage}] device={a.device} steps={a.steps} minutes={a.minutes} clips={a.clips}", flush=True)
    info = fn(a)
    print(f"[{stage}] wall {time.time() - t0:.0f} s", flush=True)
    return info


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.stage == "data":
        t0 = time.time()
        clips = load_clips("train", args.clips)
        print(f"[data] {len(clips)} train clips cached in {time.time() - t0:.0f} s", flush=True)
        return 0
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    for s in stages:
        run_stage(s, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
