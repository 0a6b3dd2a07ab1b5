"""The real hermes-webui v0.50.227 behind ``hermes-plugin proxy --preset hermes-webui``, live list slowed.

The app alone overwrites a session whose model is only in the live list (its own race); behind the
proxy the stored model, the picker and the app's own ``S.session.model`` all stay on the saved model,
and a pick through the app's real dropdown (real clicks) is stored, with or without the preset's picker.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from webui_host import ALIAS, DEFAULT, SAVED, GatedRelay, WebUI

from hermes_plugin import script
from hermes_plugin.presets import preset
from hermes_plugin.proxy import create_app, proxy_config

pytestmark = pytest.mark.e2e

WAIT = 30  # upper bound on a loaded 2-core machine; every wait ends as soon as its condition holds
ALIAS_RULE = re.compile(preset("hermes-webui")["model_aliases"][0])
PREVIOUS_GUARD = (Path(__file__).parent / "previous-guard.js").read_text()


def bare(model: str | None) -> str | None:
    """The id a session stores for a picker value, by the preset's own alias rule."""
    match = ALIAS_RULE.match(model or "")
    return match.group("model") if match else model


@pytest.fixture
def relay(webui: WebUI, loopback_server: Callable[[Any], Any]) -> Iterator[tuple[GatedRelay, str]]:
    """The slow provider: the live list waits at the relay until the test opens the gate."""
    gated = GatedRelay(webui.url)
    server = loopback_server(gated)
    try:
        yield gated, server.url
    finally:
        gated.gate.set()


def guarded(relay_url: str, loopback_server: Callable[[Any], Any], **changes: Any) -> str:
    """``hermes-plugin proxy --preset hermes-webui`` in front of the relay; ``changes`` edit the preset."""
    table = {**preset("hermes-webui"), **changes}
    table = {k: v for k, v in table.items() if v is not None}
    return str(loopback_server(create_app(relay_url, cfg=proxy_config(table))).url)


def open_session(driver: Any, base: str, session: str) -> None:
    """Open a chat the way a returning user does: the app restores the last session from localStorage."""
    driver.get(base + "/api/settings")
    driver.execute_script("localStorage.setItem('hermes-webui-session', arguments[0])", session)
    driver.get(base + "/")


def until(driver: Any, condition: Callable[[Any], Any], message: str) -> Any:
    return WebDriverWait(driver, WAIT).until(condition, message)


def page_state(driver: Any) -> dict[str, Any]:
    return dict(driver.execute_script(
        "const sel = document.getElementById('modelSelect');"
        "return {shown: sel && sel.value, state: typeof S !== 'undefined' && S.session ? S.session.model : null,"
        "  chip: (document.getElementById('composerModelChip') || {}).title || null,"
        "  guard: window.hermesGuard ? hermesGuard.state() : null,"
        "  pending: window.hermesGuard ? hermesGuard.pending() : []}"))


def settle_on_saved(driver: Any, webui: WebUI, relay: GatedRelay, session: str) -> dict[str, Any]:
    """Let the page fall back while the live list is out, then let the list land; return the settled state."""
    until(driver, lambda d: page_state(d)["guard"] and page_state(d)["guard"]["held"] > 0,
          "the app's fallback write was never held by the guard")
    assert webui.stored(session) == SAVED  # held: the fallback did not reach the app
    relay.gate.set()

    def settled(d: Any) -> dict[str, Any] | None:
        state = page_state(d)
        done = not state["pending"] and state["guard"]["held"] == 0 and state["shown"] == ALIAS
        return state if done and bare(state["state"]) == SAVED else None

    return dict(until(driver, settled, "the page never settled on the saved model"))


def test_webui_alone_overwrites_the_saved_model(webui: WebUI, relay: tuple[GatedRelay, str], chromium: Any) -> None:
    """The bug, with the real app and no guard: the fallback is persisted while the live list is out."""
    gated, base = relay
    session = webui.new_session(SAVED)
    open_session(chromium, base, session)
    until(chromium, lambda d: webui.stored(session) != SAVED, "the app alone never overwrote the saved model")
    assert webui.stored(session) == DEFAULT
    gated.gate.set()


