"""Selenium tests of static/hermes-guard.js (and the notices it loads on demand), on tiny pages served by a
loopback Flask app."""

from __future__ import annotations

import importlib.resources
import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, Response, jsonify, request
from flask_sock import Sock
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

GUARD_JS = (importlib.resources.files("hermes_plugin.static") / "hermes-guard.js").read_text()
# The guard loads its notices (kept model, unavailable model) from this script the first time it needs one.
NOTICES_JS = (importlib.resources.files("hermes_plugin.static") / "hermes-notices.js").read_text()
WAIT = 15  # seconds an explicit wait may take before the test fails

CONFIG: dict[str, Any] = {
    "prefix": "/hermes-plugin",
    "ws": "/hermes-plugin/ws",
    "modelSelect": "#modelSelect, [data-hermes-model]",
    "picker": "#picker",
    "writes": [{"method": "POST", "url": "^/api/session/update$", "session": "body:session_id", "model": "body:model"}],
    "live": [{"url": r"/api/models/live\?provider=(?P<provider>[^&]+)", "models": "models[].id"}],
    "static": [{"url": "/api/models$", "models": "groups[].models[].id", "provider": "groups[].provider"}],
    "sessions": [
        {
            "url": r"/api/session\?session_id=(?P<session>[^&]+)",
            "model": "session.model",
            "session": "session.session_id",
        }
    ],
    "fetchTimeoutMs": 20000,
}

# A naive host: it persists whatever the model select changes to, like the app of the upstream bug.
HOST_JS = """
window.hermesEvents = [];
for (const n of ['pending', 'settled', 'reapplied', 'write-held', 'write-kept'])
  document.addEventListener('hermes:' + n, e => hermesEvents.push([n, e.detail]));
window.host = {changes: 0, defaultChanges: 0, xhrs: {}};
const sel = document.getElementById('modelSelect');
sel.addEventListener('change', () => { host.changes++; host.persisted = persist(sel.value); });
document.getElementById('defaultModel').addEventListener('change', () => host.defaultChanges++);
function persist(model) {
  return fetch('/api/session/update', {method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({session_id: host.session || 's1', model})}).then(r => r.status);
}
function addOptions(ids) {
  for (const id of ids) { const o = document.createElement('option'); o.value = id; o.textContent = id; sel.append(o); }
}
function loadLive(p) {
  return fetch('/api/models/live?provider=' + p).then(r => r.json()).then(j => addOptions(j.models.map(m => m.id)));
}
function loadSession(id) { host.session = id; return fetch('/api/session?session_id=' + id).then(r => r.json()); }
function xhr(name, method, url, body) {
  const x = new XMLHttpRequest(); host.xhrs[name] = x; x.open(method, url);
  x.onloadend = () => { x.done = true; }; x.send(body); return x;
}
document.getElementById('sessionItem').addEventListener('click', () => {  // the page's own fallback
  sel.value = sel.options[0].value; sel.dispatchEvent(new Event('change'));
});
document.getElementById('pickerItem').addEventListener('click', () => {  // a custom dropdown's item
  sel.value = 'static/b'; sel.dispatchEvent(new Event('change'));
});
document.getElementById('pickerSilent').addEventListener('click', () => { sel.value = 'static/b'; });  // no event
function frames(n) { return new Promise(r => { const f = () => (n-- > 0 ? requestAnimationFrame(f) : r()); f(); }); }
"""


@dataclass
class Host:
    """State of the tiny host app; tests change it and read what the page did."""

    stored: dict[str, str | None] = field(default_factory=lambda: {"s1": "live/m1"})
    live: dict[str, list[str]] = field(default_factory=lambda: {"p1": ["live/m1", "live/m2"]})
    live_status: int = 200
    gates: dict[str, threading.Event] = field(default_factory=dict)
    writes: list[dict[str, Any]] = field(default_factory=list)
    keep_auto: bool = True  # behave like the server guard: an auto write never replaces the stored model
    availability: str = "present"
    reason: str | None = None
    aliases: list[str] = field(default_factory=list)  # the server's resolve_model_alias answer
    config: str | None = json.dumps(CONFIG)
    ws_messages: queue.Queue[str] = field(default_factory=queue.Queue)
    ws_connected: threading.Event = field(default_factory=threading.Event)
    model_answered: threading.Event = field(default_factory=threading.Event)

    def gate(self, provider: str) -> threading.Event:
        return self.gates.setdefault(provider, threading.Event())


