"""The reverse proxy over real loopback servers: streaming, SSE, WebSockets, headers, errors, guard, injection.

Incremental delivery is proven with events, never timing: the upstream sends its second chunk only after
the test has received the first through the proxy, so a buffering proxy would make the upstream's wait
time out (and the test fail), not pass slowly.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask, Response, request
from flask_sock import Sock
from support.processes import ServingCommand
from support.proxyproc import raw_request
from support.wsclient import RawWS

from hermes_plugin.errors import ConfigError
from hermes_plugin.presets import PRESETS, preset
from hermes_plugin.proxy import create_app, load_config, proxy_config

WAIT = 10.0  # upper bound on an event wait; met at once unless the proxy buffers
MB = 2**20


class Upstream:
    """A Flask app standing in for the guarded chat app, with hooks the tests synchronise on."""

    def __init__(self) -> None:
        self.app = Flask("upstream")
        self.sock = Sock(self.app)
        self.go_on = threading.Event()  # the test says "I have the first chunk"
        self.release = threading.Event()  # the test lets held streams end
        self.waited: list[bool] = []  # what each go_on.wait() returned
        self.seen: dict[str, Any] = {}
        self.models = {"s1": "p/live-only", "s2": "p/gone"}
        self.writes: list[dict[str, Any]] = []
        self._routes()

    def _routes(self) -> None:
        app, up = self.app, self

        @app.get("/")
        def home() -> str:  # the default auth_url: anyone may use this app, and so its plugin routes
            return "home"

        @app.get("/stream")
        def stream() -> Response:
            def body() -> Iterator[bytes]:
                yield b"first\n"
                up.waited.append(up.go_on.wait(WAIT))
                yield b"second\n"
            return Response(body(), mimetype=request.args.get("type", "text/plain"))

        @app.get("/hold")
        def hold() -> Response:  # an SSE stream that stays open far longer than any client waits
            def body() -> Iterator[bytes]:
                yield b"data: first\n\n"
                up.release.wait(WAIT * 6)
                yield b"data: last\n\n"
            return Response(body(), mimetype="text/event-stream")

        @app.get("/download")
        def download() -> Response:
            def body() -> Iterator[bytes]:
                yield b"x" * MB
                up.waited.append(up.go_on.wait(WAIT))
                for _ in range(19):
                    yield b"x" * MB
            return Response(body(), mimetype="application/octet-stream")

        @app.post("/upload")
        def upload() -> Any:
            digest, total = hashlib.sha256(), 0
            while chunk := request.stream.read(64 * 1024):
                if total == 0:
                    up.go_on.set()  # the first bytes arrived while the client still holds the rest
                digest.update(chunk)
                total += len(chunk)
            return {"bytes": total, "sha256": digest.hexdigest()}

        @app.route("/echo", methods=["GET", "POST"])
        def echo() -> Any:
            return {"headers": dict(request.headers), "cookies": request.cookies}

        @app.get("/redirect")
        def redirect() -> Response:
            response = Response("moved", status=302, headers={"Location": "/elsewhere?x=1"})
            response.set_cookie("a", "1", httponly=True)
            response.set_cookie("b", "2", path="/sub")
            return response

        @app.get("/hop")
        def hop() -> Response:
            return Response("ok", headers={"X-Named": "1", "Connection": "X-Named", "Keep-Alive": "timeout=5",
                                           "Proxy-Authenticate": "Basic", "X-Kept": "yes"})

        @app.get("/page")
        def page() -> Response:
            html = b"<!doctype html><html><head><title>t</title></head><body>hi</body></html>"
            if request.args.get("gzip"):  # compressed whatever the client asked for
                return Response(gzip.compress(html), headers={"Content-Encoding": "gzip"}, mimetype="text/html")
            return Response(html, mimetype="text/html")

        @app.get("/api/models/live")
        def live() -> Any:
            return {"models": [{"id": "p/live-only"}, {"id": "p/other"}]}

        @app.get("/api/session")
        def session() -> Any:
            sid = request.args.get("session_id", "")
            if sid not in up.models:
                return {"error": "not_found"}, 404
            return {"session": {"session_id": sid, "model": up.models[sid]}}

        @app.post("/api/session/update")
        def update() -> Any:
            body = request.get_json()
            up.writes.append(body)
            up.models[body["session_id"]] = body["model"]
            return {"session": {"session_id": body["session_id"], "model": body["model"]}}

        @self.sock.route("/ws/echo")
        def ws_echo(ws: Any) -> None:
            ws.send(json.dumps({"host": request.host, "origin": request.headers.get("Origin")}))
            while True:
                ws.send("echo:" + ws.receive())


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


PROXY_TABLE = {
    "writes": [{"method": "POST", "url": "^/api/session/update$", "session": "session_id", "model": "model"}],
    "session_read": {"url": "/api/session?session_id={session}", "model": "session.model"},
    "live_urls": [{"url": r"/api/models/live\?provider=(?P<provider>[^&]+)", "models": "models[].id"}],
}


@pytest.fixture
def proxied(upstream: Upstream, loopback_server: Callable[[Any], Any]) -> tuple[str, str, Flask]:
    """(proxy URL, upstream URL, proxy app)."""
    up = loopback_server(upstream.app)
    app = create_app(up.url, cfg=proxy_config(PROXY_TABLE))
    return loopback_server(app).url, up.url, app


# -- streaming ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mimetype", ["text/plain", "text/event-stream"])
def test_stream_and_sse_arrive_incrementally(proxied, upstream, mimetype):
    url, _, _ = proxied
    with requests.get(f"{url}/stream?type={mimetype}", stream=True, timeout=WAIT * 2) as response:
        first = response.raw.read1(100)
        assert first == b"first\n"  # received while the upstream is still waiting to send the second
        upstream.go_on.set()
        assert response.raw.read() == b"second\n"
    assert upstream.waited == [True]
    assert response.headers["Content-Type"].startswith(mimetype)


def test_open_streams_never_starve_other_requests(upstream, loopback_server):
    up = loopback_server(upstream.app)
    url = loopback_server(create_app(up.url, cfg=proxy_config({**PROXY_TABLE, "pool_size": 4}))).url
    streams = []
    try:
        for _ in range(12):  # three times the pool: every one holds an upstream connection until released
            response = requests.get(f"{url}/hold", stream=True, timeout=WAIT)
            assert response.raw.read1(64) == b"data: first\n\n"
            streams.append(response)
        answered = requests.get(f"{url}/echo", timeout=WAIT)
        assert answered.status_code == 200 and "headers" in answered.json()
    finally:
        upstream.release.set()
        for response in streams:
            response.close()


def test_large_download_streams(proxied, upstream):
    url, _, _ = proxied
    with requests.get(f"{url}/download", stream=True, timeout=WAIT * 2) as response:
        got = len(response.raw.read1(MB))
        assert 0 < got <= MB  # the first megabyte is here before the upstream made the other 19
        upstream.go_on.set()
        while chunk := response.raw.read1(MB):
            got += len(chunk)
    assert got == 20 * MB
    assert upstream.waited == [True]


def test_large_upload_streams(proxied, upstream):
    url, _, _ = proxied
    digest = hashlib.sha256()
    waited: list[bool] = []

    def body() -> Iterator[bytes]:
        block = b"y" * MB
        digest.update(block)
        yield block
        waited.append(upstream.go_on.wait(WAIT))  # the upstream read the start before we send the rest
        for _ in range(19):
            digest.update(block)
            yield block

    response = requests.post(f"{url}/upload", data=body(), timeout=WAIT * 2)
    assert response.json() == {"bytes": 20 * MB, "sha256": digest.hexdigest()}
    assert waited == [True]


def test_sized_upload_keeps_its_length(proxied, upstream):
    url, _, _ = proxied
    data = b"z" * (3 * MB)
    response = requests.post(f"{url}/upload", data=data, timeout=WAIT)
    assert response.json() == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_websocket_echo_through_the_proxy(proxied):
    url, _, _ = proxied
    host = "chat.example:8788"  # a Host the upstream could only see if the proxy kept the client's
    ws = RawWS(url, headers={"Origin": url}, timeout=WAIT, path="/ws/echo", host_header=host)
    try:
        assert ws.receive_json() == {"host": host, "origin": url}
        for text in ("hello", "second message"):
            ws.send(text)
            assert ws.receive_text() == "echo:" + text
    finally:
        ws.close()


def test_the_plugins_own_websocket_is_served_by_the_proxy(proxied):
    url, _, _ = proxied
    ws = RawWS(url, timeout=WAIT)  # keeps a hello that arrives in the handshake's packet
    try:
        assert ws.receive_json() == {"type": "hello"}  # sent with the handshake
    finally:
        ws.close()


# -- errors ---------------------------------------------------------------------------------------------


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback port that refuses connections, held (bound, never listening) so no server can take it."""
    import socket

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    try:
        yield f"http://127.0.0.1:{held.getsockname()[1]}"
    finally:
        held.close()


