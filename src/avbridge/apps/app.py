"""``avbridge app``: every task in a Gradio web page, the guided output beside the vanilla one.

The models load once at start-up (``load_components``); requests go through Gradio's queue,
``--concurrency`` at a time (default one: one worker per device), and report progress from
the aligner's callback (step, total, binder loss). Each tab reads its input with the CLI's
readers and runs the same ``avbridge.tasks`` function with the same settings as the task
command, so a bad file gets the CLI's one-line message, shown in the page. Each request's
files live in a folder of their own that is removed ``--keep-minutes`` after the request.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbridge.apps import app_support as support
from avbridge.apps.app_support import TASK_DEFAULT, Limits, RequestFolders
from avbridge.errors import AvbridgeError

log = logging.getLogger("avbridge.app")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Tabs in page order: (task, tab title).
TABS = (
    ("v2a", "V2A: video → audio"),
    ("i2a", "I2A: image → audio"),
    ("a2v", "A2V: audio → video"),
    ("a2i", "A2I: audio → image"),
    ("joint", "Joint: text → video + audio"),
)
MODES = ("guided", "vanilla")
#: The advanced inputs of every tab, in the order the request handler takes them.
ADVANCED_ORDER = ("cfg", "lr", "prompt_lr", "inner_steps", "window", "refine", "update", "audio_path",
                  "mel_grad", "frame_grad", "latent_grad", "per_clip")
#: File types each input accepts in the upload dialog (the readers decide what is usable).
_UPLOAD_TYPES = {
    "image": ["image"],
    "audio": ["audio", "video"],
}
_CHOICES = {
    "update": (TASK_DEFAULT, "adam-sign", "grad", "norm-grad"),
    "audio_path": (TASK_DEFAULT, "mel", "waveform"),
    "mel_grad": (TASK_DEFAULT, "full", "envelope"),
    "frame_grad": (TASK_DEFAULT, "full", "envelope"),
    "latent_grad": (TASK_DEFAULT, "full", "frame-mean"),
}


@dataclass
class AppSettings:
    """How the app runs: model preset (for the page and the tuned guidance), limits, folders."""

    preset: str = "world"
    guidance_preset: str | None = "world"
    device: str = "cpu"
    limits: Limits = field(default_factory=Limits)
    keep_s: float = 1800.0
    concurrency: int = 1
    root: Path | None = None
    note: str | None = None


def _task_specs() -> dict[str, Any]:
    from avbridge.apps import cli

    return cli.TASKS


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v:g}" for k, v in value.items())
    if isinstance(value, (tuple, list)):
        return " ".join(f"{v:g}" for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _upload_path(value: Any) -> str | None:
    """The local path of an upload as Gradio hands it over (a str, or a dict/FileData with a path)."""
    if value is None or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        return str(value)
    if isinstance(value, dict):
        inner = value.get("video", value)
        return _upload_path(inner.get("path") if isinstance(inner, dict) else inner)
    path = getattr(value, "path", None)
    return str(path) if path else None


class WebApp:
    """The page and its request handler around one set of loaded components."""

    def __init__(self, components: Any, settings: AppSettings):
        self.components = components
        self.settings = settings
        self._own_root = settings.root is None
        if settings.root is not None:
            root = Path(settings.root)
        else:
            root = Path(tempfile.mkdtemp(prefix="avbridge-app-"))
        self.root = root
        self.folders = RequestFolders(root, settings.keep_s)
        self.blocks: Any = None

    # ------------------------------------------------------------------ requests

    def generate(
        self,
        task: str,
        upload: Any,
        prompt: str | None,
        negative_prompt: str | None,
        seed: Any,
        steps: Any,
        duration: Any,
        compare: bool,
        advanced: dict[str, Any],
        progress: Any = None,
    ) -> tuple[Any, ...]:
        """Run ``task`` guided (and vanilla when ``compare``) and return the page's outputs:
        status line, loss figure, then player, picture, info and files for guided and vanilla.
        Errors never escape: they become the status line (``avbridge: error: ...``)."""
        path = _upload_path(upload)
        try:
            with self.folders.request() as folder:
                return self._generate(task, path, prompt, negative_prompt, seed, steps, duration, compare,
                                      advanced, progress, folder)
        except AvbridgeError as e:
            return self._failure(f"avbridge: error: {support.one_line(str(e), path)}")
        except Exception as e:  # noqa: BLE001 - the page shows one line and keeps serving
            log.exception("avbridge app: %s request failed", task)
            return self._failure(
                f"avbridge: internal error: {type(e).__name__}: {support.one_line(str(e), path)} "
                "(the server log has the details)"
            )

    @staticmethod
    def _failure(message: str) -> tuple[Any, ...]:
        return (message, None) + (None, None, "", None) * 2

    def _generate(
        self,
        task: str,
        path: str | None,
        prompt: str | None,
        negative_prompt: str | None,
        seed: Any,
        steps: Any,
        duration: Any,
        compare: bool,
        advanced: dict[str, Any],
        progress: Any,
        folder: Path,
    ) -> tuple[Any, ...]:
        from avbridge import tasks
        from avbridge.apps import cli
        from avbridge.io import media

        t_start = time.perf_counter()
        spec = _task_specs()[task]
        limits = self.settings.limits
        condition = None
        if spec.input_kind is not None:
            if path is None:
                raise AvbridgeError(f"no {spec.input_kind} given: upload a file or pick an example")
            condition = support.read_input(spec.input_kind, path, limits)
            tasks.check_condition(task, condition, path)
        text = (prompt or "").strip() or None
        if task == "joint" and text is None:
            raise AvbridgeError("joint needs a non-empty prompt")
        kwargs: dict[str, Any] = {}
        if task in ("joint", "i2a"):
            try:
                d = float(duration)
            except (TypeError, ValueError):
                raise AvbridgeError(f"duration must be a number of seconds, got {duration!r}") from None
            if not 0 < d <= limits.max_duration_s:
                raise AvbridgeError(
                    f"duration must be in (0, {limits.max_duration_s:g}] seconds, got {d:g} (--max-duration)"
                )
            kwargs["duration_s"] = d
        try:
            seed_i = int(float(seed or 0))
        except (TypeError, ValueError):
            raise AvbridgeError(f"seed must be a whole number, got {seed!r}") from None
        ns = support.options_namespace(steps=steps, negative_prompt=negative_prompt, advanced=advanced)
        settings = support.resolve_settings(task, ns, self.settings.guidance_preset)
        config = settings.config
        fn = getattr(tasks, task)
        modes = MODES if compare else MODES[:1]
        outputs: dict[str, tuple[Any, ...]] = {}
        traces: dict[str, Any] = {}
        for k, mode in enumerate(modes):
            report = self._progress(progress, mode, k, len(modes))
            t0 = time.perf_counter()
            if task == "joint":
                res = fn(text, self.components, guided=mode == "guided", seed=seed_i, config=settings,
                         progress=report, **kwargs)
            else:
                res = fn(condition, self.components, prompt=text, guided=mode == "guided", seed=seed_i,
                         config=settings, progress=report, **kwargs)
            t_gen = time.perf_counter() - t0
            t1 = time.perf_counter()
            files = [
                media.write_output(folder / f"{task}-{mode}{ext}",
                                   cli.assemble_output(task, ext, res.media, condition))
                for ext in spec.outputs
            ]
            shown_ext = next(e for e in (".mp4", ".wav", ".png") if e in spec.outputs)
            player = next(f for f in files if f.suffix == shown_ext)
            shown = cli.assemble_output(task, shown_ext, res.media, condition)
            pic = support.picture(folder / f"{task}-{mode}-picture.png", shown, condition,
                                  f"{mode}: prompt {res.prompt!r}")
            t_write = time.perf_counter() - t1
            trace = res.trace
            traces[mode] = trace
            n_guided = len(trace.step_loss)
            final = f"{trace.final_loss:.4f}" if trace.final_loss == trace.final_loss else "n/a"
            info = (
                f"**{mode}**: generate {t_gen:.1f} s ({len(trace.step_seconds)} steps, {n_guided} guided), "
                f"write {t_write:.1f} s; final binder loss {final}; prompt `{res.prompt}`"
            )
            outputs[mode] = (str(player), str(pic), info, [str(f) for f in files])
        if "vanilla" not in outputs:
            outputs["vanilla"] = (None, None, "*vanilla: not run (compare with vanilla is off)*", None)
        fig = support.loss_figure(traces.get("guided"), traces.get("vanilla"), config.steps)
        status = (
            f"done: {task}, preset {self.settings.preset}, seed {seed_i}, {config.steps} steps, "
            f"{' and '.join(modes)} in {time.perf_counter() - t_start:.1f} s"
        )
        return (status, fig) + outputs["guided"] + outputs["vanilla"]

    @staticmethod
    def _progress(progress: Any, mode: str, k: int, n: int) -> Any:
        if progress is None:
            return None

        def report(step: int, total: int, info: dict[str, Any] | None = None) -> None:
            loss = (info or {}).get("loss")
            desc = f"{mode} ({k + 1}/{n}): step {step}/{total}"
            if loss is not None:
                desc += f", binder loss {loss:.4f}"
            try:
                progress((step, total), desc=desc)
            except Exception:  # noqa: BLE001 - progress is best-effort; the run goes on
                pass

        return report

    # ------------------------------------------------------------------ the page

    def _defaults(self, task: str) -> Any:
        ns = support.options_namespace(steps=None, negative_prompt=None, advanced={})
        return support.resolve_settings(task, ns, self.settings.guidance_preset).config

    def _examples_for(self, task: str) -> list[list[Any]]:
        from avbridge.apps.demo import bundled_examples_dir
        from avbridge.io import media

        clips = sorted(bundled_examples_dir().glob("*.mp4"))
        if task in ("v2a", "a2v", "a2i"):
            return [[str(c)] for c in clips]
        if task == "i2a":
            out = []
            folder = self.root / "examples"
            folder.mkdir(exist_ok=True)
            for c in clips:
                png = folder / f"{c.stem}.png"
                if not png.is_file():
                    v = media.read_video(c)
                    media.write_image(png, media.Image(v.frames[len(v.frames) // 2]))
                out.append([str(png)])
            return out
        import json

        rows = []
        for c in clips:
            meta = c.with_suffix(".json")
            if meta.is_file():
                truth = json.loads(meta.read_text())
                rows.append([truth.get("caption", c.stem), min(float(truth.get("duration_s", 2.0)), 4.0)])
        return rows

    def _tab(self, gr: Any, task: str) -> None:
        spec = _task_specs()[task]
        cfg = self._defaults(task)
        limits = self.settings.limits
        with gr.Row():
            with gr.Column(scale=2, min_width=320):
                if spec.input_kind == "video":
                    upload = gr.Video(label="input video", sources=["upload"], elem_id=f"{task}-input")
                elif spec.input_kind is not None:
                    label = "input image"
                    if spec.input_kind == "audio":
                        label = "input audio (or a video: its sound)"
                    upload = gr.File(label=label, file_types=_UPLOAD_TYPES[spec.input_kind], type="filepath",
                                     elem_id=f"{task}-input")
                else:
                    upload = gr.State(None)
                prompt = gr.Textbox(
                    label="prompt",
                    placeholder="what to generate" if task == "joint" else
                    "empty: the captioner describes the input (same prompt for guided and vanilla)",
                    elem_id=f"{task}-prompt",
                )
                negative = gr.Textbox(label="negative prompt", placeholder="what the output should not be")
                with gr.Row():
                    seed = gr.Number(label="seed", value=0, precision=0)
                    steps = gr.Slider(1, 100, value=cfg.steps, step=1, label="steps")
                if task in ("i2a", "joint"):
                    duration = gr.Slider(0.5, limits.max_duration_s, value=4.0 if task == "i2a" else 2.0,
                                         step=0.5, label="duration (s)")
                else:
                    duration = gr.State(None)
                compare = gr.Checkbox(value=True,
                                      label="compare with vanilla (same seed, no binder guidance)")
                with gr.Accordion("advanced: guidance settings (blank = the task's)", open=False):
                    adv = {
                        "cfg": gr.Textbox(label="CFG scale (--cfg)", placeholder=_fmt(cfg.guidance_scale)),
                        "lr": gr.Textbox(label="latent learning rate (--lr)", placeholder=_fmt(cfg.lr)),
                        "prompt_lr": gr.Textbox(label="prompt learning rate (--prompt-lr)",
                                                placeholder=_fmt(cfg.prompt_lr)),
                        "inner_steps": gr.Number(label="inner steps (--inner-steps)", value=None, precision=0,
                                                 placeholder=_fmt(cfg.inner_steps)),
                        "window": gr.Textbox(label="guidance window START STOP (--window)",
                                             placeholder=_fmt(cfg.window)),
                        "refine": gr.Textbox(label="refine fraction (--refine)",
                                             placeholder=_fmt(cfg.refine)),
                    }
                    for name, choices in _CHOICES.items():
                        option = "--" + name.replace("_", "-")
                        adv[name] = gr.Dropdown(list(choices), value=TASK_DEFAULT,
                                                label=f"{name.replace('_', ' ')} ({option})")
                    adv["per_clip"] = gr.Checkbox(value=bool(cfg.per_clip),
                                                  label="per-clip loss (--per-clip)")
                button = gr.Button("Generate", variant="primary", elem_id=f"{task}-run")
                examples = self._examples_for(task)
                if examples:
                    inputs = [upload] if spec.input_kind is not None else [prompt, duration]
                    gr.Examples(examples, inputs=inputs, label="world examples (click to fill)")
            with gr.Column(scale=3, min_width=420):
                status = gr.Markdown(elem_id=f"{task}-status")
                outs: list[Any] = []
                with gr.Row():
                    for mode in MODES:
                        with gr.Column(min_width=260):
                            gr.Markdown(f"### {mode}")
                            outs.append(self._player(gr, task, mode))
                            outs.append(gr.Image(label=f"{mode}: frames and spectrogram", type="filepath",
                                                 interactive=False, elem_id=f"{task}-{mode}-picture"))
                            outs.append(gr.Markdown(elem_id=f"{task}-{mode}-info"))
                            outs.append(gr.File(label=f"{mode}: download", file_count="multiple",
                                                interactive=False, elem_id=f"{task}-{mode}-files"))
                loss = gr.Plot(label="binder loss per step", elem_id=f"{task}-loss")

        assert tuple(adv) == ADVANCED_ORDER

        def run(upload, prompt, negative_prompt, seed, steps, duration, compare, cfg, lr, prompt_lr,
                inner_steps, window, refine, update, audio_path, mel_grad, frame_grad, latent_grad, per_clip,
                progress=gr.Progress()):  # noqa: B008 - Gradio's way of asking for a progress tracker
            advanced = dict(cfg=cfg, lr=lr, prompt_lr=prompt_lr, inner_steps=inner_steps, window=window,
                            refine=refine, update=update, audio_path=audio_path, mel_grad=mel_grad,
                            frame_grad=frame_grad, latent_grad=latent_grad, per_clip=per_clip)
            return self.generate(task, upload, prompt, negative_prompt, seed, steps, duration, compare,
                                 advanced, progress)

        run.__name__ = f"run_{task}"
        button.click(
            run,
            inputs=[upload, prompt, negative, seed, steps, duration, compare, *adv.values()],
            outputs=[status, loss, *outs],
            api_name=task,
            concurrency_limit=self.settings.concurrency,
            concurrency_id="generate",
        )

    @staticmethod
    def _player(gr: Any, task: str, mode: str) -> Any:
        elem = f"{task}-{mode}-player"
        if task == "i2a":
            return gr.Audio(label=f"{mode}: audio", type="filepath", interactive=False, elem_id=elem)
        if task == "a2i":
            return gr.Image(label=f"{mode}: image", type="filepath", interactive=False, elem_id=elem)
        label = "input video with the generated sound" if task == "v2a" else "video with its sound"
        return gr.Video(label=f"{mode}: {label}", interactive=False, elem_id=elem)

    def build(self) -> Any:
        """The Gradio Blocks of the page (one tab per task); queue set up, not launched."""
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        import gradio as gr

        keep = max(1, int(self.settings.keep_s))
        with gr.Blocks(title="avbridge", delete_cache=(max(1, min(keep // 2, 600)), keep)) as blocks:
            lim = self.settings.limits
            header = (
                "# avbridge\nOpen-domain visual-audio generation by diffusion latent alignment "
                "(Seeing and Hearing, CVPR 2024): each output is generated **guided** by the binder "
                "and, to compare, **vanilla** with the same models, prompt and seed.  \n"
                f"Models: preset `{self.settings.preset}` on `{self.settings.device}`. Uploads up to "
                f"{lim.max_upload_mb:g} MB and {lim.max_duration_s:g} s."
            )
            if self.settings.note:
                header += f"  \n**Note: {self.settings.note}.**"
            gr.Markdown(header)
            with gr.Tabs():
                for task, title in TABS:
                    with gr.Tab(title, id=task, elem_id=f"tab-{task}"):
                        self._tab(gr, task)
        blocks.queue(default_concurrency_limit=self.settings.concurrency, max_size=None)
        self.blocks = blocks
        return blocks

    def launch(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, share: bool = False,
               block: bool = True) -> str:
        """Serve the page; returns its local URL (``block=False``: at once, serving in the background)."""
        import gradio as gr

        blocks = self.blocks or self.build()
        from avbridge.apps.demo import bundled_examples_dir

        self.folders.start()
        system = ["ui-sans-serif", "system-ui", "sans-serif"]
        theme = gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])
        _, url, _ = blocks.launch(
            server_name=host,
            server_port=port,
            share=share,
            prevent_thread_lock=not block,
            quiet=True,
            show_error=False,
            allowed_paths=[str(self.root), str(bundled_examples_dir())],
            max_file_size=int(self.settings.limits.max_upload_mb * 1e6),
            theme=theme,
        )
        return url

    def close(self) -> None:
        """Stop serving, stop the sweeper and remove the app's own temporary folder."""
        import shutil

        if self.blocks is not None:
            self.blocks.close()
        self.folders.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------- command line


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port nobody listens on now (for tests and the load check)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def add_parser(subparsers: Any) -> None:
    """Add ``avbridge app`` to the CLI."""
    from avbridge.apps import cli

    p = subparsers.add_parser(
        "app",
        help="start the web app: every task in the browser, guided beside vanilla",
        description="Starts a Gradio web page with one tab per task (V2A, I2A, A2V, A2I, Joint). Each "
        "request runs guided and, to compare, vanilla with the same seed, and shows players, frames and "
        "spectrograms, the binder loss per step, timings and downloads. The models load once at "
        "start-up; requests queue. Serves on 127.0.0.1 only unless --host says otherwise.",
        formatter_class=cli._Formatter,
    )
    p.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    p.add_argument("--share", action="store_true",
                   help="also open a public gradio.live link (off unless asked; needs internet)")
    p.add_argument("--concurrency", type=int, default=None, metavar="N",
                   help="requests that run at once; the others wait in the queue "
                   "(default: 1, one per device)")
    p.add_argument("--max-upload-mb", type=float, default=Limits.max_upload_mb, metavar="MB",
                   help="largest upload accepted")
    p.add_argument("--max-duration", type=float, default=Limits.max_duration_s, metavar="S",
                   help="longest input (and longest i2a/joint output) in seconds")
    p.add_argument("--keep-minutes", type=float, default=30.0, metavar="MIN",
                   help="each request's files are removed this long after the request")
    p.add_argument("--tmp-dir", metavar="DIR",
                   help="folder for the requests' files (default: a new folder in the system's temp dir, "
                   "removed on exit)")
    cli._add_model_options(p)
    p.set_defaults(func=run)


