"""The caller's own credentials, forwarded to the upstream when the proxy asks something on the caller's behalf."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import Generic, NamedTuple, TypeVar

from flask import has_request_context, request

V = TypeVar("V")

# What the upstream may authorise a user by; Host too, so virtual hosts answer as they would to the page.
FORWARDED = ("Host", "Cookie", "Authorization")


def caller_headers() -> dict[str, str]:
    """The credential headers of the current request (none outside a request)."""
    if not has_request_context():
        return {}
    return {name: request.headers[name] for name in FORWARDED if name in request.headers}


def caller_digest() -> str:
    """A digest of the caller's credentials: cache answers per caller, never across callers."""
    headers = caller_headers()
    text = "\n".join(f"{name}:{headers.get(name, '')}" for name in FORWARDED)
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class Cached(NamedTuple, Generic[V]):
    value: V
    fresh: bool  # still within its time to live


class CallerCache(Generic[V]):
    """Answers the upstream gave a caller, kept ``ttl`` seconds per caller; the oldest go past ``max_entries``."""

    def __init__(self, ttl: float, max_entries: int = 10000) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self) -> tuple[str, Cached[V] | None]:
        """The current caller's key and what is kept for them (fresh or not), or None."""
        key = caller_digest()
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return key, None
        return key, Cached(entry[1], entry[0] > time.monotonic())

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
