"""The real Open WebUI, alone (no guard), in headless Chromium: the overwrite it does after a provider blip.

A saved chat's model is missing from the provider's list for the moment the chat opens; the page then
shows the first available model, and the next send (provider back, page list not reloaded) is answered by
that model and rewrites the chat's stored model. This test pins that corruption, so it fails the day the
host stops doing it; the guarded counterpart runs the same steps through the proxy.
"""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait
from support.open_webui import MODELS, OpenWebUI

pytestmark = [pytest.mark.e2e, pytest.mark.open_webui]

CHAT_MODEL, OTHER_MODEL = MODELS
WAIT = 60  # upper bound for Open WebUI's page on a loaded 2-core machine; every wait ends once its condition holds
# Open WebUI 0.12.4's own markup: the model picker's trigger button (aria-label "Selected model: <label>")
# and the message editor (a contenteditable ProseMirror).
SELECTOR_BUTTON = "model-selector-model-button"
CHAT_INPUT = "chat-input"


class OpenWebUIPage:
    """One tab on Open WebUI, signed in with the server's admin token; explicit waits only."""

    def __init__(self, driver: Any, server: OpenWebUI) -> None:
        self.driver = driver
        self.server = server
        self.text_before_send = ""

    def wait(self, condition: Any, message: str) -> Any:
        return WebDriverWait(self.driver, WAIT).until(condition, message)

    def sign_in(self) -> None:
        # Auth is off: the page would sign in on /auth by itself; handing it the same admin token is quicker.
        self.driver.get(self.server.url + "/health")
        self.driver.execute_script("localStorage.token = arguments[0]", self.server.token)

    def open_chat(self, chat_id: str) -> None:
        self.driver.get(f"{self.server.url}/c/{chat_id}")
        self.wait(lambda d: d.execute_script(
            "const b = document.getElementById(arguments[0]);"
            "return !!b && (b.getAttribute('aria-label') || '').startsWith('Selected model: ')"
            " && !!document.getElementById(arguments[1])", SELECTOR_BUTTON, CHAT_INPUT),
            "the chat page never showed a selected model and a message input")
        self.close_changelog()

    def close_changelog(self) -> None:
        """A new admin sees "What's New" once; dismiss it as a person would.

        Checking once is enough: the app shell opens the modal before it renders the chat page we waited for.
        """
        buttons = self.driver.find_elements(By.XPATH, "//button[normalize-space()=\"Okay, Let's Go!\"]")
        if buttons:
            buttons[0].click()
            self.wait(lambda d: not d.find_elements(By.XPATH, "//button[normalize-space()=\"Okay, Let's Go!\"]"),
                      "the changelog did not close")

    def shown_model(self) -> str:
        label = self.driver.find_element(By.ID, SELECTOR_BUTTON).get_attribute("aria-label") or ""
        return label.removeprefix("Selected model: ")

    def pick(self, model: str) -> None:
        """Choose ``model`` in Open WebUI's own picker: open the listbox, click the option, see it shown."""
        self.driver.find_element(By.ID, SELECTOR_BUTTON).click()
        option = self.wait(lambda d: next(iter(d.find_elements(
            By.CSS_SELECTOR, f"#model-selector-list [role=option][data-value='{model}']")), None),
            f"no option {model!r} in the model list")
        option.click()
        self.wait(lambda d: self.shown_model() == model and not d.find_elements(By.ID, "model-selector-list"),
                  f"the picker never showed {model!r}")

    def page_text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def send(self, text: str) -> None:
        self.text_before_send = self.page_text()  # the saved history may already show the awaited reply's text
        editor = self.driver.find_element(By.ID, CHAT_INPUT)
        editor.click()
        editor.send_keys(text)
        editor.send_keys(Keys.ENTER)

    def wait_reply(self, text: str) -> None:
        """Wait for one more ``text`` than the page showed before the last send: the new reply, not the history."""
        before = self.text_before_send.count(text)
        self.wait(lambda d: self.page_text().count(text) > before, f"no new reply {text!r} on the page")


def test_open_webui_alone_overwrites_the_chat_model_after_a_provider_blip(open_webui: OpenWebUI,
                                                                           chromium: Any) -> None:
    chat_id = open_webui.create_chat([CHAT_MODEL])["id"]
    assert open_webui.stored_models(chat_id) == [CHAT_MODEL]

    open_webui.provider.models = [OTHER_MODEL]  # the blip: the chat's model is briefly missing
    page = OpenWebUIPage(chromium, open_webui)
    page.sign_in()
    page.open_chat(chat_id)
    assert page.shown_model() == OTHER_MODEL  # the page fell back to the first available model
    assert open_webui.stored_models(chat_id) == [CHAT_MODEL]  # opening alone writes nothing

    open_webui.provider.models = list(MODELS)  # the provider is back
    page.send("Hello again")
    page.wait_reply(f"Reply from {OTHER_MODEL}.")

    # The corruption: the other model answered, and the chat's stored model is now the other model.
    assert open_webui.provider.completions == [OTHER_MODEL]
    assert open_webui.stored_models(chat_id) == [OTHER_MODEL]


def test_open_webui_alone_keeps_the_chat_model_when_the_provider_lists_it(open_webui: OpenWebUI,
                                                                           chromium: Any) -> None:
    # The control for the test above: the same steps without the blip leave the chat's model alone.
    chat_id = open_webui.create_chat([CHAT_MODEL])["id"]
    page = OpenWebUIPage(chromium, open_webui)
    page.sign_in()
    page.open_chat(chat_id)
    assert page.shown_model() == CHAT_MODEL

    page.send("Hello again")
    page.wait_reply(f"Reply from {CHAT_MODEL}.")
    assert open_webui.provider.completions == [CHAT_MODEL]
    assert open_webui.stored_models(chat_id) == [CHAT_MODEL]


def test_open_webui_alone_stores_the_model_the_user_picks(open_webui: OpenWebUI, chromium: Any) -> None:
    # A deliberate switch is not the bug: the pick is what the next send stores.
    chat_id = open_webui.create_chat([CHAT_MODEL])["id"]
    page = OpenWebUIPage(chromium, open_webui)
    page.sign_in()
    page.open_chat(chat_id)
    assert page.shown_model() == CHAT_MODEL

    page.pick(OTHER_MODEL)
    assert open_webui.stored_models(chat_id) == [CHAT_MODEL]  # a pick alone writes nothing
    page.send("Hello again")
    page.wait_reply(f"Reply from {OTHER_MODEL}.")
    assert open_webui.provider.completions == [OTHER_MODEL]
    assert open_webui.stored_models(chat_id) == [OTHER_MODEL]
