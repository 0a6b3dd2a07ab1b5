"""Bad input on guarded writes: a precise 4xx, never a 5xx, and storage byte-identical afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.hostapp import create_app, provider_config, running

from hermes_plugin.testing.fake_provider import FakeProvider

LIVE_ONLY = "live/kimi-k2"


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Iterator[tuple[Any, str]]:
    with FakeProvider("openai", models=[LIVE_ONLY]) as fake:
        app = create_app(tmp_path_factory.mktemp("hostile"), sessions={"s1": LIVE_ONLY},
                         HERMES_PLUGIN_PROVIDERS={"prov": provider_config(fake)},
                         HERMES_PLUGIN_ALLOWED_ORIGINS=["https://trusted.example"])
        with running(app) as url:
            yield app, url


def post(url: str, data: bytes | str, content_type: str = "application/json", path: str = "/api/session/update",
         **headers: str) -> requests.Response:
    return requests.post(url + path, data=data, headers={"Content-Type": content_type, **headers}, timeout=30)


BAD_BODIES = {
    "malformed": b'{"session_id": "s1", "model": ',
    "not utf-8": b'{"session_id": "s1", "model": "\xff\xfe"}',
    "empty": b"",
    "list": b'["s1", "x"]',
    "string": b'"s1"',
    "number": b"42",
    "null": b"null",
    "deep": b"[" * 100000 + b"]" * 100000,
    "model int": json.dumps({"session_id": "s1", "model": 7}),
    "model list": json.dumps({"session_id": "s1", "model": ["x"]}),
    "model object": json.dumps({"session_id": "s1", "model": {"id": "x"}}),
    "model bool": json.dumps({"session_id": "s1", "model": True}),
    "model null": json.dumps({"session_id": "s1", "model": None}),
    "model empty": json.dumps({"session_id": "s1", "model": ""}),
    "model 100 KB": json.dumps({"session_id": "s1", "model": "m" * 100_000}),
    "model NUL": json.dumps({"session_id": "s1", "model": "a\u0000b"}),
    "model newline": json.dumps({"session_id": "s1", "model": "a\nb"}),
    "model bidi": json.dumps({"session_id": "s1", "model": "a\u202eb"}),
    "model zero width": json.dumps({"session_id": "s1", "model": "a\u200bb"}),
    "model HTML": json.dumps({"session_id": "s1", "model": "<img src=x onerror=alert(1)>"}),
    "model script": json.dumps({"session_id": "s1", "model": '"><script>alert(1)</script>'}),
    "session int": json.dumps({"session_id": 1, "model": "x"}),
    "session list": json.dumps({"session_id": ["s1"], "model": "x"}),
    "session empty": json.dumps({"session_id": "", "model": "x"}),
    "session long": json.dumps({"session_id": "s" * 257, "model": "x"}),
    "session control": json.dumps({"session_id": "s1\u0007", "model": "x"}),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_bodies_are_400_and_change_nothing(host, name):
    app, url = host
    before = app.store.raw()
    response = post(url, BAD_BODIES[name], **{"X-Hermes-Intent": "user"})
    assert response.status_code == 400, response.text[:200]
    assert response.json()["error"] == "bad_request"
    assert response.json()["detail"]
    assert len(response.content) < 2000  # the 100 KB id is not echoed back
    assert app.store.raw() == before


def test_wrong_type_on_the_path_to_a_nested_field(tmp_path):
    app = create_app(tmp_path, sessions={"s1": LIVE_ONLY})

    @app.post("/nested")
    @app.guard.model_write(session="chat.id", model="chat.settings.model")
    def nested() -> Any:
        return {"ok": True}

    client = app.test_client()
    for body in ({"chat": "s1"}, {"chat": {"id": "s1", "settings": [1]}}):
        response = client.post("/nested", json=body, headers={"X-Hermes-Intent": "user"})
        assert response.status_code == 400
        assert response.json["error"] == "bad_request"
    ok = client.post("/nested", json={"chat": {"id": "s1", "settings": {"model": LIVE_ONLY}}})
    assert ok.status_code == 200


@pytest.mark.parametrize("path", ["/chats/s1%00/model", "/chats/" + "x" * 300 + "/model", "/chats/a%0Ab/model"])
def test_bad_session_in_the_url_is_400(host, path):
    app, url = host
    before = app.store.raw()
    response = post(url, json.dumps({"model": "x"}), path=path, **{"X-Hermes-Intent": "user"})
    assert response.status_code == 400
    assert app.store.raw() == before


def test_bad_intent_header_is_400(host):
    app, url = host
    before = app.store.raw()
    response = post(url, json.dumps({"session_id": "s1", "model": "x"}), **{"X-Hermes-Intent": "robot"})
    assert (response.status_code, response.json()["error"]) == (400, "bad_request")
    assert app.store.raw() == before


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"])
def test_non_json_is_415(host, content_type):
    app, url = host
    before = app.store.raw()
    response = post(url, "session_id=s1&model=x", content_type=content_type, **{"X-Hermes-Intent": "user"})
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    assert app.store.raw() == before


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "http://evil.example", "Sec-Fetch-Site": "same-origin"}])
def test_cross_origin_writes_are_403(host, headers):
    app, url = host
    before = app.store.raw()
    response = post(url, json.dumps({"session_id": "s1", "model": "x"}), **headers, **{"X-Hermes-Intent": "user"})
    assert response.status_code == 403
    assert response.json()["error"] == "cross_origin"
    assert app.store.raw() == before


@pytest.mark.parametrize("headers", [{"Sec-Fetch-Site": "same-origin"}, {"Origin": "https://trusted.example"},
                                     {"Sec-Fetch-Site": "none"}])
def test_same_origin_and_allowed_origins_pass(host, headers):
    _, url = host
    response = post(url, json.dumps({"session_id": "s1", "model": LIVE_ONLY}), **headers)
    assert response.status_code == 200


def test_own_origin_passes(host):
    _, url = host
    response = post(url, json.dumps({"session_id": "s1", "model": LIVE_ONLY}), Origin=url)
    assert response.status_code == 200


# -- property-based ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
ids = st.one_of(st.text(max_size=300), st.sampled_from(["s1", LIVE_ONLY, "live/other", "<b>", "a\x00"]), json_values)
bodies = st.one_of(
    st.fixed_dictionaries({}, optional={"session_id": ids, "model": ids, "workspace": json_values}),
    json_values,
)
intents = st.sampled_from([None, "user", "auto", "AUTO", "", "robot", "user\u0000"])


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(body=bodies, intent=intents, raw=st.booleans())
def test_no_write_body_causes_a_5xx_or_a_change_when_refused(host, body, intent, raw):
    app, url = host
    app.store.update("s1", model=LIVE_ONLY, workspace="default")  # every example starts from the same storage
    before = app.store.raw()
    headers = {"X-Hermes-Intent": intent} if intent is not None else {}
    data = json.dumps(body).encode() if not raw else json.dumps(body).encode()[:-1]  # raw: truncated JSON
    try:
        response = post(url, data, **headers)
    except requests.exceptions.InvalidHeader:
        return  # requests itself refuses a header with NUL; nothing reached the server
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        assert app.store.raw() == before
    if response.status_code == 200 and isinstance(body, dict) and body.get("session_id") == "s1":
        model_after = app.store.get("s1")["model"]
        if response.headers.get("X-Hermes-Decision") == "keep":
            assert model_after == LIVE_ONLY  # a kept model is never replaced, whatever else the write held


@pytest.mark.parametrize("guarded", [True, False])
def test_the_demo_host_answers_a_deep_body_with_a_400(tmp_path, guarded):
    from hermes_plugin.demo.app import create_app as create_demo

    with FakeProvider("openai", models=[LIVE_ONLY]) as fake:
        app = create_demo({"prov": provider_config(fake)}, tmp_path, guard=guarded)
        client = app.test_client()
        deep = BAD_BODIES["deep"]
        headers = {"Content-Type": "application/json", "X-Hermes-Intent": "user"}
        settings_before = client.get("/api/settings").get_json()
        for route in ("/api/settings", "/api/session/update"):  # the first is never guarded
            response = client.post(route, data=deep, headers=headers)
            assert response.status_code == 400 and response.get_json()["error"] == "bad_request", route
        assert client.get("/api/settings").get_json() == settings_before


def test_the_plain_demo_host_answers_a_deep_body_with_a_400(tmp_path):
    from hermes_plugin.demo.plain import PlainDemo

    with FakeProvider("openai", models=[LIVE_ONLY]) as fake:
        plain = PlainDemo({"prov": provider_config(fake)}, tmp_path).serve()
        try:
            before = requests.get(plain.url + "/api/settings", timeout=10).json()
            response = requests.post(plain.url + "/api/settings", data=BAD_BODIES["deep"],
                                     headers={"Content-Type": "application/json"}, timeout=10)
            assert response.status_code == 400 and response.json()["error"] == "bad_request"
            assert requests.get(plain.url + "/api/settings", timeout=10).json() == before
        finally:
            plain.stop()
