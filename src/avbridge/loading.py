"""Load the models of a run once, by preset or by explicit source, into ``tasks.Components``.

Presets:

- ``"world"``: the small models trained on the embedded procedural world and shipped
  inside the package (``avbridge/world/models``). The default.
- ``"tiny-random"``: tiny random models built offline from a seed. Fast; their outputs
  are noise. For tests and smoke runs only.
- ``"paper"``: the paper's models: AudioLDM-m-full (``cvssp/audioldm-m-full``), Stable
  Diffusion 1.5 with the AnimateDiff motion adapter v1-5-2, and ImageBind-huge from the
  official ``imagebind_huge.pth`` given with ``binder=`` (it has no hub id).

Each model option (``audio_model``, ``video_model``, ``image_model``, ``binder``,
``captioner``) overrides the preset for that model and accepts a hub id, a local folder
(or, for the binder, a checkpoint file) or a preset name. Every failure to find or load
weights is a :class:`~avbridge.errors.CheckpointError` naming the source.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avbridge import presets
from avbridge.errors import AvbridgeError, CheckpointError
from avbridge.models.components import Components
from avbridge.presets import (
    PAPER_AUDIO,
    PAPER_BINDER_CLIPS,
    PAPER_MOTION_ADAPTER,
    PAPER_VIDEO_BASE,
    PRESETS,
    TINY_BINDER,
    WORLD_PARTS,
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Source:
    """Where one model comes from: ``kind`` is "preset", "dir", "file" or "hub"."""

    kind: str
    value: str

    @property
    def path(self) -> Path:
        return Path(self.value).expanduser()


def classify(value: str | os.PathLike[str], names: tuple[str, ...] = tuple(PRESETS)) -> Source:
    """Decide whether ``value`` names a preset, an existing local file/folder, or a hub id."""
    s = str(value)
    if s in names:
        return Source("preset", s)
    p = Path(s).expanduser()
    if p.is_dir():
        return Source("dir", str(p))
    if p.exists():
        return Source("file", str(p))
    if _HUB_ID.match(s) and not s.startswith((".", "~")) and not s.endswith((".pth", ".pt", ".safetensors")):
        return Source("hub", s)
    if s.startswith((".", "/", "~")) or os.sep in s or s.endswith((".pth", ".pt", ".safetensors")):
        raise CheckpointError(s, "no such file or folder")
    raise CheckpointError(
        s,
        f"not a preset ({', '.join(names)}), an existing local folder, or a hub id of the form owner/name",
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint resolves and accepts a connection (no retries)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    host = re.sub(r"^https?://", "", constants.ENDPOINT).split("/")[0]
    name, _, port = host.partition(":")
    try:
        with socket.create_connection((name, int(port or 443)), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_hub(repo_id: str) -> str:
    """A hub id -> its local snapshot folder if cached, else the id itself when the hub is reachable.

    Offline and not cached is a clear :class:`CheckpointError` at once, instead of a
    minute of HTTP retries inside the loaders.
    """
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - any cache miss: fall through to the network check
        pass
    if _hub_reachable():
        return repo_id
    raise CheckpointError(
        repo_id,
        "weights not found: not in the local Hugging Face cache and the hub cannot be reached "
        "(download them on a machine with network, or pass a local folder)",
    )


# ----------------------------------------------------------------------------- loaders


def quiet_libraries() -> None:
    """Keep transformers/diffusers weight-loading bars and info logs off the terminal: a run
    shows avbridge's own progress bar and result line (their warnings and errors still show)."""
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog
    except ImportError:
        return
    for log in (tlog, dlog):
        log.set_verbosity_error()
        log.disable_progress_bar()


def _place(model: Any, device: str, dtype: torch.dtype) -> Any:
    """Move a freshly built model unless it already is where it should be (CPU float32)."""
    if torch.device(device) == torch.device("cpu") and dtype == torch.float32:
        return model
    return model.to(device=device, dtype=dtype)


def _audio_cls() -> Any:
    from avbridge.models.generators.audioldm import AudioLDMGenerator

    return AudioLDMGenerator


