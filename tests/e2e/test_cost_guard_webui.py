"""The cost guard through ``hermes-plugin proxy --preset hermes-webui`` in front of the real hermes-webui v0.50.227.

The app "corrects" a session whose model no list offers to its first model, without the user. The proxy is
configured as an operator would: a file whose ``[proxy]`` table starts from the preset (``preset = "hermes-webui"``)
next to a provider whose catalog carries OpenRouter-shaped ``pricing``. That provider once listed the saved model
and still lists the app's fallback, at a higher price: the proxy refuses the app's write, the page asks with both
prices, and the user's answer is stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from webui_host import DEFAULT, CorrectionFirst, GatedRelay, WebUI

from hermes_plugin.proxy import create_app, load_config
from hermes_plugin.testing.fake_provider import FakeProvider
from hermes_plugin.testing.recorder import ModelWriteRecorder

pytestmark = pytest.mark.e2e

WAIT = 30  # upper bound on a loaded 2-core machine; every wait ends as soon as its condition holds
RETIRED = "deepseek-coder-retired"  # in no list the app serves; the proxy's provider listed it once
CHEAP = "deepseek-lite"  # only the proxy's provider lists it, cheaper than the saved model
BOX = ".hermes-notice-box"
P = "/hermes-plugin"


def per_token(per_million: float) -> str:
    return str(per_million / 1e6)  # OpenRouter: dollars per token, as a string


PRICED = [
    {"id": RETIRED, "pricing": {"prompt": per_token(2), "completion": per_token(8)}},
    {"id": DEFAULT, "pricing": {"prompt": per_token(15), "completion": per_token(75)}},
    {"id": CHEAP, "pricing": {"prompt": per_token(1), "completion": per_token(2)}},
]


@pytest.fixture
def priced_provider() -> Iterator[FakeProvider]:
    with FakeProvider("openai", models=PRICED) as fake:
        yield fake


def until(driver: Any, condition: Callable[[Any], Any], message: str) -> Any:
    return WebDriverWait(driver, WAIT).until(condition, message)


def notice(driver: Any) -> str | None:
    return driver.execute_script(f"const b = document.querySelector('{BOX}'); return b && b.textContent")  # type: ignore[no-any-return]


def proxied(
    webui: WebUI,
    provider: FakeProvider,
    loopback_server: Callable[[Any], Any],
    writes: ModelWriteRecorder,
    config_dir: Path,
    provider_id: str = "priced",
    extra: str = "",
) -> tuple[GatedRelay, str]:
    """The proxy as an operator configures it (a file starting from the hermes-webui preset, with a priced
    provider and ``extra`` [proxy] lines), whose provider listed RETIRED with its price, then dropped it."""
    relay = GatedRelay(webui.url)
    relay.gate.set()  # no slow provider here: the subject is what happens after the lists landed
    path = config_dir / "hermes.toml"
    path.write_text(
        f'[proxy]\npreset = "hermes-webui"\n{extra}\n'
        f'[providers.{provider_id}]\nkind = "openai-compatible"\nbase_url = "{provider.base_url}"\n',
        encoding="utf-8",
    )
    app = create_app(
        loopback_server(relay).url, cfg=load_config(str(path)), app_config={"HERMES_PLUGIN_REFRESH_INTERVAL": 0}
    )
    writes.attach(app, read_model=webui.stored, routes=[r"/api/session/update"])  # what the page's writes got
    base = loopback_server(CorrectionFirst(app)).url  # the app corrects before the guard asks, as with quick lists
    assert requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30).ok  # RETIRED's price is learnt
    provider.configure(models=PRICED[1:])  # the provider retires RETIRED
    catalog = requests.get(f"{base}{P}/api/catalog?refresh=1", timeout=30).json()
    assert RETIRED not in {m["id"] for p in catalog["providers"] for m in p["models"]}
    return relay, base


def open_session(chromium: Any, base: str, session: str) -> None:
    chromium.get(base + "/api/settings")
    chromium.execute_script("localStorage.setItem('hermes-webui-session', arguments[0])", session)
    chromium.get(base + "/")


def settled(driver: Any) -> bool:
    return not driver.execute_script("return hermesGuard.pending().length + hermesGuard.state().held")


# The proxy's provider under its own name, and under the app's own provider name (one catalog, two sources).
@pytest.mark.parametrize("provider_id", ["priced", "deepseek"])
def test_webui_pricier_fallback_is_refused_and_the_user_is_asked(
    provider_id: str,
    webui: WebUI,
    chromium: Any,
    loopback_server: Callable[[Any], Any],
    priced_provider: FakeProvider,
    model_writes: ModelWriteRecorder,
    tmp_path: Path,
) -> None:
    relay, base = proxied(webui, priced_provider, loopback_server, model_writes, tmp_path, provider_id)
    session = webui.new_session(RETIRED)
    open_session(chromium, base, session)
    text = until(chromium, notice, "the page never asked")
    assert f"Your saved model {RETIRED} is no longer offered." in text
    assert f"The page tried to switch to {DEFAULT}, which costs more; it was not saved." in text
    assert "It costs more: $15 in / $75 out per million tokens instead of $2 in / $8 out" in text
    choice = Select(chromium.find_element(By.CSS_SELECTOR, f"{BOX} select"))
    assert choice.first_selected_option.get_attribute("value") == DEFAULT  # the page's own choice, preselected
    until(chromium, settled, "the page never settled")
    model_writes.wait_idle()
    page_writes = model_writes.writes_for(session)
    assert page_writes and all((w.model, w.status, w.kept) == (DEFAULT, 409, "price_increase") for w in page_writes)
    assert not any(w.changed for w in page_writes)
    assert webui.stored(session) == RETIRED  # refused: the app's file still has the saved model
    assert not [body for path, body in relay.posts if path == "/api/session/update"]  # it never reached the app
    # The same write again, to read the refusal's JSON: 409 price_increase with a clear reason.
    refused = requests.post(
        f"{base}/api/session/update",
        json={"session_id": session, "model": DEFAULT},
        headers={"X-Hermes-Intent": "auto", "Origin": base},
        timeout=30,
    )
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert (body["error"], body["stored_model"], body["proposed_model"]) == ("price_increase", RETIRED, DEFAULT)
    assert body["price_ratio"] == pytest.approx(9.0)
    assert webui.stored(session) == RETIRED
    log = requests.get(f"{base}{P}/api/sessions/{session}/model-log", timeout=10).json()
    assert any(e["by"] == "server" and e["reason"] == "price_increase" for e in log["entries"])
    # The user accepts the price: the proxy replays the app's own write, and the log says who chose.
    chromium.find_element(By.CSS_SELECTOR, f'{BOX} [data-hermes-action="switch"]').click()
    until(chromium, lambda d: (notice(d) or "").startswith(f"Model changed to {DEFAULT}."), "the switch never finished")
    assert webui.stored(session) == DEFAULT
    log = requests.get(f"{base}{P}/api/sessions/{session}/model-log", timeout=10).json()
    last = log["entries"][-1]
    assert (last["old"], last["new"], last["by"], last["reason"]) == (RETIRED, DEFAULT, "user", "price_accepted")
    until(
        chromium,
        lambda d: d.execute_script("return document.getElementById('modelSelect').value") == DEFAULT,
        "the app's picker never showed the answer",
    )


def test_webui_fallback_passes_when_the_ratio_allows_it(
    webui: WebUI,
    chromium: Any,
    loopback_server: Callable[[Any], Any],
    priced_provider: FakeProvider,
    model_writes: ModelWriteRecorder,
    tmp_path: Path,
) -> None:
    """The control: the same prices with ``max_price_ratio`` above 9 let the app's correction through, told
    (under the guard's default absent-model policy: the preset's own, ``keep``, would keep RETIRED)."""
    extra = 'max_price_ratio = 10\nabsent_model = "fallback"'
    _, base = proxied(webui, priced_provider, loopback_server, model_writes, tmp_path, extra=extra)
    session = webui.new_session(RETIRED)
    open_session(chromium, base, session)
    text = until(chromium, notice, "the page never said the model was changed")
    assert text.startswith(f"Model changed to {DEFAULT} because {RETIRED} is no longer offered — Undo")
    assert "costs more" not in text
    assert webui.stored(session) == DEFAULT
    assert any((w.model, w.status) == (DEFAULT, 200) and w.changed for w in model_writes.writes_for(session))


def test_webui_cost_prompt_pick_and_keep_are_the_users(
    webui: WebUI,
    chromium: Any,
    loopback_server: Callable[[Any], Any],
    priced_provider: FakeProvider,
    model_writes: ModelWriteRecorder,
    tmp_path: Path,
) -> None:
    """A Selenium ``Select`` pick of a cheaper model in the prompt is stored as the user's; Keep writes nothing."""
    relay, base = proxied(webui, priced_provider, loopback_server, model_writes, tmp_path)
    kept, picked = webui.new_session(RETIRED), webui.new_session(RETIRED)
    open_session(chromium, base, kept)
    until(chromium, lambda d: "costs more" in (notice(d) or ""), "the page never asked")
    chromium.find_element(By.CSS_SELECTOR, f'{BOX} [data-hermes-action="keep"]').click()
    until(chromium, lambda d: notice(d) is None, "the prompt never closed")
    until(chromium, settled, "the page never settled")
    model_writes.wait_idle()
    assert webui.stored(kept) == RETIRED
    assert not [body for path, body in relay.posts if path == "/api/session/update"]  # nothing reached the app
    until(
        chromium,
        lambda d: d.execute_script("return !!navigator.serviceWorker.controller"),
        "the app's service worker never took over",
    )
    # The second visit is served by the app's service worker from the shell it pre-cached (asked without
    # text/html in Accept): that copy carries the guard too, so the app's correction is asked about again.
    open_session(chromium, base, picked)
    assert chromium.execute_script("return !!navigator.serviceWorker.controller && typeof hermesGuard") == "object"
    until(chromium, lambda d: "costs more" in (notice(d) or ""), "the page never asked")
    choice = Select(chromium.find_element(By.CSS_SELECTOR, f"{BOX} select"))
    assert any(CHEAP in option.text and "$1 in / $2 out" in option.text for option in choice.options)
    choice.select_by_value(CHEAP)  # cheaper than the saved model: the cost line goes away
    until(
        chromium,
        lambda d: d.execute_script(f"return document.querySelector('{BOX} .hermes-notice-cost').textContent") == "",
        "the cost line stayed",
    )
    chromium.find_element(By.CSS_SELECTOR, f'{BOX} [data-hermes-action="switch"]').click()
    until(chromium, lambda d: (notice(d) or "").startswith(f"Model changed to {CHEAP}."), "the switch never finished")
    assert webui.stored(picked) == CHEAP
    last = requests.get(f"{base}{P}/api/sessions/{picked}/model-log", timeout=10).json()["entries"][-1]
    assert (last["old"], last["new"], last["by"], last["reason"]) == (RETIRED, CHEAP, "user", "pick")
    until(chromium, settled, "the page never settled")
    model_writes.wait_idle()
    assert webui.stored(picked) == CHEAP  # the app did not "correct" the user's answer afterwards
    # The app's service worker stores every GET it serves, but never the plugin's answers (stale ones would
    # show an old model, version or catalog).
    cached = chromium.execute_async_script(
        "const done = arguments[0]; caches.keys().then(names => Promise.all(names.map(n => caches.open(n)"
        ".then(c => c.keys())))).then(lists => done(lists.flat().map(r => r.url)))"
    )
    assert any(url.endswith("/static/ui.js") for url in cached)  # it does cache what it serves
    assert not [url for url in cached if f"{P}/api/" in url]
