"""Foreign-style hosts (tests/e2e/session_hosts.py) for the later bugs of the class, each run with today's
guard as main serves it (the core alone: the bug) and with the sessions part loaded (the fix). The
server-side guard is on in both runs.

* a chat switch whose model lookup is slow: the picker shows "loading", never the previous chat's model,
  and a send made meanwhile carries the new chat's stored model;
* a stored model in no catalogue: shown as itself, marked unavailable, and the next send carries it;
* a re-apply makes no write: the page's own change handler runs and its write is answered locally;
* a pick followed at once by a reload is stored; a picker rebuilt from scratch gets the stored model back;
  one bare id under two providers stays with the provider the user chose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait
from session_hosts import ALIAS_RULE, Convos, make_host

from hermes_plugin import inject

pytestmark = pytest.mark.e2e

WAIT = 20


@pytest.fixture(params=["today", "sessions"])
def guard(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``today``: the core guard alone (the bug); ``sessions``: the core and its sessions part."""
    if request.param == "today":
        monkeypatch.setattr(inject, "optional_scripts", lambda config: [])
    return str(request.param)


@pytest.fixture
def convos() -> Iterator[Convos]:
    state = Convos()
    yield state
    state.release()  # let parked requests finish before the server stops


@pytest.fixture
def host(convos: Convos, loopback_server: Callable[[Any], Any]) -> Callable[..., str]:
    def start(page: str, ui: dict[str, Any] | None = None, **config: Any) -> str:
        return str(loopback_server(make_host(convos, page, ui, **config)).url)

    return start


def until(driver: Any, condition: Callable[[Any], Any], message: str, state: Callable[[], Any] | None = None) -> Any:
    """Wait for ``condition``; a timeout says ``message`` and, given ``state``, what the page and host held then."""
    try:
        return WebDriverWait(driver, WAIT).until(condition, message)
    except TimeoutException:
        if state is None:
            raise
        raise TimeoutException(f"{message}; state then: {state()!r}") from None


def js(driver: Any, source: str, *args: Any) -> Any:
    return driver.execute_script(source, *args)


def shown(driver: Any) -> str:
    return str(js(driver, "return document.getElementById('picker').value"))


def settled(driver: Any) -> bool:
    return bool(js(driver, "return !!window.booted && !!window.hermesGuard && hermesGuard.pending().length === 0"
                           " && hermesGuard.state().held === 0"))


def a_frame_and_a_task_later(driver: Any) -> None:
    """An explicit point after everything queued now has run: two frames, then a task."""
    driver.execute_async_script("const done = arguments[0];"
                                "requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(done)))")


def send(driver: Any) -> None:
    before = js(driver, "return turns")
    driver.find_element(By.ID, "send").click()
    until(driver, lambda d: js(d, "return turns") > before, "the message was never sent")


def open_fast_chat(driver: Any, convos: Convos, host: Callable[..., str], page: str) -> None:
    """The chat "fast" open and settled; "slow" (whose model lookup waits at the gate) one click away."""
    convos.stored.update({"fast": "alpha-1", "slow": "beta-2"})
    driver.get(host(page) + "/chat/fast")
    until(driver, lambda d: settled(d) and js(d, "return window.opened") == "fast", "the first chat never loaded")


def click_slow_chat(driver: Any) -> None:
    driver.find_element(By.CSS_SELECTOR, "[data-conv='slow']").click()  # its lookup waits at the gate
    until(driver, lambda d: js(d, "return convId") == "slow", "the page never switched")


# -- a chat switch whose model lookup is slow ------------------------------------------------------------