def _video_cls() -> Any:
    try:
        from avbridge.models.generators.animatediff import AnimateDiffGenerator
    except ImportError as e:
        raise AvbridgeError(f"the AnimateDiff adapter is not available: {e}") from e
    return AnimateDiffGenerator


def _binder_cls() -> Any:
    from avbridge.models.binders.imagebind import ImageBindBinder

    return ImageBindBinder


def _require_world(sub: str) -> Path:
    d = presets.world_models_dir() / sub
    if not (d / WORLD_PARTS[sub]).is_file():
        state = "incomplete" if d.is_dir() else "not shipped"
        raise AvbridgeError(
            f"{d}: the embedded world's '{sub}' model is {state} in this install "
            f"(no {WORLD_PARTS[sub]}); use --preset tiny-random (noise) or --preset paper with real weights"
        )
    return d


def world_format() -> dict[str, Any]:
    """The world's picture format (32x32 at 8 fps, 4-s clips), stated explicitly: the shipped
    model_index.json may not carry it, and the adapter's fallback is SD's 512x512."""
    from avbridge.world.scene import WORLD

    return dict(
        default_height=WORLD.size,
        default_width=WORLD.size,
        default_fps=float(WORLD.fps),
        default_duration_s=WORLD.duration_s,
    )


def load_audio(source: str | None, preset: str, *, device: str, dtype: torch.dtype, seed: int = 0) -> Any:
    """The audio generator (AudioLDM adapter) from a source or the preset."""
    src = classify(source) if source is not None else Source("preset", preset)
    cls = _audio_cls()
    if src.kind == "preset":
        if src.value == "tiny-random":
            return _place(cls.tiny(seed=seed), device, dtype)
        if src.value == "world":
            return cls.from_pretrained(_require_world("audioldm"), device=device, dtype=dtype)
        return cls.from_pretrained(resolve_hub(PAPER_AUDIO), device=device, dtype=dtype)
    if src.kind == "file":
        raise CheckpointError(src.value, "expected a diffusers model folder (or hub id), got a file")
    where = resolve_hub(src.value) if src.kind == "hub" else src.value
    return cls.from_pretrained(where, device=device, dtype=dtype)


def load_video(
    source: str | None,
    preset: str,
    *,
    device: str,
    dtype: torch.dtype,
    seed: int = 0,
    modality: str = "video",
) -> Any:
    """The video generator (AnimateDiff adapter), or with ``modality="image"`` its SD image mode."""
    src = classify(source) if source is not None else Source("preset", preset)
    cls = _video_cls()
    if src.kind == "preset":
        if src.value == "tiny-random":
            return _place(cls.tiny(seed=seed, modality=modality), device, dtype)
        if src.value == "world":
            # Image mode has its own folder: the spatial weights of a motion UNet trained
            # for image mode too (video-unet --image-share), as SD is the paper's image model.
            return cls.from_pretrained(
                _require_world("animatediff" if modality == "video" else "image"),
                device=device,
                dtype=dtype,
                modality=modality,
                **world_format(),
            )
        base = resolve_hub(PAPER_VIDEO_BASE)
        adapter = resolve_hub(PAPER_MOTION_ADAPTER) if modality == "video" else None
        return cls.from_pretrained(
            base, motion_adapter=adapter, device=device, dtype=dtype, modality=modality
        )
    if src.kind == "file":
        raise CheckpointError(src.value, "expected a diffusers model folder (or hub id), got a file")
    where = resolve_hub(src.value) if src.kind == "hub" else src.value
    adapter = None
    if modality == "video" and _is_image_unet(where):
        # An SD 1.5-style base: add the paper's motion adapter.
        adapter = resolve_hub(PAPER_MOTION_ADAPTER)
    return cls.from_pretrained(where, motion_adapter=adapter, device=device, dtype=dtype, modality=modality)


def _is_image_unet(where: str) -> bool:
    """Whether a local model folder's ``unet/`` is a plain image UNet (no motion modules)."""
    cfg = Path(where) / "unet" / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("_class_name") == "UNet2DConditionModel"
    except (OSError, ValueError):
        return False


