"""Retake the README's status page screenshot: the demo host after a refresh that changed a catalog.

    python docs/img/status_screenshot.py          # writes docs/img/status-page.png

Serves the demo host (guard on) and its two simulated providers on free loopback ports, fetches the
catalogs, makes a user pick and an automatic fallback the guard keeps, then has openrouter retire
``openrouter/llama-3`` and add ``openrouter/gpt-5``, refreshes (the impact report then counts the
sessions on ``llama-3`` and on a model retired before), and screenshots
``/hermes-plugin/status`` in headless Chromium.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from hermes_plugin.demo.app import LOCALAI_LIVE, OPENROUTER_LIVE, create_app, demo_providers
from hermes_plugin.testing.browser import launch_chromium
from hermes_plugin.testing.fake_provider import FakeProvider
from hermes_plugin.testing.servers import LoopbackServer

OUT = Path(__file__).parent / "status-page.png"


def main() -> int:
    openrouter = FakeProvider("openai", OPENROUTER_LIVE).start()
    localai = FakeProvider("ollama", LOCALAI_LIVE).start()
    app = create_app(demo_providers(openrouter.base_url, localai.base_url), tempfile.mkdtemp(), guard=True)
    app.extensions["hermes_plugin"].catalog.refresh_interval = 0  # let this script's refreshes refetch at once
    server = LoopbackServer(app).start()
    driver = launch_chromium()
    try:
        base = server.url
        requests.get(base + "/hermes-plugin/api/catalog", timeout=30)
        requests.post(
            base + "/api/session/update",
            json={"session_id": "opus", "model": "openrouter/gpt-4o"},
            headers={"X-Hermes-Intent": "user"},
            timeout=30,
        )
        requests.post(
            base + "/api/session/update",
            json={"session_id": "kimi", "model": "openrouter/claude-opus"},
            headers={"X-Hermes-Intent": "auto"},
            timeout=30,
        )  # a fallback over a present model: kept
        openrouter.configure(models=[m for m in OPENROUTER_LIVE if m != "openrouter/llama-3"] + ["openrouter/gpt-5"])
        requests.get(base + "/hermes-plugin/api/catalog?refresh=1", timeout=30)
        requests.get(base + "/hermes-plugin/api/impact?refresh=1", timeout=30)
        driver.set_window_size(1280, 760)
        driver.get(base + "/hermes-plugin/status")
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#providers tbody tr"))
        driver.save_screenshot(str(OUT))
        text = driver.find_element(By.TAG_NAME, "main").text
    finally:
        driver.quit()
        server.stop()
        openrouter.stop()
        localai.stop()
    print(f"wrote {OUT}")
    return 0 if "removed openrouter/llama-3" in text and "2 of 5 sessions" in text else 1


if __name__ == "__main__":
    sys.exit(main())
