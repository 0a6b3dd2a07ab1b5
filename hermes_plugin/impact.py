"""The impact report: which sessions and default models point at a model the catalogs now confirm absent.

Recomputed in the background after each catalog refresh (one run at a time; refreshes during a run
ask for one more), served at ``/api/impact``, printed by ``hermes-plugin impact``; each run's counts go
out as a ``catalog`` WebSocket event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .redact import printable, redact

log = logging.getLogger(__name__)

MAX_LISTED = 1000  # sessions listed in one report; the counts always cover all of them
MAX_ERRORS = 20

# What a host registers: session ids (or ``(id, stored model)`` pairs), and ``{name: model}`` defaults.
SessionIds = Callable[[], Iterable[Any]]
DefaultModels = Callable[[], Mapping[str, Any]]


@dataclass
class ImpactReport:
    """One run: the sessions and defaults whose model is absent, and how many were looked at."""

    computed_at: float
    checked: int = 0  # sessions looked at
    unknown: int = 0  # sessions whose model no catalog can judge now (provider down, never fetched)
    sessions: list[dict[str, Any]] = field(default_factory=list)  # {"session", "model", "reason"}
    session_count: int = 0  # sessions on an absent model (may exceed the listed ones)
    defaults: list[dict[str, Any]] = field(default_factory=list)  # {"name", "model", "reason"}
    errors: list[str] = field(default_factory=list)
    sources: bool = True  # False when the host registered no session or default source at all

    def counts(self) -> dict[str, int]:
        return {
            "sessions": self.session_count,
            "defaults": len(self.defaults),
            "checked": self.checked,
            "unknown": self.unknown,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "computed_at": self.computed_at,
            "counts": self.counts(),
            "sessions": self.sessions,
            "defaults": self.defaults,
            "errors": self.errors,
            "sources": self.sources,
        }


def _pair(item: Any) -> tuple[str, Any, bool]:
    """``"id"`` -> (id, None, False); ``("id", model)`` -> (id, model, True): the model came with the id."""
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return str(item[0]), item[1], True
    return str(item), None, False


def compute(
    catalog: Any,
    sessions: Iterable[Any],
    defaults: Mapping[str, Any],
    read_model: Callable[[str], str | None],
    secrets: list[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImpactReport:
    """Judge every session's and default's model against the catalogs as they are now (no fetching)."""
    report = ImpactReport(time.time())

    def judge(model: str) -> tuple[str, str | None]:
        availability, _, reason = catalog.explain(model)
        return str(availability), reason

    for item in sessions:
        session, model, given = _pair(item)
        if not given:
            try:
                model = read_model(session)
            except Exception as exc:  # one unreadable session must not hide the others
                if len(report.errors) < MAX_ERRORS:
                    report.errors.append(f"session {printable(session[:100])}: {type(exc).__name__}")
                model = None
        report.checked += 1
        if progress is not None:
            progress(1)
        if not isinstance(model, str) or not model:
            continue
        availability, reason = judge(model)
        if availability == "absent":
            report.session_count += 1
            if len(report.sessions) < MAX_LISTED:
                report.sessions.append({"session": session, "model": model, "reason": reason})
        elif availability == "unknown":
            report.unknown += 1
    for name, model in defaults.items():
        if isinstance(model, str) and model and judge(model)[0] == "absent":
            report.defaults.append({"name": str(name), "model": model, "reason": judge(model)[1]})
    report.errors = [redact(e, secrets or []) for e in report.errors]
    return report


class Impact:
    """One app's impact reports: the sources the host registered, the latest report, background reruns."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.latest: ImpactReport | None = None
        self._lock = threading.Lock()
        self._dirty = False
        self._running = False
        self._last_snapshot: Any = None
        state.catalog.subscribe(self._refreshed)

    # -- the host's sources ------------------------------------------------------------------------

    def session_sources(self) -> list[SessionIds]:
        hooks = [lambda: [item for part in self.state.pm.hook.hermes_plugin_session_ids() for item in part or ()]]
        return [*self.state.guard._session_ids, *hooks]

    def has_sources(self) -> bool:
        return bool(
            self.state.guard._session_ids
            or self.state.guard._default_models
            or self.state.pm.hook.hermes_plugin_session_ids.get_hookimpls()
            or self.state.pm.hook.hermes_plugin_default_models.get_hookimpls()
        )

    def sessions(self) -> Iterable[Any]:
        """Every session of every source (a session two sources list is judged once)."""
        seen: set[str] = set()
        for source in self.session_sources():
            for item in source() or ():
                session = _pair(item)[0]
                if session not in seen:
                    seen.add(session)
                    yield item

    def defaults(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for source in self.state.guard._default_models:
            found.update(source() or {})
        for part in self.state.pm.hook.hermes_plugin_default_models():
            found.update(part or {})
        return found

    # -- running -----------------------------------------------------------------------------------

    def run(self, progress: Callable[[int], None] | None = None, sessions: Iterable[Any] | None = None) -> ImpactReport:
        """Compute a report now (in the caller's thread) and keep it as the latest; ``sessions`` if already listed."""
        if not self.has_sources():
            report = ImpactReport(time.time(), sources=False)
        else:
            try:
                listed = self.sessions() if sessions is None else sessions
                report = compute(
                    self.state.catalog,
                    listed,
                    self.defaults(),
                    self.state.read_model,
                    self.state.catalog.secrets(),
                    progress,
                )
            except Exception as exc:  # a host source that fails: say so instead of keeping an old report
                log.info("hermes-plugin: impact report failed: %s", type(exc).__name__)  # in the report too
                report = ImpactReport(
                    time.time(),
                    errors=[
                        redact(f"listing sessions failed: {type(exc).__name__}: {exc}", self.state.catalog.secrets())[
                            :300
                        ]
                    ],
                )
        with self._lock:
            self.latest = report
        return report

    def _refreshed(self, snapshot: Any) -> None:
        """After a refresh settles: one more background run (never two at once)."""
        if snapshot.state == "pending" or not self.has_sources():
            return
        with self._lock:
            self._dirty, self._last_snapshot = True, snapshot
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._work, name="hermes-impact", daemon=True).start()

    def _work(self) -> None:
        app = self.state.app_ref()
        while True:
            with self._lock:
                if not self._dirty or app is None:
                    self._running = False
                    return
                self._dirty, snapshot = False, self._last_snapshot
            with app.app_context():  # host readers may use the app's database handle
                report = self.run()
            self.state.hub.publish(
                {"type": "catalog", "provider": snapshot.id, "state": snapshot.state, "impact": report.counts()},
                fleet=False,
            )


def add_impact_route(bp: Any) -> None:
    """``GET /api/impact``: the latest report (computed now when there is none, or with ``?refresh=1``)."""
    from flask import current_app, jsonify, request

    from .names import EXTENSION

    @bp.get("/api/impact", endpoint="impact")
    def impact() -> Any:
        service: Impact = current_app.extensions[EXTENSION].impact
        refresh = request.args.get("refresh", "").lower() in ("1", "true", "yes")
        if service.latest is not None and not refresh:
            report = service.latest
        else:
            service.state.catalog.catalogs()  # providers never fetched would leave every model "unknown"
            report = service.run()
        response = jsonify(report.to_json())
        response.headers["Cache-Control"] = "no-store"
        return response
