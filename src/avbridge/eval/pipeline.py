"""The two-stage evaluation: inputs (folder or manifest), feature cache, metrics.

Stage 1 (:func:`extract_stage`) reads each file once and stores every extractor's
outputs in a cache keyed by (file content SHA-256, extractor name, extractor
version): editing a file changes its hash, so its stale entry is never used.
AV-Align intermediates (flow series, onsets) are cached the same way.
Stage 2 (:func:`metrics_stage`) reads only the cache and computes per-sample and
per-group metrics.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from avbridge.errors import AvbridgeError, MediaError
from avbridge.eval import av_align as ava
from avbridge.eval import metrics as M
from avbridge.eval.binder_scores import align_bind_scores, ib_score
from avbridge.eval.extractors import BinderExtractor, FeatureExtractor, accepts, extract_outputs

AUDIO_EXTS = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".m4a", ".aac"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif", ".m4v"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
MEDIA_EXTS = AUDIO_EXTS | VIDEO_EXTS | IMAGE_EXTS
MANIFEST_FIELDS = ("generated", "condition", "reference", "prompt", "group")


def file_modality(path: Path) -> str:
    """ "audio", "video" or "image" from the file extension."""
    ext = path.suffix.lower()
    if ext in AUDIO_EXTS:
        return "audio"
    if ext in VIDEO_EXTS:
        return "video"
    if ext in IMAGE_EXTS:
        return "image"
    raise MediaError(path, f"unsupported file type {ext!r} (expected audio, video or image)")


@dataclass
class EvalItem:
    """One generated output with its optional condition, reference, prompt and group."""

    generated: Path
    condition: Path | None = None
    reference: Path | None = None
    prompt: str | None = None
    group: str = "all"
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = f"{self.group}/{self.generated.stem}" if self.group != "all" else self.generated.stem

    def files(self) -> list[Path]:
        return [p for p in (self.generated, self.condition, self.reference) if p is not None]


# --------------------------------------------------------------------------- inputs


def _opt(v: Any) -> str | None:
    return None if v is None or str(v).strip() == "" else str(v).strip()


def load_manifest(path: str | Path) -> list[EvalItem]:
    """Read a CSV (header row) or JSONL manifest with columns generated, condition, reference,
    prompt, group. Relative paths are relative to the manifest's folder."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(path, "manifest not found")
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise MediaError(path, f"line {n}: not JSON ({exc.msg})") from exc
    elif path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    else:
        raise MediaError(path, "manifest must be .csv or .jsonl")
    items = []
    for n, row in enumerate(rows, start=1):
        unknown = set(row) - set(MANIFEST_FIELDS) - {"id"}
        if unknown:
            raise MediaError(path, f"row {n}: unknown columns {sorted(unknown)}; known: {MANIFEST_FIELDS}")
        gen = _opt(row.get("generated"))
        if gen is None:
            raise MediaError(path, f"row {n}: no 'generated' file")

        def resolve(v: Any) -> Path | None:
            v = _opt(v)
            return None if v is None else (path.parent / v if not Path(v).is_absolute() else Path(v))

        items.append(
            EvalItem(
                generated=resolve(gen),  # type: ignore[arg-type]
                condition=resolve(row.get("condition")),
                reference=resolve(row.get("reference")),
                prompt=_opt(row.get("prompt")),
                group=_opt(row.get("group")) or "all",
                id=_opt(row.get("id")) or "",
            )
        )
    if not items:
        raise MediaError(path, "manifest has no rows")
    return items


def _media_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_EXTS)


def _match_by_stem(gen: Path, folder: Path | None, what: str) -> Path | None:
    if folder is None:
        return None
    hits = [p for p in _media_files(folder) if p.stem == gen.stem]
    if not hits:
        raise MediaError(gen, f"no {what} with the same name in {folder}")
    if len(hits) > 1:
        raise MediaError(gen, f"several {what} files match by name in {folder}: {[h.name for h in hits]}")
    return hits[0]


