"""The caller's own credentials, forwarded to the upstream when the proxy asks something on the caller's behalf."""

from __future__ import annotations

import hashlib

from flask import has_request_context, request

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
