"""The reference scenarios S1-S13: real Chromium against the demo host and FakeProviders on loopback.

The demo page reproduces the upstream app's naive model-picker flow, so each scenario first has a bug to lose to. The
guard-off test proves that (the stored model of S1 really is overwritten); every other test runs with
the guard and checks the row's "must hold". Waits are explicit: DOM state, ``hermesGuard.whenSettled()``
and the server-side recorder of model writes. A long provider latency that the test cuts short with
``FakeProvider.release()`` keeps a fetch pending exactly as long as a scenario needs, with no timing bets.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

KIMI = "moonshotai/kimi-k2"
LLAMA = "openrouter/llama-3"
OPUS = "openrouter/claude-opus"  # first static option: the naive flow's fallback
GPT4O = "openrouter/gpt-4o"
QWEN = "qwen2.5:7b"
HOLD = 120.0  # seconds of provider latency; every test ends it early with release()


def answer_now(provider: Any) -> None:
    """End the held latency: requests waiting now answer, later ones answer at once."""
    provider.latency = 0
    provider.release()


def assert_untouched(host: Any, session: str, model: str) -> None:
    """The row's "stored model never changes": on disk, in the change log, and no other model let through."""
    assert host.stored(session) == model
    assert [(c.old, c.new) for c in host.writes.changes if c.session == session] == []
    assert host.foreign_writes_passed(session, model) == []


# -- S1 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("latency_ms", [200, 500])
def test_s1_without_guard_the_stored_model_is_overwritten(demo_host, latency_ms):
    """Proof the suite can fail: the naive flow persists the first option before the live list lands."""
    host = demo_host(guard=False)
    host.openrouter.latency = latency_ms / 1000
    page = host.page("kimi")
    page.finish()
    assert host.stored("kimi") == OPUS
    assert [(c.old, c.new) for c in host.writes.changes] == [(KIMI, OPUS)]
    assert page.value == OPUS  # and the picker shows the wrong model although the live list has Kimi
    assert KIMI in page.option_values()


@pytest.mark.parametrize("latency_ms", [0, 50, 200, 500, 1500])
def test_s1_live_only_model_survives_any_live_latency(demo_host, latency_ms):
    host = demo_host()
    host.openrouter.latency = latency_ms / 1000
    page = host.page("kimi")
    page.finish()
    assert page.value == KIMI
    assert_untouched(host, "kimi", KIMI)


# -- S2 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("live_ms", [0, 300])
def test_s2_slow_static_catalog(demo_host, live_ms):
    host = demo_host(static_latency_ms=800)
    host.openrouter.latency = live_ms / 1000
    page = host.page("kimi")
    page.finish()
    assert page.value == KIMI
    assert_untouched(host, "kimi", KIMI)


# -- S3 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["500", "timeout", "refused"])
def test_s3_live_fetch_fails_with_nothing_cached(demo_host, fault):
    host = demo_host(fetch_timeout=1.0)
    host.openrouter.fault = fault
    page = host.page("kimi")
    page.finish()
    assert page.js("return demo.liveState.openrouter") == "failed"
    notice = page.wait_js("const n = document.querySelector('.hermes-notice'); return n && n.textContent")
    assert KIMI in notice and "unavailable" in notice  # the user is told, in words
    assert page.value == KIMI
    shown = page.js("const s = document.getElementById('modelSelect'); return s.options[s.selectedIndex].text")
    assert "unavailable" in shown
    assert_untouched(host, "kimi", KIMI)


# -- S4 -----------------------------------------------------------------------------------------------


def test_s4_live_fetch_fails_but_a_stale_catalog_is_cached(demo_host):
    host = demo_host(cache_ttl=0)  # every request revalidates, so the failure below is really met
    warm = requests.get(f"{host.url}/api/models/live?provider=openrouter", timeout=10)
    assert warm.json()["state"] == "fresh"
    host.openrouter.fault = "500"
    page = host.page("kimi")
    page.finish()
    assert page.js("return demo.liveState.openrouter") == "stale"
    assert KIMI in page.option_values() and LLAMA in page.option_values()  # the stale catalog is used
    assert page.value == KIMI
    assert page.js("return document.querySelector('.hermes-notice')") is None
    assert_untouched(host, "kimi", KIMI)