def make_app(host: Host) -> Flask:
    app = Flask(__name__)
    sock = Sock(app)

    @app.get("/page")
    def page() -> str:
        config = (
            ""
            if host.config is None
            else (
                '<script type="application/json" id="hermes-plugin-config">'
                + host.config.replace("<", "\\u003c")
                + "</script>"
            )
        )
        return (
            "<!doctype html><html><head>" + config + '<script src="/guard.js"></script></head><body>'
            '<select id="modelSelect"><option value="static/a">static/a</option>'
            '<option value="static/b">static/b</option></select>'
            '<select id="defaultModel"><option value="static/a">static/a</option>'
            '<option value="live/m1">live/m1</option></select>'
            '<div id="picker"><button id="pickerItem">static/b</button><button id="pickerSilent">b</button></div>'
            '<button id="sessionItem">Session 1</button>'
            '<script src="/host.js"></script></body></html>'
        )

    @app.get("/guard.js")
    def guard_js() -> Response:
        return Response(GUARD_JS, mimetype="text/javascript")

    @app.get("/hermes-plugin/static/hermes-notices.js")
    def notices_js() -> Response:
        return Response(NOTICES_JS, mimetype="text/javascript")

    @app.get("/host.js")
    def host_js() -> Response:
        return Response(HOST_JS, mimetype="text/javascript")

    @app.get("/api/models")
    def static_models() -> Any:
        return {"groups": [{"provider": "static", "models": [{"id": "static/a"}, {"id": "static/b"}]}]}

    @app.get("/api/models/live")
    def live_models() -> Any:
        provider = request.args["provider"]
        gate = host.gates.get(provider)
        if gate is not None:
            gate.wait(WAIT)  # the test decides when the provider answers
        if host.live_status != 200:
            return {"error": "provider down"}, host.live_status
        return {"models": [{"id": m} for m in host.live.get(provider, [])]}

    @app.get("/api/session")
    def session() -> Any:
        sid = request.args["session_id"]
        return {"session": {"session_id": sid, "model": host.stored.get(sid)}}

    @app.post("/api/session/update")
    def update() -> Any:
        body = request.get_json(force=True)
        intent = request.headers.get("X-Hermes-Intent")
        host.writes.append({"intent": intent, **body})
        sid, proposed = body["session_id"], body["model"]
        if intent != "user" and host.keep_auto and host.stored.get(sid) not in (None, proposed):
            resp = jsonify(ok=True)
            resp.headers["X-Hermes-Model-Kept"] = "model_present"
            return resp
        host.stored[sid] = proposed
        return {"ok": True}

    @app.get("/hermes-plugin/api/sessions/<sid>/model")
    def session_model(sid: str) -> Any:
        resp = jsonify(
            session=sid,
            model=host.stored.get(sid),
            version=1,
            availability=host.availability,
            provider="p1",
            reason=host.reason,
            aliases=host.aliases,
        )
        resp.call_on_close(host.model_answered.set)
        return resp

    @sock.route("/hermes-plugin/ws")
    def ws(sock_: Any) -> None:
        host.ws_connected.set()
        while True:
            sock_.send(host.ws_messages.get())

    return app


@pytest.fixture
def driver(chromium: WebDriver) -> WebDriver:
    """The pytest plugin's headless Chromium (one per module, reset between tests)."""
    return chromium


@pytest.fixture
def host() -> Iterator[Host]:
    state = Host()
    yield state
    for gate in state.gates.values():
        gate.set()  # let parked provider requests finish before the server stops


