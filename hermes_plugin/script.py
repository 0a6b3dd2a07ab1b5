"""The browser guard as the package serves it: the readable source, minified once per process.

The readable ``static/hermes-guard.js`` is the only source; rjsmin turns it into the served build at the
first request (no Node build step). ``app.debug`` or ``HERMES_PLUGIN_READABLE_SCRIPT`` serve the source.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources

from flask import Response, current_app, request

SCRIPT = "hermes-guard.js"


def source() -> str:
    """The readable guard script as shipped in the package."""
    return (importlib.resources.files("hermes_plugin.static") / SCRIPT).read_text(encoding="utf-8")


@functools.cache
def minified() -> str:
    """The served build: the source without comments and spaces, computed once."""
    import rjsmin  # only when a page first asks for the script

    return str(rjsmin.jsmin(source()))


@functools.cache
def _etag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def served(readable: bool) -> str:
    return source() if readable else minified()


def response() -> Response:
    """``GET <prefix>/static/hermes-guard.js``: the minified build, or the source in debug."""
    readable = bool(current_app.debug or current_app.config.get("HERMES_PLUGIN_READABLE_SCRIPT"))
    text = served(readable)
    resp = Response(text, mimetype="text/javascript")
    resp.set_etag(_etag(text))
    resp.headers["Cache-Control"] = "no-cache"  # revalidated by ETag: a new package version is picked up at once
    resp.make_conditional(request)  # 304 without a body when the browser's copy is current
    return resp
