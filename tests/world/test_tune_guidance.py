"""training/world/tune_guidance.py: the pick rules on made-up validation summaries."""

from __future__ import annotations

from training.world import tune_guidance


def _load():
    return tune_guidance


def _row(name: str, sync: float, cls: float) -> dict:
    return {"setting": {"name": name}, "variant": "per-clip",
            "summary": {"sync_f1": [sync, 0.0, 1.0], "class_acc": [cls, 0.0, 1.0]}}


VANILLA = {"sync_f1": [0.307, 0.0, 1.0], "class_acc": [0.95, 0.0, 1.0]}
# A2V's eighteenth-session validation figures: the best sum misses the class target
ROWS = [_row("before", 0.517, 0.94), _row("frame-mean", 0.495, 0.95), _row("lr 0.2", 0.483, 0.93),
        _row("small gain", 0.45, 0.97)]


def test_sum_rule_takes_the_best_sync_plus_class():
    mod = _load()
    assert mod.pick_best(ROWS, VANILLA, "sum", "a2v")["setting"]["name"] == "before"


def test_targets_rule_takes_the_best_sync_among_settings_meeting_the_targets():
    mod = _load()
    assert mod.pick_best(ROWS, VANILLA, "targets", "a2v")["setting"]["name"] == "frame-mean"
    # a gain under 0.15 (here +0.143) does not meet V2A/A2V's target, but does joint's
    assert not mod.meets_targets(ROWS[3]["summary"], VANILLA, "a2v")
    assert mod.meets_targets(ROWS[3]["summary"], VANILLA, "joint")
    assert mod.meets_targets(ROWS[1]["summary"], VANILLA, "a2v")
    # nothing meets them: falls back to the sum
    short = [r for r in ROWS if r["setting"]["name"] not in ("frame-mean", "small gain")]
    assert mod.pick_best(short, VANILLA, "targets", "a2v")["setting"]["name"] == "before"
    # the image tasks have no sync: the best class among those at least vanilla's
    img = [{"setting": {"name": n}, "variant": "guided", "summary": {"class_acc": [c, 0, 1]}}
           for n, c in (("a", 0.89), ("b", 0.91))]
    assert mod.pick_best(img, {"class_acc": [0.88, 0, 1]}, "targets", "a2i")["setting"]["name"] == "b"
