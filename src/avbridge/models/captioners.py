"""Captioners: turn a condition (video, image or audio) into a text prompt.

The paper's vanilla V2A/A2V baselines caption the condition and then generate from
text; the guided tasks use the same prompt so that the aligner is the only difference.

- :class:`BlipCaptioner`: an image captioner (BLIP) run on the key (middle) frame.
- :class:`ClapZeroShotCaptioner`: CLAP zero-shot classification of audio over labels.
- :class:`BinderZeroShotCaptioner`: zero-shot over labels with any Binder.
- :class:`ProbeCaptioner`: linear heads on a binder's pooled embedding, trained for it
  (a linear probe; the embedded world's default, ``python -m training.world.train
  captioner``). It reads attributes zero-shot text matching misses, such as a still
  image's class.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from avbridge.errors import AvbridgeError, CheckpointError
from avbridge.io.convert import audio_to_tensor, image_to_tensor, key_frame, video_to_tensor
from avbridge.io.media import Audio, Image, Video
from avbridge.models.binders.base import Binder, Embedding

Media = Audio | Video | Image

#: A small default label set for zero-shot captioning of open-domain sounds and scenes.
DEFAULT_LABELS: tuple[str, ...] = (
    "dog barking", "cat meowing", "birds singing", "car engine", "train", "rain", "wind",
    "ocean waves", "crowd talking", "man speaking", "woman speaking", "music", "piano",
    "guitar", "drums", "footsteps", "door knocking", "glass breaking", "siren", "thunder",
    "fire crackling", "water flowing", "helicopter", "airplane", "clapping",
)


@runtime_checkable
class Captioner(Protocol):
    """Anything that turns a media container into a one-line text prompt."""

    def caption(self, media: Media) -> str: ...


def _features(out: Any) -> torch.Tensor:
    """Projected features from ``get_*_features``: a tensor, or an output's ``pooler_output``."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        raise TypeError(f"cannot read features from {type(out).__name__}")
    return pooled


def _load(loader: Any, source: str | Path, what: str) -> Any:
    try:
        return loader.from_pretrained(str(source))
    except (OSError, ValueError) as exc:
        raise CheckpointError(source, f"cannot load {what}: {str(exc).splitlines()[0]}") from exc