def test_webui_behind_the_proxy_keeps_stored_shown_and_state_on_the_saved_model(
        webui: WebUI, relay: tuple[GatedRelay, str], chromium: Any, loopback_server: Callable[[Any], Any]) -> None:
    gated, relay_url = relay
    base = guarded(relay_url, loopback_server)
    session = webui.new_session(SAVED)
    open_session(chromium, base, session)
    state = settle_on_saved(chromium, webui, gated, session)
    assert webui.stored(session) == SAVED  # stored: exactly as saved
    assert state["shown"] == ALIAS and state["chip"] == ALIAS  # shown: the app's own spelling of it
    assert bare(state["state"]) == SAVED  # the app's own state: a message sent now carries the saved model
    assert state["guard"]["session"] == session
    # A message sent right after load: the page names the model in its own spelling (@deepseek:...), the
    # guard sends it as a restatement and the app starts the chat with the saved model as stored.
    chromium.find_element(By.ID, "msg").send_keys("hello")
    chromium.find_element(By.ID, "btnSend").click()
    start = until(chromium, lambda d: next((json.loads(body) for path, body in gated.posts
                                            if path == "/api/chat/start"), None), "the message was never sent")
    assert start["model"] == SAVED
    assert webui.stored(session) == SAVED


@pytest.mark.parametrize("picker", ["preset", "none"])
def test_webui_pick_through_its_own_dropdown_is_stored(
        webui: WebUI, relay: tuple[GatedRelay, str], chromium: Any, loopback_server: Callable[[Any], Any],
        picker: str) -> None:
    gated, relay_url = relay
    base = guarded(relay_url, loopback_server, **({"picker": None} if picker == "none" else {}))
    session = webui.new_session(SAVED)
    open_session(chromium, base, session)
    settle_on_saved(chromium, webui, gated, session)
    pick_in_dropdown(chromium, DEFAULT)
    until(chromium, lambda d: webui.stored(session) == DEFAULT, "the pick was not stored")
    until(chromium, lambda d: page_state(d)["shown"] == DEFAULT and page_state(d)["state"] == DEFAULT,
          "the page does not show the pick")


def pick_in_dropdown(driver: Any, model: str) -> None:
    """Real clicks: the model chip opens the app's dropdown, then the row whose id is ``model``."""
    driver.find_element(By.ID, "composerModelChip").click()
    rows = until(driver, lambda d: [r for r in d.find_elements(By.CSS_SELECTOR, "#composerModelDropdown .model-opt")
                                    if r.is_displayed()], "the dropdown never opened")
    row = next(r for r in rows if r.find_element(By.CSS_SELECTOR, ".model-opt-id").text == model)
    row.click()


def test_webui_pick_was_lost_with_the_previous_guard(
        webui: WebUI, relay: tuple[GatedRelay, str], chromium: Any, loopback_server: Callable[[Any], Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The previous guard classed the dropdown's ``onchange()`` write as automatic: the server kept the old model."""
    monkeypatch.setattr(script, "served", lambda readable: PREVIOUS_GUARD)
    gated, relay_url = relay
    gated.gate.set()  # the live list is quick here: the previous guard's other gaps are not this test's subject
    base = guarded(relay_url, loopback_server, picker=None)
    session = webui.new_session(DEFAULT)
    open_session(chromium, base, session)
    until(chromium, lambda d: page_state(d)["shown"] == DEFAULT and not page_state(d)["pending"]
          and bare(page_state(d)["state"]) == DEFAULT, "the page never loaded")
    until(chromium, lambda d: any(o.get_attribute("value") == ALIAS
                                  for o in d.find_elements(By.CSS_SELECTOR, "#modelSelect option")),
          "the live list never landed")
    pick_in_dropdown(chromium, ALIAS)
    until(chromium, lambda d: chromium.execute_script(
        "return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/session/update')"
        " && e.responseEnd > 0).length") >= 1, "the pick's write never completed")
    assert webui.stored(session) == DEFAULT  # the user's pick never reached the app
