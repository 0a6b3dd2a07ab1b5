"""The real hermes-webui v0.50.227 behind ``hermes-plugin proxy --preset hermes-webui``: the later bugs of
the class where this release shows them, each with the guard before its sessions part (the bug) and with it.

* The guard's re-apply of the saved model fires the app's ``onchange``, which sends an extra
  ``/api/session/update``: with the sessions part that write is answered in the page, and the app's own
  ``S.session.model`` still follows.
* Switching to a chat whose session read is slow: the picker keeps the previous chat's model until the read
  lands; with the sessions part it shows "loading" instead, then the new chat's model.
* A send makes the proxy read nothing: it learnt the stored model from the app's own raw session read and
  from its own guarded writes (before, every guarded send read the session before and after the write).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from test_hermes_webui import bare, guarded, open_session, page_state, settle_on_saved, until
from webui_host import ALIAS, DEFAULT, SAVED, GatedRelay, WebUI
from werkzeug.wrappers import Request

from hermes_plugin import inject

pytestmark = pytest.mark.e2e

@pytest.fixture(params=["today", "sessions"])
def guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "today":  # the core guard alone
        monkeypatch.setattr(inject, "optional_scripts", lambda config: [])
    return str(request.param)


class SlowSessionRelay(GatedRelay):
    """The relay, plus: reads of session ``slow`` (the page's and the proxy's) wait at ``session_gate``."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.slow: str | None = None
        self.session_gate = threading.Event()
        self.reads: list[tuple[str, str]] = []  # (session, User-Agent) of every session read
        self.waiting = threading.Event()  # a read of the slow session is parked at the gate

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        if request.path == "/api/session":
            self.reads.append((request.args.get("session_id", ""), request.headers.get("User-Agent", "")))
        if request.path == "/api/session" and self.slow and request.args.get("session_id") == self.slow:
            self.waiting.set()
            self.session_gate.wait(30)
        return super().__call__(environ, start_response)


@pytest.fixture
def relay(webui: WebUI, loopback_server: Callable[[Any], Any]) -> Iterator[tuple[SlowSessionRelay, str]]:
    gated = SlowSessionRelay(webui.url)
    server = loopback_server(gated)
    try:
        yield gated, server.url
    finally:
        gated.gate.set()
        gated.session_gate.set()


def session_updates(relay: GatedRelay) -> list[dict[str, Any]]:
    """``/api/session/update`` bodies as the app received them (after the server-side guard)."""
    return [json.loads(body) for path, body in relay.posts if path == "/api/session/update"]


def test_webui_reapply_sends_no_extra_session_update(webui, relay, chromium, loopback_server, guard):
    gated, relay_url = relay
    base = guarded(relay_url, loopback_server)
    session = webui.new_session(SAVED)
    open_session(chromium, base, session)
    state = settle_on_saved(chromium, webui, gated, session)  # re-applied: shown, chip and S.session follow
    assert bare(state["state"]) == SAVED and webui.stored(session) == SAVED
    # The app's own correction (held while the live list was out, then kept by the server) always comes;
    # its select's onchange sends the workspace too, so an update from the re-apply is told apart.
    until(chromium, lambda d: session_updates(gated), "the app's own fallback write never came")
    chromium.execute_async_script("const done = arguments[0];"
                                  "requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done)))")
    if guard == "today":
        until(chromium, lambda d: len(session_updates(gated)) == 2, "the re-apply's update never came")
        assert sum("workspace" in body for body in session_updates(gated)) == 1  # sent by the re-apply's onchange
        return
    assert len(session_updates(gated)) == 1 and "workspace" not in session_updates(gated)[0]  # 0 extra writes
    assert session_updates(gated)[0]["model"] == SAVED  # the app's own fallback, kept by the server


def test_webui_slow_switch_shows_pending_not_the_previous_chats_model(webui, relay, chromium, loopback_server,
                                                                     guard):
    gated, relay_url = relay
    gated.gate.set()  # the live list is quick here: the slow part is the session read
    base = guarded(relay_url, loopback_server)
    first, slow = webui.new_session(DEFAULT), webui.new_session(SAVED)
    open_session(chromium, base, first)
    until(chromium, lambda d: page_state(d)["shown"] == DEFAULT and not page_state(d)["pending"]
          and (page_state(d)["guard"] or {}).get("session") == first, "the first chat never loaded")
    until(chromium, lambda d: d.execute_script(
        "return [...document.querySelectorAll('#modelSelect option')].some(o => o.value === arguments[0])", ALIAS),
        "the live list never landed")
    gated.slow = slow
    chromium.execute_script("loadSession(arguments[0])", slow)  # what a click in its session list runs
    until(chromium, lambda d: gated.waiting.is_set(), "the app never asked for the slow chat")
    chromium.execute_async_script("const done = arguments[0];"
                                  "requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done)))")
    during = page_state(chromium)
    gated.session_gate.set()
    until(chromium, lambda d: page_state(d)["shown"] == ALIAS and bare(page_state(d)["state"]) == SAVED,
          "the new chat's model was never shown")
    assert webui.stored(slow) == SAVED and webui.stored(first) == DEFAULT
    if guard == "today":
        assert during["shown"] == DEFAULT  # the previous chat's model, shown while the new one loads
        return
    assert during["shown"] == "" and during["guard"]["model"] is None, during  # "loading": nothing pretends to know
    assert [r for r in gated.reads if r[0] == slow and "Chrome" in r[1]]
    assert chromium.find_elements("css selector", "option[data-hermes-pending]") == []


@pytest.mark.parametrize("learning", ["off", "on"])
def test_webui_send_through_the_proxy_reads_no_session(webui, relay, chromium, loopback_server, learning):
    gated, relay_url = relay
    gated.gate.set()
    base = guarded(relay_url, loopback_server, **({"session_learn_ttl": 0} if learning == "off" else {}))
    session = webui.new_session(SAVED)
    open_session(chromium, base, session)
    until(chromium, lambda d: page_state(d)["shown"] == ALIAS and not page_state(d)["pending"]
          and bare(page_state(d)["state"]) == SAVED, "the page never settled on the saved model")
    before = len(gated.reads)
    chromium.find_element(By.ID, "msg").send_keys("hello")
    chromium.find_element(By.ID, "btnSend").click()
    start = until(chromium, lambda d: next((json.loads(body) for path, body in gated.posts
                                            if path == "/api/chat/start"), None), "the message was never sent")
    assert start["model"] == SAVED and webui.stored(session) == SAVED
    # The proxy's own reads carry no browser's User-Agent (it forwards only the caller's credentials).
    proxy_reads = [r for r in gated.reads[before:] if r[0] == session and "Chrome" not in r[1]]
    if learning == "off":
        assert proxy_reads  # the send waited for the proxy's own session read(s)
    else:
        assert proxy_reads == []  # judged on the learnt model: a slow session read would not delay it
