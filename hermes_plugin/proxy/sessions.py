"""The upstream's stored model per session, read through ``session_read`` with the caller's own credentials.

Answers are cached ``ttl`` seconds per (session, caller): one caller's read never answers another's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote

import requests

from .. import jsonpath
from ..extension import WriteRefused
from .config import SessionRead
from .credentials import caller_digest, caller_headers

if TYPE_CHECKING:
    from .relay import Proxy

log = logging.getLogger("hermes_plugin.proxy")


@dataclass(frozen=True)
class SessionAnswer:
    """What the upstream said when asked for a session on the caller's behalf."""

    status: int  # the upstream's HTTP status (502 when it did not answer)
    model: str | list[str] | None = None  # a list when ``session_read``'s path walks one

    @property
    def allowed(self) -> bool:
        return 200 <= self.status < 300


def refusal(status: int, what: str) -> tuple[int, str, str]:
    """(status, error code, detail) for the client when the upstream refused: its status, never a 500."""
    if 300 <= status < 400:  # typically a redirect to a login page
        return 401, "unauthorized", f"the upstream app redirected instead of answering: sign in to see {what}"
    if status == 401:
        return 401, "unauthorized", f"the upstream app requires you to sign in to see {what}"
    if status == 403:
        return 403, "forbidden", f"the upstream app does not let you see {what}"
    if status == 404:
        return 404, "not_found", f"the upstream app answered 404 (not found) for {what}"
    if 400 <= status < 500:
        return status, "refused", f"the upstream app refused to show {what} (HTTP {status})"
    return 502, "bad_gateway", f"the upstream app did not answer for {what}"


class SessionModels:
    """``reader(session) -> stored model`` for the guard, plus ``answer(session)`` for the plugin's routes."""

    def __init__(self, proxy: Proxy, read: SessionRead, ttl: float, max_entries: int = 10000) -> None:
        self.proxy, self.read, self.ttl, self.max_entries = proxy, read, ttl, max_entries
        # (session, caller digest) -> (expires, answer); the expired answer stays as stale-if-error.
        self._cache: OrderedDict[tuple[str, str], tuple[float, SessionAnswer]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, session: str) -> str | list[str] | None:
        """The guard's reader: the model, None for a session the upstream does not have, else WriteRefused."""
        answer = self.answer(session)
        if answer.allowed:
            return answer.model
        if answer.status == 404:
            return None
        status, error, detail = refusal(answer.status, "this session")
        raise WriteRefused(status, error, detail)

    def answer(self, session: str) -> SessionAnswer:
        """The upstream's answer for this caller, cached ``ttl`` seconds per caller."""
        key = (session, caller_digest())
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answer = self._fetch(session)
        except (requests.RequestException, ValueError) as exc:
            answer, why = SessionAnswer(502), type(exc).__name__
        else:
            why = f"HTTP {answer.status}"
        if answer.status >= 500:
            if cached is not None and cached[1].allowed:  # a blip must not make the guard think nothing is stored
                log.warning("hermes-plugin proxy: re-reading session %r failed (%s); using the last value",
                            session[:100], why)
                return cached[1]
            return SessionAnswer(502)
        with self._lock:
            self._cache[key] = (now + self.ttl, answer)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        return answer

    def expire(self, session: str) -> None:
        """After a write: every caller's next read goes upstream (old values stay only as stale-if-error)."""
        with self._lock:
            for key, (_, answer) in list(self._cache.items()):
                if key[0] == session:
                    self._cache[key] = (0.0, answer)

    def _fetch(self, session: str) -> SessionAnswer:
        url = self.proxy.upstream + self.read.url.replace("{session}", quote(session, safe=""))
        headers = {"Accept": "application/json", **caller_headers()}
        body = self.read.request_body(session) if self.read.body is not None else None
        response = self.proxy.http.request(self.read.method, url, headers=headers, json=body, allow_redirects=False,
                                           timeout=self.proxy.timeouts)
        if not 200 <= response.status_code < 300:
            response.close()
            return SessionAnswer(response.status_code)
        found = jsonpath.extract(response.json(), self.read.model)
        if "[]" in self.read.model:  # a model list (a multi-model chat): every entry, in order
            models = [model for model in found if isinstance(model, str) and model]
            return SessionAnswer(response.status_code, models if models and len(models) == len(found) else None)
        model = found[0] if found and isinstance(found[0], str) and found[0] else None
        return SessionAnswer(response.status_code, model)