def test_upstream_down_is_a_502_without_internals(loopback_server, dead_url):
    url = loopback_server(create_app(dead_url, cfg=proxy_config(PROXY_TABLE))).url
    as_json = requests.get(f"{url}/api/anything", headers={"Accept": "application/json"}, timeout=WAIT)
    assert as_json.status_code == 502
    assert as_json.json() == {"error": "bad_gateway", "detail": "the upstream app is not reachable"}
    as_html = requests.get(f"{url}/", headers={"Accept": "text/html"}, timeout=WAIT)
    assert as_html.status_code == 502 and as_html.headers["Content-Type"].startswith("text/html")
    assert "502 Bad Gateway" in as_html.text
    write = requests.post(f"{url}/api/session/update", json={"session_id": "s1", "model": "m"}, timeout=WAIT)
    assert write.status_code == 502 and write.json()["error"] == "bad_gateway"
    for response in (as_json, as_html, write):
        for leak in ("127.0.0.1", dead_url.rsplit(":", 1)[1], "Errno", "Traceback", "ConnectionError", "urllib3"):
            assert leak not in response.text


def test_the_plugin_prefix_is_never_forwarded(proxied):
    url, _, _ = proxied
    assert requests.get(f"{url}/hermes-plugin/api/catalog", timeout=WAIT).json() == {"providers": []}
    missing = requests.get(f"{url}/hermes-plugin/nothing", timeout=WAIT)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


