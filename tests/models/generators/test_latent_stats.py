"""Per-channel latent statistics of a VAE (diffusers' ``latents_mean``/``latents_std``)."""

from __future__ import annotations

import copy

import torch

from avbridge.models.generators._common import unet_to_vae_latents, vae_to_unet_latents
from avbridge.models.generators.audioldm import AudioLDMGenerator


def _with_stats(gen: AudioLDMGenerator, mean: list[float], std: list[float] | None = None
                ) -> AudioLDMGenerator:
    g = copy.copy(gen)
    g.vae = copy.deepcopy(gen.vae)
    g.vae.register_to_config(latents_mean=mean, latents_std=std)
    return g


def test_without_stats_only_the_scaling_factor_applies(audio_gen) -> None:
    z = torch.randn(2, audio_gen.latent_channels, 6, 4)
    sf = float(audio_gen.vae.config.scaling_factor)
    assert torch.allclose(vae_to_unet_latents(audio_gen.vae, z), z * sf)
    assert torch.allclose(unet_to_vae_latents(audio_gen.vae, z), z / sf)


def test_stats_are_per_channel_and_the_two_maps_are_inverse(audio_gen) -> None:
    c = audio_gen.latent_channels
    mean = [float(i) for i in range(c)]
    gen = _with_stats(audio_gen, mean, [0.5 + i for i in range(c)])
    raw = torch.randn(3, c, 6, 4) + torch.tensor(mean).view(1, c, 1, 1)
    z = vae_to_unet_latents(gen.vae, raw)
    assert z.mean((0, 2, 3)).abs().max() < 1.0  # the channel offsets are gone
    assert torch.allclose(unet_to_vae_latents(gen.vae, z), raw, atol=1e-5)
    video = torch.randn(2, c, 5, 3, 3)  # (B, C, F, H, W): channel axis 1 as well
    assert torch.allclose(unet_to_vae_latents(gen.vae, vae_to_unet_latents(gen.vae, video)), video, atol=1e-5)


def test_decode_adds_the_vae_latent_mean(audio_gen) -> None:
    c = audio_gen.latent_channels
    mean = [0.3 * (i + 1) for i in range(c)]
    gen = _with_stats(audio_gen, mean)
    z = torch.randn(1, c, 6, 4)
    sf = float(gen.vae.config.scaling_factor)
    with torch.no_grad():
        want = gen.vae.decode(z / sf + torch.tensor(mean).view(1, c, 1, 1)).sample
        assert torch.allclose(gen.decode_mel(z), want, atol=1e-5)
        assert not torch.allclose(audio_gen.decode_mel(z), want, atol=1e-3)


def test_encode_mel_gives_the_unet_latents_of_the_posterior_mean(audio_gen) -> None:
    gen = _with_stats(audio_gen, [0.1 * i for i in range(audio_gen.latent_channels)])
    mel = torch.randn(1, 1, 16, audio_gen.n_mels)
    with torch.no_grad():
        want = vae_to_unet_latents(gen.vae, gen.vae.encode(mel).latent_dist.mean)
        assert torch.allclose(gen.encode_mel(mel), want)
