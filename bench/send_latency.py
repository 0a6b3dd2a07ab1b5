"""Added latency of a guarded send through ``hermes-plugin proxy --preset hermes-webui`` when reading a
session is slow, p50/p95 against the same send made directly, in one run.

The upstream mimics hermes-webui: ``GET /api/session?session_id=..&messages=0&resolve_model=0`` takes
``--lookup`` seconds (4 s: a big session file, a slow disk), ``POST /api/chat/start`` answers at once.
The page first opens the session through the proxy (one slow read, as the app itself does), then sends
messages. Sends alternate proxy / direct so drift in machine load hits both alike.

``--no-learn`` runs the proxy with ``session_learn_ttl = 0`` (every write reads the session itself, the
behaviour before the proxy learnt stored models): a few sends only, each waits for the slow reads.

    python bench/send_latency.py [--sends 200] [--lookup 4] [--no-learn]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import requests
from flask import Flask, request

from hermes_plugin.presets import preset
from hermes_plugin.proxy import create_app, proxy_config
from hermes_plugin.testing.servers import LoopbackServer

SESSION = "s1"
MODEL = "deepseek-reasoner"


def make_upstream(lookup: float) -> Flask:
    app = Flask("send_latency_upstream")
    stored = {SESSION: MODEL}
    slow = threading.Event()

    @app.get("/api/session")
    def session() -> dict[str, object]:
        slow.wait(lookup)  # the slow session lookup
        sid = request.args["session_id"]
        return {"session": {"session_id": sid, "model": stored[sid], "messages": []}}

    @app.post("/api/chat/start")
    def start() -> dict[str, object]:
        body = request.get_json()
        stored[body["session_id"]] = body["model"]
        return {"stream_id": "x", "session_id": body["session_id"]}

    return app


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--lookup", type=float, default=4.0, help="seconds one session read takes upstream")
    parser.add_argument("--no-learn", action="store_true", help="session_learn_ttl = 0: the proxy reads itself")
    args = parser.parse_args()
    table = preset("hermes-webui")
    table["session_learn_ttl"] = 0 if args.no_learn else 60
    with LoopbackServer(make_upstream(args.lookup)) as upstream, \
            LoopbackServer(create_app(upstream.url, cfg=proxy_config(table))) as proxy:
        http = requests.Session()
        headers = {"Origin": proxy.url, "Content-Type": "application/json"}
        t0 = time.perf_counter()
        http.get(f"{proxy.url}/api/session?session_id={SESSION}&messages=0&resolve_model=0").raise_for_status()
        opened = time.perf_counter() - t0
        body = {"session_id": SESSION, "model": MODEL, "message": "hello"}
        times: dict[str, list[float]] = {"direct": [], "proxy": []}
        sends = min(args.sends, 3) if args.no_learn else args.sends
        for i in range(sends):
            for name in ("direct", "proxy") if i % 2 == 0 else ("proxy", "direct"):  # A B B A ...
                base = upstream.url if name == "direct" else proxy.url
                start = time.perf_counter()
                response = http.post(base + "/api/chat/start", json=body,
                                     headers={**headers, "Origin": base, "X-Hermes-Intent": "auto"})
                times[name].append((time.perf_counter() - start) * 1000)
                response.raise_for_status()
    mode = "no learning (session_learn_ttl = 0)" if args.no_learn else "learnt stored models (session_learn_ttl = 60)"
    print(f"send latency, session lookup {args.lookup:.1f} s upstream, {mode}")
    print(f"  page opened the session through the proxy in {opened * 1000:.0f} ms (the app's own slow read)")
    print(f"  {'path':8} {'sends':>5} {'p50 ms':>9} {'p95 ms':>9}")
    for name in ("direct", "proxy"):
        values = times[name]
        print(f"  {name:8} {len(values):5d} {statistics.median(values):9.2f} {percentile(values, 0.95):9.2f}")
    added50 = statistics.median(times["proxy"]) - statistics.median(times["direct"])
    added95 = percentile(times["proxy"], 0.95) - percentile(times["direct"], 0.95)
    print(f"  added by the proxy: p50 {added50:+.2f} ms, p95 {added95:+.2f} ms (goal: p95 <= 5 ms)")


if __name__ == "__main__":
    main()
