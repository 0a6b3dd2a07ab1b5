"""The upstream decides who may use the plugin's routes: it is asked with the caller's own credentials."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import requests
from flask import Response, request

from ..api import ACTIONS, json_error, session_id_problem
from .credentials import caller_digest, caller_headers
from .sessions import refusal

if TYPE_CHECKING:
    from .relay import Proxy

SESSION_ACTIONS = ("session_model", "model_log", "session_write")


class UpstreamAccess:
    """``GET auth_url`` on the upstream as the caller; its status, cached ``ttl`` seconds per caller."""

    def __init__(self, proxy: Proxy, url: str, ttl: float, max_entries: int = 10000) -> None:
        self.proxy, self.url, self.ttl, self.max_entries = proxy, url, ttl, max_entries
        self._cache: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def status(self) -> int:
        key, now = caller_digest(), time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = self.proxy.http.get(self.proxy.upstream + self.url, headers=caller_headers(), stream=True,
                                           allow_redirects=False, timeout=self.proxy.timeouts)
        except requests.RequestException:
            return 502
        response.close()  # only the status matters; the body is never read
        if response.status_code >= 500:
            return 502
        with self._lock:
            self._cache[key] = (now + self.ttl, response.status_code)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
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
