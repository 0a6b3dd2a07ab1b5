"""The real hermes-webui v0.50.227 behind ``hermes-plugin proxy --preset hermes-webui``: a session saved with
a preview id that no catalogue lists.

The app, on load, finds the saved model in none of its lists and writes its first model over it (its later
releases keep and show the saved model instead). Under the guard's default absent-model policy
(``fallback``) that write is let through: stored becomes the default and the saved model cannot be shown.
Under the preset's policy (``keep``) the server keeps the saved model, the picker shows it as itself,
marked unavailable, the app's own ``S.session.model`` follows, and the next send carries it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from test_hermes_webui import open_session, page_state, until
from webui_host import ALIAS, DEFAULT, START_TIMEOUT, GatedRelay, WebUI
from werkzeug.wrappers import Request

from hermes_plugin.presets import preset
from hermes_plugin.proxy import create_app, proxy_config

pytestmark = pytest.mark.e2e

PREVIEW = "deepseek-v4-preview"  # saved by the session; neither the static nor the live list has it


class ResolveGatedRelay(GatedRelay):
    """The relay, plus: the page's display read of the session (``resolve_model=1``), after which the app
    makes its correction, waits at ``resolve_gate``, so the correction always meets a filled picker."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream)
        self.resolve_gate = threading.Event()
        self.corrected = threading.Event()  # the app's correction reached the relay

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        if request.path == "/api/session" and request.args.get("resolve_model") == "1":
            self.resolve_gate.wait(START_TIMEOUT)
        if request.path == "/api/session/update":
            self.corrected.set()
        return super().__call__(environ, start_response)


class AfterCorrection:
    """The proxy, plus: the browser guard's own question about the session (``…/sessions/<id>/model``) waits
    until the app's correction was sent, the order of the app alone. Asked first, the guard would show the
    saved model as unavailable before the app corrects it, and the app would then find it in its picker."""

    def __init__(self, app: Any, corrected: threading.Event) -> None:
        self.app, self.corrected = app, corrected

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/hermes-plugin/api/sessions/") and path.endswith("/model"):
            self.corrected.wait(START_TIMEOUT)
        return self.app(environ, start_response)  # type: ignore[no-any-return]


@pytest.fixture
def relay(webui: WebUI, loopback_server: Callable[[Any], Any]) -> Iterator[tuple[ResolveGatedRelay, str]]:
    gated = ResolveGatedRelay(webui.url)
    gated.gate.set()  # the live list is quick: the saved model is absent from a complete, fresh list
    server = loopback_server(gated)
    try:
        yield gated, server.url
    finally:
        gated.resolve_gate.set()
        gated.corrected.set()


def updates(relay: GatedRelay) -> list[dict[str, Any]]:
    return [json.loads(body) for path, body in relay.posts if path == "/api/session/update"]


def send(driver: Any, relay: GatedRelay) -> dict[str, Any]:
    driver.find_element(By.ID, "msg").send_keys("hello")
    driver.find_element(By.ID, "btnSend").click()
    return dict(until(driver, lambda d: next((json.loads(body) for path, body in relay.posts
                                              if path == "/api/chat/start"), None), "the message was never sent"))


@pytest.mark.parametrize("policy", ["default", "preset"])
def test_webui_session_with_a_preview_id_loads(webui, relay, chromium, loopback_server, policy):
    gated, relay_url = relay
    # "default": the preset with its absent_model key removed, so the guard's default policy applies.
    table = preset("hermes-webui")
    if policy == "default":
        del table["absent_model"]
    base = loopback_server(AfterCorrection(create_app(relay_url, cfg=proxy_config(table)), gated.corrected)).url
    session = webui.new_session(PREVIEW)
    assert webui.stored(session) == PREVIEW
    open_session(chromium, base, session)
    # Both lists in the picker and nothing pending: then the app resolves the session's model for display
    # and corrects it (the order a quick provider gives; under load the read could otherwise come first).
    until(chromium, lambda d: not page_state(d)["pending"] and d.execute_script(
        "return [...document.querySelectorAll('#modelSelect option')].some(o => o.value === arguments[0])", ALIAS),
        "the model lists never landed")
    gated.resolve_gate.set()
    # The app's own correction to its first model always comes, and the server answers it.
    until(chromium, lambda d: updates(gated) and not page_state(d)["pending"], "the app's correction never came")
    if policy == "default":
        until(chromium, lambda d: webui.stored(session) != PREVIEW, "the fallback was never stored")
        assert webui.stored(session) == DEFAULT  # the preview id is gone from the session
        state = page_state(chromium)
        assert state["shown"] == DEFAULT and state["state"] == DEFAULT
        assert chromium.find_elements(By.CSS_SELECTOR, "option[data-hermes-unavailable]") == []  # never shown
        assert send(chromium, gated)["model"] == DEFAULT
        return
    until(chromium, lambda d: page_state(d)["shown"] == PREVIEW and page_state(d)["state"] == PREVIEW,
          "the saved model was never shown")
    option = chromium.find_element(By.CSS_SELECTOR, "#modelSelect option[data-hermes-unavailable]")
    # The select is hidden under the app's own dropdown: its text is read from the DOM.
    assert option.get_attribute("value") == PREVIEW
    assert option.get_attribute("textContent") == f"{PREVIEW} (unavailable)"
    until(chromium, lambda d: page_state(d)["chip"] == PREVIEW, "the app's own picker chip never showed it")
    assert webui.stored(session) == PREVIEW  # stored
    assert all(body["model"] == PREVIEW for body in updates(gated))  # the app's correction arrived as the kept model
    info = chromium.execute_script(
        "return fetch('/hermes-plugin/api/sessions/' + arguments[0] + '/model').then(r => r.json())", session)
    assert (info["availability"], info["absent_model"]) == ("absent", "keep")
    log = chromium.execute_script(
        "return fetch('/hermes-plugin/api/sessions/' + arguments[0] + '/model-log').then(r => r.json())", session)
    assert [(e["outcome"], e["reason"]) for e in log["entries"]][-1:] == [("keep", "model_absent_kept")]
    assert send(chromium, gated)["model"] == PREVIEW  # shown, sent and stored agree
    assert webui.stored(session) == PREVIEW
