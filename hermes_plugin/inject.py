"""Insert the browser config element and the guard script right after ``<head>`` of HTML pages.

Only where it is safe (STYLE.md 7): a complete 200 ``text/html`` body we can edit, not a stream, not a
WebSocket upgrade, not already compressed. The guard must run before the host's scripts, hence ``<head>``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from flask import Flask, g, request
from flask.wrappers import Response
from markupsafe import escape

from .names import EXTENSION
from .script import PICKER_SCRIPT, SCRIPT, SESSIONS_SCRIPT

log = logging.getLogger(__name__)
MAX_FILE_PAGE = 8 * 2**20  # a bigger HTML file is not a page shell: served untouched, with a warning
HEAD_TAG = re.compile(rb"<head(?:\s[^>]*)?>", re.IGNORECASE)
NONCE = re.compile(r"'nonce-([A-Za-z0-9+/=_-]+)'")
URL_VARIABLE = re.compile(r"<(?:(?P<converter>[a-zA-Z_]\w*)(?:\((?P<args>.*?)\))?:)?(?P<name>[a-zA-Z_]\w*)>")
# The only characters that could end a <script> element early or confuse an HTML parser.
_SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026",
                   0x2028: "\\u2028", 0x2029: "\\u2029"}


def script_json(value: Any) -> str:
    """JSON safe to put inside a ``<script>`` element."""
    return json.dumps(value, separators=(",", ":")).translate(_SCRIPT_ESCAPES)


def rule_regex(rule: str) -> tuple[str, list[str]]:
    """``/chats/<chat_id>`` -> ``^/chats/(?P<chat_id>[^/]+)$`` and the URL variable names."""
    parts, names, end = ["^"], [], 0
    for match in URL_VARIABLE.finditer(rule):
        parts.append(re.escape(rule[end:match.start()]))
        name = match.group("name")
        names.append(name)
        pattern = ".+" if match.group("converter") == "path" else "[^/]+"
        parts.append(f"(?P<{name}>{pattern})")
        end = match.end()
    parts.append(re.escape(rule[end:]))
    parts.append("$")
    return "".join(parts), names


def write_routes(app: Flask, script_root: str = "") -> list[dict[str, str]]:
    """One entry per method of every route whose view is a guarded write (``@guard.model_write``)."""
    routes = []
    for rule in app.url_map.iter_rules():
        spec = getattr(app.view_functions.get(rule.endpoint), "_hermes_write", None)
        if spec is None:
            continue
        regex, names = rule_regex(rule.rule)
        regex = "^" + re.escape(script_root) + regex[1:]
        session = f"path:{spec.session}" if spec.session in names else f"body:{spec.session}"
        for method in sorted((rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}):
            routes.append({"method": method, "url": regex, "session": session, "model": f"body:{spec.fields.primary}"})
    state = app.extensions.get(EXTENSION)
    if state is not None:
        routes.extend(state.browser_writes())  # routes declared without a view, e.g. the reverse proxy's
    return routes


def browser_config(app: Flask, script_root: str = "") -> dict[str, Any]:
    """The JSON the guard script reads (docs/internals.md "Browser config element")."""
    cfg = app.config
    prefix = script_root + cfg["HERMES_PLUGIN_PREFIX"]
    return {
        "prefix": prefix,
        "ws": prefix + "/ws",
        "modelSelect": cfg["HERMES_PLUGIN_MODEL_SELECT"],
        "picker": cfg["HERMES_PLUGIN_PICKER"],
        "writes": write_routes(app, script_root),
        "live": [dict(entry) for entry in cfg["HERMES_PLUGIN_LIVE_URLS"]],
        "static": [dict(entry) for entry in cfg["HERMES_PLUGIN_STATIC_URLS"]],
        "sessions": [dict(entry) for entry in cfg["HERMES_PLUGIN_SESSION_URLS"]],
        "aliases": list(cfg["HERMES_PLUGIN_MODEL_ALIASES"]),
        "pickerAdapter": cfg["HERMES_PLUGIN_PICKER_ADAPTER"],
        # The script's own give-up time: the server's fetch timeout plus room for the host's round trip.
        "fetchTimeoutMs": int((float(cfg["HERMES_PLUGIN_FETCH_TIMEOUT"]) + 5) * 1000),
    }


def csp_nonce(response: Response) -> str | None:
    """The nonce the page's CSP allows scripts with: from the header, else what the host exposes."""
    policy = response.headers.get("Content-Security-Policy", "")
    for directive in policy.split(";"):
        name, _, sources = directive.strip().partition(" ")
        if name.lower() in ("script-src", "script-src-elem"):
            found = NONCE.search(sources)
            if found:
                return found.group(1)
    nonce = getattr(request, "csp_nonce", None) or g.get("csp_nonce")  # Flask-Talisman / host convention
    return nonce if isinstance(nonce, str) and nonce else None


