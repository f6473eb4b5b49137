"""The world's guided tasks with a guidance decoder vs with the VAE, on the same clips.

Loads the world models once with guidance decoders attached (``--decoder``: a folder
written by ``avbridge distill-decoder``, for the audio model or the video/image models;
default the shipped ones), then runs
``avbridge.world.bench.run_bench`` twice over the same clips and seeds at the shipped
settings, ``guidance_decoder`` off and on, and prints both summaries and the differences
(the decoder is shipped only when sync and class stay within 0.03 on validation clips).

    python benchmarks/world_guidance_decoder.py --decoder runs/guidance_decoder_audio --n 20 --split val
    python benchmarks/world_guidance_decoder.py --decoder runs/guidance_decoder_video --tasks a2v --n 50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", default="auto", help="guidance decoder folder (default: the shipped one)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--tasks", default="v2a")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="vae,guidance_decoder",
                    help="which guided runs: vae, guidance_decoder or both (the default)")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", dest="overrides",
                    help="replace an AlignConfig field in both runs, e.g. --set clip_fraction=0.25")
    ap.add_argument("--json", default=None, metavar="FILE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from avbridge.loading import load_components
    from avbridge.tasks import TASKS
    from avbridge.world.bench import format_table, parse_overrides, run_bench

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    need = sorted({g for t in tasks for g in TASKS[t].needs})
    comps = load_components("world", need=need, guidance_decoder=args.decoder)
    missing = [g for g in need if getattr(getattr(comps, g), "guidance_decoder", None) is None]
    if missing:
        raise SystemExit(f"no {', '.join(missing)} guidance decoder from {args.decoder!r}")
    out = {}
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    extra = parse_overrides(args.overrides)
    for name, on in (("vae", False), ("guidance_decoder", True)):
        if name not in runs:
            continue
        t0 = time.perf_counter()
        res = run_bench(args.n, tasks, components=comps, split=args.split, variants=("shipped",),
                        overrides={**extra, "guidance_decoder": on}, log=None)
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        out[name] = res
        print(f"== guided with the {name} ({res['wall_s']} s)")
        print(format_table(res))
    diff = {}
    for task in tasks if len(out) == 2 else ():
        a = out["vae"]["summary"][task]["shipped"]
        b = out["guidance_decoder"]["summary"][task]["shipped"]
        diff[task] = {m: round(b[m][0] - a[m][0], 4) for m in ("sync_f1", "class_acc") if m in a and m in b}
    print("guidance decoder minus VAE:", diff)
    if args.json:
        keep = {k: {f: v[f] for f in ("summary", "config", "wall_s")} for k, v in out.items()}
        doc = {"decoder": args.decoder, "overrides": extra, "diff": diff, **keep}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
