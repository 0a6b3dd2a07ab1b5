"""``hermes-plugin scan`` against real apps in real Chromium: the demo host without and with the guard, and
the real hermes-webui v0.50.227 alone and behind ``hermes-plugin proxy --preset hermes-webui``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from webui_host import SAVED, WebUI

from hermes_plugin.cli import cli
from hermes_plugin.demo.app import LOCALAI_LIVE, OPENROUTER_LIVE, create_app, demo_providers
from hermes_plugin.proxy import create_app as create_proxy
from hermes_plugin.proxy import load_config
from hermes_plugin.testing.browser import REQUIRE_BROWSER_ENV, chromium_paths

pytestmark = pytest.mark.e2e

TRIALS = "2"
DELAY = "800"  # ms; the demo's and hermes-webui's own live lists answer at once, so this delay is the race


@pytest.fixture(autouse=True)
def _browser() -> None:
    """The scanner launches its own Chromium: skip like the other browser tests when there is none."""
    if None in chromium_paths():
        if os.environ.get("CI") or os.environ.get(REQUIRE_BROWSER_ENV):
            pytest.fail("chromium/chromedriver not found", pytrace=False)
        pytest.skip("chromium/chromedriver not found")


def run_scan(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(cli, ["scan", "--trials", TRIALS, "--delay", DELAY, "--json", *args])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def demo_host(
    tmp_path: Path, fake_provider: Callable[..., Any], loopback_server: Callable[[Any], Any], guard: bool
) -> tuple[str, Any]:
    openrouter = fake_provider("openai", OPENROUTER_LIVE)
    localai = fake_provider("ollama", LOCALAI_LIVE)
    app = create_app(demo_providers(openrouter.base_url, localai.base_url), tmp_path, guard=guard, live_cache_ttl=0)
    return loopback_server(app).url, app.extensions["hermes_demo"]["store"]


def test_scan_finds_the_demo_overwrite_without_the_guard(
    tmp_path: Path, fake_provider: Callable[..., Any], loopback_server: Callable[[Any], Any]
) -> None:
    url, store = demo_host(tmp_path, fake_provider, loopback_server, guard=False)
    code, report = run_scan("--upstream", url, "--start-url", "/?session=kimi")
    assert code == 1 and report["verdict"] == "found"
    [finding] = report["findings"]
    assert (finding["method"], finding["url"], finding["field"]) == ("POST", "/api/session/update", "model")
    assert finding["before"] == "moonshotai/kimi-k2" and finding["after"] == "openrouter/claude-opus"
    assert finding["stored"] == "openrouter/claude-opus"
    delayed = next(r for r in report["runs"] if r["delay_ms"] == int(DELAY))
    assert delayed["trials_with_finding"] == delayed["trials"] == int(TRIALS)  # the delay makes it certain
    assert any("/api/models/live" in c for c in report["catalogs"])  # found by shape, never named
    assert store.model("kimi") == "moonshotai/kimi-k2"  # the scanner put the value back


def test_scan_finds_nothing_on_the_demo_with_the_guard(
    tmp_path: Path, fake_provider: Callable[..., Any], loopback_server: Callable[[Any], Any]
) -> None:
    url, store = demo_host(tmp_path, fake_provider, loopback_server, guard=True)
    code, report = run_scan("--upstream", url, "--start-url", "/?session=kimi")
    assert code == 0 and report["verdict"] == "none" and report["findings"] == []
    assert [r["trials"] for r in report["runs"]] == [int(TRIALS)] * 2
    assert any("/api/models/live" in c for c in report["catalogs"])  # the race was provoked all the same
    assert store.model("kimi") == "moonshotai/kimi-k2"


@pytest.fixture(scope="module")
def webui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebUI]:
    app = WebUI(tmp_path_factory.mktemp("hermes-webui-scan")).start()
    try:
        yield app
    finally:
        app.stop()


def test_scan_finds_the_overwrite_in_hermes_webui(webui: WebUI) -> None:
    session = webui.new_session(SAVED)
    code, report = run_scan("--upstream", webui.url, "--local-storage", f"hermes-webui-session={session}")
    assert code == 1
    [finding] = report["findings"]
    assert finding["url"] == "/api/session/update" and finding["field"] == "model"
    assert finding["before"] == SAVED and finding["body"]["session_id"] == session
    assert finding["first_delay_ms"] == int(DELAY)
    assert webui.stored(session) == SAVED  # put back after each trial


def test_scan_finds_nothing_in_hermes_webui_behind_the_proxy(
    webui: WebUI, loopback_server: Callable[[Any], Any]
) -> None:
    guarded = loopback_server(create_proxy(webui.url, cfg=load_config(preset_name="hermes-webui"))).url
    session = webui.new_session(SAVED)
    code, report = run_scan("--upstream", guarded, "--local-storage", f"hermes-webui-session={session}")
    assert code == 0 and report["findings"] == []
    assert any("/api/models/live" in c for c in report["catalogs"])
    assert webui.stored(session) == SAVED


def test_an_app_without_a_catalog_cannot_be_scanned(loopback_server: Callable[[Any], Any]) -> None:
    """Nothing was delayed, so "no finding" would mean nothing: exit 2 and ask for --catalog-path."""
    from flask import Flask, jsonify

    app = Flask("no_catalog")
    app.add_url_rule("/", "page", lambda: "<!doctype html><script src='/app.js'></script>")
    app.add_url_rule("/app.js", "js", lambda: ("fetch('/api/settings')", 200, {"Content-Type": "text/javascript"}))
    app.add_url_rule("/api/settings", "settings", lambda: jsonify(theme="dark", language="en"))
    url = loopback_server(app).url
    result = CliRunner().invoke(cli, ["scan", "--upstream", url, "--trials", "1", "--delay", "100"])
    assert result.exit_code == 2
    assert "--catalog-path" in result.stderr
