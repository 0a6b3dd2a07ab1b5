"""The status page (``/hermes-plugin/status``): each provider's catalog state and the latest model changes.

Plain HTML with an external stylesheet and no script, every value escaped as text, so it passes a strict
CSP; it sits behind the same authorisation as the other plugin routes (action ``status``).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, url_for
from markupsafe import Markup

from .names import EXTENSION
from .redact import printable, redact
from .state import StateUnavailable

MAX_CHANGES = 25
STATE_WORDS = {"fresh": "fresh", "stale": "stale", "failed": "failing", "pending": "fetching"}
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)


def state_word(snap: Any) -> str:
    """fresh, stale, failing, fetching, or "not fetched" for a provider nobody has asked for yet."""
    if snap.state == "pending" and snap.fetched_at is None and snap.error is None:
        return "not fetched"
    return STATE_WORDS.get(snap.state, snap.state)


def age(fetched_at: float | None, now: float) -> str:
    if fetched_at is None:
        return "never fetched"
    seconds = max(0, int(now - fetched_at))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def providers(state: Any, now: float) -> list[dict[str, Any]]:
    """One row per provider, from what is known now (no fetching)."""
    secrets = state.catalog.secrets()
    rows = []
    for provider in state.catalog.provider_ids():
        snap = state.catalog.snapshot(provider)
        rows.append(
            {
                "id": snap.id,
                "label": snap.label,
                "state": state_word(snap),
                "age": age(snap.fetched_at, now),
                "fetched_at": snap.fetched_at,
                "models": len(snap.models),
                "error": printable(redact(snap.error, secrets)) if snap.error else None,
                "changes": state.changes.since_last_refresh(provider),
            }
        )
    return rows


def recent_changes(state: Any, limit: int = MAX_CHANGES) -> list[dict[str, Any]]:
    """The newest model-log entries of all sessions (from the shared state: every worker's), newest first."""
    entries: list[dict[str, Any]] = []
    try:
        for session in state.store.audit_sessions(limit):
            entries.extend({**entry, "session": session} for entry in state.audit.entries(session))
    except StateUnavailable:  # the shared state is down: the page still shows the catalogs
        return []
    entries.sort(key=lambda e: e.get("time") or 0, reverse=True)
    return entries[:limit]


def _cell(value: Any) -> Markup:
    return Markup("<td>{}</td>").format("" if value is None else str(value))


def _changes_text(changes: dict[str, Any] | None) -> str:
    if changes is None:
        return "not fetched yet"
    if changes["first"]:
        return "first fetch since start"
    if not changes["added"] and not changes["removed"]:
        return "no change"
    parts = []
    if changes["added"]:
        parts.append("added " + ", ".join(changes["added"]))
    if changes["removed"]:
        parts.append("removed " + ", ".join(changes["removed"]))
    return "; ".join(parts)


def render(state: Any, stylesheet: str) -> str:
    """The page. No ``<head>`` tag on purpose: the guard script is injected after one, and this page needs none."""
    now = time.time()
    rows = Markup("").join(
        Markup('<tr class="state-{}">').format(row["state"].replace(" ", "-"))
        + _cell(row["id"])
        + _cell(row["label"])
        + _cell(row["state"])
        + _cell(row["age"])
        + _cell(row["models"])
        + _cell(_changes_text(row["changes"]))
        + _cell(row["error"] or "")
        + Markup("</tr>")
        for row in providers(state, now)
    )
    changes = recent_changes(state)
    change_rows = Markup("").join(
        Markup("<tr>")
        + _cell(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.get("time") or 0)))
        + _cell(e["session"])
        + _cell(e.get("by") or e.get("intent"))
        + _cell(e.get("old"))
        + _cell(e.get("proposed"))
        + _cell(e.get("new"))
        + _cell(e.get("outcome"))
        + _cell(e.get("reason"))
        + Markup("</tr>")
        for e in changes
    )
    impact = state.impact.latest
    if impact is None or not impact.sources:
        impact_line = Markup("<p>Impact report: no session source registered, or not computed yet.</p>")
    else:
        counts = impact.counts()
        impact_line = Markup(
            "<p>Impact of the latest refresh: <strong>{}</strong> of {} sessions and "
            "<strong>{}</strong> defaults point at a model no provider lists any more; {} sessions cannot be "
            "judged while a provider is stale, failing or not fetched.</p>"
        ).format(counts["sessions"], counts["checked"], counts["defaults"], counts["unknown"])
    page = Markup(
        '<!doctype html><html lang="en"><meta charset="utf-8"><title>hermes-plugin status</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="stylesheet" href="{stylesheet}"><body><main>'
        "<h1>hermes-plugin status</h1>"
        '<h2>Provider catalogs</h2><table id="providers"><thead><tr><th>Provider</th><th>Label</th><th>State</th>'
        "<th>Age</th><th>Models</th><th>Changed at the last refresh</th><th>Last error</th></tr></thead>"
        "<tbody>{rows}</tbody></table>{impact}"
        '<h2>Latest model changes</h2><table id="changes"><thead><tr><th>Time</th><th>Session</th><th>By</th><th>From</th>'
        "<th>Proposed</th><th>Stored</th><th>Outcome</th><th>Reason</th></tr></thead><tbody>{changes}</tbody></table>"
        "{empty}</main></body></html>"
    ).format(
        stylesheet=stylesheet,
        rows=rows,
        impact=impact_line,
        changes=change_rows,
        empty=Markup("") if changes else Markup("<p>No model changes recorded yet.</p>"),
    )
    return str(page)


def add_status_route(bp: Blueprint) -> None:
    @bp.get("/status", endpoint="status")
    def status() -> Response:
        state = current_app.extensions[EXTENSION]
        html = render(state, url_for("hermes_plugin.static", filename="hermes-status.css"))
        response = Response(html, mimetype="text/html")
        response.headers["Cache-Control"] = "no-store"
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response