# -- headers, cookies, redirects ------------------------------------------------------------------------


def test_hop_by_hop_request_headers_are_dropped(proxied):
    url, _, _ = proxied
    headers = {"Connection": "keep-alive, X-Named", "X-Named": "1", "Keep-Alive": "timeout=5", "TE": "trailers",
               "Proxy-Authorization": "Basic eA==", "X-End-To-End": "kept"}
    seen = requests.get(f"{url}/echo", headers=headers, timeout=WAIT).json()["headers"]
    lower = {k.lower() for k in seen}
    assert not lower & {"x-named", "keep-alive", "te", "proxy-authorization"}
    assert seen["X-End-To-End"] == "kept"
    assert seen["X-Forwarded-For"] == "127.0.0.1"


def test_hop_by_hop_response_headers_are_dropped(proxied):
    url, _, _ = proxied
    response = requests.get(f"{url}/hop", timeout=WAIT)
    assert response.text == "ok" and response.headers["X-Kept"] == "yes"
    assert not {k.lower() for k in response.headers} & {"x-named", "keep-alive", "proxy-authenticate"}


def test_host_and_origin_are_preserved(proxied):
    url, upstream_url, _ = proxied
    headers = {"Origin": url, "Cookie": "sid=abc; theme=dark"}
    seen = requests.get(f"{url}/echo", headers=headers, timeout=WAIT).json()
    assert seen["headers"]["Host"] == url.removeprefix("http://")  # not the upstream's address
    assert seen["headers"]["Origin"] == url
    assert seen["cookies"] == {"sid": "abc", "theme": "dark"}


def test_redirects_and_set_cookie_pass_untouched(proxied):
    url, _, _ = proxied
    response = requests.get(f"{url}/redirect", allow_redirects=False, timeout=WAIT)
    assert response.status_code == 302
    assert response.headers["Location"] == "/elsewhere?x=1"
    cookies = response.raw.headers.getlist("Set-Cookie")
    assert len(cookies) == 2 and cookies[0].startswith("a=1") and "Path=/sub" in cookies[1]


def test_cookies_of_one_client_never_reach_another(proxied):
    url, _, _ = proxied
    requests.get(f"{url}/redirect", allow_redirects=False, timeout=WAIT)  # upstream sets cookies a and b
    assert requests.get(f"{url}/echo", timeout=WAIT).json()["cookies"] == {}


