"""The reverse proxy learns from reads made by POST (``POST /load {id}``-style hosts) like from GETs."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from flask import Flask, request

from hermes_plugin.proxy import create_app, proxy_config

WAIT = 10.0


def loader_app() -> Flask:
    """An upstream that loads chats and lists models by POST, with a flat catalog."""
    app = Flask("loader")
    chats = {"q1": "opus", "q2": "retired-7"}
    app.chats = chats  # type: ignore[attr-defined]

    @app.get("/")
    def home() -> str:
        return "home"

    @app.post("/rpc/models")
    def models() -> Any:
        return {"models": [{"id": "opus", "provider": "anth"}, {"id": "haiku", "provider": "anth"}]}

    @app.post("/rpc/load")
    def load() -> Any:
        chat = (request.get_json(silent=True) or {}).get("id")
        return ({"chat": {"id": chat, "llm": chats[chat]}}, 200) if chat in chats else ({"error": "nope"}, 404)

    @app.post("/rpc/save")
    def save() -> Any:
        body = request.get_json()
        chats[body["id"]] = body["llm"]
        return {"chat": {"id": body["id"], "llm": body["llm"]}}

    return app


TABLE = {
    "writes": [{"method": "POST", "url": "^/rpc/save$", "session": "id", "model": "llm"}],
    # The proxy's own read of a stored model is a POST too, as the page's.
    "session_read": {"method": "POST", "url": "/rpc/load", "body": {"id": "{session}"}, "model": "chat.llm"},
    "live_urls": [{"url": "^/rpc/models$", "method": "POST", "models": "models[].id", "provider": "models[].provider"}],
    "session_urls": [{"url": "^/rpc/load$", "method": "POST", "session": "chat.id", "model": "chat.llm"}],
}


def test_catalog_read_by_post_through_the_proxy_is_learnt(loopback_server):
    upstream = loader_app()

    up = loopback_server(upstream)
    url = loopback_server(create_app(up.url, cfg=proxy_config(TABLE))).url
    before = requests.get(f"{url}/hermes-plugin/api/sessions/q2/model", timeout=WAIT).json()
    assert before["availability"] == "unknown"
    listed = requests.post(f"{url}/rpc/models", json={}, timeout=WAIT)
    assert listed.json()["models"][0]["id"] == "opus"
    assert requests.get(f"{url}/hermes-plugin/api/sessions/q1/model", timeout=WAIT).json()["availability"] == "present"
    assert requests.get(f"{url}/hermes-plugin/api/sessions/q2/model", timeout=WAIT).json()["availability"] == "absent"
    kept = requests.post(
        f"{url}/rpc/save", json={"id": "q1", "llm": "haiku"}, headers={"X-Hermes-Intent": "auto"}, timeout=WAIT
    )
    replaced = requests.post(
        f"{url}/rpc/save", json={"id": "q2", "llm": "haiku"}, headers={"X-Hermes-Intent": "auto"}, timeout=WAIT
    )
    assert (kept.headers["X-Hermes-Decision"], replaced.headers["X-Hermes-Decision"]) == ("keep", "fallback")
    assert upstream.chats == {"q1": "opus", "q2": "haiku"}  # type: ignore[attr-defined]


def test_post_reads_are_read_uncompressed_and_buffered(loopback_server):
    seen: list[str] = []
    upstream = loader_app()

    @upstream.before_request
    def record() -> None:
        if request.path == "/rpc/load":
            seen.append(request.headers.get("Accept-Encoding", ""))

    up = loopback_server(upstream)
    url = loopback_server(create_app(up.url, cfg=proxy_config(TABLE))).url
    answer = requests.post(f"{url}/rpc/load", json={"id": "q1"}, headers={"Accept-Encoding": "gzip"}, timeout=WAIT)
    assert answer.json() == {"chat": {"id": "q1", "llm": "opus"}}
    assert seen == ["identity"]  # a configured read is asked for uncompressed, so the guard can read it


@pytest.mark.parametrize(
    "read",
    [
        {"url": "/rpc/load", "model": "chat.llm"},  # names no session anywhere
        {"method": "GET", "url": "/rpc/load", "body": {"id": "{session}"}, "model": "chat.llm"},
        {"method": "DELETE", "url": "/rpc/load/{session}", "model": "chat.llm"},
    ],
)
def test_bad_session_read_is_one_clear_error(read):
    from hermes_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="session_read"):
        proxy_config({**TABLE, "session_read": read})
