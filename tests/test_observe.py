"""The server learns catalogs from the host's own catalog endpoints (HERMES_PLUGIN_LIVE_URLS / _STATIC_URLS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, Response, jsonify, request
from support.hostapp import create_app, running

from hermes_plugin import ConfigError

LIVE = [{"url": r"/api/models/live\?provider=(?P<provider>[^&]+)", "models": "models[].id", "state": "state"}]
STATIC = [{"url": r"/api/models$", "models": "groups[].models[].id", "provider": "groups[].provider"}]


@pytest.fixture
def app(tmp_path) -> Flask:
    app = create_app(tmp_path, sessions={"s1": "nous/kimi", "s2": "nous/retired"},
                     HERMES_PLUGIN_LIVE_URLS=LIVE, HERMES_PLUGIN_STATIC_URLS=STATIC)
    app.host_live = {"nous": ["nous/kimi", "nous/opus"]}  # type: ignore[attr-defined]
    app.host_state = "fresh"  # type: ignore[attr-defined]

    @app.get("/api/models/live")
    def live() -> Any:
        provider = request.args["provider"]
        if provider == "down":
            return jsonify({"error": "upstream failed"}), 502
        if provider == "garbage":
            return Response("{not json", mimetype="application/json")
        if provider == "huge":
            return {"models": [{"id": f"m{index}", "pad": "x" * 100} for index in range(30000)]}
        if provider == "stream":
            return Response(iter([json.dumps({"models": [{"id": "s"}]})]), mimetype="application/json")
        models = app.host_live.get(provider, [])  # type: ignore[attr-defined]
        return {"provider": provider, "state": app.host_state, "models": [{"id": m} for m in models]}  # type: ignore[attr-defined]

    @app.get("/api/models")
    def static_models() -> Any:
        return {"groups": [{"provider": "nous", "models": [{"id": "nous/static-a"}]},
                           {"provider": "local", "models": [{"id": "local/tiny"}, {"id": 5}, "junk"]}]}

    return app


@pytest.fixture
def url(app) -> Iterator[str]:
    with running(app) as base:
        yield base


def explain(app: Flask, model: str, provider: str | None = None) -> str:
    with app.app_context():
        return app.guard.catalog.explain(model, provider)[0]  # type: ignore[attr-defined, no-any-return]


def test_live_listing_confirms_present_and_absent(app, url):
    assert explain(app, "nous/kimi") == "unknown"
    assert requests.get(f"{url}/api/models/live?provider=nous", timeout=10).status_code == 200
    assert explain(app, "nous/kimi") == "present"
    assert explain(app, "nous/retired", "nous") == "absent"
    with app.app_context():
        snapshot = app.guard.catalog.snapshot("nous")
    assert (snapshot.state, [m.id for m in snapshot.models]) == ("fresh", ["nous/kimi", "nous/opus"])


def test_learned_catalog_drives_the_write_guard(app, url):
    requests.get(f"{url}/api/models/live?provider=nous", timeout=10)
    kept = requests.post(f"{url}/api/session/update", json={"session_id": "s1", "model": "nous/opus"},
                         headers={"X-Hermes-Intent": "auto"}, timeout=10)
    assert kept.headers["X-Hermes-Model-Kept"] == "model_present"
    fallback = requests.post(f"{url}/api/session/update", json={"session_id": "s2", "model": "nous/opus"},
                             headers={"X-Hermes-Intent": "auto"}, timeout=10)
    assert fallback.headers["X-Hermes-Decision"] == "fallback"
    assert app.store.get("s2")["model"] == "nous/opus"


def test_static_groups_pair_providers_with_their_models(app, url):
    requests.get(f"{url}/api/models", timeout=10)
    assert explain(app, "nous/static-a", "nous") == "present"
    assert explain(app, "local/tiny", "local") == "present"
    assert explain(app, "nous/static-a", "local") != "present"  # paired per group, not mixed
    assert explain(app, "local/other", "local") == "unknown"  # a static list alone never confirms absence


def test_failed_host_fetch_is_unknown(app, url):
    response = requests.get(f"{url}/api/models/live?provider=down", timeout=10)
    assert response.status_code == 502
    with app.app_context():  # a failure never adds a provider: anyone can make up ids the host answers 404 to
        assert "down" not in app.guard.catalog.provider_ids()
    assert explain(app, "down/x", "down") == "unknown"
    with app.app_context():  # a provider seen once fails later: the host's own reason is kept, for the user
        app.guard.catalog.observe("down", ["down/y"])
    requests.get(f"{url}/api/models/live?provider=down", timeout=10)
    with app.app_context():
        snapshot = app.guard.catalog.snapshot("down")
    assert (snapshot.state, snapshot.error) == ("stale", "HTTP 502: upstream failed")
    assert explain(app, "down/x", "down") == "unknown"


def test_a_listing_served_again_renews_the_catalog_and_a_changed_one_replaces_it(app, url):
    # The same answer is read once and its models validated once; every answer still counts as a listing.
    def served() -> tuple[float | None, list[str]]:
        requests.get(f"{url}/api/models/live?provider=nous", timeout=10)
        with app.app_context():
            snapshot = app.guard.catalog.snapshot("nous")
        return snapshot.fetched_at, [m.id for m in snapshot.models]

    first, ids = served()
    again, ids_again = served()
    assert ids == ids_again == ["nous/kimi", "nous/opus"] and first is not None and again is not None and again > first
    app.host_live["nous"] = ["nous/opus", "nous/new"]
    assert served()[1] == ["nous/opus", "nous/new"]
    app.host_live["nous"] = ["nous/kimi", "nous/opus"]  # back to the first answer, byte for byte
    assert served()[1] == ["nous/kimi", "nous/opus"]
    for _ in range(2):  # a static list with bad items: the same items kept both times
        requests.get(f"{url}/api/models", timeout=10)
        with app.app_context():
            assert [m.id for m in app.guard.catalog.snapshot("local").models] == ["local/tiny"]


def test_a_stale_host_listing_is_not_a_confirmation(app, url):
    requests.get(f"{url}/api/models/live?provider=nous", timeout=10)
    app.host_state = "stale"
    app.host_live["nous"] = ["nous/opus"]
    requests.get(f"{url}/api/models/live?provider=nous", timeout=10)
    assert explain(app, "nous/kimi", "nous") == "present"  # the last confirmed list still stands
    assert explain(app, "nous/retired", "nous") == "unknown"  # but nothing is confirmed absent any more


def test_provider_from_an_encoded_url_group(app, url):
    app.host_live["my-prov"] = ["my-prov/a"]
    requests.get(f"{url}/api/models/live?provider=my%2Dprov", timeout=10)
    assert explain(app, "my-prov/a", "my-prov") == "present"


@pytest.mark.parametrize("provider", ["garbage", "huge", "stream", "bad%20id!"])
def test_unusable_responses_never_break_the_host(app, url, provider):
    response = requests.get(f"{url}/api/models/live?provider={provider}", timeout=30)
    assert response.status_code == 200
    with app.app_context():
        assert provider not in app.guard.catalog.provider_ids()


def test_only_get_requests_are_read(app):
    app.post("/api/models/live", endpoint="posted_models")(lambda: {"models": [{"id": "x"}]})
    app.test_client().post("/api/models/live?provider=posted")
    with app.app_context():
        assert "posted" not in app.guard.catalog.provider_ids()


@pytest.mark.parametrize("entry", [{"url": "(", "models": "a"}, {"models": "a"}, {"url": "/x", "models": "a..b"},
                                   {"url": "/x", "models": "models[].id"}])
def test_bad_url_config_fails_at_startup(tmp_path, entry):
    with pytest.raises(ConfigError):
        create_app(tmp_path, HERMES_PLUGIN_LIVE_URLS=[entry])
