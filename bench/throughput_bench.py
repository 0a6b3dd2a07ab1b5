"""Throughput of host routes with ModelGuard vs without, in one run (targets: ≥ 0.97 JSON, ≥ 0.90 HTML).

Two apps with identical views, each on a real loopback server; a client thread pool drives them in
interleaved rounds (A B B A ...) so drift in machine load hits both sides alike.

    python bench/throughput_bench.py [--rounds 10] [--requests 400] [--threads 8]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from flask import Flask, Response

from hermes_plugin import ModelGuard
from hermes_plugin.testing.servers import LoopbackServer

PAGE = ("<!doctype html><html><head><title>chat</title></head><body><div class=msg>"
        + "lorem ipsum " * 8500 + "</div><script src=/app.js></script></body></html>")  # about 100 KB


def make_app(guarded: bool, tmp: Path) -> Flask:
    app = Flask(f"bench_{'guarded' if guarded else 'plain'}", instance_path=str(tmp / str(guarded)))
    app.config.update(HERMES_PLUGIN_CACHE="memory",
                      HERMES_PLUGIN_LIVE_URLS=[{"url": r"/api/models/live\?provider=(?P<provider>[^&]+)",
                                                "models": "models[].id"}])

    @app.get("/api/session")
    def session() -> dict[str, object]:
        return {"session": {"session_id": "s1", "model": "live/kimi-k2", "messages": list(range(20))}}

    @app.get("/")
    def page() -> Response:
        return Response(PAGE, mimetype="text/html")

    if guarded:
        guard = ModelGuard(app)
        guard.session_model(lambda session_id: "live/kimi-k2")
    return app


def drive(url: str, count: int, threads: int) -> float:
    """Seconds for ``count`` GETs of ``url`` spread over ``threads`` client threads."""
    local = threading.local()

    def one(_: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        response = session.get(url, timeout=30)
        response.raise_for_status()

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        list(pool.map(one, range(count)))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        servers = {name: LoopbackServer(make_app(name == "guarded", Path(tmp))).start() for name in ("plain", "guarded")}
        try:
            injected = requests.get(servers["guarded"].url + "/", timeout=10).text
            assert "hermes-guard.js" in injected, "the guarded page must carry the injected script"
            print(f"page size: plain {len(PAGE)} B, injected {len(injected)} B; "
                  f"{args.rounds} rounds x {args.requests} requests, {args.threads} client threads")
            for label, path in (("JSON route", "/api/session"), ("HTML page (100 KB)", "/")):
                totals = {"plain": 0.0, "guarded": 0.0}
                for name in ("plain", "guarded"):  # warm-up, not counted
                    drive(servers[name].url + path, args.requests // 4, args.threads)
                for index in range(args.rounds):
                    order = ("plain", "guarded") if index % 2 == 0 else ("guarded", "plain")
                    for name in order:
                        totals[name] += drive(servers[name].url + path, args.requests, args.threads)
                rates = {name: args.rounds * args.requests / seconds for name, seconds in totals.items()}
                print(f"{label:20s} without {rates['plain']:8.0f} req/s   with {rates['guarded']:8.0f} req/s   "
                      f"ratio {rates['guarded'] / rates['plain']:.3f}")
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()
