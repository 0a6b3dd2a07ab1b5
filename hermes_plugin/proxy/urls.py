"""URL and header handling: the upstream's fixed origin, the client's path and query, hop-by-hop names."""

from __future__ import annotations

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


def client_target(environ: dict[str, Any]) -> str:
    """The path and query of this request as the client sent them."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if not raw or not raw.startswith("/"):
        raw = quote(environ.get("PATH_INFO", "/"), safe="/%:@!$&'()*+,;=~-._")
        query = environ.get("QUERY_STRING")
        raw += f"?{query}" if query else ""
    return raw


def hop_by_hop(headers: Any) -> set[str]:
    """Lower-case names not to forward: the fixed set plus every name the Connection header lists."""
    names = set(HOP_BY_HOP)
    for value in headers.get_all("Connection") if hasattr(headers, "get_all") else [headers.get("Connection", "")]:
        names.update(token.strip().lower() for token in (value or "").split(",") if token.strip())
    return names