def should_inject(response: Response) -> bool:
    return (
        response.status_code == 200
        and response.mimetype == "text/html"
        and not response.direct_passthrough
        and not response.is_streamed
        and "Content-Encoding" not in response.headers
        and request.headers.get("Upgrade", "").lower() != "websocket"
    )


def session_names(app: Flask) -> frozenset[str]:
    """The names guarded writes give their session (``chat_id`` of ``@guard.model_write(session="chat_id")``)."""
    return frozenset(spec.session for view in app.view_functions.values()
                     if (spec := getattr(view, "_hermes_write", None)) is not None)


def page_session(state: Any) -> str | None:
    """The session a page shows by its own route (``/chat/<chat_id>``): a URL variable named like a write's session."""
    args = request.view_args or {}
    if not args:
        return None
    names = state.page_session_names
    if names is None:
        names = state.page_session_names = session_names(state.app_ref())
    value = next((args[name] for name in names if name in args), None)
    # The same rule as the session API: printable text of 1..256 characters, else nothing is claimed.
    return value if isinstance(value, str) and 0 < len(value) <= 256 and value.isprintable() else None


def optional_scripts(config_json: str) -> list[str]:
    """The guard's optional parts a page loads right after it: the sessions part where there are guarded writes."""
    return [SESSIONS_SCRIPT] if '"writes":[]' not in config_json else []


def snippet(state: Any, nonce: str | None) -> bytes:
    """The two elements to insert; the config JSON is computed once per app and script root."""
    root = request.script_root
    config = state.browser_config_json.get(root)
    if config is None:
        config = state.browser_config_json[root] = script_json(browser_config(state.app_ref(), root))
    nonce_attr = f' nonce="{escape(nonce)}"' if nonce else ""
    session = page_session(state)
    session_attr = f' data-session="{escape(session)}"' if session is not None else ""
    static = root + state.config["HERMES_PLUGIN_PREFIX"] + "/static/"
    scripts = [SCRIPT, *optional_scripts(config)]
    if state.config["HERMES_PLUGIN_PICKER_ADAPTER"]:  # only pages with a custom picker load its adapter
        scripts.append(PICKER_SCRIPT)
    tags = "".join(f'<script src="{escape(static + name)}"{nonce_attr}></script>' for name in scripts)
    return (
        f'<script type="application/json" id="hermes-plugin-config"{session_attr}{nonce_attr}>{config}</script>'
        + tags
    ).encode("ascii", "xmlcharrefreplace")


def is_page(response: Response) -> bool:
    """A complete HTML page answer, whatever its body is made of."""
    return (response.status_code == 200 and response.mimetype == "text/html"
            and request.headers.get("Upgrade", "").lower() != "websocket")


def read_file_page(response: Response) -> bool:
    """Turn a ``send_file``/``send_static_file`` page (how single-page apps serve ``index.html``) into an
    ordinary body we can edit; False when it cannot be read safely (too big, compressed, X-Sendfile)."""
    if not response.direct_passthrough or "Content-Encoding" in response.headers:
        return False
    if "X-Sendfile" in response.headers or "X-Accel-Redirect" in response.headers:
        return False  # the web server sends the file: there is no body here to edit
    length = response.content_length
    if length is None or length > MAX_FILE_PAGE:
        return False
    response.direct_passthrough = False
    response.get_data()  # reads the file into memory and closes it
    # The body is no longer the file: its validators would let a browser keep a page built for another config.
    for header in ("ETag", "Last-Modified", "Accept-Ranges"):
        response.headers.pop(header, None)
    return True


def warn_uninjected(state: Any, response: Response) -> None:
    """Say once per route that a page goes out without the guard, instead of leaving it silently unguarded."""
    route = request.url_rule.rule if request.url_rule is not None else request.path
    if route in state.uninjected_routes:
        return
    state.uninjected_routes.add(route)
    why = ("it is compressed" if "Content-Encoding" in response.headers
           else "it is sent by the web server (X-Sendfile)" if "X-Sendfile" in response.headers
           else "it is streamed" if response.is_streamed and not response.direct_passthrough
           else f"it is a file larger than {MAX_FILE_PAGE} bytes or of unknown length")
    log.warning("hermes-plugin: the page of route %s (endpoint %s) is served WITHOUT the browser guard: %s; "
                "serve it as an ordinary response or include the guard script yourself (docs/host-guide.md)",
                route, request.endpoint, why)


def inject(state: Any, response: Response) -> Response:
    """The ``after_request`` body: returns the response, edited only when every safety check passes."""
    if not state.config["HERMES_PLUGIN_INJECT"] or not is_page(response):
        return response
    if response.direct_passthrough and not read_file_page(response):
        warn_uninjected(state, response)
        return response
    if not should_inject(response):
        warn_uninjected(state, response)
        return response
    body = response.get_data()
    head = HEAD_TAG.search(body)
    if head is None:
        return response
    # set_data also fixes Content-Length.
    response.set_data(body[:head.end()] + snippet(state, csp_nonce(response)) + body[head.end():])
    return response
