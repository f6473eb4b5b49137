"""Vocoder stages of ``python -m training.world.train``: the HiFi-GAN generator that turns
the audio VAE's log-mels into 16-kHz waves.

- ``vocoder``      trains it from scratch on reconstruction losses only (log-mel L1 +
  multi-resolution STFT): fast and stable, but tonal sounds come out noisy;
- ``vocoder-gan``  fine-tunes that generator with HiFi-GAN's adversarial and
  feature-matching losses from a multi-period and a multi-resolution spectrogram
  discriminator (UnivNet's), the reconstruction losses kept. The discriminators are
  training-only and are not shipped.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.world.train_data import load_clips, mel_spectrogram
from training.world.train_loop import Loop

SEGMENT = 32  # mel frames per training segment (0.32 s)
HOP = 160  # samples per mel frame


def vocoder_model(channels: int = 64, wide: bool = False):
    """The world's HiFi-GAN generator. ``wide``: HiFi-GAN V1's residual stacks (kernels
    3/7/11, dilations 1/3/5), a longer receptive field for tonal sounds."""
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    kernels, dilations = ([3, 7, 11], [[1, 3, 5]] * 3) if wide else ([3, 7], [[1, 3], [1, 3]])
    cfg = SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=channels,
        upsample_rates=[5, 4, 4, 2], upsample_kernel_sizes=[11, 8, 8, 4],
        resblock_kernel_sizes=kernels, resblock_dilation_sizes=dilations,
        normalize_before=False,
    )
    voc = SpeechT5HifiGan(cfg)
    # transformers initialises these convs with std 0.01, which on a tiny net gives ~1e-6
    # outputs and vanishing gradients; PyTorch's default (Kaiming-uniform) trains.
    for m in voc.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            m.reset_parameters()
    return voc


def _stft_mag(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    win = torch.hann_window(n_fft, device=x.device)
    s = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=win,
                   return_complex=True)
    return torch.sqrt(s.real**2 + s.imag**2 + 1e-7)


STFT_RESOLUTIONS = ((256, 64), (512, 128), (1024, 256))


def mr_stft_loss(y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, three resolutions."""
    total = y.new_zeros(())
    for n_fft, hop in STFT_RESOLUTIONS:
        a, b = _stft_mag(y, n_fft, hop), _stft_mag(t, n_fft, hop)
        sc = torch.linalg.norm(a - b) / (torch.linalg.norm(b) + 1e-7)
        total = total + sc + (torch.log(a) - torch.log(b)).abs().mean()
    return total / 3


