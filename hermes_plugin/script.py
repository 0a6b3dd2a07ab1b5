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
# Optional parts of the guard, each loaded only on pages (or at moments) that need them.
SESSIONS_SCRIPT = "hermes-guard-sessions.js"  # session switches, re-apply writes, kept picks
NOTICES = "hermes-notices.js"  # the notices and prompts, loaded by the guard only when it needs them


def source(name: str = SCRIPT) -> str:
    """A readable script as shipped in the package."""
    return (importlib.resources.files("hermes_plugin.static") / name).read_text(encoding="utf-8")


@functools.cache
def minified(name: str = SCRIPT) -> str:
    """The served build: the source without comments and spaces, computed once per script."""
    import rjsmin  # only when a page first asks for the script

    return str(rjsmin.jsmin(source(name)))


@functools.cache
def _etag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def served(readable: bool) -> str:
    return source() if readable else minified()


def response(name: str = SCRIPT) -> Response:
    """``GET <prefix>/static/<name>``: the minified build, or the source in debug."""
    readable = bool(current_app.debug or current_app.config.get("HERMES_PLUGIN_READABLE_SCRIPT"))
    if name == SCRIPT:
        text = served(readable)  # tests swap this one for an older guard build
    else:
        text = source(name) if readable else minified(name)
    resp = Response(text, mimetype="text/javascript")
    resp.set_etag(_etag(text))
    resp.headers["Cache-Control"] = "no-cache"  # revalidated by ETag: a new package version is picked up at once
    resp.make_conditional(request)  # 304 without a body when the browser's copy is current
    return resp
