"""The ``avbridge`` command line: one subcommand per task, plus demo, batch, eval and world.

Everything that can be checked cheaply (output extension, output != input, the input
file itself) is checked before any model is loaded, so that a typo costs a second, not
a minute. Every :class:`~avbridge.errors.AvbridgeError` becomes one line on stderr,
``avbridge: error: <file>: <problem>``, and exit code 2; Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from avbridge import __version__, presets
from avbridge.errors import AvbridgeError
from avbridge.models.generators.base import SAMPLERS
from avbridge.tasks import TASKS, TaskSpec, check_condition

PRESETS = tuple(presets.PRESETS)


# --------------------------------------------------------------------------- errors


def format_error(exc: AvbridgeError) -> str:
    """``avbridge: error: <file>: <problem>`` on one line (the message already names the file)."""
    msg = " ".join(str(exc).split()) or type(exc).__name__
    return f"avbridge: error: {msg}"


# --------------------------------------------------------------------------- parser


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Shows meaningful defaults (not None/False) and keeps the line breaks of descriptions."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        h = action.help or ""
        if (
            "%(default)" not in h
            and action.default is not None
            and action.default is not False
            and action.default != argparse.SUPPRESS
            and action.option_strings
        ):
            h += " (default: %(default)s)"
        return h


def per_modality(text: str) -> float | dict[str, float]:
    """``0.1`` (both models) or ``audio=0.1,visual=0.01`` (joint: one value per model)."""
    if "=" not in text:
        return float(text)
    out: dict[str, float] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip().lower()
        key = "visual" if key in ("video", "image", "visual") else key
        if key not in ("audio", "visual") or not value.strip():
            raise argparse.ArgumentTypeError(f"expected NUMBER or audio=NUMBER,visual=NUMBER, got {text!r}")
        out[key] = float(value)
    return out


def _add_model_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument(
        "--preset",
        choices=PRESETS,
        default="world",
        help="model set: 'world' = the small models shipped in the package (trained on the embedded "
        "procedural world); 'tiny-random' = tiny random models (fast, output is noise; for tests); "
        "'paper' = AudioLDM-m-full + SD1.5/AnimateDiff + ImageBind-huge (needs the weights, see README)",
    )
    g.add_argument(
        "--audio-model",
        metavar="ID|DIR|PRESET",
        help="audio generator (AudioLDM): a hub id (cvssp/audioldm-m-full), a local diffusers folder, "
        "or a preset name; overrides --preset for audio",
    )
    g.add_argument(
        "--video-model",
        metavar="ID|DIR|PRESET",
        help="video generator (AnimateDiff): a hub id or local folder of the SD1.5-style base model, "
        "or a preset name; overrides --preset for video",
    )
    g.add_argument(
        "--image-model",
        metavar="ID|DIR|PRESET",
        help="image generator for a2i (the video generator's base model, one frame): a hub id, "
        "a local folder or a preset name; overrides --preset for images",
    )
    g.add_argument(
        "--binder",
        metavar="FILE|DIR|PRESET",
        help="multimodal binder (ImageBind): the official imagebind_huge.pth, an avbridge ImageBind "
        "folder, or a preset name; required by --preset paper",
    )
    g.add_argument(
        "--captioner",
        metavar="SPEC",
        action="append",
        help="captioner that writes the prompt when no --prompt is given (the paper's vanilla "
        "baseline captions the condition): 'probe' (the world's linear-probe captioner; the "
        "default with the world's own binder), 'binder' (zero-shot over labels with the binder; "
        "the default otherwise), 'probe:DIR', 'none', 'clap:ID|DIR' (audio), 'blip:ID|DIR' "
        "(images/video); may be repeated",
    )
    g.add_argument(
        "--device",
        default="cpu",
        help="torch device to run on: cpu, cuda, cuda:1, mps, or 'auto' (cuda if available)",
    )
    g.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="weight and compute precision (float16/bfloat16 only make sense on a GPU)",
    )
    g.add_argument(
        "--offload",
        action="store_true",
        help="model CPU offload: keep the generators' modules in CPU memory and move each to --device "
        "only while it runs (less GPU memory, slower; same output)",
    )
    g.add_argument(
        "--vae-slicing",
        action="store_true",
        help="decode one item / video frame at a time in the VAE (lower peak memory; same output)",
    )


def _add_sampling_options(p: argparse.ArgumentParser, *, takes_prompt: bool = True) -> None:
    g = p.add_argument_group("sampling")
    if takes_prompt:
        g.add_argument(
            "--prompt",
            help="text prompt for the generator(s); without it the task writes one (a caption of the "
            "condition or a neutral prompt, see the docs); also the text term of the loss",
        )
    g.add_argument(
        "--steps",
        type=int,
        help="denoising steps (default: the task's, 30 for audio, 25 for video and joint as in the paper)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same output")
    g.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="ddim",
        help="denoising sampler of the generator(s): deterministic DDIM, or DPM-Solver++ (2M), a "
        "second-order multistep solver for runs with few --steps (docs/generators.md, Samplers)",
    )
    g.add_argument(
        "--cfg",
        type=per_modality,
        metavar="SCALE",
        help="classifier-free guidance scale of the generator(s); for joint also audio=S,visual=S "
        "(default: the task's)",
    )
    g.add_argument(
        "--negative-prompt",
        metavar="TEXT",
        help="negative prompt for classifier-free guidance (what the output should not be)",
    )
    a = p.add_argument_group("alignment (the binder guidance)")
    a.add_argument(
        "--no-guidance",
        action="store_true",
        help="vanilla baseline: the same models, seed and schedule, with no binder guidance",
    )
    a.add_argument(
        "--score",
        action="store_true",
        help="with --no-guidance: also compute the binder loss of the output (a vanilla run otherwise "
        "makes no binder call; guided runs always report it)",
    )
    a.add_argument(
        "--lr",
        type=per_modality,
        help="learning rate of the latent update; for joint also audio=LR,visual=LR (default: the "
        "task's; paper: 0.1 for AudioLDM, 0.01 for AnimateDiff)",
    )
    a.add_argument(
        "--prompt-lr",
        type=per_modality,
        metavar="LR",
        help="learning rate of guided prompt tuning (0 turns it off; default: the task's)",
    )
    a.add_argument(
        "--inner-steps",
        type=int,
        metavar="N",
        help="latent updates per guided denoising step (default: the task's)",
    )
    a.add_argument(
        "--window",
        type=float,
        nargs=2,
        metavar=("START", "STOP"),
        help="guide the denoising steps between these fractions of the schedule, e.g. 0.2 1.0 = all "
        "but the first 20%% (default: the task's)",
    )
    a.add_argument(
        "--update",
        choices=("adam-sign", "grad", "norm-grad"),
        help="latent update rule: 'adam-sign' = a fresh Adam per step as in the authors' code; "
        "'grad' = plain gradient step; 'norm-grad' = gradient step scaled to the gradient's "
        "RMS (default: the task's)",
    )
    a.add_argument(
        "--audio-path",
        choices=("mel", "waveform"),
        help="how generated audio reaches the binder inside the loop: 'mel' = decoded log-mel mapped "
        "to the binder's fbank (no vocoder, cheaper); 'waveform' = through the vocoder (default: the "
        "task's)",
    )
    a.add_argument(
        "--mel-grad",
        choices=("full", "envelope"),
        help="on the mel path, what of the binder's gradient reaches the log-mel: 'full', or "
        "'envelope' = only its loudness over time (per-frame mean over mel bins, smoothed), which "
        "moves sound events (default: the task's)",
    )
    a.add_argument(
        "--frame-grad",
        choices=("full", "envelope"),
        help="what of the binder's gradient reaches generated video frames: 'full', or 'envelope' = "
        "only each frame's mean per channel (brightness over time) (default: the task's)",
    )
    a.add_argument(
        "--latent-grad",
        choices=("full", "frame-mean"),
        help="what of the gradient moves video latents: 'full', or 'frame-mean' = its mean over each "
        "latent frame per channel (whole-frame shifts that leave the layout alone) (default: the task's)",
    )
    a.add_argument(
        "--refine",
        type=per_modality,
        metavar="FRACTION",
        help="after guidance, re-noise the output and denoise this last fraction of the schedule "
        "again without the binder (SDEdit): restores detail guidance pushed off the model's "
        "manifold, keeps when things happen; for joint also audio=F,video=F; 0 = off (default: the "
        "task's)",
    )
    a.add_argument(
        "--guidance-dtype",
        choices=("bfloat16", "float16"),
        help="run only the guidance branch (decode, binder, their backward) under autocast in this "
        "dtype: faster where the hardware has it (bf16 on recent CPUs, fp16/bf16 on GPUs); the "
        "UNet and the output stay in the models' dtype (default: off)",
    )
    a.add_argument(
        "--guidance-decoder",
        nargs="?",
        const="auto",
        metavar="auto|DIR",
        help="decode for the binder with a small guidance decoder instead of the VAE (the output is "
        "still decoded by the VAE): 'auto' (the default when given bare) = the preset's own (the "
        "world's shipped audio and video/image decoders, TAESD for SD 1.5 video/images), or a folder "
        "written by 'avbridge distill-decoder' / an AutoencoderTiny folder or hub id (comma-separated for "
        "several)",
    )
    a.add_argument(
        "--guidance-encoder",
        nargs="?",
        const="auto",
        metavar="auto|DIR",
        help="embed the guided audio with the binder's shallow audio guidance encoder instead of its "
        "audio tower (the condition, the text and the reported scores still use the binder): 'auto' "
        "(the default when given bare) = the preset's own (the world's shipped one), or a folder "
        "written by 'avbridge distill-encoder'",
    )
    a.add_argument(
        "--per-clip",
        action="store_true",
        help="compare binder embeddings clip by clip (keeps timing) instead of pooled over the clip; "
        "the audio-text term stays pooled (most audio clips are background)",
    )


def _add_output_options(p: argparse.ArgumentParser, info: TaskSpec) -> None:
    exts = ", ".join(f"{e} = {what}" for e, what in info.outputs.items())
    p.add_argument(
        "-o", "--output", required=True, metavar="OUTPUT",
        help=f"output file (written atomically, never over the input); its extension picks the format: "
        f"{exts}",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary line")
    p.add_argument(
        "--summary", metavar="JSON",
        help="also write a JSON summary of the run: prompt, timings, binder losses and every setting "
        "with where its value came from (paper, preset or option)",
    )


def _task_parser(sub: Any, info: TaskSpec) -> None:
    p = sub.add_parser(info.name, help=info.summary, description=info.summary, formatter_class=_Formatter)
    if info.input_kind is not None:
        p.add_argument(
            "input",
            metavar="INPUT",
            help=f"the {info.input_kind} file to condition on"
            + (" (any audio file, or a video's sound track)" if info.input_kind == "audio" else ""),
        )
    _add_output_options(p, info)
    if info.name in ("joint", "i2a"):
        p.add_argument(
            "--duration",
            type=float,
            default=2.0 if info.name == "joint" else 4.0,
            metavar="S",
            help="length of the output in seconds (the other tasks follow their input's length)",
        )
    _add_model_options(p)
    _add_sampling_options(p)
    p.set_defaults(func=_run_task, task=info.name)


def _demo_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="the shipped settings, guided vs vanilla, on 4 bundled examples; mp4s, contact sheet, figures",
        description="Runs V2A and A2V with the shipped settings, guided and vanilla, on the first 4 "
        "bundled held-out examples of the embedded world, scores each output as `avbridge world bench` "
        "does (sync F1, class) and writes playable mp4 files, a PNG contact sheet and summary.json.",
        formatter_class=_Formatter,
    )
    p.add_argument("--out", default="out/demo", metavar="DIR", help="folder for the demo outputs")
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="model set (default: 'world' if its models are shipped, else 'tiny-random')",
    )
    p.add_argument("--steps", type=int, help="denoising steps (default: each task's shipped count)")
    p.add_argument("--seed", type=int, default=0, help="added to each clip's generation seed")
    p.add_argument("--tasks", default="v2a,a2v", help="comma-separated: v2a, a2v, joint")
    p.add_argument("--examples", type=int, default=4, help="number of bundled examples")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, auto)")
    p.add_argument(
        "--workers", type=int, default=None,
        help="processes that share the runs, one torch thread each (default: 2 on a CPU with 2 or more "
        "cores, else 1; the figures then equal `OMP_NUM_THREADS=1 avbridge world bench`)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_demo)


#: Subcommands provided by other modules: (name, module, one-line help when unavailable).
#: Each module exposes ``add_parser(subparsers)``, which adds its subparser and sets
#: ``func`` (``func(args) -> int``) with ``set_defaults``.
PLUGINS: tuple[tuple[str, str, str], ...] = (
    ("batch", "avbridge.apps.batch", "run a task over a manifest or folder of inputs (resumable)"),
    ("eval", "avbridge.eval", "evaluate generated media (metrics)"),
    ("world", "avbridge.world", "the embedded procedural world: sample clips, bench"),
    ("app", "avbridge.apps.app", "start the web app: every task in the browser, guided beside vanilla"),
    ("distill-decoder", "avbridge.apps.distill", "distil an AudioLDM VAE into a small guidance decoder"),
    ("distill-encoder", "avbridge.apps.distill_encoder",
     "distil the binder's audio tower into a shallow audio guidance encoder"),
)


def _add_plugins(sub: Any) -> None:
    """Add the optional subcommands; a module that fails to import only disables its command."""
    for name, module, summary in PLUGINS:
        reason: str | None = None
        try:
            mod = importlib.import_module(module)
            add = getattr(mod, "add_parser", None)
            if add is None:
                reason = f"{module} has no add_parser()"
            else:
                before = set(sub.choices)
                add(sub)
                if name not in sub.choices and set(sub.choices) == before:
                    reason = f"{module}.add_parser() added no '{name}' command"
        except Exception as e:  # noqa: BLE001 - a broken optional module must not break the core CLI
            reason = f"{module} failed to import: {' '.join(str(e).split()) or type(e).__name__}"
        if reason is not None and name not in sub.choices:
            p = sub.add_parser(name, help=f"{summary} (unavailable)", description=f"unavailable: {reason}")
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
            p.set_defaults(func=_unavailable(name, reason))


def _unavailable(name: str, reason: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise AvbridgeError(f"the '{name}' command is not available: {reason}")

    return run


def build_parser() -> argparse.ArgumentParser:
    """The full ``avbridge`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="avbridge",
        description="Open-domain visual-audio generation by diffusion latent alignment: pretrained audio "
        "and video diffusion models steered by a multimodal binder (ImageBind), after 'Seeing and "
        "Hearing' (Xing et al., CVPR 2024).",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"avbridge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in TASKS.values():
        _task_parser(sub, info)
    _demo_parser(sub)
    _add_plugins(sub)
    return parser


# --------------------------------------------------------------------------- running tasks


def check_output(path: str | Path, task: str) -> Path:
    """Validate the output path for ``task`` before anything expensive happens."""
    info = TASKS[task]
    out = Path(path)
    ext = out.suffix.lower()
    if ext not in info.outputs:
        allowed = ", ".join(info.outputs)
        got = f"'{ext}'" if ext else "no extension"
        raise AvbridgeError(f"{out}: unsupported output format ({got}) for {task}; use {allowed}")
    if out.is_dir():
        raise AvbridgeError(f"{out}: output path is a directory")
    return out


def read_condition(path: str | Path, kind: str) -> Any:
    """Read and validate the task's input (raises MediaError naming the file)."""
    from avbridge.io import media

    if kind == "video":
        return media.read_video(path)
    if kind == "image":
        return media.read_image(path)
    if kind == "audio":
        return media.read_audio(path)
    raise ValueError(f"unknown input kind {kind!r}")


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """AlignConfig fields set explicitly on the command line (others keep the task's defaults)."""
    o: dict[str, Any] = {}
    pairs = {
        "steps": "steps",
        "cfg": "guidance_scale",
        "negative_prompt": "negative_prompt",
        "lr": "lr",
        "prompt_lr": "prompt_lr",
        "inner_steps": "inner_steps",
        "update": "update",
        "audio_path": "audio_path",
        "mel_grad": "mel_grad",
        "frame_grad": "frame_grad",
        "latent_grad": "latent_grad",
        "guidance_dtype": "guidance_dtype",
        "refine": "refine",
    }
    for arg, field in pairs.items():
        v = getattr(args, arg, None)
        if v is not None:
            o[field] = v
    if getattr(args, "window", None) is not None:
        o["window"] = tuple(args.window)
    if getattr(args, "per_clip", False):
        o["per_clip"] = True
    if getattr(args, "guidance_decoder", None):
        o["guidance_decoder"] = True
    if getattr(args, "guidance_encoder", None):
        o["guidance_encoder"] = True
    return o


def make_config(task: str, overrides: dict[str, Any], preset: str | None = None) -> Any:
    """The task's AlignConfig: the paper's, the preset's tuned settings, then ``overrides``."""
    return presets.resolve_settings(task, preset=preset, options=overrides).config


def config_preset(args: argparse.Namespace) -> str | None:
    """The preset whose tuned guidance settings apply: only when every model is the preset's."""
    return presets.guidance_preset(getattr(args, "preset", None), vars(args))


class ProgressBar:
    """A tqdm bar fed by the tasks' ``progress(step, total, info)`` callback."""

    def __init__(self, desc: str, enabled: bool = True):
        self.desc = desc
        self.enabled = enabled
        self._bar: Any = None
        self._done = 0

    def __call__(self, step: int, total: int, info: dict[str, Any] | None = None) -> None:
        if not self.enabled:
            return
        if self._bar is None or self._bar.total != total or step < self._done:
            self.close()
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=self.desc, unit="step", file=sys.stderr, leave=False)
            self._done = 0
        self._bar.update(step - self._done)
        self._done = step
        if info and info.get("loss") is not None:
            self._bar.set_postfix(loss=f"{info['loss']:.4f}", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; others are checked (AvbridgeError if unusable)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise AvbridgeError(f"--device {device}: not a torch device ({' '.join(str(e).split())})") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise AvbridgeError(f"--device {device}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise AvbridgeError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise AvbridgeError(f"--device {device}: MPS is not available on this machine")
    return device


def _dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def assemble_output(task: str, ext: str, result_media: Any, condition: Any) -> Any:
    """The media object to write for ``task`` in format ``ext`` (muxing the condition's sound etc.)."""
    from avbridge.io import media

    if task == "v2a" and ext == ".mp4":
        audio = result_media if isinstance(result_media, media.Audio) else result_media.audio
        return media.mux_audio(media.Video(condition.frames, condition.fps), audio)
    if task == "a2v":
        video = result_media
        if ext == ".mp4":
            return media.mux_audio(media.Video(video.frames, video.fps), condition)
        return media.Video(video.frames, video.fps)
    if isinstance(result_media, media.Video) and task in ("v2a", "i2a") and result_media.audio is not None:
        return result_media.audio
    return result_media


def _run_task(args: argparse.Namespace) -> int:
    from avbridge.io import media

    task = args.task
    info = TASKS[task]
    out = check_output(args.output, task)
    inputs = [args.input] if info.input_kind else []
    media.ensure_not_input(out, inputs)
    if task == "joint" and (not args.prompt or not args.prompt.strip()):
        raise AvbridgeError("joint needs a non-empty --prompt")
    if task in ("joint", "i2a") and not 0 < args.duration <= 60:
        raise AvbridgeError(f"--duration must be in (0, 60] seconds, got {args.duration}")
    condition = read_condition(args.input, info.input_kind) if info.input_kind else None
    if condition is not None:
        check_condition(task, condition, args.input)
    settings = presets.resolve_settings(
        task, preset=args.preset, options=config_overrides(args), models=vars(args),
        sampler=getattr(args, "sampler", None) or "ddim",
    )
    device = resolve_device(args.device)

    from avbridge import loading, tasks

    sources = (args.audio_model, args.video_model, args.image_model, args.binder)
    note = presets.preset_note(args.preset, *sources)
    if note and not args.quiet:
        print(f"avbridge: note: {note}", file=sys.stderr)
    t0 = time.perf_counter()
    components = loading.load_components(
        args.preset,
        audio_model=args.audio_model,
        video_model=args.video_model,
        image_model=args.image_model,
        binder=args.binder,
        captioner=args.captioner,
        device=device,
        dtype=_dtype(args.dtype),
        need=info.needs,
        guidance_decoder=getattr(args, "guidance_decoder", None),
        guidance_encoder=getattr(args, "guidance_encoder", None),
        offload=getattr(args, "offload", False),
        vae_slicing=getattr(args, "vae_slicing", False),
        sampler=getattr(args, "sampler", None) or "ddim",
    )
    t_load = time.perf_counter() - t0
    fn = getattr(tasks, task)
    kwargs: dict[str, Any] = dict(
        prompt=args.prompt, guided=not args.no_guidance, seed=args.seed, config=settings,
        score=not args.no_guidance or args.score,
    )
    if task in ("joint", "i2a"):
        kwargs["duration_s"] = args.duration
    t1 = time.perf_counter()
    mode = "vanilla" if args.no_guidance else "guided"
    with ProgressBar(f"{task} ({mode})", enabled=not args.quiet) as bar:
        if task == "joint":
            prompt = kwargs.pop("prompt")
            result = fn(prompt, components, progress=bar, **kwargs)
        else:
            result = fn(condition, components, progress=bar, **kwargs)
    t_gen = time.perf_counter() - t1
    written = media.write_output(out, assemble_output(task, out.suffix.lower(), result.media, condition))
    if args.summary:
        trace = result.trace
        summary = {
            "task": task, "output": str(written), "input": getattr(args, "input", None), "mode": mode,
            "preset": args.preset, "prompt": result.prompt, "seed": args.seed,
            "sampler": getattr(args, "sampler", None) or "ddim",
            "load_s": round(t_load, 3), "generate_s": round(t_gen, 3),
            "final_loss": trace.final_loss if trace.final_loss == trace.final_loss else None,
            "binder_calls": trace.binder_calls, "step_loss": trace.step_loss,
            "guided_steps": trace.guided_steps,
            "settings": settings.record(),
        }
        media.write_text_atomic(Path(args.summary), json.dumps(summary, indent=1) + "\n")
    if not args.quiet:
        loss = getattr(getattr(result, "trace", None), "final_loss", None)
        extra = f", binder loss {loss:.4f}" if isinstance(loss, float) and loss == loss else ""
        print(
            f"avbridge: wrote {written} ({mode}, preset {args.preset}, prompt {result.prompt!r}; "
            f"load {t_load:.1f}s, generate {t_gen:.1f}s{extra})",
            file=sys.stderr,
        )
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    import os

    from avbridge.apps import demo

    device = resolve_device(args.device)
    workers = args.workers
    if workers is None:
        workers = 2 if device == "cpu" and (os.cpu_count() or 1) >= 2 else 1
    if workers < 1:
        raise AvbridgeError(f"--workers must be at least 1, got {workers}")
    return demo.run_demo(
        args.out,
        preset=args.preset,
        steps=args.steps,
        seed=args.seed,
        device=device,
        quiet=args.quiet,
        n_examples=args.examples,
        workers=workers,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        progress=ProgressBar("demo", enabled=not args.quiet),
    )


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, --version, usage errors: argparse already printed
            return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
        rc = args.func(args)
        return int(rc or 0)
    except AvbridgeError as e:
        print(format_error(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("avbridge: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
