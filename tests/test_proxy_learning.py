"""The proxy learns stored models without reading them itself: from the app's own raw session reads and
from its own guarded writes, so a write does not wait for a slow session read. Counted, not timed: the
upstream counts every session read it answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask, request

from hermes_plugin.presets import preset
from hermes_plugin.proxy import create_app, proxy_config

RAW = "/api/session?session_id={sid}&messages=0&resolve_model=0"


class WebUILike:
    """hermes-webui's session routes: the raw read, the display read (a resolved id), writes; reads counted."""

    def __init__(self) -> None:
        self.app = Flask("webui_like")
        self.stored = {"s1": "deepseek-reasoner", "s2": "custom:acme/preview-1"}
        self.reads: list[str] = []  # the query of every session read the upstream answered
        app = self.app

        @app.get("/api/session")
        def session() -> dict[str, Any]:
            self.reads.append(request.query_string.decode())
            sid = request.args["session_id"]
            model = self.stored[sid]
            if request.args.get("resolve_model", "1") != "0":
                model = "@deepseek:" + model  # the display-resolved spelling, never the stored one
            return {"session": {"session_id": sid, "model": model}}

        @app.post("/api/session/update")
        def update() -> dict[str, Any]:
            body = request.get_json()
            self.stored[body["session_id"]] = body["model"]
            return {"session": {"session_id": body["session_id"], "model": body["model"]}}

        @app.post("/api/chat/start")
        def start() -> dict[str, Any]:
            body = request.get_json()
            self.stored[body["session_id"]] = body["model"]
            return {"stream_id": "x"}


@pytest.fixture
def webui() -> WebUILike:
    return WebUILike()


def proxy_url(webui: WebUILike, loopback_server: Callable[[Any], Any], **changes: Any) -> str:
    upstream = loopback_server(webui.app)
    table = {**preset("hermes-webui"), **changes}
    return str(loopback_server(create_app(upstream.url, cfg=proxy_config(table))).url)


def send(base: str, path: str, sid: str, model: str, intent: str = "auto", cookie: str = "") -> requests.Response:
    headers = {"Origin": base, "X-Hermes-Intent": intent, **({"Cookie": cookie} if cookie else {})}
    return requests.post(base + path, json={"session_id": sid, "model": model}, headers=headers, timeout=10)


def test_a_send_after_the_apps_own_raw_read_reads_nothing(webui, loopback_server):
    base = proxy_url(webui, loopback_server)
    assert requests.get(base + RAW.format(sid="s1"), timeout=10).json()["session"]["model"] == "deepseek-reasoner"
    assert len(webui.reads) == 1  # the app's own read, relayed
    response = send(base, "/api/chat/start", "s1", "deepseek-chat")  # an automatic change: judged, kept
    assert response.status_code == 200 and response.headers["X-Hermes-Decision"] == "keep"
    assert webui.stored["s1"] == "deepseek-reasoner"
    assert len(webui.reads) == 1  # judged on the learnt model: no read before, none after the write


def test_a_guarded_write_teaches_the_model_it_stored(webui, loopback_server):
    base = proxy_url(webui, loopback_server)
    assert send(base, "/api/session/update", "s1", "deepseek-chat", intent="user").status_code == 200
    reads = len(webui.reads)  # the first write had nothing learnt: it read
    assert send(base, "/api/chat/start", "s1", "deepseek-v9", intent="auto").headers["X-Hermes-Decision"] == "keep"
    assert webui.stored["s1"] == "deepseek-chat"  # the pick, not the later automatic change
    assert len(webui.reads) == reads  # judged on what the user's write stored: nothing read


def test_a_display_resolved_read_is_never_learnt(webui, loopback_server):
    base = proxy_url(webui, loopback_server)
    resolved = requests.get(base + "/api/session?session_id=s1", timeout=10).json()["session"]["model"]
    assert resolved == "@deepseek:deepseek-reasoner"
    send(base, "/api/chat/start", "s1", "deepseek-chat")
    # The proxy read the raw model itself: the write was judged against what is stored, not the display id.
    assert any("resolve_model=0" in query for query in webui.reads)
    assert webui.stored["s1"] == "deepseek-reasoner"


def test_what_one_caller_learnt_never_answers_another(webui, loopback_server):
    base = proxy_url(webui, loopback_server)
    requests.get(base + RAW.format(sid="s1"), headers={"Cookie": "user=a"}, timeout=10)
    reads = len(webui.reads)
    send(base, "/api/chat/start", "s1", "deepseek-chat", cookie="user=b")
    assert len(webui.reads) > reads  # b's write asked the upstream with b's own credentials


def test_learning_off_reads_on_every_write(webui, loopback_server):
    base = proxy_url(webui, loopback_server, session_learn_ttl=0, session_ttl=0)
    requests.get(base + RAW.format(sid="s1"), timeout=10)
    send(base, "/api/chat/start", "s1", "deepseek-chat")
    assert len(webui.reads) >= 2  # the relayed read, then the proxy's own


@pytest.mark.parametrize("bad", [-1, "30", True])
def test_session_learn_ttl_must_be_seconds(bad):
    from hermes_plugin.errors import ConfigError

    with pytest.raises(ConfigError, match="session_learn_ttl"):
        proxy_config({**preset("hermes-webui"), "session_learn_ttl": bad})
