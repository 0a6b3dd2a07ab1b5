"""The pytest plugin's own fixtures, exercised the way a host app's suite would use them."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import requests
from flask import Flask, jsonify, request

from hermes_plugin.demo.store import SessionStore
from hermes_plugin.pytest_plugin import CHROMIUM_FLAGS, ModelWriteRecorder


def tiny_host(store: SessionStore) -> Flask:
    app = Flask(__name__)

    @app.post("/api/session/update")
    def update():  # type: ignore[no-untyped-def]
        body = request.get_json()
        store.update(body["session_id"], model=body["model"])
        response = jsonify(ok=True)
        response.headers["X-Hermes-Decision"] = "pass"
        return response

    @app.post("/chats/<chat_id>/model")
    def chat_model(chat_id: str):  # type: ignore[no-untyped-def]
        store.update(chat_id, model=request.get_json()["model"])
        return jsonify(ok=True)

    @app.post("/api/other")
    def other():  # type: ignore[no-untyped-def]
        return jsonify(ok=True)

    return app


def test_model_writes_records_writes_and_changes(tmp_path: Path, loopback_server, model_writes: ModelWriteRecorder):
    store = SessionStore(tmp_path)
    store.create("a/model", session_id="s1")
    app = tiny_host(store)
    model_writes.attach(app, read_model=store.model, routes=[r"/api/session/update", r"/chats/(?P<session>[^/]+)/model"])
    server = loopback_server(app)

    requests.post(f"{server.url}/api/session/update", json={"session_id": "s1", "model": "a/model"},
                  headers={"X-Hermes-Intent": "auto"}, timeout=10)
    requests.post(f"{server.url}/chats/s1/model", json={"model": "b/model"}, timeout=10)
    requests.post(f"{server.url}/api/other", json={"session_id": "s1", "model": "x"}, timeout=10)

    writes = model_writes.wait_for_writes(2)
    assert [(w.path, w.session, w.model, w.intent, w.status) for w in writes] == [
        ("/api/session/update", "s1", "a/model", "auto", 200),
        ("/chats/s1/model", "s1", "b/model", None, 200),
    ]
    assert writes[0].decision == "pass" and writes[0].body == {"session_id": "s1", "model": "a/model"}
    assert [(c.session, c.old, c.new) for c in model_writes.changes] == [("s1", "a/model", "b/model")]
    assert model_writes.writes_for("other") == []


def test_model_writes_wait_is_woken_by_a_write_from_another_thread(tmp_path: Path, loopback_server, model_writes):
    store = SessionStore(tmp_path)
    store.create("a/model", session_id="s1")
    app = tiny_host(store)
    model_writes.attach(app, read_model=store.model, routes=[r"/api/session/update"])
    server = loopback_server(app)
    writer = threading.Thread(target=requests.post, args=(f"{server.url}/api/session/update",),
                              kwargs={"json": {"session_id": "s1", "model": "c/model"}, "timeout": 10})
    writer.start()
    [write] = model_writes.wait_for_writes(1, timeout=10, where=lambda w: w.model == "c/model")
    writer.join()
    assert write.before == "a/model" and write.after == "c/model"
    model_writes.wait_idle()


def test_model_writes_times_out_with_what_it_saw(model_writes: ModelWriteRecorder):
    with pytest.raises(AssertionError, match="timed out after 0.01s waiting for 1 write"):
        model_writes.wait_for_writes(1, timeout=0.01)


def test_model_writes_detach_restores_the_app(tmp_path: Path):
    app = tiny_host(SessionStore(tmp_path))
    original = app.wsgi_app
    recorder = ModelWriteRecorder().attach(app, read_model=lambda s: None)
    assert app.wsgi_app != original
    recorder.detach()
    assert app.wsgi_app == original and "wsgi_app" not in vars(app)


def test_model_writes_keeps_a_non_json_body_readable_by_the_app(tmp_path: Path, loopback_server, model_writes):
    app = Flask(__name__)
    seen: list[bytes] = []

    @app.post("/raw")
    def raw():  # type: ignore[no-untyped-def]
        seen.append(request.get_data())
        return "ok"

    model_writes.attach(app, read_model=lambda s: None, routes=["/raw"])
    server = loopback_server(app)
    requests.post(f"{server.url}/raw", data=b"not json", timeout=10)
    [write] = model_writes.wait_for_writes(1)
    assert seen == [b"not json"] and write.body == "not json" and write.session is None


def test_fake_provider_fixture_serves_and_counts(fake_provider):
    provider = fake_provider("openai", ["m/one", {"id": "m/two", "label": "Two"}])
    listing = requests.get(f"{provider.base_url}/models", timeout=10).json()
    assert [m["id"] for m in listing["data"]] == ["m/one", "m/two"]
    assert provider.requests == 1


def test_session_store_writes_atomically(tmp_path: Path):
    store = SessionStore(tmp_path)
    store.create("a/model", session_id="s1")
    assert store.update("s1", model="b/model")["model"] == "b/model"
    assert store.update("missing", model="x") is None
    assert json.loads((tmp_path / "sessions.json").read_text())["s1"]["model"] == "b/model"
    assert [p.name for p in tmp_path.iterdir()] == ["sessions.json"]  # no temp file left behind


def test_chromium_fixture_runs_the_system_browser_headless(chromium):
    chromium.get("data:text/html,<title>hi</title><p id=x>ok</p>")
    assert chromium.title == "hi"
    assert chromium.execute_script("return navigator.webdriver") is True
    assert "--headless=new" in CHROMIUM_FLAGS
