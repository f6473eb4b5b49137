"""The five tasks as thin compositions of generators, a binder, captioners and the aligner.

Each task takes and returns numpy media containers (``avbridge.io.media``) and writes
nothing. ``score=False`` skips the binder score of the output (a vanilla run then makes
no binder call at all). ``guided=False`` is the vanilla baseline of the paper: the same models, seed
and prompt, no aligner. The prompt is the user's if given, else the captioner's caption
of the condition (else empty), and it is the same for guided and vanilla runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from avbridge.align import (
    AlignConfig,
    AlignResult,
    AlignTrace,
    Condition,
    ProgressFn,
    Settings,
    align,
    align_joint,
    embed_media,
)
from avbridge.errors import AvbridgeError
from avbridge.io.convert import (
    audio_to_tensor,
    image_to_tensor,
    tensor_to_audio,
    tensor_to_image,
    tensor_to_video,
    video_to_tensor,
)
from avbridge.io.media import Audio, Image, Video, mux_audio
from avbridge.models.binders.base import Binder
from avbridge.models.captioners import Captioner
from avbridge.models.components import Components
from avbridge.models.generators.base import Generator, MediaSpec


@dataclass
class TaskResult:
    """The generated media, the prompt that was used, and the aligner's trace."""

    media: Audio | Video | Image
    prompt: str
    trace: AlignTrace


@dataclass(frozen=True)
class TaskSpec:
    """One task: what it reads and writes, which generators it needs, the paper's settings.

    ``input_kind``: "video", "image", "audio" or None (joint: a prompt only);
    ``outputs``: output extension -> what is written there (the CLI's formats);
    ``needs``: generators besides the binder ("audio", "video", "image");
    ``paper``: AlignConfig fields from the paper (steps, CFG scale, lr, window, prompt lr).
    """

    name: str
    summary: str
    input_kind: str | None
    output_kind: str
    outputs: dict[str, str]
    needs: tuple[str, ...]
    paper: dict[str, Any]

    def paper_config(self) -> AlignConfig:
        """The paper's settings of this task as an AlignConfig."""
        return AlignConfig(**self.paper)


_AUDIO_OUT = {".wav": "the generated audio", ".flac": "the generated audio"}
#: V2A/I2A guide AudioLDM (lr 0.1, CFG 2.5); A2V/A2I guide AnimateDiff/SD (lr 0.01, CFG 7.5)
#: with guided prompt tuning; joint guides both. Guidance after the first 20% of the steps.
_AUDIO_PAPER = dict(steps=30, lr=0.1, guidance_scale=2.5, window=(0.2, 1.0))
_VISUAL_PAPER = dict(steps=25, lr=0.01, guidance_scale=7.5, window=(0.2, 1.0), prompt_lr=0.01)

TASKS: dict[str, TaskSpec] = {
    "v2a": TaskSpec(
        "v2a", "video-to-audio: generate a soundtrack for a video", "video", "audio",
        {**_AUDIO_OUT, ".mp4": "the input video with the generated audio as its sound track"},
        ("audio",), _AUDIO_PAPER,
    ),
    "i2a": TaskSpec(
        "i2a", "image-to-audio: generate a sound that fits an image", "image", "audio",
        dict(_AUDIO_OUT), ("audio",), _AUDIO_PAPER,
    ),
    "a2v": TaskSpec(
        "a2v", "audio-to-video: generate a video for a sound", "audio", "video",
        {".mp4": "the generated video with the input audio as its sound track",
         ".gif": "the generated video frames (no sound)"},
        ("video",), _VISUAL_PAPER,
    ),
    "a2i": TaskSpec(
        "a2i", "audio-to-image: generate an image for a sound", "audio", "image",
        {".png": "the generated image", ".gif": "the generated image"}, ("image",), _VISUAL_PAPER,
    ),
    "joint": TaskSpec(
        "joint", "joint text-to-video+audio: generate a video and its sound together from a prompt",
        None, "video", {".mp4": "the generated video with the generated audio"}, ("audio", "video"),
        dict(steps=25, lr={"audio": 0.1, "visual": 0.01}, guidance_scale={"audio": 2.5, "visual": 7.5},
             window=(0.2, 1.0), prompt_lr=0.01),
    ),
}