def start_app(args: argparse.Namespace) -> WebApp:
    """Check the options, load the models once and build the page (not yet serving)."""
    from avbridge.apps import cli

    if not 0 < args.port < 65536:
        raise AvbridgeError(f"--port must be in 1..65535, got {args.port}")
    concurrency = 1 if args.concurrency is None else args.concurrency
    if concurrency < 1:
        raise AvbridgeError(f"--concurrency must be at least 1, got {concurrency}")
    if args.max_upload_mb <= 0 or args.max_duration <= 0 or args.keep_minutes <= 0:
        raise AvbridgeError("--max-upload-mb, --max-duration and --keep-minutes must be positive")
    root = None
    if args.tmp_dir:
        root = Path(args.tmp_dir)
        if root.exists() and not root.is_dir():
            raise AvbridgeError(f"{root}: --tmp-dir exists and is not a folder")
    device = cli.resolve_device(args.device)
    sources = (args.audio_model, args.video_model, args.image_model, args.binder)
    note = None
    if args.preset == "tiny-random" and all(s is None for s in sources):
        note = "tiny random models: the outputs are noise (for tests)"
    from avbridge import loading

    t0 = time.perf_counter()
    components = loading.load_components(
        args.preset, audio_model=args.audio_model, video_model=args.video_model, image_model=args.image_model,
        binder=args.binder, captioner=args.captioner, device=device, dtype=cli._dtype(args.dtype),
    )
    print(f"avbridge app: models of preset {args.preset} loaded in {time.perf_counter() - t0:.1f}s",
          file=sys.stderr)
    settings = AppSettings(
        preset=args.preset,
        guidance_preset=cli.config_preset(args),
        device=device,
        limits=Limits(args.max_upload_mb, args.max_duration),
        keep_s=args.keep_minutes * 60,
        concurrency=concurrency,
        root=root,
        note=note,
    )
    app = WebApp(components, settings)
    app.build()
    return app


def run(args: argparse.Namespace) -> int:
    """``avbridge app``: serve until Ctrl-C or SIGTERM (both remove the app's temporary folder)."""
    import signal

    app = start_app(args)

    def _stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        print(f"avbridge app: serving on http://{args.host}:{args.port} (Ctrl-C stops)", file=sys.stderr)
        app.launch(args.host, args.port, share=args.share, block=True)
    finally:
        app.close()
    return 0
