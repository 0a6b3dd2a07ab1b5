"""Randomized browser trials of the model-overwrite race, guard off and on: stored, shown and picks counted apart.

Each trial serves a fresh demo host (fresh data dir, fresh origin, so no cache carries over) with random
static and live catalog latencies (0..1500 ms), opens a random session in headless Chromium, and at a
random moment reloads, switches session (a click), switches provider (a pick in the picker) or picks a
model (typed into the native select, or clicked in the custom dropdown: real input events). When the page
is quiet (the expected session loaded, its live catalog settled, no write in flight or held) it counts,
separately:

* stored wrong: a session other than the one the user picked for whose stored model changed;
* shown wrong: the picker does not show the model the session on screen must have (saved or picked);
* picks lost: the user's pick (model or provider) is not the picked session's stored model.

For the session on screen at the end, when its stored model is one only a live catalog lists, it also
measures in the page (a MutationObserver, input/change listeners and a per-frame check, all registered
before the page's own scripts; times from performance.now()):

* ready -> shown: from the later of "the model's option landed in the picker" (its last insertion) and
  "the stored model was known to the page" (responseEnd of the session response the page showed) to the
  picker showing the model. Nothing can show a model before both, so this is the guard's own latency.
* landed -> shown: from the option's last insertion alone. It also counts waiting for the session
  response (a switch to a session whose option had landed long before), so it is not the guard's latency.

    python bench/race_trials.py --trials 100          # 100 trials with the guard off, 100 with it on
    python bench/race_trials.py --trials 100 --verbose  # also list trials slower than one frame (16 ms)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from hermes_plugin.demo.app import (
    LOCALAI_LIVE,
    LOCALAI_STATIC,
    OPENROUTER_LIVE,
    OPENROUTER_STATIC,
    SEED_SESSIONS,
    create_app,
    demo_providers,
)
from hermes_plugin.pytest_plugin import make_chromium
from hermes_plugin.testing.fake_provider import FakeProvider
from hermes_plugin.testing.servers import LoopbackServer

SESSIONS = ["kimi", "llama", "opus", "local"]  # "retired" is left out: its fallback is legitimate
ORIGINAL = {sid: model for sid, _, model, _ in SEED_SESSIONS}
PROVIDER_OF = {sid: provider for sid, _, _, provider in SEED_SESSIONS}
FIRST_STATIC = {"openrouter": OPENROUTER_STATIC[0], "localai": LOCALAI_STATIC[0]}
LIVE_ONLY = (set(OPENROUTER_LIVE) - set(OPENROUTER_STATIC)) | (set(LOCALAI_LIVE) - set(LOCALAI_STATIC))
LABELS = {"openrouter": "OpenRouter", "localai": "LocalAI"}
ACTIONS = ("none", "reload", "session_switch", "provider_switch", "model_pick")
# A static model of the session's provider that is not its fallback (first option), where there is one.
PICK = {"openrouter": OPENROUTER_STATIC[1], "localai": LOCALAI_STATIC[0]}
SETTLE_TIMEOUT = 30

# Runs before the page's own scripts, so its observer fires before the guard's for the same mutations.
# land: last insertion time per option value; shown: every change of the picker's value, seen at a mutation,
# an input/change event or the next frame (a silent value change is painted at a frame, not before).
MEASURE = """
(() => {
  const B = window.__bench = { land: {}, shown: [] };
  performance.setResourceTimingBufferSize(100000);
  const check = () => {
    const s = document.getElementById('modelSelect');
    if (!s) return;
    const last = B.shown[B.shown.length - 1];
    if (!last || last.v !== s.value) B.shown.push({ v: s.value, t: performance.now() });
  };
  new MutationObserver(recs => {
    const t = performance.now();
    for (const r of recs) for (const n of r.addedNodes) {
      if (n.nodeName === 'OPTION' && n.parentNode && n.parentNode.id === 'modelSelect') B.land[n.value] = t;
    }
    check();
  }).observe(document, { childList: true, subtree: true });
  document.addEventListener('change', check, true);
  document.addEventListener('input', check, true);
  const frame = () => { check(); requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
})();
"""
# Quiet: the expected session is loaded, its provider's live list settled, no write in flight or held. Checked
# in a timer queued after the session's own setTimeout(syncTopbar), so that fallback has run (or is in flight).
QUIET = """
const done = arguments[arguments.length - 1], want = arguments[0];
const quiet = () => {
  const p = window.demo && demo.S.activeProvider;
  return !!p && !!demo.S.session && demo.S.session.session_id === want
    && ['loaded', 'cached', 'failed', 'stale'].includes(demo.liveState[p]) && demo.inflightWrites === 0
    && (!window.hermesGuard || (hermesGuard.pending().length === 0 && hermesGuard.state().held === 0));
};
setTimeout(() => done(quiet()), 0);
"""
# Known: responseEnd of the last response for the current session (the one the page shows).
REVEAL = """
const cur = window.demo && demo.S.session && demo.S.session.session_id;
const mark = '/api/session?session_id=' + encodeURIComponent(cur || '');
const known = performance.getEntriesByType('resource').filter(e => e.name.endsWith(mark)).map(e => e.responseEnd);
return [window.__bench, cur, known.length ? known[known.length - 1] : null];
"""
ONE_FRAME_MS = 16


@dataclass
class Trial:
    mode: str
    session: str
    static_ms: int
    live_ms: int
    action: str
    delay_ms: int
    wrong: list[str] = field(default_factory=list)  # stored wrong: sessions other than the picked one
    shown_wrong: bool = False
    picked: str | None = None  # the model the user picked (or the provider switch's model), if any
    pick_lost: bool = False
    reveal_ms: float | None = None  # ready (landed and known) -> shown
    landed_ms: float | None = None  # landed -> shown
    live_only: bool = False  # the session on screen at the end has a model only a live catalog lists
    settled: bool = True


def run_trial(
    driver: Any, providers: tuple[FakeProvider, FakeProvider], root: Path, trial: Trial, rng: random.Random
) -> Trial:
    openrouter, localai = providers
    openrouter.latency = localai.latency = trial.live_ms / 1000
    app = create_app(
        demo_providers(openrouter.base_url, localai.base_url),
        root / f"{trial.mode}-{id(trial)}",
        guard=trial.mode == "on",
        static_latency_ms=trial.static_ms,
    )
    expected = dict(ORIGINAL)
    on_screen = trial.session
    with LoopbackServer(app) as server:
        driver.get(f"{server.url}/?session={trial.session}")
        time.sleep(trial.delay_ms / 1000)  # the randomized moment of the user's action, not a synchronisation
        if trial.action == "reload":
            driver.refresh()
        elif trial.action == "session_switch":
            target = on_screen = rng.choice([s for s in SESSIONS if s != trial.session])
            WebDriverWait(driver, SETTLE_TIMEOUT).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, f'.session[data-session="{target}"]')
            )[0].click()
        elif trial.action == "provider_switch":
            other = "localai" if PROVIDER_OF[trial.session] == "openrouter" else "openrouter"
            WebDriverWait(driver, SETTLE_TIMEOUT).until(
                lambda d: d.execute_script(
                    "return !!(window.demo && demo.S.session && document.querySelector("
                    "'#providerSelect option[value=\"' + arguments[0] + '\"]'))",
                    other,
                )
            )
            driver.find_element(By.ID, "modelPickerButton").click()
            driver.find_element(By.ID, "providerSelect").send_keys(LABELS[other])
            expected[trial.session] = trial.picked = FIRST_STATIC[other]
        elif trial.action == "model_pick":
            target = PICK[PROVIDER_OF[trial.session]]
            WebDriverWait(driver, SETTLE_TIMEOUT).until(lambda d: d.execute_script(
                "return !!(window.demo && demo.S.session && demo.S.session.session_id === arguments[1] &&"
                " document.querySelector('#modelSelect option[value=\"' + arguments[0] + '\"]'))",
                target, trial.session))
            if rng.random() < 0.5:  # the custom dropdown, clicked
                driver.find_element(By.ID, "modelPickerButton").click()
                WebDriverWait(driver, SETTLE_TIMEOUT).until(lambda d: [
                    e for e in d.find_elements(By.CSS_SELECTOR, f'.model-item[data-model="{target}"]')
                    if e.is_displayed()])[0].click()
            else:  # the native select, typed into
                select = driver.find_element(By.ID, "modelSelect")
                select.send_keys(driver.execute_script(
                    "return [...arguments[0].options].find(o => o.value === arguments[1]).text", select, target))
            expected[trial.session] = trial.picked = target
        try:
            WebDriverWait(driver, SETTLE_TIMEOUT).until(lambda d: d.execute_async_script(QUIET, on_screen))
        except TimeoutException:
            trial.settled = False
        store = app.extensions["hermes_demo"]["store"]
        picked_session = trial.session if trial.picked else None
        trial.wrong = [sid for sid in SESSIONS if sid != picked_session and store.model(sid) != expected[sid]]
        trial.pick_lost = picked_session is not None and store.model(picked_session) != trial.picked
        shown = driver.execute_script("const s = document.getElementById('modelSelect'); return s && s.value")
        trial.shown_wrong = shown != expected[on_screen]
        trial.live_only, trial.reveal_ms, trial.landed_ms = reveal_time(driver, expected)
    app.extensions["hermes_demo"]["catalog"].close()
    return trial


def reveal_time(driver: Any, expected: dict[str, str]) -> tuple[bool, float | None, float | None]:
    """(live-only?, ms ready -> shown, ms landed -> shown); None when the model was never shown after that."""
    bench, current, known = driver.execute_script(REVEAL)
    model = expected.get(current or "")
    if model not in LIVE_ONLY:
        return False, None, None
    if not bench or model not in bench["land"] or known is None:
        return True, None, None
    landed = bench["land"][model]
    return True, shown_after(bench["shown"], model, max(landed, known)), shown_after(bench["shown"], model, landed)


def shown_after(shown: list[dict[str, Any]], model: str, since: float) -> float | None:
    """Ms from ``since`` until the picker showed ``model`` (0 if it already did), None if it never did."""
    before = [s for s in shown if s["t"] <= since]
    if before and before[-1]["v"] == model:
        return 0.0
    later = [s["t"] for s in shown if s["v"] == model and s["t"] > since]
    return later[0] - since if later else None


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(trials: list[Trial], mode: str) -> None:
    mine = [t for t in trials if t.mode == mode]
    picks = [t for t in mine if t.picked]
    print(f"guard {mode:>3}: {len(mine)} trials; unsettled {sum(not t.settled for t in mine)}")
    for label, bad in (("stored wrong", lambda t: bool(t.wrong)), ("shown wrong", lambda t: t.shown_wrong),
                       ("picks lost", lambda t: t.pick_lost)):
        hits = [t for t in mine if bad(t)]
        by_action = Counter(t.action for t in hits)
        of = f"{len(hits)} of {len(picks)} picks" if label == "picks lost" else f"{len(hits)} of {len(mine)} trials"
        print(f"           {label}: {of}; by action: "
              + ", ".join(f"{a} {by_action.get(a, 0)}/{sum(t.action == a for t in mine)}" for a in ACTIONS))
    eligible = [t for t in mine if t.live_only]
    for label, values in (
        (
            "ready (option landed and stored model known) -> shown",
            [t.reveal_ms for t in eligible if t.reveal_ms is not None],
        ),
        (
            "option landed -> shown (includes waiting for the session)",
            [t.landed_ms for t in eligible if t.landed_ms is not None],
        ),
    ):
        if values:
            print(
                f"           {label}: p50 {percentile(values, 50):.2f} ms, p95 {percentile(values, 95):.2f} ms, "
                f"max {max(values):.2f} ms, over one frame {sum(v > ONE_FRAME_MS for v in values)} "
                f"(shown in {len(values)} of {len(eligible)} trials whose model is live-only)"
            )
        else:
            print(f"           {label}: never shown (0 of {len(eligible)} live-only trials)")


def print_slow(trials: list[Trial]) -> None:
    """Guarded trials whose live-only model was not shown within one frame of being ready."""
    for t in trials:
        if t.mode == "on" and t.live_only and (t.reveal_ms is None or t.reveal_ms > ONE_FRAME_MS or not t.settled):
            print(f"  slow/unshown: {t}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per mode (default 100)")
    parser.add_argument("--seed", type=int, default=1169, help="RNG seed (default 1169)")
    parser.add_argument("--max-latency-ms", type=int, default=1500)
    parser.add_argument("--modes", default="off,on", help="comma list of off,on")
    parser.add_argument("--verbose", action="store_true", help="list live-only trials not shown within one frame")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.max_latency_ms < 0:
        parser.error("--trials must be >= 1 and --max-latency-ms >= 0")
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"off", "on"}:
        parser.error("--modes takes off and/or on")
    rng = random.Random(args.seed)
    plans = [
        Trial(
            mode,
            rng.choice(SESSIONS),
            rng.randint(0, args.max_latency_ms),
            rng.randint(0, args.max_latency_ms),
            rng.choice(ACTIONS),
            rng.randint(0, args.max_latency_ms),
        )
        for _ in range(args.trials)
        for mode in modes
    ]  # interleaved, so load drift hits both modes alike
    providers = (FakeProvider("openai", OPENROUTER_LIVE).start(), FakeProvider("ollama", LOCALAI_LIVE).start())
    driver = make_chromium()
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": MEASURE})
    started = time.monotonic()
    done: list[Trial] = []
    try:
        with tempfile.TemporaryDirectory(prefix="hermes-trials-") as tmp:
            for n, trial in enumerate(plans, 1):
                try:
                    done.append(run_trial(driver, providers, Path(tmp), trial, rng))
                except WebDriverException as exc:
                    print(f"trial {n} ({trial}) broke the browser session: {exc.msg}", file=sys.stderr)
                    raise
                if n % 20 == 0:
                    print(f"  ... {n}/{len(plans)} trials", file=sys.stderr, flush=True)
    finally:
        driver.quit()
        for provider in providers:
            provider.stop()
    print(
        f"race trials: seed {args.seed}, latencies 0-{args.max_latency_ms} ms (static and live), "
        f"actions {', '.join(ACTIONS)}; {time.monotonic() - started:.0f} s"
    )
    for mode in modes:
        report(done, mode)
    if args.verbose:
        print_slow(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
