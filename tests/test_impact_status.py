"""The impact report and the status page on the demo host (real loopback providers, the Flask test client,
a real WebSocket): sessions and defaults on retired models, change tracking, escaping, scrubbing, access."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from support.wsclient import RawWS

from hermes_plugin import ModelGuard
from hermes_plugin.cli import cli
from hermes_plugin.demo.app import LOCALAI_LIVE, OPENROUTER_LIVE, create_app, demo_providers

RETIRED_LIVE = [m for m in OPENROUTER_LIVE if m not in ("moonshotai/kimi-k2", "openrouter/llama-3")]


@pytest.fixture
def demo(tmp_path: Path, fake_provider: Callable[..., Any]) -> tuple[Flask, Any]:
    openrouter = fake_provider("openai", OPENROUTER_LIVE)
    localai = fake_provider("ollama", LOCALAI_LIVE)
    app = create_app(demo_providers(openrouter.base_url, localai.base_url), tmp_path, guard=True)
    app.extensions["hermes_plugin"].catalog.refresh_interval = 0  # every refresh in a test really refetches
    return app, openrouter


def absent_sessions(report: dict[str, Any]) -> dict[str, str]:
    return {entry["session"]: entry["model"] for entry in report["sessions"]}


def test_impact_lists_sessions_and_defaults_whose_model_is_gone(demo: tuple[Flask, Any]) -> None:
    app, openrouter = demo
    client = app.test_client()
    assert client.post("/api/settings", json={"default_model": "openrouter/llama-3"}).status_code == 200
    client.get("/hermes-plugin/api/catalog")
    report = client.get("/hermes-plugin/api/impact?refresh=1").get_json()
    assert absent_sessions(report) == {"retired": "openrouter/gpt-3-retired"}  # confirmed absent, nothing else
    assert report["defaults"] == [] and report["counts"]["checked"] == 5
    openrouter.configure(models=RETIRED_LIVE)  # the provider retires two live models
    client.get("/hermes-plugin/api/catalog?refresh=1")
    report = client.get("/hermes-plugin/api/impact?refresh=1").get_json()
    assert absent_sessions(report) == {
        "retired": "openrouter/gpt-3-retired",
        "kimi": "moonshotai/kimi-k2",
        "llama": "openrouter/llama-3",
    }
    assert report["defaults"] == [
        {"name": "default_model", "model": "openrouter/llama-3", "reason": report["defaults"][0]["reason"]}
    ]
    assert "not listed" in report["defaults"][0]["reason"]
    assert report["counts"] == {"sessions": 3, "defaults": 1, "checked": 5, "unknown": 0}


def test_a_refresh_sends_a_catalog_event_with_the_counts(
    demo: tuple[Flask, Any], loopback_server: Callable[[Any], Any]
) -> None:
    app, openrouter = demo
    server = loopback_server(app)
    client = app.test_client()
    client.get("/hermes-plugin/api/catalog")
    ws = RawWS(server.url)
    try:
        openrouter.configure(models=RETIRED_LIVE)
        client.get("/hermes-plugin/api/catalog?refresh=1")
        while True:  # every message up to the one with counts (receive_json waits, bounded by its timeout)
            message = ws.receive_json()
            if message.get("type") == "catalog" and "impact" in message and message["impact"]["sessions"] == 3:
                break
        assert message["provider"] in ("openrouter", "localai")
        assert message["impact"] == {"sessions": 3, "defaults": 0, "checked": 5, "unknown": 0}
    finally:
        ws.close()


def test_impact_without_a_session_source_says_so(tmp_path: Path, fake_provider: Callable[..., Any]) -> None:
    provider = fake_provider("openai", ["local/a"])
    app = Flask("bare", instance_path=str(tmp_path))
    app.config.update(
        HERMES_PLUGIN_CACHE="memory",
        HERMES_PLUGIN_PROVIDERS={"local": {"kind": "openai-compatible", "base_url": provider.base_url}},
    )
    ModelGuard(app)
    report = app.test_client().get("/hermes-plugin/api/impact").get_json()
    assert report["sources"] is False and report["counts"]["checked"] == 0


def hooked_app(tmp_path: Path, fake_provider: Callable[..., Any], plugin: Any) -> Flask:
    provider = fake_provider("openai", ["local/a"])
    app = Flask("hooked", instance_path=str(tmp_path))
    app.config.update(
        HERMES_PLUGIN_CACHE="memory",
        HERMES_PLUGIN_PROVIDERS={"local": {"kind": "openai-compatible", "base_url": provider.base_url}},
    )
    guard = ModelGuard(app)
    guard.session_model({"s1": "local/a", "s2": "local/gone"}.get)
    app.extensions["hermes_plugin"].pm.register(plugin)
    app.test_client().get("/hermes-plugin/api/catalog")
    return app


def test_hook_hermes_plugin_session_ids(tmp_path: Path, fake_provider: Callable[..., Any]) -> None:
    from hermes_plugin import hookimpl

    class Sessions:
        @hookimpl
        def hermes_plugin_session_ids(self) -> Any:
            yield "s1"  # a bare id: the model is read through guard.session_model
            yield "s2"
            yield ("s3", "local/also-gone")  # a pair: no read

    app = hooked_app(tmp_path, fake_provider, Sessions())
    report = app.test_client().get("/hermes-plugin/api/impact?refresh=1").get_json()
    assert absent_sessions(report) == {"s2": "local/gone", "s3": "local/also-gone"}
    assert report["counts"]["checked"] == 3 and report["defaults"] == []


def test_hook_hermes_plugin_default_models(tmp_path: Path, fake_provider: Callable[..., Any]) -> None:
    from hermes_plugin import hookimpl

    class Defaults:
        @hookimpl
        def hermes_plugin_default_models(self) -> dict[str, str]:
            return {"new_chat": "local/gone", "summaries": "local/a"}

    app = hooked_app(tmp_path, fake_provider, Defaults())
    report = app.test_client().get("/hermes-plugin/api/impact?refresh=1").get_json()
    assert [(d["name"], d["model"]) for d in report["defaults"]] == [("new_chat", "local/gone")]
    assert report["counts"]["checked"] == 0  # no session source: only the defaults were judged


def test_impact_command_with_a_progress_bar(demo: tuple[Flask, Any]) -> None:
    app, openrouter = demo
    app.test_client().get("/hermes-plugin/api/catalog")
    result = app.test_cli_runner().invoke(cli, ["impact"])
    assert result.exit_code == 0, result.output
    assert "retired" in result.stdout and "openrouter/gpt-3-retired" in result.stdout
    assert "1 of 5 sessions" in result.stdout
    as_json = app.test_cli_runner().invoke(cli, ["impact", "--json"])
    assert absent_sessions(__import__("json").loads(as_json.stdout)) == {"retired": "openrouter/gpt-3-retired"}


def test_impact_command_over_many_sessions(tmp_path: Path, fake_provider: Callable[..., Any]) -> None:
    provider = fake_provider("openai", ["local/a"])
    app = Flask("many", instance_path=str(tmp_path))
    app.config.update(
        HERMES_PLUGIN_CACHE="memory",
        HERMES_PLUGIN_PROVIDERS={"local": {"kind": "openai-compatible", "base_url": provider.base_url}},
    )
    guard = ModelGuard(app)
    guard.session_ids(lambda: ((f"s{n}", "local/a" if n % 10 else "local/gone") for n in range(5000)))
    result = app.test_cli_runner().invoke(cli, ["impact"])
    assert result.exit_code == 0, result.output
    assert "checking sessions" in result.stderr  # the progress bar (drawn in full on a terminal)
    assert result.stdout.startswith("500 of 5000 sessions")
    assert sum(1 for line in result.stdout.splitlines() if re.match(r"s\d+ +local/gone ", line)) == 500


def test_impact_command_asks_a_running_host(demo: tuple[Flask, Any], loopback_server: Callable[[Any], Any]) -> None:
    from click.testing import CliRunner

    app, _ = demo
    url = loopback_server(app).url
    result = CliRunner().invoke(cli, ["impact", "--url", url])
    assert result.exit_code == 0, result.output
    assert "retired" in result.stdout and "openrouter/gpt-3-retired" in result.stdout


# -- the status page --------------------------------------------------------------------------------


def page(client: Any) -> str:
    response = client.get("/hermes-plugin/status")
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    html = response.get_data(as_text=True)
    # CSP-clean: no script or style element, no style or event-handler attribute in any tag.
    assert not re.search(r"<script|<style|<[^>]*\s(?:style|on\w+)=", html, re.IGNORECASE)
    return html


def row(html: str, provider: str) -> str:
    match = re.search(rf"<tr class=\"state-\w+\"><td>{re.escape(provider)}</td>.*?</tr>", html)
    assert match, html
    return match.group(0)


def test_status_page_shows_state_counts_and_changes_since_the_last_refresh(demo: tuple[Flask, Any]) -> None:
    app, openrouter = demo
    client = app.test_client()
    client.get("/hermes-plugin/api/catalog")
    first = row(page(client), "openrouter")
    assert "<td>fresh</td>" in first and "<td>4</td>" in first and "first fetch since start" in first
    openrouter.configure(models=[*RETIRED_LIVE, "openrouter/gpt-5"])
    client.get("/hermes-plugin/api/catalog?refresh=1")
    second = row(page(client), "openrouter")
    assert "added openrouter/gpt-5; removed moonshotai/kimi-k2, openrouter/llama-3" in second
    assert "<td>3</td>" in second
    openrouter.configure(fault="500")
    client.get("/hermes-plugin/api/catalog?refresh=1")
    failing = row(page(client), "openrouter")
    assert "<td>stale</td>" in failing and "500" in failing  # last good list kept, the error shown


def test_status_page_lists_the_latest_model_changes(demo: tuple[Flask, Any]) -> None:
    app, _ = demo
    client = app.test_client()
    response = client.post(
        "/api/session/update",
        json={"session_id": "opus", "model": "openrouter/gpt-4o"},
        headers={"X-Hermes-Intent": "user"},
    )
    assert response.status_code == 200
    html = page(client)
    assert re.search(
        r"<td>opus</td><td>user</td><td>openrouter/claude-opus</td><td>openrouter/gpt-4o</td><td>openrouter/gpt-4o</td><td>pass</td>",
        html,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_status_page_escapes_labels_and_scrubs_errors(tmp_path: Path, fake_provider: Callable[..., Any]) -> None:
    secret = "hunter2-very-secret-token"
    provider = fake_provider("openai", ["local/a"])
    app = Flask("hostile", instance_path=str(tmp_path))
    app.config.update(
        HERMES_PLUGIN_CACHE="memory",
        HERMES_PLUGIN_PROVIDERS={
            "evil": {
                "kind": "openai-compatible",
                "base_url": provider.base_url,
                "label": "<img src=x onerror=alert(1)>",
            },
            "down": {"kind": "openai-compatible", "base_url": f"http://user:{secret}@127.0.0.1:{free_port()}/v1"},
        },
    )
    ModelGuard(app)
    client = app.test_client()
    client.get("/hermes-plugin/api/catalog")
    app.extensions["hermes_plugin"].catalog.observe("seen", [], ok=False, error=f"upstream said {secret}")
    html = page(client)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
    assert "<td>failing</td>" in row(html, "down")
    assert secret not in html


def test_status_and_impact_respect_the_hosts_authorisation(demo: tuple[Flask, Any]) -> None:
    app, _ = demo
    guard = app.extensions["hermes_plugin"].guard
    guard.authorize(lambda action, session: action not in ("status", "impact"))
    client = app.test_client()
    assert client.get("/hermes-plugin/status").status_code == 403
    assert client.get("/hermes-plugin/api/impact").status_code == 403
    assert client.get("/hermes-plugin/api/catalog").status_code == 200


def test_status_and_impact_through_the_proxy_ask_the_upstream_who_may_see_them(
    loopback_server: Callable[[Any], Any],
) -> None:
    """Behind the proxy the upstream decides: its own answer to the caller's cookie gates both routes."""
    import requests

    from hermes_plugin.proxy import create_app as create_proxy
    from hermes_plugin.proxy import load_config

    upstream = Flask("signed_in_only")

    @upstream.get("/")
    def home() -> Any:
        from flask import request

        return ("ok", 200) if request.cookies.get("sid") == "good" else ("sign in", 401)

    @upstream.get("/api/sessions")
    def sessions() -> Any:
        return {"sessions": [{"session_id": "a1", "model": "m/one"}]}

    @upstream.get("/api/settings")
    def settings() -> Any:
        return {"default_model": "m/one"}

    proxy = loopback_server(
        create_proxy(loopback_server(upstream).url, cfg=load_config(preset_name="hermes-webui"))
    ).url
    for path in ("/hermes-plugin/status", "/hermes-plugin/api/impact"):
        assert requests.get(proxy + path, timeout=10).status_code == 401
        assert requests.get(proxy + path, cookies={"sid": "bad"}, timeout=10).status_code == 401
        assert requests.get(proxy + path, cookies={"sid": "good"}, timeout=10).status_code == 200
    report = requests.get(proxy + "/hermes-plugin/api/impact?refresh=1", cookies={"sid": "good"}, timeout=10).json()
    assert report["counts"]["checked"] == 1  # listed from the upstream's session list


