"""Low-memory options of the adapters give the same outputs: model CPU offload (accelerate
hooks), VAE slicing; VAE tiling runs the tiled decode.

On a CPU-only machine offload to ``"cpu"`` moves nothing, but the hooks run on every module
call (counted here) and the results must be identical, guided runs included (gradients
through the VAE, the vocoder and, with prompt tuning, the UNet).
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from avbridge.align import AlignConfig, Condition, align
from avbridge.models.generators import _common
from avbridge.models.generators.animatediff import AnimateDiffGenerator
from avbridge.models.generators.audioldm import AudioLDMGenerator
from avbridge.models.generators.base import MediaSpec


@pytest.fixture(scope="module")
def binder():
    """The tiny ImageBind: it reads the log-mel directly, so the "mel" path is exercised."""
    from avbridge.models.binders.imagebind import ImageBindBinder

    return ImageBindBinder.from_preset("tiny")


@pytest.fixture
def hook_calls(monkeypatch) -> Counter:
    calls: Counter = Counter()
    original = _common.ModelOffloadHook.pre_forward

    def counting(self, module, *args, **kwargs):
        calls[type(module).__name__] += 1
        return original(self, module, *args, **kwargs)

    monkeypatch.setattr(_common.ModelOffloadHook, "pre_forward", counting)
    return calls


def _guided(gen, binder, modality: str, **cfg_kw):
    g = torch.Generator().manual_seed(0)
    if modality == "audio":
        cond, spec = Condition("image", torch.rand(1, 3, 32, 32, generator=g)), gen.default_spec(0.5)
    else:
        cond = Condition("audio", torch.rand(1, 8000, generator=g) - 0.5, rate=16000)
        spec = gen.default_spec(None if modality == "image" else 0.5)
    cfg = AlignConfig(steps=3, window=(0.3, 1.0), lr=0.05, **cfg_kw)
    return align(gen, binder, spec=spec, condition=cond, prompt="a dog", config=cfg, seed=0)


CASES = {
    "audio-mel": ("audio", {}),
    "audio-waveform": ("audio", {"audio_path": "waveform"}),
    "video-prompt-tuning": ("video", {"prompt_lr": 0.01}),
    "image": ("image", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_model_cpu_offload_gives_identical_guided_results(case, hook_calls, binder):
    modality, cfg_kw = CASES[case]
    make = (lambda: AudioLDMGenerator.tiny(seed=0)) if modality == "audio" else (
        lambda: AnimateDiffGenerator.tiny(seed=0, modality=modality))
    ref = _guided(make(), binder, modality, **cfg_kw)
    assert not hook_calls
    gen = make().enable_model_cpu_offload("cpu")
    assert gen.device == torch.device("cpu")
    out = _guided(gen, binder, modality, **cfg_kw)
    key = "audio" if modality == "audio" else "visual"
    assert torch.equal(out.latents[key], ref.latents[key])
    assert torch.equal(out.media[key], ref.media[key])
    assert out.trace.final_loss == ref.trace.final_loss
    modules = {type(getattr(gen, n)).__name__ for n in gen._movable}
    assert set(hook_calls) == modules  # every module went through its hook
    assert hook_calls[type(gen.unet).__name__] >= 3  # one UNet call per step at least
    gen.disable_model_cpu_offload()
    assert all(getattr(getattr(gen, n), "_hf_hook", None) is None for n in gen._movable)


def test_offload_moves_peers_out_only_without_gradients(monkeypatch):
    """The hook's contract, observed through ``Module.to`` calls: a forward without gradients
    sends the other modules to the CPU and itself to the execution device; a forward under
    gradients moves only itself (a live graph may need the others' weights)."""
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    moves: list[tuple[str, str]] = []
    for name, m in (("a", a), ("b", b)):
        orig = m.to

        def to(*args, _n=name, _orig=orig, **kw):
            moves.append((_n, str(args[0]) if args else str(kw)))
            return _orig(*args, **kw)

        monkeypatch.setattr(m, "to", to)
    hook = _common.ModelOffloadHook(torch.device("cpu"), [a, b])
    with torch.no_grad():
        hook.pre_forward(a, torch.zeros(1, 2))
    assert moves == [("b", "cpu"), ("a", "cpu")]
    moves.clear()
    with torch.enable_grad():
        hook.pre_forward(a, torch.zeros(1, 2))
    assert moves == [("a", "cpu")]


def test_to_ends_offload():
    gen = AnimateDiffGenerator.tiny(seed=0, modality="image").enable_model_cpu_offload("cpu")
    assert gen.unet._hf_hook is not None
    gen.to("cpu")
    assert getattr(gen.unet, "_hf_hook", None) is None and gen._offload_device is None


def test_vae_slicing_same_audio_and_video():
    """Slicing decodes item by item: exactly the per-item decode, and the batched decode up to
    the float rounding of batched convolution kernels (mels ~2, differences ~4e-6)."""
    g = torch.Generator().manual_seed(1)
    audio = AudioLDMGenerator.tiny(seed=0)
    spec = MediaSpec(duration_s=0.5)
    z = torch.randn((3,) + tuple(audio.init_latents(spec, 1, g).shape[1:]), generator=g)
    with torch.no_grad():
        batched = audio.decode_mel(z)
        per_item = torch.cat([audio.decode_mel(z[i : i + 1]) for i in range(3)])
        sliced = audio.enable_vae_slicing().decode_mel(z)
    assert audio.vae.use_slicing
    assert torch.equal(sliced, per_item)
    assert torch.allclose(sliced, batched, atol=1e-5, rtol=0)
    video = AnimateDiffGenerator.tiny(seed=0)
    vspec = video.default_spec(0.5)
    zv = video.init_latents(vspec, 2, g)
    with torch.no_grad():
        batched = video.decode(zv, vspec)
        video.decode_chunk_size = 1
        per_frame = video.decode(zv, vspec)
        video.decode_chunk_size = None
        sliced = video.enable_vae_slicing().decode(zv, vspec)
    assert torch.equal(sliced, per_frame)
    assert torch.allclose(sliced, batched, atol=1e-5, rtol=0)
    video.enable_vae_slicing(False)
    assert not video.vae.use_slicing


def test_vae_tiling_takes_the_tiled_decode(monkeypatch):
    """A 2-s spectrogram (200 mel frames) is larger than the tiny VAE's 64-frame tile: the
    tiled decode runs and gives the full decode's shape, finite (it blends tiles, so it
    approximates the full decode rather than equalling it)."""
    audio = AudioLDMGenerator.tiny(seed=0)
    spec = MediaSpec(duration_s=2.0)
    z = audio.init_latents(spec, 1, torch.Generator().manual_seed(0))
    calls = Counter()
    orig = audio.vae.tiled_decode

    def tiled(*a, **k):
        calls["tiled"] += 1
        return orig(*a, **k)

    monkeypatch.setattr(audio.vae, "tiled_decode", tiled)
    with torch.no_grad():
        ref = audio.decode_mel(z)
        assert not calls
        out = audio.enable_vae_tiling().decode_mel(z)
    assert calls["tiled"] == 1
    assert out.shape == ref.shape and torch.isfinite(out).all()


def test_apply_memory_options_turns_on_what_a_generator_supports(fake_audio_gen):
    from avbridge.models.generators import apply_memory_options

    gen = AudioLDMGenerator.tiny(seed=0)
    assert apply_memory_options(gen, offload="cpu", vae_slicing=True, vae_tiling=True) is gen
    assert gen._offload_device == torch.device("cpu") and gen.vae.use_slicing and gen.vae.use_tiling
    plain = AudioLDMGenerator.tiny(seed=0)
    apply_memory_options(plain)
    assert plain._offload_device is None and not plain.vae.use_slicing and not plain.vae.use_tiling
    assert apply_memory_options(fake_audio_gen, offload="cpu", vae_slicing=True) is fake_audio_gen


def test_load_components_memory_options():
    import importlib

    mod = None
    for name in ("avbridge.loading", "avbridge.models.loading"):
        try:
            mod = importlib.import_module(name)
            break
        except ImportError:
            continue
    comps = mod.load_components("tiny-random", captioner="none", offload=True, vae_slicing=True)
    for g in (comps.audio, comps.video, comps.image):
        assert g._offload_device == torch.device("cpu") and g.vae.use_slicing
        assert g.unet._hf_hook is not None
    plain = mod.load_components("tiny-random", captioner="none", need=["audio"])
    assert plain.audio._offload_device is None and not plain.audio.vae.use_slicing


def test_cli_offload_and_vae_slicing_same_image(tmp_path, capsys, hook_calls):
    """``avbridge a2i --offload --vae-slicing`` writes the same image as without them."""
    import numpy as np

    from avbridge.apps import cli
    from avbridge.io import media

    sr = 16000
    x = np.arange(sr) / sr
    wav = media.write_output(tmp_path / "in.wav", media.Audio((0.3 * np.sin(2 * np.pi * 440 * x)).astype(
        np.float32), sr))
    outs = []
    for extra in ([], ["--offload", "--vae-slicing"]):
        out = tmp_path / f"out{len(outs)}.png"
        rc = cli.main(["a2i", str(wav), "-o", str(out), "--preset", "tiny-random", "--steps", "2", "--quiet",
                       "--window", "0.0", "1.0", *extra])
        assert rc == 0, capsys.readouterr().err
        assert bool(hook_calls) == bool(extra)  # the flags reached the generators' hooks
        outs.append(media.read_image(out).pixels)
    assert outs[0].std() > 0 and np.array_equal(outs[0], outs[1])
