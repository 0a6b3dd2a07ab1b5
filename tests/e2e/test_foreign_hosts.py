"""Foreign-style hosts (tests/e2e/foreign_hosts.py): each habit first shown failing with the previous guard
script, then holding with the current one. The server-side guard is on in both runs; only the script differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from foreign_hosts import FALLBACK, STORED, Chats, make_host
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

from hermes_plugin import script

pytestmark = pytest.mark.e2e

WAIT = 20
PREVIOUS_GUARD = (Path(__file__).parent / "previous-guard.js").read_text()
ALIAS_RULE = r"^models/(?P<provider>[^/]+)/(?P<model>[^/]+)$"


@pytest.fixture(params=["previous", "current"])
def guard_script(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with the previous guard script (expecting the bug) and with the current one."""
    if request.param == "previous":
        monkeypatch.setattr(script, "served", lambda readable: PREVIOUS_GUARD)
    return str(request.param)


@pytest.fixture
def chats() -> Iterator[Chats]:
    state = Chats()
    yield state
    state.gate.set()  # let a parked live request finish before the server stops


@pytest.fixture
def host(chats: Chats, loopback_server: Callable[[Any], Any]) -> Callable[..., str]:
    def start(page: str, ui: dict[str, Any] | None = None, **config: Any) -> str:
        return str(loopback_server(make_host(chats, page, ui, **config)).url)

    return start


def until(driver: Any, condition: Callable[[Any], Any], message: str) -> Any:
    return WebDriverWait(driver, WAIT).until(condition, message)


def js(driver: Any, source: str, *args: Any) -> Any:
    return driver.execute_script(source, *args)


def settled(driver: Any) -> bool:
    return bool(js(driver, "return !!window.liveDone && !!window.hermesGuard && hermesGuard.pending().length === 0"
                           " && hermesGuard.state().held === 0"))


def shown(driver: Any) -> str:
    return str(js(driver, "return document.getElementById('chatModel').value"))


def load_after_fallback(driver: Any, base: str, chats: Chats) -> None:
    """Open chat c1 (stored model only in the live list); the live list lands after the page's fallback."""
    driver.get(base + "/chat/c1")
    until(driver, lambda d: js(d, "return !!window.booted"), "the page never booted")
    chats.gate.set()
    until(driver, settled, "the page never settled")


def wait_for_stored_model_shown(driver: Any, value: str, guard_script: str) -> str:
    """The current guard must show ``value``; the previous one is given the same time and ends elsewhere."""
    if guard_script == "current":
        until(driver, lambda d: shown(d) == value, f"the picker never showed {value}")
    else:  # the same explicit point: options landed, nothing pending, a frame and a task later
        driver.execute_async_script("const done = arguments[0];"
                                    "requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done)))")
    return shown(driver)


def send_and_read(driver: Any, chats: Chats) -> dict[str, Any]:
    driver.find_element(By.ID, "send").click()
    until(driver, lambda d: js(d, "return !!window.sent"), "the message was never sent")
    return chats.messages[-1]


# -- ids spelled differently ------------------------------------------------------------------------


def test_decorated_option_values_show_the_stored_model(chromium, host, chats, guard_script):
    driver = chromium
    base = host("classic", {"decorate": True}, HERMES_PLUGIN_MODEL_ALIASES=[ALIAS_RULE],
                HERMES_PLUGIN_SESSION_URLS=[{"url": r"/v1/chats/(?P<session>[^/?]+)$", "model": "chat.model"}])
    load_after_fallback(driver, base, chats)
    value = wait_for_stored_model_shown(driver, "models/acme/" + STORED, guard_script)
    assert chats.stored["c1"] == STORED  # the server guard kept it either way
    if guard_script == "previous":
        assert value == "models/acme/" + FALLBACK  # the previous guard looked for the exact id only
    else:
        assert value == "models/acme/" + STORED
        assert js(driver, "return chat.model") == "models/acme/" + STORED  # the page's own state followed


# -- no session route, and a host that restores its old value after adding options ---------------------


def test_no_session_route_and_value_restore_after_fill(chromium, host, chats, guard_script):
    driver = chromium
    base = host("classic", {"restore": True})  # only the README's settings: no session URL declared
    load_after_fallback(driver, base, chats)
    value = wait_for_stored_model_shown(driver, STORED, guard_script)
    if guard_script == "previous":
        assert value == FALLBACK  # never learnt the session: the fallback stays on screen
        return
    assert value == STORED
    assert js(driver, "return chat.model") == STORED  # the host's change handler ran
    assert send_and_read(driver, chats)["model"] == STORED  # a message sent right after load carries it
    assert chats.stored["c1"] == STORED


