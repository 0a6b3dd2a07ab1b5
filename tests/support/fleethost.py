"""A small Flask host for fleet tests, run by gunicorn: ``gunicorn 'support.fleethost:create_app()'``.

Sessions live in one SQLite file that every worker and host opens (a real host keeps them in a database
too). Settings come from the environment, so a test or benchmark can start several gunicorn instances:
``FLEET_DIR`` (sessions file), ``FLEET_INSTANCE`` (this host's instance folder), ``FLEET_PROVIDER`` and
``FLEET_COLD_PROVIDER`` (base URLs of providers ``prov`` and ``cold``, the latter fetched by one test only), ``FLEET_REDIS`` (a Redis URL: share guard state through it), ``FLEET_GUARD=0``
(the same host without ModelGuard, for throughput ratios), ``FLEET_STATE`` (``HERMES_PLUGIN_STATE``).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

from hermes_plugin import ModelGuard

SESSIONS_FILE = "sessions.sqlite"


def sessions_db(folder: str | os.PathLike[str]) -> sqlite3.Connection:
    db = sqlite3.connect(Path(folder) / SESSIONS_FILE, timeout=30, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, model TEXT NOT NULL)")
    return db


def seed_sessions(folder: str | os.PathLike[str], sessions: dict[str, str]) -> None:
    db = sessions_db(folder)
    db.executemany("INSERT OR REPLACE INTO sessions (id, model) VALUES (?, ?)", list(sessions.items()))
    db.close()


def stored_models(folder: str | os.PathLike[str]) -> dict[str, str]:
    db = sessions_db(folder)
    try:
        return dict(db.execute("SELECT id, model FROM sessions").fetchall())
    finally:
        db.close()


def create_app() -> Flask:
    root = os.environ["FLEET_DIR"]
    app = Flask(__name__, instance_path=os.environ.get("FLEET_INSTANCE") or os.path.join(root, "instance"))
    providers = {"prov": os.environ.get("FLEET_PROVIDER"), "cold": os.environ.get("FLEET_COLD_PROVIDER")}
    app.config["HERMES_PLUGIN_PROVIDERS"] = {
        name: {"kind": "openai-compatible", "base_url": url, "static": ["static/model"]}
        for name, url in providers.items() if url
    }
    if os.environ.get("FLEET_REDIS"):
        app.config["HERMES_PLUGIN_REDIS_URL"] = os.environ["FLEET_REDIS"]
    if os.environ.get("FLEET_STATE"):  # e.g. "memory": the per-process state, for contrast
        app.config["HERMES_PLUGIN_STATE"] = os.environ["FLEET_STATE"]
    guarded = os.environ.get("FLEET_GUARD", "1") != "0"
    guard = ModelGuard() if guarded else None
    db_per_thread: dict[int, sqlite3.Connection] = {}

    def db() -> sqlite3.Connection:
        import threading

        key = threading.get_ident()
        if key not in db_per_thread:
            db_per_thread[key] = sessions_db(root)
        return db_per_thread[key]

    def read_model(session_id: str) -> str | None:
        row = db().execute("SELECT model FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return row[0] if row else None

    def update() -> Any:
        body = request.get_json()
        changed = db().execute("UPDATE sessions SET model = ? WHERE id = ?", (body["model"], body["session_id"]))
        if changed.rowcount == 0:
            return jsonify({"error": "no such session"}), 404
        return {"session_id": body["session_id"], "model": body["model"]}

    if guard is not None:
        guard.session_model(read_model)
        update = guard.model_write(session="session_id", model="model")(update)
    app.add_url_rule("/api/session/update", "update", update, methods=["POST"])

    @app.get("/api/session/<session_id>")
    def session(session_id: str) -> Any:
        return {"session_id": session_id, "model": read_model(session_id)}

    @app.get("/health")
    def health() -> Any:
        return {"ok": True}

    @app.after_request
    def worker(response: Response) -> Response:
        response.headers["X-Worker"] = f"{os.environ.get('FLEET_NAME', 'host')}:{os.getpid()}"
        return response

    if guard is not None:
        guard.init_app(app)
    return app
