"""An empty catalog is not proof of absence: hosts that turn a provider outage into ``200 []``.

The host below is written the way many are: its engine list asks the vendor and answers ``[]`` on any
error (``except: return []``). The catalog API, the session API and the write decision must agree that
a stored model is then ``unknown`` (kept), unless the provider's config says an empty list is real.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, jsonify, request

from hermes_plugin import ModelGuard
from hermes_plugin.testing.fake_provider import FakeProvider
from hermes_plugin.testing.servers import LoopbackServer

ENGINE_LIST = [{"url": r"/engines\?vendor=(?P<provider>[^&]+)", "models": "[].name"}]


def deskchat(tmp_path: Path, vendor: FakeProvider, **config: Any) -> Flask:
    """A foreign host: chats with an ``engine``, a PUT to change it, an engine list that hides outages."""
    app = Flask("deskchat", instance_path=str(tmp_path / "instance"))
    app.config.update(HERMES_PLUGIN_CACHE="memory", HERMES_PLUGIN_REFRESH_INTERVAL=0, **config)
    chats = {"c1": {"engine": "acme-large"}, "c2": {"engine": "acme-tiny"}}
    app.chats = chats  # type: ignore[attr-defined]
    guard = ModelGuard()

    @guard.session_model
    def engine_of(chat: str) -> str | None:
        return chats[chat]["engine"] if chat in chats else None

    @app.get("/engines")
    def engines() -> Any:
        try:
            answer = requests.get(vendor.base_url + "/models", timeout=5)
            answer.raise_for_status()
            return jsonify([{"name": item["id"]} for item in answer.json()["data"]])
        except Exception:  # the host's own choice: an outage looks like an empty list
            return jsonify([])

    @app.put("/chats/<chat>/engine")
    @guard.model_write(session="chat", model="engine")
    def set_engine(chat: str) -> Any:
        chats[chat]["engine"] = request.get_json()["engine"]
        return {"chat": chat, **chats[chat]}

    guard.init_app(app)
    return app


@pytest.fixture
def vendor() -> Iterator[FakeProvider]:
    with FakeProvider(models=["acme-large", "acme-small"]) as fake:
        yield fake


def serve(app: Flask) -> LoopbackServer:
    return LoopbackServer(app).start()


def views(app: Flask, base: str, chat: str, provider: str) -> tuple[str | None, str, dict[str, Any]]:
    """What the three views say: the catalog API's state of ``provider`` (None: not listed), the session
    API's availability, and the decision of an automatic write that would replace the stored model."""
    providers = requests.get(f"{base}/hermes-plugin/api/catalog", timeout=30).json()["providers"]
    state = next((entry["state"] for entry in providers if entry["id"] == provider), None)
    session = requests.get(f"{base}/hermes-plugin/api/sessions/{chat}/model", timeout=30).json()
    write = requests.put(
        f"{base}/chats/{chat}/engine", json={"engine": "acme-small"}, headers={"X-Hermes-Intent": "auto"}, timeout=30
    )
    return (
        state,
        session["availability"],
        {"decision": write.headers["X-Hermes-Decision"], "stored": app.chats[chat]["engine"]},
    )  # type: ignore[attr-defined]


def test_cold_empty_host_listing_is_unknown_everywhere(tmp_path, vendor):
    vendor.fault = "500"
    app = deskchat(tmp_path, vendor, HERMES_PLUGIN_LIVE_URLS=ENGINE_LIST)
    server = serve(app)
    try:
        assert requests.get(f"{server.url}/engines?vendor=acme", timeout=10).json() == []
        state, availability, write = views(app, server.url, "c1", "acme")
    finally:
        server.stop()
    assert state != "fresh"  # before: an empty observation made the provider "fresh"
    assert availability == "unknown"
    assert write == {"decision": "keep", "stored": "acme-large"}


def test_empty_host_listing_after_a_real_one_is_stale_not_fresh(tmp_path, vendor):
    app = deskchat(tmp_path, vendor, HERMES_PLUGIN_LIVE_URLS=ENGINE_LIST)
    server = serve(app)
    try:
        requests.get(f"{server.url}/engines?vendor=acme", timeout=10)
        vendor.fault = "500"
        assert requests.get(f"{server.url}/engines?vendor=acme", timeout=10).json() == []
        catalog = requests.get(f"{server.url}/hermes-plugin/api/catalog/acme", timeout=10).json()
        state, availability, write = views(app, server.url, "c2", "acme")
    finally:
        server.stop()
    assert catalog["state"] == "stale" and "empty list" in catalog["error"]
    assert [model["id"] for model in catalog["models"]] == ["acme-large", "acme-small"]  # the last real list
    # acme-tiny was not in the last real list, but an empty answer cannot confirm that it is gone now.
    assert (state, availability, write) == ("stale", "unknown", {"decision": "keep", "stored": "acme-tiny"})


