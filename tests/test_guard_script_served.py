"""The guard script as the package serves it (minified, cached, under the size budget; readable in debug),
and the server's alias resolution handed to the script."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from flask import Flask

from hermes_plugin import ModelGuard, hookimpl, script
from hermes_plugin.errors import ConfigError

P = "/hermes-plugin"
BUDGET = 6 * 1024  # bytes, gzipped: the served build must stay small


def make_app(**config: Any) -> tuple[Flask, ModelGuard]:
    app = Flask(__name__)
    app.config.update(HERMES_PLUGIN_CACHE="memory", **config)
    guard = ModelGuard(app)
    stored = {"s1": "nous-kimi"}
    guard.session_model(stored.get)
    return app, guard


def test_served_build_is_minified_and_within_the_gzip_budget() -> None:
    app, _ = make_app()
    response = app.test_client().get(f"{P}/static/hermes-guard.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    body = response.get_data()
    assert body.decode() == script.minified()
    assert len(body) < len(script.source().encode()) * 0.8  # comments and indentation are gone
    assert "// " not in body.decode()
    size = len(gzip.compress(body, 9))
    assert size <= BUDGET, f"served guard script is {size} bytes gzipped (budget {BUDGET})"


def test_served_build_is_computed_once_and_revalidated_by_etag() -> None:
    app, _ = make_app()
    client = app.test_client()
    script.minified.cache_clear()  # other tests in this process may have built the optional parts too
    first = client.get(f"{P}/static/hermes-guard.js")
    built = script.minified.cache_info()
    assert built.currsize <= 3  # one build per script (the guard, and its optional parts if asked for)
    again = client.get(f"{P}/static/hermes-guard.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    assert script.minified.cache_info().misses == built.misses  # not built again


def test_notices_script_is_served_minified_and_apart_from_the_core() -> None:
    app, _ = make_app()
    response = app.test_client().get(f"{P}/static/hermes-notices.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    body = response.get_data(as_text=True)
    assert body == script.minified(script.NOTICES) and "is no longer offered" in body
    assert "is no longer offered" not in script.minified()  # the core only knows how to load it
    assert "Kept your saved model" in body and "Kept your saved model" not in script.minified()
    assert "innerHTML" not in script.source(script.NOTICES)  # every text it shows is textContent


def test_readable_source_in_debug_or_by_config() -> None:
    for config in ({"DEBUG": True}, {"HERMES_PLUGIN_READABLE_SCRIPT": True}):
        app, _ = make_app(**config)
        body = app.test_client().get(f"{P}/static/hermes-guard.js").get_data(as_text=True)
        assert body == script.source() and "// " in body


def test_alias_rules_reach_the_browser_config() -> None:
    rule = r"^@(?P<provider>[^:]+):(?P<model>.+)$"
    app, _ = make_app(HERMES_PLUGIN_MODEL_ALIASES=[rule])
    app.add_url_rule("/", "index", lambda: "<html><head></head><body></body></html>")
    html = app.test_client().get("/").get_data(as_text=True)
    assert '"aliases":["^@(?P\\u003cprovider\\u003e[^:]+):(?P\\u003cmodel\\u003e.+)$"]' in html


@pytest.mark.parametrize("bad", [[r"^@(?P<provider>[^:]+):.+$"], ["(unclosed"], "not a list", [1]])
def test_bad_alias_rules_are_refused_at_startup(bad: Any) -> None:
    with pytest.raises(ConfigError, match="HERMES_PLUGIN_MODEL_ALIASES"):
        make_app(HERMES_PLUGIN_MODEL_ALIASES=bad)


def test_session_model_api_carries_the_servers_alias_resolution() -> None:
    class Aliases:
        @hookimpl
        def resolve_model_alias(self, model_id: str, provider: str | None) -> str | None:
            return model_id.removeprefix("nous-") if model_id.startswith("nous-") else None

    app, guard = make_app()
    with app.app_context():
        guard.pm.register(Aliases(), name="test-aliases")
    client = app.test_client()
    assert client.get(f"{P}/api/sessions/s1/model").get_json()["aliases"] == ["kimi"]
    assert client.get(f"{P}/api/sessions/nobody/model").get_json()["aliases"] == []


def test_a_page_route_naming_a_writes_session_is_handed_to_the_script() -> None:
    app, guard = make_app()

    @app.put("/v1/chats/<cid>")
    @guard.model_write(session="cid", model="model")
    def update(cid: str) -> Any:
        return {"ok": True}

    page = "<html><head></head><body></body></html>"
    app.add_url_rule("/chat/<cid>", "chat", lambda cid: page)
    app.add_url_rule("/docs/<slug>", "docs", lambda slug: page)
    client = app.test_client()
    assert 'id="hermes-plugin-config" data-session="c1">' in client.get("/chat/c1").get_data(as_text=True)
    escaped = client.get('/chat/a"><b>').get_data(as_text=True)
    assert 'data-session="a&#34;&gt;&lt;b&gt;"' in escaped and "<b>" not in escaped  # text, never markup
    assert "data-session" not in client.get("/docs/intro").get_data(as_text=True)  # not a session's name


def test_sessions_part_is_served_minified_and_only_on_pages_with_guarded_writes() -> None:
    app, guard = make_app()
    page = "<html><head></head><body></body></html>"
    app.add_url_rule("/", "index", lambda: page)
    client = app.test_client()
    assert script.SESSIONS_SCRIPT not in client.get("/").get_data(as_text=True)  # nothing it could do here

    app2, guard2 = make_app()

    @app2.put("/v1/chats/<cid>")
    @guard2.model_write(session="cid", model="model")
    def update(cid: str) -> Any:
        return {"ok": True}

    app2.add_url_rule("/", "index", lambda: page)
    client2 = app2.test_client()
    html = client2.get("/").get_data(as_text=True)
    core, part = html.index("/static/hermes-guard.js"), html.index("/static/" + script.SESSIONS_SCRIPT)
    assert core < part  # right after the core, before the host's own scripts
    served = client2.get(f"{P}/static/{script.SESSIONS_SCRIPT}")
    assert served.status_code == 200 and served.mimetype == "text/javascript"
    assert served.get_data(as_text=True) == script.minified(script.SESSIONS_SCRIPT) and served.headers["ETag"]
