"""Undo through ``hermes-plugin proxy --preset hermes-webui`` in front of the real hermes-webui v0.50.227.

The app "corrects" a session whose model no list offers to its first model, without the user. Behind
the proxy the guard lets that through (the model is confirmed absent) and the page says so, with Undo;
Undo makes the proxy replay the app's own model write with the browser's credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from webui_host import ALIAS, DEFAULT, SAVED, CorrectionFirst, GatedRelay, WebUI

from hermes_plugin.presets import preset
from hermes_plugin.proxy import create_app, proxy_config

pytestmark = pytest.mark.e2e

WAIT = 30  # upper bound on a loaded 2-core machine; every wait ends as soon as its condition holds
RETIRED = "deepseek-coder-retired"  # in no list the app serves
BOX = ".hermes-notice-box"


def until(driver: Any, condition: Callable[[Any], Any], message: str) -> Any:
    return WebDriverWait(driver, WAIT).until(condition, message)


def notice(driver: Any) -> str | None:
    return driver.execute_script(f"const b = document.querySelector('{BOX}'); return b && b.textContent")  # type: ignore[no-any-return]


def test_webui_correction_is_told_and_undone_through_the_proxy(
        webui: WebUI, chromium: Any, loopback_server: Callable[[Any], Any]) -> None:
    relay = GatedRelay(webui.url)
    relay.gate.set()  # no slow provider here: the subject is what happens after the lists landed
    relay_url = loopback_server(relay).url
    # The guard's default absent-model policy: the preset's own ("keep") would keep the retired id instead of
    # letting the correction through (tests/e2e/test_webui_absent_model.py).
    table = {**preset("hermes-webui"), "absent_model": "fallback"}
    base = loopback_server(CorrectionFirst(create_app(relay_url, cfg=proxy_config(table)))).url
    session = webui.new_session(RETIRED)
    chromium.get(base + "/api/settings")
    chromium.execute_script("localStorage.setItem('hermes-webui-session', arguments[0])", session)
    chromium.get(base + "/")
    text = until(chromium, notice, "the page never said the model was changed")
    assert text.startswith(f"Model changed to {DEFAULT} because {RETIRED} is no longer offered — Undo")
    assert webui.stored(session) == DEFAULT  # the app's own correction went through, told
    chromium.find_element(By.CSS_SELECTOR, f'{BOX} [data-hermes-action="undo"]').click()
    until(chromium, lambda d: (notice(d) or "").startswith(f"Restored {RETIRED}."), "undo never finished")
    assert webui.stored(session) == RETIRED  # the app's own write, replayed by the proxy
    replayed = [body for path, body in relay.posts if path == "/api/session/update"]
    assert f'{{"session_id": "{session}", "model": "{RETIRED}"}}'.encode() in replayed  # the proxy's replay
    # The app's own picker and state follow the restored model (shown as unavailable), so nothing re-corrects it.
    until(chromium, lambda d: d.execute_script("return S.session.model") == RETIRED, "the app's state never followed")
    assert webui.stored(session) == RETIRED


def test_webui_replacement_prompt_through_the_proxy(
        webui: WebUI, chromium: Any, loopback_server: Callable[[Any], Any]) -> None:
    relay = GatedRelay(webui.url)
    relay.gate.set()
    relay_url = loopback_server(relay).url
    table = {**preset("hermes-webui"), "model_replacements": {RETIRED: SAVED}}
    base = loopback_server(create_app(relay_url, cfg=proxy_config(table))).url
    session = webui.new_session(RETIRED)
    chromium.get(base + "/api/settings")
    chromium.execute_script("localStorage.setItem('hermes-webui-session', arguments[0])", session)
    chromium.get(base + "/")
    text = until(chromium, notice, "the page never asked")
    assert f"Your saved model {RETIRED} is no longer offered." in text
    choice = chromium.find_element(By.CSS_SELECTOR, f"{BOX} select")
    assert choice.get_attribute("value") == SAVED  # the suggestion, preselected
    until(chromium, lambda d: not d.execute_script("return hermesGuard.pending().length + hermesGuard.state().held"),
          "the page never settled")
    assert webui.stored(session) == RETIRED  # the app's correction was kept back: nothing written yet
    chromium.find_element(By.CSS_SELECTOR, f'{BOX} [data-hermes-action="switch"]').click()
    until(chromium, lambda d: (notice(d) or "").startswith(f"Model changed to {SAVED}."), "the switch never finished")
    assert webui.stored(session) == SAVED
    until(chromium, lambda d: d.execute_script("return document.getElementById('modelSelect').value") == ALIAS,
          "the app's picker never showed the answer")