def test_switch_to_a_slow_chat_shows_pending_and_the_send_carries_its_model(chromium, host, convos, guard):
    driver = chromium
    open_fast_chat(driver, convos, host, "switch")
    assert shown(driver) == "alpha-1"
    click_slow_chat(driver)
    a_frame_and_a_task_later(driver)
    during = shown(driver)
    driver.find_element(By.ID, "send").click()  # a send while the new chat's model is unknown
    convos.slow_gate.set()
    until(driver, lambda d: js(d, "return turns") == 1 and js(d, "return window.opened") == "slow",
          "the send or the switch never finished")
    sent = convos.turns[-1]
    if guard == "today":
        assert during == "alpha-1"  # the previous chat's model, shown as this one's
        assert sent == ("slow", "alpha-1")  # and the send named it
        return
    assert during == ""  # the pending option: not the previous chat's model
    assert sent == ("slow", "beta-2")  # the send waited for the stored model and carried it
    assert convos.stored["slow"] == "beta-2" and convos.writes == []
    until(driver, lambda d: shown(d) == "beta-2", "the picker never showed the new chat's model")
    assert driver.find_elements(By.CSS_SELECTOR, "option[data-hermes-pending], .hermes-notice") == []


def test_late_answer_about_the_chat_left_does_not_bring_it_back(chromium, host, convos, guard):
    driver = chromium
    open_fast_chat(driver, convos, host, "switch")
    js(driver, "pollConv()")  # a poll of the open chat, answered late
    click_slow_chat(driver)
    convos.poll_gate.set()  # the poll about the chat left lands while the new one is still loading
    until(driver, lambda d: js(d, "return window.polled") == 1, "the poll never landed")
    a_frame_and_a_task_later(driver)
    during, model = shown(driver), js(driver, "return hermesGuard.state().model")
    convos.slow_gate.set()
    until(driver, lambda d: js(d, "return window.opened") == "slow" and shown(d) == "beta-2", "the switch never ended")
    if guard == "today":
        assert (during, model) == ("alpha-1", "alpha-1")  # the chat left, shown and taken as current again
        return
    assert (during, model) == ("", None)  # still "loading": nothing pretends to know
    assert convos.writes == []


# -- a stored model in no catalogue ------------------------------------------------------------------------


@pytest.mark.parametrize("stored", ["custom:acme/preview-1", "alpha-2-preview"])
def test_model_in_no_catalogue_is_shown_as_itself_and_sent(chromium, host, convos, guard, stored):
    driver = chromium
    convos.stored.update({"c1": stored})
    convos.live = ["alpha-1", "beta-2"]  # the provider's live list, complete: the stored model is not in it
    convos.live_gate.set()
    base = host("switch", {"live": True})
    driver.get(base + "/chat/c1")
    until(driver, lambda d: settled(d) and js(d, "return window.opened") == "c1", "the chat never loaded")
    if guard == "sessions":
        until(driver, lambda d: shown(d) == stored, "the stored model was never shown")
    else:
        a_frame_and_a_task_later(driver)
    value = shown(driver)
    send(driver)
    if guard == "today":
        assert value == "alpha-1"  # the page's default stood in for the stored model
        assert convos.turns[-1] == ("c1", "alpha-1")  # and the send named the default
        return
    option = driver.find_element(By.CSS_SELECTOR, "option[data-hermes-unavailable]")
    assert option.get_attribute("value") == stored and option.text == f"{stored} (unavailable)"
    assert convos.turns[-1] == ("c1", stored)  # shown, sent and stored agree
    assert convos.stored["c1"] == stored
    assert convos.writes == []  # showing it wrote nothing


# -- a re-apply makes no write ------------------------------------------------------------------------------


def test_reapply_makes_no_write_and_the_page_follows(chromium, host, convos, guard):
    driver = chromium
    convos.stored.update({"c1": "gamma-live"})
    convos.live = ["alpha-1", "gamma-live"]  # the stored model is only in the live list, which is late
    base = host("persist")
    driver.get(base + "/chat/c1")
    until(driver, lambda d: js(d, "return !!window.booted"), "the page never booted")
    js(driver, "window.reapplied = 0; document.addEventListener('hermes:reapplied', () => reapplied++)")
    convos.live_gate.set()
    until(driver, lambda d: js(d, "return !!window.liveDone") and settled(d), "the live list never landed")
    until(driver, lambda d: shown(d) == "gamma-live", "the stored model was never re-applied")
    assert js(driver, "return reapplied") >= 1
    assert js(driver, "return conv.model_id") == "gamma-live"  # the page's own handler ran
    a_frame_and_a_task_later(driver)
    if guard == "today":
        until(driver, lambda d: convos.writes, "the re-apply's write never came")
        assert convos.writes == [("c1", "gamma-live")]  # one write the page would not have made
        return
    assert convos.writes == []  # 0 extra writes per re-apply
    send(driver)
    assert convos.turns[-1] == ("c1", "gamma-live")


