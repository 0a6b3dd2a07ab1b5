"""The real Open WebUI behind ``hermes-plugin proxy --preset open-webui``, in headless Chromium.

The same steps as test_open_webui_real.py (where the app alone overwrites the chat's model), through the
proxy: the chat's model briefly missing when the chat opens, then a send, leaves the stored, shown and
answering model all the chat's; a pick in Open WebUI's own custom picker, then a send, is stored as the
user's choice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from support.open_webui import MODELS, OpenWebUI
from test_open_webui_real import OpenWebUIPage

from hermes_plugin.proxy import create_app

pytestmark = [pytest.mark.e2e, pytest.mark.open_webui]

CHAT_MODEL, OTHER_MODEL = MODELS
PREFIX = "/hermes-plugin"


@pytest.fixture
def guarded(open_webui: OpenWebUI, loopback_server: Callable[[Any], Any]) -> OpenWebUI:
    """The same Open WebUI, reached through the proxy with the open-webui preset (its URL is the proxy's)."""
    proxy = loopback_server(create_app(open_webui.url, preset="open-webui"))
    return dataclasses.replace(open_webui, url=proxy.url, http=requests.Session())


def model_log(server: OpenWebUI, chat_id: str) -> list[dict[str, Any]]:
    response = server.api("GET", f"{PREFIX}/api/sessions/{chat_id}/model-log")
    assert response.status_code == 200, response.text
    return list(response.json()["entries"])


def open_page(driver: Any, server: OpenWebUI, chat_id: str) -> OpenWebUIPage:
    page = OpenWebUIPage(driver, server)
    page.sign_in()
    # A real sign-in sets the token cookie too; the guard's own reads of the proxy are authorised by it.
    driver.add_cookie({"name": "token", "value": server.token, "path": "/"})
    driver.get(f"{server.url}/c/{chat_id}")
    # The picker adapter is done with the chat when it shows the saved model or has marked it unavailable;
    # only then is the page as a person finds it (the changelog is dismissed after, as a person would).
    page.wait(lambda d: d.execute_script(
        "const s = window.hermesGuard?.state(), p = window.hermesPicker?.state();"
        "return !!s && !!p && s.session === arguments[0] && !!s.model && !p.busy && !s.held"
        " && (window.hermesPicker.shownModel() === s.model"
        "     || document.querySelector('[data-hermes-unavailable]')?.getAttribute('data-hermes-unavailable') === s.model)"
        " && !!document.getElementById('chat-input')", chat_id),
        "the picker adapter never settled on the chat's saved model")
    page.close_changelog()
    return page


def test_chat_model_missing_at_load_then_a_send_keeps_the_chat_model(guarded: OpenWebUI, chromium: Any) -> None:
    chat_id = guarded.create_chat([CHAT_MODEL])["id"]
    guarded.provider.models = [OTHER_MODEL]  # the blip: the chat's model is briefly missing
    page = open_page(chromium, guarded, chat_id)
    # The picker cannot offer the saved model: the adapter says so instead of leaving the first model unexplained.
    assert chromium.execute_script(
        "return document.querySelector('[data-hermes-unavailable]')?.getAttribute('data-hermes-unavailable')"
    ) == CHAT_MODEL
    assert "unavailable" in chromium.find_element(By.CSS_SELECTOR, ".hermes-picker-notice").text

    guarded.provider.models = list(MODELS)  # the provider is back; the page's list is still the blip's
    page.send("Hello again")
    # The saved exchange already shows one reply from the chat's model: wait for the second.
    page.wait(lambda d: d.find_element(By.TAG_NAME, "body").text.count(f"Reply from {CHAT_MODEL}.") == 2,
              "no new reply from the chat's model")

    assert guarded.provider.completions == [CHAT_MODEL]  # answered by the chat's model
    assert guarded.stored_models(chat_id) == [CHAT_MODEL]  # stored: the chat's model
    page.wait(lambda d: page.shown_model() == CHAT_MODEL, "the picker never showed the chat's model again")
    kept = [entry for entry in model_log(guarded, chat_id) if entry["outcome"] == "keep"]
    assert kept and all(entry["old"] == CHAT_MODEL and entry["new"] == CHAT_MODEL for entry in kept)
    assert guarded.stored_models(chat_id) == [CHAT_MODEL]  # the page's own saves after the reply kept it too


def test_a_pick_in_the_custom_picker_then_a_send_is_stored_as_the_users(guarded: OpenWebUI, chromium: Any) -> None:
    chat_id = guarded.create_chat([CHAT_MODEL])["id"]
    page = open_page(chromium, guarded, chat_id)
    assert page.shown_model() == CHAT_MODEL

    page.pick(OTHER_MODEL)
    page.send("Hello again")  # typing takes longer than any gesture window: the pick is held, not timed
    page.wait_reply(f"Reply from {OTHER_MODEL}.")

    assert guarded.provider.completions == [OTHER_MODEL]
    assert guarded.stored_models(chat_id) == [OTHER_MODEL]
    changes = [entry for entry in model_log(guarded, chat_id) if entry["new"] != entry["old"]]
    assert [(e["old"], e["new"], e["intent"], e["outcome"], e["reason"]) for e in changes] == [
        (CHAT_MODEL, OTHER_MODEL, "user", "pass", "user")]
