"""URL and header handling: the upstream's fixed origin, the client's path and query, hop-by-hop names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from ..errors import ConfigError

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded (plus what Connection names).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
                        "proxy-connection", "proxy-authenticate", "proxy-authorization"})


def upstream_base(upstream: str) -> str:
    """The validated ``--upstream``: an http(s) URL without query or fragment, no trailing slash."""
    parts = urlsplit(upstream)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"--upstream must be an http(s):// URL without query, got {upstream!r}")
    return upstream.rstrip("/")


class BadTarget(ValueError):
    """A request-target that could name another host: refused with 400, never forwarded."""


def target_problem(environ: Mapping[str, Any]) -> str | None:
    """Why this request-target may not be forwarded, or None: only origin-form (``/path?query``) is.

    Absolute-form, ``//host``, ``@host``, authority-form (CONNECT) and ``*`` would let the client choose
    the host the proxy talks to (the upstream URL and the path are joined as text).
    """
    method = environ.get("REQUEST_METHOD", "")
    if method == "CONNECT":
        return "CONNECT is not supported: this is a reverse proxy for one upstream"
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    for value in (raw, environ.get("PATH_INFO", "/")):
        if value is None:
            continue
        if value == "*":
            return "the request-target '*' is not supported"
        if not value.startswith("/") or value.startswith("//") or "\\" in value.split("?", 1)[0]:
            return "the request-target must be a path starting with a single '/'"
    return None


def client_target(environ: Mapping[str, Any]) -> str:
    """The path and query of this request as the client sent them (origin-form only, else BadTarget)."""
    problem = target_problem(environ)
    if problem:
        raise BadTarget(problem)
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw:
        raw = quote(environ.get("PATH_INFO", "/"), safe="/%:@!$&'()*+,;=~-._")
        query = environ.get("QUERY_STRING")
        raw += f"?{query}" if query else ""
    return raw


def join(base: str, target: str) -> str:
    """``base`` (scheme://host:port[/prefix]) + an origin-form target: the origin can only be the base's."""
    if not target.startswith("/") or target.startswith("//"):
        raise BadTarget("the request-target must be a path starting with a single '/'")
    return base + target


def hop_by_hop(headers: Any) -> set[str]:
    """Lower-case names not to forward: the fixed set plus every name the Connection header lists."""
    names = set(HOP_BY_HOP)
    for value in headers.get_all("Connection") if hasattr(headers, "get_all") else [headers.get("Connection", "")]:
        names.update(token.strip().lower() for token in (value or "").split(",") if token.strip())
    return names

