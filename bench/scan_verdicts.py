"""The race scanner's verdict on three apps, each scanned with the real ``hermes-plugin scan`` command:

* the demo host without the guard (``hermes-plugin demo --no-guard``): expected FOUND (exit 1);
* the demo host with the guard (``hermes-plugin demo``): expected nothing (exit 0);
* the real hermes-webui v0.50.227, a saved session whose model only its live list has: expected FOUND.

Each app runs on loopback with its providers answering at once; the scanner's own delay makes the race.

    python bench/scan_verdicts.py --trials 5 --delay 500 --delay 2000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from webui_host import SAVED, WebUI  # noqa: E402  (the test toolkit's hermes-webui starter)

from hermes_plugin.demo.app import LOCALAI_LIVE, OPENROUTER_LIVE, create_app, demo_providers  # noqa: E402
from hermes_plugin.testing.fake_provider import FakeProvider  # noqa: E402
from hermes_plugin.testing.servers import LoopbackServer  # noqa: E402


def scan(upstream: str, args: list[str], trials: int, delays: list[int]) -> tuple[int, dict[str, Any], float]:
    command = [
        sys.executable,
        "-c",
        "from hermes_plugin.cli import main; main()",
        "scan",
        "--upstream",
        upstream,
        "--trials",
        str(trials),
        "--json",
        *args,
    ]
    for delay in delays:
        command += ["--delay", str(delay)]
    start = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    took = time.monotonic() - start
    return done.returncode, json.loads(done.stdout) if done.stdout else {"error": done.stderr.strip()}, took


def demo(guard: bool, trials: int, delays: list[int]) -> tuple[int, dict[str, Any], float]:
    openrouter = FakeProvider("openai", OPENROUTER_LIVE).start()
    localai = FakeProvider("ollama", LOCALAI_LIVE).start()
    app = create_app(
        demo_providers(openrouter.base_url, localai.base_url), tempfile.mkdtemp(), guard=guard, live_cache_ttl=0
    )
    try:
        with LoopbackServer(app) as server:
            return scan(server.url, ["--start-url", "/?session=kimi"], trials, delays)
    finally:
        openrouter.stop()
        localai.stop()


def webui(trials: int, delays: list[int]) -> tuple[int, dict[str, Any], float]:
    app = WebUI(Path(tempfile.mkdtemp())).start()
    try:
        session = app.new_session(SAVED)
        return scan(app.url, ["--local-storage", f"hermes-webui-session={session}"], trials, delays)
    finally:
        app.stop()


def row(name: str, result: tuple[int, dict[str, Any], float]) -> str:
    code, report, took = result
    runs = ", ".join(
        f"{r['trials_with_finding']}/{r['trials']} "
        + (f"at {r['delay_ms']} ms ({r['plan']})" if r["delay_ms"] else "without delay")
        for r in report.get("runs", [])
    )
    writes = sum(r["writes"] for r in report.get("runs", []))
    what = "; ".join(
        f"{f['method']} {f['url']} {f['field']}: {f['before']} -> {f['after']}" for f in report.get("findings", [])
    ) or report.get("error", "-")
    verdict = {0: "nothing found", 1: "FOUND", 2: "could not run"}.get(code, f"exit {code}")
    return f"| {name} | {code} | {verdict} | {runs} | {writes} | {what} | {took:.0f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--delay", type=int, action="append", help="catalog delay in ms (repeatable)")
    args = parser.parse_args()
    delays = args.delay or [500, 2000]
    print(
        "| app | exit | verdict | trials that changed a stored value, per catalog delay | writes on load (all trials) "
        "| write found | scan time |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(row("demo --no-guard", demo(False, args.trials, delays)), flush=True)
    print(row("demo (guard on)", demo(True, args.trials, delays)), flush=True)
    print(row("hermes-webui v0.50.227", webui(args.trials, delays)), flush=True)


if __name__ == "__main__":
    main()