def load_binder(source: str | None, preset: str, *, device: str, dtype: torch.dtype, seed: int = 0) -> Any:
    """The binder (ImageBind) from a checkpoint file, an avbridge folder or a preset."""
    cls = _binder_cls()
    if source is None and preset == "paper":
        raise CheckpointError(
            "imagebind_huge.pth",
            "the paper preset needs ImageBind-huge weights: pass --binder /path/to/imagebind_huge.pth "
            "(official checkpoint, CC BY-NC-SA 4.0; it has no hub id)",
        )
    src = (
        classify(source, (*PRESETS, "tiny", "tiny-32", "small", "huge"))
        if source is not None
        else Source("preset", preset)
    )
    if src.kind == "preset":
        if src.value == "world":
            binder = cls.from_pretrained(_require_world("binder"), trainable=False)
        elif src.value == "tiny-random":
            binder = cls.from_preset(TINY_BINDER[0], seed=seed, clips=TINY_BINDER[1])
            binder.requires_grad_(False)
        elif src.value in ("tiny", "tiny-32", "small", "huge"):
            binder = cls.from_preset(src.value, seed=seed)
            binder.requires_grad_(False)
        else:  # "paper" named explicitly
            raise CheckpointError(
                "imagebind_huge.pth", "ImageBind-huge has no hub id: pass the path of imagebind_huge.pth"
            )
    elif src.kind == "file":
        # The paper preset follows the authors' released V2A code: back-to-back 1-s clips.
        clips = PAPER_BINDER_CLIPS if preset == "paper" else None
        binder = cls.from_checkpoint(src.path, preset="huge", clips=clips)
    elif src.kind == "dir":
        binder = cls.from_pretrained(src.path, trainable=False)
    else:
        raise CheckpointError(
            src.value, "ImageBind is not loaded from the hub: pass imagebind_huge.pth or a local folder"
        )
    return _place(binder, device, dtype)


# ----------------------------------------------------------------------------- captioners


def _default_labels(preset: str) -> tuple[str, ...]:
    if preset == "world":
        from avbridge.world.scene import CLASSES

        return tuple(CLASSES)
    from avbridge.models.captioners import DEFAULT_LABELS

    return tuple(DEFAULT_LABELS)


def load_captioners(
    specs: str | list[str] | None, preset: str, binder: Any, *, device: str, own_binder: bool = True
) -> tuple[Any, Any]:
    """``(audio_captioner, visual_captioner)`` from ``--captioner`` values.

    Each value is ``binder`` (zero-shot over the preset's labels with the binder), ``probe``
    (the world's linear-probe captioner, fitted for its shipped binder) or ``probe:DIR``,
    ``none``, ``clap:ID|DIR`` (audio), ``blip:ID|DIR`` (images/videos), or a bare id/folder
    (CLAP if its name contains "clap", else BLIP). The default is ``probe`` for the world
    preset with its own binder (``own_binder``), else ``binder``. The vanilla baselines of
    the paper caption the condition and generate from that caption.
    """
    from avbridge.models.captioners import load_captioner

    default = "probe" if preset == "world" and own_binder else "binder"
    values = [specs] if isinstance(specs, str) else list(specs or [default])
    audio_cap: Any = None
    visual_cap: Any = None
    labels = _default_labels(preset)
    for v in values:
        kind, _, source = v.partition(":")
        if not source and kind not in ("binder", "none", "probe"):
            kind, source = ("clap" if "clap" in v.lower() else "blip"), v
        if kind == "none":
            audio_cap = visual_cap = None
        elif kind == "binder":
            audio_cap = visual_cap = load_captioner("binder", binder=binder, labels=labels)
        elif kind == "probe":
            where = source or _require_world("captioner")
            audio_cap = visual_cap = load_captioner("probe", where, binder=binder)
        elif kind in ("clap", "blip"):
            src = classify(source, ())
            where = resolve_hub(src.value) if src.kind == "hub" else src.value
            cap = load_captioner(kind, where, labels=labels if kind == "clap" else None, device=device)
            if kind == "clap":
                audio_cap = cap
            else:
                visual_cap = cap
        else:
            raise AvbridgeError(
                f"unknown captioner {v!r}; use binder, probe[:DIR], none, clap:ID|DIR or blip:ID|DIR"
            )
    return audio_cap, visual_cap


