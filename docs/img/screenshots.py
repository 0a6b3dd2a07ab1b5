"""Retake the README's two screenshots: the demo host without and with the guard, settled on session "kimi".

    python docs/img/screenshots.py          # writes docs/img/demo-no-guard.png and docs/img/demo-guard.png

Each run starts ``hermes-plugin demo [--no-guard] --latency 800 --port 0`` (a free loopback port), opens
the live-only session in headless Chromium, waits until the page is quiet (live list settled, no write in
flight or held) and saves a screenshot.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from selenium.webdriver.support.ui import WebDriverWait

from hermes_plugin.pytest_plugin import make_chromium

HERE = Path(__file__).parent
LIVE_ONLY = "moonshotai/kimi-k2"
QUIET = """
const p = window.demo && demo.S.activeProvider;
return !!p && !!demo.S.session && ['loaded', 'failed', 'stale'].includes(demo.liveState[p])
  && demo.inflightWrites === 0 && (!window.hermesGuard || hermesGuard.pending().length === 0);
"""


def shoot(driver: Any, guard: bool, out: Path) -> str:
    """Run one demo, screenshot it once quiet; returns the model the picker shows."""
    cli = shutil.which("hermes-plugin") or sys.exit("hermes-plugin is not on PATH (pip install -e .)")
    args = [cli, "demo", "--latency", "800", "--port", "0", *([] if guard else ["--no-guard"])]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", proc.stdout.readline())
        if not match:
            raise RuntimeError("the demo did not print its URL")
        driver.get(match.group(1) + "?session=kimi")
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(QUIET))
        driver.save_screenshot(str(out))
        return driver.execute_script("return document.getElementById('modelSelect').value")
    finally:
        proc.send_signal(signal.SIGINT)  # the demo stops its server and providers on Ctrl-C
        proc.wait(timeout=30)


def main() -> int:
    driver = make_chromium()
    try:
        off = shoot(driver, False, HERE / "demo-no-guard.png")
        on = shoot(driver, True, HERE / "demo-guard.png")
    finally:
        driver.quit()
    print(f"guard off shows {off}; guard on shows {on}")
    return 0 if on == LIVE_ONLY != off else 1


if __name__ == "__main__":
    sys.exit(main())
