"""The status page and the impact report in a real browser: on the demo host, and on the real hermes-webui
v0.50.227 behind ``hermes-plugin proxy --preset hermes-webui`` (catalogs learnt from the app's own page,
sessions listed from the app's own session list)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from webui_host import SAVED, WebUI

from hermes_plugin.demo.app import LOCALAI_LIVE, OPENROUTER_LIVE, create_app, demo_providers
from hermes_plugin.proxy import create_app as create_proxy
from hermes_plugin.proxy import load_config

pytestmark = pytest.mark.e2e

WAIT = 30
GONE = "deepseek-v2-retired"  # a model the app's catalogs do not list


def table(driver: Any, table_id: str) -> list[list[str]]:
    return [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    ]


def csp_errors(driver: Any) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]


def styled(driver: Any) -> bool:
    """The external stylesheet applied: header cells have its background (no inline style exists)."""
    colour = driver.execute_script("return getComputedStyle(document.querySelector('th')).backgroundColor")
    return colour not in ("rgba(0, 0, 0, 0)", "transparent")


def test_status_page_on_the_demo_host(
    tmp_path: Path, fake_provider: Callable[..., Any], loopback_server: Callable[[Any], Any], chromium: Any
) -> None:
    openrouter = fake_provider("openai", OPENROUTER_LIVE)
    localai = fake_provider("ollama", LOCALAI_LIVE)
    app = create_app(demo_providers(openrouter.base_url, localai.base_url), tmp_path, guard=True)
    base = loopback_server(app).url
    chromium.get(base + "/?session=kimi")  # the page's own catalog requests fetch the providers
    WebDriverWait(chromium, WAIT).until(
        lambda d: d.execute_script("return !!window.hermesGuard && hermesGuard.pending().length === 0")
    )
    chromium.get(base + "/hermes-plugin/status")
    rows = {row[0]: row for row in table(chromium, "providers")}
    assert rows["openrouter"][2] == "fresh" and rows["openrouter"][4] == "4"
    assert rows["localai"][2] == "not fetched"  # the page never needed its live list: nobody fetched it
    assert styled(chromium) and csp_errors(chromium) == []


def test_impact_and_status_through_the_proxy_for_hermes_webui(
    webui: WebUI, loopback_server: Callable[[Any], Any], chromium: Any
) -> None:
    proxy = loopback_server(create_proxy(webui.url, cfg=load_config(preset_name="hermes-webui"))).url
    kept, gone = webui.new_session(SAVED), webui.new_session(GONE)
    chromium.get(proxy + "/api/settings")
    chromium.execute_script("localStorage.setItem('hermes-webui-session', arguments[0])", kept)
    chromium.get(proxy + "/")  # the app's page fetches its catalogs through the proxy, which learns them

    def learnt(_: Any) -> bool:
        catalog = requests.get(proxy + "/hermes-plugin/api/catalog/deepseek", timeout=10)
        return catalog.ok and any(m["source"] == "live" for m in catalog.json()["models"])

    WebDriverWait(chromium, WAIT).until(learnt, "the proxy never learnt the live catalog")
    report = requests.get(proxy + "/hermes-plugin/api/impact?refresh=1", timeout=30).json()
    absent = {entry["session"]: entry["model"] for entry in report["sessions"]}
    assert absent.get(gone) == GONE and kept not in absent  # listed from the app's own /api/sessions
    assert report["defaults"] == []  # the app's default model is in its static list
    chromium.get(proxy + "/hermes-plugin/status")
    rows = {row[0]: row for row in table(chromium, "providers")}
    assert rows["deepseek"][2] == "fresh"
    assert "sessions" in chromium.find_element(By.TAG_NAME, "main").text
    assert styled(chromium) and csp_errors(chromium) == []
