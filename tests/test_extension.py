"""ModelGuard against a real host on loopback: every row of the decision table, versions, audit, API, hooks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, jsonify
from support.hostapp import create_app, provider_config, running

from hermes_plugin import ModelGuard, hookimpl
from hermes_plugin.testing.fake_provider import FakeProvider

LIVE_ONLY = "live/kimi-k2"  # like Kimi K2 in the upstream bug: only the live catalog lists it
STATIC = "static/opus"
P = "/hermes-plugin"


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider("openai", models=[LIVE_ONLY, "live/other"]) as fake:
        yield fake


@pytest.fixture
def app(tmp_path, provider) -> Flask:
    return create_app(tmp_path, sessions={"s1": LIVE_ONLY, "gone": "live/retired"},
                      HERMES_PLUGIN_PROVIDERS={"prov": provider_config(provider, [STATIC])})


@pytest.fixture
def url(app) -> Iterator[str]:
    with running(app) as base:
        yield base


def write(url: str, body: Any, intent: str | None = "auto", path: str = "/api/session/update",
          **headers: str) -> requests.Response:
    if intent is not None:
        headers["X-Hermes-Intent"] = intent
    return requests.post(url + path, json=body, headers=headers, timeout=30)


def stored(app: Flask, session: str = "s1") -> str:
    return app.store.get(session)["model"]  # type: ignore[attr-defined, no-any-return]


def log_of(url: str, session: str = "s1") -> list[dict[str, Any]]:
    return requests.get(f"{url}{P}/api/sessions/{session}/model-log", timeout=10).json()["entries"]


# -- the decision table, one test per row, through real HTTP ---------------------------------------

def test_same_model_passes(app, url):
    response = write(url, {"session_id": "s1", "model": LIVE_ONLY})
    assert response.status_code == 200
    assert response.headers["X-Hermes-Decision"] == "pass"
    assert response.headers["ETag"] == '"1"'
    assert "X-Hermes-Model-Kept" not in response.headers
    assert log_of(url) == []


def test_user_intent_passes_and_is_audited(app, url, provider):
    response = write(url, {"session_id": "s1", "model": STATIC}, intent="user")
    assert response.headers["X-Hermes-Decision"] == "pass"
    assert response.headers["ETag"] == '"2"'
    assert stored(app) == STATIC
    assert provider.requests == 0  # a user's pick never waits for, or triggers, a catalog fetch
    [entry] = log_of(url)
    assert entry | {"time": 0} == {"time": 0, "old": LIVE_ONLY, "new": STATIC, "proposed": STATIC,
                                   "intent": "user", "outcome": "pass", "reason": "user", "by": "user"}


def test_auto_write_keeps_a_present_model(app, url, provider):
    before = app.store.raw()
    response = write(url, {"session_id": "s1", "model": STATIC})
    assert response.status_code == 200
    assert response.headers["X-Hermes-Decision"] == "keep"
    assert response.headers["X-Hermes-Model-Kept"] == "model_present"
    assert response.headers["ETag"] == '"1"'
    assert app.store.raw() == before
    assert provider.requests == 1  # never fetched before: the guard asked the provider first
    [entry] = log_of(url)
    assert (entry["old"], entry["new"], entry["proposed"], entry["outcome"], entry["reason"]) == (
        LIVE_ONLY, LIVE_ONLY, STATIC, "keep", "model_present")


@pytest.mark.parametrize("fault", ["500", "refused", "malformed"])
def test_auto_write_keeps_the_model_when_the_catalog_is_unknown(app, url, provider, fault):
    provider.fault = fault
    before = app.store.raw()
    response = write(url, {"session_id": "s1", "model": STATIC})
    assert response.status_code == 200
    assert response.headers["X-Hermes-Model-Kept"] == "catalog_unknown"
    assert app.store.raw() == before
    assert log_of(url)[0]["reason"] == "catalog_unknown"
    state = requests.get(f"{url}{P}/api/sessions/s1/model", timeout=10).json()
    assert state["availability"] == "unknown"


def test_auto_write_replaces_a_confirmed_absent_model(app, url):
    response = write(url, {"session_id": "gone", "model": STATIC})
    assert response.headers["X-Hermes-Decision"] == "fallback"
    assert "X-Hermes-Model-Kept" not in response.headers
    assert response.headers["ETag"] == '"2"'
    assert stored(app, "gone") == STATIC
    [entry] = log_of(url, "gone")
    assert (entry["old"], entry["new"], entry["outcome"], entry["reason"]) == (
        "live/retired", STATIC, "fallback", "model_absent")


def test_keep_still_writes_the_rest(app, url):
    response = write(url, {"session_id": "s1", "model": STATIC, "workspace": "projects"})
    assert response.status_code == 200
    assert response.json()["session"] == {"model": LIVE_ONLY, "workspace": "projects"}
    assert app.store.get("s1") == {"model": LIVE_ONLY, "workspace": "projects"}


def test_keep_rewrites_the_raw_body_too(app, url):
    response = write(url, {"model": STATIC}, path="/chats/s1/model")
    assert response.text == "ok"
    assert response.headers["X-Hermes-Model-Kept"] == "model_present"
    assert stored(app) == LIVE_ONLY


def test_url_variable_session_user_write(app, url):
    response = write(url, {"model": STATIC}, intent="user", path="/chats/s1/model")
    assert response.headers["X-Hermes-Decision"] == "pass"
    assert stored(app) == STATIC


def test_reject_policy_answers_409_and_changes_nothing(tmp_path, provider):
    app = create_app(tmp_path, sessions={"s1": LIVE_ONLY}, HERMES_PLUGIN_ON_KEEP="reject",
                     HERMES_PLUGIN_PROVIDERS={"prov": provider_config(provider)})
    before = app.store.raw()
    with running(app) as url:
        response = write(url, {"session_id": "s1", "model": STATIC, "workspace": "elsewhere"})
        assert response.status_code == 409
        assert response.json() == {
            "error": "model_write_rejected", "reason": "model_present", "stored_model": LIVE_ONLY,
            "proposed_model": STATIC, "detail": response.json()["detail"]}
        assert response.headers["ETag"] == '"1"'
        assert app.store.raw() == before
        assert log_of(url)[0]["outcome"] == "reject"


@pytest.mark.parametrize(("policy", "headers", "decision"), [
    ("browser-auto", {"Sec-Fetch-Site": "same-origin"}, "keep"),
    ("browser-auto", {}, "pass"),
    ("user", {"Sec-Fetch-Site": "same-origin"}, "pass"),
    ("auto", {}, "keep"),
])
def test_unmarked_intent_policy(tmp_path, provider, policy, headers, decision):
    app = create_app(tmp_path, sessions={"s1": LIVE_ONLY}, HERMES_PLUGIN_UNMARKED_INTENT=policy,
                     HERMES_PLUGIN_PROVIDERS={"prov": provider_config(provider)})
    with running(app) as url:
        response = write(url, {"session_id": "s1", "model": STATIC}, intent=None, **headers)
        assert response.headers["X-Hermes-Decision"] == decision


def test_new_session_route_without_a_session_passes(app, url, provider):
    response = write(url, {"model": STATIC}, path="/api/session/new")
    assert response.status_code == 200
    assert response.headers["X-Hermes-Decision"] == "pass"
    assert app.store.get(response.json()["session_id"])["model"] == STATIC
    assert provider.requests == 0


def test_failed_view_records_nothing(app, url):
    response = write(url, {"session_id": "s1", "model": STATIC}, intent="user", path="/api/session/fail")
    assert response.status_code == 507
    assert log_of(url) == []
    # The view stored the model before failing: the version follows what is stored, not what the view said.
    assert app.store.get("s1")["model"] == STATIC
    assert requests.get(f"{url}{P}/api/sessions/s1/model", timeout=10).json()["version"] == 2


# -- versions -----------------------------------------------------------------------------------

def test_if_match_race_one_client_loses(app, url):
    version = requests.get(f"{url}{P}/api/sessions/s1/model", timeout=10).headers["ETag"]
    assert version == '"1"'
    first = write(url, {"session_id": "s1", "model": STATIC}, intent="user", **{"If-Match": version})
    second = write(url, {"session_id": "s1", "model": "live/other"}, intent="user", **{"If-Match": version})
    assert first.status_code == 200
    assert second.status_code == 412
    assert second.json()["error"] == "stale_version"
    assert second.json()["version"] == 2
    assert second.headers["ETag"] == '"2"'
    assert stored(app) == STATIC


def test_concurrent_if_match_writers_never_lose_an_update(app, url):
    start = threading.Barrier(8)
    results: list[int] = []

    def writer(index: int) -> None:
        start.wait()
        response = write(url, {"session_id": "s1", "model": f"live/m{index}"}, intent="user", **{"If-Match": '"1"'})
        results.append(response.status_code)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [200] + [412] * 7
    [entry] = log_of(url)
    assert stored(app) == entry["new"]


def test_etag_on_every_guarded_response(app, url):
    for body, intent in [({"session_id": "s1", "model": LIVE_ONLY}, "auto"), ({"session_id": "s1", "model": STATIC}, "auto"),
                         ({"session_id": "s1", "model": STATIC}, "user"), ({"session_id": "s1", "workspace": "w"}, "auto")]:
        response = write(url, body, intent=intent)
        assert response.status_code == 200
        assert response.headers["ETag"].strip('"').isdigit()


# -- the plugin's API ----------------------------------------------------------------------------

def test_audit_log_is_bounded(tmp_path, provider):
    app = create_app(tmp_path, sessions={"s1": LIVE_ONLY}, HERMES_PLUGIN_AUDIT_SIZE=3,
                     HERMES_PLUGIN_PROVIDERS={"prov": provider_config(provider)})
    with running(app) as url:
        for index in range(5):
            write(url, {"session_id": "s1", "model": f"live/m{index}"}, intent="user")
        assert [entry["new"] for entry in log_of(url)] == ["live/m2", "live/m3", "live/m4"]
        assert requests.get(f"{url}{P}/api/sessions/s1/model", timeout=10).json()["version"] == 6


def test_session_model_endpoint(app, url):
    requests.get(f"{url}{P}/api/catalog", timeout=30)
    response = requests.get(f"{url}{P}/api/sessions/s1/model", timeout=10)
    assert response.json() == {"session": "s1", "model": LIVE_ONLY, "version": 1, "availability": "present",
                               "provider": "prov", "reason": response.json()["reason"], "aliases": [],
                               "replacement": None, "price": None, "absent_model": "fallback"}
    assert response.headers["ETag"] == '"1"'
    missing = requests.get(f"{url}{P}/api/sessions/nobody/model", timeout=10).json()
    assert (missing["model"], missing["availability"]) == (None, None)
    assert requests.get(f"{url}{P}/api/sessions/{'x' * 300}/model", timeout=10).json()["error"] == "bad_request"


def test_catalog_api(url, provider):
    providers = requests.get(f"{url}{P}/api/catalog", timeout=30).json()["providers"]
    [prov] = providers
    assert (prov["id"], prov["state"]) == ("prov", "fresh")
    assert [(m["id"], m["source"]) for m in prov["models"]] == [(STATIC, "static"), (LIVE_ONLY, "live"),
                                                                 ("live/other", "live")]
    one = requests.get(f"{url}{P}/api/catalog/prov", timeout=30)
    assert one.json()["id"] == "prov"
    assert provider.requests == 1
    requests.get(f"{url}{P}/api/catalog/prov?refresh=1", timeout=30)
    assert provider.requests == 2
    unknown = requests.get(f"{url}{P}/api/catalog/nope", timeout=10)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_provider"


def test_no_api_key_in_any_response(tmp_path, monkeypatch):
    secret = "sk-test-very-secret-0123456789"
    monkeypatch.setenv("HOSTAPP_TEST_KEY", secret)
    with FakeProvider("openai", models=[LIVE_ONLY], api_key=secret) as fake:
        table = provider_config(fake) | {"api_key_env": "HOSTAPP_TEST_KEY"}
        app = create_app(tmp_path, sessions={"s1": LIVE_ONLY}, HERMES_PLUGIN_PROVIDERS={"prov": table})
        with running(app) as url:
            bodies = [requests.get(f"{url}{path}", timeout=30).text for path in (
                f"{P}/api/catalog", f"{P}/api/catalog/prov?refresh=1", f"{P}/api/sessions/s1/model", "/")]
            assert '"fresh"' in bodies[0]
            fake.fault = "500"
            bodies.append(requests.get(f"{url}{P}/api/catalog/prov?refresh=1", timeout=30).text)
            assert all(secret not in body for body in bodies)


def test_plugin_404_and_405_are_json(url):
    missing = requests.get(f"{url}{P}/nothing/here", timeout=10)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = requests.post(f"{url}{P}/api/catalog", timeout=10)
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]
    host_missing = requests.get(f"{url}/nothing/here", timeout=10)
    assert host_missing.status_code == 404
    assert "json" not in host_missing.headers["Content-Type"]  # the host's own 404 page is untouched


def test_guard_script_is_served(url):
    response = requests.get(f"{url}{P}/static/hermes-guard.js", timeout=10)
    assert response.status_code == 200
    assert "javascript" in response.headers["Content-Type"]


# -- hooks and authorisation ----------------------------------------------------------------------

def test_hook_model_write_decided(app, url):
    seen: list[Any] = []

    class Observer:
        @hookimpl
        def model_write_decided(self, decision: Any) -> None:
            seen.append(decision)

    class Broken:
        @hookimpl
        def model_write_decided(self, decision: Any) -> None:
            raise RuntimeError("observer bug")

    pm = app.extensions["hermes_plugin"].pm
    pm.register(Observer(), name="test-observer")
    pm.register(Broken(), name="test-broken")
    try:
        response = write(url, {"session_id": "s1", "model": STATIC})
        assert response.status_code == 200  # a raising observer never breaks the write
        write(url, {"session_id": "s1", "model": STATIC}, intent="user")
    finally:
        pm.unregister(name="test-observer")
        pm.unregister(name="test-broken")
    assert [(d.outcome, d.reason, d.session, d.stored, d.proposed) for d in seen] == [
        ("keep", "model_present", "s1", LIVE_ONLY, STATIC), ("pass", "user", "s1", LIVE_ONLY, STATIC)]


def test_hook_authorize_request(app, url):
    calls: list[tuple[str, str | None]] = []

    class Gate:
        @hookimpl
        def authorize_request(self, request: Any, action: str, session_id: str | None) -> bool | None:
            calls.append((action, session_id))
            return False if session_id == "secret" or action == "refresh" else None

    pm = app.extensions["hermes_plugin"].pm
    pm.register(Gate(), name="test-gate")
    try:
        assert requests.get(f"{url}{P}/api/catalog", timeout=30).status_code == 200
        refused = requests.get(f"{url}{P}/api/catalog?refresh=1", timeout=10)
        assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
        assert requests.get(f"{url}{P}/api/sessions/s1/model-log", timeout=10).status_code == 200
        assert requests.get(f"{url}{P}/api/sessions/secret/model", timeout=10).status_code == 403
    finally:
        pm.unregister(name="test-gate")
    assert calls == [("catalog", None), ("refresh", None), ("model_log", "s1"), ("session_model", "secret")]


def test_guard_authorize_decorator(app, url):
    @app.guard.authorize
    def only_catalog(action: str, session_id: str | None) -> bool:
        return action == "catalog"

    try:
        assert requests.get(f"{url}{P}/api/catalog", timeout=30).status_code == 200
        assert requests.get(f"{url}{P}/api/sessions/s1/model", timeout=10).status_code == 403
    finally:
        app.guard._authorizers.remove(only_catalog)


def test_host_before_request_guards_plugin_routes(tmp_path, provider):
    app = create_app(tmp_path, sessions={"s1": LIVE_ONLY}, HERMES_PLUGIN_PROVIDERS={"prov": provider_config(provider)})

    @app.before_request
    def require_login() -> Any:
        from flask import request
        if request.headers.get("Authorization") != "Bearer host-token":
            return jsonify({"error": "login required"}), 401
        return None

    with running(app) as url:
        for path in ("/api/catalog", "/api/sessions/s1/model", "/api/sessions/s1/model-log"):
            assert requests.get(f"{url}{P}{path}", timeout=10).status_code == 401
        ok = requests.get(f"{url}{P}/api/catalog", headers={"Authorization": "Bearer host-token"}, timeout=30)
        assert ok.status_code == 200


# -- extension shape ------------------------------------------------------------------------------

def test_init_app_factory_and_two_apps_keep_separate_state(tmp_path, provider):
    guard = ModelGuard()
    first = create_app(tmp_path / "a", guard=guard, sessions={"s1": LIVE_ONLY}, HERMES_PLUGIN_PREFIX="/guard-a",
                       HERMES_PLUGIN_PROVIDERS={"prov": provider_config(provider)})
    second = create_app(tmp_path / "b", guard=guard, sessions={"s1": LIVE_ONLY},
                        HERMES_PLUGIN_PROVIDERS={"other": provider_config(provider)})
    assert first.extensions["hermes_plugin"] is not second.extensions["hermes_plugin"]
    with first.app_context():
        assert guard.catalog.provider_ids() == ["prov"]
        assert guard.pm is first.extensions["hermes_plugin"].pm
    with second.app_context():
        assert guard.catalog.provider_ids() == ["other"]
    with pytest.raises(RuntimeError):
        guard.catalog  # noqa: B018  # two apps and no context: ambiguous
    with running(first) as url_a, running(second) as url_b:
        write(url_a, {"session_id": "s1", "model": STATIC}, intent="user")
        assert requests.get(f"{url_a}/guard-a/api/sessions/s1/model", timeout=10).json()["version"] == 2
        assert requests.get(f"{url_b}{P}/api/sessions/s1/model", timeout=10).json()["version"] == 1
        assert requests.get(f"{url_b}/guard-a/api/catalog", timeout=10).status_code == 404
        assert first.store.get("s1")["model"] == STATIC
        assert second.store.get("s1")["model"] == LIVE_ONLY


def test_config_defaults_and_single_app_catalog(tmp_path):
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["HERMES_PLUGIN_CACHE"] = "memory"
    guard = ModelGuard(app)
    assert app.config["HERMES_PLUGIN_PREFIX"] == "/hermes-plugin"
    assert app.config["HERMES_PLUGIN_ON_KEEP"] == "keep"
    assert app.config["HERMES_PLUGIN_UNMARKED_INTENT"] == "browser-auto"
    assert app.config["HERMES_PLUGIN_MODEL_SELECT"] == "#modelSelect, [data-hermes-model]"
    assert guard.catalog.provider_ids() == []  # no app context needed with one app
    assert not hasattr(guard, "app")


@pytest.mark.parametrize(("key", "value"), [("HERMES_PLUGIN_ON_KEEP", "ignore"), ("HERMES_PLUGIN_PREFIX", "nope"),
                                            ("HERMES_PLUGIN_UNMARKED_INTENT", "maybe"), ("HERMES_PLUGIN_WS_QUEUE", 0)])
def test_bad_config_fails_at_init(tmp_path, key, value):
    from hermes_plugin import ConfigError
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update({"HERMES_PLUGIN_CACHE": "memory", key: value})
    with pytest.raises(ConfigError, match=key):
        ModelGuard(app)
