"""The impact report's sources behind the proxy: the upstream's session list and its default models.

Asked with the caller's credentials during a request (``/api/impact?refresh=1``), anonymously after a
background catalog refresh; an upstream that refuses is reported as an error in the report.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .. import jsonpath, jsontext
from .config import DefaultRead, SessionList
from .credentials import caller_headers

if TYPE_CHECKING:
    from .relay import Proxy


class UpstreamRefused(RuntimeError):
    """The upstream did not list its sessions (or defaults) for us."""


def _get_json(proxy: Proxy, path: str) -> Any:
    response = proxy.http.get(
        proxy.upstream + path,
        headers={"Accept": "application/json", **caller_headers()},
        allow_redirects=False,
        timeout=proxy.timeouts,
    )
    if not 200 <= response.status_code < 300:
        response.close()
        raise UpstreamRefused(f"GET {path} answered HTTP {response.status_code}")
    return jsontext.loads(response.content)


def session_source(proxy: Proxy, listing: SessionList) -> Any:
    """``source()`` for ``guard.session_ids``: ``(id, model)`` pairs when the list carries models, else ids."""

    def sessions() -> Iterator[Any]:
        for item in jsonpath.extract(_get_json(proxy, listing.url), listing.sessions):
            session = jsonpath.extract(item, listing.session)
            if not session or not isinstance(session[0], (str, int)) or isinstance(session[0], bool):
                continue
            if listing.model is None:
                yield str(session[0])  # the guard reads its model through session_read
            else:
                model = jsonpath.extract(item, listing.model)
                yield str(session[0]), model[0] if model and isinstance(model[0], str) else None

    return sessions


def defaults_source(proxy: Proxy, defaults: list[DefaultRead]) -> Any:
    """``source()`` for ``guard.default_models``: one GET per distinct URL."""

    def read() -> dict[str, Any]:
        documents: dict[str, Any] = {}
        found: dict[str, Any] = {}
        for entry in defaults:
            if entry.url not in documents:
                documents[entry.url] = _get_json(proxy, entry.url)
            value = jsonpath.extract(documents[entry.url], entry.model)
            found[entry.name] = value[0] if value and isinstance(value[0], str) else None
        return found

    return read
