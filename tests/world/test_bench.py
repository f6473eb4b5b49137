"""`avbridge world bench`: metric plumbing on fakes, and a CI-sized real run on the shipped models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from avbridge.errors import AvbridgeError
from avbridge.io.media import Audio
from avbridge.world.bench import bootstrap_ci, format_table, score_output
from avbridge.world.evalmodels import WEIGHTS_DIR, EvalModels, Prediction
from avbridge.world.scene import render_clip, split_seeds


def test_bootstrap_ci_brackets_the_mean():
    m, lo, hi = bootstrap_ci([0.0, 1.0] * 50)
    assert m == 0.5 and lo < 0.5 < hi and hi - lo < 0.25
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    assert all(np.isnan(bootstrap_ci([])))


class _Oracle:
    """Stands in for the evaluation models: predicts one fixed truth."""

    def __init__(self, truth):
        self.truth = truth

    def _pred(self, n):
        from avbridge.world.evalmodels import HEADS

        onehot = {h: np.eye(len(v))[v.index(self.truth[h])] for h, v in HEADS.items()}
        return Prediction({h: np.tile(x, (n, 1)) for h, x in onehot.items()})

    def predict_audio(self, xs):
        return self._pred(len(xs))

    def predict_video(self, xs):
        return self._pred(len(xs))


def test_score_output_uses_truth_and_detectors():
    clip = render_clip(split_seeds("test", 1)[0])
    ev = _Oracle(clip.truth)
    right = score_output("v2a", clip, clip.audio, ev)
    assert right["sync_f1"] == 1.0 and right["class_acc"] == 1.0
    assert right["label_agreement"] == pytest.approx(1.0)
    silent = score_output("v2a", clip, Audio(np.zeros(64000, np.float32), 16000), ev)
    assert silent["sync_f1"] == 0.0
    a2v = score_output("a2v", clip, clip.video, ev)
    assert a2v["sync_f1"] == 1.0
    joint = score_output("joint", clip, clip.video, ev)
    assert joint["sync_f1"] == 1.0
    table = format_table({"summary": {"v2a": {"guided": {"sync_f1": [1.0, 0.9, 1.0], "n": 1}}}})
    assert "v2a" in table and "1.000" in table


def _world_ready() -> bool:
    from avbridge.apps.demo import world_models_available

    return world_models_available() and EvalModels.available()


@pytest.fixture(scope="module")
def ci_bench() -> dict:
    """The first 10 held-out clips, fewer steps than the full bench, same seeds for both runs;
    the default variants: vanilla and the shipped settings (``guidance.json``)."""
    if not _world_ready():
        pytest.skip("world models or evaluation classifiers not shipped yet")
    from avbridge.loading import load_components
    from avbridge.world.bench import run_bench

    comps = load_components("world", need=["audio"])
    res = run_bench(10, ("v2a",), components=comps, steps=10, log=None)
    s = res["summary"]["v2a"]
    return {"vanilla": s["vanilla"], "guided": s["shipped"], "rows": res["rows"]}


@pytest.mark.slow
def test_ci_bench_runs_and_scores_v2a(ci_bench: dict) -> None:
    assert ci_bench["guided"]["n"] == ci_bench["vanilla"]["n"] == 10
    assert (WEIGHTS_DIR / "card.json").is_file()
    for r in ci_bench["rows"]:
        assert 0.0 <= r["sync_f1"] <= 1.0 and r["class_acc"] in (0.0, 1.0)
        assert all(0.0 <= t <= 4.0 for t in r["events"])
    # guidance changed the outputs (same seeds): the guided runs are not the vanilla ones
    by = {}
    for r in ci_bench["rows"]:
        by.setdefault(r["seed"], []).append(r["events"])
    assert any(ev[0] != ev[-1] for ev in by.values())


@pytest.mark.slow
def test_ci_bench_guided_beats_vanilla_on_v2a_sync(ci_bench: dict) -> None:
    """Shipped models and settings at 10 steps (per-clip loss, lr 0.3, refine 0.3) place
    events better than vanilla on these 10 clips; V2A's own 30 steps have settings of their
    own (docs/world.md)."""
    assert ci_bench["guided"]["sync_f1"][0] > ci_bench["vanilla"]["sync_f1"][0], ci_bench["guided"]


def test_parse_overrides_types_and_errors():
    from avbridge.world.bench import parse_overrides

    got = parse_overrides(["update=norm-grad", "lr=0.3", "inner-steps=3", "recompute_eps=true",
                           "window=0:0.5", "weights.at=2", "weights.av=0.5"])
    assert got == {"update": "norm-grad", "lr": 0.3, "inner_steps": 3, "recompute_eps": True,
                   "window": (0.0, 0.5), "weights": {"at": 2.0, "av": 0.5}}
    from avbridge.align import AlignConfig
    from avbridge.align.losses import LossWeights

    assert AlignConfig(**got).weights == LossWeights(av=0.5, vt=1.0, at=2.0)
    cases = ((["lr=x"], "not a float"), (["nope=1"], "FIELD one of"), (["update=sgd"], "update"),
             (["window=0.1"], "START:STOP"), (["window=0.5:0.2"], "window must satisfy"),
             (["weights=1"], "cannot be set"),
             (["weights.xy=1"], "unknown loss weights"), (["weights.at=big"], "not a float"),
             (["per_clip=1"], "--variants"), (["lr"], "FIELD=VALUE"))
    for bad, msg in cases:
        with pytest.raises(AvbridgeError, match=msg):
            parse_overrides(bad)


@pytest.mark.slow
def test_bench_command_on_validation_clips_with_a_setting(tmp_path, capsys):
    if not _world_ready():
        pytest.skip("world models or evaluation classifiers not shipped yet")
    from avbridge.presets import world_models_dir
    from avbridge.world import main

    binder = tmp_path / "other-binder"
    shutil.copytree(world_models_dir() / "binder", binder)
    assert main(["bench", "--n", "1", "--tasks", "a2i", "--steps", "2", "--split", "val",
                 "--set", "update=norm-grad", "--set", "lr=0.02", "--binder", str(binder),
                 "--video-model", str(world_models_dir() / "animatediff"), "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["config"]["split"] == "val" and res["config"]["seeds"] == [1_000_000, 1_000_000]
    assert res["config"]["overrides"] == {"update": "norm-grad", "lr": 0.02}
    assert res["config"]["binder"] == str(binder)
    assert res["config"]["video_model"] == str(world_models_dir() / "animatediff")
    assert [r["variant"] for r in res["rows"]] == ["vanilla", "shipped"]
    assert res["settings"]["a2i"]["shipped"]["update"] == "norm-grad"
    assert res["settings"]["a2i"]["shipped"]["lr"] == 0.02
    assert main(["bench", "--n", "1", "--set", "lr=fast", "--out", str(tmp_path / "x")]) == 2
    assert "'fast' is not a float" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["bench", "--n", "1", "--tasks", "a2i", "--binder", str(tmp_path / "none"),
                 "--out", str(tmp_path / "y")]) == 2
    assert f"{tmp_path / 'none'}: no such file" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    assert main(["bench", "--n", "1", "--tasks", "v2a", "--audio-model", str(tmp_path / "no-audio"),
                 "--out", str(tmp_path / "z")]) == 2
    assert f"{tmp_path / 'no-audio'}" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


def test_variants_record_the_full_settings_they_ran(tiny_bench: dict) -> None:
    """Default variants: vanilla and exactly the shipped settings of each task, every
    AlignConfig field recorded; pooled / per-clip change per_clip only."""
    from dataclasses import asdict, fields

    from avbridge.align import AlignConfig
    from avbridge.presets import default_config

    res = tiny_bench["default"]
    assert [r["variant"] for r in res["rows"]] == ["vanilla", "shipped"]
    assert set(res["summary"]["v2a"]) == {"vanilla", "shipped"}
    shipped = default_config("v2a", preset="world", steps=1)
    rec = res["settings"]["v2a"]["shipped"]
    assert set(rec) == {f.name for f in fields(AlignConfig)}
    assert rec == json.loads(json.dumps(asdict(shipped)))
    assert res["settings"]["v2a"]["vanilla"]["per_clip"] is False
    both = tiny_bench["pooled+per-clip"]
    assert [r["variant"] for r in both["rows"]] == ["pooled", "per-clip"]
    assert both["settings"]["v2a"]["pooled"] == {**rec, "per_clip": False}
    assert both["settings"]["v2a"]["per-clip"] == {**rec, "per_clip": True}
    assert json.loads(json.dumps(both))["config"]["variants"] == ["pooled", "per-clip"]


@pytest.fixture(scope="module")
def tiny_bench() -> dict:
    """One clip of V2A at one step on tiny random models, default and extra variants."""
    from avbridge.loading import load_components
    from avbridge.world.bench import run_bench

    clip = render_clip(split_seeds("test", 1)[0])
    comps = load_components("tiny-random", need=["audio"], seed=0)
    ev = _Oracle(clip.truth)
    kw = dict(components=comps, evalmodels=ev, steps=1, log=None)
    return {"default": run_bench(1, ("v2a",), **kw),
            "pooled+per-clip": run_bench(1, ("v2a",), variants=("pooled", "per-clip"), **kw)}


def test_unknown_variant_is_an_error_before_anything_runs():
    from avbridge.world.bench import run_bench

    with pytest.raises(AvbridgeError, match="unknown variant.*guided.*choose from vanilla, shipped"):
        run_bench(1, ("v2a",), variants=("guided",), components=object(), evalmodels=object())


def test_per_clip_flag_adds_the_loss_variants(monkeypatch, tmp_path):
    from avbridge.world import bench, main

    seen = {}

    def fake(n, tasks, **kw):
        seen.update(kw)
        return {"config": {}, "settings": {}, "summary": {}, "rows": []}

    monkeypatch.setattr(bench, "run_bench", fake)
    assert main(["bench", "--n", "1", "--per-clip", "--out", str(tmp_path)]) == 0
    assert seen["variants"] == ["vanilla", "shipped", "pooled", "per-clip"]
    assert main(["bench", "--n", "1", "--variants", "per-clip", "--out", str(tmp_path)]) == 0
    assert seen["variants"] == ["per-clip"]


def test_guidance_decoder_option_loads_and_switches_on_the_world_decoders(tmp_path, capsys):
    """``--guidance-decoder``: the guided variant runs with the world's decoders attached and
    recorded; asking for them through --set with none loaded is an error, not a silent VAE."""
    if not _world_ready():
        pytest.skip("world models or evaluation classifiers not shipped yet")
    from avbridge.world import main
    from avbridge.world.bench import run_bench

    assert main(["bench", "--n", "1", "--tasks", "a2i", "--steps", "2", "--guidance-decoder",
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["config"]["guidance_decoder"] == "auto"
    assert res["settings"]["a2i"]["shipped"]["guidance_decoder"] is True
    assert res["settings"]["a2i"]["vanilla"]["guidance_decoder"] is True  # unused: no guided step
    with pytest.raises(AvbridgeError, match="no guidance decoder is loaded"):
        run_bench(1, ("a2i",), components=object(), evalmodels=object(),
                  overrides={"guidance_decoder": True})


def test_components_sampler_names_the_generators_one():
    from types import SimpleNamespace

    from avbridge.world.bench import components_sampler

    gen = SimpleNamespace
    assert components_sampler(SimpleNamespace(audio=None, video=None)) == "ddim"
    assert components_sampler(SimpleNamespace(audio=gen(sampler="dpm++"), video=None)) == "dpm++"
    with pytest.raises(AvbridgeError, match="different samplers"):
        components_sampler(SimpleNamespace(audio=gen(sampler="dpm++"), video=gen(sampler="ddim")))


def test_guidance_encoder_option_loads_and_switches_on_the_world_encoder(tmp_path):
    """``--guidance-encoder``: the guided variant runs with the world's audio guidance encoder
    on the binder, recorded; asking for it through --set with none loaded is an error."""
    if not _world_ready():
        pytest.skip("world models or evaluation classifiers not shipped yet")
    from types import SimpleNamespace

    from avbridge.world import main
    from avbridge.world.bench import run_bench

    assert main(["bench", "--n", "1", "--tasks", "v2a", "--steps", "2", "--guidance-encoder",
                 "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["config"]["guidance_encoder"] == "auto"
    assert res["settings"]["v2a"]["shipped"]["guidance_encoder"] is True
    with pytest.raises(AvbridgeError, match="no guidance encoder"):
        run_bench(1, ("v2a",), components=SimpleNamespace(binder=object()), evalmodels=object(),
                  overrides={"guidance_encoder": True})