# -- picks that survive reloads and rebuilds ----------------------------------------------------------------


@pytest.mark.parametrize("order", ["chat-first", "lists-first"])
def test_pick_followed_at_once_by_a_reload_is_stored(chromium, host, convos, guard, order):
    driver = chromium
    convos.stored.update({"c1": "alpha-1"})
    base = host("batched", {"catalogFirst": order == "lists-first"})
    driver.get(base + "/chat/c1")
    until(driver, settled, "the page never settled")
    Select(driver.find_element(By.ID, "picker")).select_by_value("beta-2")
    driver.refresh()  # before the page's 3 s batch saved it
    until(driver, lambda d: settled(d) and js(d, "return hermesGuard.state().session") == "c1",
          "the reloaded page never settled")
    if guard == "today":
        a_frame_and_a_task_later(driver)
        assert shown(driver) == "alpha-1" and convos.stored["c1"] == "alpha-1"  # the pick is gone
        return
    until(driver, lambda d: convos.stored["c1"] == "beta-2", "the pick was never stored")
    assert shown(driver) == "beta-2"
    assert js(driver, "return sessionStorage.getItem('hermes-guard:picks')") == "{}"


def test_pick_saved_late_by_the_page_is_stored(chromium, host, convos, guard):
    """A page that saves picks in batches writes 3 s after the pick: still the user's pick."""
    driver = chromium
    convos.stored.update({"c1": "alpha-1"})
    base = host("batched")
    driver.get(base + "/chat/c1")
    until(driver, settled, "the page never settled")
    Select(driver.find_element(By.ID, "picker")).select_by_value("beta-2")
    until(driver, lambda d: js(d, "return window.saved") == 1, "the page never saved")
    if guard == "today":
        assert convos.stored["c1"] == "alpha-1"  # classed automatic once the pick was 3 s old: kept back
        return
    assert convos.stored["c1"] == "beta-2" and shown(driver) == "beta-2"


def test_picker_rebuilt_from_scratch_gets_the_stored_model_back(chromium, host, convos, guard):
    """Emptied and filled again, the picker shows its first option; the stored model comes back. The core
    already did this before its sessions part (kept as a check that the sessions part keeps it)."""
    driver = chromium
    convos.stored.update({"c1": "beta-2"})
    base = host("batched")
    driver.get(base + "/chat/c1")
    until(driver, lambda d: settled(d) and shown(d) == "beta-2", "the page never settled")
    driver.find_element(By.ID, "refresh").click()  # the picker is emptied and filled again: first option shown
    until(driver, lambda d: js(d, "return window.refreshed") == 1, "the picker was never rebuilt")
    until(driver, lambda d: shown(d) == "beta-2", "the rebuilt picker never got the stored model back")
    assert js(driver, "return conv.model_id") == "beta-2"
    assert convos.writes == []