#: The shortest condition that carries one: the binder needs a clip of sound or motion.
MIN_INPUT_S = 0.5
MIN_VIDEO_FRAMES = 2


def check_condition(task: str, media: Audio | Video | Image, source: str | None = None) -> None:
    """Refuse a condition too short to carry anything (AvbridgeError naming ``source`` and the
    minimum): video needs ``MIN_VIDEO_FRAMES`` frames and ``MIN_INPUT_S`` s, audio ``MIN_INPUT_S`` s."""
    where = f"{source}: " if source else ""
    if isinstance(media, Video):
        n = int(media.frames.shape[0])
        if n < MIN_VIDEO_FRAMES or media.duration_s < MIN_INPUT_S:
            raise AvbridgeError(
                f"{where}video too short for {task} ({n} frame(s), {media.duration_s:.3g} s); "
                f"the minimum is {MIN_VIDEO_FRAMES} frames and {MIN_INPUT_S:g} s"
            )
    elif isinstance(media, Audio) and media.duration_s < MIN_INPUT_S:
        raise AvbridgeError(
            f"{where}audio too short for {task} ({media.duration_s:.3g} s); the minimum is {MIN_INPUT_S:g} s"
        )


def paper_config(task: str) -> AlignConfig:
    """The paper's settings of ``task`` (no preset, no user options)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    return TASKS[task].paper_config()


def _config(config: AlignConfig | Settings | None, task: str) -> AlignConfig:
    """The AlignConfig of a run: the given one, a resolved one's, or the paper's."""
    if isinstance(config, Settings):
        return config.config
    return config or paper_config(task)


def _record(res: AlignResult, config: AlignConfig | Settings | None, task: str) -> None:
    """Put the run's settings and their sources into its trace (a bare AlignConfig: "given")."""
    if config is None:
        config = Settings(paper_config(task), {k: "paper" for k in TASKS[task].paper})
    if isinstance(config, Settings):
        res.trace.settings = config.record()


def _need(gen: Generator | None, what: str, task: str) -> Generator:
    if gen is None:
        raise AvbridgeError(f"{task} needs {what} generator; none is configured")
    return gen


def _prompt(
    prompt: str | None, captioner: Captioner | None, media: Audio | Video | Image, condition: Condition,
    binder: Binder,
) -> str:
    """The user's prompt, else the captioner's caption of the condition, else empty. A captioner
    that reads the run's own binder gets the condition's embedding, which is then kept on
    ``condition`` for the loop: the condition is embedded once per run."""
    if prompt is not None:
        return prompt
    if captioner is None:
        return ""
    if getattr(captioner, "binder", None) is binder:
        if condition.embedding is None:
            with torch.no_grad():
                condition.embedding = embed_media(binder, condition.modality, condition.data, condition.rate)
        return captioner.caption(media, condition.embedding)  # type: ignore[call-arg]
    return captioner.caption(media)


def _to_audio(gen: Generator, x, duration_s: float) -> Audio:
    rate = int(gen.sample_rate or 16000)
    return tensor_to_audio(x, rate, num_samples=max(1, round(duration_s * rate)))


def _audio_task(
    task: str,
    condition: Condition,
    cond_media: Video | Image,
    duration_s: float,
    components: Components,
    *,
    prompt: str | None,
    guided: bool,
    seed: int,
    config: AlignConfig | Settings | None,
    progress: ProgressFn | None,
    score: bool = True,
) -> TaskResult:
    gen = _need(components.audio, "an audio", task)
    text = _prompt(prompt, components.visual_captioner, cond_media, condition, components.binder)
    spec = gen.default_spec(duration_s)
    res = align(gen, components.binder, spec=spec, condition=condition, prompt=text,
                config=_config(config, task), seed=seed, guided=guided, progress=progress,
                score=score)
    _record(res, config, task)
    return TaskResult(_to_audio(gen, res.media["audio"], duration_s), text, res.trace)


def v2a(
    video: Video,
    components: Components,
    *,
    prompt: str | None = None,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | Settings | None = None,
    progress: ProgressFn | None = None,
    score: bool = True,
) -> TaskResult:
    """Video -> Audio of the video's duration (mux it with ``media.mux_audio`` if wanted)."""
    check_condition("v2a", video)
    cond = Condition("video", video_to_tensor(video), rate=video.fps)
    return _audio_task("v2a", cond, video, video.duration_s, components, prompt=prompt, guided=guided,
                       seed=seed, config=config, progress=progress, score=score)


