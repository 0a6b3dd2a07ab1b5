"""The HTTP relay: the client's request as one upstream request head, the answer streamed or buffered back."""

from __future__ import annotations

import http.client
import http.cookiejar
import logging
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Response, request
from markupsafe import escape
from requests.adapters import HTTPAdapter

from .. import jsonpath
from ..api import json_error
from ..extension import WriteRefused
from ..redact import printable
from ..writefields import FieldError
from .access import UpstreamAccess
from .config import ProxyConfig, WriteRoute
from .credentials import caller_headers
from .sessions import SessionModels, refusal
from .upstream import CHUNK, Answer, Connection, SizedBody, UpstreamPool
from .urls import HOP_BY_HOP, client_target, upstream_base

log = logging.getLogger("hermes_plugin.proxy")

READS = "hermes_proxy.reads"  # environ key: whether this request is a read the guard learns from
MAX_BUFFER = 8 * 2**20  # larger HTML/JSON bodies stream through untouched instead of being held in memory


def read_past(chunks: Iterator[bytes], limit: int) -> bytes:
    """The chunks joined until they end or pass ``limit`` bytes (then the rest stays in ``chunks``)."""
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > limit:
            break
    return bytes(out)


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
UPSTREAM_ERRORS = (requests.RequestException, http.client.HTTPException, OSError)
TIMEOUTS = (requests.Timeout, TimeoutError)
# The serving WSGI server writes its own Date, Server and framing; forwarding them would send each twice.
RESPONSE_SKIP = HOP_BY_HOP | {"content-length", "date", "server"}
# X-Forwarded-For is rewritten with the client appended; a rewritten body gets its own length, and the
# guard's If-Match is its own, not the upstream's.
REQUEST_SKIP = HOP_BY_HOP | {"x-forwarded-for"}
REWRITTEN_SKIP = REQUEST_SKIP | {"content-length", "if-match"}
_NAMES: dict[str, str] = {"CONTENT_TYPE": "Content-Type", "CONTENT_LENGTH": "Content-Length"}
MAX_NAMES = 1024  # clients choose header names: the memo must not grow with every one they invent


def header_name(key: str) -> str:
    """``HTTP_X_FORWARDED_FOR`` -> ``X-Forwarded-For``; "" for environ keys that are no header (memoised)."""
    name = _NAMES.get(key)
    if name is None:
        name = key[5:].replace("_", "-").title() if key.startswith("HTTP_") \
            and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH") else ""
        if len(_NAMES) < MAX_NAMES:
            _NAMES[key] = name
    return name


