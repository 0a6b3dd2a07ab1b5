"""The demo host on loopback with two FakeProviders, and a page driver with explicit waits only."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from support.open_webui import open_webui, open_webui_server  # noqa: F401  (fixtures of the real Open WebUI)
from webui_host import WebUI

from hermes_plugin.demo.app import LOCALAI_LIVE, OPENROUTER_LIVE, create_app, demo_providers
from hermes_plugin.pytest_plugin import ModelWrite, ModelWriteRecorder

WRITE_ROUTES = [r"/api/session/update", r"/api/session/new", r"/api/chat/start"]
WAIT = 20  # generous upper bound for a page to settle on a loaded 2-core machine; waits end as soon as met
# Terminal states of the page's own live fetch (demo.js sets them after the options are added).
LIVE_DONE = ("loaded", "cached", "failed", "stale")


class DemoPage:
    """One browser tab on the demo host: navigation, explicit waits, and reads of the page's state."""

    def __init__(self, driver: Any, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.handle: str = driver.current_window_handle

    def focus(self) -> DemoPage:
        self.driver.switch_to.window(self.handle)
        return self

    def open(self, session: str) -> DemoPage:
        self.focus().driver.get(f"{self.base_url}/?session={session}")
        self.wait_js("return !!window.demo")
        return self

    def js(self, script: str, *args: Any) -> Any:
        return self.focus().driver.execute_script(script, *args)

    def wait_js(self, script: str, *args: Any, timeout: float = WAIT, message: str = "") -> Any:
        """Wait until ``script`` returns something truthy (re-evaluated by WebDriverWait; no fixed sleeps)."""
        self.focus()
        return WebDriverWait(self.driver, timeout).until(
            lambda d: d.execute_script(script, *args), message or f"page never satisfied: {script}")

    def when_settled(self) -> None:
        """Resolve when the guard has nothing pending (``hermesGuard.whenSettled()``)."""
        self.focus().driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "(window.hermesGuard ? window.hermesGuard.whenSettled() : Promise.resolve()).then(() => done(true));")

    def wait_pending(self, provider: str) -> None:
        self.wait_js("return !!window.hermesGuard && hermesGuard.pending().includes(arguments[0])", provider)

    def finish(self, provider: str = "openrouter") -> None:
        """The page is done: its live fetch ended, the guard settled, and no host write is outstanding."""
        self.wait_js("return arguments[1].includes(window.demo && demo.liveState[arguments[0]])",
                     provider, list(LIVE_DONE), message=f"live fetch for {provider} never finished")
        self.when_settled()
        self.wait_js("return demo.inflightWrites === 0", message="a host write never completed")

    @property
    def value(self) -> str:
        return str(self.js("return document.getElementById('modelSelect').value"))

    def option_values(self, select_id: str = "modelSelect") -> list[str]:
        return list(self.js("return Array.from(document.getElementById(arguments[0]).options, o => o.value)",
                            select_id))

    def events(self, kind: str) -> list[Any]:
        return list(self.js("return demo.events.filter(e => e.kind === arguments[0]).map(e => e.detail)", kind))

    def pick_native(self, model: str) -> None:
        """Pick by typing the option's text into the focused select, as a keyboard user does.

        Selenium's ``Select`` fires untrusted (script) events for options, which no page may count as
        a user's pick; key presses are real input events."""
        select = self.focus().driver.find_element(By.ID, "modelSelect")
        label = self.js("return Array.from(arguments[0].options).find(o => o.value === arguments[1]).text", select, model)
        select.send_keys(label)
        self.wait_js("return document.getElementById('modelSelect').value === arguments[0]", model)

    def pick_in_picker(self, model: str) -> None:
        self.click("#modelPickerButton")
        self.click(f'.model-item[data-model="{model}"]')

    def pick_by_command(self, model: str) -> None:
        box = self.focus().driver.find_element(By.ID, "composerInput")
        box.send_keys(f"/model {model}\n")

    def switch_provider(self, provider: str) -> None:
        self.click("#modelPickerButton")
        select = self.driver.find_element(By.ID, "providerSelect")
        select.send_keys(self.js("return Array.from(arguments[0].options).find(o => o.value === arguments[1]).text",
                                 select, provider))
        self.wait_js("return document.getElementById('providerSelect').value === arguments[0]", provider)

    def click(self, css: str) -> None:
        self.focus()
        element = WebDriverWait(self.driver, WAIT).until(
            lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()), False),
            f"nothing clickable at {css}")
        element.click()


