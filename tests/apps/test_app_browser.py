"""``avbridge app`` in a real browser: Debian's chromium driven by Playwright for Python.

Uploads a world clip in the V2A tab, generates, waits until the guided and the vanilla players
have a playable source and the loss plot is drawn, then uploads a broken file and reads the
error line, and fills the input from a world example with one click. The screenshot goes to
``$AVBRIDGE_APP_SCREENSHOT`` when set (else a temp folder).
Skipped, saying why, only when chromium or playwright is missing (``make test`` installs both).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from tests.conftest import load_script

shot = load_script("app_screenshot")

if not Path(shot.CHROMIUM).exists():
    pytest.skip(f"{shot.CHROMIUM} is missing: install it with `apt-get install -y chromium` "
                "(make test does so when run as root)", allow_module_level=True)
pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is missing: pip install playwright")

from avbridge.apps import app as webapp  # noqa: E402
from avbridge.apps import cli  # noqa: E402
from avbridge.apps.demo import bundled_examples_dir  # noqa: E402


@pytest.fixture(scope="module")
def url():
    app = webapp.start_app(cli.build_parser().parse_args(["app", "--preset", "tiny-random"]))
    yield app.launch("127.0.0.1", webapp.free_port(), block=False)
    app.close()


def test_v2a_in_chromium(url, tmp_path):
    clip = sorted(bundled_examples_dir().glob("*.mp4"))[0]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:4000])
    out = Path(os.environ.get("AVBRIDGE_APP_SCREENSHOT") or tmp_path / "app.png")
    t0 = time.perf_counter()
    with sync_api.sync_playwright() as pw:
        browser = shot.launch_browser(pw)
        page = browser.new_page(viewport={"width": 1500, "height": 1150})
        got = shot.run_v2a(page, url, clip, steps=2, timeout_s=45)
        assert got["status"].startswith("done: v2a"), got
        assert got["guided"] != got["vanilla"] and got["guided"].endswith("v2a-guided.mp4")
        assert abs(got["guided_s"] - 4.0) < 0.2 and abs(got["vanilla_s"] - 4.0) < 0.2, got
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        line = shot.upload_broken(page, broken)
        assert line.startswith("avbridge: error: broken.mp4: truncated"), line
        assert "Traceback" not in page.content()
        # The world examples fill the input with one click.
        page.locator("#tab-v2a button.gallery-item").first.click()
        page.wait_for_function(
            "() => { const v = document.querySelector('#v2a-input video');"
            " return v && v.currentSrc && v.currentSrc.includes('world-2000000'); }",
            timeout=15_000,
        )
        browser.close()
    assert out.stat().st_size > 10_000
    assert time.perf_counter() - t0 < 60
