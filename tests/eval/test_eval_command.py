"""`avbridge eval`: two stages, cache invalidation, honest reporting, bad inputs."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest

pytest.importorskip("librosa")
pytest.importorskip("cv2")

from avbridge.errors import AvbridgeError, MediaError  # noqa: E402
from avbridge.eval import add_parser, panns  # noqa: E402
from avbridge.eval.cli import load_items, run_eval  # noqa: E402
from avbridge.eval.extractors import BinderExtractor  # noqa: E402
from avbridge.eval.pipeline import EvalItem, FeatureCache, extract_stage, load_manifest  # noqa: E402
from avbridge.io.media import Audio, Video, write_audio, write_video  # noqa: E402
from avbridge.models.binders.imagebind import ImageBindBinder  # noqa: E402

from .eval_fakes import FixedBinder, tiny_panns_extractor  # noqa: E402

CLIPS = [
    "01_aligned_clicks_10fps_16k",
    "05_shift_plus150ms_10fps_16k",
    "12_double_onsets_10fps_16k",
    "09_silent_audio_motion_12fps_44k",
]


@pytest.fixture(scope="module")
def extractors():
    return [
        BinderExtractor(ImageBindBinder.from_preset("tiny", seed=0), "ib-guide"),
        BinderExtractor(FixedBinder(), "ib-other", version="fixed"),  # cheap second binder
        tiny_panns_extractor(),
    ]


@pytest.fixture()
def v2a_manifest(tmp_path, av_align_fixture):
    """V2A-style rows: generated audio (fixture wav), condition video (fixture mp4), reference audio."""
    clips = av_align_fixture / "clips"
    rows = []
    for i, name in enumerate(CLIPS):
        ref = CLIPS[(i + 1) % len(CLIPS)]
        rows.append(
            dict(
                generated=str(clips / f"{name}.wav"),
                condition=str(clips / f"{name}.mp4"),
                reference=str(clips / f"{ref}.wav"),
                prompt="clicks",
                group="guided" if i % 2 == 0 else "vanilla",
                id=name,
            )
        )
    m = tmp_path / "manifest.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return m


def test_two_stage_eval_report(tmp_path, v2a_manifest, extractors, av_align_fixture):
    items = load_manifest(v2a_manifest)
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    first = run_eval(items, out, extractors, cache_dir=cache, stage="extract")
    assert first["computed"] > 0
    res = run_eval(
        items,
        out,
        extractors,
        cache_dir=cache,
        stage="metrics",
        guidance_binder="ib-guide",
        options=None,
    )
    assert res["cache"]["computed"] == 0  # stage 2 read the cache only
    ref = json.loads((av_align_fixture / "reference_scores.json").read_text())["clips"]
    for row in res["samples"]:
        r = ref[f"{row['id']}.mp4"]
        assert row["AV-Align (fixed)"] == pytest.approx(r["score_fixed"], abs=1e-6)
        assert row["AV-Align (old)"] == pytest.approx(r["score_old"], abs=1e-6)
        for b in ("ib-guide", "ib-other"):
            assert -1 <= row[f"AV-align_bind [{b}]"] <= 1
            assert row[f"IB-score [{b}]"] == pytest.approx(100 * row[f"AV-align_bind [{b}]"])
    g = res["groups"]["guided"]
    assert g["n"] == 2
    expected = np.mean([ref[f"{c}.mp4"]["score_fixed"] for c in CLIPS[0::2]])
    assert g["AV-Align (fixed)"] == pytest.approx(expected, abs=1e-6)
    for key in (
        "FAD [panns-cnn14]",
        "KID [panns-cnn14]",
        "KL(ref||gen) [panns-cnn14]",
        "KL(gen||ref) [panns-cnn14]",
        "KL_sigmoid(ref||gen) [panns-cnn14]",
        "ISc [panns-cnn14]",
    ):
        assert np.isfinite(g[key]), key
    md = (out / "report.md").read_text()
    assert "| guided (n=2) | vanilla (n=2) |" in md
    flagged = [line for line in md.splitlines() if line.startswith("| AV-align_bind [ib-guide]")]
    assert flagged and "guidance binder" in flagged[0] and "AV-align_bind [ib-other]" in flagged[0]
    other_rows = [line for line in md.splitlines() if line.startswith("| AV-align_bind [ib-other]")]
    assert other_rows and "guidance binder" not in other_rows[0]
    assert json.loads((out / "results.json").read_text())["guidance_binder"] == "ib-guide"
    assert (out / "plots" / "distributions.png").stat().st_size > 1000
    assert len(list((out / "plots" / "sync").glob("*.png"))) == 4


def test_cache_invalidated_when_a_file_changes(tmp_path, extractors):
    rng = np.random.default_rng(0)
    a = tmp_path / "a.wav"
    b = tmp_path / "b.wav"
    write_audio(a, Audio((rng.standard_normal(16000) * 0.1).astype(np.float32), 16000))
    write_audio(b, Audio((rng.standard_normal(16000) * 0.1).astype(np.float32), 16000))
    items = [EvalItem(a, prompt="noise"), EvalItem(b)]
    cache = FeatureCache(tmp_path / "cache")
    ex = [extractors[2]]
    d1, s1 = extract_stage(items, cache, ex, av_align=False)
    assert (s1.computed, s1.cached) == (2, 0)
    d2, s2 = extract_stage(items, FeatureCache(tmp_path / "cache"), ex, av_align=False)
    assert (s2.computed, s2.cached) == (0, 2)
    np.testing.assert_array_equal(
        d1[0].feats["panns-cnn14"]["generated"]["features"],
        d2[0].feats["panns-cnn14"]["generated"]["features"],
    )
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    write_audio(a, Audio(tone.astype(np.float32), 16000))  # edit a
    d3, s3 = extract_stage(items, FeatureCache(tmp_path / "cache"), ex, av_align=False)
    assert (s3.computed, s3.cached) == (1, 1)
    assert s3.log == [f"panns-cnn14: {a}"]
    assert not np.allclose(
        d3[0].feats["panns-cnn14"]["generated"]["features"],
        d1[0].feats["panns-cnn14"]["generated"]["features"],
    )
    # a new extractor version is a new cache entry too
    ex2 = panns.PannsExtractor(extractors[2].model, version="other")
    _, s4 = extract_stage(items, FeatureCache(tmp_path / "cache"), [ex2], av_align=False)
    assert s4.computed == 2


def test_bad_inputs_name_the_file(tmp_path, extractors, av_align_fixture):
    clips = av_align_fixture / "clips"
    wav, mp4 = clips / f"{CLIPS[0]}.wav", clips / f"{CLIPS[0]}.mp4"
    cache = FeatureCache(tmp_path / "c")
    with pytest.raises(MediaError, match="missing.wav.*not found"):
        extract_stage([EvalItem(tmp_path / "missing.wav")], cache, [])
    with pytest.raises(MediaError, match=f"{mp4.name}.*mismatched pair"):
        extract_stage([EvalItem(wav, reference=mp4)], cache, [])
    # a 2-frame video is too short for AV-Align
    short = tmp_path / "short.mp4"
    write_video(
        short, Video(np.zeros((2, 32, 32, 3), np.uint8), 8.0, Audio(np.zeros(2000, np.float32), 16000))
    )
    with pytest.raises(MediaError, match="short.mp4.*too short for AV-Align"):
        extract_stage([EvalItem(short)], cache, [])
    # audio too short for PANNs
    tiny = tmp_path / "tiny.wav"
    write_audio(tiny, Audio(np.zeros(800, np.float32), 16000))
    with pytest.raises(MediaError, match="tiny.wav.*too short for panns"):
        extract_stage([EvalItem(tiny)], cache, [extractors[2]], av_align=False)
    # folder mode: a generated file without a same-named reference
    gen = tmp_path / "gen"
    refs = tmp_path / "refs"
    gen.mkdir()
    refs.mkdir()
    shutil.copy(wav, gen / "x.wav")
    with pytest.raises(MediaError, match="x.wav.*no reference"):
        load_items(gen, references=refs)
    bad = tmp_path / "m.csv"
    bad.write_text("generated,colour\nx.wav,red\n")
    with pytest.raises(MediaError, match="m.csv.*unknown columns"):
        load_manifest(bad)
    # stage 2 without stage 1
    with pytest.raises(AvbridgeError, match="run the extract stage first"):
        run_eval(
            [EvalItem(wav, condition=mp4)], tmp_path / "o", [], cache_dir=tmp_path / "empty", stage="metrics"
        )


def test_guidance_binder_alone_is_refused(tmp_path, extractors):
    a = tmp_path / "a.wav"
    write_audio(a, Audio((np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32), 16000))
    items = [EvalItem(a, prompt="noise")]
    with pytest.raises(AvbridgeError, match="no independent metric"):
        run_eval(items, tmp_path / "o", [extractors[0]], guidance_binder="ib-guide", av_align=False)
    with pytest.raises(AvbridgeError, match="not among the scoring binders"):
        run_eval(items, tmp_path / "o", [extractors[0]], guidance_binder="nope", av_align=False)


def test_cli_folder_mode(tmp_path, av_align_fixture):
    clips = av_align_fixture / "clips"
    gen = tmp_path / "gen"
    for group, names in (("guided", CLIPS[:1]), ("vanilla", CLIPS[2:3])):
        (gen / group).mkdir(parents=True)
        for n in names:
            shutil.copy(clips / f"{n}.mp4", gen / group / f"{n}.mp4")  # joint outputs: video + AAC track
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = tmp_path / "out"
    args = parser.parse_args(["eval", str(gen), "--out", str(out), "--binder", "ib=preset:tiny"])
    assert args.func(args) == 0
    res = json.loads((out / "results.json").read_text())
    ref = json.loads((av_align_fixture / "reference_scores.json").read_text())["clips"]
    for row in res["samples"]:
        name = row["id"].split("/")[-1]
        assert row["AV-Align (fixed)"] == pytest.approx(ref[f"{name}.mp4"]["score_fixed"], abs=1e-6)
        assert "AV-align_bind [ib]" in row
    assert set(res["groups"]) == {"guided", "vanilla"}
    assert (out / "report.md").is_file()
