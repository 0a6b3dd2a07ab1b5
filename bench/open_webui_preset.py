"""Open WebUI alone vs behind ``hermes-plugin proxy --preset open-webui``: what a user sees, trial by trial.

Run: python bench/open_webui_preset.py [--trials 5]
Needs Open WebUI in its own venv (bash tests/support/open_webui_setup.sh). One Open WebUI (offline, auth off,
a FakeProvider behind it) serves both columns: directly, and through an in-process proxy with the preset.
Every trial uses a fresh saved chat whose model is ``chat-model``. Prints one table (counts out of the
trials) and the chat page's ready time (navigation to the picker showing a model) direct vs proxied.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e")]

from support import open_webui as ow  # noqa: E402  (the test toolkit)
from test_open_webui_preset import open_page  # noqa: E402
from test_open_webui_real import OpenWebUIPage  # noqa: E402

from hermes_plugin.proxy import create_app  # noqa: E402
from hermes_plugin.testing.browser import make_chromium, reset_chromium  # noqa: E402
from hermes_plugin.testing.fake_provider import FakeProvider  # noqa: E402
from hermes_plugin.testing.servers import LoopbackServer  # noqa: E402

CHAT, OTHER = ow.MODELS
WAIT = 90


@dataclasses.dataclass
class Trial:
    shown: str = ""
    marked: bool = False
    answered: str | None = None
    stored: list[str] = dataclasses.field(default_factory=list)
    error: str = ""
    decision: str = ""  # outcome/intent of the proxy's last model-log entry for the chat


def open_chat(driver: Any, server: ow.OpenWebUI, chat_id: str, guarded: bool) -> OpenWebUIPage:
    if guarded:
        return open_page(driver, server, chat_id)
    page = OpenWebUIPage(driver, server)
    page.sign_in()
    page.open_chat(chat_id)
    return page


def refresh_list_by_hover(page: OpenWebUIPage) -> None:
    """Move the pointer over the picker (Open WebUI refetches its list then) and wait for that fetch."""
    count = "return performance.getEntriesByType('resource').filter(e => /\\/api\\/models(\\?|$)/.test(e.name)).length"
    before = page.driver.execute_script(count)
    ActionChains(page.driver).move_to_element(page.driver.find_element(By.ID, "model-selector-model-button")).perform()
    page.wait(lambda d: d.execute_script(count) > before, "the picker did not refetch the model list")


def send_and_wait(page: OpenWebUIPage, server: ow.OpenWebUI) -> None:
    """Send, then wait for the reply on the page or an error toast."""
    before = page.driver.find_element(By.TAG_NAME, "body").text.count("Reply from ")
    page.send("Hello again")

    def done(d: Any) -> bool:
        text = d.find_element(By.TAG_NAME, "body").text
        answered = bool(server.provider.completions) and text.count("Reply from ") > before
        return answered or bool(d.find_elements(By.CSS_SELECTOR, "[data-sonner-toast]"))

    page.wait(done, "neither a reply nor an error after the send")


def decision(server: ow.OpenWebUI, chat_id: str) -> str:
    response = server.api("GET", f"/hermes-plugin/api/sessions/{chat_id}/model-log")
    entries = response.json().get("entries", []) if response.ok else []
    return f"{entries[-1]['outcome']}/{entries[-1]['intent']}" if entries else "-"


def blip_then_send(driver: Any, server: ow.OpenWebUI, guarded: bool, refresh: bool) -> Trial:
    chat_id = server.create_chat([CHAT])["id"]
    server.provider.models = [OTHER]
    page = open_chat(driver, server, chat_id, guarded)
    trial = Trial(shown=page.shown_model(), marked=bool(driver.execute_script(
        "return document.querySelector('[data-hermes-unavailable]')")))
    server.provider.models = list(ow.MODELS)
    if refresh:
        refresh_list_by_hover(page)
    send_and_wait(page, server)
    trial.answered = (server.provider.completions or [None])[0]
    toasts = driver.find_elements(By.CSS_SELECTOR, "[data-sonner-toast]")
    trial.error = toasts[0].text if toasts else ""
    trial.stored = server.stored_models(chat_id)
    trial.decision = decision(server, chat_id) if guarded else ""
    return trial


def pick_then_send(driver: Any, server: ow.OpenWebUI, guarded: bool) -> Trial:
    chat_id = server.create_chat([CHAT])["id"]
    page = open_chat(driver, server, chat_id, guarded)
    page.pick(OTHER)
    send_and_wait(page, server)
    return Trial(shown=page.shown_model(), answered=(server.provider.completions or [None])[0],
                 stored=server.stored_models(chat_id), decision=decision(server, chat_id) if guarded else "")


def slow_list_then_send(driver: Any, server: ow.OpenWebUI, guarded: bool) -> Trial:
    chat_id = server.create_chat([CHAT])["id"]
    server.provider.configure(latency=3)
    page = open_chat(driver, server, chat_id, guarded)
    server.provider.configure(latency=0)
    send_and_wait(page, server)
    return Trial(shown=page.shown_model(), answered=(server.provider.completions or [None])[0],
                 stored=server.stored_models(chat_id))


def chat_save(server: ow.OpenWebUI) -> Trial:
    """The page's own save of a chat (``chat.models`` is a list), as the page sends it."""
    chat_id = server.create_chat([CHAT])["id"]
    body = {"chat": {"models": [CHAT], "title": "Saved chat"}}
    response = server.api("POST", f"/api/v1/chats/{chat_id}", json=body, headers={"Sec-Fetch-Site": "same-origin"})
    return Trial(error=str(response.status_code), decision=response.headers.get("X-Hermes-Decision", ""),
                 stored=server.stored_models(chat_id))


