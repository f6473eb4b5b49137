"""Half precision end to end, and the guidance branch runs in the dtype that was asked for.

Every task runs on CPU with the tiny random models loaded in bfloat16 (and in float16,
which this torch's CPU kernels support) by ``load_components``: finite media, and the
guided run's final binder loss below the vanilla run's. The setting (4 steps, the last two
guided, seed 0, the learning rates of ``tests/test_tasks.py``'s real-tiny test) was fixed
before the results were looked at.

``AlignConfig.guidance_dtype`` autocasts the guidance branch (differentiable decode and
binder): forward hooks on every convolution and linear layer of the generator's VAE (and
vocoder) and of the binder record the dtype they computed in, under gradients (the guided
steps) and without (vanilla steps, the final decode).
"""

from __future__ import annotations

import importlib
from collections import defaultdict

import numpy as np
import pytest
import torch

from avbridge.align import AlignConfig, Condition, align
from avbridge.io.media import Audio, Image, Video
from avbridge.tasks import a2i, a2v, i2a, joint, v2a

TASKS = ["v2a", "i2a", "a2v", "a2i", "joint"]


def load_components(*args, **kwargs):
    """``load_components`` wherever the loading code keeps it."""
    for name in ("avbridge.loading", "avbridge.models.loading"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(mod, "load_components"):
            return mod.load_components(*args, **kwargs)
    raise AssertionError("no load_components")


def _cpu_supports(dtype: torch.dtype) -> bool:
    try:
        x = torch.ones(1, 2, 4, 4, dtype=dtype)
        torch.nn.functional.conv2d(x, torch.ones(2, 2, 3, 3, dtype=dtype), padding=1)
        torch.ones(2, 2, dtype=dtype) @ torch.ones(2, 2, dtype=dtype)
        return True
    except RuntimeError:
        return False


HALF = [torch.bfloat16] + ([torch.float16] if _cpu_supports(torch.float16) else [])
_cache: dict[torch.dtype, object] = {}


def components(dtype: torch.dtype):
    if dtype not in _cache:
        _cache[dtype] = load_components("tiny-random", dtype=dtype, captioner="none")
    return _cache[dtype]


@pytest.fixture(autouse=True, scope="module")
def _free():
    yield
    _cache.clear()


def _run(task: str, comps, guided: bool):
    rng = np.random.default_rng(0)
    video = Video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), 8.0)
    audio = Audio((0.3 * np.sin(np.arange(8000) / 16000 * 2 * np.pi * 440)).astype(np.float32), 16000)
    visual = task in ("a2v", "a2i")
    cfg = AlignConfig(steps=4, window=(0.5, 1.0), lr={"audio": 0.1, "visual": 0.05},
                      prompt_lr=0.01 if visual or task == "joint" else 0.0)
    kw = dict(prompt="a dog", guided=guided, config=cfg, seed=0)
    if task == "v2a":
        return v2a(video, comps, **kw)
    if task == "i2a":
        return i2a(Image(video.frames[0]), comps, duration_s=0.5, **kw)
    if task == "a2v":
        return a2v(audio, comps, **kw)
    if task == "a2i":
        return a2i(audio, comps, **kw)
    kw.pop("prompt")
    return joint("a dog", comps, duration_s=0.5, **kw)


def _arrays(media) -> list[np.ndarray]:
    if isinstance(media, Audio):
        return [media.samples]
    if isinstance(media, Video):
        return [media.frames] + ([media.audio.samples] if media.audio is not None else [])
    return [media.pixels]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", HALF, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("task", TASKS)
def test_task_runs_in_half_precision(task, dtype):
    comps = components(dtype)
    gens = [g for g in (comps.audio, comps.video, comps.image) if g is not None]
    assert all(g.dtype == dtype for g in gens)
    assert next(comps.binder.parameters()).dtype == dtype
    van, gui = _run(task, comps, False), _run(task, comps, True)
    for res in (van, gui):
        assert all(np.isfinite(a.astype(np.float64)).all() for a in _arrays(res.media))
        assert np.isfinite(res.trace.final_loss)
    assert any(np.abs(a.astype(np.float64)).max() > 0 for a in _arrays(gui.media))
    assert gui.trace.final_loss < van.trace.final_loss


# ------------------------------------------------------------------- guidance_dtype spy


def _spy(*modules: torch.nn.Module) -> tuple[dict[bool, set[torch.dtype]], list]:
    """{grad enabled: dtypes computed by conv/linear layers}, and the hook handles."""
    seen: dict[bool, set[torch.dtype]] = defaultdict(set)

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor):
            seen[torch.is_grad_enabled()].add(out.dtype)

    kinds = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d, torch.nn.Linear)
    layers = [m for mod in modules for m in mod.modules() if isinstance(m, kinds)]
    handles = [m.register_forward_hook(hook) for m in layers]
    return seen, handles


@pytest.fixture(scope="module")
def f32_components():
    return load_components("tiny-random", dtype=torch.float32, captioner="none")


def _guidance_dtypes(gen, binder, modality: str, guidance_dtype: str | None, audio_path: str = "mel"):
    decoders = [gen.vae] + ([gen.vocoder] if hasattr(gen, "vocoder") else [])
    gen_seen, h1 = _spy(*decoders)
    bind_seen, h2 = _spy(binder.model)
    try:
        if modality == "audio":
            cond = Condition("image", torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
            spec = gen.default_spec(0.5)
        else:
            cond = Condition("audio", torch.rand(1, 8000, generator=torch.Generator().manual_seed(0)) - 0.5,
                             rate=16000)
            spec = gen.default_spec(None if modality == "image" else 0.5)
        cfg = AlignConfig(steps=2, window=(0.5, 1.0), guidance_dtype=guidance_dtype, audio_path=audio_path)
        res = align(gen, binder, spec=spec, condition=cond, prompt="a dog", config=cfg, seed=0)
    finally:
        for h in h1 + h2:
            h.remove()
    assert res.trace.guided_steps == [1]
    assert gen_seen[True] and bind_seen[True], "the guided branch did not run through the spied layers"
    return gen_seen, bind_seen


@pytest.mark.parametrize("asked", [None, "bfloat16"] + (["float16"] if torch.float16 in HALF else []))
@pytest.mark.parametrize("which", ["audio-mel", "audio-waveform", "video", "image"])
def test_guidance_branch_runs_in_the_asked_dtype(f32_components, which, asked):
    c = f32_components
    gen = {"audio-mel": c.audio, "audio-waveform": c.audio, "video": c.video, "image": c.image}[which]
    path = "waveform" if which == "audio-waveform" else "mel"
    gen_seen, bind_seen = _guidance_dtypes(gen, c.binder, gen.modality, asked, audio_path=path)
    want = getattr(torch, asked) if asked else torch.float32
    assert gen_seen[True] == {want}, f"decode ran in {gen_seen[True]}, asked {want}"
    assert bind_seen[True] == {want}, f"binder ran in {bind_seen[True]}, asked {want}"
    # outside the guidance branch (the final decode and its embedding) the models' own dtype
    assert gen_seen[False] == {torch.float32} and bind_seen[False] == {torch.float32}


@pytest.mark.slow
def test_half_models_guide_in_their_own_dtype():
    """Models loaded in bfloat16 with no guidance_dtype: the guidance branch stays bfloat16
    (no silent upcast to float32 of the decode or the binder)."""
    c = components(torch.bfloat16)
    gen_seen, bind_seen = _guidance_dtypes(c.audio, c.binder, "audio", None)
    assert gen_seen[True] == {torch.bfloat16} and bind_seen[True] == {torch.bfloat16}