class BlipCaptioner:
    """BLIP image captioning on the key frame of a video (or on an image)."""

    def __init__(self, model: Any, processor: Any, *, max_new_tokens: int = 30, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.processor = processor
        self.max_new_tokens = max_new_tokens
        self.device = device

    @classmethod
    def from_pretrained(cls, source: str | Path, **kwargs: Any) -> BlipCaptioner:
        """Load ``BlipForConditionalGeneration`` + ``BlipProcessor`` from a hub id or folder."""
        from transformers import BlipForConditionalGeneration, BlipProcessor

        model = _load(BlipForConditionalGeneration, source, "a BLIP captioning model")
        return cls(model, _load(BlipProcessor, source, "a BLIP processor"), **kwargs)

    @torch.no_grad()
    def caption(self, media: Media) -> str:
        if isinstance(media, Audio):
            raise AvbridgeError("the BLIP captioner captions images or video frames, not audio")
        inputs = self.processor(images=[key_frame(media)], return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device)
        ids = self.model.generate(pixel_values=pixels, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()


class ClapZeroShotCaptioner:
    """CLAP zero-shot: the label whose text ("the sound of {label}") best matches the audio.

    Audio is resampled to the feature extractor's rate and centre-cropped to its
    ``max_length_s`` here, so that the processor never crops at random.
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        labels: Sequence[str] = DEFAULT_LABELS,
        template: str = "the sound of {label}",
        device: str = "cpu",
    ):
        if not labels:
            raise ValueError("zero-shot captioning needs at least one label")
        self.model = model.to(device).eval()
        self.processor = processor
        self.labels = list(labels)
        self.template = template
        self.device = device
        self._text: torch.Tensor | None = None

    @classmethod
    def from_pretrained(cls, source: str | Path, **kwargs: Any) -> ClapZeroShotCaptioner:
        """Load ``ClapModel`` + ``ClapProcessor`` from a hub id or folder."""
        from transformers import ClapModel, ClapProcessor

        return cls(_load(ClapModel, source, "a CLAP model"), _load(ClapProcessor, source, "a CLAP processor"),
                   **kwargs)

    @torch.no_grad()
    def _text_features(self) -> torch.Tensor:
        if self._text is None:
            texts = [self.template.format(label=label) for label in self.labels]
            t = self.processor(text=texts, return_tensors="pt", padding=True)
            t = {k: v.to(self.device) for k, v in t.items()}
            self._text = torch.nn.functional.normalize(_features(self.model.get_text_features(**t)), dim=-1)
        return self._text

    @torch.no_grad()
    def scores(self, audio: Audio) -> torch.Tensor:
        """Cosine similarity of the audio with every label's text, (num_labels,)."""
        fe = self.processor.feature_extractor
        rate = int(fe.sampling_rate)
        x = audio_to_tensor(audio, rate)[0].numpy()
        n = int(getattr(fe, "nb_max_samples", 0) or rate * 10)
        if len(x) > n:
            start = (len(x) - n) // 2
            x = x[start : start + n]
        a = self.processor(audio=[np.asarray(x, np.float32)], sampling_rate=rate, return_tensors="pt")
        a = {k: v.to(self.device) for k, v in a.items()}
        emb = torch.nn.functional.normalize(_features(self.model.get_audio_features(**a)), dim=-1)
        return (emb @ self._text_features().T)[0]

    def caption(self, media: Media) -> str:
        if isinstance(media, Video):
            if media.audio is None:
                raise AvbridgeError("the CLAP captioner needs audio; the video has no audio track")
            media = media.audio
        if not isinstance(media, Audio):
            raise AvbridgeError("the CLAP captioner captions audio, not images")
        return self.labels[int(self.scores(media).argmax())]


def binder_embedding(binder: Binder, media: Media) -> Embedding:
    """The binder's embedding of an audio, video or image container."""
    if isinstance(media, Audio):
        return binder.embed_audio(audio_to_tensor(media), media.sample_rate)
    if isinstance(media, Video):
        return binder.embed_video(video_to_tensor(media), media.fps)
    if isinstance(media, Image):
        return binder.embed_image(image_to_tensor(media))
    raise AvbridgeError(f"cannot caption an object of type {type(media).__name__}")


class BinderZeroShotCaptioner:
    """Zero-shot over labels with any Binder: the label whose text embedding is nearest."""

    def __init__(self, binder: Binder, labels: Sequence[str] = DEFAULT_LABELS, template: str = "a {label}"):
        if not labels:
            raise ValueError("zero-shot captioning needs at least one label")
        self.binder = binder
        self.labels = list(labels)
        self.template = template
        self._text: torch.Tensor | None = None

    @torch.no_grad()
    def scores(self, media: Media, embedding: Embedding | None = None) -> torch.Tensor:
        """Cosine similarity of the media's pooled embedding (``embedding`` if already computed
        with this captioner's binder) with every label, (num_labels,)."""
        if self._text is None:
            texts = [self.template.format(label=label) for label in self.labels]
            self._text = self.binder.embed_text(texts).pooled
        e = embedding if embedding is not None else binder_embedding(self.binder, media)
        text = self._text.to(e.pooled.device, e.pooled.dtype)
        return (torch.nn.functional.normalize(e.pooled, dim=-1) @ text.T)[0]

    def caption(self, media: Media, embedding: Embedding | None = None) -> str:
        return self.labels[int(self.scores(media, embedding).argmax())]


PROBE_MODALITIES = ("audio", "video", "image")


class ProbeCaptioner:
    """Linear heads on a binder's pooled, L2-normalised embedding, one set per modality.

    ``heads[modality][attribute] = (weight (K, D), bias (K,))`` score the ``K`` labels of
    ``labels[attribute]``; the caption is ``template`` filled with each attribute's best
    label (``"{class}"``: the class word, what the world's tuned guidance was chosen with).
    The heads were fitted on one binder's embedding space: use them with that binder only.
    """

    def __init__(
        self,
        binder: Binder,
        heads: Mapping[str, Mapping[str, tuple[torch.Tensor, torch.Tensor]]],
        labels: Mapping[str, Sequence[str]],
        *,
        template: str = "{class}",
        scale: float = 10.0,
    ):
        for modality, attrs in heads.items():
            if modality not in PROBE_MODALITIES:
                raise ValueError(f"unknown modality {modality!r}; expected one of {PROBE_MODALITIES}")
            for attr, (w, b) in attrs.items():
                if attr not in labels or w.shape[0] != len(labels[attr]) or b.shape != (w.shape[0],):
                    raise ValueError(
                        f"head {modality}.{attr}: shape {tuple(w.shape)} does not match its labels"
                    )
        try:
            template.format(**{a: a for a in labels})
        except KeyError as e:
            raise ValueError(f"caption template {template!r} names an unknown attribute {e}") from None
        self.binder = binder
        self.heads = {m: dict(a) for m, a in heads.items()}
        self.labels = {a: list(v) for a, v in labels.items()}
        self.template = template
        self.scale = float(scale)

    @staticmethod
    def _modality(media: Media) -> str:
        for cls, name in ((Audio, "audio"), (Video, "video"), (Image, "image")):
            if isinstance(media, cls):
                return name
        raise AvbridgeError(f"cannot caption an object of type {type(media).__name__}")

    @torch.no_grad()
    def embed(self, media: Media, embedding: Embedding | None = None) -> torch.Tensor:
        """The binder's pooled embedding of ``media`` (``embedding`` if already computed with
        this captioner's binder), L2-normalised, (1, D)."""
        e = embedding if embedding is not None else binder_embedding(self.binder, media)
        return torch.nn.functional.normalize(e.pooled.float(), dim=-1)

    def logits(self, modality: str, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each attribute's label scores (N, K) for embeddings (N, D) of ``modality``."""
        if modality not in self.heads:
            raise AvbridgeError(f"this captioner has no heads for {modality}")
        out = {}
        for attr, (w, b) in self.heads[modality].items():
            if emb.shape[-1] != w.shape[1]:
                raise AvbridgeError(
                    f"the captioner's {modality} heads expect {w.shape[1]}-d embeddings, the binder "
                    f"gives {emb.shape[-1]}: it was fitted for another binder"
                )
            out[attr] = (emb * self.scale) @ w.T.to(emb) + b.to(emb)
        return out

    def predict(self, media: Media, embedding: Embedding | None = None) -> dict[str, str]:
        """The best label of each attribute for ``media``."""
        modality = self._modality(media)
        if modality not in self.heads:
            raise AvbridgeError(f"this captioner has no heads for {modality}")
        scores = self.logits(modality, self.embed(media, embedding))
        return {a: self.labels[a][int(s[0].argmax())] for a, s in scores.items()}

    def caption(self, media: Media, embedding: Embedding | None = None) -> str:
        return self.template.format(**self.predict(media, embedding))

    def save_pretrained(self, folder: str | Path) -> None:
        """``heads.safetensors`` + ``config.json`` (written last: its presence marks a complete folder)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for m, attrs in self.heads.items():
            for a, (w, b) in attrs.items():
                tensors[f"{m}.{a}.weight"] = w.detach().float().clone().contiguous()
                tensors[f"{m}.{a}.bias"] = b.detach().float().clone().contiguous()
        tmp = folder / "heads.safetensors.tmp"
        save_file(tensors, str(tmp))
        tmp.replace(folder / "heads.safetensors")
        cfg = {"labels": self.labels, "template": self.template, "scale": self.scale,
               "modalities": sorted(self.heads)}
        tmp = folder / "config.json.tmp"
        tmp.write_text(json.dumps(cfg, indent=1) + "\n")
        tmp.replace(folder / "config.json")

    @classmethod
    def from_pretrained(cls, folder: str | Path, binder: Binder, **kwargs: Any) -> ProbeCaptioner:
        """Load heads saved by :meth:`save_pretrained`; ``kwargs`` override config fields."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in ("config.json", "heads.safetensors"):
            if not (folder / name).is_file():
                raise CheckpointError(folder, f"not a probe captioner folder (no {name})")
        try:
            cfg = json.loads((folder / "config.json").read_text())
            tensors = load_file(str(folder / "heads.safetensors"))
            heads: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]] = {}
            for m in cfg["modalities"]:
                heads[m] = {a: (tensors[f"{m}.{a}.weight"], tensors[f"{m}.{a}.bias"]) for a in cfg["labels"]}
            opts = {"template": cfg.get("template", "{class}"), "scale": cfg.get("scale", 10.0), **kwargs}
            return cls(binder, heads, cfg["labels"], **opts)
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
            raise CheckpointError(folder, f"unreadable probe captioner: {e}") from e


def load_captioner(
    kind: str,
    source: str | Path | None = None,
    *,
    labels: Sequence[str] | None = None,
    binder: Binder | None = None,
    device: str = "cpu",
) -> Captioner:
    """A captioner by kind: ``"blip"`` (source = hub id/folder), ``"clap"`` (source; labels),
    ``"binder"`` (a Binder; labels) or ``"probe"`` (source = folder; the Binder it was fitted for)."""
    if kind == "blip":
        if source is None:
            raise AvbridgeError("the blip captioner needs a model id or folder")
        return BlipCaptioner.from_pretrained(source, device=device)
    if kind == "clap":
        if source is None:
            raise AvbridgeError("the clap captioner needs a model id or folder")
        return ClapZeroShotCaptioner.from_pretrained(source, labels=labels or DEFAULT_LABELS, device=device)
    if kind == "binder":
        if binder is None:
            raise AvbridgeError("the binder captioner needs a binder")
        return BinderZeroShotCaptioner(binder, labels or DEFAULT_LABELS)
    if kind == "probe":
        if source is None or binder is None:
            raise AvbridgeError("the probe captioner needs its folder and the binder it was fitted for")
        return ProbeCaptioner.from_pretrained(source, binder)
    raise AvbridgeError(f"unknown captioner kind {kind!r}; expected blip, clap, binder or probe")
