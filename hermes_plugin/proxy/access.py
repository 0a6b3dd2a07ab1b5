"""The upstream decides who may use the plugin's routes: it is asked with the caller's own credentials."""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests
from flask import Response, request

from ..api import ACTIONS, json_error, session_id_problem
from .credentials import CallerCache, caller_headers
from .sessions import refusal

if TYPE_CHECKING:
    from .relay import Proxy

SESSION_ACTIONS = ("session_model", "model_log", "session_write")


class UpstreamAccess:
    """``GET auth_url`` on the upstream as the caller; its status, cached ``ttl`` seconds per caller."""

    def __init__(self, proxy: Proxy, url: str, ttl: float, max_entries: int = 10000) -> None:
        self.proxy, self.url = proxy, url
        self._cache: CallerCache[int] = CallerCache(ttl, max_entries)

    def status(self) -> int:
        key, cached = self._cache.lookup()
        if cached is not None and cached.fresh:
            return cached.value
        try:
            response = self.proxy.http.get(self.proxy.upstream + self.url, headers=caller_headers(), stream=True,
                                           allow_redirects=False, timeout=self.proxy.timeouts)
        except requests.RequestException:
            return 502
        response.close()  # only the status matters; the body is never read
        if response.status_code >= 500:
            return 502
        self._cache.put(key, response.status_code)
        return response.status_code

    def check(self) -> Response | None:
        """An app ``before_request``: None to go on, else the upstream's refusal as a JSON error."""
        action = ACTIONS.get(request.endpoint or "")
        if action is None:  # not a plugin route, or the public guard script
            return None
        session = (request.view_args or {}).get("session_id")
        models = self.proxy.models
        if action in SESSION_ACTIONS and models is not None and isinstance(session, str):
            if session_id_problem(session):
                return None  # the route answers 400 itself, without asking anyone
            status, what = models.answer(session).status, "this session"
        else:
            status, what = self.status(), "this app's model catalog"
        if 200 <= status < 300:
            return None
        code, error, detail = refusal(status, what)
        return json_error(code, error, detail)