def test_impact_through_the_proxy_preset_for_the_plain_demo(
    tmp_path: Path, fake_provider: Callable[..., Any], loopback_server: Callable[[Any], Any]
) -> None:
    """The demo's http.server build behind ``--preset demo``: catalogs learnt from the app's own answers,
    sessions and the default model listed from its own API."""
    import requests

    from hermes_plugin.demo.plain import PlainDemo
    from hermes_plugin.proxy import create_app as create_proxy
    from hermes_plugin.proxy import load_config

    openrouter = fake_provider("openai", [*RETIRED_LIVE, "openrouter/gpt-5"])  # kimi and llama-3 are gone already
    localai = fake_provider("ollama", LOCALAI_LIVE)
    plain = PlainDemo(demo_providers(openrouter.base_url, localai.base_url), tmp_path).serve()
    try:
        proxy = loopback_server(create_proxy(plain.url, cfg=load_config(preset_name="demo"))).url
        json_only = {"Accept": "application/json"}
        requests.post(plain.url + "/api/settings", json={"default_model": "openrouter/llama-3"}, timeout=10)
        for path in ("/api/models", "/api/models/live?provider=openrouter", "/api/models/live?provider=localai"):
            assert requests.get(proxy + path, headers=json_only, timeout=30).status_code == 200
        report = requests.get(proxy + "/hermes-plugin/api/impact?refresh=1", timeout=30).json()
    finally:
        plain.stop()
    assert absent_sessions(report) == {
        "retired": "openrouter/gpt-3-retired",
        "kimi": "moonshotai/kimi-k2",
        "llama": "openrouter/llama-3",
    }
    assert [(d["name"], d["model"]) for d in report["defaults"]] == [("default_model", "openrouter/llama-3")]