def test_one_bare_id_under_two_providers_stays_with_the_users_provider(chromium, host, convos, guard):
    """The page writes "beta:shared-7b", the host stores the bare "shared-7b" and the page reads the chat
    back: the picker must stay on beta's option, also when a provider refresh rebuilds it."""
    driver = chromium
    convos.stored.update({"c1": "alpha-1"})
    convos.catalog = {"acme": ["alpha-1", "shared-7b"], "beta": ["shared-7b"]}
    convos.normalise = True
    base = host("batched", {"prefixed": True, "writePrefixed": True, "batchMs": 0, "rereadAfterSave": True},
                HERMES_PLUGIN_MODEL_ALIASES=[ALIAS_RULE])
    driver.get(base + "/chat/c1")
    until(driver, lambda d: settled(d) and shown(d) == "acme:alpha-1", "the page never settled")
    Select(driver.find_element(By.ID, "picker")).select_by_value("beta:shared-7b")
    until(driver, lambda d: convos.stored["c1"] == "shared-7b" and js(d, "return window.saved") == 1,
          "the pick was never stored and read back")
    assert shown(driver) == "beta:shared-7b"
    driver.find_element(By.ID, "refresh").click()  # a provider refresh rebuilds the picker
    until(driver, lambda d: js(d, "return window.refreshed") == 1, "the picker was never rebuilt")
    if guard == "today":  # the stored bare id matched the first provider offering it: the pick undone
        until(driver, lambda d: shown(d) == "acme:shared-7b", "no re-apply after the rebuild")
        return
    until(driver, lambda d: shown(d) == "beta:shared-7b", "the user's provider was not kept")
    a_frame_and_a_task_later(driver)
    assert shown(driver) == "beta:shared-7b" and convos.stored["c1"] == "shared-7b"


# -- the same by XMLHttpRequest (a jQuery-style $.ajax) -------------------------------------------------------


def test_xhr_send_during_a_slow_switch_waits_and_carries_the_new_chats_model(chromium, host, convos, guard):
    driver = chromium
    open_fast_chat(driver, convos, host, "xhr")
    assert shown(driver) == "alpha-1"
    click_slow_chat(driver)
    a_frame_and_a_task_later(driver)
    during = shown(driver)
    driver.find_element(By.ID, "send").click()  # an XHR send while the new chat's model is unknown
    if guard == "today":
        until(driver, lambda d: convos.turns, "the send never reached the server")
        assert during == "alpha-1" and convos.turns == [("slow", "alpha-1")]  # the previous chat's model
        convos.slow_gate.set()
        return
    convos.slow_gate.set()
    until(driver, lambda d: convos.turns and js(d, "return window.opened") == "slow",
          "the send or the switch never finished")
    assert during == ""  # the pending option: not the previous chat's model
    assert convos.turns == [("slow", "beta-2")]  # it waited for the stored model and carried it
    until(driver, lambda d: js(d, "return turns") == 1, "the page's success callback never ran")
    assert convos.stored["slow"] == "beta-2" and convos.writes == []
    until(driver, lambda d: shown(d) == "beta-2", "the picker never showed the new chat's model")


def test_xhr_reapply_makes_no_write_and_the_pages_callback_runs(chromium, host, convos, guard):
    driver = chromium
    convos.stored.update({"c1": "gamma-live"})
    convos.live = ["alpha-1", "gamma-live"]  # the stored model is only in the live list, which is late
    base = host("xhr", {"live": True})
    driver.get(base + "/chat/c1")
    until(driver, lambda d: js(d, "return !!window.booted"), "the page never booted")
    js(driver, "window.absorbed = [];"
               "document.addEventListener('hermes:write-absorbed', e => absorbed.push(e.detail))")
    convos.live_gate.set()
    until(driver, lambda d: js(d, "return !!window.liveDone") and settled(d), "the live list never landed")
    until(driver, lambda d: shown(d) == "gamma-live", "the stored model was never re-applied")
    until(driver, lambda d: js(d, "return saves.length") >= 1, "the page's save callback never ran",
          lambda: (convos.writes, js(driver, "return {saves, conv, guard: hermesGuard.state(),"
                                             " pending: hermesGuard.pending()}")))
    assert js(driver, "return saves.length") == 1, js(driver, "return saves")  # one re-apply, one save
    assert js(driver, "return conv.model_id") == "gamma-live"  # the page's own handler ran
    until(driver, lambda d: js(d, "return saves[0].events.includes('loadend')"), "the save never ended")
    save = js(driver, "return saves[0]")
    # A real answer's events, in a real answer's order (the same with the server's answer and a local one).
    assert save.pop("events") == ["state 1", "loadstart", "sent 1/0", "state 2", "state 3", "state 4", "load", "loadend"]
    if guard == "today":
        until(driver, lambda d: convos.writes, "the re-apply's write never reached the server")
        assert convos.writes == [("c1", "gamma-live")]  # one write the page would not have made
        assert save["answered"] is None
        return
    assert save == {"status": 200, "data": {}, "answered": "locally"}  # a proper answer, parsed by the page
    assert js(driver, "return absorbed") == [{"session": "c1", "model": "gamma-live"}]
    a_frame_and_a_task_later(driver)
    assert convos.writes == []  # 0 extra writes per re-apply
    driver.find_element(By.ID, "send").click()
    until(driver, lambda d: js(d, "return turns") == 1, "the message was never sent")
    assert convos.turns == [("c1", "gamma-live")]


