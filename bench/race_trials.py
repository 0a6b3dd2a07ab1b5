"""Randomized browser trials of the seed race: wrong persisted models with the guard off and on.

Each trial serves a fresh demo host (fresh data dir, fresh origin, so no cache carries over) with random
static and live catalog latencies (0..1500 ms), opens a random session in headless Chromium, and at a
random moment reloads, switches session (a click) or switches provider (a pick in the picker). When the
page is quiet, every session's stored model is compared with what it must be (unchanged, or the user's
pick). It also measures, in the page (a MutationObserver + performance.now()), the time from the stored
model's live option landing in the DOM to the picker showing it.

    python bench/race_trials.py --trials 100          # 100 trials with the guard off, 100 with it on
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
ACTIONS = ("none", "reload", "session_switch", "provider_switch")
SETTLE_TIMEOUT = 30

# Runs before the page's own scripts, so its observer fires before the guard's for the same mutations.
MEASURE = """
(() => {
  const B = window.__bench = { land: {}, shown: [] };
  const check = () => {
    const s = document.getElementById('modelSelect');
    if (!s) return;
    const last = B.shown[B.shown.length - 1];
    if (!last || last.v !== s.value) B.shown.push({ v: s.value, t: performance.now() });
  };
  new MutationObserver(recs => {
    const t = performance.now();
    for (const r of recs) for (const n of r.addedNodes) {
      if (n.nodeName === 'OPTION' && n.parentNode && n.parentNode.id === 'modelSelect' && !(n.value in B.land)) B.land[n.value] = t;
    }
    check();
  }).observe(document, { childList: true, subtree: true });
  document.addEventListener('change', check, true);
  document.addEventListener('input', check, true);
  const frame = () => { check(); requestAnimationFrame(frame); };
  requestAnimationFrame(frame);
})();
"""
QUIET = """
const p = window.demo && demo.S.activeProvider;
return !!p && ['loaded', 'cached', 'failed', 'stale'].includes(demo.liveState[p]) && demo.inflightWrites === 0
  && (!window.hermesGuard || hermesGuard.pending().length === 0);
"""


@dataclass
class Trial:
    mode: str
    session: str
    static_ms: int
    live_ms: int
    action: str
    delay_ms: int
    wrong: list[str] = field(default_factory=list)
    reveal_ms: float | None = None
    live_only: bool = False  # the session on screen at the end has a model only a live catalog lists
    settled: bool = True


def run_trial(driver: Any, providers: tuple[FakeProvider, FakeProvider], root: Path, trial: Trial,
              rng: random.Random) -> Trial:
    openrouter, localai = providers
    openrouter.latency = localai.latency = trial.live_ms / 1000
    app = create_app(demo_providers(openrouter.base_url, localai.base_url), root / f"{trial.mode}-{id(trial)}",
                     guard=trial.mode == "on", static_latency_ms=trial.static_ms)
    expected = dict(ORIGINAL)
    with LoopbackServer(app) as server:
        driver.get(f"{server.url}/?session={trial.session}")
        time.sleep(trial.delay_ms / 1000)  # the randomized moment of the user's action, not a synchronisation
        if trial.action == "reload":
            driver.refresh()
        elif trial.action == "session_switch":
            target = rng.choice([s for s in SESSIONS if s != trial.session])
            WebDriverWait(driver, SETTLE_TIMEOUT).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, f'.session[data-session="{target}"]'))[0].click()
        elif trial.action == "provider_switch":
            other = "localai" if PROVIDER_OF[trial.session] == "openrouter" else "openrouter"
            WebDriverWait(driver, SETTLE_TIMEOUT).until(lambda d: d.execute_script(
                "return !!(window.demo && demo.S.session && document.querySelector("
                "'#providerSelect option[value=\"' + arguments[0] + '\"]'))", other))
            driver.find_element(By.ID, "modelPickerButton").click()
            driver.find_element(By.ID, "providerSelect").send_keys(LABELS[other])
            expected[trial.session] = FIRST_STATIC[other]
        try:
            WebDriverWait(driver, SETTLE_TIMEOUT).until(lambda d: d.execute_script(QUIET))
        except TimeoutException:
            trial.settled = False
        store = app.extensions["hermes_demo"]["store"]
        trial.wrong = [sid for sid in SESSIONS if store.model(sid) != expected[sid]]
        trial.live_only, trial.reveal_ms = reveal_time(driver, expected)
    app.extensions["hermes_demo"]["catalog"].close()
    return trial


def reveal_time(driver: Any, expected: dict[str, str]) -> tuple[bool, float | None]:
    """(live-only?, ms from the stored model's live option landing to the picker showing it, None if never)."""
    bench, current = driver.execute_script(
        "return [window.__bench, window.demo && demo.S.session && demo.S.session.session_id]")
    model = expected.get(current or "")
    if model not in LIVE_ONLY:
        return False, None
    if not bench or model not in bench["land"]:
        return True, None
    landed = bench["land"][model]
    shown = [s["t"] for s in bench["shown"] if s["v"] == model and s["t"] >= landed]
    return True, (shown[0] - landed if shown else None)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def report(trials: list[Trial], mode: str) -> None:
    mine = [t for t in trials if t.mode == mode]
    wrong = [t for t in mine if t.wrong]
    by_action = Counter(t.action for t in wrong)
    print(f"guard {mode:>3}: {len(mine)} trials, {len(wrong)} with a wrong persisted model "
          f"({sum(len(t.wrong) for t in mine)} sessions); by action: "
          + ", ".join(f"{a} {by_action.get(a, 0)}/{sum(t.action == a for t in mine)}" for a in ACTIONS)
          + f"; unsettled {sum(not t.settled for t in mine)}")
    reveals = [t.reveal_ms for t in mine if t.reveal_ms is not None]
    eligible = [t for t in mine if t.live_only]
    if reveals:
        print(f"           live option landed -> stored model shown: p50 {percentile(reveals, 50):.2f} ms, "
              f"p95 {percentile(reveals, 95):.2f} ms, max {max(reveals):.2f} ms "
              f"(shown in {len(reveals)} of {len(eligible)} trials whose model is live-only)")
    else:
        print(f"           live option landed -> stored model shown: never (0 of {len(eligible)} live-only trials)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100, help="trials per mode (default 100)")
    parser.add_argument("--seed", type=int, default=1169, help="RNG seed (default 1169, the seed issue)")
    parser.add_argument("--max-latency-ms", type=int, default=1500)
    parser.add_argument("--modes", default="off,on", help="comma list of off,on")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.max_latency_ms < 0:
        parser.error("--trials must be >= 1 and --max-latency-ms >= 0")
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"off", "on"}:
        parser.error("--modes takes off and/or on")
    rng = random.Random(args.seed)
    plans = [Trial(mode, rng.choice(SESSIONS), rng.randint(0, args.max_latency_ms), rng.randint(0, args.max_latency_ms),
                   rng.choice(ACTIONS), rng.randint(0, args.max_latency_ms))
             for _ in range(args.trials) for mode in modes]  # interleaved, so load drift hits both modes alike
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
    print(f"race trials: seed {args.seed}, latencies 0-{args.max_latency_ms} ms (static and live), "
          f"actions {', '.join(ACTIONS)}; {time.monotonic() - started:.0f} s")
    for mode in modes:
        report(done, mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