# -- injection ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_guard_is_injected_into_proxied_html(proxied, compressed):
    url, _, _ = proxied
    response = requests.get(f"{url}/page" + ("?gzip=1" if compressed else ""),
                            headers={"Accept": "text/html", "Accept-Encoding": "gzip"}, timeout=WAIT)
    assert response.status_code == 200
    assert "Content-Encoding" not in response.headers
    assert int(response.headers["Content-Length"]) == len(response.content)
    html = response.text
    assert html.index('id="hermes-plugin-config"') < html.index("<title>")
    config = json.loads(html.split('id="hermes-plugin-config">', 1)[1].split("</script>", 1)[0])
    assert config["writes"] == [{"method": "POST", "url": "^/api/session/update$", "session": "body:session_id",
                                 "model": "body:model"}]
    assert '/hermes-plugin/static/hermes-guard.js' in html


@pytest.mark.parametrize("compressed", [False, True])
def test_html_asked_without_text_html_is_injected_too(proxied, compressed):
    """A service worker pre-caching the app's shell asks for the page with ``Accept: */*``; its cached copy
    later opens the app, so it must carry the guard as a navigation's does."""
    url, _, _ = proxied
    response = requests.get(f"{url}/page" + ("?gzip=1" if compressed else ""),
                            headers={"Accept": "*/*", "Accept-Encoding": "gzip"}, timeout=WAIT)
    assert response.status_code == 200 and "Content-Encoding" not in response.headers
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert '/hermes-plugin/static/hermes-guard.js' in response.text
    assert response.text.index('id="hermes-plugin-config"') < response.text.index("<title>")


def test_streams_are_not_injected(proxied, upstream):
    url, _, _ = proxied
    upstream.go_on.set()
    response = requests.get(f"{url}/stream?type=text/html", headers={"Accept": "text/html"}, timeout=WAIT)
    assert response.text == "first\nsecond\n"


# -- the write guard ------------------------------------------------------------------------------------


def _write(url: str, session: str, model: str, intent: str, **headers: str) -> requests.Response:
    return requests.post(f"{url}/api/session/update", json={"session_id": session, "model": model},
                         headers={"X-Hermes-Intent": intent, **headers}, timeout=WAIT)


def test_guarded_writes_follow_the_decision_table(proxied, upstream):
    url, _, _ = proxied
    # unknown catalog: an automatic write keeps the stored model, the upstream stores the kept one
    kept = _write(url, "s1", "p/first-static", "auto")
    assert kept.status_code == 200 and kept.headers["X-Hermes-Decision"] == "keep"
    assert kept.headers["X-Hermes-Model-Kept"] == "catalog_unknown"
    assert upstream.writes[-1]["model"] == "p/live-only" and upstream.models["s1"] == "p/live-only"
    # the page's own live fetch through the proxy teaches the guard the catalog
    assert requests.get(f"{url}/api/models/live?provider=p", timeout=WAIT).status_code == 200
    present = _write(url, "s1", "p/first-static", "auto")
    assert present.headers["X-Hermes-Model-Kept"] == "model_present"
    assert upstream.models["s1"] == "p/live-only"
    # a model the fresh live catalog does not list may be replaced
    absent = _write(url, "s2", "p/other", "auto")
    assert absent.headers["X-Hermes-Decision"] == "fallback" and upstream.models["s2"] == "p/other"
    # a user's pick passes, and the next read sees it (the cached stored model was refreshed)
    picked = _write(url, "s1", "p/other", "user")
    assert picked.headers["X-Hermes-Decision"] == "pass" and upstream.models["s1"] == "p/other"
    same = _write(url, "s1", "p/other", "auto")
    assert same.headers["X-Hermes-Decision"] == "pass"
    log = requests.get(f"{url}/hermes-plugin/api/sessions/s1/model-log", timeout=WAIT).json()["entries"]
    assert [(e["old"], e["new"], e["reason"]) for e in log if e["old"] != e["new"]] == [
        ("p/live-only", "p/other", "user")]


def test_stale_if_match_writes_nothing(proxied, upstream):
    url, _, _ = proxied
    version = requests.get(f"{url}/hermes-plugin/api/sessions/s1/model", timeout=WAIT).headers["ETag"]
    assert _write(url, "s1", "p/other", "user", **{"If-Match": version}).status_code == 200
    stale = _write(url, "s1", "p/live-only", "user", **{"If-Match": version})
    assert stale.status_code == 412 and stale.json()["error"] == "stale_version"
    assert upstream.models["s1"] == "p/other" and len(upstream.writes) == 1


