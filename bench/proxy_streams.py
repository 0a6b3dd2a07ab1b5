"""Long streams do not starve the proxy: N server-sent-event streams held open, then plain requests.

A real ``hermes-plugin proxy`` process (the CLI's threaded server) in front of an upstream on loopback. The
benchmark opens ``--streams`` SSE responses through the proxy and keeps every one open (each has delivered
its first event and the upstream holds it), then sends ``--requests`` plain GETs from 8 threads while the
streams are still open, and prints how many were answered and how fast.

    python bench/proxy_streams.py [--streams 200] [--requests 200]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import requests
from flask import Flask, Response

from hermes_plugin.testing.servers import LoopbackServer

CONFIG = """
[proxy]
session_read = {url = "/api/session?session_id={session}", model = "session.model"}
"""


def make_upstream(release: threading.Event) -> Flask:
    app = Flask("bench_upstream")

    @app.get("/events")
    def events() -> Response:
        def body() -> Iterator[bytes]:
            yield b"data: open\n\n"
            release.wait(600)
            yield b"data: done\n\n"
        return Response(body(), mimetype="text/event-stream")

    @app.get("/api/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    return app


def start_proxy(upstream: str, config: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", "from hermes_plugin.cli import main; main()", "proxy",
                             "--upstream", upstream, "--config", config, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the proxy did not start: {line!r}")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    return proc, match.group(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    release = threading.Event()
    upstream = LoopbackServer(make_upstream(release)).start()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as handle:
        handle.write(CONFIG)
    proc, url = start_proxy(upstream.url, handle.name)
    streams: list[requests.Response] = []
    try:
        start = time.perf_counter()
        for _ in range(args.streams):
            try:
                response = requests.get(f"{url}/events", stream=True, timeout=10)
            except requests.RequestException as exc:  # a proxy that holds a pool slot per stream stalls here
                print(f"stream {len(streams) + 1} got no answer within 10 s ({type(exc).__name__})")
                break
            if response.raw.read1(64) != b"data: open\n\n":
                raise SystemExit("a stream did not deliver its first event")
            streams.append(response)
        opened = time.perf_counter() - start

        def one(_: int) -> float | None:
            begin = time.perf_counter()
            try:
                ok = requests.get(f"{url}/api/ping", timeout=10).status_code == 200
            except requests.RequestException:
                return None
            return time.perf_counter() - begin if ok else None

        with ThreadPoolExecutor(8) as pool:
            latencies = list(pool.map(one, range(args.requests)))
        answered = sorted(t for t in latencies if t is not None)
        print(f"streams held open through the proxy: {len(streams)} (opened in {opened:.1f} s)")
        print(f"plain requests answered while they were open: {len(answered)}/{args.requests}")
        if answered:
            p95 = answered[min(len(answered) - 1, int(len(answered) * 0.95))]
            print(f"latency p50 {statistics.median(answered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    finally:
        release.set()
        for response in streams:
            response.close()
        proc.terminate()
        proc.wait(timeout=15)
        upstream.stop()
        os.unlink(handle.name)


if __name__ == "__main__":
    main()
