"""Notices, undo, the replacement prompt and the cost prompt, in the demo host with real Chromium.

The demo's "retired" session stores a model its provider no longer lists; the page "corrects" it to
the first option (openrouter/claude-opus) on load, without the user.
"""

from __future__ import annotations

from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from hermes_plugin.demo.app import OPENROUTER_LIVE

pytestmark = pytest.mark.e2e

RETIRED = "openrouter/gpt-3-retired"
OPUS = "openrouter/claude-opus"  # the page's fallback: the first option
KIMI = "moonshotai/kimi-k2"
BOX = ".hermes-notice-box"
HOSTILE = "<img src=x onerror=window.pwned=1>"  # a catalog id is text, never markup


def box_text(page: Any) -> str:
    return str(page.wait_js(f"const b = document.querySelector('{BOX}'); return b && b.textContent",
                            message="no notice was shown"))


def action(page: Any, name: str) -> None:
    page.click(f'{BOX} [data-hermes-action="{name}"]')


def priced(prices: dict[str, tuple[float, float]]) -> list[Any]:
    """The live list with OpenRouter-shaped prices (dollars per token, as strings)."""
    return [{"id": m, "pricing": {"prompt": str(prices[m][0] / 1e6), "completion": str(prices[m][1] / 1e6)}}
            if m in prices else m for m in OPENROUTER_LIVE]


def retire(host: Any, models: list[Any]) -> None:
    """The provider listed the retired model (its price is learnt), then dropped it."""
    host.openrouter.configure(models=[*models, {"id": RETIRED, "pricing": {"prompt": "0.000002",
                                                                           "completion": "0.000008"}}])
    host.app.test_client().get("/hermes-plugin/api/catalog?refresh=1")
    host.openrouter.configure(models=models)
    host.app.test_client().get("/hermes-plugin/api/catalog?refresh=1")


def test_page_fallback_shows_a_notice_and_undo_restores(demo_host: Any) -> None:
    host = demo_host()
    quiet = host.page("opus")
    quiet.finish()
    # Nothing to tell: the notices script is never loaded.
    assert quiet.js("return document.querySelector('script[src*=\"hermes-notices\"]')") is None
    page = host.page("retired")
    text = box_text(page)
    assert text.startswith(f"Model changed to {OPUS} because {RETIRED} is no longer offered — Undo")
    assert host.stored("retired") == OPUS
    action(page, "undo")
    page.wait_js(f"return document.querySelector('{BOX}').textContent.startsWith('Restored {RETIRED}.')")
    assert host.stored("retired") == RETIRED
    last = host.model_log("retired")[-1]
    assert (last["old"], last["new"], last["by"], last["reason"]) == (OPUS, RETIRED, "user", "undo")
    assert page.js("return hermesGuard.state().model") == RETIRED  # the guard knows the restored model
    # The picker shows it too (as unavailable), so the page's state follows and nothing re-corrects it.
    page.wait_js(f"return document.getElementById('modelSelect').value === '{RETIRED}'")
    assert page.js("return document.getElementById('modelSelect').selectedOptions[0].text") == \
        f"{RETIRED} (unavailable)"
    page.finish()
    host.writes.wait_idle()
    assert host.stored("retired") == RETIRED
    action(page, "dismiss")
    page.wait_js(f"return !document.querySelector('{BOX}')")


def test_replacement_prompt_writes_nothing_until_the_user_answers(demo_host: Any) -> None:
    host = demo_host(guard_config={"HERMES_PLUGIN_MODEL_REPLACEMENTS": {RETIRED: KIMI}})
    page = host.page("retired")
    text = box_text(page)
    assert f"Your saved model {RETIRED} is no longer offered." in text
    choice = page.driver.find_element(By.CSS_SELECTOR, f"{BOX} select")
    assert choice.get_attribute("value") == KIMI  # the suggestion, preselected
    page.finish()
    host.writes.wait_idle()
    assert host.stored("retired") == RETIRED  # the page's own correction was kept back
    assert [e["reason"] for e in host.model_log("retired")] == ["replacement_suggested"]
    action(page, "switch")
    page.wait_js(f"return document.querySelector('{BOX}').textContent.startsWith('Model changed to {KIMI}.')")
    assert host.stored("retired") == KIMI
    last = host.model_log("retired")[-1]
    assert (last["new"], last["by"], last["reason"]) == (KIMI, "user", "replacement")
    page.wait_js(f"return document.getElementById('modelSelect').value === '{KIMI}'",
                 message="the picker never showed the user's answer")


def test_replacement_prompt_keep_writes_nothing(demo_host: Any) -> None:
    host = demo_host(guard_config={"HERMES_PLUGIN_MODEL_REPLACEMENTS": {RETIRED: KIMI}})
    page = host.page("retired")
    box_text(page)
    action(page, "keep")
    page.wait_js(f"return !document.querySelector('{BOX}')")
    page.finish()
    host.writes.wait_idle()
    assert host.stored("retired") == RETIRED
    assert all(e["new"] == RETIRED for e in host.model_log("retired"))


def test_cost_prompt_when_the_pages_fallback_costs_more(demo_host: Any) -> None:
    host = demo_host(guard_config={"HERMES_PLUGIN_REFRESH_INTERVAL": 0})
    models = [*priced({OPUS: (15, 75), KIMI: (1, 3)}), HOSTILE]
    retire(host, models)
    page = host.page("retired")
    text = box_text(page)
    assert f"The page tried to switch to {OPUS}, which costs more; it was not saved." in text
    assert "It costs more: $15 in / $75 out per million tokens instead of $2 in / $8 out" in text
    choice = Select(page.driver.find_element(By.CSS_SELECTOR, f"{BOX} select"))
    assert choice.first_selected_option.get_attribute("value") == OPUS
    # Ids are shown as text: the hostile one is an option whose text is the markup, never an element.
    assert any(o.text == HOSTILE for o in choice.options)
    assert page.js("return window.pwned === undefined && !document.querySelector('img[src=x]')")
    page.finish()
    host.writes.wait_idle()
    assert host.stored("retired") == RETIRED
    refused = [w for w in host.writes.writes_for("retired") if w.model == OPUS]
    assert refused and all(w.status == 409 for w in refused)
    choice.select_by_value(KIMI)  # a cheaper one: the cost line goes away
    page.wait_js(f"return document.querySelector('{BOX} .hermes-notice-cost').textContent === ''")
    action(page, "switch")
    page.wait_js(f"return document.querySelector('{BOX}').textContent.startsWith('Model changed to {KIMI}.')")
    assert host.stored("retired") == KIMI
    assert host.model_log("retired")[-1]["reason"] == "pick"
