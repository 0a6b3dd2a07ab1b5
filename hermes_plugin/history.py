"""Changing a session's model from the plugin itself: the user's answer to a prompt, and undo.

Both go through the guarded write path: the session's lock, a required If-Match against the session's
version (428 without, 412 when stale), the host's setter, then the version, the model log and the
WebSocket event in one step, like any guarded write.
"""

from __future__ import annotations

from typing import Any

from flask import request
from flask.wrappers import Response

from . import api, jsontext
from .errors import InvalidModelId
from .models import validate_write_id
from .state import StateUnavailable
from .writeguard import Decision, last_change

# Why the user set the model through the plugin (the model log's ``reason``).
SET_REASONS = ("pick", "replacement", "price_accepted")
MAX_BODY = 4096


class Refused(Exception):
    """A request the set/undo routes answer with an error, before anything is written."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.response = api.json_error(status, error, detail, **extra)


def read_body(required: bool) -> dict[str, Any]:
    """The JSON object sent (``{}`` for an empty body when not ``required``); Refused when it is not one."""
    data = request.get_data(cache=True)
    if len(data) > MAX_BODY:
        raise Refused(413, "payload_too_large", f"the body may be at most {MAX_BODY} bytes")
    if not data.strip() and not required:
        return {}
    if not request.is_json:
        raise Refused(415, "unsupported_media_type", "send a JSON body (application/json)")
    try:
        body = jsontext.loads(data)
    except ValueError as exc:
        raise Refused(400, "bad_request", f"malformed JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise Refused(400, "bad_request", f"the body must be a JSON object, got {type(body).__name__}")
    return body


def set_model(session: str) -> Response:
    """``POST <prefix>/api/sessions/<id>/model``: ``{"model": ..., "reason": "pick"|"replacement"|...}``."""
    try:
        body = read_body(required=True)
        try:
            model = validate_write_id(body.get("model"))
        except InvalidModelId as exc:
            raise Refused(400, "bad_request", f"model: {exc}") from None
        reason = body.get("reason", "pick")
        if reason not in SET_REASONS:
            raise Refused(400, "bad_request", f"reason must be one of {', '.join(SET_REASONS)}")
        return _write(session, lambda stored, entries: model, str(reason))
    except Refused as refused:
        return refused.response


def undo(session: str) -> Response:
    """``POST <prefix>/api/sessions/<id>/model/undo``: back to the model before the session's last change."""
    try:
        read_body(required=False)

        def previous(stored: str | None, entries: list[dict[str, Any]]) -> str:
            change = last_change(entries, stored)
            if change is None or not isinstance(change.get("old"), str) or not change["old"]:
                raise Refused(409, "nothing_to_undo", "the model log has no change to the current model to undo")
            return str(change["old"])

        return _write(session, previous, "undo")
    except Refused as refused:
        return refused.response


def _write(session: str, target: Any, reason: str) -> Response:
    from .extension import WriteRefused, _record  # the guarded write path's own recording step

    problem = api.session_id_problem(session)
    if problem:
        raise Refused(400, "bad_request", problem)
    state = api.state()
    refused = state.cross_origin()  # a write: another site's page may not make it
    if refused:
        raise Refused(403, "cross_origin", refused)
    if_match = request.headers.get("If-Match")
    if if_match is None:
        raise Refused(428, "precondition_required", "send If-Match with the session's version (its ETag)")
    try:
        with state.session_lock(session):
            stored = state.read_model(session)
            version = state.versions.current(session, stored, state.host_version(session))
            if not state.versions.matches(if_match, version):
                response = api.json_error(412, "stale_version", "the session's model changed since you read it",
                                          version=version, model=stored)
                response.set_etag(str(version))
                return response
            if stored is None:
                raise Refused(404, "not_found", "the session has no stored model")
            model = target(stored, state.audit.entries(session))
            decision = Decision("pass", reason, session=session, stored=stored, proposed=model, intent="user")
            state.notify(decision)
            if model != stored:
                state.write_model(session, model)
                version = _record(state, decision, stored, version)
            after = state.read_model(session)
    except WriteRefused as exc:
        return exc.response
    except StateUnavailable as exc:
        return api.unavailable(exc)
    response = api.no_store(api.jsonify({"session": session, "model": after, "previous": stored,
                                         "version": version, "reason": reason}))
    response.set_etag(str(version))
    return response
