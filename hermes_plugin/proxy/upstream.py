"""Kept-alive HTTP/1.1 connections to the upstream: one request written in one send, the answer parsed by http.client.

The relay's hot path needs nothing of a general HTTP client (no redirects, retries, cookies, proxies, URL
parsing): a connection is a socket, a request is bytes the caller assembled once, and the standard library
parses the answer. ``pool_size`` idle connections are kept; a request that finds none opens its own, so a long
stream never makes another request wait for a slot.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
from collections import deque
from typing import Any
from urllib.parse import urlsplit

CHUNK = 64 * 1024
SAFE_TO_RETRY = frozenset({"GET", "HEAD", "OPTIONS"})


class Connection:
    """One socket to the upstream; ``fresh`` until it is reused (a new socket cannot have been closed while idle)."""

    __slots__ = ("sock", "fresh")

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.fresh = sock, True

    def dropped(self) -> bool:
        """The upstream closed (or wrote unasked) while idle: readable now means it cannot take a request."""
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        self.sock.close()


class UpstreamPool:
    """Connections to one origin: ``get()`` an idle one or a new one, ``put()`` it back after a complete answer."""

    def __init__(self, upstream: str, pool_size: int, connect_timeout: float, read_timeout: float) -> None:
        parts = urlsplit(upstream)
        self.https = parts.scheme == "https"
        self.address = (parts.hostname or "localhost", parts.port or (443 if self.https else 80))
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.size = pool_size
        self.idle: deque[Connection] = deque()  # append/pop are atomic: no lock on the hot path
        self.tls = ssl.create_default_context() if self.https else None

    def get(self) -> Connection:
        while True:
            try:
                conn = self.idle.pop()
            except IndexError:
                return self.connect()
            if not conn.dropped():
                conn.fresh = False
                return conn
            conn.close()

    def put(self, conn: Connection) -> None:
        if len(self.idle) < self.size:
            self.idle.append(conn)
        else:
            conn.close()

    def connect(self) -> Connection:
        sock = socket.create_connection(self.address, timeout=self.connect_timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a small request goes out at once
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.address[0])
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        return Connection(sock)

    def exchange(self, method: str, head: bytes, body: Any) -> tuple[Connection, Answer]:
        """Send on a kept-alive connection; one the upstream closed meanwhile is retried once on a new one if
        nothing could have reached it twice (a bodiless GET/HEAD/OPTIONS)."""
        conn = self.get()
        try:
            return conn, send(conn, method, head, body)
        except (ConnectionError, http.client.BadStatusLine):
            conn.close()
            if conn.fresh or method not in SAFE_TO_RETRY or body is not None:
                raise
        except BaseException:
            conn.close()
            raise
        conn = self.connect()
        try:
            return conn, send(conn, method, head, body)
        except BaseException:
            conn.close()
            raise

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


def send(conn: Connection, method: str, head: bytes, body: Any) -> Answer:
    """Write the request (head, then the body: None, bytes, a sized reader or chunk iterator) and read the answer's head."""
    sock = conn.sock
    if body is None:
        sock.sendall(head)
    elif isinstance(body, (bytes, bytearray)):
        sock.sendall(head + body if len(body) <= CHUNK else head)
        if len(body) > CHUNK:
            sock.sendall(body)
    elif isinstance(body, SizedBody):
        sock.sendall(head)
        body.send_to(sock)
    else:  # a chunked upload stays chunked
        sock.sendall(head)
        for chunk in body:
            if chunk:
                sock.sendall(b"%X\r\n%b\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")
    response = Answer(sock, method=method)
    response.begin()
    return response


MAX_LINE, MAX_HEADERS = 65536, 100  # http.client's own limits


def read_head(fp: Any) -> list[tuple[str, str]]:
    """The header block as (name, value) pairs in order, parsed as http.client does but without the email
    package's general parser."""
    fields: list[tuple[str, str]] = []
    name: str | None = None
    value = ""
    while True:
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        if line in (b"\r\n", b"\n", b""):
            break
        if len(fields) >= MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        text = line.decode("iso-8859-1")
        if text[0] in " \t" and name is not None:  # an obsolete folded continuation line
            value = f"{value} {text.strip()}"
            fields[-1] = (name, value)
            continue
        name, colon, value = text.partition(":")
        if not colon:
            raise http.client.HTTPException(f"malformed header line {text[:100]!r}")
        name, value = name.rstrip(), value.strip()
        fields.append((name, value))
    return fields


class Answer(http.client.HTTPResponse):
    """http.client's response with its head parsed by ``read_head`` (the email parser was a third of the relay's
    time); the status line, framing and body reading are the standard library's. ``fields`` is the header
    block in order; ``getheader`` reads it through a dict, not through the email package."""

    fields: list[tuple[str, str]]
    index: dict[str, list[str]]
    _begun = False
    _message: http.client.HTTPMessage | None = None

    @property  # type: ignore[override]
    def headers(self) -> http.client.HTTPMessage | None:
        """The standard API's message (``info()``, ``headers``, ``msg``), built only when a caller asks for it."""
        if self._message is None and self._begun:
            self._message = http.client.HTTPMessage()
            for name, value in self.fields:
                self._message.set_raw(name, value)
        return self._message

    @headers.setter
    def headers(self, message: http.client.HTTPMessage | None) -> None:
        self._message = message

    msg = headers  # type: ignore[assignment]

    def begin(self) -> None:
        if self._begun:
            return
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            read_head(self.fp)  # an interim 100 Continue: its headers are dropped
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.fields = read_head(self.fp)
        self.index = {}
        for name, value in self.fields:
            self.index.setdefault(name.lower(), []).append(value)
        self._begun = True
        encoding = self.getheader("Transfer-Encoding")
        self.chunked = bool(encoding) and encoding.lower() == "chunked"
        self.chunk_left = None
        self.will_close = self.closes()
        self.length = None
        length = self.declared_length()
        if length is not None and not self.chunked:
            self.length = length
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # no framing: the body ends when the connection does

    def declared_length(self) -> int | None:
        """The Content-Length, when it is one number (repeated only as the same number); None otherwise,
        and the body is then read until the upstream closes."""
        values = set(self.index.get("content-length", ()))
        if len(values) != 1:
            return None
        value = values.pop()
        return int(value) if value.isdigit() else None

    def getheader(self, name: str, default: Any = None) -> Any:
        values = self.index.get(name.lower())
        return default if values is None else ", ".join(values)  # repeated fields joined, as http.client does

    def closes(self) -> bool:
        """http.client's own rule: the upstream closes after this answer unless HTTP/1.1 (or 1.0 keep-alive)
        says otherwise."""
        connection = (self.getheader("Connection") or "").lower()
        if self.version == 11:
            return "close" in connection
        return "keep-alive" not in connection and not self.getheader("Keep-Alive") \
            and "keep-alive" not in (self.getheader("Proxy-Connection") or "").lower()


class SizedBody:
    """The client's body with its Content-Length: copied to the upstream in blocks as it arrives."""

    __slots__ = ("stream", "length")

    def __init__(self, stream: Any, length: int) -> None:
        self.stream, self.length = stream, length

    def send_to(self, sock: socket.socket) -> None:
        left = self.length
        while left > 0:
            block = self.stream.read(min(CHUNK, left))
            if not block:
                raise http.client.IncompleteRead(b"", left)  # the client hung up mid-body
            sock.sendall(block)
            left -= len(block)
