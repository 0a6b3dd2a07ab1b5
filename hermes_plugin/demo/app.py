"""The reference host: a small chat app whose page reproduces hermes-webui's naive model-picker flow
(before https://github.com/nesquena/hermes-webui/pull/1174).

The server side is an ordinary host (JSON session store, a static model list, a live list fetched
through a CatalogService). With ``guard=True`` it adds ModelGuard in the few lines the README shows;
with ``guard=False`` nothing of hermes-plugin runs and the race of the upstream bug shows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, render_template, request

from .. import jsontext
from ..errors import InvalidModelId
from ..models import validate_write_id
from .store import SessionStore

HERE = Path(__file__).parent
OPENROUTER_STATIC = ["openrouter/claude-opus", "openrouter/gpt-4o"]
OPENROUTER_LIVE = [*OPENROUTER_STATIC, "moonshotai/kimi-k2", "openrouter/llama-3"]
LOCALAI_STATIC = ["qwen2.5:7b"]
LOCALAI_LIVE = ["qwen2.5:7b", "mistral:7b"]
# (id, title, model, provider): "kimi" is the upstream bug's case, a model only the live catalog lists.
SEED_SESSIONS = [
    ("kimi", "Kimi K2 research", "moonshotai/kimi-k2", "openrouter"),
    ("opus", "Opus draft", "openrouter/claude-opus", "openrouter"),
    ("llama", "Llama notes", "openrouter/llama-3", "openrouter"),
    ("local", "Local model", "mistral:7b", "localai"),
    ("retired", "A retired model", "openrouter/gpt-3-retired", "openrouter"),
]
LIVE_URL = r"/api/models/live\?provider=(?P<provider>[^&]+)"


def demo_providers(openrouter_url: str, localai_url: str) -> dict[str, dict[str, Any]]:
    """Provider tables (the ``HERMES_PLUGIN_PROVIDERS`` shape) for the two simulated providers."""
    return {
        "openrouter": {"kind": "openai-compatible", "base_url": openrouter_url, "label": "OpenRouter",
                       "static": list(OPENROUTER_STATIC)},
        "localai": {"kind": "ollama", "base_url": localai_url, "label": "LocalAI", "static": list(LOCALAI_STATIC)},
    }


def seed_sessions(store: SessionStore) -> None:
    """Create the demo sessions once (an existing data dir keeps its sessions)."""
    if store.all():
        return
    for session_id, title, model, provider in SEED_SESSIONS:
        store.create(model, title=title, provider=provider, session_id=session_id)


def _bad_request(detail: str) -> tuple[Response, int]:
    return jsonify(error="bad_request", detail=detail), 400


def _write_body(*required: str) -> tuple[dict[str, Any] | None, tuple[Response, int] | None]:
    """The JSON object of a write, or a 400 naming the first field that is missing or not text."""
    try:
        body = jsontext.loads(request.get_data()) if request.is_json else None
    except ValueError:  # malformed, or nested too deep to read safely
        body = None
    if not isinstance(body, dict):
        return None, _bad_request("expected a JSON object")
    for name in required:
        if not isinstance(body.get(name), str) or not body[name]:
            return None, _bad_request(f"{name} must be a non-empty string")
    if "model" in body:
        try:
            validate_write_id(body["model"])
        except InvalidModelId as exc:
            return None, _bad_request(f"model: {exc}")
    return body, None


def create_app(providers: Mapping[str, Mapping[str, Any]], data_dir: str | os.PathLike[str], guard: bool = True,
               static_latency_ms: int = 0, cache_ttl: float = 300, fetch_timeout: float = 10,
               live_cache_ttl: float = 600, seed: bool = True, static_fail: bool = False,
               guard_config: Mapping[str, Any] | None = None) -> Flask:
    """The demo host. ``providers``: provider tables (see ``demo_providers``) pointing at loopback fakes.

    ``static_latency_ms``/``static_fail`` slow down or break ``GET /api/models`` (changeable later through
    ``app.config["DEMO_STATIC_LATENCY_MS"]`` / ``["DEMO_STATIC_FAIL"]``); ``cache_ttl`` is the server's
    live-catalog cache lifetime, ``live_cache_ttl`` the page's localStorage cache lifetime (0 disables it).
    ``guard_config``: more ``HERMES_PLUGIN_*`` settings for the guard (a retirement map, a price ratio).
    """
    from ..catalog import CatalogService
    from ..plugins import make_plugin_manager

    app = Flask("hermes_plugin.demo", root_path=str(HERE), template_folder="templates", static_folder="static")
    app.config.update(DEMO_STATIC_LATENCY_MS=static_latency_ms, DEMO_STATIC_FAIL=static_fail,
                      DEMO_LIVE_CACHE_TTL=live_cache_ttl, DEMO_GUARD=guard)
    providers = {pid: dict(table) for pid, table in providers.items()}
    store = SessionStore(data_dir)
    if seed:
        seed_sessions(store)
    default_model = next((m for t in providers.values() for m in t.get("static", [])), "")
    settings = {"default_model": default_model}
    # The host's own live-catalog plumbing, identical with and without the guard.
    catalog = CatalogService(make_plugin_manager(load=""), providers_config=providers, cache="memory",
                             expire_after=cache_ttl, timeout=(min(3.05, fetch_timeout), fetch_timeout),
                             total_timeout=fetch_timeout)
    app.extensions["hermes_demo"] = {"store": store, "catalog": catalog, "settings": settings}

    @app.get("/")
    def index() -> str:
        sessions = store.all()
        initial = request.args.get("session") or (sessions[0]["session_id"] if sessions else "")
        return render_template("index.html", default_model=settings["default_model"], initial_session=initial,
                               live_cache_ttl=app.config["DEMO_LIVE_CACHE_TTL"],
                               guard="on" if app.config["DEMO_GUARD"] else "off")

    @app.get("/favicon.ico")
    def favicon() -> tuple[str, int]:
        return "", 204

    @app.get("/api/sessions")
    def list_sessions() -> Response:
        return jsonify(sessions=[{k: s[k] for k in ("session_id", "title", "model", "provider")} for s in store.all()])

    @app.get("/api/session")
    def get_session() -> Any:
        session = store.get(request.args.get("session_id", ""))
        if session is None:
            return jsonify(error="not_found", detail="no such session"), 404
        return jsonify(session=session)

    @app.get("/api/models")
    def static_models() -> Any:
        # Simulates a slow host (the upstream bug's second race): the page must not act on a half-filled picker.
        delay = app.config["DEMO_STATIC_LATENCY_MS"]
        if delay:
            time.sleep(delay / 1000)
        if app.config["DEMO_STATIC_FAIL"]:
            return jsonify(error="static_failed", detail="static model list unavailable (demo --fail static)"), 503
        groups = [{"provider": pid, "label": table.get("label") or pid,
                   "models": [{"id": m, "label": m} for m in table.get("static", [])]}
                  for pid, table in providers.items()]
        return jsonify(groups=groups)

    @app.get("/api/models/live")
    def live_models() -> Any:
        provider = request.args.get("provider", "")
        if provider not in providers:
            return jsonify(error="unknown_provider", detail=f"Unknown provider: {provider}"), 404
        snap = catalog.catalog(provider)
        live = [{"id": m.id, "label": m.label or m.id} for m in snap.models if m.source == "live"]
        payload = {"provider": provider, "state": snap.state, "error": snap.error, "models": live}
        return jsonify(payload), (502 if not live and snap.state == "failed" else 200)

    @app.get("/api/settings")
    def get_settings() -> Response:
        return jsonify(settings)

    @app.post("/api/settings")
    def update_settings() -> Any:
        body, error = _write_body("default_model")
        if error:
            return error
        assert body is not None
        settings["default_model"] = body["default_model"]
        return jsonify(settings)

    def update_session() -> Any:
        body, error = _write_body("session_id", "model")
        if error:
            return error
        assert body is not None
        fields = {"model": body["model"], "provider": body.get("provider") if isinstance(body.get("provider"), str)
                  else None, "title": body.get("title") if isinstance(body.get("title"), str) else None}
        session = store.update(body["session_id"], **fields)
        if session is None:
            return jsonify(error="not_found", detail="no such session"), 404
        return jsonify(session=session)

    def new_session() -> Any:
        body, error = _write_body("model")
        if error:
            return error
        assert body is not None
        provider = body.get("provider") if isinstance(body.get("provider"), str) else None
        return jsonify(session=store.create(body["model"], provider=provider))

    def chat_start() -> Any:
        body, error = _write_body("session_id", "model", "message")
        if error:
            return error
        assert body is not None
        model = body["model"]
        if store.update(body["session_id"], model=model) is None:
            return jsonify(error="not_found", detail="no such session"), 404
        reply = f"[{model}] echo: {body['message']}"
        store.append_message(body["session_id"], "user", body["message"], model)
        store.append_message(body["session_id"], "assistant", reply, model)
        return jsonify(reply=reply, model=model)

    writes = {"update_session": ("/api/session/update", update_session),
              "new_session": ("/api/session/new", new_session),
              "chat_start": ("/api/chat/start", chat_start)}
    app.config.update(guard_config or {})
    model_guard = _install_guard(app, store, providers, cache_ttl, fetch_timeout, settings) if guard else None
    for endpoint, (rule, view) in writes.items():
        if model_guard is not None:
            view = model_guard.model_write(session="session_id", model="model")(view)
        app.add_url_rule(rule, endpoint, view, methods=["POST"])
    return app


def _install_guard(app: Flask, store: SessionStore, providers: dict[str, Any], cache_ttl: float,
                   fetch_timeout: float, settings: dict[str, str]) -> Any:
    """The host-side lines the README asks of an app: config, ModelGuard(app), the stored-model reader."""
    from .. import ModelGuard

    app.config.update(
        HERMES_PLUGIN_PROVIDERS=providers,
        HERMES_PLUGIN_CACHE="memory",
        HERMES_PLUGIN_CACHE_EXPIRE=cache_ttl,
        HERMES_PLUGIN_FETCH_TIMEOUT=fetch_timeout,
        HERMES_PLUGIN_PICKER="#modelPicker",
        HERMES_PLUGIN_LIVE_URLS=[{"url": LIVE_URL, "models": "models[].id", "state": "state"}],
        HERMES_PLUGIN_STATIC_URLS=[{"url": r"/api/models$", "models": "groups[].models[].id",
                                    "provider": "groups[].provider"}],
        HERMES_PLUGIN_SESSION_URLS=[{"url": r"/api/session\?session_id=(?P<session>[^&]+)",
                                     "model": "session.model", "session": "session.session_id"}],
    )
    guard = ModelGuard(app)
    guard.session_model(store.model)
    # For the impact report: every session with its stored model, and the default a new session gets.
    guard.session_ids(lambda: ((s["session_id"], s["model"]) for s in store.all()))
    guard.default_models(lambda: {"default_model": settings["default_model"]})

    @guard.session_model_setter
    def set_model(session_id: str, model: str) -> None:  # undo and the user's answers to the plugin's prompts
        store.update(session_id, model=model)

    return guard
