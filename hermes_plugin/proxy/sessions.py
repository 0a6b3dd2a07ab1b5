"""The upstream's stored model per session, read through ``session_read`` with the caller's own credentials.

Answers are cached ``ttl`` seconds per (session, caller): one caller's read never answers another's.
Models are also learnt without a read of our own (``learn_ttl`` seconds): from the app's own responses to
the very same raw read, and from the proxy's own guarded writes, so a write never waits for a slow read.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import requests

from .. import jsonpath, jsontext
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


def read_pattern(url: str) -> re.Pattern[str]:
    """``/api/session?session_id={session}&messages=0`` as a regex: the same read, for any session."""
    before, _, after = url.partition("{session}")
    return re.compile(re.escape(before) + r"(?P<session>[^&/?#]+)" + re.escape(after))


class SessionModels:
    """``reader(session) -> stored model`` for the guard, plus ``answer(session)`` for the plugin's routes."""

    def __init__(self, proxy: Proxy, read: SessionRead, ttl: float, learn_ttl: float = 30.0,
                 max_entries: int = 10000) -> None:
        self.proxy, self.read, self.ttl, self.max_entries = proxy, read, ttl, max_entries
        self.learn_ttl = learn_ttl
        self.read_url = read_pattern(read.url)
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
        self._put(key, now + self.ttl, answer)
        return answer

    def _put(self, key: tuple[str, str], expires: float, answer: SessionAnswer) -> None:
        with self._lock:
            self._cache[key] = (expires, answer)
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)

    def expire(self, session: str) -> None:
        """After a write: every caller's next read goes upstream (old values stay only as stale-if-error)."""
        with self._lock:
            for key, (_, answer) in list(self._cache.items()):
                if key[0] == session:
                    self._cache[key] = (0.0, answer)

    def learn(self, session: str, model: str | list[str] | None) -> None:
        """This caller's stored model, seen without asking: kept ``learn_ttl`` seconds for this caller only."""
        if self.learn_ttl > 0:
            self._put((session, caller_digest()), time.monotonic() + self.learn_ttl, SessionAnswer(200, model))

    def learn_write(self, session: str, model: str | list[str] | None) -> None:
        """After a guarded write the upstream accepted: the writer knows the model it stored; others re-read."""
        self.expire(session)
        if model is not None:
            self.learn(session, model)

    def learn_response(self, target: str, body: bytes) -> None:
        """The app's own answer to the same raw read as ours (``target`` is its path and query)."""
        match = self.read_url.fullmatch(target)
        if match is None:
            return
        try:
            found = jsonpath.extract(jsontext.loads(body), self.read.model)
        except (ValueError, jsonpath.PathError):
            return
        self.learn(unquote(match.group("session")), self.model_of(found))

    def _fetch(self, session: str) -> SessionAnswer:
        url = self.proxy.upstream + self.read.url.replace("{session}", quote(session, safe=""))
        headers = {"Accept": "application/json", **caller_headers()}
        body = self.read.request_body(session) if self.read.body is not None else None
        response = self.proxy.http.request(self.read.method, url, headers=headers, json=body, allow_redirects=False,
                                           timeout=self.proxy.timeouts)
        if not 200 <= response.status_code < 300:
            response.close()
            return SessionAnswer(response.status_code)
        return SessionAnswer(response.status_code, self.model_of(jsonpath.extract(jsontext.loads(response.content), self.read.model)))

    @property
    def reads_lists(self) -> bool:
        """Whether ``session_read`` walks a model list (a multi-model chat's)."""
        return "[]" in self.read.model

    def model_of(self, found: list[Any]) -> str | list[str] | None:
        """The stored model as read: every entry of a list (all of them ids), else the one id."""
        if self.reads_lists:
            models = [model for model in found if isinstance(model, str) and model]
            return models if models and len(models) == len(found) else None
        return found[0] if found and isinstance(found[0], str) and found[0] else None
