"""Load check of ``avbridge app``: N requests from C concurrent clients against the app on the
world preset (a separate server process), reporting completed, failed, p50/p95 latency and
the server's peak memory (VmHWM).

    .venv/bin/python scripts/app_load_check.py                  # 20 V2A requests, 4 clients, 6 steps

Each request is V2A on a bundled world clip with "compare with vanilla" on (guided + vanilla).
Requests queue in the app (one worker by default), so latency includes queueing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np


def _wait_up(url: str, proc: subprocess.Popen, timeout: float) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"app_load_check: the app exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"app_load_check: the app did not answer within {timeout:.0f}s")


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--preset", default="world")
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = p.parse_args(argv)

    from gradio_client import Client, handle_file

    from avbridge.apps.app import free_port
    from avbridge.apps.app_support import TASK_DEFAULT
    from avbridge.apps.demo import bundled_examples_dir

    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-m", "avbridge.apps.cli", "app", "--preset", args.preset, "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    clips = sorted(bundled_examples_dir().glob("*.mp4"))
    base = dict(prompt="", negative_prompt="", seed=0, steps=args.steps, compare=True, cfg="", lr="",
                prompt_lr="", inner_steps=None, window="", refine="", update=TASK_DEFAULT,
                audio_path=TASK_DEFAULT, mel_grad=TASK_DEFAULT, frame_grad=TASK_DEFAULT,
                latent_grad=TASK_DEFAULT, per_clip=False)
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(args.requests))

    def client_loop(k: int) -> None:
        client = Client(url, verbose=False)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                out = client.predict(**{**base, "seed": i, "upload": handle_file(str(clips[i % len(clips)]))},
                                     api_name="/v2a")
                ok = str(out[0]).startswith("done:")
                msg = str(out[0])
            except Exception as e:  # noqa: BLE001 - counted as a failure
                ok, msg = False, f"{type(e).__name__}: {e}"
            dt = time.perf_counter() - t0
            with lock:
                (latencies if ok else failures).append(dt if ok else msg)
            print(f"client {k} request {i}: {'ok' if ok else 'FAILED'} {dt:.1f}s", file=sys.stderr)

    try:
        t_start = time.perf_counter()
        _wait_up(url, server, 600)
        t_up = time.perf_counter() - t_start
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client_loop, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        peak = _peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    lat = np.asarray(latencies)
    result = {
        "preset": args.preset, "task": "v2a (guided + vanilla)", "steps": args.steps,
        "requests": args.requests, "clients": args.clients,
        "completed": len(latencies), "failed": len(failures), "failures": failures[:5],
        "p50_s": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p95_s": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        "wall_s": round(wall, 1), "startup_s": round(t_up, 1), "server_peak_rss_mb": round(peak),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