def test_configured_provider_answering_empty_is_unknown_in_all_three_views(tmp_path, vendor):
    vendor.configure(models=[])  # the provider's own list endpoint answers {"data": []}
    app = deskchat(
        tmp_path, vendor, HERMES_PLUGIN_PROVIDERS={"acme": {"kind": "openai-compatible", "base_url": vendor.base_url}}
    )
    server = serve(app)
    try:
        # The session API first: before, it said "unknown" (not fetched yet) while the write, which
        # fetched, saw an empty "fresh" list, judged the model absent and overwrote it.
        session = requests.get(f"{server.url}/hermes-plugin/api/sessions/c1/model", timeout=30).json()
        state, availability, write = views(app, server.url, "c1", "acme")
    finally:
        server.stop()
    assert (state, availability, write) == ("failed", "unknown", {"decision": "keep", "stored": "acme-large"})
    assert session["availability"] == "unknown" and "empty list" in session["reason"]


def test_empty_means_none_makes_an_empty_list_real(tmp_path, vendor):
    vendor.configure(models=[])
    app = deskchat(
        tmp_path,
        vendor,
        HERMES_PLUGIN_PROVIDERS={
            "acme": {"kind": "openai-compatible", "base_url": vendor.base_url, "empty_means_none": True}
        },
    )
    server = serve(app)
    try:
        state, availability, write = views(app, server.url, "c1", "acme")
    finally:
        server.stop()
    assert (state, availability, write) == ("fresh", "absent", {"decision": "fallback", "stored": "acme-small"})


def test_empty_means_none_on_a_host_catalog_url(tmp_path, vendor):
    app = deskchat(tmp_path, vendor, HERMES_PLUGIN_LIVE_URLS=[{**ENGINE_LIST[0], "empty_means_none": True}])
    server = serve(app)
    try:
        requests.get(f"{server.url}/engines?vendor=acme", timeout=10)
        vendor.configure(models=[])
        assert requests.get(f"{server.url}/engines?vendor=acme", timeout=10).json() == []
        state, availability, write = views(app, server.url, "c1", "acme")
    finally:
        server.stop()
    assert (state, availability, write) == ("fresh", "absent", {"decision": "fallback", "stored": "acme-small"})


def test_empty_means_none_must_be_a_bool(tmp_path, vendor):
    from hermes_plugin import ConfigError

    with pytest.raises(ConfigError, match="empty_means_none"):
        deskchat(
            tmp_path,
            vendor,
            HERMES_PLUGIN_PROVIDERS={
                "acme": {"kind": "openai-compatible", "base_url": vendor.base_url, "empty_means_none": "yes"}
            },
        )
    with pytest.raises(ConfigError, match="empty_means_none"):
        deskchat(tmp_path, vendor, HERMES_PLUGIN_LIVE_URLS=[{**ENGINE_LIST[0], "empty_means_none": 1}])


def test_configured_provider_listing_then_answering_empty_keeps_its_last_list_as_stale(tmp_path, vendor):
    app = deskchat(
        tmp_path, vendor, HERMES_PLUGIN_PROVIDERS={"acme": {"kind": "openai-compatible", "base_url": vendor.base_url}}
    )
    server = serve(app)
    try:
        listed = requests.get(f"{server.url}/hermes-plugin/api/catalog/acme", timeout=30).json()
        vendor.configure(models=[])
        emptied = requests.get(f"{server.url}/hermes-plugin/api/catalog/acme?refresh=1", timeout=30).json()
        state, availability, write = views(app, server.url, "c2", "acme")
    finally:
        server.stop()
    assert (listed["state"], [m["id"] for m in listed["models"]]) == ("fresh", ["acme-large", "acme-small"])
    assert emptied["state"] == "stale" and "empty list" in emptied["error"]
    assert [m["id"] for m in emptied["models"]] == ["acme-large", "acme-small"]
    assert (state, availability, write) == ("stale", "unknown", {"decision": "keep", "stored": "acme-tiny"})
