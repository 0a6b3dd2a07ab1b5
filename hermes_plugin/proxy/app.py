"""The proxy app factory: ``ModelGuard`` hosted on a catch-all view that forwards to the upstream."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, request

from ..api import json_error
from ..extension import ModelGuard, guard_write
from ..redact import printable
from .config import ProxyConfig, load_config
from .defaults import UpstreamDefault
from .listing import defaults_source, session_source
from .passthrough import Passthrough
from .relay import CHUNK, UPSTREAM_ERRORS, Proxy
from .servable import UpstreamModels
from .websocket import websocket_routes

access_log = logging.getLogger("hermes_plugin.proxy.access")

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class ProxyFlask(Flask):
    """The proxy's Flask app: each hook and view is checked for ``async def`` once, not on every request
    (a relayed page runs five hooks; the check was a tenth of its time in Flask)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        try:
            return self._sync[func]
        except (KeyError, TypeError):  # not seen yet, or unhashable
            sync = super().ensure_sync(func)
        if len(self._sync) < 1024:  # the app's hooks and views: a fixed few
            try:
                self._sync[func] = sync
            except TypeError:
                pass
        return sync


def create_app(upstream: str, config: str | None = None, preset: str | None = None,
               cfg: ProxyConfig | None = None, app_config: Mapping[str, Any] | None = None) -> Flask:
    """The proxy app: ``create_app("http://127.0.0.1:8787", preset="hermes-webui")`` (also a gunicorn factory)."""
    cfg = cfg or load_config(config, preset)
    proxy = Proxy(upstream, cfg)
    app = ProxyFlask("hermes_plugin.proxy", static_folder=None)  # /static/ belongs to the upstream
    app.url_map.merge_slashes = False  # forward paths exactly as sent
    app.config.update(
        HERMES_PLUGIN_PREFIX=cfg.prefix,
        HERMES_PLUGIN_PROVIDERS=cfg.providers,
        HERMES_PLUGIN_CACHE=cfg.cache,
        HERMES_PLUGIN_ON_KEEP=cfg.on_keep,
        HERMES_PLUGIN_MODEL_SELECT=cfg.model_select,
        HERMES_PLUGIN_PICKER=cfg.picker,
        HERMES_PLUGIN_LIVE_URLS=cfg.live_urls,
        HERMES_PLUGIN_STATIC_URLS=cfg.static_urls,
        HERMES_PLUGIN_SESSION_URLS=cfg.session_urls,
        HERMES_PLUGIN_ALLOWED_HOSTS=cfg.allowed_hosts,
        HERMES_PLUGIN_MODEL_ALIASES=cfg.model_aliases,
        HERMES_PLUGIN_PICKER_ADAPTER=cfg.picker_adapter,
        HERMES_PLUGIN_NEW_SESSION_MODEL=cfg.new_session_model,
        HERMES_PLUGIN_MODEL_REPLACEMENTS=cfg.model_replacements,
        HERMES_PLUGIN_MAX_PRICE_RATIO=cfg.max_price_ratio,
        HERMES_PLUGIN_ABSENT_MODEL=cfg.absent_model,
        HERMES_PLUGIN_ABSENT_MODEL_PROVIDERS=cfg.absent_model_providers,
    )
    app.config.update(app_config or {})
    app.after_request(_access_log)  # registered first, so it runs last and logs what really goes out
    guard = ModelGuard(app)
    state = guard.state(app)
    state.add_browser_writes(route.browser() for route in cfg.writes)
    if proxy.models is not None:
        guard.session_model(proxy.models)
    if cfg.upstream_models is not None:
        guard.servable(UpstreamModels(proxy, cfg.upstream_models))
    if cfg.session_list is not None:
        guard.session_ids(session_source(proxy, cfg.session_list))
    if cfg.defaults:
        guard.default_models(defaults_source(proxy, cfg.defaults))
    if cfg.default_model is not None:
        state.default_model_reader = UpstreamDefault(proxy, cfg.default_model, cfg.session_ttl)
    if cfg.session_write is not None:
        guard.session_model_setter(proxy.write_model)
    app.extensions["hermes_plugin_proxy"] = proxy
    app.before_request(proxy.access.check)  # the upstream decides who may use the plugin's routes
    prefix = app.config["HERMES_PLUGIN_PREFIX"]

    def view(path: str = "") -> Response:
        request.environ["hermes_proxy.start"] = time.monotonic()
        if request.path == prefix or request.path.startswith(prefix + "/"):  # the plugin's own namespace is never forwarded
            return json_error(404, "not_found", "no such hermes-plugin route")
        try:
            for route in cfg.writes:
                if request.method == route.method and (match := route.url.search(request.path)):
                    request.view_args = {k: v for k, v in match.groupdict().items() if v is not None} \
                        if route.session_in_path else {}
                    if not read_bounded_body(cfg.max_write_bytes):  # the guard holds this body: bound it
                        return json_error(413, "payload_too_large",
                                          f"a guarded write's body may be at most {cfg.max_write_bytes} bytes")
                    return guard_write(route.spec, proxy.forward_write, route)
            return proxy.forward()
        except UPSTREAM_ERRORS as exc:
            return proxy.bad_gateway(exc)

    app.add_url_rule("/", "proxy_root", view, methods=ALL_METHODS, provide_automatic_options=False)
    app.add_url_rule("/<path:path>", "proxy", view, methods=ALL_METHODS, provide_automatic_options=False)
    websocket_routes(app, proxy, prefix)
    # Target and Host checks first, then what the guard never reads is relayed without Flask.
    app.wsgi_app = Passthrough(app, proxy)  # type: ignore[method-assign]
    return app


def read_bounded_body(limit: int) -> bool:
    """Read the request body (sized or chunked) into the request's cache; False once it passes ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        return False
    data = bytearray()
    while len(data) <= limit:
        chunk = request.stream.read(min(CHUNK, limit + 1 - len(data)))
        if not chunk:
            break
        data += chunk
    if len(data) > limit:
        return False
    request._cached_data = bytes(data)  # type: ignore[attr-defined]  # what get_data() returns from now on
    return True


def _access_log(response: Response) -> Response:
    if not access_log.isEnabledFor(logging.INFO):
        return response
    start = request.environ.get("hermes_proxy.start", time.monotonic())
    # The path is percent-decoded: %0a would otherwise start a forged line in the log.
    line = printable(f'{request.remote_addr} "{request.method} {request.full_path.rstrip("?")}" '
                     f'{response.status_code}')

    def done() -> None:
        access_log.info("%s %.1fms", line, (time.monotonic() - start) * 1000)

    if response.is_streamed:
        response.call_on_close(done)  # a stream is done when the client has it all
    else:
        done()
    return response