@torch.no_grad()
def vae_round_trip(vae, mels: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """The audio VAE's reconstruction (posterior mode) of log-mels (N, T, 64): what the
    pipeline's vocoder is actually fed, since every generated log-mel is a VAE decode."""
    out = [vae.decode(vae.encode(m[:, None]).latent_dist.mode()).sample[:, 0] for m in mels.split(chunk)]
    return torch.cat(out)


class _Segments:
    """Random (log-mel, wave) training segments, 80% of them drawn where the sound is loud:
    silent stretches teach nothing. With ``vae`` and ``vae_share`` > 0, that share of the
    segments takes its log-mel from the VAE's round trip (the target wave stays the real one)."""

    def __init__(self, clips: int, device: torch.device, vae=None, vae_share: float = 0.0) -> None:
        from training.world.common import _mels

        data = load_clips("train", clips)
        self.audio = data.audio.to(device).float()
        self.mels = _mels(data, device)  # (N, 400, 64)
        self.energy = self.mels.exp().mean(-1)  # (N, 400)
        self.device = device
        self.vae_share = vae_share if vae is not None else 0.0
        self.vae_mels = vae_round_trip(vae, self.mels) if self.vae_share > 0 else None

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        n_frames = self.mels.shape[1]
        idx = torch.randint(0, len(self.mels), (batch,), device=self.device)
        loud = torch.multinomial(self.energy[idx, : n_frames - SEGMENT] + 1e-3, 1)[:, 0]
        anywhere = torch.randint(0, n_frames - SEGMENT, (batch,), device=self.device)
        starts = torch.where(torch.rand(batch, device=self.device) < 0.8, loud, anywhere).tolist()
        pairs = list(zip(idx.tolist(), starts, strict=True))
        m = torch.stack([self.mels[i, s:s + SEGMENT] for i, s in pairs])
        if self.vae_mels is not None:
            m_vae = torch.stack([self.vae_mels[i, s:s + SEGMENT] for i, s in pairs])
            pick = torch.rand(batch, 1, 1, device=self.device) < self.vae_share
            m = torch.where(pick, m_vae, m)
        wav = torch.stack([self.audio[i, s * HOP:(s + SEGMENT) * HOP] for i, s in pairs])
        return m, wav

    @torch.no_grad()
    def full_clip_mel_l1(self, voc, n: int = 16) -> float:
        """Log-mel L1 of whole clips through the vocoder (train clips; a sanity number)."""
        y = voc(self.mels[:n])
        return float((mel_spectrogram(y) - self.mels[:n]).abs().mean())


def _segments(args) -> _Segments:
    """The stage's training segments; ``--vae-mels`` loads the audio VAE from ``--models``."""
    vae = None
    if args.vae_mels > 0:
        from diffusers import AutoencoderKL

        from training.world.common import _require

        vae = AutoencoderKL.from_pretrained(_require(args.models / "audioldm" / "vae", "audio-vae"))
        vae = vae.to(args.device).eval()
    return _Segments(args.clips, args.device, vae, args.vae_mels)


def loud_mel_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Log-mel L1 weighted by each bin's linear magnitude relative to its segment's loudest
    bin. The plain log-mel L1 is an average over mostly quiet background bins: a vocoder
    that rendered the world's chirps as faint clicks scored 0.27 on it while missing the
    chirps' own bins by 4.5 (fifteenth session)."""
    w = torch.exp(target - target.amax(dim=(1, 2), keepdim=True)).detach()
    return ((pred - target).abs() * w).sum() / w.sum()


def _recon(y: torch.Tensor, wav: torch.Tensor,
           loud_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    my, mt = mel_spectrogram(y), mel_spectrogram(wav)
    mel_l1 = (my - mt).abs().mean()
    stft = mr_stft_loss(y, wav)
    parts = {"mel_l1": mel_l1.item(), "stft": stft.item()}
    loss = mel_l1 + 2.0 * stft
    if loud_weight > 0:
        loud = loud_mel_l1(my, mt)
        loss = loss + loud_weight * loud
        parts["loud"] = loud.item()
    return loss, parts


def stage_vocoder(args) -> dict:
    from training.world.common import _channels, _finish

    dev = args.device
    data = _segments(args)
    ch = _channels(args)
    voc = vocoder_model(ch[0][0] if ch else 64, wide=args.wide).to(dev).train()
    opt = torch.optim.AdamW(voc.parameters(), lr=args.lr, betas=(0.8, 0.99))
    loop = Loop.from_args(args, {"vocoder": voc}, opt)
    while loop.running():
        m, wav = data.sample(args.batch)
        loss, parts = _recon(voc(m), wav, args.loud_weight)
        loop.update(loss, parts, clip=5.0)
    voc.eval()
    full = data.full_clip_mel_l1(voc)
    voc.save_pretrained(args.models / "audioldm" / "vocoder", safe_serialization=True)
    return _finish(args, loop, "vocoder", {"full_clip_mel_l1": round(full, 4), "vae_mels": args.vae_mels,
                                             "loud_weight": args.loud_weight})


# ---------------------------------------------------------------- discriminators

def _conv_stack(
    convs: nn.ModuleList, post: nn.Module, h: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(flattened score, every layer's output for feature matching) of a discriminator."""
    feats = []
    for conv in convs:
        h = F.leaky_relu(conv(h), 0.1)
        feats.append(h)
    h = post(h)
    feats.append(h)
    return h.flatten(1), feats


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator: the wave folded into (T / p, p), 2D convs along time."""

    def __init__(self, period: int, width: int = 16) -> None:
        super().__init__()
        self.period = period
        chans = [1, width, 2 * width, 4 * width, 4 * width]
        self.convs = nn.ModuleList(
            nn.utils.parametrizations.weight_norm(nn.Conv2d(a, b, (5, 1), (3, 1) if i < 3 else 1, (2, 0)))
            for i, (a, b) in enumerate(zip(chans[:-1], chans[1:], strict=True)))
        self.post = nn.utils.parametrizations.weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, (1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, t = x.shape
        if t % self.period:
            x = F.pad(x, (0, self.period - t % self.period), mode="reflect")
        h = x.view(b, 1, -1, self.period)
        return _conv_stack(self.convs, self.post, h)


class SpectrogramDiscriminator(nn.Module):
    """UnivNet's resolution discriminator: 2D convs over one STFT's log-magnitude."""

    def __init__(self, n_fft: int, hop: int, width: int = 16) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        wn = nn.utils.parametrizations.weight_norm
        self.convs = nn.ModuleList([
            wn(nn.Conv2d(1, width, (3, 9), padding=(1, 4))),
            wn(nn.Conv2d(width, width, (3, 9), stride=(1, 2), padding=(1, 4))),
            wn(nn.Conv2d(width, width, (3, 9), stride=(1, 2), padding=(1, 4))),
            wn(nn.Conv2d(width, width, (3, 3), padding=(1, 1))),
        ])
        self.post = wn(nn.Conv2d(width, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = torch.log(_stft_mag(x, self.n_fft, self.hop)).unsqueeze(1)  # (B, 1, F, T)
        return _conv_stack(self.convs, self.post, h)


class Discriminators(nn.Module):
    """Multi-period (2, 3, 5, 7, 11) plus multi-resolution spectrogram discriminators."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.nets = nn.ModuleList(
            [PeriodDiscriminator(p, width) for p in (2, 3, 5, 7, 11)]
            + [SpectrogramDiscriminator(n, h, width) for n, h in STFT_RESOLUTIONS])

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [net(x) for net in self.nets]


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """Least-squares GAN loss of the discriminators: real -> 1, generated -> 0."""
    return sum(((r - 1) ** 2).mean() + (f**2).mean() for (r, _), (f, _) in zip(real, fake, strict=True))


def generator_losses(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(least-squares adversarial loss, feature-matching L1) of the generator."""
    adv = sum(((f - 1) ** 2).mean() for f, _ in fake)
    fm = sum(F.l1_loss(b, a.detach()) for (_, fa), (_, fb) in zip(real, fake, strict=True)
             for a, b in zip(fa, fb, strict=True))
    return adv, fm


def stage_vocoder_gan(args) -> dict:
    """Adversarial fine-tune of the trained vocoder (``--init``, default the ``vocoder``
    stage's output in ``--models``), saved in place. ``--adv-weight 0`` is its control:
    the same fine-tune on the reconstruction losses alone."""
    from transformers import SpeechT5HifiGan

    from training.world.common import _finish, _require

    dev = args.device
    init = Path(args.init) if args.init else _require(args.models / "audioldm" / "vocoder", "vocoder")
    voc = SpeechT5HifiGan.from_pretrained(init).to(dev).train()
    disc = Discriminators().to(dev).train()
    data = _segments(args)
    opt_g = torch.optim.AdamW(voc.parameters(), lr=args.lr, betas=(0.8, 0.99))
    opt_d = torch.optim.AdamW(disc.parameters(), lr=args.lr, betas=(0.8, 0.99))
    loop = Loop.from_args(args, {"vocoder": voc, "discriminators": disc}, opt_g,
                          aux_optimizers={"discriminators": opt_d})
    start_full = data.full_clip_mel_l1(voc.eval())
    voc.train()
    while loop.running():
        m, wav = data.sample(args.batch)
        y = voc(m)
        recon, parts = _recon(y, wav, args.loud_weight)
        loss = args.recon_weight * recon
        if args.adv_weight > 0:
            d_loss = discriminator_loss(disc(wav), disc(y.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            torch.nn.utils.clip_grad_norm_(disc.parameters(), 5.0)
            opt_d.step()
            with torch.no_grad():
                real = disc(wav)
            adv, fm = generator_losses(real, disc(y))
            loss = loss + args.adv_weight * (adv + 2.0 * fm)
            parts.update(adv=adv.item(), fm=fm.item(), disc=d_loss.item())
        loop.update(loss, parts, clip=5.0 * args.recon_weight)
    voc.eval()
    full = data.full_clip_mel_l1(voc)
    voc.save_pretrained(args.models / "audioldm" / "vocoder", safe_serialization=True)
    return _finish(args, loop, "vocoder-gan", {"full_clip_mel_l1": round(full, 4),
                                                "full_clip_mel_l1_before": round(start_full, 4),
                                                "recon_weight": args.recon_weight,
                                                "adv_weight": args.adv_weight,
                                                "vae_mels": args.vae_mels,
                                                "loud_weight": args.loud_weight})