@dataclass
class DemoHost:
    """A demo host served on loopback, its store, its providers and the recorder of its model writes."""

    app: Any
    url: str
    store: Any
    openrouter: Any
    localai: Any
    writes: ModelWriteRecorder
    driver: Any

    def page(self, session: str | None = None) -> DemoPage:
        page = DemoPage(self.driver, self.url)
        return page.open(session) if session else page

    def new_tab(self, session: str) -> DemoPage:
        self.driver.switch_to.new_window("tab")
        return self.page(session)

    def stored(self, session: str) -> str | None:
        return self.store.model(session)

    def race_two_tabs(self, session: str, stored: str, pick: str) -> tuple[DemoPage, DemoPage, Any]:
        """Two tabs on ``session``: tab 1 picks ``pick``, tab 2 follows it, then tab 2 sends its naive automatic
        write of the model it had before (``stored``). Returns both tabs and what that write's view answered."""
        tab1 = self.page(session)
        tab1.finish()
        tab2 = self.new_tab(session)
        tab2.finish()
        tab1.pick_native(pick)
        self.writes.wait_for_writes(1, where=lambda w: w.model == pick and w.intent == "user")
        tab2.wait_js("return document.getElementById('modelSelect').value === arguments[0]", pick,
                     message="tab 2 never followed tab 1's pick")
        answer = tab2.focus().driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "demo.persistModel(arguments[0]).then(done, e => done(String(e)));", stored)
        tab2.finish()
        return tab1, tab2, answer

    def foreign_writes_passed(self, session: str, model: str) -> list[ModelWrite]:
        """Writes that reached the view proposing another model than ``model`` and were not kept back."""
        return [w for w in self.writes.writes_for(session)
                if w.model != model and w.decision not in ("keep",) and w.status is not None and w.status < 400]

    def model_log(self, session: str) -> list[dict[str, Any]]:
        response = requests.get(f"{self.url}/hermes-plugin/api/sessions/{session}/model-log", timeout=10)
        response.raise_for_status()
        return list(response.json()["entries"])


@pytest.fixture
def demo_providers_pair(fake_provider: Callable[..., Any]) -> tuple[Any, Any]:
    return fake_provider("openai", OPENROUTER_LIVE), fake_provider("ollama", LOCALAI_LIVE)


@pytest.fixture
def demo_host(tmp_path: Path, demo_providers_pair: tuple[Any, Any], loopback_server: Callable[[Any], Any],
              model_writes: ModelWriteRecorder, chromium: Any) -> Callable[..., DemoHost]:
    """Factory: ``demo_host(guard=True, **create_app_kwargs)`` -> a served DemoHost with a fresh data dir."""
    openrouter, localai = demo_providers_pair

    def make(guard: bool = True, **kwargs: Any) -> DemoHost:
        app = create_app(demo_providers(openrouter.base_url, localai.base_url), tmp_path / "data", guard=guard,
                         **kwargs)
        store = app.extensions["hermes_demo"]["store"]
        model_writes.attach(app, read_model=store.model, routes=WRITE_ROUTES)
        server = loopback_server(app)
        return DemoHost(app, server.url, store, openrouter, localai, model_writes, chromium)

    return make


@pytest.fixture(scope="module")
def webui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebUI]:
    """The real hermes-webui v0.50.227, one per test module (its state folder fresh for each)."""
    app = WebUI(tmp_path_factory.mktemp("hermes-webui")).start()
    try:
        yield app
    finally:
        app.stop()
