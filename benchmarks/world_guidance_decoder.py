"""The world's guided tasks with guidance decoders / the audio guidance encoder vs without,
on the same clips.

Loads the world models once with guidance decoders attached (``--decoder``: a folder
written by ``avbridge distill-decoder``, for the audio model or the video/image models;
default the shipped ones) and the binder's audio guidance encoder (``--encoder``: a folder
written by ``avbridge distill-encoder``; default the shipped one), then runs
``avbridge.world.bench.run_bench`` over the same clips and seeds at the shipped settings
once per ``--runs`` entry: ``vae`` (neither), ``guidance_decoder``, ``encoder`` (the VAE
and the encoder), ``decoder+encoder``; prints each summary and the differences to ``vae``
(an option is kept only when sync and class stay within 0.03 on validation clips).

    python benchmarks/world_guidance_decoder.py --decoder runs/guidance_decoder_audio --n 20 --split val
    python benchmarks/world_guidance_decoder.py --decoder runs/guidance_decoder_video --tasks a2v --n 50
    python benchmarks/world_guidance_decoder.py --runs vae,encoder,guidance_decoder,decoder+encoder --n 50
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

#: Guided runs: (guidance decoder, audio guidance encoder).
RUNS = {"vae": (False, False), "guidance_decoder": (True, False), "encoder": (False, True),
        "decoder+encoder": (True, True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--decoder", default="auto", help="guidance decoder folder (default: the shipped one)")
    ap.add_argument("--encoder", default="auto",
                    help="audio guidance encoder folder (default: the shipped one; loaded when a run "
                    "needs it)")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--tasks", default="v2a")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", default="vae,guidance_decoder",
                    help="guided runs, comma-separated: vae, guidance_decoder, encoder, decoder+encoder "
                    "(default vae,guidance_decoder)")
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
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    bad = [r for r in runs if r not in RUNS]
    if bad or not runs:
        raise SystemExit(f"--runs: choose from {', '.join(RUNS)}, got {args.runs!r}")
    decoder = any(RUNS[r][0] for r in runs)
    encoder = any(RUNS[r][1] for r in runs)
    comps = load_components("world", need=need, guidance_decoder=args.decoder if decoder else None,
                            guidance_encoder=args.encoder if encoder else None)
    missing = [g for g in need if getattr(getattr(comps, g), "guidance_decoder", None) is None]
    if decoder and missing:
        raise SystemExit(f"no {', '.join(missing)} guidance decoder from {args.decoder!r}")
    if encoder and getattr(comps.binder, "guidance_encoder", None) is None:
        raise SystemExit(f"no audio guidance encoder from {args.encoder!r}")
    out = {}
    extra = parse_overrides(args.overrides)
    for name in runs:
        on_dec, on_enc = RUNS[name]
        t0 = time.perf_counter()
        res = run_bench(args.n, tasks, components=comps, split=args.split, variants=("shipped",),
                        overrides={**extra, "guidance_decoder": on_dec, "guidance_encoder": on_enc}, log=None)
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        out[name] = res
        print(f"== guided: {name} ({res['wall_s']} s)")
        print(format_table(res))
    diff: dict = {}
    for name in [r for r in runs if r != "vae"] if "vae" in out else []:
        for task in tasks:
            a = out["vae"]["summary"][task]["shipped"]
            b = out[name]["summary"][task]["shipped"]
            metrics = [m for m in ("sync_f1", "class_acc") if m in a and m in b]
            diff.setdefault(name, {})[task] = {m: round(b[m][0] - a[m][0], 4) for m in metrics}
    print("minus vae:", diff)
    if args.json:
        keep = {k: {f: v[f] for f in ("summary", "config", "wall_s")} for k, v in out.items()}
        doc = {"decoder": args.decoder, "encoder": args.encoder, "overrides": extra, "diff": diff, **keep}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