class Proxy:
    """Forwarding state of one proxy app: upstream, connection pool, the config's compiled routes."""

    def __init__(self, upstream: str, cfg: ProxyConfig) -> None:
        self.upstream = upstream_base(upstream)
        self.ws_upstream = "ws" + self.upstream[4:]
        self.cfg = cfg
        self.http = make_session(cfg.pool_size)  # for the guard's own small JSON reads (sessions, access)
        self.pool = UpstreamPool(self.upstream, cfg.pool_size, cfg.connect_timeout, cfg.timeout)  # the relay's
        self.base_path = urlsplit(self.upstream).path
        self.upstream_host = urlsplit(self.upstream).netloc
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

    def matches_catalog(self) -> bool:
        """A catalog or session read the guard learns from (the WSGI entry may have found out already)."""
        environ = request.environ
        known = environ.get(READS)
        if known is None:
            known = environ[READS] = self.reads(request.method, request.full_path.rstrip("?"))
        return bool(known)

    def reads(self, method: str, target: str) -> bool:
        """``target`` is the decoded path and query, as Flask's ``request.full_path`` has it."""
        return any(m == method and pattern.search(target) for m, pattern in self.identity)

    def must_read(self) -> bool:
        """Responses the guard reads (pages to inject into, catalogs to learn from) are asked for uncompressed."""
        return "text/html" in request.headers.get("Accept", "") or self.matches_catalog()

    def request_head(self, environ: dict[str, Any], method: str, identity: bool = False,
                     body_length: int | None = None, keep_if_match: bool = False) -> bytes:
        """The upstream request line and headers: the client's minus hop-by-hop ones, plus X-Forwarded-*.

        ``identity`` asks for an uncompressed answer; ``body_length`` is the length of a body the guard
        rewrote or read whole (its Content-Length replaces the client's; the guard's If-Match is dropped
        unless ``keep_if_match``). ValueError for what cannot be forwarded.
        """
        skip = REQUEST_SKIP if body_length is None else REWRITTEN_SKIP
        if keep_if_match:  # a relay that rewrites nothing (the scanner) forwards the client's own If-Match
            skip = skip - {"if-match"}
        if identity:
            skip = skip | {"accept-encoding"}
        connection = environ.get("HTTP_CONNECTION")
        if connection:
            skip = skip | {token.strip().lower() for token in connection.split(",")}
        lines = [f"{method} {self.base_path}{client_target(environ)} HTTP/1.1"]
        names = _NAMES
        for key, value in environ.items():
            name = names.get(key)
            if name is None:
                name = header_name(key)
            if not name or not value:
                continue
            lower = name.lower()
            if lower in skip or lower.startswith("proxy-"):
                continue
            lines.append(f"{name}: {value}")
        if "HTTP_HOST" not in environ:
            lines.append(f"Host: {self.upstream_host}")
        if identity:
            lines.append("Accept-Encoding: identity")
        forwarded, remote = environ.get("HTTP_X_FORWARDED_FOR"), environ.get("REMOTE_ADDR") or ""
        lines.append(f"X-Forwarded-For: {forwarded}, {remote}" if forwarded else f"X-Forwarded-For: {remote}")
        if "HTTP_X_FORWARDED_PROTO" not in environ:
            lines.append(f"X-Forwarded-Proto: {environ.get('wsgi.url_scheme', 'http')}")
        if body_length is not None:
            lines.append(f"Content-Length: {body_length}")
        elif method not in ("GET", "HEAD") and not environ.get("CONTENT_LENGTH") \
                and environ.get("wsgi.input_terminated"):
            lines.append("Transfer-Encoding: chunked")  # a chunked upload stays chunked
        lines.append("\r\n")
        text = "\r\n".join(lines)
        if text.count("\n") != len(lines) or "\r" in text.replace("\r\n", ""):
            raise ValueError("a header value may not contain a line break")
        try:
            return text.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("the request-target and headers must be latin-1 text") from None

    # -- the two views ------------------------------------------------------------------------------

    def forward(self) -> Response:
        """Forward the request as it is, streaming the body up and the answer down."""
        environ = request.environ
        method = request.method
        try:
            head = self.request_head(environ, method, identity=self.must_read())
        except ValueError as exc:
            return json_error(400, "bad_request", str(exc))
        conn, raw = self.pool.exchange(method, head, request_body(environ, method))
        response = self.answer(conn, raw)
        if self.models is not None and method == "GET" and response.status_code == 200 \
                and not response.is_streamed:
            # The app's own raw session read answers ours too: the next write need not read again.
            self.models.learn_response(client_target(environ), response.get_data())
        return response

    def forward_write(self, route: WriteRoute) -> Response:
        """The guarded write's "view": the (possibly rewritten) JSON body, then a fresh stored-model read."""
        data = request.get_data(cache=True)
        try:
            head = self.request_head(request.environ, request.method, identity=self.must_read(), body_length=len(data))
        except ValueError as exc:
            return json_error(400, "bad_request", str(exc))
        conn, raw = self.pool.exchange(request.method, head, data or None)
        response = self.answer(conn, raw, buffer=True)
        body = request.get_json(silent=True)
        body = body if isinstance(body, dict) else {}
        session = (request.view_args or {}).get(route.spec.session) if route.session_in_path else None
        if session is None:
            found = jsonpath.get(body, route.spec.session)
            session = found if isinstance(found, str) else None
        if session is not None and self.models is not None:
            if response.status_code < 300:  # the model this write stored (the kept one when the guard kept it)
                self.models.learn_write(session, self.stored_by(route, body))
            else:
                self.models.expire(session)
        return response

    def stored_by(self, route: WriteRoute, body: dict[str, Any]) -> str | list[str] | None:
        """What a write stores, in the shape ``session_read`` reads it; None (read again) when unsure."""
        assert self.models is not None
        try:
            fields = route.spec.fields.read(body)
        except FieldError:
            return None
        if not fields:
            return None
        if self.models.reads_lists:  # only a list field says the whole list; one id may be its first entry only
            return list(fields[0].models) if fields[0].many else None
        return fields[0].models[0]

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

    def answer(self, conn: Connection, raw: Answer, buffer: bool = False) -> Response:
        """The client's response: buffered (decoded) when the guard must read it and it is small, else streamed."""
        status = raw.status
        headers, length = response_headers(raw)
        mimetype = (raw.getheader("Content-Type") or "").split(";")[0].strip().lower()
        encoding = (raw.getheader("Content-Encoding") or "identity").strip().lower()
        # Pages to inject into and the configured catalog/session JSON; any other JSON may be a stream.
        readable = status == 200 and (
            (mimetype == "text/html" and request.method == "GET") or ("json" in mimetype and self.matches_catalog()))
        if buffer and mimetype == "text/event-stream":  # a write answered with a stream: pass it on live
            buffer = False
        body = Body(raw, conn, self.pool)
        if request.method == "HEAD" or status in (204, 304):
            body.finish()
            return _response(status, headers, b"")
        if (buffer or readable) and encoding in DECODERS and (length or 0) <= MAX_BUFFER:
            decoded = body.decoded(encoding)
            prefix = read_past(decoded, MAX_BUFFER)
            headers = [(k, v) for k, v in headers if k.lower() not in ("content-encoding", "content-length")]
            if len(prefix) <= MAX_BUFFER:  # read to the end: the connection serves the next request
                body.close()
                return _response(status, headers, prefix)
            # Too big to hold: the decoded prefix and the rest (decoded too) stream on untouched.
            return _response(status, headers, Body.chain(prefix, decoded, body), streamed=True)
        return _response(status, headers, body, streamed=True)

    def bad_gateway(self, exc: Exception) -> Response:
        """The upstream did not answer: a clear 502 that names no address, host or exception text."""
        log.warning("hermes-plugin proxy: upstream request %s %s failed: %s", request.method,
                    printable(request.path[:200]), type(exc).__name__)
        detail = "the upstream app did not answer in time" if isinstance(exc, TIMEOUTS) \
            else "the upstream app is not reachable"
        if request.accept_mimetypes.accept_html and not request.accept_mimetypes.accept_json:
            page = (f"<!doctype html><title>502 Bad Gateway</title><h1>502 Bad Gateway</h1>"
                    f"<p>{escape(detail)}. Try again in a moment.</p>")
            return _response(502, [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")],
                             page.encode())
        return json_error(502, "bad_gateway", detail)


def request_body(environ: dict[str, Any], method: str) -> Any:
    """The client's body for the upstream: None, bytes (small: sent with the head), a sized reader or chunks."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        size = int(length) if length.isdigit() else 0
        if size <= 0:
            return None
        return stream.read(size) if size <= CHUNK else SizedBody(stream, size)
    if method not in ("GET", "HEAD") and environ.get("wsgi.input_terminated"):
        return iter(lambda: stream.read(CHUNK), b"")  # a chunked upload stays chunked
    return None


def response_headers(raw: Answer) -> tuple[list[tuple[str, str]], int | None]:
    """The answer's end-to-end headers and its declared length (kept: a download shows its progress)."""
    skip = RESPONSE_SKIP
    connection = raw.getheader("Connection")
    if connection:
        skip = skip | {token.strip().lower() for token in connection.split(",")}
    headers = []
    for name, value in raw.fields:
        lower = name.lower()
        if lower != "content-length" and lower not in skip and not lower.startswith("proxy-"):
            headers.append((name, value))
    length = None if raw.chunked else raw.declared_length()  # one the relay cannot trust is not passed on
    if length is not None:
        headers.append(("Content-Length", str(length)))
    return headers, length


def _deflate() -> Any:
    return _Deflate()


class _Deflate:
    """``deflate`` as servers send it: zlib-wrapped per the RFC, or raw deflate (which some send instead)."""

    def __init__(self) -> None:
        self.inner: Any = None

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        if self.inner is None:
            self.inner = zlib.decompressobj()
            try:
                return self.inner.decompress(data, max_length)  # type: ignore[no-any-return]
            except zlib.error:
                self.inner = zlib.decompressobj(-zlib.MAX_WBITS)
        return self.inner.decompress(data, max_length)  # type: ignore[no-any-return]

    @property
    def unconsumed_tail(self) -> bytes:
        return self.inner.unconsumed_tail if self.inner is not None else b""  # type: ignore[no-any-return]


DECODERS: dict[str, Callable[[], Any]] = {
    "identity": lambda: None,
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "deflate": _deflate,
}


class Body:
    """The upstream answer's body as it arrives (read1: server-sent events are never held back).

    Iterating it yields the bytes; closing it gives the connection back to the pool when the body was read
    to the end, and closes it otherwise (a cut connection is mid-body). ``on_close`` runs once, last.
    """

    def __init__(self, raw: Answer, conn: Connection, pool: UpstreamPool,
                 on_close: Callable[[], None] | None = None) -> None:
        self.raw, self.conn, self.pool, self.on_close = raw, conn, pool, on_close
        self.complete = self.released = self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        raw = self.raw
        read1 = raw.read1
        try:
            while True:
                chunk = read1(CHUNK)
                if not chunk:
                    self.complete = True
                    self.release()
                    return
                if raw.isclosed():  # that was the last of it: free the connection before the client has it
                    self.complete = True
                    self.release()
                yield chunk
        except Exception as exc:  # mid-stream the status is sent: just end
            log.warning("hermes-plugin proxy: upstream stream ended early: %s", type(exc).__name__)

    def decoded(self, encoding: str) -> Iterator[bytes]:
        """The body decoded (gzip, deflate), in pieces of at most CHUNK bytes: a small bomb stays small."""
        decoder = DECODERS[encoding]()
        if decoder is None:
            yield from self
            return
        for chunk in self:
            data = decoder.decompress(chunk, CHUNK)
            while data:
                yield data
                data = decoder.decompress(decoder.unconsumed_tail, CHUNK) if decoder.unconsumed_tail else b""

    def finish(self) -> None:
        """An answer without a body (HEAD, 204, 304): the connection is free at once."""
        self.complete = self.raw.isclosed() or not self.raw.read()
        self.close()

    def release(self) -> None:
        """The connection back to the pool if the body was read to the end, else closed (it is mid-body)."""
        if self.released:
            return
        self.released = True
        raw = self.raw
        if not self.complete and raw.isclosed():  # read to the end by a fixed-size read
            self.complete = True
        reusable = self.complete and not raw.will_close
        raw.close()
        if reusable:
            self.pool.put(self.conn)
        else:
            self.conn.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.release()
        if self.on_close is not None:
            self.on_close()

    @staticmethod
    def chain(first: bytes, rest: Iterator[bytes], body: Body) -> Iterator[bytes]:
        try:
            yield first
            yield from rest
        finally:
            body.close()


def _response(status: int, headers: list[tuple[str, str]], body: Any, streamed: bool = False) -> Response:
    response = Response(body, status=status, direct_passthrough=streamed)
    response.headers.clear()  # no Flask default Content-Type: the upstream's headers are the whole truth
    for name, value in headers:
        response.headers.add(name, value)
    return response