def items_from_folder(
    folder: str | Path, conditions: str | Path | None = None, references: str | Path | None = None
) -> list[EvalItem]:
    """Every media file in ``folder`` is a generated output; subfolders are groups
    (e.g. ``guided/`` and ``vanilla/``). Conditions/references pair by file stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MediaError(folder, "input folder not found")
    cond = Path(conditions) if conditions else None
    ref = Path(references) if references else None
    for d in (cond, ref):
        if d is not None and not d.is_dir():
            raise MediaError(d, "folder not found")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and _media_files(p))
    groups = [(d.name, _media_files(d)) for d in subdirs] or [("all", _media_files(folder))]
    items = [
        EvalItem(g, _match_by_stem(g, cond, "condition"), _match_by_stem(g, ref, "reference"), group=name)
        for name, files in groups
        for g in files
    ]
    if not items:
        raise MediaError(folder, "no audio, video or image files found")
    return items


def validate_items(items: Sequence[EvalItem]) -> None:
    """Missing files and mismatched pairs are errors naming the file."""
    for it in items:
        for p in it.files():
            if not p.is_file():
                raise MediaError(p, "file not found")
            file_modality(p)
        if it.reference is not None:
            g, r = file_modality(it.generated), file_modality(it.reference)
            if g != r:
                raise MediaError(
                    it.reference,
                    f"mismatched pair: reference is {r} but generated {it.generated.name} is {g}",
                )
        if it.condition is not None and it.condition.resolve() == it.generated.resolve():
            raise MediaError(it.generated, "generated file is also given as its own condition")
    ids = [it.id for it in items]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise AvbridgeError(f"duplicate sample ids {dup[:5]}: give each row a distinct 'id'")


# --------------------------------------------------------------------------- cache


def content_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:80] or "_"


class FeatureCache:
    """Per-file extractor outputs on disk: ``root/<extractor>/<version>/<sha[:2]>/<sha>.npz``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._hashes: dict[Path, str] = {}

    def key(self, path: Path) -> str:
        p = path.resolve()
        if p not in self._hashes:
            self._hashes[p] = content_hash(p)
        return self._hashes[p]

    def entry(self, digest: str, name: str, version: str, suffix: str = ".npz") -> Path:
        return self.root / _slug(name) / _slug(version) / digest[:2] / f"{digest}{suffix}"

    def load(self, entry: Path) -> dict[str, np.ndarray] | None:
        if not entry.is_file():
            return None
        with np.load(entry) as z:
            return {k: z[k] for k in z.files}

    def save(self, entry: Path, arrays: Mapping[str, np.ndarray]) -> None:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_suffix(".tmp.npz")
        # numpy's stub types **kwds against allow_pickle: bool too; the keys here are array names
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        tmp.replace(entry)


def text_digest(text: str) -> str:
    return hashlib.sha256(("text:" + text).encode()).hexdigest()


@dataclass
class Stage1Stats:
    computed: int = 0
    cached: int = 0
    log: list[str] = field(default_factory=list)


_MEDIA_MEMO: dict[tuple[Path, str], Any] = {}


def _read(path: Path, digest: str) -> Any:
    """Decode a file once per stage run (several extractors read the same file)."""
    from avbridge.io.media import read_media

    key = (path.resolve(), digest)
    if key not in _MEDIA_MEMO:
        if len(_MEDIA_MEMO) >= 8:
            _MEDIA_MEMO.pop(next(iter(_MEDIA_MEMO)))
        _MEDIA_MEMO[key] = read_media(path)
    return _MEDIA_MEMO[key]


