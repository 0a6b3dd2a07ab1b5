"""The scanner's proxy: forwards the page's traffic to the app, delays catalog answers, records every exchange."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request

from ..proxy.config import ProxyConfig
from ..proxy.relay import (
    DECODERS,
    MAX_BUFFER,
    UPSTREAM_ERRORS,
    Body,
    Proxy,
    _response,
    read_past,
    request_body,
    response_headers,
)
from ..proxy.urls import client_target
from .shape import catalog_ids

BLANK_PATH = "/.hermes-plugin-scan/blank"  # answered by the scanner itself: a same-origin page to set storage on
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Exchange:
    """One request the page made through the scanner, and what came back."""

    method: str
    target: str  # path and query as the page sent them
    at: float  # seconds since the trial started
    status: int = 0
    body: Any = None  # a write's JSON body (None when it was not JSON)
    answer: Any = None  # the JSON answer of a GET, or of a write
    catalog: list[str] = field(default_factory=list)  # model ids, when the answer is a catalog
    delayed: float = 0.0


class Traffic:
    """What the scanner proxy saw in one trial, and the delay it applies to catalog answers."""

    def __init__(self, catalog_paths: Sequence[str] = ()) -> None:
        self.catalog_paths = [re.compile(p) for p in catalog_paths]
        self.delay = 0.0
        self.only: str | None = None
        self.exchanges: list[Exchange] = []
        self.catalogs: dict[str, int] = {}  # "GET target" -> model count, over every trial
        self.started = time.monotonic()
        self.inflight = 0
        self.last_activity = time.monotonic()
        self._lock = threading.Lock()

    def begin_trial(self, delay: float, only: str | None = None) -> None:
        """A new trial: catalog answers wait ``delay`` seconds (only those on path ``only`` when given)."""
        with self._lock:
            self.delay, self.only, self.exchanges, self.started = delay, only, [], time.monotonic()
            self.last_activity = time.monotonic()

    def quiet_for(self) -> float:
        """Seconds since the page last had a request in flight (0 while one is)."""
        with self._lock:
            return 0.0 if self.inflight else time.monotonic() - self.last_activity

    def _enter(self) -> None:
        with self._lock:
            self.inflight += 1
            self.last_activity = time.monotonic()

    def _leave(self) -> None:
        with self._lock:
            self.inflight -= 1
            self.last_activity = time.monotonic()

    def named_catalog(self, target: str) -> bool:
        return any(p.search(target) for p in self.catalog_paths)

    def delay_for(self, target: str) -> float:
        if self.only is not None and target.split("?", 1)[0] != self.only:
            return 0.0
        return self.delay


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def create_scan_app(upstream: str, traffic: Traffic) -> Flask:
    """A Flask app that relays everything to ``upstream`` through the proxy's relay, without any guard."""
    proxy = Proxy(upstream, ProxyConfig())
    app = Flask("hermes_plugin.scan", static_folder=None)
    app.url_map.merge_slashes = False

    def view(path: str = "") -> Response:
        if request.path == BLANK_PATH:
            return Response("<!doctype html><title>hermes-plugin scan</title>", mimetype="text/html")
        traffic._enter()
        try:
            return relay(proxy, traffic)
        except UPSTREAM_ERRORS as exc:
            return proxy.bad_gateway(exc)
        finally:
            traffic._leave()

    app.add_url_rule("/", "root", view, methods=list(WRITE_METHODS) + ["GET", "HEAD", "OPTIONS"])
    app.add_url_rule("/<path:path>", "any", view, methods=list(WRITE_METHODS) + ["GET", "HEAD", "OPTIONS"])
    return app


def relay(proxy: Proxy, traffic: Traffic) -> Response:
    """Forward one request; read JSON answers (to spot catalogs and sessions) and hold catalogs ``delay``."""
    target = client_target(request.environ)
    exchange = Exchange(request.method, target, time.monotonic() - traffic.started)
    writes = request.method in WRITE_METHODS
    data = request.get_data(cache=True) if writes else None
    if writes:
        exchange.body = _json(data or b"")
    environ = request.environ
    # The scanner reads JSON answers; it never needs them compressed.
    head = proxy.request_head(environ, request.method, identity=True, keep_if_match=True,
                              body_length=len(data) if data is not None else None)
    body_out = (data or None) if writes else request_body(environ, request.method)
    conn, raw = proxy.pool.exchange(request.method, head, body_out)
    exchange.status = raw.status
    mimetype = (raw.getheader("Content-Type") or "").split(";")[0].strip().lower()
    length = raw.getheader("Content-Length") or ""
    encoding = (raw.getheader("Content-Encoding") or "identity").strip().lower()
    readable = (
        "json" in mimetype
        and (request.method == "GET" or writes)
        and (not length.isdigit() or int(length) <= MAX_BUFFER)
        and encoding in DECODERS
    )
    if not readable:
        traffic.exchanges.append(exchange)
        return proxy.answer(conn, raw, buffer=writes)
    reader = Body(raw, conn, proxy.pool)
    decoded = reader.decoded(encoding)
    whole = read_past(decoded, MAX_BUFFER)
    out = [(k, v) for k, v in response_headers(raw)[0] if k.lower() not in ("content-length", "content-encoding")]
    if len(whole) > MAX_BUFFER:  # too big to judge: passed on whole, as it is
        traffic.exchanges.append(exchange)
        return _response(raw.status, out, Body.chain(whole, decoded, reader), streamed=True)
    reader.close()
    body = whole
    exchange.answer = _json(body)
    if request.method == "GET" and 200 <= raw.status < 300:
        exchange.catalog = catalog_ids(exchange.answer)
        if exchange.catalog or traffic.named_catalog(target):
            with traffic._lock:
                traffic.catalogs[f"GET {target}"] = len(exchange.catalog)
            delay = traffic.delay_for(target)
            if delay:
                exchange.delayed = delay
                time.sleep(delay)  # the slow provider under test: the page waits for its catalog
    traffic.exchanges.append(exchange)
    return _response(raw.status, out, body)