# ----------------------------------------------------------------------------- components

def load_components(
    preset: str = "world",
    *,
    audio_model: str | None = None,
    video_model: str | None = None,
    image_model: str | None = None,
    binder: str | None = None,
    captioner: str | list[str] | None = None,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    need: tuple[str, ...] | list[str] | None = None,
    seed: int = 0,
    guidance_decoder: str | list[str] | None = None,
    guidance_encoder: str | None = None,
    offload: bool = False,
    vae_slicing: bool = False,
    sampler: str = "ddim",
) -> Components:
    """Load every model of a run once, outside any sampling call, into ``tasks.Components``.

    ``need`` limits loading to some generators ("audio", "video", "image"; default all, see
    ``avbridge.tasks.TASKS``); the binder and captioners are always loaded. ``seed`` seeds the
    tiny random weights of the ``tiny-random`` preset (:func:`preset_note` says when the
    outputs are noise). ``guidance_decoder`` (``"auto"`` or folders) gives the generators
    small decoders for the guidance branch only
    (:func:`attach_guidance_decoders`), ``guidance_encoder`` (``"auto"`` or a folder) the
    binder an audio guidance encoder (:func:`attach_guidance_encoder`). ``offload`` loads
    the generators on the CPU and moves each module to ``device`` only while it runs (model
    CPU offload); ``vae_slicing`` decodes one item/frame at a time (docs/generators.md).
    ``sampler``: "ddim" (default) or "dpm++" (DPM-Solver++ 2M) for every loaded generator.
    """
    quiet_libraries()
    if preset not in PRESETS:
        raise AvbridgeError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    wanted = set(need) if need is not None else {"audio", "video", "image"}
    unknown = wanted - {"audio", "video", "image"}
    if unknown:
        raise ValueError(f"unknown components in need=: {sorted(unknown)}")
    kw: dict[str, Any] = dict(device=device, dtype=dtype, seed=seed)
    b = load_binder(binder, preset, **kw)
    gen_kw = dict(kw, device="cpu") if offload else kw  # offloaded modules live on the CPU
    audio = load_audio(audio_model, preset, **gen_kw) if "audio" in wanted else None
    video = load_video(video_model, preset, **gen_kw) if "video" in wanted else None
    image = None
    if "image" in wanted:
        image = load_video(
            image_model if image_model is not None else video_model,
            preset,
            device=gen_kw["device"],
            dtype=dtype,
            seed=seed,
            modality="image",
        )
    if sampler != "ddim":
        for g in (audio, video, image):
            if g is not None:
                if not hasattr(g, "set_sampler"):
                    raise AvbridgeError(f"sampler {sampler!r}: the {g.modality} generator has only its own")
                try:
                    g.set_sampler(sampler)
                except ValueError as e:
                    raise AvbridgeError(str(e)) from e
    if offload or vae_slicing:
        from avbridge.models.generators import apply_memory_options

        for g in (audio, video, image):
            if g is not None:
                apply_memory_options(g, offload=device if offload else None, vae_slicing=vae_slicing)
    if guidance_decoder:
        attach_guidance_decoders(guidance_decoder, preset, [audio, video, image], seed=seed)
    if guidance_encoder:
        attach_guidance_encoder(guidance_encoder, preset, b)
    audio_cap, visual_cap = load_captioners(captioner, preset, b, device=device, own_binder=binder is None)
    return Components(
        binder=b,
        audio=audio,
        video=video,
        image=image,
        audio_captioner=audio_cap,
        visual_captioner=visual_cap,
    )


# ----------------------------------------------------------------------------- guidance decoders

#: Where the embedded world's distilled guidance decoders are shipped: the audio model's, and
#: one for the video model and its image mode (they share one VAE).
WORLD_AUDIO_DECODER = "guidance_decoder_audio"
WORLD_VISUAL_DECODER = "guidance_decoder_visual"


