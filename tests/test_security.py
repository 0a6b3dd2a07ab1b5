"""Issue #5 (5): the promises of SECURITY.md, each checked against real loopback servers.

- a configured API key never appears in any response: every plugin route, catalog errors of every
  fault (including a provider that echoes the key back), injected pages, guarded-write answers, WS;
- every plugin route (and the WebSocket) goes through the host's authorisation;
- cross-origin guarded writes are refused on every guarded route;
- no SSRF: nothing a request carries makes the server contact a URL that is not in its configuration.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, request
from support.hostapp import create_app, provider_config, running
from support.wsclient import RawWS, Refused

from hermes_plugin import hookimpl
from hermes_plugin.testing.fake_provider import FakeProvider
from hermes_plugin.testing.servers import LoopbackServer

P = "/hermes-plugin"
SECRET = "sk-hermes-secret-4f9c2a7e1b"
LIVE_ONLY = "live/kimi-k2"
FAULTS = [None, "500", "429", "timeout", "refused", "malformed", "schema", "huge", "drip"]


def echoing_provider() -> Flask:
    """A hostile provider that puts whatever credentials it got into its status text, headers and body."""
    app = Flask("echo")

    @app.get("/v1/models")
    def models() -> Any:
        got = request.headers.get("Authorization", "") + " " + request.headers.get("x-api-key", "")
        return {"error": {"message": f"bad key {got}"}, "data": [{"id": f"echo{got}"}]}, 401, {"X-Echo": got}

    return app


@pytest.fixture
def keyed_host(tmp_path, monkeypatch) -> Iterator[tuple[Any, str, FakeProvider]]:
    monkeypatch.setenv("HERMES_TEST_SECRET", SECRET)
    echo = LoopbackServer(echoing_provider()).start()
    with FakeProvider("openai", models=[LIVE_ONLY], api_key=SECRET) as fake:
        providers = {"prov": provider_config(fake) | {"api_key_env": "HERMES_TEST_SECRET"},
                     "echo": {"kind": "openai-compatible", "base_url": echo.url + "/v1",
                              "api_key_env": "HERMES_TEST_SECRET"}}
        app = create_app(tmp_path, sessions={"s1": LIVE_ONLY}, HERMES_PLUGIN_PROVIDERS=providers,
                         HERMES_PLUGIN_FETCH_TIMEOUT=1)
        try:
            with running(app) as url:
                yield app, url, fake
        finally:
            fake.release()
            echo.stop()


def everything(url: str) -> list[str]:
    """Status line, headers and body of every plugin route, the page and guarded writes (good and bad)."""
    seen = []
    gets = [f"{P}/api/catalog", f"{P}/api/catalog?refresh=1", f"{P}/api/catalog/prov?refresh=1",
            f"{P}/api/catalog/echo?refresh=1", f"{P}/api/catalog/nope", f"{P}/api/sessions/s1/model",
            f"{P}/api/sessions/s1/model-log", f"{P}/api/sessions/%00/model", f"{P}/static/hermes-guard.js",
            f"{P}/nothing", "/", "/api/session?session_id=s1"]
    for path in gets:
        response = requests.get(url + path, timeout=30)
        seen.append(f"{response.status_code} {response.reason} {dict(response.headers)} {response.text}")
    writes = [({"session_id": "s1", "model": "prov/other"}, {"X-Hermes-Intent": "auto"}),
              ({"session_id": "s1", "model": LIVE_ONLY}, {"X-Hermes-Intent": "user", "If-Match": '"999"'}),
              ({"session_id": "s1", "model": "a\u0000"}, {}),
              ({"session_id": "s1", "model": LIVE_ONLY}, {"Origin": "http://evil.example"})]
    for body, headers in writes:
        response = requests.post(url + "/api/session/update", json=body, headers=headers, timeout=30)
        seen.append(f"{response.status_code} {dict(response.headers)} {response.text}")
    return seen


@pytest.mark.parametrize("fault", FAULTS)
def test_the_api_key_is_in_no_response_under_any_provider_fault(keyed_host, fault):
    app, url, fake = keyed_host
    fake.fault = fault
    ws = RawWS(url)
    try:
        assert ws.receive_json() == {"type": "hello"}
        seen = everything(url)
        # A write that changes the model produces a WS event; read up to it so WS traffic is checked too.
        requests.post(f"{url}/api/session/update", json={"session_id": "s1", "model": "prov/user-pick"},
                      headers={"X-Hermes-Intent": "user"}, timeout=30)
        messages = [ws.receive_json()]
        while messages[-1].get("type") != "model":
            messages.append(ws.receive_json())
        seen += [json.dumps(m) for m in messages]
    finally:
        ws.close()
        fake.release()
    echo = app.guard.state(app).catalog.snapshot("echo")
    assert echo.state == "failed" and "401" in (echo.error or "")  # the echoing provider was really asked
    assert any('"providers"' in s for s in seen)
    leaks = [s[:200] for s in seen if SECRET in s]
    assert leaks == []
    assert SECRET not in json.dumps(app.guard.state(app).catalog.snapshot("echo").to_json())


def test_the_key_is_in_no_injected_page_or_config_element(keyed_host):
    _, url, _ = keyed_host
    page = requests.get(url + "/", timeout=30)
    assert "hermes-plugin-config" in page.text  # the page really was injected
    assert SECRET not in page.text and "HERMES_TEST_SECRET" not in page.text


# -- authorisation ----------------------------------------------------------------------------------


ROUTES = {"catalog": f"{P}/api/catalog", "catalog one": f"{P}/api/catalog/prov",
          "refresh": f"{P}/api/catalog?refresh=1", "session_model": f"{P}/api/sessions/s1/model",
          "model_log": f"{P}/api/sessions/s1/model-log"}


def test_a_host_that_denies_everything_gets_403_on_every_plugin_route_and_the_websocket(tmp_path):
    app = create_app(tmp_path, sessions={"s1": LIVE_ONLY})
    calls: list[str] = []

    class DenyAll:
        @hookimpl
        def authorize_request(self, request: Any, action: str, session_id: str | None) -> bool | None:
            calls.append(action)
            return False

    pm = app.extensions["hermes_plugin"].pm
    pm.register(DenyAll(), name="test-deny-all")
    try:
        with running(app) as url:
            for name, path in ROUTES.items():
                response = requests.get(url + path, timeout=30)
                assert (response.status_code, response.json()["error"]) == (403, "forbidden"), name
            with pytest.raises(Refused) as refused:
                RawWS(url)  # the upgrade is refused before any hello
            assert refused.value.status_code == 403
    finally:
        pm.unregister(name="test-deny-all")
    assert set(calls) == {"catalog", "refresh", "session_model", "model_log", "ws"}


@pytest.mark.parametrize("route", ["/api/session/update", "/api/session/new", "/chats/s1/model"])
@pytest.mark.parametrize("origin", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}])
def test_cross_origin_writes_are_refused_on_every_guarded_route(tmp_path, route, origin):
    app = create_app(tmp_path, sessions={"s1": LIVE_ONLY})
    before = app.store.raw()
    with running(app) as url:
        response = requests.post(url + route, json={"session_id": "s1", "model": "x/y"},
                                 headers={"X-Hermes-Intent": "user", **origin}, timeout=30)
    assert (response.status_code, response.json()["error"]) == (403, "cross_origin")
    assert app.store.raw() == before


# -- no SSRF ------------------------------------------------------------------------------------------


def test_no_request_makes_the_server_fetch_a_url_it_was_not_configured_with(tmp_path):
    hits: list[str] = []
    hit = threading.Event()
    canary_app = Flask("canary")

    @canary_app.route("/", defaults={"path": ""})
    @canary_app.route("/<path:path>")
    def canary(path: str) -> str:
        hits.append(path)
        hit.set()
        return '{"data": [{"id": "canary/model"}]}'

    server = LoopbackServer(canary_app).start()
    try:
        with FakeProvider("openai", models=[LIVE_ONLY]) as fake:
            app = create_app(tmp_path, sessions={"s1": LIVE_ONLY},
                             HERMES_PLUGIN_PROVIDERS={"prov": provider_config(fake)})
            target = server.url + "/v1"
            with running(app) as url:
                for path in (f"{P}/api/catalog/{requests.utils.quote(target, safe='')}?refresh=1",
                             f"{P}/api/catalog?refresh=1&base_url={target}&url={target}",
                             f"{P}/api/catalog/prov?refresh=1&base_url={target}",
                             f"{P}/api/sessions/{requests.utils.quote(target, safe='')}/model",
                             f"/api/models/live?provider={target}"):
                    response = requests.get(url + path, headers={"X-Forwarded-Host": server.url,
                                                                 "Referer": target}, timeout=30)
                    assert response.status_code < 500
                write = requests.post(url + "/api/session/update", timeout=30,
                                      json={"session_id": "s1", "model": target, "base_url": target,
                                            "provider": {"kind": "openai-compatible", "base_url": target}},
                                      headers={"X-Hermes-Intent": "auto"})
                assert write.status_code < 500
                fetched = requests.get(f"{url}{P}/api/catalog?refresh=1", timeout=30).json()
        assert [p["id"] for p in fetched["providers"]] == ["prov"]  # only the configured provider exists
        assert fake.requests >= 1  # the configured provider was fetched ...
        assert hits == []  # ... and the unconfigured URL never was
    finally:
        server.stop()
