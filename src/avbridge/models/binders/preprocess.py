"""Differentiable, tensor-only preprocessing for ImageBind-style binders.

Audio: resample (windowed sinc, in torch) -> clips per :class:`ClipSpec` -> subtract the
clip mean -> kaldi-compatible log-mel fbank (htk_compat, Hanning window, 25 ms / 10 ms,
dither 0, no energy) -> (bins, frames) zero-padded or cut to the target length ->
normalise with ImageBind's mean/std.

Vision: uint8 or float in [0, 1] -> resize so the *short side* equals the model size
(antialiased bicubic) -> center crop to a square -> CLIP mean/std. Video clips take
``frames_per_clip`` frames spread uniformly over each clip's time span.

Everything is plain torch on tensors and keeps the autograd graph; gradients stay
finite for silent audio and constant frames (no sqrt, log clamped away from 0).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from avbridge.models.binders.base import ClipSpec
from avbridge.models.generators.base import SpectrogramFeatures

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
AUDIO_MEAN = -4.268
AUDIO_STD = 9.138
_EPS = torch.finfo(torch.float32).eps  # kaldi's floor before the log


# ---------------------------------------------------------------------------------------
# Resampling
# ---------------------------------------------------------------------------------------


def _sinc_kernel(
    orig: int, new: int, lowpass_width: int, rolloff: float, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, int]:
    """Polyphase windowed-sinc kernel (new, 1, taps) for rational resampling orig -> new."""
    cutoff = min(orig, new) * rolloff  # in units of the lower rate's "sample index" grid
    half = math.ceil(lowpass_width * orig / cutoff)
    # Output phase j sits at input position j * orig / new; tap i at input position i.
    taps = torch.arange(-half, half + orig, dtype=torch.float64, device=device) / orig
    phase = -torch.arange(new, dtype=torch.float64, device=device)[:, None] / new
    t = (phase + taps[None, :]) * cutoff
    t = t.clamp(-lowpass_width, lowpass_width)
    window = torch.cos(t * math.pi / (2 * lowpass_width)) ** 2
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    kernel = sinc * window * (cutoff / orig)
    return kernel.to(dtype).unsqueeze(1), half


def resample(
    waveform: torch.Tensor, orig_sr: float, new_sr: int = 16000, lowpass_width: int = 6, rolloff: float = 0.99
) -> torch.Tensor:
    """Resample (..., N) from ``orig_sr`` to ``new_sr`` with a Hann-windowed sinc filter.

    Band-limited polyphase convolution (differentiable). Output length is
    ceil(N * new_sr / orig_sr). Rates are rounded to integers.
    """
    orig, new = int(round(orig_sr)), int(round(new_sr))
    if orig <= 0 or new <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig == new:
        return waveform
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    shape = waveform.shape
    x = waveform.reshape(-1, 1, shape[-1])
    n = shape[-1]
    kernel, half = _sinc_kernel(orig, new, lowpass_width, rolloff, x.dtype, x.device)
    x = F.pad(x, (half, half + orig))
    y = F.conv1d(x, kernel, stride=orig)  # (B, new, L)
    y = y.transpose(1, 2).reshape(x.shape[0], -1)
    out_len = math.ceil(new * n / orig)
    return y[:, :out_len].reshape(*shape[:-1], out_len)


# ---------------------------------------------------------------------------------------
# Kaldi fbank
# ---------------------------------------------------------------------------------------


def _mel(f: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(f / 700.0)


def mel_filterbank(
    num_bins: int, n_fft: int, sample_rate: float, low_freq: float = 20.0, high_freq: float = 0.0,
    dtype: torch.dtype = torch.float32, device: torch.device | None = None,
) -> torch.Tensor:
    """Kaldi's triangular mel banks on the mel scale, (num_bins, n_fft // 2 + 1), Nyquist column 0."""
    nyquist = sample_rate / 2
    if high_freq <= 0:
        high_freq += nyquist
    lo = _mel(torch.tensor(low_freq, dtype=torch.float64))
    hi = _mel(torch.tensor(high_freq, dtype=torch.float64))
    delta = (hi - lo) / (num_bins + 1)
    b = torch.arange(num_bins, dtype=torch.float64)[:, None]
    left, center, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
    mel = _mel(sample_rate / n_fft * torch.arange(n_fft // 2, dtype=torch.float64))[None, :]
    up = (mel - left) / (center - left)
    down = (right - mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    banks = F.pad(banks, (0, 1))
    return banks.to(dtype=dtype, device=device)


def kaldi_fbank(
    waveform: torch.Tensor, sample_rate: float = 16000, num_mel_bins: int = 128,
    frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0, preemphasis: float = 0.97,
    low_freq: float = 20.0, high_freq: float = 0.0,
) -> torch.Tensor:
    """Log mel filterbank like ``torchaudio.compliance.kaldi.fbank`` (B, N) -> (B, frames, bins).

    Settings fixed to ImageBind's: Hanning window, snip edges, remove DC per frame,
    pre-emphasis, power spectrum, FFT size the next power of two, dither 0, no energy
    (so ``htk_compat`` changes nothing), natural log floored at float32 eps.
    """
    win = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    n_fft = 1 << (win - 1).bit_length()
    b, n = waveform.shape
    if n < win:
        return waveform.new_zeros(b, 0, num_mel_bins)
    frames = waveform.unfold(-1, win, shift)  # (B, M, win)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = frames - preemphasis * prev
    window = torch.hann_window(win, periodic=False, dtype=frames.dtype, device=frames.device)
    spec = torch.fft.rfft(frames * window, n=n_fft)
    power = spec.real.square() + spec.imag.square()
    banks = mel_filterbank(num_mel_bins, n_fft, sample_rate, low_freq, high_freq, power.dtype, power.device)
    return (power @ banks.T).clamp_min(_EPS).log()


def waveform_to_fbank(
    clip: torch.Tensor, sample_rate: float = 16000, num_mel_bins: int = 128, target_length: int = 204
) -> torch.Tensor:
    """ImageBind's per-clip features: (B, n) -> (B, 1, bins, target_length), not normalised.

    Subtract the clip mean, fbank, transpose to (bins, frames), zero-pad or cut.
    """
    clip = clip - clip.mean(dim=-1, keepdim=True)
    fb = kaldi_fbank(clip, sample_rate, num_mel_bins).transpose(1, 2)
    p = target_length - fb.shape[-1]
    fb = F.pad(fb, (0, p)) if p > 0 else fb[..., :target_length]
    return fb.unsqueeze(1)


def audio_clip_bounds(num_samples: int, sample_rate: int, clips: ClipSpec) -> list[tuple[int, int]]:
    """Sample ranges [start, end) of each clip (ImageBind's int(t * sr) slicing)."""
    total = num_samples / sample_rate
    return [
        (int(s * sample_rate), min(num_samples, int((s + clips.duration_s) * sample_rate)))
        for s in clips.starts(total)
    ]


def audio_to_model_input(
    waveform: torch.Tensor, sample_rate: int, clips: ClipSpec, num_mel_bins: int = 128,
    target_length: int = 204, mean: float = AUDIO_MEAN, std: float = AUDIO_STD,
) -> torch.Tensor:
    """(B, N) at ``sample_rate`` -> normalised clips (B, C, 1, bins, target_length)."""
    feats = [
        waveform_to_fbank(waveform[:, a:b], sample_rate, num_mel_bins, target_length)
        for a, b in audio_clip_bounds(waveform.shape[-1], sample_rate, clips)
    ]
    return (torch.stack(feats, dim=1) - mean) / std


# ---------------------------------------------------------------------------------------
# Log-mel -> kaldi fbank without a waveform (the vocoder-free guidance path)
# ---------------------------------------------------------------------------------------


def _window_energy(length: int, periodic: bool) -> float:
    return float(torch.hann_window(length, periodic=periodic, dtype=torch.float64).square().sum())


@functools.lru_cache(maxsize=8)
def _mel_to_fbank_maps(
    filterbank_key: bytes, n_mels: int, n_fft: int, win_length: int, sample_rate: int, num_mel_bins: int,
    frame_length_ms: float, preemphasis: float, low_freq: float, high_freq: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inverse (n_mels, K), forward (K, bins)) float32 maps; see :func:`logmel_to_kaldi_fbank`."""
    fb = torch.frombuffer(bytearray(filterbank_key), dtype=torch.float32).reshape(n_mels, -1).double()
    k = fb.shape[1]
    area = fb.sum(dim=1).clamp_min(1e-12)  # mel of a flat unit magnitude spectrum
    share = fb / fb.sum(dim=0, keepdim=True).clamp_min(1e-12)  # bands sharing each bin, sum 1
    inverse = share / area[:, None]  # |X_k| = sum_m inverse[m, k] * mel_m, non-negative
    win_t = int(sample_rate * frame_length_ms * 0.001)
    n_fft_t = 1 << (win_t - 1).bit_length()
    # Kaldi's triangles evaluated on the source FFT grid; power scaled from a (win_length,
    # n_fft) periodic Hann to kaldi's (win_t, n_fft_t) symmetric Hann: per-bin power of a
    # stationary signal scales with the window energy, bins per band with the FFT size.
    banks = mel_filterbank(num_mel_bins, n_fft, sample_rate, low_freq, high_freq, torch.float64)
    banks = banks[:, :k]
    gain = (_window_energy(win_t, False) / _window_energy(win_length, True)) * (n_fft_t / n_fft)
    w = 2 * math.pi * torch.arange(k, dtype=torch.float64) / n_fft
    pre = 1 + preemphasis**2 - 2 * preemphasis * torch.cos(w)  # |1 - p e^{-jw}|^2
    pre[0] = 0.0  # kaldi removes each frame's DC
    forward = (banks * (gain * pre)[None]).T
    return inverse.float(), forward.float()


def logmel_to_kaldi_fbank(
    features: SpectrogramFeatures, num_mel_bins: int = 128, frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0, preemphasis: float = 0.97, low_freq: float = 20.0, high_freq: float = 0.0,
) -> torch.Tensor:
    """Approximate :func:`kaldi_fbank` of the waveform behind ``features``: (B, frames, bins).

    A fixed map in the linear domain, no waveform and no vocoder:
    ``exp(log_mel)`` (mel magnitudes) -> per-bin magnitude by a non-negative inverse of
    the mel filterbank (each band's mean magnitude, shared between overlapping bands) ->
    power -> kaldi's triangular filters with pre-emphasis, DC removal and the window-energy
    gain -> nearest-in-time mix of the two source frames around each kaldi frame centre ->
    ``log`` floored at float32 eps. Frames follow kaldi's snip-edges layout for
    ``features.num_samples`` samples. Differentiable in ``features.log_mel``.
    Approximate by construction (phase, within-band detail and the vocoder's own errors
    are unknown); its agreement with the true fbank is measured in docs/method.md.
    """
    if features.power not in (1.0, 2.0):
        raise ValueError(f"power must be 1 (magnitude) or 2 (power), got {features.power}")
    sr = int(features.sample_rate)
    log_mel = features.log_mel
    b, t_src, n_mels = log_mel.shape
    fb = features.filterbank.detach().to("cpu", torch.float32).contiguous()
    if fb.shape != (n_mels, features.n_fft // 2 + 1):
        raise ValueError(f"filterbank {tuple(fb.shape)} does not match {n_mels} mels, n_fft {features.n_fft}")
    inverse, forward = _mel_to_fbank_maps(
        fb.numpy().tobytes(), n_mels, features.n_fft, features.win_length, sr, num_mel_bins,
        float(frame_length_ms), float(preemphasis), float(low_freq), float(high_freq),
    )
    inverse = inverse.to(log_mel.device, log_mel.dtype)
    forward = forward.to(log_mel.device, log_mel.dtype)
    mel = log_mel.exp()
    if features.power == 2.0:
        mel = mel.clamp_min(0).sqrt()  # not reached by AudioLDM (magnitude mels)
    power = (mel @ inverse).square()  # (B, T, K)
    bands = power @ forward  # (B, T, bins)
    win = int(sr * frame_length_ms * 0.001)
    shift = int(sr * frame_shift_ms * 0.001)
    n = int(features.num_samples)
    if n < win:
        return log_mel.new_zeros(b, 0, num_mel_bins)
    count = 1 + (n - win) // shift
    centre = torch.arange(count, dtype=torch.float64) * shift + (win - 1) / 2
    pos = centre / features.hop if features.centered else (centre - (features.n_fft - 1) / 2) / features.hop
    pos = pos.clamp(0, t_src - 1)
    lo = pos.floor().long().clamp(max=t_src - 1)
    hi = (lo + 1).clamp(max=t_src - 1)
    frac = (pos - lo.double()).to(bands.dtype).to(bands.device)[None, :, None]
    mixed = bands[:, lo.to(bands.device)] * (1 - frac) + bands[:, hi.to(bands.device)] * frac
    return mixed.clamp_min(_EPS).log()


def fbank_clip_frames(
    num_samples: int, sample_rate: int, clips: ClipSpec, frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
) -> list[tuple[int, int]]:
    """Per clip, the [first, first + count) frames of the whole input's fbank that the clip's
    own fbank would have (clip starts rounded to the nearest frame; exact when a start is a
    multiple of the frame shift, e.g. every 10 ms)."""
    win = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    out = []
    for a, e in audio_clip_bounds(num_samples, sample_rate, clips):
        count = 1 + (e - a - win) // shift if e - a >= win else 0
        first = int(round(a / shift))
        out.append((first, count))
    return out


def fbank_to_model_input(
    fbank: torch.Tensor, num_samples: int, sample_rate: int, clips: ClipSpec, target_length: int = 204,
    mean: float = AUDIO_MEAN, std: float = AUDIO_STD,
) -> torch.Tensor:
    """Whole-input fbank (B, frames, bins) -> normalised clips (B, C, 1, bins, target_length).

    The frame-domain twin of :func:`audio_to_model_input`: clip i takes the frames its own
    fbank would have (:func:`fbank_clip_frames`), transposed, zero-padded or cut, normalised.
    """
    feats = []
    for first, count in fbank_clip_frames(num_samples, sample_rate, clips):
        fb = fbank[:, first : first + count].transpose(1, 2)
        p = target_length - fb.shape[-1]
        fb = F.pad(fb, (0, p)) if p > 0 else fb[..., :target_length]
        feats.append(fb.unsqueeze(1))
    return (torch.stack(feats, dim=1) - mean) / std


# ---------------------------------------------------------------------------------------
# Vision
# ---------------------------------------------------------------------------------------


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [0, 1]; floating tensors pass through unchanged (graph kept)."""
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    if not x.is_floating_point():
        raise TypeError(f"pixels must be uint8 or floating point in [0, 1], got {x.dtype}")
    return x


def resize_center_crop(images: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, size, size): short side to ``size`` (antialiased), center crop.

    The crop policy of ImageBind's image loader (Resize(short side) + CenterCrop); its video
    loader also uses the left/right crops, which we do not (one center crop per clip).
    """
    h, w = images.shape[-2:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        if (nh, nw) != (h, w):
            images = F.interpolate(images, size=(nh, nw), mode=mode, align_corners=False, antialias=True)
        top, left = int(round((nh - size) / 2)), int(round((nw - size) / 2))
        images = images[..., top : top + size, left : left + size]
    return images


def clip_normalize(images: torch.Tensor) -> torch.Tensor:
    """CLIP mean/std over the channel dim (dim -3)."""
    mean = images.new_tensor(CLIP_MEAN)[:, None, None]
    std = images.new_tensor(CLIP_STD)[:, None, None]
    return (images - mean) / std


def prepare_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] -> resized, cropped, CLIP-normalised (N, 3, size, size)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N, 3, H, W), got {tuple(images.shape)}")
    return clip_normalize(resize_center_crop(images, size))


def video_clip_indices(num_frames: int, fps: float, clips: ClipSpec) -> list[list[int]]:
    """Frame indices per clip: ``frames_per_clip`` spread uniformly over the frames in
    [start, start + duration) (ImageBind's uniform temporal subsampling)."""
    if num_frames < 1 or fps <= 0:
        raise ValueError(f"need at least one frame and a positive fps, got {num_frames} frames at {fps}")
    out = []
    for s in clips.starts(num_frames / fps):
        first = min(num_frames - 1, math.ceil(s * fps - 1e-6))
        end = max(first + 1, min(num_frames, math.ceil((s + clips.duration_s) * fps - 1e-6)))
        n = end - first
        k = clips.frames_per_clip
        out.append([first + int(i * (n - 1) / (k - 1)) if k > 1 else first + (n - 1) // 2 for i in range(k)])
    return out


def sample_video_clips(frames: torch.Tensor, fps: float, clips: ClipSpec) -> torch.Tensor:
    """(B, T, 3, H, W) -> (B, C, frames_per_clip, 3, H, W) by :func:`video_clip_indices`."""
    idx = torch.tensor(video_clip_indices(frames.shape[1], fps, clips), device=frames.device)
    return frames[:, idx]
