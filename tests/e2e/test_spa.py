"""A single-page app whose shell is ``send_static_file("index.html")``: the guard runs in the browser."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from selenium.webdriver.support.ui import WebDriverWait

from hermes_plugin import ModelGuard

pytestmark = pytest.mark.e2e

INDEX = """<!doctype html><html><head><meta charset=utf-8><title>Orbit</title>
<script src=/static/app.js defer></script></head><body><select id=modelSelect></select></body></html>"""
APP_JS = """
const sel = document.getElementById('modelSelect');
const chat = location.pathname.split('/').pop();
fetch('/api/chats/' + chat).then(r => r.json()).then(c => {
  for (const m of ['orbit-mini', 'orbit-max']) sel.add(new Option(m, m));
  sel.value = c.model;
  window.ready = true;
});
"""


def orbit(tmp_path: Path, chats: dict[str, str]) -> Flask:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text(INDEX)
    (dist / "app.js").write_text(APP_JS)
    app = Flask("orbit", static_folder=str(dist), static_url_path="/static")
    app.config.update(HERMES_PLUGIN_CACHE="memory")
    guard = ModelGuard(app)
    guard.session_model(chats.get)

    @app.get("/c/<chat_id>")
    def shell(chat_id: str) -> Any:
        return app.send_static_file("index.html")

    @app.get("/api/chats/<chat_id>")
    def read(chat_id: str) -> Any:
        return {"model": chats[chat_id]}

    @app.put("/api/chats/<chat_id>")
    @guard.model_write(session="chat_id")
    def write(chat_id: str) -> Any:
        chats[chat_id] = request.get_json()["model"]
        return {"ok": True}

    return app


def test_single_page_app_runs_the_guard(chromium: Any, loopback_server: Callable[[Any], Any], tmp_path: Path) -> None:
    chats = {"x1": "orbit-max"}
    base = loopback_server(orbit(tmp_path, chats)).url
    for _ in range(2):  # a reload gets the guard too (no cached, uninjected copy)
        chromium.get(f"{base}/c/x1")
        state = WebDriverWait(chromium, 20).until(
            lambda d: d.execute_script("return window.ready && window.hermesGuard && hermesGuard.state()"),
            "the app or the guard never started",
        )
        assert "disabled" not in state
        # The shell's route names the chat: the guard follows it without any session URL declared.
        WebDriverWait(chromium, 20).until(
            lambda d: d.execute_script("return hermesGuard.state().model") == "orbit-max", "session not followed"
        )