# -- S5 -----------------------------------------------------------------------------------------------


def test_s5_stored_model_truly_gone_allows_the_hosts_fallback(demo_host):
    host = demo_host()
    page = host.page("retired")
    page.finish()
    host.writes.wait_idle()
    assert host.stored("retired") == OPUS
    assert page.value == OPUS
    entries = host.model_log("retired")
    changed = [(e["old"], e["new"], e["reason"]) for e in entries if e["old"] != e["new"]]
    assert changed == [("openrouter/gpt-3-retired", OPUS, "model_absent")], entries


# -- S6 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["native", "picker", "command"])
def test_s6_user_pick_while_pending_is_written_at_once_and_kept(demo_host, how):
    host = demo_host(fetch_timeout=HOLD)
    host.openrouter.latency = HOLD
    page = host.page("kimi")
    page.wait_pending("openrouter")
    getattr(page, {"native": "pick_native", "picker": "pick_in_picker", "command": "pick_by_command"}[how])(GPT4O)
    [write] = host.writes.wait_for_writes(1, where=lambda w: w.model == GPT4O)
    assert write.intent == "user" and write.session == "kimi"
    assert host.stored("kimi") == GPT4O
    assert page.js("return hermesGuard.pending()") == ["openrouter"]  # written while the fetch was still out
    answer_now(host.openrouter)
    page.finish()
    assert page.value == GPT4O
    assert KIMI in page.option_values()  # the live list landed and did not pull the picker back
    assert host.stored("kimi") == GPT4O
    assert [(c.old, c.new) for c in host.writes.changes] == [(KIMI, GPT4O)]


# -- S7 -----------------------------------------------------------------------------------------------


def test_s7_provider_switch_while_first_providers_fetch_is_pending(demo_host):
    host = demo_host(fetch_timeout=HOLD)
    host.openrouter.latency = HOLD
    page = host.page("kimi")
    page.wait_pending("openrouter")
    page.switch_provider("localai")
    host.writes.wait_for_writes(1, where=lambda w: w.model == QWEN)
    page.wait_js("return demo.liveState.localai === 'loaded'")  # B's list is in while A's is still out
    assert page.js("return hermesGuard.pending()") == ["openrouter"]
    answer_now(host.openrouter)
    page.finish("openrouter")
    assert page.value == QWEN
    assert not set(page.option_values()) & {KIMI, LLAMA, OPUS, GPT4O}  # A's late answer stayed out of B's picker
    assert host.stored("kimi") == QWEN
    assert [(c.old, c.new) for c in host.writes.changes] == [(KIMI, QWEN)]


# -- S8 -----------------------------------------------------------------------------------------------


def test_s8_session_switch_while_pending(demo_host):
    host = demo_host(fetch_timeout=HOLD)
    host.openrouter.latency = HOLD
    page = host.page("kimi")
    page.wait_pending("openrouter")
    page.click('#sessionList .session[data-session="llama"]')
    page.wait_js("return demo.S.session && demo.S.session.session_id === 'llama'")
    answer_now(host.openrouter)
    page.finish()
    assert page.value == LLAMA
    assert_untouched(host, "kimi", KIMI)
    assert_untouched(host, "llama", LLAMA)


# -- S9 -----------------------------------------------------------------------------------------------


def test_s9_second_tab_follows_the_first_tabs_pick(demo_host):
    host = demo_host()
    # Tab 2 follows tab 1's pick, then writes on its own the model it had before (a naive autosave).
    tab1, tab2, result = host.race_two_tabs("opus", stored=OPUS, pick=GPT4O)
    stale = [w for w in host.writes.writes if w.model == OPUS]
    assert stale and all(w.decision == "keep" for w in stale), stale
    assert result["session"]["model"] == GPT4O  # the view saw the kept model
    assert host.stored("opus") == GPT4O
    assert tab2.value == GPT4O and tab1.value == GPT4O
    tab2.focus().driver.find_element("id", "composerInput").send_keys("hello\n")
    tab2.wait_js("return Array.from(document.querySelectorAll('#messages .assistant'))"
                 ".some(li => li.textContent.startsWith('[' + arguments[0] + ']'))", GPT4O)
    assert [(c.old, c.new) for c in host.writes.changes] == [(OPUS, GPT4O)]


