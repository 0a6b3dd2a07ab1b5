"""New sessions follow the host's policy: an automatic create gets the host's default model, a pick passes."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from support.hostapp import create_app

from hermes_plugin import ConfigError, hookimpl


def create(app: Flask, model: str | None, intent: str | None = "auto", **headers: str) -> Any:
    body = {"workspace": "w"} if model is None else {"model": model}
    if intent is not None:
        headers["X-Hermes-Intent"] = intent
    return app.test_client().post("/api/session/new", json=body, headers=headers)


def stored(app: Flask, answer: Any) -> str:
    return app.store.get(answer.get_json()["session_id"])["model"]  # type: ignore[attr-defined, no-any-return]


def model_log(app: Flask, answer: Any) -> list[dict[str, Any]]:
    session = answer.get_json()["session_id"]
    return app.test_client().get(f"/hermes-plugin/api/sessions/{session}/model-log").get_json()["entries"]  # type: ignore[no-any-return]


def test_an_automatic_create_gets_the_configured_default(tmp_path):
    app = create_app(tmp_path, HERMES_PLUGIN_DEFAULT_MODEL="house/default")
    answer = create(app, "previous/chat-model")  # the picker still shows the open chat's model
    assert stored(app, answer) == "house/default"
    assert (answer.headers["X-Hermes-Decision"], answer.headers["X-Hermes-Model-Default"]) == (
        "default",
        "house/default",
    )
    [entry] = model_log(app, answer)
    assert {k: entry[k] for k in ("old", "new", "proposed", "intent", "outcome", "reason")} == {
        "old": None,
        "new": "house/default",
        "proposed": "previous/chat-model",
        "intent": "auto",
        "outcome": "default",
        "reason": "new_session_default",
    }


def test_a_users_pick_on_create_is_kept(tmp_path):
    app = create_app(tmp_path, HERMES_PLUGIN_DEFAULT_MODEL="house/default")
    answer = create(app, "picked/model", intent="user")
    assert stored(app, answer) == "picked/model" and answer.headers["X-Hermes-Decision"] == "pass"
    assert model_log(app, answer)[0]["reason"] == "no_stored_model"


def test_inherit_policy_keeps_the_pages_proposal(tmp_path):
    app = create_app(tmp_path, HERMES_PLUGIN_DEFAULT_MODEL="house/default", HERMES_PLUGIN_NEW_SESSION_MODEL="inherit")
    answer = create(app, "previous/chat-model")
    assert stored(app, answer) == "previous/chat-model" and answer.headers["X-Hermes-Decision"] == "pass"


def test_without_a_default_source_the_create_passes(tmp_path):
    app = create_app(tmp_path)
    assert stored(app, create(app, "previous/chat-model")) == "previous/chat-model"


def test_a_create_without_a_model_is_left_to_the_host(tmp_path):
    app = create_app(tmp_path, HERMES_PLUGIN_DEFAULT_MODEL="house/default")
    answer = create(app, None)
    assert stored(app, answer) == "default" and answer.headers["X-Hermes-Decision"] == "pass"  # the host's own


def test_unmarked_browser_creates_follow_the_unmarked_policy(tmp_path):
    app = create_app(tmp_path, HERMES_PLUGIN_DEFAULT_MODEL="house/default")
    browser = create(app, "previous/chat-model", intent=None, **{"Sec-Fetch-Site": "same-origin"})
    script = create(app, "scripted/model", intent=None)  # no browser, no guard script: a person's tool
    assert (stored(app, browser), stored(app, script)) == ("house/default", "scripted/model")


class PerUserDefault:
    """A host plugin: each user's own default, from the host's settings (no network I/O)."""

    @hookimpl
    def hermes_plugin_default_model(self, request: Any) -> str | None:
        return {"alice": "alice/favourite"}.get(request.headers.get("X-User", ""))


def test_hook_hermes_plugin_default_model(tmp_path):
    app = create_app(tmp_path, HERMES_PLUGIN_DEFAULT_MODEL="house/default")
    app.guard.state(app).pm.register(PerUserDefault())  # type: ignore[attr-defined]
    assert stored(app, create(app, "previous/chat-model", **{"X-User": "alice"})) == "alice/favourite"
    assert stored(app, create(app, "previous/chat-model", **{"X-User": "bob"})) == "house/default"


class BrokenDefault:
    @hookimpl
    def hermes_plugin_default_model(self) -> str | None:
        raise RuntimeError("settings store down")


def test_a_broken_default_source_never_breaks_the_create(tmp_path, caplog):
    app = create_app(tmp_path, HERMES_PLUGIN_DEFAULT_MODEL="house/default")
    app.guard.state(app).pm.register(BrokenDefault())  # type: ignore[attr-defined]
    assert stored(app, create(app, "previous/chat-model")) == "house/default"
    assert "reading the default model failed" in caplog.text


@pytest.mark.parametrize(
    "config",
    [
        {"HERMES_PLUGIN_NEW_SESSION_MODEL": "newest"},
        {"HERMES_PLUGIN_DEFAULT_MODEL": ""},
        {"HERMES_PLUGIN_DEFAULT_MODEL": 7},
    ],
)
def test_bad_new_session_config_fails_at_startup(tmp_path, config):
    with pytest.raises(ConfigError):
        create_app(tmp_path, **config)


def webui_like_upstream() -> Flask:
    """The shape of hermes-webui's API: create answers ``{"session": {...}}``, settings name the default."""
    import uuid

    from flask import request

    app = Flask("webui_like")
    sessions: dict[str, str] = {}
    settings_reads: list[str] = []
    app.sessions, app.settings_reads = sessions, settings_reads  # type: ignore[attr-defined]

    @app.get("/")
    def home() -> str:
        return "home"

    @app.get("/api/settings")
    def settings() -> Any:
        settings_reads.append(request.cookies.get("user", ""))
        return {
            "theme": "dark",
            "default_model": {"carol": "carol/model"}.get(request.cookies.get("user", ""), "deepseek-chat-v3-0324"),
        }

    @app.get("/api/session")
    def session() -> Any:
        sid = request.args.get("session_id", "")
        return ({"session": {"session_id": sid, "model": sessions[sid]}}, 200) if sid in sessions else ({}, 404)

    @app.post("/api/session/new")
    def new() -> Any:
        sid = uuid.uuid4().hex[:12]
        sessions[sid] = request.get_json().get("model") or "deepseek-chat-v3-0324"
        return {"session": {"session_id": sid, "model": sessions[sid], "messages": []}}

    return app


