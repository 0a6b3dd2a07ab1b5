"""A small host app for the tests, written only against the public API (README, docs/host-guide.md).

Sessions live in one JSON file written atomically, so "storage byte-identical" is a plain file comparison.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app, jsonify, request

from hermes_plugin import ModelGuard
from hermes_plugin.testing.fake_provider import FakeProvider
from hermes_plugin.testing.servers import LoopbackServer


class SessionStore:
    """``{session_id: {"model", "workspace"}}`` in ``sessions.json``; every write replaces the file atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        if not path.exists():
            self._write({})

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".sessions-")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def all(self) -> dict[str, Any]:
        return json.loads(self.path.read_text())  # type: ignore[no-any-return]

    def get(self, session_id: str) -> dict[str, Any] | None:
        return self.all().get(session_id)

    def update(self, session_id: str, **fields: Any) -> dict[str, Any] | None:
        with self._lock:
            data = self.all()
            if session_id not in data:
                return None
            data[session_id].update({key: value for key, value in fields.items() if value is not None})
            self._write(data)
            return data[session_id]

    def create(self, session_id: str, model: str, workspace: str = "default") -> dict[str, Any]:
        with self._lock:
            data = self.all()
            data[session_id] = {"model": model, "workspace": workspace}
            self._write(data)
            return data[session_id]

    def raw(self) -> bytes:
        return self.path.read_bytes()


def create_app(tmp_path: Path, guard: ModelGuard | None = None, sessions: dict[str, str] | None = None,
               **config: Any) -> Flask:
    """The host: ``create_app(tmp_path, HERMES_PLUGIN_PROVIDERS={...})``; ``app.store`` is its session store."""
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config["HERMES_PLUGIN_CACHE"] = "memory"
    app.config.update(config)
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = SessionStore(tmp_path / "sessions.json")
    for session_id, model in (sessions or {}).items():
        store.create(session_id, model)
    app.store = store  # type: ignore[attr-defined]
    guard = guard or ModelGuard()
    app.guard = guard  # type: ignore[attr-defined]

    @guard.session_model
    def stored_model(session_id: str) -> str | None:
        # current_app, not app: one guard may serve several apps, each with its own store.
        session = current_app.store.get(session_id)  # type: ignore[attr-defined]
        return session["model"] if session else None

    @app.get("/api/session")
    def get_session() -> Any:
        session_id = request.args.get("session_id", "")
        session = store.get(session_id)
        if session is None:
            return jsonify({"error": "no such session"}), 404
        return {"session": {"session_id": session_id, **session}}

    @app.post("/api/session/update")
    @guard.model_write(session="session_id", model="model")
    def update_session() -> Any:
        body = request.get_json()
        if "session_id" not in body:  # the guard lets a write without a session through: the host decides
            return jsonify({"error": "session_id required"}), 400
        session = store.update(body["session_id"], model=body.get("model"), workspace=body.get("workspace"))
        if session is None:
            return jsonify({"error": "no such session"}), 404
        return {"session": session}

    @app.post("/api/session/new")
    @guard.model_write(session="session_id", model="model")
    def new_session() -> Any:
        body = request.get_json()
        session_id = uuid.uuid4().hex
        return {"session_id": session_id, "session": store.create(session_id, body.get("model", "default"))}

    @app.post("/chats/<chat_id>/model")
    @guard.model_write(session="chat_id", model="model")
    def chat_model(chat_id: str) -> Any:
        # Reads the raw body on purpose: a kept model must show there too, not only in get_json().
        body = json.loads(request.get_data())
        if store.update(chat_id, model=body.get("model")) is None:
            return jsonify({"error": "no such chat"}), 404
        return "ok"  # not JSON: the guard must not care

    @app.post("/api/session/fail")
    @guard.model_write(session="session_id", model="model")
    def failing_write() -> Any:
        body = request.get_json()
        store.update(body["session_id"], model=body.get("model"))
        return jsonify({"error": "disk full"}), 507  # wrote, then reported failure: the guard records nothing

    @app.get("/")
    def index() -> Response:
        return Response("<!doctype html><html><head><title>host</title></head>"
                        "<body><select id=modelSelect></select><script src=/app.js></script></body></html>",
                        mimetype="text/html")

    guard.init_app(app)
    return app


@contextmanager
def running(app: Flask) -> Iterator[str]:
    """Serve ``app`` on a real loopback port; yields its base URL."""
    server = LoopbackServer(app).start()
    try:
        yield server.url
    finally:
        server.stop()


def provider_config(provider: FakeProvider, static: list[str] | None = None) -> dict[str, Any]:
    """``HERMES_PLUGIN_PROVIDERS`` entry for a FakeProvider of kind "openai"."""
    return {"kind": "openai-compatible", "base_url": provider.base_url, "static": static or []}
