"""Model history and undo, the retirement map and the cost guard, against real hosts on loopback.

Each refusal is checked with the storage byte-identical afterwards; the rows that change behaviour
(kept for a suggestion, refused for a price) are shown against the same write without the map/prices.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from flask import Flask, current_app, jsonify, request
from support.hostapp import create_app, provider_config, running

from hermes_plugin import ModelGuard, hookimpl
from hermes_plugin.errors import ConfigError
from hermes_plugin.prices import Price, parse_price, ratio
from hermes_plugin.proxy import create_app as proxy_app
from hermes_plugin.proxy import proxy_config
from hermes_plugin.replacements import Replacements, check_table
from hermes_plugin.testing.fake_provider import FakeProvider

P = "/hermes-plugin"
RETIRED, CHEAP, PRICEY = "live/retired", "live/cheap", "live/pricey"


def openrouter(prompt: str, completion: str) -> dict[str, str]:
    return {"prompt": prompt, "completion": completion}  # OpenRouter: dollars per token, as strings


CATALOG = [{"id": RETIRED, "pricing": openrouter("0.000002", "0.000008")},  # $2 / $8 per million
           {"id": CHEAP, "pricing": openrouter("0.000001", "0.000002")},
           {"id": PRICEY, "pricing": {"input": 15, "output": 75}}]  # a per-million table


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider("openai", models=CATALOG) as fake:
        yield fake


def make_app(tmp_path: Any, provider: FakeProvider, setter: bool = True, **config: Any) -> Flask:
    guard = ModelGuard()
    if setter:
        @guard.session_model_setter
        def set_model(session_id: str, model: str) -> None:
            current_app.store.update(session_id, model=model)  # type: ignore[attr-defined]
    return create_app(tmp_path, guard=guard, sessions={"s1": RETIRED, "s2": CHEAP},
                      HERMES_PLUGIN_PROVIDERS={"prov": provider_config(provider)},
                      HERMES_PLUGIN_REFRESH_INTERVAL=0, **config)


@pytest.fixture
def host(tmp_path: Any, provider: FakeProvider) -> Callable[..., tuple[Flask, str]]:
    """``host(**config)`` -> (app, base url); the provider listed RETIRED (with its price), then retired it."""
    servers: list[Any] = []

    def make(setter: bool = True, **config: Any) -> tuple[Flask, str]:
        app = make_app(tmp_path / f"host{len(servers)}", provider, setter, **config)
        server = running(app)
        base = server.__enter__()
        servers.append(server)
        provider.configure(models=CATALOG)
        assert requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30).ok  # prices seen
        provider.configure(models=CATALOG[1:])  # the provider retires RETIRED
        catalog = requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30).json()
        assert RETIRED not in {m["id"] for p in catalog["providers"] for m in p["models"]}
        return app, base

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def auto_write(base: str, model: str, session: str = "s1", intent: str = "auto") -> requests.Response:
    return requests.post(f"{base}/api/session/update", json={"session_id": session, "model": model},
                         headers={"X-Hermes-Intent": intent}, timeout=30)


def session_info(base: str, session: str = "s1") -> requests.Response:
    return requests.get(f"{base}{P}/api/sessions/{session}/model", timeout=10)


def log_of(base: str, session: str = "s1") -> list[dict[str, Any]]:
    return list(requests.get(f"{base}{P}/api/sessions/{session}/model-log", timeout=10).json()["entries"])


def undo(base: str, session: str = "s1", if_match: str | None = "*", **kwargs: Any) -> requests.Response:
    headers = {"If-Match": if_match} if if_match is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return requests.post(f"{base}{P}/api/sessions/{session}/model/undo", headers=headers, timeout=10, **kwargs)


def set_model(base: str, body: Any, session: str = "s1", if_match: str | None = "*", **kwargs: Any
              ) -> requests.Response:
    headers = {"If-Match": if_match} if if_match is not None else {}
    headers.update(kwargs.pop("headers", {}))
    return requests.post(f"{base}{P}/api/sessions/{session}/model", json=body, headers=headers, timeout=10,
                         **kwargs)


# -- prices ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("item", "expected"), [
    ({"pricing": {"prompt": "0.000003", "completion": "0.000015"}}, Price(3.0, 15.0)),
    ({"pricing": {"prompt": 0, "completion": "0"}}, Price(0.0, 0.0)),
    ({"pricing": {"input": 0.2, "output": "0.6"}}, Price(0.2, 0.6)),
    ({"price": {"input": 1, "output": 2}}, Price(1.0, 2.0)),
    ({"pricing": {"prompt": "-1", "completion": "-1"}}, None),  # OpenRouter's "variable" router price
    ({"pricing": {"prompt": "abc", "completion": "1"}}, None),
    ({"pricing": {"input": float("nan"), "output": 1}}, None),
    ({"pricing": {"input": True, "output": 1}}, None),
    ({"pricing": "cheap"}, None),
    ({"id": "x"}, None),
])
def test_parse_price_shapes(item: Any, expected: Price | None) -> None:
    assert parse_price(item) == expected


def test_price_ratio() -> None:
    assert ratio(Price(1, 1), Price(2, 2)) == 2.0
    assert ratio(None, Price(1, 1)) is None and ratio(Price(0, 0), Price(0, 0)) == 1.0


def test_catalog_api_carries_prices(host: Callable[..., tuple[Flask, str]]) -> None:
    _, base = host()
    catalog = requests.get(f"{base}{P}/api/catalog", timeout=10).json()
    models = {m["id"]: m for p in catalog["providers"] for m in p["models"]}
    assert models[CHEAP]["price"] == {"input": 1.0, "output": 2.0}
    assert models[PRICEY]["price"] == {"input": 15, "output": 75}
    assert session_info(base).json()["price"] == {"input": 2.0, "output": 8.0}  # remembered after retirement


# -- history and undo -----------------------------------------------------------------------------------

def test_fallback_is_logged_with_who_and_why_and_undone(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host()
    response = auto_write(base, CHEAP)
    assert response.status_code == 200 and response.headers["X-Hermes-Decision"] == "fallback"
    assert response.headers["X-Hermes-Notice"] == "changed"  # the page tells the user, with Undo
    assert app.store.get("s1")["model"] == CHEAP  # type: ignore[attr-defined]
    [entry] = log_of(base)
    assert entry | {"time": 0} == {"time": 0, "old": RETIRED, "new": CHEAP, "proposed": CHEAP, "intent": "auto",
                                   "outcome": "fallback", "reason": "model_absent", "by": "page",
                                   "price_ratio": 0.3}
    etag = session_info(base).headers["ETag"]
    restored = undo(base, if_match=etag)
    assert restored.status_code == 200, restored.text
    assert restored.json() | {"version": 0} == {"session": "s1", "model": RETIRED, "previous": CHEAP,
                                                "version": 0, "reason": "undo"}
    assert restored.headers["ETag"] != etag
    assert app.store.get("s1")["model"] == RETIRED  # type: ignore[attr-defined]
    last = log_of(base)[-1]
    assert (last["old"], last["new"], last["by"], last["reason"], last["intent"]) == (
        CHEAP, RETIRED, "user", "undo", "user")
    # Undoing the undo changes it back: the log is the history, undo follows it.
    again = undo(base, if_match=restored.headers["ETag"])
    assert again.json()["model"] == CHEAP


def test_user_pick_and_kept_writes_are_logged(host: Callable[..., tuple[Flask, str]]) -> None:
    _, base = host()
    auto_write(base, PRICEY, session="s2")  # CHEAP is present: the server keeps it
    auto_write(base, PRICEY, session="s2", intent="user")
    kept, picked = log_of(base, "s2")
    assert (kept["by"], kept["outcome"], kept["new"]) == ("server", "keep", CHEAP)
    assert (picked["by"], picked["outcome"], picked["new"]) == ("user", "pass", PRICEY)


def test_undo_needs_a_current_if_match(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host()
    auto_write(base, CHEAP)
    before = app.store.raw()  # type: ignore[attr-defined]
    missing = undo(base, if_match=None)
    assert missing.status_code == 428 and missing.json()["error"] == "precondition_required"
    stale = undo(base, if_match='"1"')
    assert stale.status_code == 412 and stale.json()["error"] == "stale_version"
    assert stale.json()["model"] == CHEAP and stale.headers["ETag"] == f'"{stale.json()["version"]}"'
    assert app.store.raw() == before  # type: ignore[attr-defined]
    assert len(log_of(base)) == 1


def test_nothing_to_undo_and_no_setter(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host()
    nothing = undo(base, session="s2")
    assert nothing.status_code == 409 and nothing.json()["error"] == "nothing_to_undo"
    _, bare = host(setter=False)
    auto_write(bare, CHEAP)
    refused = undo(bare)
    assert refused.status_code == 501 and refused.json()["error"] == "not_supported"


@pytest.mark.parametrize(("body", "content_type", "status", "error"), [
    (b"{not json", "application/json", 400, "bad_request"),
    (b"[1, 2]", "application/json", 400, "bad_request"),
    (b'{"model": "live/cheap"}', "text/plain", 415, "unsupported_media_type"),
    (b'{"model": "<img src=x onerror=alert(1)>"}', "application/json", 400, "bad_request"),
    (b'{"model": ""}', "application/json", 400, "bad_request"),
    (b'{"model": 5}', "application/json", 400, "bad_request"),
    (b'{"model": "live/cheap", "reason": "because"}', "application/json", 400, "bad_request"),
    (b'{"model": "' + b"x" * 5000 + b'"}', "application/json", 413, "payload_too_large"),
])
def test_set_refuses_bad_bodies_with_storage_untouched(host: Callable[..., tuple[Flask, str]], body: bytes,
                                                       content_type: str, status: int, error: str) -> None:
    app, base = host()
    before = app.store.raw()  # type: ignore[attr-defined]
    response = requests.post(f"{base}{P}/api/sessions/s1/model", data=body, timeout=10,
                             headers={"Content-Type": content_type, "If-Match": "*"})
    assert (response.status_code, response.json()["error"]) == (status, error)
    assert app.store.raw() == before and log_of(base) == []  # type: ignore[attr-defined]


def test_undo_refuses_bad_json(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host()
    auto_write(base, CHEAP)
    before = app.store.raw()  # type: ignore[attr-defined]
    response = undo(base, data=b"{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "malformed JSON" in response.json()["detail"]
    assert app.store.raw() == before  # type: ignore[attr-defined]


@pytest.mark.parametrize("session", ["a\x00b", "tab\there", "x" * 257, "\u202eevil"])
def test_hostile_session_ids(host: Callable[..., tuple[Flask, str]], session: str) -> None:
    app, base = host()
    before = app.store.raw()  # type: ignore[attr-defined]
    for response in (undo(base, session=session), set_model(base, {"model": CHEAP}, session=session)):
        assert response.status_code == 400 and response.json()["error"] == "bad_request"
    assert app.store.raw() == before  # type: ignore[attr-defined]


def test_unknown_session_and_cross_origin_and_authorisation(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host()
    before = app.store.raw()  # type: ignore[attr-defined]
    assert set_model(base, {"model": CHEAP}, session="nope").status_code == 404
    evil = set_model(base, {"model": CHEAP}, headers={"Origin": "http://evil.test"})
    assert evil.status_code == 403 and evil.json()["error"] == "cross_origin"
    app.guard.authorize(lambda action, session: action != "session_write")  # type: ignore[attr-defined]
    assert set_model(base, {"model": CHEAP}).status_code == 403
    assert undo(base).status_code == 403
    assert app.store.raw() == before  # type: ignore[attr-defined]


def test_set_stores_the_users_answer_and_pushes_the_version(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host()
    etag = session_info(base).headers["ETag"]
    response = set_model(base, {"model": PRICEY, "reason": "price_accepted"}, if_match=etag)
    assert response.status_code == 200 and response.json()["model"] == PRICEY
    assert session_info(base).headers["ETag"] == response.headers["ETag"]
    entry = log_of(base)[-1]
    assert (entry["by"], entry["reason"], entry["old"], entry["new"]) == ("user", "price_accepted", RETIRED, PRICEY)


# -- the retirement map -------------------------------------------------------------------------------

def test_replacement_keeps_the_stored_model_until_the_user_answers(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host(HERMES_PLUGIN_MODEL_REPLACEMENTS={RETIRED: PRICEY}, HERMES_PLUGIN_MAX_PRICE_RATIO=100)
    info = session_info(base).json()
    assert (info["availability"], info["replacement"]) == ("absent", PRICEY)
    response = auto_write(base, CHEAP)  # without the map this write is a fallback (test above)
    assert response.status_code == 200
    assert response.headers["X-Hermes-Model-Kept"] == "replacement_suggested"
    assert response.headers["X-Hermes-Notice"] == "ask"
    assert app.store.get("s1")["model"] == RETIRED  # type: ignore[attr-defined]
    [entry] = log_of(base)
    assert (entry["by"], entry["reason"], entry["replacement"]) == ("server", "replacement_suggested", PRICEY)
    answer = set_model(base, {"model": PRICEY, "reason": "replacement"}, if_match=session_info(base).headers["ETag"])
    assert answer.status_code == 200 and app.store.get("s1")["model"] == PRICEY  # type: ignore[attr-defined]


def test_replacement_with_reject_policy_is_a_409(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host(HERMES_PLUGIN_MODEL_REPLACEMENTS={RETIRED: PRICEY}, HERMES_PLUGIN_ON_KEEP="reject")
    response = auto_write(base, CHEAP)
    assert response.status_code == 409 and response.json()["reason"] == "replacement_suggested"
    assert response.json()["replacement"] == PRICEY
    assert app.store.get("s1")["model"] == RETIRED  # type: ignore[attr-defined]


def test_replacement_chain_skips_absent_suggestions() -> None:
    gone = {"a", "b"}
    table = Replacements({"a": "b", "b": "c", "x": "y", "y": "x"})
    assert table.suggest("a", lambda m: "absent" if m in gone else "present") == "c"
    assert table.suggest("x", lambda m: "absent") is None  # a loop ends
    assert table.suggest("q", lambda m: "present") is None


@pytest.mark.parametrize("table", [{"a": "<b>"}, {"a": "a"}, ["a", "b"], {"": "b"}])
def test_bad_replacement_tables_are_config_errors(table: Any) -> None:
    with pytest.raises(ConfigError):
        check_table(table)


def test_hook_hermes_plugin_model_replacements(tmp_path: Any, provider: FakeProvider) -> None:
    class RetirementPlugin:
        @hookimpl
        def hermes_plugin_model_replacements(self) -> dict[str, str]:
            return {RETIRED: CHEAP, "other/x": "other/y"}

    class BrokenPlugin:
        @hookimpl
        def hermes_plugin_model_replacements(self) -> dict[str, str]:
            return {"bad": "<script>"}

    app = make_app(tmp_path, provider)
    state = app.guard.state(app)  # type: ignore[attr-defined]
    state.pm.register(RetirementPlugin())
    state.pm.register(BrokenPlugin())
    assert state.replacements.table() == {RETIRED: CHEAP, "other/x": "other/y"}  # the broken map is skipped
    config_wins = Replacements({RETIRED: PRICEY}, state.pm)
    assert config_wins.table()[RETIRED] == PRICEY
    provider.configure(models=CATALOG[1:])
    with running(app) as base:
        requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30)
        assert session_info(base).json()["replacement"] == CHEAP


# -- the cost guard -----------------------------------------------------------------------------------

def test_auto_switch_to_a_pricier_model_is_refused(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host()
    before = app.store.raw()  # type: ignore[attr-defined]
    response = auto_write(base, PRICEY)
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "price_increase" and body["reason"] == "price_increase"
    assert body["price_ratio"] == 9.0 and (body["stored_model"], body["proposed_model"]) == (RETIRED, PRICEY)
    assert "costs 9.00 times as much" in body["detail"]
    assert response.headers["X-Hermes-Notice"] == "ask"
    assert app.store.raw() == before  # type: ignore[attr-defined]
    assert log_of(base)[0]["by"] == "server" and log_of(base)[0]["reason"] == "price_increase"
    # The user's own pick of the same model is never refused for its price.
    assert auto_write(base, PRICEY, intent="user").status_code == 200


def test_price_ratio_is_configurable(host: Callable[..., tuple[Flask, str]]) -> None:
    app, base = host(HERMES_PLUGIN_MAX_PRICE_RATIO=10)
    response = auto_write(base, PRICEY)
    assert response.status_code == 200 and response.headers["X-Hermes-Decision"] == "fallback"


@pytest.mark.parametrize("value", [0, -1, True, "2"])
def test_bad_price_ratio_is_a_config_error(tmp_path: Any, provider: FakeProvider, value: Any) -> None:
    with pytest.raises(ConfigError):
        make_app(tmp_path, provider, HERMES_PLUGIN_MAX_PRICE_RATIO=value)


# -- through the reverse proxy: undo replays the upstream's own write ---------------------------------

def upstream_app(models: dict[str, str]) -> Flask:
    up = Flask("upstream")

    @up.get("/")
    def home() -> str:
        return "home"

    @up.get("/api/session")
    def read() -> Any:
        session = request.args.get("session_id", "")
        if session not in models:
            return jsonify(error="not found"), 404
        return {"session": {"session_id": session, "model": models[session]}}

    @up.post("/api/session/update")
    def update() -> Any:
        body = request.get_json()
        if request.headers.get("Cookie") != "sid=alice":  # the caller's own credentials reach the upstream
            return jsonify(error="sign in"), 401
        models[body["session_id"]] = body["model"]
        return {"session": {"session_id": body["session_id"], "model": body["model"]}}

    return up


def test_proxy_undo_replays_the_upstreams_write(provider: FakeProvider) -> None:
    models = {"s1": RETIRED}
    table = {
        "writes": [{"method": "POST", "url": r"^/api/session/update$", "session": "session_id", "model": "model"}],
        "session_read": {"url": "/api/session?session_id={session}", "model": "session.model"},
        "session_write": {"method": "POST", "url": "/api/session/update",
                          "body": {"session_id": "{session}", "model": "{model}"}},
    }
    cfg = proxy_config(table, {"prov": provider_config(provider)})
    with running(upstream_app(models)) as up, running(proxy_app(up, cfg=cfg)) as base:
        provider.configure(models=CATALOG[1:])
        requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30)
        cookies = {"Cookie": "sid=alice"}
        written = requests.post(f"{base}/api/session/update", json={"session_id": "s1", "model": CHEAP},
                                headers={"X-Hermes-Intent": "auto", **cookies}, timeout=30)
        assert written.headers["X-Hermes-Notice"] == "changed" and models["s1"] == CHEAP
        etag = requests.get(f"{base}{P}/api/sessions/s1/model", timeout=10).headers["ETag"]
        refused = undo(base, if_match=etag)  # no cookie: the upstream refuses the replayed write
        assert refused.status_code == 401 and models["s1"] == CHEAP
        restored = undo(base, if_match=etag, headers=cookies)
        assert restored.status_code == 200, restored.text
        assert models["s1"] == RETIRED and restored.json()["model"] == RETIRED


@pytest.mark.parametrize("write", [
    {"url": "/x", "body": {"model": "m"}},  # no "{model}" placeholder
    {"method": "GET", "url": "/x", "body": {"model": "{model}"}},
    {"url": "//evil.test/x", "body": {"model": "{model}"}},
    {"url": "/x", "body": {"model": "{model}"}, "extra": 1},
])
def test_bad_session_write_is_a_config_error(write: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        proxy_config({"session_write": write})


def test_a_retired_models_price_reaches_another_worker(tmp_path: Any, provider: FakeProvider) -> None:
    """Two workers share one state file: the one that never saw the retired model still knows its price."""
    state = str(tmp_path / "shared.sqlite")
    first = make_app(tmp_path / "w1", provider, HERMES_PLUGIN_STATE=state)
    with running(first) as base:
        requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30)
    provider.configure(models=CATALOG[1:])
    second = make_app(tmp_path / "w2", provider, HERMES_PLUGIN_STATE=state)
    with running(second) as base:
        requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30)
        assert session_info(base).json()["price"] == {"input": 2.0, "output": 8.0}
        refused = auto_write(base, PRICEY)
        assert refused.status_code == 409 and refused.json()["error"] == "price_increase"


def test_proxy_refuses_a_pricier_automatic_switch(provider: FakeProvider) -> None:
    models = {"s1": RETIRED}
    table = {
        "writes": [{"method": "POST", "url": r"^/api/session/update$", "session": "session_id", "model": "model"}],
        "session_read": {"url": "/api/session?session_id={session}", "model": "session.model"},
        "max_price_ratio": 2,
    }
    cfg = proxy_config(table, {"prov": provider_config(provider)})
    with running(upstream_app(models)) as up, \
            running(proxy_app(up, cfg=cfg, app_config={"HERMES_PLUGIN_REFRESH_INTERVAL": 0})) as base:
        requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30)  # RETIRED listed, with its price
        provider.configure(models=CATALOG[1:])
        requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30)
        refused = requests.post(f"{base}/api/session/update", json={"session_id": "s1", "model": PRICEY},
                                headers={"X-Hermes-Intent": "auto", "Cookie": "sid=alice"}, timeout=30)
        assert refused.status_code == 409 and refused.json()["error"] == "price_increase"
        assert refused.headers["X-Hermes-Notice"] == "ask" and models["s1"] == RETIRED
        cheaper = requests.post(f"{base}/api/session/update", json={"session_id": "s1", "model": CHEAP},
                                headers={"X-Hermes-Intent": "auto", "Cookie": "sid=alice"}, timeout=30)
        assert cheaper.status_code == 200 and models["s1"] == CHEAP