def _features_for(
    cache: FeatureCache, ex: FeatureExtractor, path: Path, stats: Stage1Stats, compute: bool
) -> dict[str, np.ndarray] | None:
    entry = cache.entry(cache.key(path), ex.name, ex.version)
    got = cache.load(entry)
    if got is not None:
        stats.cached += 1
        return got
    if not compute:
        raise AvbridgeError(f"{path}: no cached {ex.name} features; run the extract stage first")
    media = _read(path, cache.key(path))
    if not accepts(ex, media):
        return None
    try:
        out = extract_outputs(ex, media)
    except MediaError as exc:
        if exc.path is None:
            raise MediaError(path, exc.problem) from exc
        raise
    cache.save(entry, out)
    stats.computed += 1
    stats.log.append(f"{ex.name}: {path}")
    return out


def _text_features(
    cache: FeatureCache, ex: FeatureExtractor, text: str, stats: Stage1Stats, compute: bool
) -> dict[str, np.ndarray] | None:
    if ex.modality not in ("any", "text"):
        return None
    entry = cache.entry(text_digest(text), ex.name, ex.version)
    got = cache.load(entry)
    if got is not None:
        stats.cached += 1
        return got
    if not compute:
        raise AvbridgeError(f"prompt {text!r}: no cached {ex.name} features; run the extract stage first")
    out = extract_outputs(ex, text)
    cache.save(entry, out)
    stats.computed += 1
    return out


def av_align_sources(item: EvalItem) -> tuple[Path, Path | None] | None:
    """(video file, audio file or None = the video's own track) for AV-Align, or None if n/a.

    A generated video uses its sibling ``.wav`` if present (the original script's
    convention), else an audio condition, else its own soundtrack.
    """
    g = file_modality(item.generated)
    c = file_modality(item.condition) if item.condition is not None else None
    if g == "video":
        wav = item.generated.with_suffix(".wav")
        if wav.is_file():
            return item.generated, wav
        if c == "audio":
            return item.generated, item.condition
        return item.generated, None
    if g == "audio" and c == "video":
        return item.condition, item.generated  # type: ignore[return-value]
    return None


def av_align_version() -> str:
    import cv2
    import librosa

    # librosa's lazy-loader __init__.pyi does not declare __version__ (present at runtime)
    return f"librosa{librosa.__version__}-opencv{cv2.__version__}"  # type: ignore[attr-defined]


def _av_align_intermediates(
    cache: FeatureCache, item: EvalItem, stats: Stage1Stats, compute: bool
) -> dict[str, np.ndarray] | None:
    src = av_align_sources(item)
    if src is None:
        return None
    video, audio = src
    digest = hashlib.sha256(
        (cache.key(video) + ":" + (cache.key(audio) if audio is not None else "own-track")).encode()
    ).hexdigest()
    entry = cache.entry(digest, "av-align", av_align_version())
    got = cache.load(entry)
    if got is not None:
        stats.cached += 1
        return got
    if not compute:
        raise AvbridgeError(f"{video}: no cached AV-Align data; run the extract stage first")
    frames, fps = ava.read_bgr_frames(video)
    if len(frames) < 3:
        raise MediaError(video, f"too short for AV-Align: {len(frames)} frames (needs >= 3)")
    if audio is not None:
        y, _ = ava.load_audio_librosa(audio)
    else:
        y, _ = ava.resample_like_librosa(*ava.decode_audio_track(video))
    frames_idx, times = ava.audio_onsets(y, ava.LIBROSA_SR)
    out = {
        "fps": np.array(fps),
        "flow": ava.flow_series(frames),
        "onset_frames": np.array(frames_idx, dtype=np.int64),
        "onset_times": np.array(times, dtype=np.float64),
    }
    cache.save(entry, out)
    stats.computed += 1
    return out


@dataclass
class SampleData:
    """Everything stage 2 needs for one item, read from the cache."""

    item: EvalItem
    feats: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)  # ex -> role -> arrays
    av_align: dict[str, np.ndarray] | None = None


