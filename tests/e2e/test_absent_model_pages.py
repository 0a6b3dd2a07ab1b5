"""A stored model in no catalogue on a page that saves its own correction at once (tests/e2e/session_hosts.py,
"correcting"), under both absent-model policies of the server guard.

``fallback`` (the default): the page's correction is let through, the preview id is gone from the chat and
the page shows and sends its first model. ``keep``: the server keeps the stored model, the picker shows it as
itself marked unavailable, the page's own state follows, the next send carries it, and a pick made with
Selenium's ``Select`` (the user's) is still stored.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from session_hosts import Convos, make_host
from test_session_hosts import js, send, settled, shown, until

pytestmark = pytest.mark.e2e

PREVIEW = "alpha-3-preview"


@pytest.fixture
def convos() -> Iterator[Convos]:
    state = Convos()
    yield state
    state.release()


@pytest.mark.parametrize("policy", ["fallback", "keep"])
def test_correcting_page_and_a_model_in_no_catalogue(chromium, convos, loopback_server, policy):
    driver = chromium
    convos.stored.update({"c1": PREVIEW})
    convos.live = ["alpha-1", "beta-2"]  # the provider's complete live list: the stored model is not in it
    convos.live_gate.set()
    app = make_host(convos, "correcting", HERMES_PLUGIN_ABSENT_MODEL=policy)
    base = loopback_server(app).url
    driver.get(base + "/chat/c1")
    until(driver, lambda d: settled(d) and convos.writes, "the page's correction never reached the server")
    if policy == "fallback":
        until(driver, lambda d: convos.stored["c1"] == "alpha-1", "the correction was never stored")
        assert shown(driver) == "alpha-1" and js(driver, "return conv.model_id") == "alpha-1"
        assert driver.find_elements(By.CSS_SELECTOR, "option[data-hermes-unavailable]") == []
        send(driver)
        assert convos.turns[-1] == ("c1", "alpha-1")
        return
    until(driver, lambda d: shown(d) == PREVIEW and js(d, "return conv.model_id") == PREVIEW,
          "the stored model was never shown")
    option = driver.find_element(By.CSS_SELECTOR, "#picker option[data-hermes-unavailable]")
    assert option.text == f"{PREVIEW} (unavailable)"
    assert convos.stored["c1"] == PREVIEW
    assert all(model == PREVIEW for _, model in convos.writes)  # the correction reached the view as the kept model
    # Sent by the page's own handler; a script click, so no pointer elsewhere stands just before the pick below
    # (a recent click outside the picker explains a change as the page's own, by the guard's rule).
    js(driver, "document.getElementById('send').click()")
    until(driver, lambda d: js(d, "return turns") == 1, "the message was never sent")
    assert convos.turns[-1] == ("c1", PREVIEW)  # shown, sent and stored agree
    Select(driver.find_element(By.ID, "picker")).select_by_value("beta-2")  # the user's pick
    until(driver, lambda d: convos.stored["c1"] == "beta-2", "the user's pick was never stored")
