"""Overhead of ``hermes-plugin proxy``: latency p50/p99 and throughput, proxy vs direct, in one run.

One upstream app on a real loopback server; the proxy (``--preset hermes-webui`` routes) in front of it
on another. For a JSON route, a 100 KB HTML page (the proxy injects the guard into it) and a streamed
response (10 chunks of 10 KB), the same client measures both paths in interleaved rounds (A B B A ...)
so drift in machine load hits both alike.

    python bench/proxy_bench.py [--rounds 6] [--requests 200] [--threads 8]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Flask, Response

from hermes_plugin.proxy import create_app
from hermes_plugin.testing.servers import LoopbackServer

PAGE = ("<!doctype html><html><head><title>chat</title></head><body><div class=msg>"
        + "lorem ipsum " * 8500 + "</div></body></html>")  # about 100 KB
ROUTES = {"json": "/api/session?session_id=s1", "html": "/", "stream": "/stream"}


def make_upstream() -> Flask:
    app = Flask("bench_upstream")

    @app.get("/api/session")
    def session() -> dict[str, object]:
        return {"session": {"session_id": "s1", "model": "live/kimi-k2", "messages": list(range(20))}}

    @app.get("/")
    def page() -> Response:
        return Response(PAGE, mimetype="text/html")

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"s" * 10240
        return Response(chunks(), mimetype="application/octet-stream")

    return app


def run_round(base: str, path: str, n: int, threads: int) -> tuple[list[float], float]:
    """n GETs over ``threads`` keep-alive sessions: per-request latencies (s) and requests per second."""
    local = threading.local()
    headers = {"Accept": "text/html"} if path == "/" else {}

    def one(_: int) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        response = session.get(base + path, headers=headers, timeout=30)
        response.content  # noqa: B018  (read the whole body: the stream's last chunk is part of the latency)
        assert response.status_code == 200, response.status_code
        return time.perf_counter() - start

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        latencies = list(pool.map(one, range(n)))
        elapsed = time.perf_counter() - start
    return latencies, n / elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    with LoopbackServer(make_upstream()) as upstream, \
            LoopbackServer(create_app(upstream.url, preset="hermes-webui")) as proxy:
        targets = {"direct": upstream.url, "proxy": proxy.url}
        print(f"proxy bench: {args.rounds} rounds x {args.requests} requests, {args.threads} client threads")
        print(f"{'route':7} {'path':7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}   proxy/direct req/s")
        for name, path in ROUTES.items():
            for target in targets.values():
                run_round(target, path, args.threads * 4, args.threads)  # warm the pools
            latencies: dict[str, list[float]] = {"direct": [], "proxy": []}
            rates: dict[str, list[float]] = {"direct": [], "proxy": []}
            for r in range(args.rounds):
                order = ["direct", "proxy"] if r % 2 == 0 else ["proxy", "direct"]
                for side in order:
                    lat, rate = run_round(targets[side], path, args.requests, args.threads)
                    latencies[side].extend(lat)
                    rates[side].append(rate)
            for side in ("direct", "proxy"):
                ratio = ""
                if side == "proxy":
                    ratio = f"   {statistics.median(rates['proxy']) / statistics.median(rates['direct']):.2f}"
                print(f"{name:7} {side:7} {percentile(latencies[side], 0.5) * 1000:8.2f} "
                      f"{percentile(latencies[side], 0.99) * 1000:8.2f} {statistics.median(rates[side]):8.0f}{ratio}")


if __name__ == "__main__":
    main()
