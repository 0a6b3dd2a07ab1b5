"""Reverse-proxy mode: the same guard in front of a chat app that is not a Flask app (docs/proxy.md).

The proxy is a Flask app that hosts ``ModelGuard`` like any other host: its catch-all view forwards every
request to the upstream, configured write routes go through ``extension.guard_write``, and the guard's
``after_request`` (catalog observation, HTML injection) sees the proxied responses. Bodies stream both
ways; only responses the guard must read (HTML pages, catalog JSON, guarded writes) are buffered, capped.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from flask import Flask, Response, has_request_context, request
from markupsafe import escape
from requests.adapters import HTTPAdapter

from . import jsonpath
from .config import CONFIG_ENV, load_toml, providers_table
from .errors import ConfigError
from .extension import ModelGuard, WriteRefused, WriteSpec, check_alias_rules, guard_write
from .presets import preset

log = logging.getLogger(__name__)
access_log = logging.getLogger("hermes_plugin.proxy.access")

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded (plus what Connection names).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
                        "proxy-connection", "proxy-authenticate", "proxy-authorization"})
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
CHUNK = 64 * 1024
MAX_BUFFER = 8 * 2**20  # larger HTML/JSON bodies stream through untouched instead of being held in memory
PROXY_KEYS = {"writes", "session_read", "live_urls", "static_urls", "session_urls", "model_select", "picker",
              "session_ttl", "timeout", "connect_timeout", "pool_size", "cache", "on_keep", "prefix",
              "model_aliases"}


@dataclass(frozen=True)
class WriteRoute:
    """One upstream route that writes a session's model."""

    method: str
    url: re.Pattern[str]
    spec: WriteSpec
    session_in_path: bool

    def browser(self) -> dict[str, str]:
        where = "path" if self.session_in_path else "body"
        return {"method": self.method, "url": self.url.pattern, "session": f"{where}:{self.spec.session}",
                "model": f"body:{self.spec.model}"}


@dataclass(frozen=True)
class SessionRead:
    """How to read a session's stored model from the upstream: ``GET url`` (``{session}`` filled in), JSON path."""

    url: str
    model: str


@dataclass
class ProxyConfig:
    """The ``[proxy]`` table, validated."""

    writes: list[WriteRoute] = field(default_factory=list)
    session_read: SessionRead | None = None
    live_urls: list[dict[str, Any]] = field(default_factory=list)
    static_urls: list[dict[str, Any]] = field(default_factory=list)
    session_urls: list[dict[str, Any]] = field(default_factory=list)
    model_select: str = "#modelSelect, [data-hermes-model]"
    picker: str | None = None
    session_ttl: float = 2.0
    timeout: float = 120.0
    connect_timeout: float = 5.0
    pool_size: int = 32
    cache: str = "memory"
    on_keep: str = "keep"
    prefix: str = "/hermes-plugin"
    providers: dict[str, Any] = field(default_factory=dict)
    model_aliases: list[str] = field(default_factory=list)


