"""Print the training summary of the shipped world models as a markdown table.

    python scripts/world_models_table.py [src/avbridge/world/models]

Reads ``training.json`` (written by ``python -m training.world.train``) and the folder
sizes, for docs/world-models.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ORDER = ["audio-vae", "vocoder", "vocoder-gan", "audio-text", "audio-unet", "video-vae", "video-unet",
         "image", "binder", "binder-align", "binder-align-av", "captioner"]


def _brief(run: dict) -> str:
    """A replaced run (``init_run``, nested when a fine-tune was fine-tuned again) as its
    steps and commands."""
    out = f"{run.get('steps')} steps: {run.get('command')}"
    return out + (f" (from {_brief(run['init_run'])})" if "init_run" in run else "")


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[1] / "src/avbridge/world/models"
    data = json.loads((root / "training.json").read_text())
    print("| stage | steps | batch | lr | seed | clips | wall (s) | device | final losses | extra |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    skip = {"steps", "batch", "lr", "seed", "clips", "wall_s", "device", "final_losses", "command", "world"}
    for stage in ORDER + sorted(set(data) - set(ORDER)):
        if stage not in data:
            continue
        d = data[stage]
        losses = ", ".join(f"{k} {v:.4g}" for k, v in d.get("final_losses", {}).items()) or "-"
        extra = ", ".join(f"{k} {_brief(v) if k == 'init_run' else v}" for k, v in d.items() if k not in skip)
        print(f"| {stage} | {d['steps']} | {d.get('batch', '-')} | {d['lr']} | {d['seed']} | {d['clips']} | "
              f"{d['wall_s']} | {d['device']} | {losses} | {extra} |")
    print()
    total = 0
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        size = sum(f.stat().st_size for f in sub.rglob("*") if f.is_file())
        total += size
        print(f"- `{sub.name}/`: {size / 2**20:.2f} MiB")
    print(f"- total: {total / 2**20:.2f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
