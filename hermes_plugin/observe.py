"""Learn catalogs from the host's own catalog endpoints (``HERMES_PLUGIN_LIVE_URLS`` / ``_STATIC_URLS``).

The host already fetches its providers' model lists; reading those responses tells the server guard what
the page knows, without a second upstream request.
"""

from __future__ import annotations

import functools
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
MAX_REMEMBERED = 256 * 2**10  # what a catalog answer told is remembered by its bytes up to this size


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


def _json_data(response: Response) -> bytes | None:
    """The bytes of a JSON answer small enough to read inside the host's request; None for any other."""
    if response.is_streamed or response.direct_passthrough or not response.is_json:
        return None
    if "Content-Encoding" in response.headers or (response.content_length or 0) > MAX_BODY:
        return None
    data = response.get_data()
    return data if len(data) <= MAX_BODY else None


def _json_body(response: Response) -> Any:
    data = _json_data(response)
    if data is None:
        return jsonpath.MISSING
    try:
        return jsontext.loads(data)
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
    data = _json_data(response)
    if data is None:
        return
    read_catalog = _read_catalog if len(data) <= MAX_REMEMBERED else _read_catalog.__wrapped__
    read = read_catalog(data, point.models, point.provider, point.state, url_provider)
    if read is None:
        return
    ok, error, collected = read
    for provider, ids in collected:
        catalog.observe(provider, list(ids), point.source, ok=ok, error=error, empty_means_none=point.empty_means_none)


Collected = tuple[tuple[str, tuple[str, ...]], ...]


@functools.lru_cache(maxsize=16)  # 16 bodies of at most MAX_REMEMBERED bytes: 4 MiB at most
def _read_catalog(data: bytes, models_path: str, provider_path: str | None, state_path: str | None,
                  url_provider: str | None) -> tuple[bool, str | None, Collected] | None:
    """What a catalog answer says: ok or not, why, and each provider's model ids; None when it is no JSON.
    The same bytes at the same endpoint say the same: a page reloading an unchanged list is read once."""
    try:
        body = jsontext.loads(data)
    except ValueError:
        return None
    ok, error = True, None
    if state_path is not None:
        states = jsonpath.extract(body, state_path)
        if states and states[0] != "fresh":
            ok, error = False, f"host reports state {states[0]!s:.40}"
    if provider_path is not None:
        pairs = jsonpath.grouped(body, provider_path, models_path)
    else:
        pairs = [(url_provider, jsonpath.extract(body, models_path))]
    # A flat list (``models[].provider`` with ``models[].id``) gives one pair per model: collect each
    # provider's models across every entry, or only the last model of each provider would be recorded.
    collected: dict[str, list[str]] = {}
    for provider, models in pairs:
        provider = provider if isinstance(provider, str) and provider else url_provider
        if provider:
            collected.setdefault(provider, []).extend(_ids(models))
    return ok, error, tuple((provider, tuple(ids)) for provider, ids in collected.items())