def _where(value: Any, what: str) -> tuple[str, bool]:
    """``"session_id"``/``"body:session_id"`` -> (path, False); ``"path:chat_id"`` -> (group, True)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"[proxy] writes: {what} must be a non-empty string, got {value!r}")
    kind, _, name = value.partition(":") if ":" in value else ("body", "", value)
    if kind not in ("body", "path"):
        raise ConfigError(f"[proxy] writes: {what} {value!r} must be 'body:<json path>' or 'path:<group>'")
    try:
        jsonpath.parse(name)
    except jsonpath.PathError as exc:
        raise ConfigError(f"[proxy] writes: {what}: {exc}") from None
    if "[]" in name:
        raise ConfigError(f"[proxy] writes: {what} {value!r} must name one value, not walk a list")
    return name, kind == "path"


def _write_route(entry: Any) -> WriteRoute:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"[proxy] writes: each entry must be a table, got {entry!r}")
    unknown = set(entry) - {"method", "url", "session", "model"}
    if unknown:
        raise ConfigError(f"[proxy] writes: unknown keys {sorted(unknown)} in {dict(entry)!r}")
    method = str(entry.get("method", "POST")).upper()
    if method not in ("POST", "PUT", "PATCH", "DELETE"):
        raise ConfigError(f"[proxy] writes: method must be POST, PUT, PATCH or DELETE, got {method!r}")
    try:
        url = re.compile(entry["url"])
    except (KeyError, TypeError, re.error) as exc:
        raise ConfigError(f"[proxy] writes: bad url in {dict(entry)!r}: {exc}") from None
    session, in_path = _where(entry.get("session", "session_id"), "session")
    model, model_in_path = _where(entry.get("model", "model"), "model")
    if model_in_path:
        raise ConfigError("[proxy] writes: the model must come from the JSON body ('body:<path>')")
    if in_path and session not in url.groupindex:
        raise ConfigError(f"[proxy] writes: {entry['url']!r} has no named group {session!r}")
    return WriteRoute(method, url, WriteSpec(session, model), in_path)


def _url_list(table: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
        raise ConfigError(f"[proxy] {key} must be a list of tables")
    return [dict(e) for e in value]


def proxy_config(table: Mapping[str, Any], providers: Mapping[str, Any] | None = None) -> ProxyConfig:
    """Validate a ``[proxy]`` table; every mistake is one ConfigError naming the key."""
    if not isinstance(table, Mapping):
        raise ConfigError("[proxy] must be a table")
    unknown = set(table) - PROXY_KEYS
    if unknown:
        raise ConfigError(f"[proxy]: unknown keys {sorted(unknown)} (known: {', '.join(sorted(PROXY_KEYS))})")
    writes = table.get("writes", [])
    if not isinstance(writes, list):
        raise ConfigError("[proxy] writes must be a list of tables")
    cfg = ProxyConfig(writes=[_write_route(e) for e in writes], providers=dict(providers or {}))
    read = table.get("session_read")
    if read is not None:
        if not isinstance(read, Mapping) or not isinstance(read.get("url"), str) or "{session}" not in read["url"]:
            raise ConfigError("[proxy] session_read must be {url = \"...{session}...\", model = \"json.path\"}")
        try:
            jsonpath.parse(read.get("model"))  # type: ignore[arg-type]
        except jsonpath.PathError as exc:
            raise ConfigError(f"[proxy] session_read model: {exc}") from None
        cfg.session_read = SessionRead(read["url"], read["model"])
    cfg.live_urls, cfg.static_urls = _url_list(table, "live_urls"), _url_list(table, "static_urls")
    cfg.session_urls = _url_list(table, "session_urls")
    check_alias_rules(table.get("model_aliases", []))
    cfg.model_aliases = list(table.get("model_aliases", []))
    for key in ("model_select", "picker", "cache", "on_keep", "prefix"):
        if key in table:
            if not isinstance(table[key], str) or not table[key]:
                raise ConfigError(f"[proxy] {key} must be a non-empty string")
            setattr(cfg, key, table[key])
    for key in ("session_ttl", "timeout", "connect_timeout"):
        if key in table:
            if not isinstance(table[key], (int, float)) or isinstance(table[key], bool) or table[key] < 0:
                raise ConfigError(f"[proxy] {key} must be a number of seconds >= 0")
            setattr(cfg, key, float(table[key]))
    if "pool_size" in table:
        if not isinstance(table["pool_size"], int) or isinstance(table["pool_size"], bool) or table["pool_size"] < 1:
            raise ConfigError("[proxy] pool_size must be a positive integer")
        cfg.pool_size = table["pool_size"]
    if cfg.writes and cfg.session_read is None:
        raise ConfigError("[proxy] writes need session_read: the guard must know a session's stored model")
    return cfg


def load_config(path: str | None = None, preset_name: str | None = None) -> ProxyConfig:
    """``--preset`` (a built-in ``[proxy]`` table) or ``--config`` (TOML with ``[proxy]`` and ``[providers.*]``)."""
    if path and preset_name:
        raise ConfigError("give --config or --preset, not both")
    if preset_name:
        return proxy_config(preset(preset_name))
    if not path:
        raise ConfigError(f"the proxy needs --config FILE (with a [proxy] table), ${CONFIG_ENV} or --preset NAME")
    data = load_toml(path)
    if "proxy" not in data:
        raise ConfigError(f"{path}: no [proxy] table (see docs/proxy.md)")
    return proxy_config(data["proxy"], providers_table(data))


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """The pooled session is shared by every user: it must never keep one user's cookies for another."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


