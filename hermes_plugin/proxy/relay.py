"""The HTTP relay: a urllib3 pool to the upstream, request headers out, the answer streamed or buffered back."""

from __future__ import annotations

import http.cookiejar
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from flask import Response, request
from markupsafe import escape
from requests.adapters import HTTPAdapter
from urllib3 import BaseHTTPResponse

from .. import jsonpath
from ..api import json_error
from ..extension import WriteRefused
from ..redact import printable
from .access import UpstreamAccess
from .config import ProxyConfig, WriteRoute
from .credentials import caller_headers
from .sessions import SessionModels, refusal
from .urls import client_target, hop_by_hop, join, upstream_base

log = logging.getLogger("hermes_plugin.proxy")

CHUNK = 64 * 1024
MAX_BUFFER = 8 * 2**20  # larger HTML/JSON bodies stream through untouched instead of being held in memory


class _NoCookies(http.cookiejar.DefaultCookiePolicy):
    """The pooled session is shared by every user: it must never keep one user's cookies for another."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Any, request: Any) -> bool:
        return False


class _PoolFull(logging.Filter):
    """An extra connection beyond the keep-alive pool is expected under load here, not a warning each time."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Connection pool is full")


logging.getLogger("urllib3.connectionpool").addFilter(_PoolFull())


def make_session(pool_size: int) -> requests.Session:
    """Keep-alive connections to the upstream, no default headers, no cookie jar, no env proxies.

    ``pool_size`` connections are kept open between requests; beyond that a request opens its own and
    closes it afterwards (pool_block=False), so long streams never make other requests wait for a slot.
    """
    session = requests.Session()
    session.trust_env = False  # an HTTP(S)_PROXY in the environment must not reroute loopback traffic
    session.headers.clear()
    session.cookies.set_policy(_NoCookies())
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, pool_block=False, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# What the relay raises when the upstream does not answer (the views turn them into a 502).
UPSTREAM_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)
TIMEOUTS = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)


def make_pool(upstream: str, pool_size: int, connect_timeout: float, read_timeout: float) -> Any:
    """urllib3's pool for the upstream's origin: ``pool_size`` kept-alive connections, more opened when busy."""
    return urllib3.connection_from_url(upstream, maxsize=pool_size, block=False, retries=False,
                                       timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout))