def test_proxy_reads_the_upstreams_default_for_new_sessions(loopback_server):
    import requests

    from hermes_plugin.proxy import create_app as create_proxy

    upstream = webui_like_upstream()
    up = loopback_server(upstream)
    url = loopback_server(create_proxy(up.url, preset="hermes-webui")).url

    def new(model: str, intent: str, user: str = "") -> Any:
        answer = requests.post(
            f"{url}/api/session/new",
            json={"model": model, "workspace": "w"},
            headers={"X-Hermes-Intent": intent},
            cookies={"user": user} if user else None,
            timeout=10,
        )
        return answer.headers["X-Hermes-Decision"], answer.json()["session"]["model"]

    assert new("open-chat/model", "auto") == ("default", "deepseek-chat-v3-0324")
    assert new("picked/model", "user") == ("pass", "picked/model")
    assert new("open-chat/model", "auto", user="carol") == ("default", "carol/model")  # read as the caller
    assert sorted(set(upstream.sessions.values())) == [  # type: ignore[attr-defined]
        "carol/model",
        "deepseek-chat-v3-0324",
        "picked/model",
    ]
    assert upstream.settings_reads == ["", "carol"]  # type: ignore[attr-defined]  # cached per caller; no read for a pick


@pytest.mark.parametrize(
    "value", ["/api/settings", {"url": "http://elsewhere/x", "model": "m"}, {"url": "/api/settings", "model": "a..b"}]
)
def test_bad_proxy_default_model_is_one_clear_error(value):
    from hermes_plugin.proxy import proxy_config

    with pytest.raises(ConfigError, match="default_model"):
        proxy_config({"default_model": value})
