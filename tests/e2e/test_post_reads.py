"""The browser guard tracks and learns reads made by POST (``POST /load {id}``) like GETs, for the method
their URL entry declares only."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, request
from selenium.webdriver.support.ui import WebDriverWait

from hermes_plugin import ModelGuard

pytestmark = pytest.mark.e2e

WAIT = 20


def rpc_host(gate: threading.Event, chats: dict[str, str]) -> Flask:
    """A host that lists models and loads chats by POST, each with a JSON body."""
    app = Flask("rpc_host")
    app.config.update(
        HERMES_PLUGIN_CACHE="memory",
        HERMES_PLUGIN_MODEL_SELECT="#llm",
        HERMES_PLUGIN_LIVE_URLS=[
            {"url": r"^/rpc/models$", "method": "POST", "models": "models[].id", "provider": "models[].provider"}
        ],
        HERMES_PLUGIN_SESSION_URLS=[
            {"url": r"^/rpc/load$", "method": "POST", "session": "chat.id", "model": "chat.llm"}
        ],
    )
    guard = ModelGuard(app)
    guard.session_model(chats.get)

    @app.get("/")
    def page() -> str:
        return (
            "<!doctype html><html><head><title>rpc</title></head><body><select id=llm>"
            "<option value=acme-small>acme-small</option></select></body></html>"
        )

    @app.route("/rpc/models", methods=["GET", "POST"])
    def models() -> Any:
        if request.method == "POST":
            gate.wait(WAIT)
        return {"models": [{"id": "acme-small", "provider": "acme"}, {"id": "acme-large", "provider": "acme"}]}

    @app.route("/rpc/load", methods=["GET", "POST"])
    def load() -> Any:
        chat = request.get_json()["id"] if request.method == "POST" else "other"  # GET: another, undeclared read
        return {"chat": {"id": chat, "llm": chats[chat]}}

    return app


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def until(driver: Any, script: str, message: str) -> Any:
    return WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(script), message)


def test_post_reads_are_tracked_and_learnt(
    chromium: Any, loopback_server: Callable[[Any], Any], gate: threading.Event
) -> None:
    base = loopback_server(rpc_host(gate, {"k9": "acme-large"})).url
    chromium.get(base + "/")
    until(chromium, "return !!window.hermesGuard", "no guard")
    # The declared POST read is pending until its answer is read (a flat catalog: keyed by its URL entry).
    chromium.execute_script("fetch('/rpc/models', {method: 'POST', body: '{}'}).then(() => window.listed = true)")
    until(chromium, "return hermesGuard.pending().length === 1", "the POST catalog read was not tracked")
    gate.set()
    until(chromium, "return window.listed && hermesGuard.pending().length === 0", "never settled")
    # A chat loaded by POST names the session the page shows, and its stored model.
    chromium.execute_script(
        "fetch('/rpc/load', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({id: 'k9'})})"
    )
    until(
        chromium,
        "const s = hermesGuard.state(); return s.session === 'k9' && s.model === 'acme-large'",
        "the chat loaded by POST was not learnt",
    )


def test_reads_are_tracked_for_their_declared_method_only(
    chromium: Any, loopback_server: Callable[[Any], Any], gate: threading.Event
) -> None:
    base = loopback_server(rpc_host(gate, {"k9": "acme-large", "other": "acme-small"})).url
    chromium.get(base + "/")
    until(chromium, "return !!window.hermesGuard", "no guard")
    # A catalog fetch is marked pending as it starts, in the same task: a GET to the POST-declared URL is not.
    assert chromium.execute_script("fetch('/rpc/models'); return hermesGuard.pending()") == []
    assert (
        chromium.execute_script(
            "const x = new XMLHttpRequest(); x.open('GET', '/rpc/models'); x.send(); return hermesGuard.pending()"
        )
        == []
    )
    assert chromium.execute_script(
        "fetch('/rpc/models', {method: 'POST', body: '{}'}); return hermesGuard.pending()"
    ) == ["live:^/rpc/models$"]
    gate.set()
    until(chromium, "return hermesGuard.pending().length === 0", "never settled")
    # A GET to the POST-declared session URL is no session read: its answer names no session for the guard.
    answer = chromium.execute_async_script(
        "const done = arguments[0];"
        "fetch('/rpc/load').then(r => r.json()).then(j => setTimeout(() => done([j, hermesGuard.state()])));"
    )
    assert answer[0] == {"chat": {"id": "other", "llm": "acme-small"}}
    assert answer[1]["session"] is None and answer[1]["model"] is None