def page_ready(driver: Any, server: ow.OpenWebUI, chat_id: str) -> float:
    start = time.perf_counter()
    driver.get(f"{server.url}/c/{chat_id}")
    WebDriverWait(driver, WAIT).until(lambda d: d.execute_script(
        "const b = document.getElementById('model-selector-model-button');"
        "return !!b && (b.getAttribute('aria-label') || '').startsWith('Selected model: ')"))
    return time.perf_counter() - start


def run(trials: int, driver: Any, scenario: Callable[[], Trial]) -> list[Trial]:
    results = []
    for _ in range(trials):
        results.append(scenario())
        reset_chromium(driver)
    return results


def count(results: list[Trial], test: Callable[[Trial], bool]) -> str:
    return f"{sum(1 for t in results if test(t))}/{len(results)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    if ow.executable() is None:
        sys.exit(f"Open WebUI {ow.VERSION} is not installed in {ow.venv_path()}: bash {ow.SETUP_SCRIPT}")
    driver = make_chromium()
    with FakeProvider("openai", list(ow.MODELS), api_key=ow.API_KEY) as provider, \
            tempfile.TemporaryDirectory() as data:
        server = ow.start(provider, Path(data))
        proxy = LoopbackServer(create_app(server.url, preset="open-webui"))
        proxy.start()
        guarded_server = dataclasses.replace(server, url=proxy.url, http=requests.Session())
        try:
            columns: dict[str, dict[str, list[Trial]]] = {}
            for name, srv, guarded in (("alone", server, False), ("preset", guarded_server, True)):
                def fresh(s: ow.OpenWebUI = srv) -> ow.OpenWebUI:
                    s.provider.configure(latency=0, fault=None, models=list(ow.MODELS))
                    s.provider.reset()
                    s.model_ids(refresh=True)
                    return s

                columns[name] = {
                    "blip": run(args.trials, driver, lambda s=srv, g=guarded: blip_then_send(driver, fresh(s), g, False)),
                    "refresh": run(args.trials, driver, lambda s=srv, g=guarded: blip_then_send(driver, fresh(s), g, True)),
                    "pick": run(args.trials, driver, lambda s=srv, g=guarded: pick_then_send(driver, fresh(s), g)),
                    "save": run(args.trials, driver, lambda s=srv: chat_save(fresh(s))),
                    "slow": run(args.trials, driver, lambda s=srv, g=guarded: slow_list_then_send(driver, fresh(s), g)),
                }
            fresh_chat = server.create_chat([CHAT])["id"]
            ready: dict[str, list[float]] = {"direct": [], "proxy": []}
            for srv, key in ((server, "direct"), (guarded_server, "proxy")):
                open_chat(driver, srv, fresh_chat, key == "proxy")  # warm: the changelog is dismissed, caches filled
            for _ in range(args.trials):
                for srv, key in ((server, "direct"), (guarded_server, "proxy")):
                    ready[key].append(page_ready(driver, srv, fresh_chat))
        finally:
            proxy.stop()
            ow.stop(server)
            driver.quit()

    def row(label: str, key: str, test: Callable[[Trial], bool], extra: Callable[[list[Trial]], str] = lambda r: "") -> None:
        cells = [f"{count(columns[c][key], test)}{extra(columns[c][key])}" for c in ("alone", "preset")]
        print(f"| {label} | {cells[0]} | {cells[1]} |")

    def decisions(results: list[Trial]) -> str:
        seen = sorted({t.decision for t in results if t.decision})
        return f" (decision {', '.join(seen)})" if seen else ""

    print(f"Open WebUI {ow.VERSION}, {args.trials} trials per cell\n")
    print("| what happens | Open WebUI alone | behind `hermes-plugin proxy --preset open-webui` |")
    print("| --- | --- | --- |")
    row("chat's model briefly missing at load: picker shows another model", "blip", lambda t: t.shown == OTHER)
    row("… and marks the saved model unavailable", "blip", lambda t: t.marked)
    row("… then a send (provider back): reply from the other model", "blip", lambda t: t.answered == OTHER)
    row("… chat's stored model overwritten", "blip", lambda t: t.stored != [CHAT], decisions)
    row("… send failed", "blip", lambda t: t.answered is None)
    row("same, Open WebUI's list refreshed (hover) before the send: overwritten", "refresh",
        lambda t: t.stored != [CHAT], decisions)
    row("… reply from the chat's model", "refresh", lambda t: t.answered == CHAT)
    row("a pick in the picker, then a send: stored as the pick", "pick", lambda t: t.stored == [OTHER], decisions)
    row("the page's own chat save (`chat.models` list): 200", "save", lambda t: t.error == "200", decisions)
    row("a slow model list (3 s) at load: overwritten", "slow", lambda t: t.stored != [CHAT])
    direct, proxied = statistics.median(ready["direct"]), statistics.median(ready["proxy"])
    print(f"\nchat page ready (navigation to the picker showing a model), median of {args.trials}: "
          f"direct {direct * 1000:.0f} ms, through the proxy {proxied * 1000:.0f} ms, ratio {proxied / direct:.2f}")


if __name__ == "__main__":
    main()
