"""Attacks on a real ``hermes-plugin proxy`` process, under werkzeug (the CLI) and under gunicorn.

Request lines are sent on raw sockets, as an attacker would: nothing here goes through an HTTP client that
would normalise them first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from proxyproc import SERVERS, Decoy, proxy_process, raw_request

PROXY_TOML = """
[proxy]
session_read = {url = "/api/session?session_id={session}", model = "session.model"}
writes = [{method = "POST", url = "^/api/session/update$", session = "session_id", model = "model"}]
"""


def upstream_app(seen: list[str]) -> Flask:
    app = Flask("upstream")

    @app.route("/<path:path>", methods=["GET", "POST", "OPTIONS"])
    def anything(path: str) -> Any:
        seen.append(request.full_path)
        return {"path": path}

    return app


@pytest.fixture
def decoy() -> Iterator[Decoy]:
    target = Decoy()
    try:
        yield target
    finally:
        target.close()


@pytest.fixture(params=SERVERS)
def proxy_url(request: Any, tmp_path: Path, loopback_server: Callable[[Any], Any]) -> Iterator[str]:
    seen: list[str] = []
    upstream = loopback_server(upstream_app(seen))
    config = tmp_path / "proxy.toml"
    config.write_text(PROXY_TOML)
    with proxy_process(request.param, upstream.url, config) as url:
        yield url


WS = b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
     b"Sec-WebSocket-Version: 13\r\n"


def attacks(decoy: int) -> dict[str, bytes]:
    d = f"127.0.0.1:{decoy}".encode()
    victim = b"Host: app.test\r\nCookie: session=victim-cookie\r\n"
    return {
        "at-host GET": b"GET @" + d + b"/x HTTP/1.1\r\n" + victim + b"\r\n",
        "at-host POST": b"POST @" + d + b"/x HTTP/1.1\r\n" + victim
                        + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
        "absolute-form": b"GET http://" + d + b"/x HTTP/1.1\r\n" + victim + b"\r\n",
        "double slash": b"GET //" + d + b"/x HTTP/1.1\r\n" + victim + b"\r\n",
        "CONNECT": b"CONNECT " + d + b" HTTP/1.1\r\nHost: " + d + b"\r\n\r\n",
        "OPTIONS *": b"OPTIONS * HTTP/1.1\r\n" + victim + b"\r\n",
        "at-host WebSocket": b"GET @" + d + b"/ws HTTP/1.1\r\n" + victim + WS + b"\r\n",
        "double slash WebSocket": b"GET //" + d + b"/ws HTTP/1.1\r\n" + victim + WS + b"\r\n",
    }


def test_only_path_and_query_come_from_the_client(proxy_url, decoy):
    status, answer = raw_request(proxy_url, b"GET /ok?a=1 HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
    assert status == 200 and json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"path": "ok"}  # the proxy works
    for name, data in attacks(decoy.port).items():
        status, answer = raw_request(proxy_url, data)
        assert status == 400, f"{name}: {answer[:300]!r}"
        assert b"decoy" not in answer, name
    assert decoy.sync() == []  # not one connection reached the attacker's target
