"""Drive ``avbridge app`` in a real browser (Debian's chromium through Playwright) and save a
screenshot: upload a world clip in the V2A tab, generate, wait until the guided and the vanilla
players have a playable source and the loss plot is drawn.

    .venv/bin/python scripts/app_screenshot.py --out docs/img/app.png        # world models, 10 steps

``make screenshot`` runs this. The browser test (tests/apps/test_app_browser.py) uses the same
:func:`run_v2a` and :func:`upload_broken` with the tiny-random preset.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"

#: True once both players' <video> elements have a source with metadata and the plot has an image.
_READY_JS = """
() => {
  const ok = (id) => {
    const v = document.querySelector(`#${id} video`);
    return v && v.currentSrc && v.readyState >= 1 && v.duration > 0;
  };
  const plot = document.querySelector('#v2a-loss img, #v2a-loss canvas, #v2a-loss svg');
  const drawn = plot && (plot.tagName !== 'IMG' || (plot.complete && plot.naturalWidth > 0));
  return ok('v2a-guided-player') && ok('v2a-vanilla-player') && !!drawn;
}
"""


def launch_browser(playwright: Any) -> Any:
    """Headless Debian chromium (Playwright's own browser download is not used)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])


def run_v2a(
    page: Any, url: str, clip: Path, *, steps: int | None = None, timeout_s: float = 60
) -> dict[str, Any]:
    """Open the page, upload ``clip`` in the V2A tab, press Generate, wait for both players and the
    loss plot; returns the players' sources and durations and the status line."""
    page.goto(url)
    page.locator("#tab-v2a-button, button[role=tab]:has-text('V2A')").first.click()
    page.locator("#v2a-input input[type=file]").set_input_files(str(clip))
    page.locator("#v2a-input video").first.wait_for(state="attached", timeout=timeout_s * 1000)
    if steps is not None:
        box = page.locator("#tab-v2a input[type=number]").nth(1)
        box.fill(str(steps))
        box.press("Enter")
    page.locator("#v2a-run").click()
    page.wait_for_function(_READY_JS, timeout=timeout_s * 1000, polling=250)
    return page.evaluate(
        """() => ({
        guided: document.querySelector('#v2a-guided-player video').currentSrc,
        vanilla: document.querySelector('#v2a-vanilla-player video').currentSrc,
        guided_s: document.querySelector('#v2a-guided-player video').duration,
        vanilla_s: document.querySelector('#v2a-vanilla-player video').duration,
        status: document.querySelector('#v2a-status').innerText.trim(),
      })"""
    )


def upload_broken(page: Any, broken: Path, *, timeout_s: float = 30) -> str:
    """Replace the V2A input with ``broken``, press Generate, return the error line shown."""
    page.locator("#v2a-input button[aria-label='Clear'], #v2a-input button[title='Clear']").first.click()
    page.locator("#v2a-input input[type=file]").set_input_files(str(broken))
    page.wait_for_timeout(300)
    page.locator("#v2a-run").click()
    line = page.locator("#v2a-status", has_text="avbridge: error:")
    line.wait_for(timeout=timeout_s * 1000)
    return line.inner_text().strip()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/img/app.png", help="where to write the screenshot")
    p.add_argument("--preset", default="world", help="model preset of the app")
    p.add_argument("--steps", type=int, default=10, help="denoising steps of the generation shown")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the outputs")
    args = p.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"app_screenshot: {CHROMIUM} not found; install it with: apt-get install -y chromium",
              file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from avbridge.apps import app as webapp
    from avbridge.apps import cli
    from avbridge.apps.demo import bundled_examples_dir

    clip = sorted(bundled_examples_dir().glob("*.mp4"))[0]
    app = webapp.start_app(cli.build_parser().parse_args(["app", "--preset", args.preset]))
    url = app.launch("127.0.0.1", webapp.free_port(), block=False)
    try:
        with sync_playwright() as pw:
            browser = launch_browser(pw)
            page = browser.new_page(viewport={"width": 1500, "height": 1150})
            t0 = time.perf_counter()
            got = run_v2a(page, url, clip, steps=args.steps, timeout_s=args.timeout)
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=True)
            browser.close()
        secs = time.perf_counter() - t0
        print(f"app_screenshot: wrote {out} ({got['status']}; {secs:.1f}s)", file=sys.stderr)
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