def i2a(
    image: Image,
    components: Components,
    *,
    prompt: str | None = None,
    duration_s: float = 4.0,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | Settings | None = None,
    progress: ProgressFn | None = None,
    score: bool = True,
) -> TaskResult:
    """Image -> Audio of ``duration_s`` seconds."""
    if duration_s <= 0:
        raise AvbridgeError(f"duration must be positive, got {duration_s}")
    cond = Condition("image", image_to_tensor(image))
    return _audio_task("i2a", cond, image, duration_s, components, prompt=prompt, guided=guided,
                       seed=seed, config=config, progress=progress, score=score)


def a2v(
    audio: Audio,
    components: Components,
    *,
    prompt: str | None = None,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | Settings | None = None,
    progress: ProgressFn | None = None,
    score: bool = True,
) -> TaskResult:
    """Audio -> Video as long as the audio (fps and size from the generator), audio muxed in."""
    gen = _need(components.video, "a video", "a2v")
    check_condition("a2v", audio)
    cond = Condition("audio", audio_to_tensor(audio), rate=audio.sample_rate)
    text = _prompt(prompt, components.audio_captioner, audio, cond, components.binder)
    spec = gen.default_spec(audio.duration_s)
    res = align(gen, components.binder, spec=spec, condition=cond, prompt=text,
                config=_config(config, "a2v"), seed=seed, guided=guided, progress=progress,
                score=score)
    _record(res, config, "a2v")
    video = tensor_to_video(res.media["visual"], float(spec.fps or 8.0))
    return TaskResult(mux_audio(video, audio), text, res.trace)


def a2i(
    audio: Audio,
    components: Components,
    *,
    prompt: str | None = None,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | Settings | None = None,
    progress: ProgressFn | None = None,
    score: bool = True,
) -> TaskResult:
    """Audio -> Image with the image generator (Stable Diffusion: the UNet AnimateDiff is built
    on, so A2I uses the same text-to-image prior as A2V's frames). Falls back to the video
    generator's image mode when no image generator is configured."""
    gen = components.image
    if gen is None:
        video = _need(components.video, "an image", "a2i")
        as_image = getattr(video, "image_mode", None)
        if as_image is None:
            raise AvbridgeError("a2i needs an image generator; none is configured")
        gen = as_image()
    check_condition("a2i", audio)
    cond = Condition("audio", audio_to_tensor(audio), rate=audio.sample_rate)
    text = _prompt(prompt, components.audio_captioner, audio, cond, components.binder)
    res = align(gen, components.binder, spec=gen.default_spec(None), condition=cond, prompt=text,
                config=_config(config, "a2i"), seed=seed, guided=guided, progress=progress,
                score=score)
    _record(res, config, "a2i")
    return TaskResult(tensor_to_image(res.media["visual"]), text, res.trace)


def joint(
    prompt: str,
    components: Components,
    *,
    duration_s: float = 2.0,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | Settings | None = None,
    progress: ProgressFn | None = None,
    score: bool = True,
) -> TaskResult:
    """Text -> Video with a generated audio track, both ``duration_s`` long (Joint-VA)."""
    if duration_s <= 0:
        raise AvbridgeError(f"duration must be positive, got {duration_s}")
    ga = _need(components.audio, "an audio", "joint")
    gv = _need(components.video, "a video", "joint")
    vspec = gv.default_spec(duration_s)
    aspec = ga.default_spec(duration_s)
    res = align_joint(ga, gv, components.binder, audio_spec=aspec, video_spec=vspec, prompt=prompt,
                      config=_config(config, "joint"), seed=seed, guided=guided,
                      progress=progress, score=score)
    _record(res, config, "joint")
    video = tensor_to_video(res.media["visual"], float(vspec.fps or 8.0))
    audio = _to_audio(ga, res.media["audio"], duration_s)
    return TaskResult(mux_audio(video, audio), prompt, res.trace)


__all__ = [
    "Components",
    "MediaSpec",
    "TaskResult",
    "a2i",
    "a2v",
    "TASKS",
    "TaskSpec",
    "check_condition",
    "paper_config",
    "i2a",
    "joint",
    "v2a",
]