@pytest.mark.parametrize("poll", ["no-poll", "poll-opened-unsent"])
def test_xhr_pick_whose_write_never_arrived_is_written_by_the_reloaded_page(chromium, host, convos, guard, poll):
    """The pick's XHR never reached the server (cut off by a reload, or by the network: the same status 0;
    an XHR, unlike fetch, cannot be kept alive across a reload). The reloaded page writes the pick again,
    also when the page keeps a read of the chat opened but not sent (it is no read in flight to wait for)."""
    driver = chromium
    convos.stored.update({"c1": "alpha-1"})
    base = host("xhr", {"deferredPoll": poll == "poll-opened-unsent"})
    driver.get(base + "/chat/c1")
    until(driver, lambda d: settled(d) and js(d, "return window.opened") == "c1", "the chat never loaded")
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/api/v2/conversations/c1"]})
    try:
        Select(driver.find_element(By.ID, "picker")).select_by_value("beta-2")
        until(driver, lambda d: js(d, "return saves.length") == 1, "the page's save never ended")
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
    assert js(driver, "return saves[0]") == {"status": 0, "failed": True}
    assert convos.writes == [] and convos.stored["c1"] == "alpha-1"
    driver.refresh()
    until(driver, lambda d: settled(d) and js(d, "return window.opened") == "c1", "the reloaded chat never loaded")
    if guard == "today":
        a_frame_and_a_task_later(driver)
        assert shown(driver) == "alpha-1" and convos.stored["c1"] == "alpha-1"  # the pick is gone
        return
    until(driver, lambda d: convos.stored["c1"] == "beta-2", "the pick was never written again")
    assert convos.writes == [("c1", "beta-2")] and shown(driver) == "beta-2"
    until(driver, lambda d: js(d, "return sessionStorage.getItem('hermes-guard:picks')") == "{}",
          "the pick was kept after its write was answered")


def test_an_xhr_read_of_another_chat_opened_but_not_sent_starts_no_switch(chromium, host, convos, guard):
    """A page may make a read of another chat ready (opened) and send it later or never: until it is sent,
    the open chat's model stays on screen and a send carries it, with no "loading" in between."""
    driver = chromium
    convos.stored.update({"c1": "alpha-1", "c2": "beta-2"})
    driver.get(host("xhr") + "/chat/c1")
    until(driver, lambda d: settled(d) and js(d, "return window.opened") == "c1", "the chat never loaded")
    js(driver, "window.prepared = new XMLHttpRequest(); prepared.open('GET', '/api/v2/conversations/c2')")
    a_frame_and_a_task_later(driver)
    assert shown(driver) == "alpha-1" and driver.find_elements(By.CSS_SELECTOR, "option[data-hermes-pending]") == []
    driver.find_element(By.ID, "send").click()
    until(driver, lambda d: js(d, "return turns") == 1, "the message was never sent")
    assert convos.turns == [("c1", "alpha-1")] and convos.stored == {"c1": "alpha-1", "c2": "beta-2"}