def extract_stage(
    items: Sequence[EvalItem],
    cache: FeatureCache,
    extractors: Sequence[FeatureExtractor],
    *,
    av_align: bool = True,
    compute: bool = True,
) -> tuple[list[SampleData], Stage1Stats]:
    """Stage 1: fill the cache (``compute=False`` only reads it, failing on a missing entry)."""
    validate_items(items)
    names = [e.name for e in extractors]
    if len(set(names)) != len(names):
        raise AvbridgeError(f"extractor names must be distinct, got {names}")
    stats = Stage1Stats()
    data = []
    for it in items:
        sd = SampleData(it)
        for ex in extractors:
            roles: dict[str, dict[str, np.ndarray]] = {}
            for role, p in (
                ("generated", it.generated),
                ("condition", it.condition),
                ("reference", it.reference),
            ):
                if p is not None:
                    out = _features_for(cache, ex, p, stats, compute)
                    if out is not None:
                        roles[role] = out
            if it.prompt is not None:
                out = _text_features(cache, ex, it.prompt, stats, compute)
                if out is not None:
                    roles["prompt"] = out
            sd.feats[ex.name] = roles
        if av_align:
            sd.av_align = _av_align_intermediates(cache, it, stats, compute)
        data.append(sd)
    _MEDIA_MEMO.clear()
    return data, stats


# --------------------------------------------------------------------------- stage 2


@dataclass
class MetricOptions:
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    is_splits: int = 10
    seed: int = 0


def _sample_metrics(sd: SampleData, binder_names: Iterable[str]) -> dict[str, Any]:
    it = sd.item
    row: dict[str, Any] = {"id": it.id, "group": it.group, "generated": str(it.generated)}
    if sd.av_align is not None:
        fps = float(sd.av_align["fps"])
        times = [float(t) for t in sd.av_align["onset_times"]]
        for version in ava.VERSIONS:
            vp = ava.video_peaks(sd.av_align["flow"], fps, version)
            hits = ava.count_hits(times, vp, fps, version)
            try:
                row[f"AV-Align ({version})"] = ava.iou_score(len(times), len(vp), hits)
            except ava.AVAlignUndefinedError:
                row[f"AV-Align ({version})"] = None
                row["notes"] = "AV-Align undefined: no audio onsets and no video peaks"
            row[f"AV-Align hits ({version})"] = hits
            row[f"AV-Align video peaks ({version})"] = len(vp)
        row["AV-Align audio peaks"] = len(times)
    gen_mod = file_modality(it.generated)
    cond_mod = file_modality(it.condition) if it.condition is not None else None
    for name in binder_names:
        roles = sd.feats.get(name, {})
        emb: dict[str, np.ndarray] = {}
        if "generated" in roles:
            emb[gen_mod] = roles["generated"]["features"]
            if "audio_features" in roles["generated"]:
                emb["audio"] = roles["generated"]["audio_features"]
        if "condition" in roles and cond_mod is not None:
            emb.setdefault(cond_mod, roles["condition"]["features"])
        if "prompt" in roles:
            emb["text"] = roles["prompt"]["features"]
        for k, v in align_bind_scores(emb).items():
            row[f"{k} [{name}]"] = v
        if "generated" in roles and "condition" in roles:
            row[f"IB-score [{name}]"] = ib_score(
                roles["condition"]["features"], roles["generated"]["features"]
            )
    return row


