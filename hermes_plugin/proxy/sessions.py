"""The upstream's stored model per session, read through ``session_read`` with the caller's credentials."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING
from urllib.parse import quote

import requests
from flask import has_request_context, request

from .. import jsonpath
from ..extension import WriteRefused
from .config import SessionRead

if TYPE_CHECKING:
    from .relay import Proxy

log = logging.getLogger("hermes_plugin.proxy")


class SessionModels:
    """The upstream's stored model per session, read through ``session_read`` and cached ``ttl`` seconds."""

    def __init__(self, proxy: Proxy, read: SessionRead, ttl: float, max_sessions: int = 10000) -> None:
        self.proxy, self.read, self.ttl, self.max_sessions = proxy, read, ttl, max_sessions
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()  # session -> (expires, model)
        self._lock = threading.Lock()

    def __call__(self, session: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(session)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            model = self._fetch(session)
        except (requests.RequestException, ValueError) as exc:
            if cached is not None:  # stale-if-error: a blip must not make the guard think nothing is stored
                log.warning("hermes-plugin proxy: re-reading session %r failed (%s); using the last value",
                            session[:100], type(exc).__name__)
                return cached[1]
            raise WriteRefused(502, "bad_gateway", "could not read the session's stored model from the upstream") \
                from None
        with self._lock:
            self._cache[session] = (now + self.ttl, model)
            self._cache.move_to_end(session)
            while len(self._cache) > self.max_sessions:
                self._cache.popitem(last=False)
        return model

    def expire(self, session: str) -> None:
        """After a write: the next read goes upstream (the old value stays only as stale-if-error)."""
        with self._lock:
            if session in self._cache:
                self._cache[session] = (0.0, self._cache[session][1])

    def _fetch(self, session: str) -> str | None:
        url = self.proxy.upstream + self.read.url.replace("{session}", quote(session, safe=""))
        headers = {"Accept": "application/json"}
        if has_request_context():  # the upstream may authorise reads by the user's own cookie or token
            for name in ("Host", "Cookie", "Authorization"):
                if name in request.headers:
                    headers[name] = request.headers[name]
        response = self.proxy.http.get(url, headers=headers, allow_redirects=False, timeout=self.proxy.timeouts)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        model = jsonpath.extract(response.json(), self.read.model)
        return model[0] if model and isinstance(model[0], str) and model[0] else None