def test_bad_writes_are_refused_before_the_upstream(proxied, upstream):
    url, _, _ = proxied
    malformed = requests.post(f"{url}/api/session/update", data=b"{nope", timeout=WAIT,
                              headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"] == "bad_request"
    cross = _write(url, "s1", "p/other", "user", Origin="http://evil.example")
    assert cross.status_code == 403
    assert upstream.writes == []


def test_guarded_write_bodies_are_bounded_and_other_bodies_are_not(proxied, upstream):
    url, _, _ = proxied
    padding = "x" * (2 * MB)
    sized = requests.post(f"{url}/api/session/update", json={"session_id": "s1", "model": "p/x", "pad": padding},
                          headers={"X-Hermes-Intent": "user"}, timeout=WAIT)
    assert sized.status_code == 413 and sized.json()["error"] == "payload_too_large"

    def chunked() -> Iterator[bytes]:
        yield b'{"session_id": "s1", "model": "p/x", "pad": "'
        for _ in range(4):
            yield b"x" * MB
        yield b'"}'

    streamed = requests.post(f"{url}/api/session/update", data=chunked(), timeout=WAIT,
                             headers={"X-Hermes-Intent": "user", "Content-Type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["error"] == "payload_too_large"
    # A declared 150 MB body is refused from its headers alone: the proxy never waits for (or holds) it.
    status, answer = raw_request(url, b"POST /api/session/update HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                      b"Content-Type: application/json\r\nContent-Length: 157286400\r\n\r\n{")
    assert status == 413 and b"payload_too_large" in answer
    assert upstream.writes == [] and upstream.models["s1"] == "p/live-only"
    fits = requests.post(f"{url}/api/session/update", json={"session_id": "s1", "model": "p/x", "pad": "x" * 1000},
                         headers={"X-Hermes-Intent": "user"}, timeout=WAIT)
    assert fits.status_code == 200 and upstream.models["s1"] == "p/x"
    other = requests.post(f"{url}/upload", data=b"z" * (5 * MB), timeout=WAIT)  # not a guarded route: no limit
    assert other.json()["bytes"] == 5 * MB


# -- configuration --------------------------------------------------------------------------------------


def test_presets_are_valid_and_hermes_webui_matches_the_issue():
    for name in PRESETS:
        proxy_config(preset(name))
    cfg = load_config(preset_name="hermes-webui")
    assert cfg.model_select == "#modelSelect"
    assert [(w.method, w.url.pattern, w.spec.session, w.spec.model) for w in cfg.writes] == [
        ("POST", "^/api/session/update$", "session_id", "model"),
        ("POST", "^/api/session/new$", "session_id", "model"),
        ("POST", "^/api/chat/start$", "session_id", "model"),
    ]
    assert cfg.session_read is not None and cfg.session_read.model == "session.model"
    assert cfg.static_urls[0]["provider"] == "groups[].provider_id"
    assert cfg.live_urls[0]["models"] == "models[].id"
    assert cfg.model_aliases == [r"^@(?P<provider>[^:]+):(?P<model>.+)$"]  # its live ids are "@deepseek:<id>"
    assert cfg.picker == "#composerModelChip, #composerModelDropdown"


def test_config_file_with_proxy_and_providers(tmp_path):
    path = tmp_path / "hermes.toml"
    path.write_text('[providers.local]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n'
                    '[proxy]\nsession_read = {url = "/s/{session}", model = "model"}\n'
                    'writes = [{method = "PUT", url = "^/chats/(?P<chat>[^/]+)$", session = "path:chat", '
                    'model = "settings.model"}]\n', encoding="utf-8")
    cfg = load_config(str(path))
    assert list(cfg.providers) == ["local"]
    assert cfg.writes[0].browser() == {"method": "PUT", "url": "^/chats/(?P<chat>[^/]+)$", "session": "path:chat",
                                       "model": "body:settings.model"}


def test_config_file_starts_from_a_preset(tmp_path):
    """``preset = NAME`` in a file: the built-in routes, plus the file's providers and keys (a price ratio)."""
    path = tmp_path / "hermes.toml"
    path.write_text('[providers.priced]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n'
                    '[proxy]\npreset = "hermes-webui"\nmax_price_ratio = 1.5\npicker = "#mine"\n', encoding="utf-8")
    cfg = load_config(str(path))
    builtin = load_config(preset_name="hermes-webui")
    assert list(cfg.providers) == ["priced"] and cfg.max_price_ratio == 1.5
    assert cfg.picker == "#mine"  # the file's own key replaces the preset's
    assert [w.browser() for w in cfg.writes] == [w.browser() for w in builtin.writes]
    assert cfg.session_read == builtin.session_read and cfg.session_write == builtin.session_write
    assert builtin.max_price_ratio == 1.0 and builtin.providers == {}


@pytest.mark.parametrize("value, message", [("nope", "unknown preset 'nope'"), (3, "preset must be the name")])
def test_bad_preset_key_is_a_config_error(value, message):
    with pytest.raises(ConfigError, match=message):
        proxy_config({"preset": value})


@pytest.mark.parametrize("table, message", [
    ({"writes": [{"url": "^/x$"}]}, "need session_read"),
    ({"nope": 1}, "unknown keys"),
    ({"writes": [{"url": "(", "session": "s"}], "session_read": {"url": "/{session}", "model": "m"}}, "bad url"),
    ({"writes": [{"url": "^/x$", "session": "path:chat"}], "session_read": {"url": "/{session}", "model": "m"}},
     "no named group"),
    ({"session_read": {"url": "/no-placeholder", "model": "m"}}, "session_read"),
    ({"timeout": -1}, "timeout"),
])
def test_bad_proxy_config_is_one_clear_error(table, message):
    with pytest.raises(ConfigError, match=message):
        proxy_config(table)


def test_path_group_sessions_are_guarded(upstream, loopback_server):
    models = {"c1": "p/live-only"}

    @upstream.app.get("/chats/<chat>")
    def read_chat(chat: str) -> Any:
        return {"model": models[chat]}

    @upstream.app.put("/chats/<chat>")
    def write_chat(chat: str) -> Any:
        models[chat] = request.get_json()["settings"]["model"]
        return {"ok": True}

    table = {"writes": [{"method": "PUT", "url": "^/chats/(?P<chat>[^/]+)$", "session": "path:chat",
                         "model": "settings.model"}], "session_read": {"url": "/chats/{session}", "model": "model"}}
    up = loopback_server(upstream.app)
    url = loopback_server(create_app(up.url, cfg=proxy_config(table))).url
    kept = requests.put(f"{url}/chats/c1", json={"settings": {"model": "p/x"}}, headers={"X-Hermes-Intent": "auto"},
                        timeout=WAIT)
    assert kept.headers["X-Hermes-Decision"] == "keep" and models["c1"] == "p/live-only"
    picked = requests.put(f"{url}/chats/c1", json={"settings": {"model": "p/x"}}, headers={"X-Hermes-Intent": "user"},
                          timeout=WAIT)
    assert picked.headers["X-Hermes-Decision"] == "pass" and models["c1"] == "p/x"


# -- the command ----------------------------------------------------------------------------------------


def test_cli_help_and_one_line_errors():
    from click.testing import CliRunner

    from hermes_plugin.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["proxy", "--help"])
    assert result.exit_code == 0 and "--upstream URL" in result.output and "hermes-webui" in result.output
    for args, message in ((["--preset", "nope"], "unknown preset 'nope'"),
                          (["--preset", "demo", "--config", "x.toml"], "not both"),
                          ([], "needs --config")):
        result = runner.invoke(cli, ["proxy", "--upstream", "http://127.0.0.1:9", *args], env={"HERMES_PLUGIN_CONFIG": ""})
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines() == [f"Error: {result.output.split('Error: ', 1)[1].strip()}"]
        assert message in result.output and "Traceback" not in result.output


def test_cli_proxy_serves_until_interrupted(upstream, loopback_server):
    import sys

    up = loopback_server(upstream.app)
    args = [sys.executable, "-c", "from hermes_plugin.cli import main; main()", "proxy",
            "--upstream", up.url, "--preset", "demo", "--port", "0"]
    with ServingCommand(args) as proxy:  # ready: the banner printed and the port open
        assert proxy.banner.startswith("hermes-plugin proxy: http://127.0.0.1:"), proxy.banner
        page = requests.get(f"{proxy.url}/page", headers={"Accept": "text/html"}, timeout=WAIT)
        assert 'id="hermes-plugin-config"' in page.text
        assert proxy.interrupt() == 0, proxy.stderr
    assert '"GET /page" 200' in proxy.stdout  # the access log


def test_websocket_to_a_dead_upstream_is_closed(loopback_server, dead_url):
    url = loopback_server(create_app(dead_url, cfg=proxy_config(PROXY_TABLE))).url
    ws = RawWS(url, timeout=WAIT, path="/ws/echo")
    try:
        with pytest.raises(ConnectionResetError):  # closed by the proxy, no message
            ws.receive_text()
        assert ws.close_code == 1011
    finally:
        ws.close()
