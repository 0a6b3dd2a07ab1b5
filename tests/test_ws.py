"""The /ws fan-out with a real WebSocket client against a real loopback server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from support.hostapp import create_app, provider_config, running
from support.wsclient import RawWS, Refused

from hermes_plugin import hookimpl
from hermes_plugin.testing.fake_provider import FakeProvider
from hermes_plugin.ws import Hub

LIVE_ONLY = "live/kimi-k2"
WAIT = 30  # an upper bound for a message that must come, never a synchronisation delay


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider("openai", models=[LIVE_ONLY]) as fake:
        yield fake


@pytest.fixture
def app(tmp_path, provider):
    return create_app(tmp_path, sessions={"s1": LIVE_ONLY}, HERMES_PLUGIN_PROVIDERS={"prov": provider_config(provider)})


@pytest.fixture
def url(app) -> Iterator[str]:
    with running(app) as base:
        yield base


def connect(url: str, **headers: str) -> RawWS:
    client = RawWS(url, headers=headers, timeout=WAIT)
    assert client.receive_json() == {"type": "hello"}  # registered with the hub from here on
    return client


def next_of(client: RawWS, kind: str) -> dict[str, Any]:
    while True:
        event = client.receive_json()  # raises on the socket timeout: no event came
        if event["type"] == kind:
            return event  # type: ignore[no-any-return]


def test_model_event_reaches_every_tab(url):
    tabs = [connect(url), connect(url)]
    try:
        response = requests.post(url + "/api/session/update", json={"session_id": "s1", "model": "live/new"},
                                 headers={"X-Hermes-Intent": "user"}, timeout=30)
        assert response.status_code == 200
        for tab in tabs:
            assert next_of(tab, "model") == {"type": "model", "session": "s1", "model": "live/new", "version": 2}
    finally:
        for tab in tabs:
            tab.close()


def test_catalog_event_when_a_provider_settles(url):
    tab = connect(url)
    try:
        response = requests.get(url + "/hermes-plugin/api/catalog/prov?refresh=1", timeout=30)
        assert response.json()["state"] == "fresh"
        # One event, when the fetch settles (a fetch in flight is announced by nothing).
        assert next_of(tab, "catalog") == {"type": "catalog", "provider": "prov", "state": "fresh"}
    finally:
        tab.close()


def test_a_kept_write_sends_no_model_event(url, app):
    tab = connect(url)
    try:
        kept = requests.post(url + "/api/session/update", json={"session_id": "s1", "model": "other"},
                             headers={"X-Hermes-Intent": "auto"}, timeout=30)
        assert (kept.status_code, kept.headers["X-Hermes-Decision"]) == (200, "keep"), kept.text
        assert app.store.get("s1")["model"] == LIVE_ONLY  # kept on disk
        user = requests.post(url + "/api/session/update", json={"session_id": "s1", "model": "live/x"},
                             headers={"X-Hermes-Intent": "user"}, timeout=30)
        assert (user.status_code, user.headers["X-Hermes-Decision"]) == (200, "pass"), user.text
        assert app.store.get("s1")["model"] == "live/x"
        # The first model event is the user's, and the kept write did not move the version (1 -> 2 is the user's).
        assert next_of(tab, "model") == {"type": "model", "session": "s1", "model": "live/x", "version": 2}
    finally:
        tab.close()


def test_a_client_that_never_reads_does_not_block_writes(url, app):
    silent = connect(url)  # connected, never reads again
    reader = connect(url)
    try:
        for index in range(30):
            response = requests.post(url + "/api/session/update", json={"session_id": "s1", "model": f"live/m{index}"},
                                     headers={"X-Hermes-Intent": "user"}, timeout=30)
            assert response.status_code == 200
        versions = [next_of(reader, "model")["version"] for _ in range(30)]
        assert versions == list(range(2, 32))
    finally:
        silent.close()
        reader.close()


def test_hub_drops_a_full_client_without_blocking():
    hub = Hub(queue_size=2)
    stuck = hub.connect()  # nobody drains this queue
    live = hub.connect()
    for index in range(3):
        hub.publish({"n": index})
        live.queue.get_nowait()
    assert hub.dropped == 1
    assert stuck.closed.is_set()
    assert len(hub) == 1
    hub.publish({"n": 3})
    assert json.loads(live.queue.get_nowait()) == {"n": 3}


def test_hub_publish_from_many_threads():
    hub = Hub(queue_size=1000)
    client = hub.connect()
    threads = [threading.Thread(target=lambda: [hub.publish({"x": 1}) for _ in range(100)]) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.queue.qsize() == 500


def test_cross_origin_websocket_is_refused(url):
    with pytest.raises(Refused) as refused:
        RawWS(url, headers={"Origin": "http://evil.example"})
    assert refused.value.status_code == 403
    connect(url, Origin=url).close()  # the page's own origin is welcome


def test_websocket_goes_through_authorisation(url, app):
    class Gate:
        @hookimpl
        def authorize_request(self, request: Any, action: str, session_id: str | None) -> bool | None:
            return False if action == "ws" else None

    pm = app.extensions["hermes_plugin"].pm
    pm.register(Gate(), name="test-ws-gate")
    try:
        with pytest.raises(Refused) as refused:
            RawWS(url)
        assert refused.value.status_code == 403
    finally:
        pm.unregister(name="test-ws-gate")


def test_plain_http_to_the_websocket_route_is_a_json_error(url):
    response = requests.get(url + "/hermes-plugin/ws", timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