@pytest.fixture
def base_url(host: Host, loopback_server: Callable[[Any], Any]) -> Iterator[str]:
    server = loopback_server(make_app(host))  # stopped by that fixture, after this one's teardown below
    yield server.url
    for gate in host.gates.values():
        gate.set()
    host.ws_messages.put("{}")  # wakes the WebSocket handler so its thread can end


def until(driver: WebDriver, condition: Callable[[WebDriver], Any]) -> Any:
    return WebDriverWait(driver, WAIT).until(condition)


def js(driver: WebDriver, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def open_page(driver: WebDriver, base_url: str) -> None:
    driver.get(base_url + "/page")
    until(driver, lambda d: js(d, "return !!window.host"))


def events(driver: WebDriver, name: str) -> list[Any]:
    return js(driver, "return hermesEvents.filter(e => e[0] === arguments[0]).map(e => e[1])", name)


def session_loaded(driver: WebDriver, sid: str = "s1") -> None:
    js(driver, "window.loaded = false; loadSession(arguments[0]).then(() => { window.loaded = true; })", sid)
    until(driver, lambda d: js(d, "return window.loaded"))


def key_pick(driver: WebDriver, value: str) -> None:
    """Choose an option with the keyboard: WebDriver's Select sends untrusted events, keys are trusted."""
    sel = driver.find_element(By.ID, "modelSelect")
    index = js(driver, "return [...arguments[0].options].findIndex(o => o.value === arguments[1])", sel, value)
    current = js(driver, "return arguments[0].selectedIndex", sel)
    key = Keys.ARROW_DOWN if index > current else Keys.ARROW_UP
    sel.send_keys(key * abs(index - current))


# ---- pending tracking ----


def test_fetch_pending_until_settled_for_success_error_and_abort(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    gate = host.gate("p1")
    host.gate("p2")
    js(
        driver,
        "window.ac = new AbortController(); window.r = {};"
        "fetch('/api/models/live?provider=p1').then(x => r.ok = x.status);"
        "fetch('/api/models/live?provider=p2', {signal: ac.signal}).catch(e => r.aborted = e.name);",
    )
    assert sorted(js(driver, "return hermesGuard.pending()")) == ["p1", "p2"]
    js(driver, "ac.abort()")
    until(driver, lambda d: js(d, "return hermesGuard.pending()") == ["p1"])
    assert js(driver, "return r.aborted") == "AbortError"
    host.live_status = 500
    gate.set()
    until(driver, lambda d: js(d, "return r.ok") == 500)
    until(driver, lambda d: js(d, "return hermesGuard.pending().length") == 0)
    assert [e["provider"] for e in events(driver, "pending")] == ["p1", "p2"]
    assert len(events(driver, "settled")) == 1


def test_xhr_pending_until_loadend_for_error_and_abort(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    host.live_status = 500
    gate = host.gate("p1")
    host.gate("p2")
    js(driver, "xhr('a', 'GET', '/api/models/live?provider=p1'); xhr('b', 'GET', '/api/models/live?provider=p2')")
    until(driver, lambda d: sorted(js(d, "return hermesGuard.pending()")) == ["p1", "p2"])
    js(driver, "host.xhrs.b.abort()")
    assert js(driver, "return hermesGuard.pending()") == ["p1"]
    gate.set()
    until(driver, lambda d: js(d, "return host.xhrs.a.done"))
    assert js(driver, "return [host.xhrs.a.status, hermesGuard.pending()]") == [500, []]


def test_fetch_timeout_clears_pending(driver: WebDriver, base_url: str, host: Host) -> None:
    host.config = json.dumps({**CONFIG, "fetchTimeoutMs": 200})
    host.gate("p1")  # never answered during the test
    open_page(driver, base_url)
    started = js(
        driver,
        "window.settled = false; fetch('/api/models/live?provider=p1');"
        "hermesGuard.whenSettled().then(() => { settled = true; }); return hermesGuard.pending()",
    )
    assert started == ["p1"]
    until(driver, lambda d: js(d, "return settled"))
    assert js(driver, "return hermesGuard.pending()") == []


# ---- held writes and user picks ----


def test_auto_write_held_while_pending_then_released_and_kept(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    session_loaded(driver)
    gate = host.gate("p1")
    js(driver, "window.live = loadLive('p1')")
    until(driver, lambda d: js(d, "return hermesGuard.pending()") == ["p1"])
    driver.find_element(By.ID, "sessionItem").click()  # a real click elsewhere; the page falls back
    until(driver, lambda d: events(d, "write-held"))
    assert events(driver, "write-held") == [{"session": "s1", "model": "static/a"}]
    assert host.writes == []
    gate.set()
    until(driver, lambda d: events(d, "write-kept"))
    assert {"intent": "auto", "session_id": "s1", "model": "static/a"} in host.writes
    # the only other write is the host following the re-applied stored model
    assert all(
        w == {"intent": "auto", "session_id": "s1", "model": "live/m1"} for w in host.writes if w["model"] != "static/a"
    )
    assert events(driver, "write-kept") == [{"session": "s1", "model": "static/a", "reason": "model_present"}]
    until(driver, lambda d: js(d, "return modelSelect.value") == "live/m1")
    assert host.stored["s1"] == "live/m1"


def test_user_pick_sent_at_once_while_pending_and_not_reverted(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    session_loaded(driver)
    gate = host.gate("p1")
    js(driver, "window.live = loadLive('p1')")
    until(driver, lambda d: js(d, "return hermesGuard.pending()") == ["p1"])
    key_pick(driver, "static/b")
    until(driver, lambda d: host.writes)
    assert host.writes == [{"intent": "user", "session_id": "s1", "model": "static/b"}]
    assert js(driver, "return hermesGuard.pending()") == ["p1"]  # still pending: the pick did not wait
    gate.set()
    until(driver, lambda d: js(d, "return hermesGuard.pending().length") == 0)
    until(driver, lambda d: js(d, "return modelSelect.options.length") == 4)
    assert js(driver, "return [modelSelect.value, hermesGuard.state().model]") == ["static/b", "static/b"]
    assert events(driver, "reapplied") == []
    assert host.stored["s1"] == "static/b"


def test_custom_picker_gesture_counts_but_untrusted_clicks_do_not(driver: WebDriver, base_url: str, host: Host) -> None:
    host.keep_auto = False
    open_page(driver, base_url)
    session_loaded(driver)
    js(driver, "pickerItem.click()")  # a script's click is no gesture
    until(driver, lambda d: len(host.writes) == 1)
    driver.find_element(By.ID, "sessionItem").click()  # a real click outside the picker
    until(driver, lambda d: len(host.writes) == 2)
    driver.find_element(By.ID, "pickerItem").click()  # a real click inside the picker
    until(driver, lambda d: len(host.writes) == 3)
    assert [w["intent"] for w in host.writes] == ["auto", "auto", "user"]


# ---- re-apply ----


def test_reapply_when_options_land_in_the_same_task(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    session_loaded(driver)
    assert js(driver, "return modelSelect.value") == "static/a"  # the stored model is no option yet
    js(driver, "addOptions(['live/m1']); window.seen = null; setTimeout(() => { seen = modelSelect.value; })")
    until(driver, lambda d: js(d, "return seen"))
    assert js(driver, "return seen") == "live/m1"  # shown before the next task ran
    assert events(driver, "reapplied") == [{"session": "s1", "model": "live/m1"}]
    assert js(driver, "return host.changes") == 1  # the host's own change handler followed
    assert js(driver, "return [defaultModel.value, host.defaultChanges]") == ["static/a", 0]  # never re-targeted


def test_reapply_again_when_the_host_resets_the_value_without_an_event(
    driver: WebDriver, base_url: str, host: Host
) -> None:
    open_page(driver, base_url)
    session_loaded(driver)
    # the host's own late code (a timer after its render) sets the value silently: no mutation reports it
    js(driver, "addOptions(['live/m1']); setTimeout(() => { modelSelect.value = 'static/a'; window.reset = true; })")
    until(driver, lambda d: js(d, "return window.reset === true"))
    until(driver, lambda d: js(d, "return modelSelect.value") == "live/m1")
    assert events(driver, "reapplied") == [{"session": "s1", "model": "live/m1"}] * 2


def test_reapply_recheck_leaves_a_gesture_in_the_picker_alone(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    session_loaded(driver)
    js(driver, "addOptions(['live/m1'])")
    until(driver, lambda d: js(d, "return modelSelect.value") == "live/m1")
    driver.find_element(By.ID, "pickerSilent").click()  # a real click in the picker sets the value, no event
    js(driver, "window.waited = false; frames(20).then(() => { waited = true; })")  # past the re-check window
    until(driver, lambda d: js(d, "return waited"))
    assert js(driver, "return modelSelect.value") == "static/b"
    assert events(driver, "reapplied") == [{"session": "s1", "model": "live/m1"}]


def test_xhr_session_is_learnt_before_the_hosts_readystatechange(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    js(
        driver,
        "const x = new XMLHttpRequest(); x.open('GET', '/api/session?session_id=s1');"
        "x.onreadystatechange = () => { if (x.readyState === 4) window.seen = hermesGuard.state(); }; x.send();",
    )
    until(driver, lambda d: js(d, "return !!window.seen"))
    assert js(driver, "return [seen.session, seen.model]") == ["s1", "live/m1"]


def test_session_response_without_a_model_asks_the_server(driver: WebDriver, base_url: str, host: Host) -> None:
    host.config = json.dumps(
        {
            **CONFIG,
            "sessions": [{"url": r"/api/session\?session_id=(?P<session>[^&]+)", "session": "session.session_id"}],
        }
    )
    open_page(driver, base_url)
    session_loaded(driver)
    assert host.model_answered.wait(WAIT)
    until(driver, lambda d: js(d, "return hermesGuard.state().model") == "live/m1")
    js(driver, "addOptions(['live/m1'])")
    until(driver, lambda d: js(d, "return modelSelect.value") == "live/m1")


def test_websocket_model_event_is_followed(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    session_loaded(driver)
    assert host.ws_connected.wait(WAIT)
    host.ws_messages.put(json.dumps({"type": "model", "session": "s1", "model": "static/b", "version": 7}))
    until(driver, lambda d: js(d, "return modelSelect.value") == "static/b")
    js(driver, "addOptions(['live/m1'])")
    messages: list[dict[str, Any] | str] = [
        {"model": "live/m1", "version": 8},
        {"model": "static/a", "version": 3},
        {"model": "static/a", "version": 9, "session": "s2"},
        "not json",
        {"model": "static/b", "version": 9},
    ]
    for message in messages:
        host.ws_messages.put(
            message if isinstance(message, str) else json.dumps({"type": "model", "session": "s1", **message})
        )
    until(driver, lambda d: [e["model"] for e in events(d, "reapplied")] == ["static/b", "live/m1", "static/b"])
    assert js(driver, "return modelSelect.value") == "static/b"  # the older version 3 never won


# ---- unavailable models ----


def test_unknown_model_shown_as_unavailable_with_notice(driver: WebDriver, base_url: str, host: Host) -> None:
    host.live_status = 500
    host.availability = "unknown"
    host.reason = "provider p1 failed: HTTP 500"
    open_page(driver, base_url)
    session_loaded(driver)
    js(driver, "loadLive('p1').catch(() => {})")
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "option[data-hermes-unavailable]"))
    option = driver.find_element(By.CSS_SELECTOR, "#modelSelect option[data-hermes-unavailable]")
    assert option.get_attribute("value") == "live/m1"
    assert option.text == "live/m1 (unavailable)"
    assert option.get_attribute("title") == "provider p1 failed: HTTP 500"
    # The notice is the notices script's, loaded on demand: it follows the placeholder.
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#modelSelect + .hermes-notice"))
    notice = driver.find_element(By.CSS_SELECTOR, "#modelSelect + .hermes-notice")
    assert notice.get_attribute("role") == "status"
    assert notice.text == "Model live/m1 is unavailable: provider p1 failed: HTTP 500. Your saved choice was kept."
    assert js(driver, "return modelSelect.value") == "live/m1"
    assert host.stored["s1"] == "live/m1"
    assert not driver.find_elements(By.CSS_SELECTOR, "#defaultModel option[data-hermes-unavailable]")


def test_absent_model_is_left_to_the_host(driver: WebDriver, base_url: str, host: Host) -> None:
    host.live = {"p1": ["live/m2"]}
    host.availability = "absent"
    open_page(driver, base_url)
    session_loaded(driver)
    js(driver, "loadLive('p1')")
    assert host.model_answered.wait(WAIT)
    # a round trip started after the guard's answer was fully sent: the guard has acted on it by then
    js(driver, "window.after = false; fetch('/api/models').then(() => { after = true; })")
    until(driver, lambda d: js(d, "return after"))
    assert js(driver, "return modelSelect.value") == "static/a"
    assert driver.find_elements(By.CSS_SELECTOR, "option[data-hermes-unavailable], .hermes-notice") == []


def test_html_in_model_ids_and_reasons_is_text(driver: WebDriver, base_url: str, host: Host) -> None:
    evil = '<img src=x onerror="window.pwned=1">'
    host.stored = {"s1": evil}
    host.live_status = 500
    host.availability = "unknown"
    host.reason = "<script>window.pwned=2</script><b>down</b>"
    open_page(driver, base_url)
    session_loaded(driver)
    js(driver, "loadLive('p1').catch(() => {})")
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".hermes-notice"))
    notice = driver.find_element(By.CSS_SELECTOR, ".hermes-notice")
    assert notice.text == f"Model {evil} is unavailable: {host.reason}. Your saved choice was kept."
    assert driver.find_elements(By.CSS_SELECTOR, "body img, body b, .hermes-notice script") == []
    assert js(driver, "return window.pwned") is None
    assert js(driver, "return modelSelect.value") == evil


# ---- a broken or missing config leaves the page alone ----


@pytest.mark.parametrize("config", [None, "{broken", '"a string"', "null"])
def test_missing_or_broken_config_keeps_the_host_working(
    driver: WebDriver, base_url: str, host: Host, config: str | None
) -> None:
    host.config = config
    open_page(driver, base_url)
    js(
        driver,
        "window.got = null; fetch('/api/models').then(r => r.json()).then(j => { got = j; });"
        "xhr('x', 'POST', '/api/session/update', JSON.stringify({session_id: 's1', model: 'static/b'}))",
    )
    until(driver, lambda d: js(d, "return got && host.xhrs.x.done"))
    assert js(driver, "return got.groups[0].provider") == "static"
    assert host.writes == [{"intent": None, "session_id": "s1", "model": "static/b"}]
    assert js(driver, "return hermesGuard.state().disabled")  # says why it stayed out of the way


# ---- the page-state rule: choices and corrections without trusted events ----


def show_live_model(driver: WebDriver, host: Host) -> None:
    """Session s1 loaded and its stored model's option present: the page can show the stored model."""
    session_loaded(driver)
    js(driver, "addOptions(['live/m1'])")
    until(driver, lambda d: js(d, "return modelSelect.value") == "live/m1")
    until(driver, lambda d: host.writes)
    assert host.writes == [{"intent": "auto", "session_id": "s1", "model": "live/m1"}]  # the host followed the re-apply
    host.writes.clear()


def test_untrusted_pick_of_a_shown_model_is_a_choice(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    show_live_model(driver, host)
    Select(driver.find_element(By.ID, "modelSelect")).select_by_value("static/b")  # untrusted events
    until(driver, lambda d: host.writes)
    assert host.writes[-1] == {"intent": "user", "session_id": "s1", "model": "static/b"}
    assert host.stored["s1"] == "static/b"
    assert js(driver, "return hermesGuard.state().model") == "static/b"


def test_untrusted_change_away_from_a_model_the_page_cannot_show_is_a_correction(
    driver: WebDriver, base_url: str, host: Host
) -> None:
    open_page(driver, base_url)
    session_loaded(driver)  # live/m1 is stored but no option: the page could not find it
    Select(driver.find_element(By.ID, "modelSelect")).select_by_value("static/b")
    until(driver, lambda d: host.writes)
    assert host.writes[-1]["intent"] == "auto"
    assert host.stored["s1"] == "live/m1"


def test_a_click_elsewhere_does_not_make_the_pages_change_a_pick(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    show_live_model(driver, host)
    driver.find_element(By.ID, "sessionItem").click()  # a real click outside the picker; the page picks options[0]
    until(driver, lambda d: host.writes)
    assert host.writes[0] == {"intent": "auto", "session_id": "s1", "model": "static/a"}
    until(driver, lambda d: js(d, "return modelSelect.value") == "live/m1")  # the server kept it: the picker follows
    assert host.stored["s1"] == "live/m1"


def test_kept_model_returns_to_the_picker_with_a_notice(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    show_live_model(driver, host)
    js(driver, "window.waited = false; frames(20).then(() => { waited = true; })")  # past the re-check window
    until(driver, lambda d: js(d, "return waited"))
    # the host's own code shows another model and writes it as automatic: the server keeps the stored one
    js(driver, "modelSelect.value = 'static/b'; fetch('/api/session/update', {method: 'POST',"
               "headers: {'Content-Type': 'application/json', 'X-Hermes-Intent': 'auto'},"
               "body: JSON.stringify({session_id: 's1', model: 'static/b'})})")
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#modelSelect + .hermes-notice"))
    assert js(driver, "return modelSelect.value") == "live/m1"  # never one model shown and another stored
    notice = driver.find_element(By.CSS_SELECTOR, "#modelSelect + .hermes-notice")
    assert notice.get_attribute("role") == "status"
    text = js(driver, "return document.querySelector('#modelSelect + .hermes-notice').firstChild.data")
    assert text == "Kept your saved model live/m1 (model_present): the change to static/b was not saved."
    assert host.stored["s1"] == "live/m1"


def test_kept_model_notice_is_dismissed_by_its_button(driver: WebDriver, base_url: str, host: Host) -> None:
    open_page(driver, base_url)
    show_live_model(driver, host)
    js(driver, "window.waited = false; frames(20).then(() => { waited = true; })")
    until(driver, lambda d: js(d, "return waited"))
    js(driver, "modelSelect.value = 'static/b'; fetch('/api/session/update', {method: 'POST',"
               "headers: {'Content-Type': 'application/json', 'X-Hermes-Intent': 'auto'},"
               "body: JSON.stringify({session_id: 's1', model: 'static/b'})})")
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#modelSelect + .hermes-notice"))
    button = driver.find_element(By.CSS_SELECTOR, "#modelSelect + .hermes-notice button")
    assert button.text == "×" and button.get_attribute("aria-label") == "Dismiss"
    button.click()  # a real click
    until(driver, lambda d: not d.find_elements(By.CSS_SELECTOR, ".hermes-notice"))
    assert js(driver, "return modelSelect.value") == "live/m1"  # dismissing changes nothing else
    assert host.stored["s1"] == "live/m1"


def test_the_servers_alias_resolution_finds_the_option(driver: WebDriver, base_url: str, host: Host) -> None:
    host.stored = {"s1": "nous/live-m1"}  # stored under another spelling; the server resolves it to live/m1
    host.aliases = ["live/m1"]
    open_page(driver, base_url)
    session_loaded(driver)
    js(driver, "loadLive('p1')")  # the option lands as live/m1: no exact match, no alias rule declared
    until(driver, lambda d: js(d, "return modelSelect.value") == "live/m1")
    assert events(driver, "reapplied")[-1] == {"session": "s1", "model": "live/m1"}
    until(driver, lambda d: host.writes)  # the host followed the re-apply with a write of the option's spelling
    assert host.writes == [{"intent": "auto", "session_id": "s1", "model": "live/m1"}]  # a restatement, not a pick
    assert host.stored["s1"] == "nous/live-m1"  # kept, never rewritten