def make_session(pool_size: int) -> requests.Session:
    """A bounded connection pool to the upstream, no default headers, no cookie jar, no env proxies."""
    session = requests.Session()
    session.trust_env = False  # an HTTP(S)_PROXY in the environment must not reroute loopback traffic
    session.headers.clear()
    session.cookies.set_policy(_NoCookies())
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, pool_block=True, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def hop_by_hop(headers: Any) -> set[str]:
    """Lower-case names not to forward: the fixed set plus every name the Connection header lists."""
    names = set(HOP_BY_HOP)
    for value in headers.get_all("Connection") if hasattr(headers, "get_all") else [headers.get("Connection", "")]:
        names.update(token.strip().lower() for token in (value or "").split(",") if token.strip())
    return names


class SessionModels:
    """The upstream's stored model per session, read through ``session_read`` and cached ``ttl`` seconds."""

    def __init__(self, proxy: Proxy, read: SessionRead, ttl: float, max_sessions: int = 10000) -> None:
        self.proxy, self.read, self.ttl, self.max_sessions = proxy, read, ttl, max_sessions
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()  # session -> (expires, model)
        self._lock = threading.Lock()

    def __call__(self, session: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(session)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            model = self._fetch(session)
        except (requests.RequestException, ValueError) as exc:
            if cached is not None:  # stale-if-error: a blip must not make the guard think nothing is stored
                log.warning("hermes-plugin proxy: re-reading session %r failed (%s); using the last value",
                            session[:100], type(exc).__name__)
                return cached[1]
            raise WriteRefused(502, "bad_gateway", "could not read the session's stored model from the upstream") \
                from None
        with self._lock:
            self._cache[session] = (now + self.ttl, model)
            self._cache.move_to_end(session)
            while len(self._cache) > self.max_sessions:
                self._cache.popitem(last=False)
        return model

    def expire(self, session: str) -> None:
        """After a write: the next read goes upstream (the old value stays only as stale-if-error)."""
        with self._lock:
            if session in self._cache:
                self._cache[session] = (0.0, self._cache[session][1])

    def _fetch(self, session: str) -> str | None:
        url = self.proxy.upstream + self.read.url.replace("{session}", quote(session, safe=""))
        headers = {"Accept": "application/json"}
        if has_request_context():  # the upstream may authorise reads by the user's own cookie or token
            for name in ("Host", "Cookie", "Authorization"):
                if name in request.headers:
                    headers[name] = request.headers[name]
        response = self.proxy.http.get(url, headers=headers, allow_redirects=False, timeout=self.proxy.timeouts)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        model = jsonpath.extract(response.json(), self.read.model)
        return model[0] if model and isinstance(model[0], str) and model[0] else None


class Proxy:
    """Forwarding state of one proxy app: upstream, pooled session, the config's compiled routes."""

    def __init__(self, upstream: str, cfg: ProxyConfig) -> None:
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ConfigError(f"--upstream must be an http(s):// URL without query, got {upstream!r}")
        self.upstream = upstream.rstrip("/")
        self.ws_upstream = "ws" + self.upstream[4:]
        self.cfg = cfg
        self.http = make_session(cfg.pool_size)
        self.timeouts = (cfg.connect_timeout, cfg.timeout)
        self.models = SessionModels(self, cfg.session_read, cfg.session_ttl) if cfg.session_read else None
        self.identity = [re.compile(e["url"]) for e in (*cfg.live_urls, *cfg.static_urls, *cfg.session_urls)]

    # -- requests to the upstream -------------------------------------------------------------------

    def target(self) -> str:
        """The upstream URL of this request, path and query as the client sent them."""
        raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
        if not raw or not raw.startswith("/"):
            raw = quote(request.environ.get("PATH_INFO", "/"), safe="/%:@!$&'()*+,;=~-._")
            query = request.environ.get("QUERY_STRING")
            raw += f"?{query}" if query else ""
        return self.upstream + raw

    def matches_catalog(self) -> bool:
        target = request.full_path.rstrip("?")
        return any(pattern.search(target) for pattern in self.identity)

    def must_read(self) -> bool:
        """Responses the guard reads (pages to inject into, catalogs to learn from) are asked for uncompressed."""
        return "text/html" in request.headers.get("Accept", "") or self.matches_catalog()

    def headers_out(self, body_rewritten: bool = False) -> dict[str, str]:
        skip = hop_by_hop(request.headers)
        if body_rewritten:  # requests sets the new length; our If-Match is the guard's, not the upstream's
            skip |= {"content-length", "if-match"}
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            if name.lower() in skip or name.lower().startswith("proxy-"):
                continue
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if self.must_read():
            headers["Accept-Encoding"] = "identity"
        forwarded = request.headers.get("X-Forwarded-For")
        remote = request.remote_addr or ""
        headers["X-Forwarded-For"] = f"{forwarded}, {remote}" if forwarded else remote
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        return headers

    def send(self, data: Any, headers: dict[str, str]) -> requests.Response:
        return self.http.request(request.method, self.target(), headers=headers, data=data, stream=True,
                                 allow_redirects=False, timeout=self.timeouts)

    # -- the two views ------------------------------------------------------------------------------

    def forward(self) -> Response:
        """Forward the request as it is, streaming the body up and the answer down."""
        length = request.content_length
        if length:
            data: Any = _SizedStream(request.stream, length)
        elif request.environ.get("wsgi.input_terminated") and request.method not in ("GET", "HEAD"):
            data = iter(lambda: request.stream.read(CHUNK), b"")  # chunked upload stays chunked
        else:
            data = None
        return self.answer(self.send(data, self.headers_out()))

    def forward_write(self, route: WriteRoute) -> Response:
        """The guarded write's "view": the (possibly rewritten) JSON body, then a fresh stored-model read."""
        response = self.answer(self.send(request.get_data(cache=True), self.headers_out(body_rewritten=True)),
                               buffer=True)
        session = (request.view_args or {}).get(route.spec.session) if route.session_in_path else None
        if session is None:
            body = request.get_json(silent=True)
            found = jsonpath.get(body, route.spec.session) if isinstance(body, dict) else None
            session = found if isinstance(found, str) else None
        if session is not None and self.models is not None:
            self.models.expire(session)
        return response

    def answer(self, upstream: requests.Response, buffer: bool = False) -> Response:
        """The client's response: buffered (decoded) when the guard must read it and it is small, else streamed."""
        raw = upstream.raw
        # The serving WSGI server writes its own Date and Server; forwarding them would send each twice.
        skip = hop_by_hop(raw.headers) | {"content-length", "date", "server"}
        headers = [(k, v) for k, v in raw.headers.items() if k.lower() not in skip and not k.lower().startswith("proxy-")]
        mimetype = raw.headers.get("Content-Type", "").split(";")[0].strip().lower()
        encoding = raw.headers.get("Content-Encoding", "identity").lower()
        length = int(raw.headers["Content-Length"]) if raw.headers.get("Content-Length", "").isdigit() else None
        # Pages to inject into and the configured catalog/session JSON; any other JSON may be a stream.
        readable = request.method == "GET" and upstream.status_code == 200 and (
            mimetype == "text/html" or ("json" in mimetype and self.matches_catalog()))
        if buffer and mimetype == "text/event-stream":  # a write answered with a stream: pass it on live
            buffer = False
        if (buffer or readable) and encoding in ("identity", "gzip", "deflate") and (length or 0) <= MAX_BUFFER:
            body = raw.read(MAX_BUFFER + 1, decode_content=True)
            if len(body) <= MAX_BUFFER:
                upstream.close()
                response = _response(upstream.status_code, [(k, v) for k, v in headers
                                                            if k.lower() != "content-encoding"], body)
                return response
            # Too big to hold: the decoded prefix and the rest (decoded too) stream on untouched.
            rest = _chunks(upstream, decode=True)
            headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
            return _response(upstream.status_code, headers, _chain(body, rest), streamed=True)
        if length is not None:
            headers.append(("Content-Length", str(length)))
        return _response(upstream.status_code, headers, _chunks(upstream, decode=False), streamed=True)

    def bad_gateway(self, exc: Exception) -> Response:
        """The upstream did not answer: a clear 502 that names no address, host or exception text."""
        log.warning("hermes-plugin proxy: upstream request %s %s failed: %s", request.method, request.path,
                    type(exc).__name__)
        detail = "the upstream app did not answer in time" if isinstance(exc, requests.Timeout) \
            else "the upstream app is not reachable"
        if request.accept_mimetypes.accept_html and not request.accept_mimetypes.accept_json:
            page = (f"<!doctype html><title>502 Bad Gateway</title><h1>502 Bad Gateway</h1>"
                    f"<p>{escape(detail)}. Try again in a moment.</p>")
            return _response(502, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                             page.encode())
        from .api import json_error

        return json_error(502, "bad_gateway", detail)


class _SizedStream:
    """The client's body as a file with a length: requests sends Content-Length and reads it in blocks."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream, self.length = stream, length

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        return bytes(self.stream.read(CHUNK if size is None or size < 0 else size))


def _chunks(upstream: requests.Response, decode: bool) -> Iterator[bytes]:
    """Whatever bytes have arrived, as soon as they arrive (read1), so server-sent events are not held."""
    try:
        while True:
            chunk = upstream.raw.read1(CHUNK, decode_content=decode)
            if not chunk:
                break
            yield chunk
    except (requests.RequestException, OSError, Exception) as exc:  # mid-stream the status is sent: just end
        log.warning("hermes-plugin proxy: upstream stream ended early: %s", type(exc).__name__)
    finally:
        upstream.close()


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _response(status: int, headers: list[tuple[str, str]], body: Any, streamed: bool = False) -> Response:
    response = Response(body, status=status, direct_passthrough=streamed)
    response.headers.clear()  # no Flask default Content-Type: the upstream's headers are the whole truth
    for name, value in headers:
        response.headers.add(name, value)
    return response


def create_app(upstream: str, config: str | None = None, preset: str | None = None,
               cfg: ProxyConfig | None = None, app_config: Mapping[str, Any] | None = None) -> Flask:
    """The proxy app: ``create_app("http://127.0.0.1:8787", preset="hermes-webui")`` (also a gunicorn factory)."""
    cfg = cfg or load_config(config, preset)
    proxy = Proxy(upstream, cfg)
    app = Flask("hermes_plugin.proxy", static_folder=None)  # /static/ belongs to the upstream
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
        HERMES_PLUGIN_MODEL_ALIASES=cfg.model_aliases,
    )
    app.config.update(app_config or {})
    app.after_request(_access_log)  # registered first, so it runs last and logs what really goes out
    guard = ModelGuard(app)
    state = guard.state(app)
    state.add_browser_writes(route.browser() for route in cfg.writes)
    if proxy.models is not None:
        guard.session_model(proxy.models)
    app.extensions["hermes_plugin_proxy"] = proxy
    prefix = app.config["HERMES_PLUGIN_PREFIX"]

    def view(path: str = "") -> Response:
        request.environ["hermes_proxy.start"] = time.monotonic()
        if request.path == prefix or request.path.startswith(prefix + "/"):
            from .api import json_error  # the plugin's own namespace is never forwarded

            return json_error(404, "not_found", "no such hermes-plugin route")
        try:
            for route in cfg.writes:
                if request.method == route.method and (match := route.url.search(request.path)):
                    request.view_args = {k: v for k, v in match.groupdict().items() if v is not None} \
                        if route.session_in_path else {}
                    return guard_write(route.spec, proxy.forward_write, route)
            return proxy.forward()
        except requests.RequestException as exc:
            return proxy.bad_gateway(exc)

    app.add_url_rule("/", "proxy_root", view, methods=ALL_METHODS, provide_automatic_options=False)
    app.add_url_rule("/<path:path>", "proxy", view, methods=ALL_METHODS, provide_automatic_options=False)
    _websocket_routes(app, proxy, prefix)
    return app


def _access_log(response: Response) -> Response:
    start = request.environ.get("hermes_proxy.start", time.monotonic())
    line = (f'{request.remote_addr} "{request.method} {request.full_path.rstrip("?")}" {response.status_code}')

    def done() -> None:
        access_log.info("%s %.1fms", line, (time.monotonic() - start) * 1000)

    if response.is_streamed:
        response.call_on_close(done)  # a stream is done when the client has it all
    else:
        done()
    return response


def client_with_host(client: Any, host: str) -> Any:
    """A simple_websocket Client class whose handshake sends ``Host: host`` (it connects to the URL's address)
    and keeps messages that arrived in the handshake's packet (the stock client sits on them until the next)."""

    class HostClient(client):  # type: ignore[misc, valid-type]
        def handshake(self) -> None:
            self.host = host  # the socket is already connected: only the Host header changes
            super().handshake()
            self.connected = self._handle_events()  # the reader thread starts after this: no race

    return HostClient


def _websocket_routes(app: Flask, proxy: Proxy, prefix: str) -> None:
    """WebSocket requests to any path but the plugin's own ``/ws`` are pumped to the upstream both ways."""
    from flask_sock import Sock
    from simple_websocket import Client, ConnectionClosed

    sock = Sock(app)

    def pump(ws: Any, path: str = "") -> None:
        if request.path.startswith(prefix + "/") or request.path == prefix:
            ws.close(reason=1008, message="no such hermes-plugin WebSocket")
            return
        headers = {name: request.headers[name] for name in ("Origin", "Cookie", "Authorization", "User-Agent")
                   if name in request.headers}
        url = proxy.ws_upstream + proxy.target()[len(proxy.upstream):]
        try:
            upstream = client_with_host(Client, request.host).connect(url, headers=headers)
        except Exception as exc:  # refused, handshake rejected, DNS: the client only hears "unavailable"
            log.warning("hermes-plugin proxy: upstream WebSocket %s failed: %s", request.path, type(exc).__name__)
            ws.close(reason=1011, message="upstream unavailable")  # 1011: the server cannot fulfil it
            return

        def down() -> None:
            try:
                while True:
                    ws.send(upstream.receive())
            except ConnectionClosed:
                pass
            finally:
                with contextlib.suppress(ConnectionClosed):  # the client may have closed first
                    ws.close()

        thread = threading.Thread(target=down, name="hermes-proxy-ws", daemon=True)
        thread.start()
        try:
            while True:
                upstream.send(ws.receive())
        except ConnectionClosed:
            pass
        finally:
            upstream.close()
            thread.join(timeout=5)

    sock.route("/", defaults={"path": ""}, endpoint="proxy_ws_root")(pump)
    sock.route("/<path:path>", endpoint="proxy_ws")(pump)