def test_session_named_only_by_the_pages_route(chromium, host, chats, guard_script):
    """No session URL and no write before the live list lands: the page's own route (/chat/<cid>, the
    write route's session name) tells the guard which session it shows."""
    driver = chromium
    base = host("classic", {"restore": True, "deferSave": True})
    load_after_fallback(driver, base, chats)
    value = wait_for_stored_model_shown(driver, STORED, guard_script)
    if guard_script == "previous":
        assert value == FALLBACK
        return
    assert value == STORED and js(driver, "return chat.model") == STORED
    assert chats.stored["c1"] == STORED


# -- picks the browser reports with untrusted events --------------------------------------------------


def count_writes(driver: Any) -> None:
    """``window.writes``: the page's model writes whose response has arrived (counted around the guard's fetch)."""
    js(driver, "window.writes = 0; const f = window.fetch;"
               "window.fetch = (...a) => f(...a).then(r => { if (a[1] && a[1].method === 'PUT') writes++; return r; })")


def open_settled(driver: Any, base: str, chats: Chats, chat: str = "c2") -> None:
    chats.gate.set()
    driver.get(f"{base}/chat/{chat}")
    until(driver, settled, "the page never settled")


@pytest.mark.parametrize("click", ["real", "scripted"])
def test_custom_dropdown_calling_onchange_is_stored(chromium, host, chats, guard_script, click):
    driver = chromium
    base = host("dropdown")  # no HERMES_PLUGIN_PICKER: the guard is not told where the dropdown is
    open_settled(driver, base, chats)
    assert shown(driver) == FALLBACK
    count_writes(driver)
    row = driver.find_element(By.CSS_SELECTOR, f".menu-row[data-id='{STORED}']")
    if click == "real":
        row.click()
    else:  # no trusted event at all (a keyboard shortcut's handler, a command): only the page-state rule
        js(driver, "arguments[0].click()", row)
    until(driver, lambda d: js(d, "return writes") >= 1, "the pick was never written")
    if guard_script == "previous":
        assert chats.stored["c2"] == FALLBACK  # classed automatic: the server kept the old model
    else:
        until(driver, lambda d: chats.stored["c2"] == STORED, "the pick was not stored")
        assert shown(driver) == STORED


@pytest.mark.parametrize("tool", ["selenium-select", "playwright-style"])
def test_test_tool_picks_are_stored(chromium, host, chats, guard_script, tool):
    driver = chromium
    base = host("classic")
    open_settled(driver, base, chats)
    assert shown(driver) == FALLBACK
    count_writes(driver)
    if tool == "selenium-select":
        Select(driver.find_element(By.ID, "chatModel")).select_by_value(STORED)
    else:  # what Playwright's select_option does: set the value, dispatch untrusted input and change
        js(driver, "const s = document.getElementById('chatModel'); s.value = arguments[0];"
                   "s.dispatchEvent(new Event('input', {bubbles: true}));"
                   "s.dispatchEvent(new Event('change', {bubbles: true}))", STORED)
    until(driver, lambda d: js(d, "return writes") >= 1, "the pick was never written")
    if guard_script == "previous":
        assert chats.stored["c2"] == FALLBACK  # the pick was lost
    else:
        assert chats.stored["c2"] == STORED
        assert shown(driver) == STORED


# -- a page that re-renders the select from its own state -----------------------------------------------


def test_react_style_rerender_keeps_the_stored_model(chromium, host, chats, guard_script):
    driver = chromium
    base = host("react")
    load_after_fallback(driver, base, chats)
    value = wait_for_stored_model_shown(driver, STORED, guard_script)
    if guard_script == "previous":
        assert value == FALLBACK
        return
    assert js(driver, "return state.model") == STORED  # the state the page renders from followed
    js(driver, "setState({title: 'renamed'})")  # one more render from state
    until(driver, lambda d: js(d, "return renders") >= 3, "no re-render")
    assert shown(driver) == STORED
    assert send_and_read(driver, chats)["model"] == STORED
    assert chats.stored["c1"] == STORED
