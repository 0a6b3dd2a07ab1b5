"""Open WebUI start-up and page-ready times (the real host, offline, auth off, a FakeProvider behind it).

Run: python bench/open_webui_start.py [--runs 3]
Needs Open WebUI in its own venv (bash tests/support/open_webui_setup.sh). Each run starts a fresh server on
an empty data folder and times ``open-webui serve`` until ``GET /ready`` answers, then a saved chat's page in
headless Chromium until its model picker shows a model (first load, then a second load with a warm cache).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import open_webui as ow  # noqa: E402  (the test toolkit, importable once tests/ is on the path)

from hermes_plugin.testing.browser import make_chromium  # noqa: E402
from hermes_plugin.testing.fake_provider import FakeProvider  # noqa: E402

PAGE_WAIT = 120


def page_ready(driver, server: ow.OpenWebUI, chat_id: str) -> float:
    """Seconds from navigation to the picker showing the chat's selected model."""
    start = time.perf_counter()
    driver.get(f"{server.url}/c/{chat_id}")
    WebDriverWait(driver, PAGE_WAIT).until(lambda d: d.execute_script(
        "const b = document.getElementById('model-selector-model-button');"
        "return !!b && (b.getAttribute('aria-label') || '').startsWith('Selected model: ')"))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if ow.executable() is None:
        sys.exit(f"Open WebUI {ow.VERSION} is not installed in {ow.venv_path()}: bash {ow.SETUP_SCRIPT}")
    starts, first_pages, warm_pages = [], [], []
    driver = make_chromium()
    try:
        for _ in range(args.runs):
            with FakeProvider("openai", list(ow.MODELS), api_key=ow.API_KEY) as provider, \
                    tempfile.TemporaryDirectory() as data:
                began = time.perf_counter()
                server = ow.start(provider, Path(data))
                starts.append(time.perf_counter() - began)
                try:
                    chat_id = server.create_chat([ow.MODELS[0]])["id"]
                    driver.get(server.url + "/health")
                    driver.execute_script("localStorage.token = arguments[0]", server.token)
                    first_pages.append(page_ready(driver, server, chat_id))
                    warm_pages.append(page_ready(driver, server, chat_id))
                finally:
                    ow.stop(server)
    finally:
        driver.quit()
    for name, values in (("serve -> /ready", starts), ("chat page, first load", first_pages),
                         ("chat page, warm load", warm_pages)):
        print(f"{name:24s} median {statistics.median(values):6.2f} s  "
              f"min {min(values):6.2f}  max {max(values):6.2f}  (n={len(values)})")


if __name__ == "__main__":
    main()
