"""Batch generation over a manifest: resumable, crash-consistent, shardable over processes.

``avbridge batch TASK --manifest FILE|DIR --out DIR`` runs one task over every item of a
CSV/JSONL manifest (columns ``id, input, prompt, seed, duration``) or over the media files
of a folder, writing one output per item (``OUT/<id>.<ext>``) and a results log.

Consistency rules (see docs/batch.md):

* every output is written atomically (temporary file + ``os.replace``), so an output that
  exists under its final name is complete;
* each process appends one JSON line per finished item to its own results shard
  ``OUT/results.r<rank>.jsonl`` and fsyncs it before starting the next item; shards are
  never rewritten, a torn last line (kill during the write) is ignored by readers;
* a rerun skips items whose output exists (resume) and items that failed before (unless
  ``--retry-failed``); temporary files of killed writes are removed;
* items are sharded by manifest index modulo the number of processes, and each item's seed
  is its manifest seed or a hash of (base seed, item id), so outputs do not depend on
  sharding, order or resumption;
* when a process finishes it merges all shards into ``OUT/results.jsonl`` (atomically,
  under a file lock); :func:`read_results` gives the same merged view at any time.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import json
import os
import re
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avbridge.errors import AvbridgeError
from avbridge.io import longform
from avbridge.io.media import (
    AUDIO_EXTS,
    IMAGE_EXTS,
    TMP_PREFIX,
    VIDEO_EXTS,
    Audio,
    Media,
    Video,
    atomic_path,
    ensure_not_input,
    mux_audio,
    read_audio,
    read_image,
    read_video,
    write_output,
)
from avbridge.presets import Settings, resolve_settings
from avbridge.tasks import TASKS as TASK_TABLE
from avbridge.tasks import check_condition

#: task -> (input kind or None, output kind, default output extension), from ``avbridge.tasks.TASKS``
TASKS: dict[str, tuple[str | None, str, str]] = {
    name: (spec.input_kind, spec.output_kind, next(iter(spec.outputs))) for name, spec in TASK_TABLE.items()
}

_INPUT_EXTS = {"video": VIDEO_EXTS, "image": IMAGE_EXTS, "audio": AUDIO_EXTS}
_ALLOWED_OUT = {
    "audio": (".wav", ".flac"),
    "video": (".mp4", ".gif"),
    "image": (".png", ".jpg", ".gif"),
}
RESULTS_NAME = "results.jsonl"
SHARD_GLOB = "results.r*.jsonl"
_ID_RE = re.compile(r"[^A-Za-z0-9._-]+")


# --------------------------------------------------------------------------- manifest


@dataclass
class Item:
    """One unit of work. ``error`` is set for a manifest row that cannot run (recorded as failed)."""

    index: int
    id: str
    input: Path | None = None
    prompt: str | None = None
    seed: int | None = None
    duration_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def derive_seed(base_seed: int, item_id: str) -> int:
    """A seed from (base seed, item id) only: independent of position, sharding and resumption."""
    h = hashlib.sha256(f"{int(base_seed)}:{item_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") % (2**31 - 1)


def safe_id(text: str) -> str:
    """An item id usable as a file name."""
    s = _ID_RE.sub("_", str(text).strip()).strip("._") or "item"
    return s[:150]


def _none_if_blank(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str) and not v.strip():
        return None
    return v


def _row_to_item(index: int, row: dict[str, Any], base: Path, where: str, task: str) -> Item:
    row = {str(k).strip().lower(): _none_if_blank(v) for k, v in row.items() if k is not None}
    problems = []
    inp = row.pop("input", None) or row.pop("path", None)
    input_path = None
    if inp is not None:
        input_path = Path(str(inp).strip()).expanduser()
        if not input_path.is_absolute():
            input_path = base / input_path
    raw_id = row.pop("id", None)
    if raw_id is None:
        raw_id = input_path.stem if input_path is not None else f"row{index + 1}"
    item_id = safe_id(str(raw_id))
    seed = row.pop("seed", None)
    if seed is not None:
        try:
            seed = int(str(seed).strip())
            if seed < 0:
                raise ValueError
        except ValueError:
            problems.append(f"seed {seed!r} is not a non-negative integer")
            seed = None
    dur = row.pop("duration", None) or row.pop("duration_s", None)
    if dur is not None:
        try:
            dur = float(str(dur).strip())
            if not (dur > 0):
                raise ValueError
        except ValueError:
            problems.append(f"duration {dur!r} is not a positive number")
            dur = None
    prompt = row.pop("prompt", None)
    prompt = None if prompt is None else str(prompt)
    in_kind = TASKS[task][0]
    if in_kind is not None and input_path is None:
        problems.append("no input file given")
    if task == "joint" and not prompt:
        problems.append("joint generation needs a prompt")
    err = f"{where}: " + "; ".join(problems) if problems else None
    return Item(index, item_id, input_path, prompt, seed, dur, row, err)


def load_manifest(source: str | Path, task: str) -> list[Item]:
    """Items of a CSV (header row) or JSONL manifest, or of the media files in a folder.

    Relative input paths are relative to the manifest's folder. Folder items are the files
    whose extension fits the task's input kind, sorted by name; their id is the file stem.
    Whole-manifest problems (missing, empty, duplicate ids) raise AvbridgeError; problems of
    one row become that item's ``error`` so that the rest of the run goes on.
    """
    if task not in TASKS:
        raise AvbridgeError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    src = Path(source)
    items: list[Item] = []
    if src.is_dir():
        kind = TASKS[task][0]
        if kind is None:
            raise AvbridgeError(
                f"{src}: task {task} has no input files; give a CSV/JSONL manifest of prompts"
            )
        files = sorted(
            f
            for f in src.iterdir()
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in _INPUT_EXTS[kind]
        )
        items = [Item(i, safe_id(f.stem), f) for i, f in enumerate(files)]
        stems = [it.id for it in items]
        if len(set(stems)) != len(stems):
            # Same stem, different extensions: keep them apart with the extension in the id.
            items = [Item(i, safe_id(f.name), f) for i, f in enumerate(files)]
    elif src.is_file():
        base = src.parent
        try:
            text = src.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise AvbridgeError(f"{src}: cannot read manifest ({e})") from None
        if src.suffix.lower() in (".jsonl", ".ndjson", ".json"):
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                where = f"{src.name} line {lineno}"
                try:
                    row = json.loads(line)
                    if not isinstance(row, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    items.append(Item(len(items), f"line{lineno}", error=f"{where}: bad JSON ({e})"))
                    continue
                items.append(_row_to_item(len(items), row, base, where, task))
        elif src.suffix.lower() in (".csv", ".tsv"):
            reader = csv.DictReader(
                io.StringIO(text), delimiter="\t" if src.suffix.lower() == ".tsv" else ","
            )
            if not reader.fieldnames:
                raise AvbridgeError(f"{src}: empty manifest (no header row)")
            for row in reader:
                where = f"{src.name} line {reader.line_num}"
                items.append(_row_to_item(len(items), row, base, where, task))
        else:
            raise AvbridgeError(f"{src}: manifest must be .csv, .tsv, .jsonl or a folder")
    else:
        raise AvbridgeError(f"{src}: manifest not found")
    if not items:
        raise AvbridgeError(f"{src}: no items to process")
    seen: dict[str, int] = {}
    for it in items:
        if it.id in seen:
            raise AvbridgeError(
                f"{src}: duplicate item id {it.id!r} (items {seen[it.id] + 1} and {it.index + 1})"
            )
        seen[it.id] = it.index
    return items


def shard(items: list[Item], rank: int, world_size: int) -> list[Item]:
    """The items of process ``rank``: manifest index modulo ``world_size``."""
    return [it for it in items if it.index % world_size == rank]


# --------------------------------------------------------------------------- results log


def _shard_path(out_dir: Path, rank: int) -> Path:
    return out_dir / f"results.r{rank}.jsonl"


class ResultsLog:
    """Append-only JSONL log of one process; each record is flushed and fsynced before returning."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "ab")
        # A kill during the previous append may have left a torn line: end it so it stays alone.
        if self._fh.tell() > 0:
            with open(path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self._write(b"\n")

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def append(self, record: dict[str, Any]) -> None:
        self._write((json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode())

    def close(self) -> None:
        self._fh.close()


def _iter_records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        data = path.read_bytes()
    except OSError:
        return
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # torn write of a killed process
        if isinstance(rec, dict) and "id" in rec and "status" in rec:
            yield rec


def read_results(out_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Merged view of all result shards: per item id, its latest done/failed record.

    ``skipped`` records (a rerun passing over an item) never hide the record that decided
    the item's state. Records are ordered by their ``finished_at`` time.
    """
    out = Path(out_dir)
    records = [r for p in sorted(out.glob(SHARD_GLOB)) for r in _iter_records(p)]
    records.sort(key=lambda r: r.get("finished_at", 0.0))
    merged: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["status"] == "skipped" and r["id"] in merged:
            continue
        merged[r["id"]] = r
    return merged


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def merge_results(out_dir: str | Path, items: list[Item] | None = None) -> Path:
    """Write ``OUT/results.jsonl``: one line per item (manifest order), atomically, under a lock."""
    out = Path(out_dir)
    with _locked(out / ".results.lock"):
        merged = read_results(out)
        order = [it.id for it in items] if items is not None else sorted(merged)
        lines = []
        for item_id in order:
            rec = merged.get(item_id, {"id": item_id, "status": "pending"})
            lines.append(json.dumps(rec, sort_keys=True, ensure_ascii=False))
        dest = out / RESULTS_NAME
        with atomic_path(dest) as tmp:
            tmp.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return dest


# --------------------------------------------------------------------------- running


@dataclass
class BatchSettings:
    """Everything of a batch run except the items. ``models``: ``load_components`` keywords
    (model sources, guidance decoders and encoder); ``options``: AlignConfig fields set on
    top of the task's settings."""

    task: str
    out_dir: Path
    ext: str | None = None
    preset: str = "world"
    models: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    dtype: str = "float32"
    guided: bool = True
    base_seed: int = 0
    prompt: str | None = None
    duration_s: float | None = None
    steps: int | None = None
    window_s: float | None = None
    overlap_s: float = 1.0
    retry_failed: bool = False
    force: bool = False
    progress: bool = True
    max_duration_s: float = 3600.0

    @property
    def out_ext(self) -> str:
        ext = self.ext or TASKS[self.task][2]
        return ext if ext.startswith(".") else "." + ext


@dataclass
class Summary:
    """Counts of one process's run (or the merged view)."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    interrupted: bool = False
    wall_s: float = 0.0
    generate_s: float = 0.0

    @property
    def throughput(self) -> float:
        """Items finished per minute of wall time."""
        return 60.0 * self.done / self.wall_s if self.wall_s > 0 else 0.0

    def line(self) -> str:
        s = (
            f"done {self.done}, failed {self.failed}, skipped {self.skipped} in {self.wall_s:.1f} s "
            f"({self.throughput:.2f} items/min"
        )
        if self.done:
            s += f", {self.generate_s / self.done:.2f} s generation per item"
        return s + ")" + (" - interrupted" if self.interrupted else "")


def dist_context() -> tuple[int, int, Any]:
    """(rank, world size, device) from accelerate (``accelerate launch`` or torchrun env vars)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and "RANK" not in os.environ:
        return 0, 1, None  # single process: the registry picks the device
    import torch
    from accelerate import PartialState

    # Without a GPU accelerate only forms a multi-process (gloo) group when told cpu=True.
    state = PartialState(cpu=not torch.cuda.is_available())
    device = state.device
    if getattr(device, "type", "cpu") == "cpu":
        device = torch.device("cpu")
    return state.process_index, state.num_processes, device


def load_task_components(settings: BatchSettings, device: Any, load: Callable[..., Any] | None = None) -> Any:
    """Components of the preset and model options, loaded once per process with ``load``
    (default ``avbridge.loading.load_components``). ``settings.device`` wins over the
    process's accelerate device."""
    if load is None:
        from avbridge.loading import load_components

        load = load_components
    dev = settings.device or (None if device is None else str(device))
    if dev == "auto" or dev is None:
        import torch

        dev = "cuda" if torch.cuda.is_available() else "cpu"
    kwargs: dict[str, Any] = dict(settings.models, device=dev, need=TASK_TABLE[settings.task].needs)
    if settings.dtype != "float32":
        import torch

        kwargs["dtype"] = getattr(torch, settings.dtype)
    return load(settings.preset, **kwargs)


def _native_window(components: Any, output_kind: str) -> float | None:
    """The generator's native length (``window_s``) for the output modality, if it declares one."""
    for name in (f"{output_kind}_generator", output_kind, "generator"):
        gen = getattr(components, name, None)
        if gen is None and isinstance(components, dict):
            gen = components.get(name)
        w = getattr(gen, "window_s", None) if gen is not None else None
        if w:
            return float(w)
    return None


def task_settings(settings: BatchSettings) -> Settings:
    """The run's AlignConfig and where each value came from (``presets.resolve_settings``)."""
    return resolve_settings(
        settings.task, preset=settings.preset, steps=settings.steps, models=settings.models,
        options=settings.options,
    )


def _read_input(item: Item, kind: str, settings: BatchSettings) -> Media:
    assert item.input is not None
    if kind == "video":
        return read_video(item.input, max_duration_s=settings.max_duration_s)
    if kind == "audio":
        return read_audio(item.input, max_duration_s=settings.max_duration_s)
    return read_image(item.input)


def run_item(
    item: Item,
    settings: BatchSettings,
    components: Any,
    tasks: Any,
    config: Any,
    seed: int,
    window_s: float | None,
    timings: dict[str, float],
) -> Media:
    """Generate one item's output media (long inputs in windows)."""
    task = settings.task
    in_kind, out_kind, _ = TASKS[task]
    fn = getattr(tasks, task)
    prompt = item.prompt if item.prompt is not None else settings.prompt
    common = {"guided": settings.guided, "config": config}
    t0 = time.perf_counter()
    cond = _read_input(item, in_kind, settings) if in_kind is not None else None
    if cond is not None:
        check_condition(task, cond, str(item.input))
    timings["read_s"] = round(time.perf_counter() - t0, 4)

    t0 = time.perf_counter()
    if task in ("i2a", "a2i"):
        kwargs = dict(common, prompt=prompt, seed=seed)
        if task == "i2a" and (item.duration_s or settings.duration_s):
            kwargs["duration_s"] = item.duration_s or settings.duration_s
        out = fn(cond, components, **kwargs).media
    else:
        long_cond: Audio | Video | None = None  # joint has no input
        if task == "joint":
            total = item.duration_s or settings.duration_s or 2.0

            def gen(part, w, s):
                return fn(prompt, components, duration_s=w.duration_s, seed=s, **common).media
        else:
            assert isinstance(cond, (Audio, Video)), f"{task} reads audio or video"  # TASKS' input kind
            long_cond = cond
            total = cond.duration_s

            def gen(part, w, s):
                return fn(part, components, prompt=prompt, seed=s, **common).media

        out = longform.generate_windowed(
            gen,
            total_s=total,
            window_s=window_s,
            overlap_s=settings.overlap_s,
            seed=seed,
            output_kind=out_kind,
            cond=long_cond,
        )
    timings["generate_s"] = round(time.perf_counter() - t0, 4)
    if settings.out_ext == ".mp4" and isinstance(out, Audio) and isinstance(cond, Video):
        out = mux_audio(cond, out)  # v2a into .mp4: the input video with its new soundtrack
    return out


def _one_line(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM so that the run stops between consistent states."""


def _sweep_temps(out_dir: Path, names: set[str]) -> None:
    """Remove temporary files of killed atomic writes of this process's outputs."""
    for f in out_dir.glob(TMP_PREFIX + "*"):
        rest = f.name[len(TMP_PREFIX) :]
        if any(rest.startswith(n + ".") for n in names):
            with contextlib.suppress(OSError):
                f.unlink()


def run_batch(
    items: list[Item],
    settings: BatchSettings,
    *,
    rank: int = 0,
    world_size: int = 1,
    components: Any = None,
    device: Any = None,
    log: Callable[[str], None] | None = None,
    tasks: Any = None,
    load: Callable[..., Any] | None = None,
) -> Summary:
    """Run this process's shard of ``items``; returns its summary. See the module docstring.

    ``tasks`` holds the five task functions (default ``avbridge.tasks``) and ``load`` builds
    the components (default ``avbridge.loading.load_components``): tests pass fakes here."""
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    out_dir = settings.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    in_kind, out_kind, _ = TASKS[settings.task]
    ext = settings.out_ext
    allowed = _ALLOWED_OUT[out_kind] + ((".mp4",) if settings.task == "v2a" else ())
    if ext not in allowed:
        raise AvbridgeError(
            f"--ext {ext}: task {settings.task} makes {out_kind}; use one of {', '.join(allowed)}"
        )
    mine = shard(items, rank, world_size)
    _sweep_temps(out_dir, {it.id + ext for it in mine})
    previous = read_results(out_dir)

    summary = Summary()
    t_start = time.perf_counter()
    todo: list[tuple[Item, str | None]] = []
    results = ResultsLog(_shard_path(out_dir, rank))
    for it in mine:
        out_path = out_dir / (it.id + ext)
        prev = previous.get(it.id)
        reason = None
        if not settings.force:
            if out_path.exists():
                reason = "output exists"
            elif prev is not None and prev["status"] == "failed" and not settings.retry_failed:
                reason = "failed before (use --retry-failed)"
        todo.append((it, reason))

    if tasks is None:
        from avbridge import tasks
    resolved = task_settings(settings)
    if any(reason is None for _, reason in todo) and components is None:
        components = load_task_components(settings, device, load)
    window_s = settings.window_s
    if window_s is None and components is not None:
        window_s = _native_window(components, out_kind)

    old_handler = None
    with contextlib.suppress(ValueError):  # not the main thread

        def _on_term(signum, frame):
            raise _Terminated()

        old_handler = signal.signal(signal.SIGTERM, _on_term)

    bar = None
    n_work = sum(1 for _, r in todo if r is None)
    if settings.progress and n_work:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=n_work,
            desc=f"{settings.task}" + (f" [rank {rank}]" if world_size > 1 else ""),
            unit="item",
            position=rank if world_size > 1 else None,
            leave=True,
            dynamic_ncols=True,
        )
    try:
        for it, reason in todo:
            base = {
                "id": it.id,
                "index": it.index,
                "task": settings.task,
                "rank": rank,
                "world_size": world_size,
                "guided": settings.guided,
                "input": None if it.input is None else str(it.input),
                "output": it.id + ext,
            }
            if reason is not None:
                summary.skipped += 1
                prev = previous.get(it.id)
                if reason == "output exists" and (prev is None or prev["status"] != "done"):
                    # Killed between the output's rename and its log line: the output is complete
                    # (atomic write), so record it as done rather than redo it.
                    results.append(dict(base, status="done", recovered=True, finished_at=time.time()))
                else:
                    results.append(dict(base, status="skipped", reason=reason, finished_at=time.time()))
                continue
            seed = it.seed if it.seed is not None else derive_seed(settings.base_seed, it.id)
            rec = dict(base, seed=seed, started_at=time.time())
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            try:
                if it.error:
                    raise AvbridgeError(it.error)
                out_path = out_dir / (it.id + ext)
                ensure_not_input(out_path, [it.input])
                media = run_item(it, settings, components, tasks, resolved, seed, window_s, timings)
                t1 = time.perf_counter()
                write_output(out_path, media)
                timings["write_s"] = round(time.perf_counter() - t1, 4)
                rec.update(status="done", duration_s=_media_duration(media), settings=resolved.record())
                summary.done += 1
                summary.generate_s += timings.get("generate_s", 0.0)
            except Exception as e:  # a bad item must not stop the run
                rec.update(status="failed", error=_one_line(e))
                if not isinstance(e, AvbridgeError):
                    rec["traceback"] = traceback.format_exc(limit=4)[-2000:]
                summary.failed += 1
            timings["total_s"] = round(time.perf_counter() - t0, 4)
            rec.update(timings=timings, finished_at=time.time())
            results.append(rec)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(done=summary.done, failed=summary.failed, refresh=False)
    except (KeyboardInterrupt, _Terminated):
        summary.interrupted = True
    finally:
        if bar is not None:
            bar.close()
        results.close()
        if old_handler is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGTERM, old_handler)
        summary.wall_s = time.perf_counter() - t_start
    merge_results(out_dir, items)
    prefix = f"[rank {rank}/{world_size}] " if world_size > 1 else ""
    log(f"{prefix}{settings.task}: {summary.line()}")
    if not summary.interrupted:
        states = read_results(out_dir)
        counts = {
            s: sum(1 for it in items if states.get(it.id, {}).get("status") == s) for s in ("done", "failed")
        }
        pending = len(items) - counts["done"] - counts["failed"]
        log(
            f"{prefix}all items: {counts['done']} done, {counts['failed']} failed, {pending} pending "
            f"-> {out_dir / RESULTS_NAME}"
        )
    return summary


def _media_duration(media: Media) -> float | None:
    if isinstance(media, (Audio, Video)):
        return round(media.duration_s, 4)
    return None


# --------------------------------------------------------------------------- CLI


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``avbridge batch``."""
    p.add_argument("task", choices=list(TASKS), help="task to run on every item")
    p.add_argument(
        "--manifest",
        required=True,
        type=Path,
        help="CSV/TSV (header row) or JSONL manifest with columns id, input, prompt, seed, "
        "duration; or a folder whose media files are the inputs (id = file name stem). "
        "Relative inputs are relative to the manifest's folder.",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder: <id>.<ext> per item, results.r<rank>.jsonl logs, merged results.jsonl",
    )
    p.add_argument(
        "--ext",
        default=None,
        help="output format: .wav/.flac for audio tasks (v2a also .mp4: the input video with the "
        "new audio), .mp4/.gif for a2v and joint, .png/.jpg for a2i; default per task",
    )
    g = p.add_argument_group("models")
    g.add_argument(
        "--preset",
        default="world",
        help="model set: 'world' (shipped small models), 'tiny-random' (noise; for tests), 'paper'",
    )
    for name, what in (
        ("audio-model", "audio generator"),
        ("video-model", "video generator"),
        ("image-model", "image generator (a2i)"),
        ("binder", "binder (ImageBind)"),
    ):
        g.add_argument(
            f"--{name}", metavar="ID|DIR|PRESET", help=f"{what}: hub id, local folder or preset name"
        )
    g.add_argument(
        "--captioner",
        metavar="SPEC",
        action="append",
        help="captioner for items without a prompt (see `avbridge v2a --help`); may be repeated",
    )
    g.add_argument(
        "--device",
        default=None,
        help="torch device; default: the process's device under accelerate, else cuda if available",
    )
    g.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="weight and compute precision",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="base seed; an item without its own seed uses a hash of (base seed, item id)",
    )
    p.add_argument("--prompt", default=None, help="prompt for items whose manifest row has none")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="output duration in seconds where the task does not take it from the input "
        "(joint, i2a); a manifest 'duration' column overrides it",
    )
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the task's)")
    p.add_argument(
        "--no-guidance", action="store_true", help="vanilla baseline: same models and seeds, no aligner"
    )
    g = p.add_argument_group("guidance cost")
    g.add_argument(
        "--guidance-decoder", nargs="?", const="auto", metavar="auto|DIR",
        help="decode for the binder with small guidance decoders (as `avbridge v2a --guidance-decoder`)",
    )
    g.add_argument(
        "--guidance-encoder", nargs="?", const="auto", metavar="auto|DIR",
        help="embed guided audio with the binder's audio guidance encoder (as `avbridge v2a "
        "--guidance-encoder`)",
    )
    g.add_argument(
        "--guidance-dtype", choices=("bfloat16", "float16"),
        help="run the guidance branch under autocast in this dtype (as `avbridge v2a --guidance-dtype`)",
    )
    p.add_argument(
        "--window",
        dest="window_s",
        type=float,
        default=None,
        help="window length in seconds for long inputs (default: the generator's native "
        "window_s; inputs that fit are generated in one go)",
    )
    p.add_argument(
        "--overlap",
        dest="overlap_s",
        type=float,
        default=1.0,
        help="minimum overlap of consecutive windows in seconds, cross-faded when joining",
    )
    p.add_argument("--max-duration", type=float, default=3600.0, help="refuse inputs longer than this (s)")
    p.add_argument(
        "--retry-failed", action="store_true", help="run items that failed in an earlier run again"
    )
    p.add_argument("--force", action="store_true", help="regenerate every item, even those already done")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_from_args(
    args: argparse.Namespace, *, tasks: Any = None, load: Callable[..., Any] | None = None
) -> int:
    """Run ``avbridge batch`` from parsed arguments. Exit code: 0 all done, 1 some failed, 130 interrupted."""
    settings = BatchSettings(
        task=args.task,
        out_dir=args.out,
        models={
            k: getattr(args, k)
            for k in ("audio_model", "video_model", "image_model", "binder", "captioner", "guidance_decoder",
                      "guidance_encoder")
            if getattr(args, k) is not None
        },
        options={k: True for k in ("guidance_decoder", "guidance_encoder") if getattr(args, k) is not None}
        | ({"guidance_dtype": args.guidance_dtype} if args.guidance_dtype else {}),
        device=args.device,
        dtype=args.dtype,
        ext=args.ext,
        preset=args.preset,
        guided=not args.no_guidance,
        base_seed=args.seed,
        prompt=args.prompt,
        duration_s=args.duration,
        steps=args.steps,
        window_s=args.window_s,
        overlap_s=args.overlap_s,
        retry_failed=args.retry_failed,
        force=args.force,
        progress=not args.no_progress,
        max_duration_s=args.max_duration,
    )
    if args.overlap_s < 0 or (args.window_s is not None and args.overlap_s >= args.window_s):
        raise AvbridgeError(f"--overlap {args.overlap_s} must be >= 0 and shorter than --window")
    items = load_manifest(args.manifest, args.task)
    rank, world, device = dist_context()
    summary = run_batch(items, settings, rank=rank, world_size=world, device=device, tasks=tasks, load=load)
    if summary.interrupted:
        return 130
    return 1 if summary.failed else 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``batch`` on the CLI's subparsers; sets ``func(args) -> exit code``."""
    p = subparsers.add_parser(
        "batch",
        help="run a task over a manifest or folder (resumable, multi-process)",
        description=__doc__.split("\n\n")[0]
        + " Use `accelerate launch --num_processes N -m avbridge batch ...` "
        "to shard the items over N processes/GPUs.",
    )
    add_arguments(p)
    p.set_defaults(func=run_from_args)
    return p


def main(argv: list[str] | None = None, *, tasks: Any = None, load: Callable[..., Any] | None = None) -> int:
    """``python -m avbridge.apps.batch``: the batch command on its own (errors -> one line, exit 2).
    ``tasks`` and ``load`` as in :func:`run_batch`."""
    parser = argparse.ArgumentParser(prog="avbridge batch", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args, tasks=tasks, load=load)
    except AvbridgeError as e:
        print(f"avbridge: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