class Proxy:
    """Forwarding state of one proxy app: upstream, pooled session, the config's compiled routes."""

    def __init__(self, upstream: str, cfg: ProxyConfig) -> None:
        self.upstream = upstream_base(upstream)
        self.ws_upstream = "ws" + self.upstream[4:]
        self.cfg = cfg
        self.http = make_session(cfg.pool_size)  # for the guard's own small JSON reads (sessions, access)
        self.pool = make_pool(self.upstream, cfg.pool_size, cfg.connect_timeout, cfg.timeout)  # the relay's
        self.base_path = urlsplit(self.upstream).path
        self.timeouts = (cfg.connect_timeout, cfg.timeout)
        self.models = SessionModels(self, cfg.session_read, cfg.session_ttl, cfg.learn_ttl) \
            if cfg.session_read else None
        self.access = UpstreamAccess(self, cfg.auth_url, cfg.auth_ttl)
        # (method, URL) of the catalog and session reads the guard learns from; some hosts read by POST.
        self.identity = [(str(e.get("method", "GET")).upper(), re.compile(e["url"]))
                         for e in (*cfg.live_urls, *cfg.static_urls, *cfg.session_urls)]
        if self.models is not None:  # the app's own raw session read is buffered and learnt
            self.identity.append(("GET", self.models.read_url))

    # -- requests to the upstream -------------------------------------------------------------------

    def target(self) -> str:
        """The upstream URL of this request, path and query as the client sent them."""
        return join(self.upstream, client_target(request.environ))

    def matches_catalog(self) -> bool:
        target = request.full_path.rstrip("?")
        return any(method == request.method and pattern.search(target) for method, pattern in self.identity)

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

    def send(self, data: Any, headers: dict[str, str]) -> BaseHTTPResponse:
        """The request to the upstream through urllib3 directly: the relay needs none of requests' extras."""
        path = self.base_path + client_target(request.environ)
        return self.pool.urlopen(request.method, path, body=data, headers=headers, redirect=False, retries=False,
                                 preload_content=False, decode_content=False, release_conn=False,
                                 assert_same_host=False, chunked=isinstance(data, Iterator))

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
        response = self.answer(self.send(data, self.headers_out()))
        if self.models is not None and request.method == "GET" and response.status_code == 200 \
                and not response.is_streamed:
            # The app's own raw session read answers ours too: the next write need not read again.
            self.models.learn_response(client_target(request.environ), response.get_data())
        return response

    def forward_write(self, route: WriteRoute) -> Response:
        """The guarded write's "view": the (possibly rewritten) JSON body, then a fresh stored-model read."""
        response = self.answer(self.send(request.get_data(cache=True), self.headers_out(body_rewritten=True)),
                               buffer=True)
        body = request.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        session = (request.view_args or {}).get(route.spec.session) if route.session_in_path else None
        if session is None:
            found = jsonpath.get(body, route.spec.session)
            session = found if isinstance(found, str) else None
        if session is not None and self.models is not None:
            if response.status_code < 300:  # the model this write stored (the kept one when the guard kept it)
                model = jsonpath.get(body, route.spec.model)
                self.models.learn_write(session, model if isinstance(model, str) and model else None)
            else:
                self.models.expire(session)
        return response

    def write_model(self, session: str, model: str) -> None:
        """The guard's setter: the upstream's own model write (``session_write``), as the caller."""
        assert self.cfg.session_write is not None
        path, body = self.cfg.session_write.render(session, model)
        headers = {"Accept": "application/json", **caller_headers()}
        try:
            response = self.http.request(self.cfg.session_write.method, self.upstream + path, json=body,
                                         headers=headers, allow_redirects=False, timeout=self.timeouts)
        except requests.RequestException:
            raise WriteRefused(502, "bad_gateway", "the upstream app did not answer the model write") from None
        response.close()
        if self.models is not None and 200 <= response.status_code < 300:
            self.models.learn_write(session, model)  # the writer knows what it stored; other callers read again
        elif self.models is not None:
            self.models.expire(session)
        if not 200 <= response.status_code < 300:
            status, error, detail = refusal(response.status_code, "this session")
            raise WriteRefused(status, error, detail.replace("to show", "to change"))

    def answer(self, raw: BaseHTTPResponse, buffer: bool = False) -> Response:
        """The client's response: buffered (decoded) when the guard must read it and it is small, else streamed."""
        status = raw.status
        # The serving WSGI server writes its own Date and Server; forwarding them would send each twice.
        skip = hop_by_hop(raw.headers) | {"content-length", "date", "server"}
        headers = [(k, v) for k, v in raw.headers.items() if k.lower() not in skip and not k.lower().startswith("proxy-")]
        mimetype = raw.headers.get("Content-Type", "").split(";")[0].strip().lower()
        encoding = raw.headers.get("Content-Encoding", "identity").lower()
        length = int(raw.headers["Content-Length"]) if raw.headers.get("Content-Length", "").isdigit() else None
        # Pages to inject into and the configured catalog/session JSON; any other JSON may be a stream.
        readable = status == 200 and (
            (mimetype == "text/html" and request.method == "GET") or ("json" in mimetype and self.matches_catalog()))
        if buffer and mimetype == "text/event-stream":  # a write answered with a stream: pass it on live
            buffer = False
        if (buffer or readable) and encoding in ("identity", "gzip", "deflate") and (length or 0) <= MAX_BUFFER:
            body = raw.read(MAX_BUFFER + 1, decode_content=True)
            if len(body) <= MAX_BUFFER:  # read to the end: the connection can serve the next request
                _done(raw, complete=True)
                return _response(status, [(k, v) for k, v in headers if k.lower() != "content-encoding"], body)
            # Too big to hold: the decoded prefix and the rest (decoded too) stream on untouched.
            rest = _chunks(raw, decode=True)
            headers = [(k, v) for k, v in headers if k.lower() != "content-encoding"]
            return _response(status, headers, _chain(body, rest), streamed=True)
        if length is not None:
            headers.append(("Content-Length", str(length)))
        return _response(status, headers, _chunks(raw, decode=False), streamed=True)

    def bad_gateway(self, exc: Exception) -> Response:
        """The upstream did not answer: a clear 502 that names no address, host or exception text."""
        log.warning("hermes-plugin proxy: upstream request %s %s failed: %s", request.method,
                    printable(request.path[:200]), type(exc).__name__)
        # urllib3's NewConnectionError (refused) subclasses its connect timeout: test it first.
        timed_out = isinstance(exc, TIMEOUTS) and not isinstance(exc, urllib3.exceptions.NewConnectionError)
        detail = "the upstream app did not answer in time" if timed_out else "the upstream app is not reachable"
        if request.accept_mimetypes.accept_html and not request.accept_mimetypes.accept_json:
            page = (f"<!doctype html><title>502 Bad Gateway</title><h1>502 Bad Gateway</h1>"
                    f"<p>{escape(detail)}. Try again in a moment.</p>")
            return _response(502, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                             page.encode())
        return json_error(502, "bad_gateway", detail)


class _SizedStream:
    """The client's body as a file with a length: sent with the client's Content-Length, read in blocks."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream, self.length = stream, length

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        return bytes(self.stream.read(CHUNK if size is None or size < 0 else size))


def _chunks(raw: BaseHTTPResponse, decode: bool) -> Iterator[bytes]:
    """Whatever bytes have arrived, as soon as they arrive (read1), so server-sent events are not held."""
    complete = False
    try:
        while True:
            chunk = raw.read1(CHUNK, decode_content=decode)
            if not chunk:
                complete = True
                break
            yield chunk
    except Exception as exc:  # mid-stream the status is sent: just end
        log.warning("hermes-plugin proxy: upstream stream ended early: %s", type(exc).__name__)
    finally:
        _done(raw, complete)


def _done(raw: BaseHTTPResponse, complete: bool) -> None:
    """A fully read answer gives its connection back for reuse; a cut one is closed first (it is mid-body)."""
    if not complete:
        raw.close()
    raw.release_conn()


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _response(status: int, headers: list[tuple[str, str]], body: Any, streamed: bool = False) -> Response:
    response = Response(body, status=status, direct_passthrough=streamed)
    response.headers.clear()  # no Flask default Content-Type: the upstream's headers are the whole truth
    for name, value in headers:
        response.headers.add(name, value)
    return response

