"""The plugin's blueprint: catalog API, session model and model-log API, the guard script, the WebSocket."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.wrappers import Response
from flask_sock import Sock
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from . import history, script
from . import ws as ws_module
from .errors import UnknownProviderError
from .impact import add_impact_route
from .names import EXTENSION
from .state import StateUnavailable
from .status import add_status_route

MAX_SESSION_ID = 256
ERROR_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               409: "conflict", 412: "stale_version", 413: "payload_too_large", 415: "unsupported_media_type",
               428: "precondition_required"}
# Which authorisation action each plugin endpoint asks for (``?refresh=1`` turns "catalog" into "refresh").
ACTIONS = {
    "hermes_plugin.catalog_all": "catalog",
    "hermes_plugin.catalog_one": "catalog",
    "hermes_plugin.session_model": "session_model",
    "hermes_plugin.model_log": "model_log",
    "hermes_plugin.model_set": "session_write",
    "hermes_plugin.model_undo": "session_write",
    "hermes_plugin.websocket": "ws",
    "hermes_plugin.status": "status",
    "hermes_plugin.impact": "impact",
}


def json_error(status: int, error: str, detail: str, headers: dict[str, str] | None = None,
               **extra: Any) -> Response:
    """Every error the plugin returns: a stable ``error`` code and a human ``detail``."""
    response = jsonify({"error": error, "detail": detail, **extra})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def session_id_problem(value: Any) -> str | None:
    """Why a session id cannot be used, or None: a string of 1..256 printable characters."""
    if not isinstance(value, str):
        return f"session id must be a string, got {type(value).__name__}"
    if not value or len(value) > MAX_SESSION_ID:
        return f"session id must be 1..{MAX_SESSION_ID} characters"
    if not value.isprintable():
        return "session id contains control or non-printable characters"
    return None


def state() -> Any:
    """The current app's guard state (``extension.GuardState``)."""
    return current_app.extensions[EXTENSION]


def static_folder() -> str:
    """The installed ``hermes_plugin.static`` package directory (the repo's ``static/``)."""
    return str(importlib.resources.files("hermes_plugin.static"))  # a real directory: the package is not zipped


