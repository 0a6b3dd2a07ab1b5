"""A foreign host with a custom listbox picker and sends that name the model in four fields (listbox_host.py).

Each scenario runs with the guard as configured for this host; the controls show what goes wrong with
less (one model field named, the adapter left out).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from listbox_host import Rooms, make_host
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.e2e

PRO, LITE, MINI = "parley-pro", "parley-lite", "parley-mini"
WAIT = 20  # upper bound on a loaded machine; every wait ends as soon as its condition holds


@pytest.fixture
def rooms() -> Rooms:
    return Rooms(engines={"r1": [PRO], "duo": [PRO, LITE]})


@pytest.fixture
def host(rooms: Rooms, loopback_server: Callable[[Any], Any]) -> Callable[..., str]:
    return lambda **kwargs: loopback_server(make_host(rooms, **kwargs)).url


def until(driver: Any, condition: Callable[[Any], Any], message: str) -> Any:
    return WebDriverWait(driver, WAIT).until(condition, message)


def open_room(driver: Any, base: str, room: str) -> None:
    """Open a room and wait until the page is drawn and the picker adapter has done its one try."""
    driver.get(f"{base}/rooms/{room}")
    until(driver, lambda d: d.execute_script(
        "const p = window.hermesPicker?.state(), g = window.hermesGuard?.state();"
        "return !!p && !!g && g.session === arguments[0] && !p.busy && p.tried.length > 0"
        " && !document.querySelector('.engine-menu')", room), "the picker adapter never settled")


def shown(driver: Any) -> str:
    return str(driver.find_element(By.ID, "engine-trigger").text)


def catalog_loads(driver: Any) -> int:
    return int(driver.execute_script("return state.loads"))


def unavailable_mark(driver: Any) -> str | None:
    return driver.execute_script(  # type: ignore[no-any-return]
        "return document.querySelector('[data-hermes-unavailable]')?.getAttribute('data-hermes-unavailable')")


def send(driver: Any, replies: int) -> None:
    driver.find_element(By.ID, "send").click()
    until(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#replies li")) >= replies
          or d.find_element(By.ID, "error").text, "the send was never answered")


def model_log(base: str, room: str) -> list[dict[str, Any]]:
    return list(requests.get(f"{base}/hermes-plugin/api/sessions/{room}/model-log", timeout=10).json()["entries"])


def test_blip_then_send_keeps_the_room_engine_in_every_field(chromium, host, rooms):
    base = host()
    rooms.listed = [LITE, MINI]  # the blip: the room's engine is briefly missing from the list
    open_room(chromium, base, "r1")
    assert shown(chromium) == "Engine: Parley Lite"  # the page's own fallback...
    assert unavailable_mark(chromium) == PRO  # ...explained: the saved engine is marked unavailable
    assert f"Saved model {PRO} (unavailable)" in chromium.find_element(By.CLASS_NAME, "hermes-picker-notice").text

    rooms.listed = list(rooms.serving)  # the list is back; the page still holds the blip's
    send(chromium, 1)
    sent = rooms.sends[-1]
    assert (sent["engine"], sent["meta"]["engine_id"], sent["slots"], sent["turn"]["engines"]) == (
        PRO, PRO, [{"engine": PRO}], [PRO])  # every field names the kept engine
    assert rooms.engines["r1"] == [PRO]
    assert chromium.find_element(By.ID, "replies").text == f"Reply from {PRO}."
    until(chromium, lambda d: shown(d) == "Engine: Parley Pro" and unavailable_mark(d) is None,
          "the picker never showed the kept engine again")
    assert [(e["outcome"], e["old"], e["new"]) for e in model_log(base, "r1")] == [("keep", PRO, PRO)]


def test_control_one_named_field_says_keep_while_the_body_stores_the_other(chromium, host, rooms):
    # The previous capability: only `engine` is known to the guard, so only it is rewritten.
    base = host(fields=["engine"])
    rooms.listed = [LITE, MINI]
    open_room(chromium, base, "r1")
    rooms.listed = list(rooms.serving)
    send(chromium, 1)
    assert rooms.engines["r1"] == [LITE]  # overwritten...
    assert [(e["outcome"], e["old"], e["new"]) for e in model_log(base, "r1")] == [("keep", PRO, LITE)]  # ...under "keep"


def test_a_kept_engine_the_host_cannot_serve_is_a_clear_409(chromium, host, rooms):
    base = host()
    rooms.listed = [LITE, MINI]
    open_room(chromium, base, "r1")
    rooms.listed = rooms.serving = [LITE, MINI]  # still listed elsewhere, but this host cannot run it now
    send(chromium, 1)
    assert chromium.find_element(By.ID, "error").text == (
        f"kept the stored model '{PRO}': Parley cannot run {PRO} right now")
    assert rooms.sends == [] and rooms.engines["r1"] == [PRO]  # nothing reached the host's handler
    assert [(e["outcome"], e["reason"]) for e in model_log(base, "r1")] == [("reject", "model_unservable")]


def test_multi_engine_room_is_judged_entry_by_entry(chromium, host, rooms):
    base = host()
    rooms.listed = [LITE, MINI]  # the first of the room's two engines is missing at load
    open_room(chromium, base, "duo")
    assert shown(chromium) == "Engine: Parley Lite + Parley Lite"
    rooms.listed = list(rooms.serving)
    send(chromium, 2)
    sent = rooms.sends[-1]
    assert [slot["engine"] for slot in sent["slots"]] == [PRO, LITE] and sent["turn"]["engines"] == [PRO, LITE]
    assert sent["engine"] == sent["meta"]["engine_id"] == PRO
    assert rooms.engines["duo"] == [PRO, LITE]
    assert chromium.find_element(By.ID, "replies").text.splitlines() == [f"Reply from {PRO}.", f"Reply from {LITE}."]


def test_a_pick_is_held_until_the_send_even_one_made_by_code(chromium, host, rooms):
    base = host()
    open_room(chromium, base, "r1")
    until(chromium, lambda d: shown(d) == "Engine: Parley Pro", "the saved engine is not shown")
    loads = catalog_loads(chromium)
    chromium.find_element(By.ID, "engine-trigger").click()  # the pointer entering it reloads the catalog...
    until(chromium, lambda d: catalog_loads(d) > loads, "the hover never reloaded the catalog")
    until(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, f".engine-menu [data-engine='{MINI}']"),
          "no menu row")[0].click()  # ...and redraws the menu, so its rows are taken after that redraw
    until(chromium, lambda d: shown(d) == "Engine: Parley Mini", "the pick is not shown")
    chromium.find_element(By.ID, "draft").click()  # the person's next click is elsewhere...
    chromium.execute_script("document.getElementById('send').click()")  # ...and the page sends by code
    until(chromium, lambda d: d.find_elements(By.CSS_SELECTOR, "#replies li"), "the send was never answered")
    assert rooms.engines["r1"] == [MINI]
    assert [(e["intent"], e["outcome"], e["reason"], e["new"]) for e in model_log(base, "r1")] == [
        ("user", "pass", "user", MINI)]


def test_without_the_adapter_the_saved_engine_is_silently_replaced_on_screen(chromium, host, rooms):
    # Control for the adapter: the same blip leaves the page showing another engine with no word about it.
    base = host(adapter=False)
    rooms.listed = [LITE, MINI]
    chromium.get(f"{base}/rooms/r1")
    until(chromium, lambda d: shown(d) == "Engine: Parley Lite", "the page never drew its fallback")
    assert unavailable_mark(chromium) is None and not chromium.find_elements(By.CLASS_NAME, "hermes-picker-notice")
    assert "hermes-picker.js" not in chromium.page_source  # pages without an adapter never load it
