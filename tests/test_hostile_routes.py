"""RELIABILITY.md part 2, the plugin's own routes: hostile paths and queries, floods of writes and WebSocket input,
and hostile provider ids/labels in Chromium.

Every plugin route (catalog, catalog/<p>, sessions/<id>/model, model-log, /ws) gets property-based
input: never a 5xx, always a JSON error with a stable code, a bounded body, and storage unchanged.
``HERMES_RELIABILITY=1`` raises the example counts (CI: 4 x 250 here + 1000 in test_hostile_input.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from e2e.conftest import DemoHost, demo_host, demo_providers_pair  # noqa: F401  (fixtures for the browser test)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.hostapp import create_app, provider_config, running
from support.wsclient import RawWS

from hermes_plugin.testing.fake_provider import FakeProvider

FULL = os.environ.get("HERMES_RELIABILITY") == "1"
EXAMPLES = 2500 if FULL else 250
LIVE_ONLY = "live/kimi-k2"
MAX_ERROR_BYTES = 2000  # an error never echoes a 10 KB input back
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Iterator[tuple[Any, str]]:
    with FakeProvider("openai", models=[LIVE_ONLY]) as fake:
        app = create_app(tmp_path_factory.mktemp("routes"), sessions={"s1": LIVE_ONLY},
                         HERMES_PLUGIN_PROVIDERS={"prov": provider_config(fake, static=["prov/static"])})
        with running(app) as url:
            yield app, url


hostile_text = st.one_of(
    st.text(max_size=64),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
    st.sampled_from(["<script>alert(1)</script>", "\u202egnp.exe", "a\u200bb", "..", "../../etc/passwd", "%00",
                     "x" * 10_000, "prov", "s1", "\ufeff", "a/b", "?refresh=1", "\\", "\x7f", " "]),
)
queries = st.one_of(st.just(""), st.sampled_from(["?refresh=1", "?refresh=0", "?refresh=yes", "?refresh=" + "1" * 5000]),
                    st.builds(lambda k, v: f"?{quote(k)}={quote(v)}", st.text(max_size=20), st.text(max_size=50)))


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=30, allow_redirects=False)


def assert_sane(response: requests.Response) -> None:
    """No 5xx; errors are the plugin's JSON shape and small."""
    assert response.status_code < 500, response.text[:300]
    if response.status_code >= 400:
        body = response.json()
        assert isinstance(body["error"], str) and body["error"] and isinstance(body["detail"], str)
        assert len(response.content) < MAX_ERROR_BYTES


@PROPERTY
@given(provider=hostile_text, query=queries)
def test_catalog_routes_take_any_provider_and_query(host, provider, query):
    app, url = host
    before = app.store.raw()
    for path in (f"/hermes-plugin/api/catalog/{quote(provider, safe='')}{query}", f"/hermes-plugin/api/catalog{query}"):
        response = get(url + path)
        assert_sane(response)
        if response.status_code == 200:
            body = response.json()
            providers = body["providers"] if "providers" in body else [body]
            assert all(p["state"] in ("fresh", "stale", "pending", "failed") for p in providers)
    assert app.store.raw() == before


@PROPERTY
@given(session=hostile_text, query=queries, which=st.sampled_from(["model", "model-log"]))
def test_session_routes_take_any_session_id(host, session, query, which):
    app, url = host
    before = app.store.raw()
    response = get(f"{url}/hermes-plugin/api/sessions/{quote(session, safe='')}/{which}{query}")
    assert_sane(response)
    if response.status_code == 200:
        assert response.json()["session"] == session
    assert app.store.raw() == before


