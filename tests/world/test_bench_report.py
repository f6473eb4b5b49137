"""scripts/world_bench_report.py: paired gains and precision against chance on made-up rows."""

from __future__ import annotations

from conftest import load_script


def _load():
    return load_script("world_bench_report")


def _row(variant: str, seed: int, events: list[float], truth: list[float], sync: float) -> dict:
    return {"task": "v2a", "variant": variant, "seed": seed, "events": events,
            "truth_events": truth, "sync_f1": sync, "class_acc": 1.0}


def test_report_pairs_by_clip_and_scores_chance_on_the_next_clip():
    truths = {0: [1.0], 1: [3.0]}
    rows = [_row("vanilla", s, [2.0], t, 0.0) for s, t in truths.items()]
    rows += [_row("guided", s, list(t), t, 1.0) for s, t in truths.items()]
    text = _load().report(rows, tol=0.125)
    assert "| v2a | guided | 2 | 1.000" in text
    assert "guided - vanilla, sync_f1: +1.000 (s.e. 0.000, 2 paired clips)" in text
    # guided's events sit on their own clip's truth, never on the other clip's.
    assert "guided: precision 1.000 (chance 0.000)" in text
    assert "vanilla: precision 0.000 (chance 0.000)" in text