def _set_metrics(
    samples: Sequence[SampleData], extractors: Sequence[FeatureExtractor], opts: MetricOptions
) -> tuple[dict[str, Any], dict[str, str]]:
    """Per-group distribution metrics for every non-binder extractor (and binders' features for FD)."""
    out: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for ex in extractors:
        pairs = [
            (s.feats[ex.name]["generated"], s.feats[ex.name]["reference"])
            for s in samples
            if "generated" in s.feats.get(ex.name, {}) and "reference" in s.feats.get(ex.name, {})
        ]
        gens = [s.feats[ex.name]["generated"] for s in samples if "generated" in s.feats.get(ex.name, {})]
        if not gens:
            continue
        # an audio extractor reads a video's soundtrack: its distance is an audio one (FAD)
        mod = "audio" if ex.modality == "audio" else file_modality(samples[0].item.generated)
        fd_name = {"audio": "FAD", "video": "FVD"}.get(mod, "FD")
        kd_name = {"video": "KVD"}.get(mod, "KID")
        tag = f"[{ex.name}]"
        if pairs:
            g = np.stack([p[0]["features"] for p in pairs])
            r = np.stack([p[1]["features"] for p in pairs])
            if len(pairs) >= 2:
                out[f"{fd_name} {tag}"] = M.frechet_distance(g, r)
                kid = M.kernel_distance(g, r, opts.kid_subset_size, opts.kid_subsets, opts.seed)
                out[f"{kd_name} {tag}"], out[f"{kd_name} std {tag}"] = kid
            else:
                skipped[f"{fd_name}/{kd_name} {tag}"] = "needs at least 2 generated/reference pairs"
            if all("probabilities" in p[0] and "probabilities" in p[1] for p in pairs):
                kl = M.kl_paired(
                    np.stack([p[0]["probabilities"] for p in pairs]),
                    np.stack([p[1]["probabilities"] for p in pairs]),
                )
                out[f"KL(ref||gen) {tag}"] = kl["kl_ref_gen"]
                out[f"KL(gen||ref) {tag}"] = kl["kl_gen_ref"]
            if all("probabilities_sigmoid" in p[0] and "probabilities_sigmoid" in p[1] for p in pairs):
                kl = M.kl_paired(
                    np.stack([p[0]["probabilities_sigmoid"] for p in pairs]),
                    np.stack([p[1]["probabilities_sigmoid"] for p in pairs]),
                )
                out[f"KL_sigmoid(ref||gen) {tag}"] = kl["kl_ref_gen"]
        if all("probabilities" in g for g in gens):
            splits = max(1, min(opts.is_splits, len(gens)))
            mean, std = M.inception_score(np.stack([g["probabilities"] for g in gens]), splits=splits)
            out[f"ISc {tag}"], out[f"ISc std {tag}"] = mean, std
    return out, skipped


def metrics_stage(
    data: Sequence[SampleData],
    extractors: Sequence[FeatureExtractor],
    opts: MetricOptions | None = None,
    guidance_binder: str | None = None,
) -> dict[str, Any]:
    """Stage 2: per-sample rows and per-group metrics (means of per-sample scores + set metrics)."""
    opts = opts or MetricOptions()
    binder_names = [e.name for e in extractors if isinstance(e, BinderExtractor)]
    if guidance_binder is not None and guidance_binder not in binder_names:
        raise AvbridgeError(
            f"--guidance-binder {guidance_binder!r} is not among the scoring binders {binder_names}"
        )
    rows = [_sample_metrics(sd, binder_names) for sd in data]
    groups: dict[str, dict[str, Any]] = {}
    for g in dict.fromkeys(sd.item.group for sd in data):
        members = [sd for sd in data if sd.item.group == g]
        grows = [r for r in rows if r["group"] == g]
        res: dict[str, Any] = {"n": len(members)}
        keys = [
            k
            for k in dict.fromkeys(k for r in grows for k in r)
            if k not in ("id", "group", "generated", "notes")
        ]
        for k in keys:
            vals = [r[k] for r in grows if isinstance(r.get(k), (int, float)) and r.get(k) is not None]
            if vals and ("hits" not in k and "peaks" not in k):
                res[k] = float(np.mean(vals))
        setm, skipped = _set_metrics(
            members, [e for e in extractors if not isinstance(e, BinderExtractor)], opts
        )
        res.update(setm)
        if skipped:
            res["skipped"] = skipped
        groups[g] = res
    return {
        "samples": rows,
        "groups": groups,
        "guidance_binder": guidance_binder,
        "extractors": {e.name: e.version for e in extractors},
        "av_align_labels": ava.LABELS,
    }