@PROPERTY
@given(path=st.text(max_size=200), method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]))
def test_any_path_or_method_under_the_prefix_is_a_json_error_or_ok(host, path, method):
    app, url = host
    before = app.store.raw()
    response = requests.request(method, f"{url}/hermes-plugin/{quote(path)}", timeout=30, allow_redirects=False,
                                data=b'{"session_id": "s1", "model": "x"}', headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text[:300]
    assert app.store.raw() == before


@PROPERTY
@given(payload=st.one_of(st.text(max_size=500), st.binary(max_size=500)))
def test_websocket_input_is_never_a_server_error(host, payload):
    app, url = host
    before = app.store.raw()
    ws = RawWS(url)
    try:
        assert ws.receive_json() == {"type": "hello"}
        ws.send(payload)
    finally:
        ws.close()
    assert get(f"{url}/hermes-plugin/api/catalog").status_code == 200  # still serving
    assert app.store.raw() == before


# -- floods -----------------------------------------------------------------------------------------


def test_a_client_flooding_the_websocket_is_disconnected_and_others_keep_receiving(host):
    app, url = host
    listener, flooder = RawWS(url), RawWS(url)
    try:
        assert listener.receive_json()["type"] == "hello"
        assert flooder.receive_json()["type"] == "hello"
        # The protocol is server -> client only: a client that talks is let go, its input not buffered.
        with pytest.raises(ConnectionError):  # not a timeout: the server hung up
            for _ in range(100_000):
                flooder.send("x" * 1000)
            flooder.receive_json()
        response = requests.post(f"{url}/api/session/update", json={"session_id": "s1", "model": "flood/after"},
                                 headers={"X-Hermes-Intent": "user"}, timeout=30)
        assert response.status_code == 200
        event = listener.receive_json()
        while event["type"] != "model":
            event = listener.receive_json()
        assert (event["session"], event["model"]) == ("s1", "flood/after")
    finally:
        listener.close()
        flooder.close()
        app.store.update("s1", model=LIVE_ONLY)


def test_the_audit_log_stays_bounded_under_a_write_flood(tmp_path):
    app = create_app(tmp_path, sessions={"s1": LIVE_ONLY})
    per_session = app.guard.state(app).audit.per_session
    with running(app) as url:
        http = requests.Session()
        for i in range(per_session * 3):
            response = http.post(f"{url}/api/session/update", json={"session_id": "s1", "model": f"flood/{i}"},
                                 headers={"X-Hermes-Intent": "user"}, timeout=30)
            assert response.status_code == 200
        log = http.get(f"{url}/hermes-plugin/api/sessions/s1/model-log", timeout=30).json()["entries"]
    assert len(log) == per_session
    assert log[-1]["new"] == f"flood/{per_session * 3 - 1}"  # the newest entries are the ones kept


def test_a_websocket_reader_that_stopped_reading_is_dropped_not_waited_for(host):
    """Writers never block on a tab that stopped reading: its bounded queue fills and the hub lets it go."""
    app, url = host
    hub = app.guard.state(app).hub
    before, dropped_before = set(hub._clients), hub.dropped
    reader = RawWS(url)
    try:
        assert reader.receive_json()["type"] == "hello"  # registered; from here on it never reads again
        (client,) = set(hub._clients) - before
        # Events far larger than the loopback socket buffers: the server's sender blocks, the queue fills.
        big = "x" * 2**16
        for _ in range(hub.queue_size * 50):  # non-blocking puts: this loop ends whatever the reader does
            hub.publish({"type": "catalog", "provider": "prov", "state": big})
            if client.closed.is_set():
                break
        assert client.closed.is_set() and client not in hub._clients  # dropped while still connected
        assert hub.dropped > dropped_before
        assert client.queue.qsize() <= hub.queue_size  # it never held more than its bound
    finally:
        reader.close()


# -- hostile provider data reaches the page as text ----------------------------------------------------------

HOSTILE_MODELS = [
    {"id": "evil/bidi\u202egnp.js", "label": "\u202eevil\u202c label"},
    {"id": "evil/zero\u200bwidth", "label": "zero\u200b\u200c\u200dwidth\ufeff"},
    {"id": "evil/html", "label": '<img src=x onerror="window.__pwned=1"><svg onload="window.__pwned=2">'},
    {"id": 'evil/"><script>window.__pwned=3</script>', "label": None},
    {"id": "evil/long", "label": "L" * 10_000},
    {"id": "evil/" + "i" * 10_000, "label": None},
    {"id": "evil/js", "label": "javascript:window.__pwned=4"},
    {"id": "evil/bidi-label", "label": "\u202etxt.exe\u202c \u2066isolate\u2069"},
    {"id": "evil/zw-label", "label": "zero\u200b\u200dwidth\u2060"},
]
# What the page must show for them, option value -> option text: ids with format characters or over 256
# characters are refused by the catalog; labels lose control and format characters and are clipped at 512;
# a model without a label shows its id. Markup stays literal text.
HOSTILE_SHOWN = {
    "evil/html": '<img src=x onerror="window.__pwned=1"><svg onload="window.__pwned=2">',
    'evil/"><script>window.__pwned=3</script>': 'evil/"><script>window.__pwned=3</script>',
    "evil/long": "L" * 512,
    "evil/js": "javascript:window.__pwned=4",
    "evil/bidi-label": "txt.exe isolate",
    "evil/zw-label": "zerowidth",
}


@pytest.mark.e2e
def test_hostile_ids_and_labels_are_text_in_the_page(demo_host):  # noqa: F811
    host: DemoHost = demo_host()
    host.openrouter.models = [*host.openrouter.models,
                              *({k: v for k, v in m.items() if v is not None} for m in HOSTILE_MODELS)]
    page = host.page("kimi")
    page.click("#modelPickerButton")
    page.finish()
    options = page.js("return Array.from(document.getElementById('modelSelect').options, o => [o.value, o.textContent])")
    hostile = {value: text for value, text in options if value.startswith("evil/")}
    assert hostile == HOSTILE_SHOWN  # exactly these options, each showing exactly this text
    assert page.js("return document.querySelectorAll('img, svg, #modelPicker script, #modelSelect script').length") == 0
    assert page.js("return window.__pwned === undefined")
    assert page.value == "moonshotai/kimi-k2"
    assert host.stored("kimi") == "moonshotai/kimi-k2"