def _auto_guidance_decoder(generator: Any, preset: str, seed: int) -> Any:
    """The preset's own guidance decoder for a generator, or None when it has none."""
    from avbridge.models.guidance_decoders import (
        TAESD_HUB_ID,
        audio_decoder_for,
        load_guidance_decoder,
        tiny_taesd,
    )

    if preset == "tiny-random":
        if generator.modality == "audio":
            n = int(round(math.log2(generator.vae_scale_factor))) + 1
            return audio_decoder_for(generator, channels=(16,) + (8,) * (n - 1), seed=seed)
        return tiny_taesd(int(generator.latent_channels), int(generator.vae_scale_factor), seed=seed)
    if preset == "world":
        name = WORLD_AUDIO_DECODER if generator.modality == "audio" else WORLD_VISUAL_DECODER
        folder = presets.world_models_dir() / name
        return load_guidance_decoder(folder) if (folder / "config.json").is_file() else None
    if generator.modality == "audio":
        return None  # a real AudioLDM's decoder is distilled by the user (avbridge distill-decoder)
    return load_guidance_decoder(resolve_hub(TAESD_HUB_ID))


def attach_guidance_decoders(spec: str | list[str] | None, preset: str, generators: list[Any],
                             seed: int = 0) -> list[Any]:
    """Give the run's generators their guidance decoders (``load_components(guidance_decoder=)``).

    ``spec``: ``"auto"`` (the preset's own: the world's shipped decoders, TAESD from the
    hub for the paper's video/image models, tiny random ones for ``tiny-random``; a generator
    without one keeps decoding with its VAE), or folders / hub ids (a list or comma-separated),
    each attached to every generator it fits (AudioGuidanceDecoder: audio; AutoencoderTiny:
    video and image). Returns the generators that got one.
    """
    from avbridge.models.guidance_decoders import attach, decoder_modality, load_guidance_decoder

    gens = [g for g in generators if g is not None]
    if not spec:
        return []
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    done: list[Any] = []
    for item in items:
        if item == "auto":
            for g in gens:
                if getattr(g, "guidance_decoder", None) is None:
                    dec = _auto_guidance_decoder(g, preset, seed)
                    if dec is not None:
                        done.append(attach(g, dec))
            continue
        folder = Path(item)
        if not folder.exists():
            if item.count("/") != 1:
                raise CheckpointError(item, "no such guidance decoder folder")
            folder = Path(resolve_hub(item))
        dec = load_guidance_decoder(folder)
        kind = decoder_modality(dec)
        fits = [g for g in gens if ("audio" if g.modality == "audio" else "visual") == kind]
        if not fits:
            raise CheckpointError(folder, f"a {type(dec).__name__} fits none of this run's generators")
        done += [attach(g, dec) for g in fits]
    return done


#: Where the embedded world's distilled audio guidance encoder is shipped.
WORLD_AUDIO_ENCODER = "guidance_encoder_audio"


def attach_guidance_encoder(spec: str, preset: str, binder: Any) -> Any:
    """Give the run's binder an audio guidance encoder (``load_components(guidance_encoder=)``):
    ``"auto"`` (the preset's own: the world's shipped encoder; for ``tiny-random`` a one-block
    copy of the tiny binder's tower; none for the paper's ImageBind-huge, whose encoder the
    user distils with ``avbridge distill-encoder``) or a folder that command wrote. Returns the
    encoder; ``"auto"`` without one is an error (the run would silently use the tower)."""
    from avbridge.models.binders import guidance_encoder as ge

    if spec == "auto":
        if preset == "tiny-random":
            enc: Any = ge.encoder_from_binder(binder, 1)
        elif preset == "world" and (presets.world_models_dir() / WORLD_AUDIO_ENCODER).is_dir():
            enc = ge.load_guidance_encoder(presets.world_models_dir() / WORLD_AUDIO_ENCODER)
        else:
            raise AvbridgeError(f"--guidance-encoder auto: the {preset} preset has no audio guidance "
                                "encoder; distil one with 'avbridge distill-encoder' and pass its folder")
    else:
        enc = ge.load_guidance_encoder(spec)
    ge.attach(binder, enc)
    return enc

