"""``--preset open-webui`` against a stand-in upstream with Open WebUI's routes and its registry rule.

The stand-in checks a send against a registry it rebuilds only when ``GET /api/models`` is asked (as Open
WebUI does), stores ``user_message.models`` as the chat's list, and requires a bearer token everywhere.
The real app runs in tests/e2e/test_open_webui_preset.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask, jsonify, request

from hermes_plugin.errors import ConfigError
from hermes_plugin.presets import preset
from hermes_plugin.proxy import create_app, load_config, proxy_config

TOKEN = "t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class OpenWebUIStandIn:
    def __init__(self) -> None:
        self.provider = ["chat-model", "other-model"]  # what its provider lists now
        self.registry: set[str] = set()  # what sends are checked against: rebuilt by GET /api/models
        self.chats: dict[str, list[str]] = {}
        self.sends: list[dict[str, Any]] = []
        self.saves: list[dict[str, Any]] = []
        self.model_reads: list[str | None] = []
        self.lock = threading.Lock()
        self.app = self._app()

    def _app(self) -> Flask:
        app, up = Flask("open-webui-stand-in"), self

        @app.before_request
        def bearer() -> Any:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return jsonify({"detail": "Not authenticated"}), 401
            return None

        @app.get("/api/v1/auths/")
        def me() -> Any:
            return jsonify({"id": "admin"})

        @app.get("/api/models")
        def models() -> Any:
            up.model_reads.append(request.headers.get("Authorization"))
            up.registry = set(up.provider)
            return jsonify({"data": [{"id": m, "name": m, "owned_by": "openai"} for m in up.provider]})

        @app.get("/api/v1/chats/<chat_id>")
        def chat(chat_id: str) -> Any:
            if chat_id not in up.chats:  # Open WebUI's answer for a chat it does not have
                return jsonify({"detail": "We could not find what you're looking for :/"}), 401
            return jsonify({"id": chat_id, "chat": {"models": up.chats[chat_id], "title": "t"}})

        @app.post("/api/v1/chats/<chat_id>")
        def save(chat_id: str) -> Any:
            body = request.get_json()
            up.saves.append(body)
            up.chats[chat_id] = list(body["chat"]["models"])
            return jsonify({"id": chat_id, "chat": body["chat"]})

        @app.post("/api/chat/completions")
        def completions() -> Any:
            body = request.get_json()
            if body["model"] not in up.registry:
                return jsonify({"detail": "Model not found"}), 400
            up.sends.append(body)
            up.chats[body["chat_id"]] = list(body["user_message"]["models"])
            return jsonify({"answered_by": [e["model_id"] for e in body["message_ids"]]})

        return app


@pytest.fixture
def stand_in(loopback_server: Callable[[Any], Any]) -> tuple[OpenWebUIStandIn, str]:
    upstream = OpenWebUIStandIn()
    up = loopback_server(upstream.app)
    return upstream, loopback_server(create_app(up.url, preset="open-webui")).url


def send(url: str, chat_id: str, model: str, intent: str = "auto") -> requests.Response:
    body = {"model": model, "model_item": {"id": model}, "chat_id": chat_id, "id": "r1", "parent_id": None,
            "message_ids": [{"model_id": model, "message_id": "r1", "modelIdx": 0}],
            "user_message": {"id": "u1", "models": [model], "content": "hi"}, "messages": []}
    return requests.post(url + "/api/chat/completions", json=body, timeout=10,
                         headers={**AUTH, "X-Hermes-Intent": intent})


def test_blip_then_send_is_kept_in_every_field_and_the_registry_refreshed_first(stand_in):
    upstream, url = stand_in
    chat_id = str(uuid.uuid4())
    upstream.chats[chat_id] = ["chat-model"]
    upstream.provider = ["other-model"]
    assert requests.get(url + "/api/models", headers=AUTH, timeout=10).ok  # the page loads during the blip
    upstream.provider = ["chat-model", "other-model"]  # the provider is back; the registry is still the blip's

    response = send(url, chat_id, "other-model")
    assert response.status_code == 200, response.text
    assert response.headers["X-Hermes-Decision"] == "keep"
    sent = upstream.sends[-1]
    assert (sent["model"], sent["model_item"]["id"], sent["message_ids"][0]["model_id"],
            sent["user_message"]["models"]) == ("chat-model", "chat-model", "chat-model", ["chat-model"])
    assert response.json() == {"answered_by": ["chat-model"]} and upstream.chats[chat_id] == ["chat-model"]
    assert upstream.model_reads[-1] == f"Bearer {TOKEN}"  # asked as the caller


def test_the_pages_chat_save_with_a_model_list_is_guarded_not_refused(stand_in):
    upstream, url = stand_in
    chat_id = str(uuid.uuid4())
    upstream.chats[chat_id] = ["chat-model"]
    save = {"chat": {"models": ["other-model"], "history": {}, "messages": []}}
    response = requests.post(f"{url}/api/v1/chats/{chat_id}", json=save, headers={**AUTH, "X-Hermes-Intent": "auto"},
                             timeout=10)
    assert response.status_code == 200 and response.headers["X-Hermes-Decision"] == "keep"
    assert upstream.saves[-1]["chat"]["models"] == ["chat-model"] and upstream.chats[chat_id] == ["chat-model"]
    response = requests.post(f"{url}/api/v1/chats/{chat_id}", json=save, headers={**AUTH, "X-Hermes-Intent": "user"},
                             timeout=10)
    assert response.headers["X-Hermes-Decision"] == "pass" and upstream.chats[chat_id] == ["other-model"]
    # A new chat is not a session write: /api/v1/chats/new passes untouched.
    assert requests.post(f"{url}/api/v1/chats/new", json=save, headers=AUTH, timeout=10).status_code == 200


def test_a_kept_model_the_upstream_cannot_serve_is_a_409_the_page_can_show(stand_in):
    upstream, url = stand_in
    chat_id = str(uuid.uuid4())
    upstream.chats[chat_id] = ["chat-model"]
    upstream.provider = ["other-model"]  # still missing when the send goes out
    response = send(url, chat_id, "other-model")
    assert response.status_code == 409 and response.headers["X-Hermes-Decision"] == "reject"
    body = response.json()
    assert body["error"] == "model_write_rejected" and body["reason"] == "model_unservable"
    assert "cannot serve the saved model chat-model right now" in body["detail"]
    assert upstream.sends == [] and upstream.chats[chat_id] == ["chat-model"]


def test_a_pick_is_forwarded_as_sent(stand_in):
    upstream, url = stand_in
    chat_id = str(uuid.uuid4())
    upstream.chats[chat_id] = ["chat-model"]
    requests.get(url + "/api/models", headers=AUTH, timeout=10)
    response = send(url, chat_id, "other-model", intent="user")
    assert response.headers["X-Hermes-Decision"] == "pass" and upstream.chats[chat_id] == ["other-model"]
    assert len(upstream.model_reads) == 1  # only a kept model is checked with the upstream


def test_a_temporary_chat_is_not_a_session(stand_in):
    # Open WebUI answers 401 for a chat it does not store: reading one would refuse every temporary send.
    upstream, url = stand_in
    upstream.registry = {"other-model"}
    response = send(url, "temporary:abc123", "other-model")
    assert response.status_code == 200 and response.headers["X-Hermes-Decision"] == "pass"
    assert upstream.sends[-1]["model"] == "other-model"


def test_preset_and_config_keys() -> None:
    cfg = load_config(preset_name="open-webui")
    assert cfg.upstream_models is not None and cfg.picker_adapter is not None
    assert [route.spec.fields.paths for route in cfg.writes] == [
        ("user_message.models[]", "message_ids[].model_id", "model", "model_item.id"), ("chat.models[]",)]
    table = preset("open-webui")
    for bad, message in [
        ({"upstream_models": {"url": "api/models", "models": "data[].id"}}, "upstream_models must be"),
        ({"picker_adapter": {"shown": "#x"}}, "option is required"),
        ({"picker_adapter": {**table["picker_adapter"], "colour": "red"}}, "unknown keys"),
        ({"writes": [{"url": "^/x$", "model": []}]}, "non-empty list of paths"),
        ({"writes": [{"url": "^/x$", "model": ["a", "a"]}]}, "repeat"),
        ({"writes": [{"url": "^/x$", "session": "ids[]"}]}, "must name one value"),
        ({"writes": [{"url": "^/x$", "session_match": "("}]}, "bad session_match"),
    ]:
        with pytest.raises(ConfigError, match=message):
            proxy_config({**table, **bad})
