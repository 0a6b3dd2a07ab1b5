"""``hermes-plugin scan`` against real apps in real Chromium: the demo host without and with the guard, and
the real hermes-webui v0.50.227 alone and behind ``hermes-plugin proxy --preset hermes-webui``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from webui_host import DEFAULT, SAVED, WebUI

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
    code, report = run_scan("--upstream", url, "--start-url", "/?session=kimi", "--all-catalogs-only")
    assert code == 1 and report["verdict"] == "found"
    found = {(f["method"], f["url"], f["field"], f["before"], f["after"]): f for f in report["findings"]}
    finding = found[("POST", "/api/session/update", "model", "moonshotai/kimi-k2", "openrouter/claude-opus")]
    assert finding["stored"] == "openrouter/claude-opus"
    assert all(f["before"] == "moonshotai/kimi-k2" for f in report["findings"])
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
    # no delay, then every catalog delayed, then each catalog endpoint (static and live list) alone
    assert [(r["delay_ms"], r["trials"]) for r in report["runs"]] == [(0, 2)] + [(int(DELAY), 2)] * 3
    assert any("/api/models/live" in c for c in report["catalogs"])  # the race was provoked all the same
    assert store.model("kimi") == "moonshotai/kimi-k2"


def test_scan_finds_the_overwrite_in_hermes_webui(webui: WebUI) -> None:
    session = webui.new_session(SAVED)
    code, report = run_scan("--upstream", webui.url, "--local-storage", f"hermes-webui-session={session}")
    assert code == 1
    # The known race (the live list late) and a second one: with only the static list late the page
    # saves its built-in placeholder model over the saved one.
    found = {(f["url"], f["field"], f["before"], f["after"]): f for f in report["findings"]}
    finding = found[("/api/session/update", "model", SAVED, DEFAULT)]
    assert finding["body"]["session_id"] == session and finding["first_delay_ms"] == int(DELAY)
    assert f"{DELAY} ms, only /api/models/live" in finding["seen"]
    assert all(f["before"] == SAVED and f["url"] == "/api/session/update" for f in report["findings"])
    assert next(r for r in report["runs"] if r["delay_ms"] == 0)["trials_with_finding"] == 0  # needs a delay
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


OTHER_TEAM_PAGE = """<!doctype html><title>Acme chat</title>
<div class="chip" role="button" tabindex="0"></div><ul class="menu" hidden></ul>
<script>
// Another team's page: chat id in the path, both model lists fetched at once, a custom menu, and a
// "fix-up" that saves the first built-in model when the chat's model is not in the menu yet.
const chatId = location.pathname.split('/').pop();
const menu = document.querySelector('.menu'), chip = document.querySelector('.chip');
let chat = null, items = [];
function render() {
  menu.replaceChildren(...items.map(id => Object.assign(document.createElement('li'), {textContent: id})));
  if (!chat) return;
  if (!items.includes(chat.model) && items.length) {
    chat.model = items[0];
    fetch('/api/v1/chats/' + chatId, {method: 'PUT', headers: {'Content-Type': 'application/json'},
                                      body: JSON.stringify({model: chat.model, title: chat.title})});
  }
  chip.textContent = chat.model;
}
fetch('/api/v1/chats/' + chatId).then(r => r.json()).then(body => {
  chat = body;
  fetch('/api/v1/models/builtin').then(r => r.json()).then(ids => { items = [...ids, ...items]; render(); });
  fetch('/api/v1/models/remote').then(r => r.json()).then(body => {
    items = [...items, ...body.data.map(m => m.id)]; render(); });
});
</script>"""


def other_team_app() -> tuple[Any, dict[str, Any]]:
    from flask import Flask, jsonify, request

    app = Flask("acme_chat")
    chats = {"c0ffee12": {"id": "c0ffee12", "title": "Notes", "model": "acme/remote-large-2"}}

    @app.before_request
    def signed_in() -> Any:
        return None if request.cookies.get("sid") == "s3cret" else ("sign in first", 401)

    @app.get("/chat/<chat_id>")
    def page(chat_id: str) -> str:
        return OTHER_TEAM_PAGE

    @app.get("/api/v1/chats/<chat_id>")
    def read(chat_id: str) -> Any:
        return jsonify(chats[chat_id])

    @app.put("/api/v1/chats/<chat_id>")
    def write(chat_id: str) -> Any:
        chats[chat_id].update(request.get_json())
        return jsonify(chats[chat_id])

    @app.get("/api/v1/models/builtin")
    def builtin() -> Any:
        return jsonify(["acme/small-1", "acme/medium-2"])  # a flat list of ids

    @app.get("/api/v1/models/remote")
    def remote() -> Any:
        return jsonify({"data": [{"id": "acme/remote-large-2", "object": "model"}]})

    return app, chats


def test_scan_finds_a_race_between_catalogs_fetched_in_parallel(loopback_server: Callable[[Any], Any]) -> None:
    """Delaying every catalog alike leaves this page's race to chance (both lists land together); delaying
    the remote list alone makes it certain. The app also wants a signed-in cookie and names the chat in
    its paths."""
    app, chats = other_team_app()
    url = loopback_server(app).url
    code, report = run_scan("--upstream", url, "--start-url", "/chat/c0ffee12", "--cookie", "sid=s3cret")
    assert code == 1
    [finding] = report["findings"]
    assert (finding["method"], finding["url"], finding["field"]) == ("PUT", "/api/v1/chats/c0ffee12", "model")
    assert (finding["before"], finding["after"]) == ("acme/remote-large-2", "acme/small-1")
    assert f"{DELAY} ms, only /api/v1/models/remote" in finding["seen"]
    assert set(report["catalogs"]) == {"GET /api/v1/models/builtin", "GET /api/v1/models/remote"}
    remote_late = next(r for r in report["runs"] if r["plan"] == "only /api/v1/models/remote")
    assert remote_late["trials_with_finding"] == remote_late["trials"]  # certain once the remote list is late
    assert chats["c0ffee12"]["model"] == "acme/remote-large-2"  # put back by the scanner