# -- S10 ----------------------------------------------------------------------------------------------


def test_s10_settings_default_model_select_is_never_retargeted(demo_host):
    host = demo_host()
    host.openrouter.latency = 0.2
    page = host.page("kimi")
    page.click("#settingsButton")
    page.finish()
    assert page.value == KIMI
    assert KIMI in page.option_values("defaultModelSelect")  # a guard that retargeted any select could have
    assert page.js("return document.getElementById('defaultModelSelect').value") == OPUS
    assert page.js("return demo.defaultChanges") == 0
    assert requests.get(f"{host.url}/api/settings", timeout=10).json()["default_model"] == OPUS
    assert_untouched(host, "kimi", KIMI)


# -- S11 ----------------------------------------------------------------------------------------------


def test_s11_cached_catalog_no_pending_state_and_the_right_model_at_once(demo_host):
    host = demo_host()
    page = host.page("kimi")
    page.finish()  # fills the page's live-model cache (the upstream app's cache-hit path)
    host.openrouter.reset()
    host.writes.clear()
    # Switch to the live-only session once the page has its lists: a reload would race the *static* list (S2).
    page.open("opus")
    page.finish()
    # With warm lists the page can be "finished" before its session response ran its own deferred
    # syncTopbar (a setTimeout 0 queued when the session arrived): a timer queued now runs after it.
    page.wait_js("return !!demo.S.session && demo.S.session.session_id === 'opus'")
    page.driver.execute_async_script("setTimeout(arguments[0], 0)")
    page.js("demo.topbarHistory.length = 0")
    page.click('#sessionList .session[data-session="kimi"]')
    page.wait_js("return demo.S.session.session_id === 'kimi' && demo.topbarHistory.length > 0")
    page.when_settled()
    assert "openrouter" not in [e["provider"] for e in page.events("hermes:pending")]  # the live list never pended
    assert page.js("return demo.topbarHistory") == [KIMI]  # the first thing shown was the stored model
    assert page.value == KIMI
    assert host.openrouter.requests == 0
    assert host.writes.writes == []
    assert_untouched(host, "kimi", KIMI)


# -- S12 ----------------------------------------------------------------------------------------------


def test_s12_reload_while_pending_writes_nothing(demo_host):
    host = demo_host(fetch_timeout=HOLD)
    host.openrouter.latency = HOLD
    page = host.page("kimi")
    page.wait_js("return demo.events.some(e => e.kind === 'hermes:write-held')")  # the naive fallback was held
    page.js("window.__beforeReload = true")
    page.driver.refresh()
    page.wait_js("return !!window.demo && !window.__beforeReload")
    page.wait_pending("openrouter")
    answer_now(host.openrouter)
    page.finish()
    assert page.value == KIMI
    # The first page's held fallback died with it: only the reloaded page's own held writes ever left.
    released = len(page.events("hermes:write-held"))
    assert len([w for w in host.writes.writes if w.model != KIMI]) == released
    assert_untouched(host, "kimi", KIMI)


# -- S13 ----------------------------------------------------------------------------------------------


EVIL_ID = 'evil/<img src=x onerror="window.__pwned=1">'
EVIL_LABELLED = {"id": "evil/labelled", "label": "<script>window.__pwned=2</script><b>bold</b>"}


def test_s13_html_in_provider_ids_and_labels_is_text(demo_host):
    host = demo_host()
    host.openrouter.models = [*host.openrouter.models, EVIL_ID, EVIL_LABELLED]
    page = host.page("kimi")
    page.click("#modelPickerButton")
    page.finish()
    texts = page.js("return Array.from(document.getElementById('modelSelect').options, o => o.textContent)")
    assert EVIL_ID in texts and EVIL_LABELLED["label"] in texts  # the markup is the visible text
    items = page.js("return Array.from(document.querySelectorAll('.model-item'), b => b.textContent)")
    assert EVIL_ID in items
    assert page.js("return document.querySelectorAll('img, #modelPicker script, #modelPicker b').length") == 0
    assert page.js("return window.__pwned === undefined")
    assert page.value == KIMI
    assert_untouched(host, "kimi", KIMI)
