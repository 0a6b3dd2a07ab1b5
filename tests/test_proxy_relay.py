"""The proxy's relay path: what the guard never reads skips Flask; kept-alive upstream connections are reused,
replaced when the upstream closed them, and a request is sent twice only when that is safe.

The upstreams here speak HTTP/1.1 over real loopback sockets. ``RawUpstream`` is a few lines of socket code on
purpose: only at that level can a test close a kept-alive connection at a chosen moment.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask, Response, request

from hermes_plugin.proxy import create_app, proxy_config

WAIT = 10.0

TABLE = {
    "writes": [{"method": "POST", "url": "^/api/session/update$", "session": "session_id", "model": "model"}],
    "session_read": {"url": "/api/session?session_id={session}", "model": "session.model"},
    "live_urls": [{"url": r"/api/models/live\?provider=(?P<provider>[^&]+)", "models": "models[].id"}],
    "session_urls": [{"url": r"/api/session\?session_id=(?P<session>[^&]+)", "model": "session.model"}],
}


def upstream_app(seen: list[dict[str, str]]) -> Flask:
    app = Flask("relay_upstream")

    @app.get("/")
    def home() -> str:  # the default auth_url: anyone may use the plugin's routes
        return "home"

    @app.route("/echo", methods=["GET", "HEAD", "POST"])
    def echo() -> Any:
        seen.append(dict(request.headers))
        return {"path": request.full_path, "body": request.get_data(as_text=True)}

    @app.get("/page")
    def page() -> Response:
        seen.append(dict(request.headers))
        return Response("<!doctype html><html><head><title>t</title></head><body>hi</body></html>", mimetype="text/html")

    @app.get("/api/session")
    def session() -> Response:
        seen.append(dict(request.headers))
        body = b'{"session": {"session_id": "s1", "model": "p/m"}}'
        return Response(gzip.compress(body), headers={"Content-Encoding": "gzip"}, mimetype="application/json")

    @app.get("/data")
    def data() -> Response:
        seen.append(dict(request.headers))
        return Response(gzip.compress(b'{"rows": [1, 2, 3]}'), headers={"Content-Encoding": "gzip"},
                        mimetype="application/json")

    @app.get("/folded")
    def folded() -> Response:
        return Response("ok", headers=[("X-One", "a"), ("X-Two", "b"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])

    return app


@pytest.fixture
def relayed(loopback_server) -> tuple[str, list[str], list[dict[str, str]]]:
    """(proxy URL, the paths the proxy's Flask before_request saw, the headers the upstream saw)."""
    seen: list[dict[str, str]] = []
    upstream = loopback_server(upstream_app(seen))
    app = create_app(upstream.url, cfg=proxy_config(TABLE))
    flask_saw: list[str] = []
    app.before_request(lambda: flask_saw.append(request.path))
    return loopback_server(app).url, flask_saw, seen


def test_requests_the_guard_never_reads_skip_flask_and_the_rest_do_not(relayed):
    url, flask_saw, _ = relayed
    relayed_answer = requests.get(f"{url}/echo?x=1", headers={"Accept": "application/json"}, timeout=WAIT)
    assert relayed_answer.status_code == 200 and relayed_answer.json()["path"] == "/echo?x=1"
    assert flask_saw == []  # relayed on plain WSGI
    page = requests.get(f"{url}/page", headers={"Accept": "text/html"}, timeout=WAIT)
    assert 'id="hermes-plugin-config"' in page.text  # the guard still injects into pages
    plugin = requests.get(f"{url}/hermes-plugin/api/catalog", timeout=WAIT)
    assert plugin.status_code == 200
    assert flask_saw == ["/page", "/hermes-plugin/api/catalog"]


def test_compressed_answers_the_guard_never_reads_pass_untouched(relayed):
    url, flask_saw, seen = relayed
    with requests.get(f"{url}/data", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=WAIT) as response:
        raw = response.raw.read(decode_content=False)
    assert response.headers["Content-Encoding"] == "gzip"  # not decoded and re-sent by the proxy
    assert gzip.decompress(raw) == b'{"rows": [1, 2, 3]}'
    assert seen[-1]["Accept-Encoding"] == "gzip"  # the client's own, not the identity the guard asks for
    assert flask_saw == []


def test_session_reads_are_read_by_the_guard(relayed):
    url, flask_saw, _ = relayed
    response = requests.get(f"{url}/api/session?session_id=s1", timeout=WAIT)
    assert response.json() == {"session": {"session_id": "s1", "model": "p/m"}}  # decoded for the guard
    assert flask_saw == ["/api/session"]  # in a request context: the guard learns the stored model


def test_repeated_response_headers_all_arrive(relayed):
    url, _, _ = relayed
    response = requests.get(f"{url}/folded", timeout=WAIT)
    assert response.headers["X-One"] == "a" and response.headers["X-Two"] == "b"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_header_names_a_client_invents_do_not_grow_the_proxy_memory(relayed):
    from hermes_plugin.proxy import relay

    url, _, seen = relayed
    with requests.Session() as client:
        for n in range(relay.MAX_NAMES + 50):
            answer = client.get(f"{url}/echo", headers={f"X-Made-Up-{n}": "1"}, timeout=WAIT)
            assert answer.status_code == 200
    assert seen[-1][f"X-Made-Up-{relay.MAX_NAMES + 49}"] == "1"  # names past the memo still go through
    assert len(relay._NAMES) <= relay.MAX_NAMES


def test_the_proxy_app_checks_each_hook_for_async_once_and_still_refuses_what_flask_refuses(loopback_server):
    app = create_app(loopback_server(upstream_app([])).url, cfg=proxy_config(TABLE))

    def sync_hook() -> None:
        return None

    async def async_hook() -> None:
        return None

    assert app.ensure_sync(sync_hook) is sync_hook and app.ensure_sync(sync_hook) is sync_hook
    for _ in range(2):  # remembered or not, an async hook gets Flask's own treatment (here: no async extra)
        with pytest.raises(RuntimeError, match="async"):
            app.ensure_sync(async_hook)


class RawUpstream:
    """An HTTP/1.1 upstream on raw sockets that keeps connections open and counts them. It can close every
    idle connection (a keep-alive timeout), or close one without a word on its request number ``drop_on``
    (a keep-alive timeout racing the proxy's next request)."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"

    def __init__(self, drop_on: int = 0, answer: bytes = ANSWER, close_after: bool = False) -> None:
        self.drop_on, self.requests, self.connections = drop_on, [], 0
        self.answer, self.close_after = answer, close_after
        self.open: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            self.open.append(conn)
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        count = 0
        with conn, reader:
            while True:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = reader.read(length) if length else b""
                count += 1
                self.requests.append(head.split(b"\r\n")[0] + b" " + body)
                if count == self.drop_on:
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                conn.sendall(self.answer if head.startswith(b"HEAD ") else self.answer + b"ok")
                if self.close_after:
                    conn.shutdown(socket.SHUT_RDWR)
                    return

    def close_idle(self) -> None:
        for conn in self.open:
            conn.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.listener.close()


@pytest.fixture
def raw_upstream(loopback_server: Callable[[Any], Any]) -> Iterator[tuple[RawUpstream, str, Any]]:
    """The raw upstream, the proxy's URL in front of it, and the proxy's pool of upstream connections."""
    upstream = RawUpstream()
    app = create_app(upstream.url, cfg=proxy_config({}))
    yield upstream, loopback_server(app).url, app.extensions["hermes_plugin_proxy"].pool
    upstream.stop()


def test_a_length_repeated_as_the_same_number_frames_the_answer(loopback_server):
    upstream = RawUpstream(answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n")
    url = loopback_server(create_app(upstream.url, cfg=proxy_config({}))).url
    try:
        with requests.Session() as client:
            for _ in range(3):  # answered at once, not when the kept-alive upstream connection times out
                answer = client.get(f"{url}/x", timeout=WAIT)
                assert answer.text == "ok" and answer.headers["Content-Length"] == "2"
        assert upstream.connections == 1
    finally:
        upstream.stop()


def test_conflicting_lengths_are_not_passed_on(loopback_server):
    upstream = RawUpstream(answer=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n",
                           close_after=True)
    url = loopback_server(create_app(upstream.url, cfg=proxy_config({}))).url
    try:
        answer = requests.get(f"{url}/x", timeout=WAIT)
        assert answer.text == "ok"  # read until the upstream closed, as the framing could not be trusted
        assert "Content-Length" not in answer.headers or answer.headers["Content-Length"] == "2"
    finally:
        upstream.stop()


def until_idle(pool: Any) -> None:
    """Wait until the proxy has put its upstream connection back: the client may hear the answer first."""
    deadline = time.monotonic() + WAIT
    while not pool.idle:
        assert time.monotonic() < deadline, "the proxy never put its upstream connection back in its pool"
        time.sleep(0.005)  # polling a condition with a deadline


def test_upstream_connections_are_kept_alive_and_reused(raw_upstream):
    upstream, url, pool = raw_upstream
    with requests.Session() as client:
        for n in range(20):
            assert client.get(f"{url}/n{n}", timeout=WAIT).text == "ok"
            until_idle(pool)  # else the next request, racing the put-back, rightly opens a second connection
    assert upstream.connections == 1 and len(upstream.requests) == 20


def test_a_connection_the_upstream_closed_while_idle_is_replaced(raw_upstream):
    upstream, url, pool = raw_upstream
    assert requests.get(f"{url}/a", timeout=WAIT).text == "ok"
    until_idle(pool)  # the closed connection is the pooled one, not one still in use
    upstream.close_idle()
    assert requests.get(f"{url}/b", timeout=WAIT).text == "ok"
    assert upstream.connections == 2


def test_head_keeps_the_length_and_frees_the_connection(raw_upstream):
    upstream, url, pool = raw_upstream
    head = requests.head(f"{url}/a", timeout=WAIT)
    assert head.status_code == 200 and head.content == b"" and head.headers["Content-Length"] == "2"
    until_idle(pool)  # freed: a HEAD answer has no body to wait for
    assert requests.get(f"{url}/a", timeout=WAIT).text == "ok"
    assert upstream.connections == 1


@pytest.fixture
def racing(loopback_server: Callable[[Any], Any]) -> Iterator[tuple[RawUpstream, str]]:
    upstream = RawUpstream(drop_on=2)
    yield upstream, loopback_server(create_app(upstream.url, cfg=proxy_config({}))).url
    upstream.stop()


def test_a_get_that_met_a_closing_connection_is_sent_again(racing):
    upstream, url = racing
    assert requests.get(f"{url}/a", timeout=WAIT).text == "ok"
    assert requests.get(f"{url}/b", timeout=WAIT).text == "ok"  # the first try met the closing connection
    assert upstream.requests == [b"GET /a HTTP/1.1 ", b"GET /b HTTP/1.1 ", b"GET /b HTTP/1.1 "]
    assert upstream.connections == 2


def test_a_post_that_met_a_closing_connection_is_not_sent_again(racing):
    upstream, url = racing
    assert requests.get(f"{url}/a", timeout=WAIT).text == "ok"
    response = requests.post(f"{url}/pay", data=b"once", headers={"Accept": "application/json"}, timeout=WAIT)
    assert response.status_code == 502 and response.json()["error"] == "bad_gateway"
    assert upstream.requests == [b"GET /a HTTP/1.1 ", b"POST /pay HTTP/1.1 once"]  # the upstream may have acted
