"""The proxy's WSGI entry: refuse bad targets and hosts, relay what the guard never reads, hand the rest to Flask.

Most requests through the proxy are ones the guard has nothing to do with (scripts, styles, API calls that
write no model, event streams). Those are relayed here, on plain WSGI: the client's headers
copied once into the upstream request, the answer's bytes handed to the server as they arrive, no Flask
request, no body parsed or copied. The guard's own routes, WebSocket upgrades and guarded writes go to the
Flask app; pages (the guard script is injected) and catalog and session reads (the guard learns from
them) are relayed
inside a Flask request context, so the app's hooks see their answers as they would a view's."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from flask import Flask
from werkzeug.wrappers import Response as WerkzeugResponse

from ..extension import host_problem
from ..redact import printable
from .relay import READS, UPSTREAM_ERRORS, Body, Proxy, request_body, response_headers
from .urls import target_problem

access_log = logging.getLogger("hermes_plugin.proxy.access")

StartResponse = Callable[..., Any]


class Passthrough:
    """WSGI middleware in front of the proxy's Flask app (see the module docstring for who goes where)."""

    def __init__(self, app: Flask, proxy: Proxy) -> None:
        self.flask = app.wsgi_app
        self.app, self.proxy = app, proxy
        cfg = proxy.cfg
        self.prefix = app.config["HERMES_PLUGIN_PREFIX"]
        self.writes = [(route.method, route.url) for route in cfg.writes]
        self.write_methods = frozenset(route.method for route in cfg.writes)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        problem = target_problem(environ)
        if problem is not None:
            return refuse(environ, start_response, 400, "bad_request", problem)
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME", "")
        problem = host_problem(host, self.app.config["HERMES_PLUGIN_ALLOWED_HOSTS"])
        if problem is not None:
            return refuse(environ, start_response, 403, "host_not_allowed", problem)
        route = self.route(environ)
        if route == "flask":
            return self.flask(environ, start_response)
        if route == "read":
            return self.read_through(environ, start_response)
        return self.relay(environ, start_response)

    def route(self, environ: dict[str, Any]) -> str:
        """``flask`` (the guard decides the request), ``read`` (the guard reads the answer) or ``relay``."""
        # Flask's request.path: the WSGI path decoded as UTF-8, leading slashes collapsed to one.
        path = "/" + environ.get("PATH_INFO", "").encode("latin1").decode(errors="replace").lstrip("/")
        prefix = self.prefix
        if path == prefix or path.startswith(prefix + "/"):
            return "flask"  # the plugin's own routes
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            return "flask"  # the WebSocket bridge
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if method in self.write_methods and any(m == method and url.search(path) for m, url in self.writes):
            return "flask"  # a guarded write
        if "text/html" in environ.get("HTTP_ACCEPT", ""):
            return "read"  # a page: the guard script is injected into it
        query = environ.get("QUERY_STRING", "")
        target = f"{path}?{query.encode('latin1').decode(errors='replace')}" if query else path
        reads = environ[READS] = self.proxy.reads(method, target)
        return "read" if reads else "relay"  # a catalog or session read the guard learns from, or neither

    def read_through(self, environ: dict[str, Any], start_response: StartResponse,
                     upstream: Callable[[], Any] | None = None, start: float | None = None) -> Any:
        """A page or catalog read: relayed inside a Flask request context, so the app's hooks (the guard's
        injection and catalog learning, the access log) run as they would for a view, without routing to one.
        ``upstream`` builds the answer from an upstream response the relay already has."""
        app = self.app
        environ["hermes_proxy.start"] = start if start is not None else time.monotonic()
        with app.request_context(environ):
            try:
                rv = app.preprocess_request()
                if rv is None:
                    try:
                        rv = (upstream or self.proxy.forward)()
                    except UPSTREAM_ERRORS as exc:
                        rv = self.proxy.bad_gateway(exc)
                response = app.finalize_request(rv)
            except Exception as exc:  # as Flask itself answers a failing view: a logged 500
                response = app.handle_exception(exc)
            return response(environ, start_response)

    # -- the relay ------------------------------------------------------------------------------------

    def relay(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        start = time.monotonic()
        method = environ.get("REQUEST_METHOD", "GET").upper()
        try:
            head = self.proxy.request_head(environ, method)
        except ValueError as exc:
            return refuse(environ, start_response, 400, "bad_request", str(exc))
        try:
            conn, raw = self.proxy.pool.exchange(method, head, request_body(environ, method))
        except UPSTREAM_ERRORS as exc:
            return self.bad_gateway(environ, start_response, exc, start)
        if method == "GET" and raw.status == 200 and is_html(raw):
            # A page asked for without text/html in Accept (a service worker pre-caching the app's shell):
            # it gets the guard too, or its cached copy would later open the app unguarded.
            return self.read_through(environ, start_response, partial(self.proxy.answer, conn, raw), start)
        headers, _ = response_headers(raw)
        start_response(f"{raw.status} {raw.reason}", headers)
        body = Body(raw, conn, self.proxy.pool, partial(log_access, environ, raw.status, start))
        if method == "HEAD" or raw.status in (204, 304):
            body.finish()
            return []
        return body

    def bad_gateway(self, environ: dict[str, Any], start_response: StartResponse, exc: Exception,
                    start: float) -> Any:
        """The same clear 502 the Flask views give (it needs a request context; this is the rare path)."""
        with self.app.request_context(environ):
            response = self.proxy.bad_gateway(exc)
        log_access(environ, response.status_code, start)
        return response(environ, start_response)


def is_html(raw: Any) -> bool:
    return (raw.getheader("Content-Type") or "").split(";")[0].strip().lower() == "text/html"


def log_access(environ: dict[str, Any], status: int, start: float) -> None:
    """The access log line the Flask app writes, for relayed requests (built only when it is enabled)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    path = "/" + environ.get("PATH_INFO", "").encode("latin1").decode(errors="replace").lstrip("/")
    query = environ.get("QUERY_STRING", "").encode("latin1").decode(errors="replace")
    target = f"{path}?{query}".rstrip("?")
    # The path is percent-decoded: %0a would otherwise start a forged line in the log.
    line = printable(f'{environ.get("REMOTE_ADDR")} "{environ.get("REQUEST_METHOD")} {target}" {status}')
    access_log.info("%s %.1fms", line, (time.monotonic() - start) * 1000)


def refuse(environ: dict[str, Any], start_response: StartResponse, status: int, error: str, detail: str) -> Any:
    """A request refused before any routing: a JSON error, the connection closed."""
    access_log.info("%s refused: %s", environ.get("REMOTE_ADDR"), printable(detail))
    body = json.dumps({"error": error, "detail": detail}).encode()
    response = WerkzeugResponse(body, status=status, mimetype="application/json",
                                headers={"Cache-Control": "no-store", "Connection": "close"})
    return response(environ, start_response)
