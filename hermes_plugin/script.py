"""The browser scripts as the package serves them: the readable sources, minified once per process.

The readable ``static/hermes-guard.js`` (the core guard), ``static/hermes-notices.js`` (notices and prompts,
loaded by the guard when needed) and ``static/hermes-picker.js`` (custom model pickers, served only to
pages that declare one) are the only sources; rjsmin turns each into its served
build at the first request (no Node build step). ``app.debug`` or ``HERMES_PLUGIN_READABLE_SCRIPT`` serve
the sources.
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
PICKER_SCRIPT = "hermes-picker.js"  # custom model pickers, loaded only by pages that declare an adapter
SCRIPTS = (SCRIPT, NOTICES, SESSIONS_SCRIPT, PICKER_SCRIPT)


def source(name: str = SCRIPT) -> str:
    """A readable script as shipped in the package."""
    if name not in SCRIPTS:
        raise ValueError(f"not a served script: {name!r}")
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
    """The guard script as served: its source, or its minified build."""
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
