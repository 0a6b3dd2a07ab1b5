"""The server guard on Flask hosts written the way other teams write them: other names, a flat catalog,
catalogs and chats read by POST, a single-page app served with ``send_static_file``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, request

from hermes_plugin import ModelGuard

# One flat list, every model naming its provider: a common shape (OpenRouter-like gateways, LiteLLM).
FLAT = {
    "models": [
        {"id": "opus", "provider": "anth"},
        {"id": "haiku", "provider": "anth"},
        {"id": "gpt-x", "provider": "oai"},
        {"id": "sonnet", "provider": "anth"},
    ]
}


def switchboard(tmp_path: Path, **config: Any) -> Flask:
    """A host with "conversations" whose ``llm`` is changed by ``PATCH /conv/<cid>``."""
    app = Flask("switchboard", instance_path=str(tmp_path / "instance"))
    app.config.update(HERMES_PLUGIN_CACHE="memory", **config)
    convs: dict[str, dict[str, Any]] = {"k1": {"llm": "opus", "title": "first"}}
    app.convs = convs  # type: ignore[attr-defined]
    guard = ModelGuard()
    app.guard = guard  # type: ignore[attr-defined]

    @guard.session_model
    def llm_of(cid: str) -> str | None:
        return convs[cid]["llm"] if cid in convs else None

    @app.get("/v2/catalog")
    def catalog() -> Any:
        return FLAT

    @app.post("/v2/catalog/query")
    def catalog_by_post() -> Any:  # the same list, asked for by POST with a filter body
        wanted = (request.get_json(silent=True) or {}).get("provider")
        return {"models": [m for m in FLAT["models"] if wanted in (None, m["provider"])]}

    @app.patch("/conv/<cid>")
    @guard.model_write(session="cid", model="settings.llm")
    def patch_conv(cid: str) -> Any:
        convs[cid]["llm"] = request.get_json()["settings"]["llm"]
        return {"cid": cid, **convs[cid]}

    guard.init_app(app)
    return app


@pytest.fixture
def served(loopback_server) -> Any:
    return lambda app: loopback_server(app).url


def auto_write(base: str, cid: str, model: str) -> requests.Response:
    return requests.patch(
        f"{base}/conv/{cid}", json={"settings": {"llm": model}}, headers={"X-Hermes-Intent": "auto"}, timeout=30
    )


def test_flat_catalog_groups_each_providers_models_across_entries(tmp_path, served):
    app = switchboard(
        tmp_path,
        HERMES_PLUGIN_LIVE_URLS=[{"url": r"/v2/catalog$", "models": "models[].id", "provider": "models[].provider"}],
    )
    base = served(app)
    requests.get(f"{base}/v2/catalog", timeout=10)
    catalog = requests.get(f"{base}/hermes-plugin/api/catalog/anth", timeout=10).json()
    assert [model["id"] for model in catalog["models"]] == ["opus", "haiku", "sonnet"]
    # opus is the first anth model: before, only the last one (sonnet) was kept, so opus was "absent"
    # and this automatic write replaced it.
    written = auto_write(base, "k1", "haiku")
    assert (written.headers["X-Hermes-Decision"], app.convs["k1"]["llm"]) == ("keep", "opus")  # type: ignore[attr-defined]


def test_catalog_read_by_post_is_learnt(tmp_path, served):
    app = switchboard(
        tmp_path,
        HERMES_PLUGIN_LIVE_URLS=[
            {"url": r"/v2/catalog/query$", "method": "POST", "models": "models[].id", "provider": "models[].provider"}
        ],
    )
    base = served(app)
    requests.post(f"{base}/v2/catalog/query", json={}, timeout=10)
    answer = requests.get(f"{base}/hermes-plugin/api/sessions/k1/model", timeout=10).json()
    assert (answer["availability"], answer["provider"]) == ("present", "anth")  # before: unknown, nothing learnt
    assert auto_write(base, "k1", "gpt-x").headers["X-Hermes-Decision"] == "keep"


def test_a_get_entry_does_not_learn_from_a_post(tmp_path, served):
    app = switchboard(
        tmp_path,
        HERMES_PLUGIN_LIVE_URLS=[
            {"url": r"/v2/catalog/query$", "models": "models[].id", "provider": "models[].provider"}
        ],
    )
    base = served(app)
    requests.post(f"{base}/v2/catalog/query", json={}, timeout=10)
    providers = requests.get(f"{base}/hermes-plugin/api/catalog", timeout=10).json()["providers"]
    assert providers == []


@pytest.mark.parametrize("method", ["DELETE", "get it", 5])
def test_a_bad_read_method_fails_at_startup(tmp_path, method):
    from hermes_plugin import ConfigError

    with pytest.raises(ConfigError, match="method"):
        switchboard(tmp_path, HERMES_PLUGIN_LIVE_URLS=[{"url": "/x", "provider": "p", "models": "m", "method": method}])
    with pytest.raises(ConfigError, match="method"):
        switchboard(tmp_path, HERMES_PLUGIN_SESSION_URLS=[{"url": "/load", "model": "m", "method": method}])


SPA_INDEX = (
    "<!doctype html><html lang=en><head><meta charset=utf-8><title>Pilot</title></head>"
    "<body><div id=root></div><script src=/static/bundle.js></script></body></html>"
)


def pilot_spa(tmp_path: Path, **config: Any) -> Flask:
    """A single-page app: every client route answers ``index.html`` through ``send_static_file``."""
    static = tmp_path / "dist"
    static.mkdir(parents=True, exist_ok=True)
    (static / "index.html").write_text(SPA_INDEX)
    app = switchboard(tmp_path, **config)
    app.static_folder = str(static)

    @app.get("/")
    @app.get("/c/<path:route>")
    def shell(route: str = "") -> Any:
        return app.send_static_file("index.html")

    return app


def test_single_page_app_shell_gets_the_guard(tmp_path, served, caplog):
    base = served(pilot_spa(tmp_path))
    for path in ("/", "/c/k1", "/c/k1"):  # the second load of the same file is injected too
        page = requests.get(base + path, timeout=10)
        assert page.status_code == 200
        assert page.text.startswith(
            '<!doctype html><html lang=en><head><script type="application/json" id="hermes-plugin-config"'
        )
        guard_tag = '<script src="/hermes-plugin/static/hermes-guard.js"></script>'
        assert guard_tag in page.text
        assert page.text.index(guard_tag) < page.text.index("<meta charset=utf-8>")  # before the host's own head
        assert int(page.headers["Content-Length"]) == len(page.content)
        assert "ETag" not in page.headers  # the file's validators do not describe the injected page
    assert "WITHOUT the browser guard" not in caplog.text


def test_a_page_that_cannot_be_injected_is_named_in_a_warning(tmp_path, caplog):
    app = pilot_spa(tmp_path)
    app.config["USE_X_SENDFILE"] = True  # the front web server sends the file: nothing here to edit
    caplog.set_level("WARNING", logger="hermes_plugin.inject")
    for _ in range(2):  # the test client: only a front server (nginx, Apache) would send the file itself
        page = app.test_client().get("/c/k1")
        assert page.headers.get("X-Sendfile", "").endswith("index.html")
    warnings = [r.getMessage() for r in caplog.records if "WITHOUT the browser guard" in r.getMessage()]
    assert len(warnings) == 1  # once per route, not once per request
    assert "/c/<path:route>" in warnings[0] and "shell" in warnings[0] and "X-Sendfile" in warnings[0]
