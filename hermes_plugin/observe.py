"""Learn catalogs from the host's own catalog endpoints (``HERMES_PLUGIN_LIVE_URLS`` / ``_STATIC_URLS``).

The host already fetches its providers' model lists; reading those responses tells the server guard what
the page knows, without a second upstream request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from flask import request
from flask.wrappers import Response

from . import jsonpath, jsontext
from .errors import ConfigError

log = logging.getLogger(__name__)

READ_METHODS = ("GET", "POST", "PUT", "PATCH")
MAX_BODY = 2 * 2**20  # larger bodies are not catalogs we want to parse inside the host's request


@dataclass(frozen=True)
class Endpoint:
    """One configured catalog endpoint of the host."""

    url: re.Pattern[str]
    models: str
    source: str  # "live" | "static"
    provider: str | None = None  # a dotted path; else the URL's named group ``provider``
    state: str | None = None  # a dotted path to the host's own state; anything but "fresh" is not a live listing
    method: str = "GET"  # some hosts read a catalog by POST
    empty_means_none: bool = False  # an empty live list is real, not the host hiding an outage


def endpoints(live: Sequence[Mapping[str, Any]], static: Sequence[Mapping[str, Any]]) -> list[Endpoint]:
    """Compile the config once; a bad entry is a ConfigError at startup, not a failure per request."""
    compiled = []
    for source, entries in (("live", live), ("static", static)):
        if not isinstance(entries, Sequence) or isinstance(entries, (str, bytes)):
            raise ConfigError(f"HERMES_PLUGIN_{source.upper()}_URLS must be a list of tables")
        for entry in entries:
            try:
                url = re.compile(entry["url"])
                for key in ("models", "provider", "state"):
                    if entry.get(key) is not None:
                        jsonpath.parse(entry[key])
            except (KeyError, TypeError, re.error, jsonpath.PathError) as exc:
                raise ConfigError(f"HERMES_PLUGIN_{source.upper()}_URLS entry {entry!r}: {exc}") from exc
            if entry.get("provider") is None and "provider" not in url.groupindex:
                raise ConfigError(f"{entry['url']!r}: needs a named group 'provider' or a 'provider' path")
            method = url_method(entry, f"HERMES_PLUGIN_{source.upper()}_URLS")
            empty = entry.get("empty_means_none", False)
            if not isinstance(empty, bool):
                raise ConfigError(f"HERMES_PLUGIN_{source.upper()}_URLS entry {entry!r}: empty_means_none must be a bool")
            compiled.append(Endpoint(url, entry["models"], source, entry.get("provider"), entry.get("state"),
                                     method, empty))
    return compiled


def url_method(entry: Mapping[str, Any], where: str) -> str:
    """The HTTP method a catalog or session URL entry is read with: ``GET`` unless it names another."""
    method = entry.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in READ_METHODS:
        raise ConfigError(f"{where} entry {dict(entry)!r}: method must be one of {', '.join(READ_METHODS)}")
    return method.upper()


def _ids(values: list[Any]) -> list[str]:
    return [value for value in values if isinstance(value, str)]


def _json_body(response: Response) -> Any:
    if response.is_streamed or response.direct_passthrough or not response.is_json:
        return jsonpath.MISSING
    if "Content-Encoding" in response.headers or (response.content_length or 0) > MAX_BODY:
        return jsonpath.MISSING
    body = response.get_data()
    if len(body) > MAX_BODY:
        return jsonpath.MISSING
    try:
        return jsontext.loads(body)
    except ValueError:
        return jsonpath.MISSING


def _failure(response: Response) -> str:
    """``HTTP <code>``, plus the host's own ``error``/``detail`` text when its body gives one (the user sees it)."""
    body = _json_body(response)
    reason = next((body[key] for key in ("detail", "error") if isinstance(body, dict) and isinstance(body.get(key), str)), None)
    return f"HTTP {response.status_code}: {reason[:200]}" if reason else f"HTTP {response.status_code}"


def observe_response(catalog: Any, points: list[Endpoint], response: Response) -> None:
    """Feed ``catalog.observe`` from one host response; never raises into the host."""
    if not points:
        return
    target = request.full_path.rstrip("?")
    try:
        for point in points:
            if point.method != request.method:
                continue
            match = point.url.search(target)
            if match is not None:
                _observe(catalog, point, match, response)
    except Exception:  # learning is a side effect: the host's response must go out regardless
        log.exception("hermes-plugin: could not learn a catalog from %s", target)


def _observe(catalog: Any, point: Endpoint, match: re.Match[str], response: Response) -> None:
    url_provider = unquote(match.group("provider")) if "provider" in point.url.groupindex else None
    if response.status_code >= 400:
        if point.source == "live" and url_provider:
            catalog.observe(url_provider, [], "live", ok=False, error=_failure(response))
        return
    if response.status_code != 200:
        return
    body = _json_body(response)
    if body is jsonpath.MISSING:
        return
    ok, error = True, None
    if point.state is not None:
        states = jsonpath.extract(body, point.state)
        if states and states[0] != "fresh":
            ok, error = False, f"host reports state {states[0]!s:.40}"
    if point.provider is not None:
        pairs = jsonpath.grouped(body, point.provider, point.models)
    else:
        pairs = [(url_provider, jsonpath.extract(body, point.models))]
    # A flat list (``models[].provider`` with ``models[].id``) gives one pair per model: collect each
    # provider's models across every entry, or only the last model of each provider would be recorded.
    collected: dict[str, list[str]] = {}
    for provider, models in pairs:
        provider = provider if isinstance(provider, str) and provider else url_provider
        if provider:
            collected.setdefault(provider, []).extend(_ids(models))
    for provider, ids in collected.items():
        catalog.observe(provider, ids, point.source, ok=ok, error=error, empty_means_none=point.empty_means_none)