def make_blueprint(authorized: Callable[[str, str | None], bool]) -> tuple[Blueprint, Sock]:
    """The blueprint with every plugin route; ``authorized(action, session_id)`` gates each of them."""
    bp = Blueprint("hermes_plugin", __name__, static_folder=static_folder())
    sock = Sock()

    @bp.before_request
    def check_access() -> Response | None:
        action = ACTIONS.get(request.endpoint or "")
        if action is None:  # the static guard script is public, like any page asset
            return None
        refused = state().host_refused()
        if refused:  # a rebound DNS name reaching a local app: refused before anything else
            return json_error(403, "host_not_allowed", refused)
        if action == "catalog" and wants_refresh():
            action = "refresh"
        session_id = (request.view_args or {}).get("session_id")
        if action in ("ws", "refresh"):  # a refetch costs the provider a request: not for other sites' pages
            refused = state().cross_origin()
            if refused:
                return json_error(403, "cross_origin", refused)
        if not authorized(action, session_id):
            return json_error(403, "forbidden", f"not allowed: {action}")
        return None

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        return json_error(code, ERROR_CODES.get(code, "http_error"), exc.description or exc.name)

    @bp.get("/static/hermes-guard.js")  # wins over the blueprint's static route: the minified build
    def guard_script() -> Response:
        return script.response()

    @bp.get("/static/" + script.SESSIONS_SCRIPT)  # session switches, models in no catalogue, picks kept
    def guard_sessions_script() -> Response:
        return script.response(script.SESSIONS_SCRIPT)

    @bp.get("/static/hermes-picker.js")  # custom model pickers: loaded only by pages that declare an adapter
    def picker_script() -> Response:
        return script.response(script.PICKER_SCRIPT)

    @bp.get("/static/hermes-notices.js")  # loaded by the guard only when it has something to tell the user
    def notices_script() -> Response:
        return script.response(script.NOTICES)

    @bp.get("/api/catalog")
    def catalog_all() -> Response:
        catalogs = state().catalog.catalogs(refresh=wants_refresh())
        return no_store(jsonify({"providers": [catalog.to_json() for catalog in catalogs]}))

    @bp.get("/api/catalog/<provider>")
    def catalog_one(provider: str) -> Response:
        service = state().catalog
        if provider not in service.provider_ids():
            return json_error(404, "unknown_provider", f"Unknown provider: {provider[:100]}")
        try:
            catalog = service.catalog(provider, refresh=wants_refresh())
        except UnknownProviderError as exc:  # unregistered between the two calls
            return json_error(404, "unknown_provider", str(exc))
        return no_store(jsonify(catalog.to_json()))

    @bp.get("/api/sessions/<session_id>/model")
    def session_model(session_id: str) -> Response:
        problem = session_id_problem(session_id)
        if problem:
            return json_error(400, "bad_request", problem)
        guard_state = state()
        try:
            model, version = guard_state.session_version(session_id)
        except StateUnavailable as exc:
            return unavailable(exc)
        availability = provider = reason = replacement = price = None
        aliases: list[str] = []
        if model is not None:
            availability, provider, reason = guard_state.explain(model)  # the write guard's own verdict
            aliases = guard_state.model_aliases(model, provider)
            if availability == "absent":
                replacement = guard_state.suggestion(model)
            # A gone model's remembered price costs a shared-state read: only then is it looked up.
            known = guard_state.price_of(model, remembered=availability == "absent")
            price = known.to_json() if known is not None else None
        response = no_store(jsonify({
            "session": session_id, "model": model, "version": version,
            "availability": availability, "provider": provider, "reason": reason, "aliases": aliases,
            "replacement": replacement, "price": price,
            # What an automatic write does to it while absent: "keep" (the page shows it, unavailable) or "fallback".
            "absent_model": guard_state.absent_policy(model) if model is not None else None,
        }))
        response.set_etag(str(version))
        return response

    @bp.get("/api/sessions/<session_id>/model-log")
    def model_log(session_id: str) -> Response:
        problem = session_id_problem(session_id)
        if problem:
            return json_error(400, "bad_request", problem)
        try:
            entries = state().audit.entries(session_id)
        except StateUnavailable as exc:
            return unavailable(exc)
        return no_store(jsonify({"session": session_id, "entries": entries}))

    @bp.post("/api/sessions/<session_id>/model")
    def model_set(session_id: str) -> Response:
        return history.set_model(session_id)

    @bp.post("/api/sessions/<session_id>/model/undo")
    def model_undo(session_id: str) -> Response:
        return history.undo(session_id)

    add_status_route(bp)
    add_impact_route(bp)

    @sock.route("/ws", bp=bp, endpoint="websocket")
    def websocket(ws: Any) -> None:
        ws_module.serve(ws, state().hub)

    return bp, sock


def unavailable(exc: Exception) -> Response:
    """The shared guard state (Redis, the state file) cannot be reached: a clear 503, never a guess."""
    return json_error(503, "state_unavailable", f"the guard's shared state is unavailable: {exc}",
                      headers={"Retry-After": "1"})


def wants_refresh() -> bool:
    return request.args.get("refresh", "").lower() in ("1", "true", "yes")


def no_store(response: Response) -> Response:
    # Catalog and session state change under the page: a cached copy is exactly the stale view we guard against.
    response.headers["Cache-Control"] = "no-store"
    # A page's service worker may cache every GET it sees whatever Cache-Control says; Cache.put refuses "Vary: *".
    response.headers["Vary"] = "*"
    return response


def routing_error(prefix: str) -> Response | None:
    """An app-wide ``before_request``: 404/405 under the plugin prefix as JSON, the host's pages untouched."""
    exc = request.routing_exception
    if exc is None or isinstance(exc, RequestRedirect):
        return None
    if request.path != prefix and not request.path.startswith(prefix + "/"):
        return None
    if not isinstance(exc, HTTPException):
        return None
    code = exc.code or 400
    headers = {}
    if code == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
    return json_error(code, ERROR_CODES.get(code, "http_error"), exc.description or exc.name, headers)
