"""The five tasks as thin compositions of generators, a binder, captioners and the aligner.

Each task takes and returns numpy media containers (``avbridge.io.media``) and writes
nothing. ``guided=False`` is the vanilla baseline of the paper: the same models, seed
and prompt, no aligner. The prompt is the user's if given, else the captioner's caption
of the condition (else empty), and it is the same for guided and vanilla runs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from avbridge.align import AlignConfig, AlignTrace, Condition, ProgressFn, align, align_joint
from avbridge.align.losses import LossWeights
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
from avbridge.models.generators.base import Generator, MediaSpec


@dataclass
class Components:
    """Everything the tasks need; ``avbridge.models.loading.load_components`` builds it.

    ``visual_captioner`` captions videos/images (vanilla V2A/I2A prompts);
    ``audio_captioner`` captions audio (vanilla A2V/A2I prompts).
    """

    binder: Binder
    audio: Generator | None = None
    video: Generator | None = None
    image: Generator | None = None
    audio_captioner: Captioner | None = None
    visual_captioner: Captioner | None = None


@dataclass
class TaskResult:
    """The generated media, the prompt that was used, and the aligner's trace."""

    media: Audio | Video | Image
    prompt: str
    trace: AlignTrace


def default_config(task: str, preset: str | None = None, steps: int | None = None) -> AlignConfig:
    """The paper's settings per task, or a preset's own where it ships them.

    V2A/I2A: 30 steps, lr 0.1 on AudioLDM latents, CFG 2.5, guided after the first 20%.
    A2V/A2I: 25 steps, lr 0.01 on AnimateDiff/SD latents, CFG 7.5, prompt tuning on.
    Joint: 25 steps, lr 0.1 (audio) / 0.01 (video), prompt tuning on for both.

    ``steps`` replaces the task's step count. ``preset="world"``: the embedded world's
    models ship ``guidance.json`` beside their weights, settings chosen on the world's
    validation split for those models and for the step count
    (``scripts/tune_world_guidance.py``); its fields replace the paper's.
    """
    base = _paper_config(task)
    if steps is not None:
        base = replace(base, steps=steps)
    if preset == "world":
        from avbridge.models.loading import world_guidance

        fields = world_guidance(steps=base.steps).get(task, {})
        if fields:
            base = replace(base, **fields)
    return base


def _paper_config(task: str) -> AlignConfig:
    if task in ("v2a", "i2a"):
        return AlignConfig(steps=30, lr=0.1, guidance_scale=2.5, window=(0.2, 1.0))
    if task in ("a2v", "a2i"):
        return AlignConfig(steps=25, lr=0.01, guidance_scale=7.5, window=(0.2, 1.0), prompt_lr=0.01)
    if task == "joint":
        return AlignConfig(
            steps=25,
            lr={"audio": 0.1, "visual": 0.01},
            guidance_scale={"audio": 2.5, "visual": 7.5},
            window=(0.2, 1.0),
            prompt_lr=0.01,
            weights=LossWeights(),
        )
    raise ValueError(f"unknown task {task!r}")


def _need(gen: Generator | None, what: str, task: str) -> Generator:
    if gen is None:
        raise AvbridgeError(f"{task} needs {what} generator; none is configured")
    return gen


def _prompt(prompt: str | None, captioner: Captioner | None, media: Audio | Video | Image) -> str:
    if prompt is not None:
        return prompt
    if captioner is not None:
        return captioner.caption(media)
    return ""


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
    config: AlignConfig | None,
    progress: ProgressFn | None,
) -> TaskResult:
    gen = _need(components.audio, "an audio", task)
    text = _prompt(prompt, components.visual_captioner, cond_media)
    spec = gen.default_spec(duration_s)
    res = align(gen, components.binder, spec=spec, condition=condition, prompt=text,
                config=config or default_config(task), seed=seed, guided=guided, progress=progress)
    return TaskResult(_to_audio(gen, res.media["audio"], duration_s), text, res.trace)


def v2a(
    video: Video,
    components: Components,
    *,
    prompt: str | None = None,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | None = None,
    progress: ProgressFn | None = None,
) -> TaskResult:
    """Video -> Audio of the video's duration (mux it with ``media.mux_audio`` if wanted)."""
    cond = Condition("video", video_to_tensor(video), rate=video.fps)
    return _audio_task("v2a", cond, video, video.duration_s, components, prompt=prompt, guided=guided,
                       seed=seed, config=config, progress=progress)


def i2a(
    image: Image,
    components: Components,
    *,
    prompt: str | None = None,
    duration_s: float = 4.0,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | None = None,
    progress: ProgressFn | None = None,
) -> TaskResult:
    """Image -> Audio of ``duration_s`` seconds."""
    if duration_s <= 0:
        raise AvbridgeError(f"duration must be positive, got {duration_s}")
    cond = Condition("image", image_to_tensor(image))
    return _audio_task("i2a", cond, image, duration_s, components, prompt=prompt, guided=guided,
                       seed=seed, config=config, progress=progress)


def a2v(
    audio: Audio,
    components: Components,
    *,
    prompt: str | None = None,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | None = None,
    progress: ProgressFn | None = None,
) -> TaskResult:
    """Audio -> Video as long as the audio (fps and size from the generator), audio muxed in."""
    gen = _need(components.video, "a video", "a2v")
    text = _prompt(prompt, components.audio_captioner, audio)
    spec = gen.default_spec(audio.duration_s)
    cond = Condition("audio", audio_to_tensor(audio), rate=audio.sample_rate)
    res = align(gen, components.binder, spec=spec, condition=cond, prompt=text,
                config=config or default_config("a2v"), seed=seed, guided=guided, progress=progress)
    video = tensor_to_video(res.media["visual"], float(spec.fps or 8.0))
    return TaskResult(mux_audio(video, audio), text, res.trace)


def a2i(
    audio: Audio,
    components: Components,
    *,
    prompt: str | None = None,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | None = None,
    progress: ProgressFn | None = None,
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
    text = _prompt(prompt, components.audio_captioner, audio)
    cond = Condition("audio", audio_to_tensor(audio), rate=audio.sample_rate)
    res = align(gen, components.binder, spec=gen.default_spec(None), condition=cond, prompt=text,
                config=config or default_config("a2i"), seed=seed, guided=guided, progress=progress)
    return TaskResult(tensor_to_image(res.media["visual"]), text, res.trace)


def joint(
    prompt: str,
    components: Components,
    *,
    duration_s: float = 2.0,
    guided: bool = True,
    seed: int = 0,
    config: AlignConfig | None = None,
    progress: ProgressFn | None = None,
) -> TaskResult:
    """Text -> Video with a generated audio track, both ``duration_s`` long (Joint-VA)."""
    if duration_s <= 0:
        raise AvbridgeError(f"duration must be positive, got {duration_s}")
    ga = _need(components.audio, "an audio", "joint")
    gv = _need(components.video, "a video", "joint")
    vspec = gv.default_spec(duration_s)
    aspec = ga.default_spec(duration_s)
    res = align_joint(ga, gv, components.binder, audio_spec=aspec, video_spec=vspec, prompt=prompt,
                      config=config or default_config("joint"), seed=seed, guided=guided,
                      progress=progress)
    video = tensor_to_video(res.media["visual"], float(vspec.fps or 8.0))
    audio = _to_audio(ga, res.media["audio"], duration_s)
    return TaskResult(mux_audio(video, audio), prompt, res.trace)


__all__ = [
    "Components",
    "MediaSpec",
    "TaskResult",
    "a2i",
    "a2v",
    "default_config",
    "i2a",
    "joint",
    "v2a",
]
