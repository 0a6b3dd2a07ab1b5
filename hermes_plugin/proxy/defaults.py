"""The upstream's configured default model (``[proxy] default_model``), for sessions the page creates.

Read with the caller's own credentials (a per-user default stays per user) and cached ``ttl`` seconds per
caller, so a burst of creates costs one small read.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import requests

from .. import jsonpath, jsontext
from .config import UpstreamRead
from .credentials import CallerCache, caller_headers

if TYPE_CHECKING:
    from .relay import Proxy

log = logging.getLogger("hermes_plugin.proxy")
MAX_CALLERS = 1000


class UpstreamDefault:
    """``reader() -> default model or None`` for the guard's new-session policy."""

    def __init__(self, proxy: Proxy, read: UpstreamRead, ttl: float) -> None:
        self.proxy, self.read = proxy, read
        self._cache: CallerCache[str | None] = CallerCache(ttl, MAX_CALLERS)

    def __call__(self) -> str | None:
        key, cached = self._cache.lookup()
        if cached is not None and cached.fresh:
            return cached.value
        try:
            model = self._fetch()
        except (requests.RequestException, ValueError) as exc:
            # Without the host's word the page's proposal passes, as with no default configured.
            log.warning("hermes-plugin proxy: could not read the upstream's default model: %s", type(exc).__name__)
            return cached.value if cached is not None else None
        self._cache.put(key, model)
        return model

    def _fetch(self) -> str | None:
        headers = {"Accept": "application/json", **caller_headers()}
        response = self.proxy.http.get(
            self.proxy.upstream + self.read.url, headers=headers, allow_redirects=False, timeout=self.proxy.timeouts
        )
        if not 200 <= response.status_code < 300:
            response.close()
            return None
        found = jsonpath.extract(jsontext.loads(response.content), self.read.model)
        return found[0] if found and isinstance(found[0], str) and found[0] else None
