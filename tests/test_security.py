"""The promises of SECURITY.md, each checked against real loopback servers.

- a configured API key never appears in any response: every plugin route, catalog errors of every
  fault (including a provider that echoes the key back), injected pages, guarded-write answers, WS;
- every plugin route (and the WebSocket) goes through the host's authorisation;
- cross-origin guarded writes are refused on every guarded route;
- no SSRF: nothing a request carries makes the server contact a URL that is not in its configuration.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, request
from support.hostapp import create_app, provider_config, running
from support.wsclient import RawWS, Refused

from hermes_plugin import hookimpl
from hermes_plugin.testing.fake_provider import FakeProvider

P = "/hermes-plugin"
SECRET = "sk-hermes-secret-4f9c2a7e1b"
LIVE_ONLY = "live/kimi-k2"
FAULTS = [None, "500", "429", "timeout", "refused", "malformed", "schema", "huge", "deep", "drip"]


def echoing_provider() -> Flask:
    """A hostile provider that puts whatever credentials it got into its status text, headers and body."""
    app = Flask("echo")

    @app.get("/v1/models")
    def models() -> Any:
        got = request.headers.get("Authorization", "") + " " + request.headers.get("x-api-key", "")
        return {"error": {"message": f"bad key {got}"}, "data": [{"id": f"echo{got}"}]}, 401, {"X-Echo": got}

    return app


@pytest.fixture
def keyed_host(tmp_path, monkeypatch, loopback_server) -> Iterator[tuple[Any, str, FakeProvider]]:
    monkeypatch.setenv("HERMES_TEST_SECRET", SECRET)
    echo = loopback_server(echoing_provider())
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


def test_no_request_makes_the_server_fetch_a_url_it_was_not_configured_with(tmp_path, loopback_server):
    hits: list[str] = []
    hit = threading.Event()
    canary_app = Flask("canary")

    @canary_app.route("/", defaults={"path": ""})
    @canary_app.route("/<path:path>")
    def canary(path: str) -> str:
        hits.append(path)
        hit.set()
        return '{"data": [{"id": "canary/model"}]}'

    server = loopback_server(canary_app)
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


# -- credentials: redacted everywhere, never to another origin, never on disk, part of the cache key --------

LONG_KEY = "sk-proj-" + "Zq8v3NcT4wLm9XbR" * 3 + "Hf7Kd2Pa5Ys1Ue6Ji0"  # 74 characters, like real project keys
AZURE_KEY = "az-7c1e9b0f4a6d4e2b8f3a5c7d9e1f2a4b"
PASSWORD = "pw-userinfo-6b2f9d1c8e"


def hostile_provider(other_origin: str) -> Flask:
    """Echoes credentials the ways real providers and WAFs do, redirects elsewhere, lists models per key."""
    app = Flask("hostile")

    def creds() -> str:
        return (request.headers.get("Authorization", "").removeprefix("Bearer ") or request.headers.get("api-key", "")
                or request.authorization.password if request.authorization else "")

    @app.get("/retry/v1/models")
    def retry() -> Any:  # 429 with the credential in Retry-After and in the error body
        got = request.headers.get("Authorization", "").removeprefix("Bearer ") or request.headers.get("api-key", "")
        return {"error": f"rate limited for key {got}"}, 429, {"Retry-After": f"{got} 30"}

    @app.get("/ids/v1/models")
    def ids() -> Any:  # a 200 whose ids and labels carry the credential
        got = request.headers.get("Authorization", "").removeprefix("Bearer ") or request.headers.get("api-key", "")
        return {"data": [{"id": "fine/model", "name": f"label {got[:20]}"}, {"id": f"leak/{got}"}]}

    @app.get("/moved/v1/models")
    def moved() -> Any:
        return "", 302, {"Location": other_origin + "/v1/models"}

    @app.get("/keyed/v1/models")
    def keyed() -> Any:  # what each key may use, as Azure and OpenAI projects do
        key = request.headers.get("api-key", "")
        return {"data": [{"id": {AZURE_KEY: "azure/gpt-a", AZURE_KEY[::-1]: "azure/gpt-b"}.get(key, "none/x")}]}

    @app.get("/userinfo/v1/models")
    def userinfo() -> Any:
        return {"data": [{"id": "basic/model"}]}

    return app


@pytest.fixture
def hostile(monkeypatch, loopback_server) -> Iterator[tuple[str, list[str]]]:
    monkeypatch.setenv("HERMES_LONG_KEY", LONG_KEY)
    other_hits: list[str] = []
    other = Flask("other-origin")

    @other.route("/<path:path>")
    def anything(path: str) -> Any:
        other_hits.append(json.dumps(dict(request.headers)))
        return {"data": [{"id": "other/model"}]}

    other_server = loopback_server(other)
    server = loopback_server(hostile_provider(other_server.url))
    yield server.url, other_hits


def hostile_providers(base: str) -> dict[str, Any]:
    host = base.removeprefix("http://")
    return {
        "retry": {"kind": "openai-compatible", "base_url": base + "/retry/v1", "api_key_env": "HERMES_LONG_KEY"},
        "retry-azure": {"kind": "openai-compatible", "base_url": base + "/retry/v1", "headers": {"api-key": AZURE_KEY}},
        "ids": {"kind": "openai-compatible", "base_url": base + "/ids/v1", "api_key_env": "HERMES_LONG_KEY"},
        "moved": {"kind": "openai-compatible", "base_url": base + "/moved/v1",
                  "headers": {"api-key": AZURE_KEY, "x-custom-token": AZURE_KEY[::-1]}},
        "keyed-a": {"kind": "openai-compatible", "base_url": base + "/keyed/v1", "headers": {"api-key": AZURE_KEY}},
        "keyed-b": {"kind": "openai-compatible", "base_url": base + "/keyed/v1",
                    "headers": {"api-key": AZURE_KEY[::-1]}},
        "userinfo": {"kind": "openai-compatible", "base_url": f"http://someone:{PASSWORD}@{host}/userinfo/v1"},
    }


def prefixes(*secrets: str) -> list[str]:
    return [secret[:8] for secret in secrets]


def test_echoed_keys_are_redacted_whole_and_cut_short_everywhere(tmp_path, hostile, caplog):
    base, _ = hostile
    app = create_app(tmp_path, HERMES_PLUGIN_PROVIDERS=hostile_providers(base), HERMES_PLUGIN_FETCH_TIMEOUT=2)
    with running(app) as url:
        texts = [requests.get(f"{url}{P}/api/catalog?refresh=1", timeout=30).text]
        texts += [requests.get(f"{url}{P}/api/catalog/{p}", timeout=30).text for p in ("retry", "retry-azure", "ids")]
    catalog = {p["id"]: p for p in json.loads(texts[0])["providers"]}
    assert "HTTP 429" in catalog["retry"]["error"] and "Retry-After" in catalog["retry"]["error"]  # really echoed
    assert "HTTP 429" in catalog["retry-azure"]["error"]
    assert [m["id"] for m in catalog["ids"]["models"]] == ["fine/model"]  # the id carrying the key is dropped
    from hermes_plugin.cli import cli

    with app.app_context():
        out = app.test_cli_runner().invoke(cli, ["catalog"]).output
    assert "retry-azure" in out
    texts += [out, caplog.text]
    leaks = [(prefix, text[:300]) for text in texts for prefix in prefixes(LONG_KEY, AZURE_KEY) if prefix in text]
    assert leaks == []


def test_credentials_never_follow_a_redirect_to_another_origin(tmp_path, hostile):
    base, other_hits = hostile
    app = create_app(tmp_path, HERMES_PLUGIN_PROVIDERS={"moved": hostile_providers(base)["moved"]})
    with running(app) as url:
        moved = requests.get(f"{url}{P}/api/catalog/moved?refresh=1", timeout=30).json()
    assert other_hits == []  # nothing, credentials or not, reached the other origin
    assert moved["state"] == "failed" and "another origin" in moved["error"]
    assert AZURE_KEY[:8] not in json.dumps(moved)


def test_the_sqlite_cache_holds_no_credential_and_is_private(tmp_path, hostile):
    import os
    import stat

    base, _ = hostile
    providers = {name: table for name, table in hostile_providers(base).items()
                 if name in ("keyed-a", "userinfo", "ids")}
    app = create_app(tmp_path, HERMES_PLUGIN_PROVIDERS=providers, HERMES_PLUGIN_CACHE="sqlite")
    with running(app) as url:
        catalog = requests.get(f"{url}{P}/api/catalog", timeout=30).json()
    assert {p["id"]: p["state"] for p in catalog["providers"]} == {"keyed-a": "fresh", "userinfo": "fresh",
                                                                   "ids": "fresh"}
    app.guard.state(app).catalog.close()
    files = [path for path in (tmp_path / "instance").rglob("*") if path.is_file()]
    assert files and any(path.name.endswith(".sqlite") for path in files)
    for path in files:
        data = path.read_bytes()
        for secret in (LONG_KEY, AZURE_KEY, PASSWORD, "someone:"):
            assert secret.encode() not in data, (path.name, secret)
        assert stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0, oct(os.stat(path).st_mode)
    folder = next(path for path in files if path.name.endswith(".sqlite")).parent
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_two_keys_on_one_url_never_share_a_cached_catalog(tmp_path, hostile):
    base, _ = hostile
    providers = {name: table for name, table in hostile_providers(base).items() if name.startswith("keyed-")}
    app = create_app(tmp_path, HERMES_PLUGIN_PROVIDERS=providers)
    with running(app) as url:
        first = requests.get(f"{url}{P}/api/catalog/keyed-a", timeout=30).json()
        second = requests.get(f"{url}{P}/api/catalog/keyed-b", timeout=30).json()
    assert [m["id"] for m in first["models"]] == ["azure/gpt-a"]
    assert [m["id"] for m in second["models"]] == ["azure/gpt-b"]


# -- observed catalogs: only from successful answers, bounded -----------------------------------------


def test_made_up_providers_from_outside_neither_pile_up_nor_change_decisions(tmp_path):
    with FakeProvider("openai", models=["prov/current"]) as fake:
        app = create_app(tmp_path, sessions={"s1": "prov/retired"},
                         HERMES_PLUGIN_PROVIDERS={"prov": provider_config(fake)}, HERMES_PLUGIN_MAX_OBSERVED=8,
                         HERMES_PLUGIN_LIVE_URLS=[{"url": r"/api/models/live\?provider=(?P<provider>[^&]+)",
                                                   "models": "models[].id"}])

        def live() -> Any:  # the host's own live-catalog route: 404 for providers it does not know
            provider = request.args.get("provider", "")
            if provider.startswith("listed-"):  # a host that answers 200 for anything it is asked
                return {"models": [{"id": f"{provider}/m"}]}
            return {"error": "unknown provider"}, 404

        app.add_url_rule("/api/models/live", "live", live)
        catalog = app.guard.state(app).catalog
        with running(app) as url:
            assert catalog.catalog("prov").state == "fresh"
            assert catalog.availability("prov/retired") == "absent"  # the configured provider no longer lists it
            with requests.Session() as client:
                for n in range(300):
                    assert client.get(f"{url}/api/models/live?provider=junk{n}", timeout=30).status_code == 404
                for n in range(30):
                    client.get(f"{url}/api/models/live?provider=listed-{n}", timeout=30)
            providers = requests.get(f"{url}{P}/api/catalog", timeout=30).json()["providers"]
            auto = requests.post(f"{url}/api/session/update", json={"session_id": "s1", "model": "prov/current"},
                                 headers={"X-Hermes-Intent": "auto"}, timeout=30)
    ids = [p["id"] for p in providers]
    assert not any(i.startswith("junk") for i in ids)  # a 404 teaches nothing
    assert len([i for i in ids if i.startswith("listed-")]) == 8  # the bound holds
    assert catalog.availability("prov/retired") == "absent"
    assert auto.headers["X-Hermes-Decision"] == "fallback"  # corrections for configured providers still work
    assert app.store.get("s1")["model"] == "prov/current"


def test_forced_refreshes_are_throttled_and_refused_cross_site(tmp_path):
    with FakeProvider("openai", models=[LIVE_ONLY]) as fake:
        app = create_app(tmp_path, HERMES_PLUGIN_PROVIDERS={"prov": provider_config(fake)})
        with running(app) as url:
            cross = requests.get(f"{url}{P}/api/catalog?refresh=1", headers={"Sec-Fetch-Site": "cross-site"},
                                 timeout=30)
            assert cross.status_code == 403 and cross.json()["error"] == "cross_origin"
            assert fake.requests == 0  # refused before anything was fetched
            for n in range(20):
                path = f"{P}/api/catalog?refresh=1" if n % 2 else f"{P}/api/catalog/prov?refresh=1"
                assert requests.get(url + path, timeout=30).status_code == 200
    assert fake.requests == 1  # twenty forced refreshes within the interval: one upstream fetch


# -- what reaches logs and terminals ------------------------------------------------------------------


def test_provider_texts_reach_the_terminal_without_escape_sequences(tmp_path, loopback_server):
    provider = Flask("escaping")

    @provider.get("/v1/models")
    def models() -> Any:
        return {"error": "slow down"}, 429, {"Retry-After": "\x1b]0;owned\x07\x1b[2J 30"}

    server = loopback_server(provider)
    app = create_app(tmp_path, HERMES_PLUGIN_PROVIDERS={
        "esc": {"kind": "openai-compatible", "base_url": server.url + "/v1"}})
    from hermes_plugin.cli import cli

    with app.app_context():
        out = app.test_cli_runner().invoke(cli, ["catalog"]).output
    assert "HTTP 429" in out and "Retry-After" in out  # the error really was printed
    assert "\x1b" not in out and "\x07" not in out


def test_the_proxy_access_log_cannot_be_forged_with_encoded_newlines(upstream_for_logs, caplog):
    import logging

    url = upstream_for_logs
    caplog.set_level(logging.INFO, logger="hermes_plugin.proxy.access")
    forged = '/x%0a127.0.0.1%20"GET%20/admin"%20200%0d'
    requests.get(url + forged, timeout=30)

    def logged() -> list[str]:
        return [record.getMessage() for record in caplog.records if record.name == "hermes_plugin.proxy.access"]

    deadline = time.monotonic() + 10
    while not logged() and time.monotonic() < deadline:  # a streamed answer is logged once the server closes it
        threading.Event().wait(0.01)
    lines = logged()
    assert lines and all("\n" not in line and "\r" not in line for line in lines)
    assert any("\\x0a" in line for line in lines)  # shown escaped, not dropped


@pytest.fixture
def upstream_for_logs(loopback_server) -> str:
    from hermes_plugin.proxy import create_app as create_proxy
    from hermes_plugin.proxy import proxy_config

    upstream = Flask("logged")

    @upstream.route("/<path:path>")
    def anything(path: str) -> Any:
        return {"path": path}

    up = loopback_server(upstream)
    return loopback_server(create_proxy(up.url, cfg=proxy_config({}))).url


def test_allowed_hosts_refuse_a_rebound_name_on_writes_plugin_routes_and_the_websocket(tmp_path):
    app = create_app(tmp_path, sessions={"s1": LIVE_ONLY}, HERMES_PLUGIN_ALLOWED_HOSTS=["localhost", "127.0.0.1"])
    before = app.store.raw()
    with running(app) as url:
        evil = {"Host": "rebind.evil.test", "Origin": "http://rebind.evil.test"}
        write = requests.post(f"{url}/api/session/update", json={"session_id": "s1", "model": "x/y"},
                              headers={**evil, "X-Hermes-Intent": "user"}, timeout=30)
        assert write.status_code == 403 and write.json()["error"] == "host_not_allowed"
        assert app.store.raw() == before
        for path in ROUTES.values():
            assert requests.get(url + path, headers=evil, timeout=30).status_code == 403
        with pytest.raises(Refused) as refused:
            RawWS(url, headers={"Origin": "http://rebind.evil.test"}, host_header="rebind.evil.test", timeout=30)
        assert refused.value.status_code == 403
        fine = requests.post(f"{url}/api/session/update", json={"session_id": "s1", "model": "x/y"},
                             headers={"X-Hermes-Intent": "user"}, timeout=30)
        assert fine.status_code == 200 and app.store.get("s1")["model"] == "x/y"
