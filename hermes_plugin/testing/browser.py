"""Headless Chromium for tests: the system browser and chromedriver, with the flags a container needs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
REQUIRE_BROWSER_ENV = "HERMES_PLUGIN_REQUIRE_BROWSER"


def chromium_paths() -> tuple[str | None, str | None]:
    """The system Chromium binary and chromedriver, or None for what is missing."""
    binary = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                               shutil.which("google-chrome"), "/usr/bin/chromium") if p and Path(p).exists()), None)
    driver = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and Path(p).exists()), None)
    return binary, driver


class BrowserMissing(RuntimeError):
    """No Chromium, no chromedriver or no selenium on this machine."""


def launch_chromium(extra_args: tuple[str, ...] = ()) -> Any:
    """A headless Selenium Chrome driver on the system chromium; BrowserMissing when it cannot start one."""
    binary, driver_path = chromium_paths()
    if binary is None or driver_path is None:
        missing = " and ".join(n for n, p in (("chromium", binary), ("chromedriver", driver_path)) if p is None)
        raise BrowserMissing(f"hermes-plugin: {missing} not found (install chromium + chromium-driver)")
    try:
        from selenium import webdriver
    except ImportError:
        raise BrowserMissing("hermes-plugin: selenium is not installed (pip install 'hermes-plugin[browser]')") from None
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (*CHROMIUM_FLAGS, "--window-size=1280,900", *extra_args):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(30)
    driver.set_page_load_timeout(30)
    return driver


def make_chromium(extra_args: tuple[str, ...] = ()) -> Any:
    """``launch_chromium`` for tests: fails (CI, or $HERMES_PLUGIN_REQUIRE_BROWSER) or skips when it is missing."""
    import pytest  # only the test helpers need pytest; the scanner launches Chromium without it

    try:
        return launch_chromium(extra_args)
    except BrowserMissing as exc:
        message = f"{exc} for browser tests"
        if os.environ.get("CI") or os.environ.get(REQUIRE_BROWSER_ENV):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def forget_origin(driver: Any) -> None:
    """Drop the shown origin's service workers, their caches and every other store it has.

    A service worker and its caches outlive cookies and localStorage, and a later test's server may get the
    same loopback port (the same origin): its pages would then come from an earlier test's cache.
    """
    parts = urlsplit(driver.current_url)
    if parts.scheme in ("http", "https") and hasattr(driver, "execute_cdp_cmd"):
        driver.execute_cdp_cmd("Storage.clearDataForOrigin",
                               {"origin": f"{parts.scheme}://{parts.netloc}", "storageTypes": "all"})


def reset_chromium(driver: Any) -> None:
    """Leave the browser as a new test expects it: one window, no storage or cookies, about:blank."""
    handles = list(driver.window_handles)
    for handle in reversed(handles):
        driver.switch_to.window(handle)
        try:
            driver.execute_script("try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}")
            forget_origin(driver)
        except Exception:  # a page that is gone or hung: closing or blanking it below is enough
            pass
        if handle != handles[0]:
            driver.close()
    driver.switch_to.window(handles[0])
    driver.delete_all_cookies()
    driver.get("about:blank")
