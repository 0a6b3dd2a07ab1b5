"""The replacement prompt on hosts written the way another team would (tests/e2e/foreign_hosts.py).

- A React-style page that re-renders its select from state and "fixes" a stale model by saving the
  first option: the save is kept back, the user is asked, and the answer reaches the page's own state.
- A page that never writes on load (it defers its fix): the guard still asks, from the session's
  stored model alone; nothing is written until the user answers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from foreign_hosts import STORED, Chats, make_host
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.e2e

WAIT = 20
OLD = "acme-old"  # retired: in no list the host serves
BOX = ".hermes-notice-box"


@pytest.fixture
def chats() -> Iterator[Chats]:
    state = Chats(stored={"c3": OLD})
    state.gate.set()  # no slow provider: the subject is what happens once the lists are in
    yield state


@pytest.fixture
def host(chats: Chats, loopback_server: Callable[[Any], Any]) -> Callable[..., str]:
    def start(page: str, ui: dict[str, Any] | None = None) -> str:
        app = make_host(chats, page, ui, HERMES_PLUGIN_MODEL_REPLACEMENTS={OLD: STORED})
        guard = app.extensions["hermes_plugin"].guard

        @guard.session_model_setter
        def set_model(chat_id: str, model: str) -> None:
            chats.stored[chat_id] = model

        return str(loopback_server(app).url)

    return start


def until(driver: Any, condition: Callable[[Any], Any], message: str) -> Any:
    return WebDriverWait(driver, WAIT).until(condition, message)


def prompt(driver: Any) -> str | None:
    return driver.execute_script(f"const b = document.querySelector('{BOX}'); return b && b.textContent")  # type: ignore[no-any-return]


def test_react_page_asks_and_the_answer_reaches_its_state(chromium: Any, host: Callable[..., str],
                                                          chats: Chats) -> None:
    base = host("react")
    chromium.get(base + "/chat/c3")
    text = until(chromium, prompt, "the page never asked")
    assert f"Your saved model {OLD} is no longer offered." in text
    assert chromium.find_element(By.CSS_SELECTOR, f"{BOX} select").get_attribute("value") == STORED
    until(chromium, lambda d: d.execute_script("return !!window.liveDone && hermesGuard.state().held === 0"),
          "the page never settled")
    assert chats.stored["c3"] == OLD  # the page's own "fix" was kept back
    chromium.find_element(By.CSS_SELECTOR, f'{BOX} [data-hermes-action="switch"]').click()
    until(chromium, lambda d: (prompt(d) or "").startswith(f"Model changed to {STORED}."), "the switch never finished")
    assert chats.stored["c3"] == STORED
    until(chromium, lambda d: d.execute_script("return state.model") == STORED, "the page's state never followed")


def test_a_page_that_never_writes_is_asked_too(chromium: Any, host: Callable[..., str], chats: Chats) -> None:
    base = host("classic", {"deferSave": True})
    chromium.get(base + "/chat/c3")
    until(chromium, prompt, "the page never asked")
    assert chromium.find_element(By.CSS_SELECTOR, f"{BOX} select").get_attribute("value") == STORED
    chromium.find_element(By.CSS_SELECTOR, f'{BOX} [data-hermes-action="keep"]').click()
    until(chromium, lambda d: prompt(d) is None, "the prompt stayed")
    assert chats.stored["c3"] == OLD  # keep: nothing written
