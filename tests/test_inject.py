"""HTML injection: the config element and guard script after <head>, and nowhere it would be unsafe."""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

import pytest
import requests
from flask import Flask, Response, stream_with_context
from flask_talisman import Talisman
from support.hostapp import create_app, running

from hermes_plugin import ModelGuard

CONFIG = re.compile(r'<script type="application/json" id="hermes-plugin-config"( nonce="[^"]+")?>(.*?)</script>')
SCRIPT = '<script src="/hermes-plugin/static/hermes-guard.js"'
PAGE = "<!doctype html><html><head><title>t</title></head><body><script src=/app.js></script></body></html>"


@pytest.fixture
def app(tmp_path) -> Flask:
    app = create_app(tmp_path, sessions={"s1": "m"},
                     HERMES_PLUGIN_LIVE_URLS=[{"url": r"/api/models/live\?provider=(?P<provider>[^&]+)",
                                               "models": "models[].id"}],
                     HERMES_PLUGIN_SESSION_URLS=[{"url": r"/api/session\?session_id=(?P<session>[^&]+)",
                                                  "model": "session.model"}],
                     HERMES_PLUGIN_PICKER="#modelPicker")

    @app.get("/page/<kind>")
    def page(kind: str) -> Any:
        if kind == "nohead":
            return Response("<html><body>no head</body></html>", mimetype="text/html")
        if kind == "header":
            return Response("<html><header>x</header><body></body></html>", mimetype="text/html")
        if kind == "upper":
            return Response('<HTML><HEAD lang="en"><TITLE>t</TITLE></HEAD></HTML>', mimetype="text/html")
        if kind == "json":
            return {"html": PAGE}
        if kind == "text":
            return Response(PAGE, mimetype="text/plain")
        if kind == "gzip":
            response = Response(gzip.compress(PAGE.encode()), mimetype="text/html")
            response.headers["Content-Encoding"] = "gzip"
            return response
        if kind == "stream":
            return Response(stream_with_context(iter([PAGE[:20], PAGE[20:]])), mimetype="text/html")
        if kind == "missing":
            return Response(PAGE, status=404, mimetype="text/html")
        if kind == "csp":
            response = Response(PAGE, mimetype="text/html")
            response.headers["Content-Security-Policy"] = "default-src 'self'; script-src 'self' 'nonce-abc123'"
            return response
        return Response(PAGE, mimetype="text/html")

    return app


def config_of(html: str) -> dict[str, Any]:
    match = CONFIG.search(html)
    assert match is not None, html[:300]
    return json.loads(match.group(2))  # type: ignore[no-any-return]


def test_injects_config_and_script_right_after_head(app):
    html = app.test_client().get("/page/plain").get_data(as_text=True)
    head_end = html.index("<head>") + len("<head>")
    assert html[head_end:].startswith('<script type="application/json" id="hermes-plugin-config">')
    assert html.index(SCRIPT) < html.index("/app.js")  # before the host's own scripts
    assert html.count(SCRIPT) == 1


def test_browser_config(app):
    config = config_of(app.test_client().get("/").get_data(as_text=True))
    assert config["prefix"] == "/hermes-plugin"
    assert config["ws"] == "/hermes-plugin/ws"
    assert config["modelSelect"] == "#modelSelect, [data-hermes-model]"
    assert config["picker"] == "#modelPicker"
    assert config["fetchTimeoutMs"] == 20000
    assert config["live"][0]["models"] == "models[].id"
    assert config["sessions"][0]["model"] == "session.model"
    assert config["static"] == []
    writes = {(w["method"], w["url"]): (w["session"], w["model"]) for w in config["writes"]}
    assert writes[("POST", "^/api/session/update$")] == ("body:session_id", "body:model")
    assert writes[("POST", "^/api/session/new$")] == ("body:session_id", "body:model")
    assert writes[("POST", "^/chats/(?P<chat_id>[^/]+)/model$")] == ("path:chat_id", "body:model")
    assert re.search(r"^/chats/(?P<chat_id>[^/]+)/model$", "/chats/abc/model").group("chat_id") == "abc"


def test_config_is_escaped_for_a_script_element(tmp_path):
    hostile = '</script><script>alert(1)</script>&\u2028'
    app = create_app(tmp_path, HERMES_PLUGIN_MODEL_SELECT=hostile)
    html = app.test_client().get("/").get_data(as_text=True)
    element = CONFIG.search(html).group(2)
    assert "<" not in element and ">" not in element and "&" not in element and "\u2028" not in element
    assert json.loads(element)["modelSelect"] == hostile


@pytest.mark.parametrize("kind", ["nohead", "header", "json", "text", "gzip", "stream", "missing"])
def test_leaves_other_responses_alone(app, kind):
    client = app.test_client()
    response = client.get(f"/page/{kind}")
    body = response.get_data()
    assert b"hermes-plugin-config" not in (gzip.decompress(body) if kind == "gzip" else body)
    assert b"hermes-guard.js" not in body


def test_case_insensitive_head_with_attributes(app):
    html = app.test_client().get("/page/upper").get_data(as_text=True)
    assert html.index('<HEAD lang="en">') + len('<HEAD lang="en">') == html.index('<script type="application/json"')


def test_not_into_a_websocket_upgrade(app):
    response = app.test_client().get("/", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert b"hermes-guard.js" not in response.get_data()


def test_inject_can_be_turned_off(tmp_path):
    app = create_app(tmp_path, HERMES_PLUGIN_INJECT=False)
    assert b"hermes-guard.js" not in app.test_client().get("/").get_data()


def test_nonce_from_the_csp_header(app):
    html = app.test_client().get("/page/csp").get_data(as_text=True)
    assert '<script src="/hermes-plugin/static/hermes-guard.js" nonce="abc123">' in html
    assert CONFIG.search(html).group(1) == ' nonce="abc123"'


def talisman(app: Flask) -> Talisman:
    return Talisman(app, force_https=False, content_security_policy={"default-src": "'self'", "script-src": "'self'"},
                    content_security_policy_nonce_in=["script-src"])


def test_nonce_with_talisman_initialised_after_the_guard(app):
    talisman(app)
    response = app.test_client().get("/")
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    assert f'{SCRIPT} nonce="{nonce}">' in response.get_data(as_text=True)


def test_nonce_with_talisman_initialised_before_the_guard(tmp_path):
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["HERMES_PLUGIN_CACHE"] = "memory"
    talisman(app)
    ModelGuard(app)
    app.get("/")(lambda: Response(PAGE, mimetype="text/html"))
    response = app.test_client().get("/")
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    assert f'{SCRIPT} nonce="{nonce}">' in response.get_data(as_text=True)


def test_content_length_is_right_over_real_http(app):
    with running(app) as url:
        response = requests.get(url + "/", timeout=10)
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert SCRIPT in response.text
    assert response.text.endswith("</html>")


def test_prefix_and_script_root_are_honoured(tmp_path):
    app = create_app(tmp_path, HERMES_PLUGIN_PREFIX="/_guard")
    html = app.test_client().get("/", base_url="http://localhost/chat/").get_data(as_text=True)
    assert '<script src="/chat/_guard/static/hermes-guard.js">' in html
    config = config_of(html)
    assert config["prefix"] == "/chat/_guard"
    assert "^/chat/api/session/update$" in [w["url"] for w in config["writes"]]
