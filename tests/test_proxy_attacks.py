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
from support.proxyproc import SERVERS, Decoy, proxy_process, raw_request

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
    victim = b"Host: 127.0.0.1\r\nCookie: session=victim-cookie\r\n"
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
    status, answer = raw_request(proxy_url, b"GET /ok?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert status == 200 and json.loads(answer.split(b"\r\n\r\n", 1)[1]) == {"path": "ok"}  # the proxy works
    for name, data in attacks(decoy.port).items():
        status, answer = raw_request(proxy_url, data)
        assert status == 400, f"{name}: {answer[:300]!r}"
        assert b"decoy" not in answer, name
    assert decoy.sync() == []  # not one connection reached the attacker's target


# -- the upstream's authorisation decides who may use the plugin's routes ----------------------------------

AUTH_TOML = """
[proxy]
auth_url = "/api/me"
session_read = {url = "/api/session?session_id={session}", model = "session.model"}
writes = [{method = "POST", url = "^/api/session/update$", session = "session_id", model = "model"}]
"""
SESSIONS = {"a1": ("alice", "p/alice-secret-model"), "b1": ("bob", "p/bob-model")}


def cookie_auth_upstream() -> Flask:
    """A chat app with cookie logins: each user sees only their own sessions (another's is a 404)."""
    app = Flask("cookie-upstream")
    sessions = {sid: list(owner_model) for sid, owner_model in SESSIONS.items()}

    def user() -> str | None:
        name = request.cookies.get("user")
        return name if name in ("alice", "bob") else None

    @app.get("/api/me")
    def me() -> Any:
        return ({"user": user()}, 200) if user() else ({"error": "login required"}, 401)

    @app.get("/api/session")
    def session() -> Any:
        if not user():
            return {"error": "login required"}, 401
        found = sessions.get(request.args.get("session_id", ""))
        if found is None or found[0] != user():
            return {"error": "not found"}, 404
        return {"session": {"model": found[1]}}

    @app.post("/api/session/update")
    def update() -> Any:
        body = request.get_json()
        found = sessions.get(body.get("session_id"))
        if not user() or found is None or found[0] != user():
            return {"error": "not yours"}, 403
        found[1] = body["model"]
        return {"ok": True}

    return app


@pytest.fixture(params=SERVERS)
def auth_proxy(request: Any, tmp_path: Path, loopback_server: Callable[[Any], Any]) -> Iterator[str]:
    upstream = loopback_server(cookie_auth_upstream())
    config = tmp_path / "proxy.toml"
    config.write_text(AUTH_TOML)
    with proxy_process(request.param, upstream.url, config) as url:
        yield url


def test_plugin_routes_ask_the_upstream_with_the_callers_own_credentials(auth_proxy):
    import requests
    from support.wsclient import RawWS, Refused

    alice, bob, anonymous = {"user": "alice"}, {"user": "bob"}, {}
    P = auth_proxy + "/hermes-plugin"
    # Bob cold, before anyone read the session: refused with the upstream's status, never a 500.
    cold = requests.get(f"{P}/api/sessions/a1/model", cookies=bob, timeout=10)
    assert cold.status_code == 404 and cold.json()["error"] == "not_found"
    # Alice reads and changes her own session through the proxy.
    mine = requests.get(f"{P}/api/sessions/a1/model", cookies=alice, timeout=10)
    assert mine.status_code == 200 and mine.json()["model"] == "p/alice-secret-model"
    write = requests.post(f"{auth_proxy}/api/session/update", json={"session_id": "a1", "model": "p/alice-next"},
                          cookies=alice, headers={"X-Hermes-Intent": "user"}, timeout=10)
    assert write.status_code == 200, write.text
    log = requests.get(f"{P}/api/sessions/a1/model-log", cookies=alice, timeout=10)
    assert log.status_code == 200 and log.json()["entries"][-1]["new"] == "p/alice-next"
    # Now Bob and an anonymous client ask for Alice's session, model log, catalog and WebSocket.
    for who, cookies, status in (("bob", bob, 404), ("anonymous", anonymous, 401)):
        for path in ("/api/sessions/a1/model", "/api/sessions/a1/model-log"):
            answer = requests.get(P + path, cookies=cookies, timeout=10)
            assert answer.status_code == status, (who, path, answer.text)
            assert "alice" not in answer.text, (who, path, answer.text)
    for path in ("/api/catalog", "/api/catalog?refresh=1"):
        assert requests.get(P + path, timeout=10).status_code == 401
        assert requests.get(P + path, cookies=bob, timeout=10).status_code == 200
    with pytest.raises(Refused) as refused:
        RawWS(auth_proxy, timeout=10)
    assert refused.value.status_code == 401
    ws = RawWS(auth_proxy, headers={"Cookie": "user=bob"}, timeout=10)  # a signed-in user is let through
    ws.sock.close()
    # A write as Bob to Alice's session: the upstream refuses it, and nothing changed.
    theirs = requests.post(f"{auth_proxy}/api/session/update", json={"session_id": "a1", "model": "p/bob-model"},
                           cookies=bob, headers={"X-Hermes-Intent": "user"}, timeout=10)
    assert theirs.status_code in (403, 404) and "alice" not in theirs.text
    again = requests.get(f"{P}/api/sessions/a1/model", cookies=alice, timeout=10)
    assert again.json()["model"] == "p/alice-next"


# -- DNS rebinding: a page on another name must not reach a proxy listening on loopback ---------------------


def test_a_rebound_host_name_reaches_nothing_behind_a_loopback_proxy(tmp_path, loopback_server):
    from support.proxyproc import proxy_process as run

    seen: list[str] = []
    upstream = loopback_server(upstream_app(seen))
    config = tmp_path / "proxy.toml"
    config.write_text(PROXY_TOML)
    evil = b"Host: rebind.evil.test:8788\r\nOrigin: http://rebind.evil.test:8788\r\n"
    with run("werkzeug", upstream.url, config) as url:  # the CLI on 127.0.0.1: loopback names only by default
        for data in (b"GET /page HTTP/1.1\r\n" + evil + b"Connection: close\r\n\r\n",
                     b"POST /api/session/update HTTP/1.1\r\n" + evil
                     + b"Content-Type: application/json\r\nContent-Length: 37\r\nX-Hermes-Intent: user\r\n\r\n"
                     + b'{"session_id": "s1", "model": "p/x"}\n',
                     b"GET /hermes-plugin/ws HTTP/1.1\r\n" + evil + WS + b"\r\n",
                     b"GET /hermes-plugin/api/catalog HTTP/1.1\r\n" + evil + b"Connection: close\r\n\r\n"):
            status, answer = raw_request(url, data)
            assert status == 403 and b"host_not_allowed" in answer, answer[:300]
        assert seen == []  # nothing was forwarded
        status, _ = raw_request(url, b"GET /page HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        assert status == 200 and seen == ["/page?"]
