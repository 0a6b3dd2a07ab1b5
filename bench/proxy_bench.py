"""Overhead of ``hermes-plugin proxy``: latency p50/p99 and throughput, proxy vs direct, in one run.

One upstream app on a real loopback server; the proxy (``--preset hermes-webui`` routes) in front of it
on another. For a JSON route, a 100 KB HTML page (the proxy injects the guard into it) and a streamed
response (10 chunks of 10 KB), the same client measures both paths in interleaved rounds (A B B A ...)
so drift in machine load hits both alike.

``--work-ms 5`` makes every upstream request wait 5 ms (a chat app's database or disk), and
``--gunicorn 4`` runs the upstream and the proxy each under ``gunicorn -w 4 -k gthread`` in their own
processes instead of in this one; the proxy's CPU time per request is then read from ``/proc``.

    python bench/proxy_bench.py [--rounds 6] [--requests 200] [--threads 8] [--work-ms 5] [--gunicorn 4]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
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


def make_upstream(work_ms: float = 0.0) -> Flask:
    app = Flask("bench_upstream")
    work = threading.Event()

    def do_work() -> None:
        if work_ms:
            work.wait(work_ms / 1000)  # the upstream's own work: a database or disk it waits on

    @app.get("/api/session")
    def session() -> dict[str, object]:
        do_work()
        return {"session": {"session_id": "s1", "model": "live/kimi-k2", "messages": list(range(20))}}

    @app.get("/")
    def page() -> Response:
        do_work()
        return Response(PAGE, mimetype="text/html")

    @app.get("/stream")
    def stream() -> Response:
        do_work()

        def chunks() -> Iterator[bytes]:
            for _ in range(10):
                yield b"s" * 10240
        return Response(chunks(), mimetype="application/octet-stream")

    return app


class Gunicorn:
    """``gunicorn -w N -k gthread`` serving ``app`` (a ``module:factory(...)`` string) on a free loopback port."""

    def __init__(self, app: str, workers: int, threads: int) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "-w", str(workers), "-k", "gthread",
             "--threads", str(threads), "--chdir", here, "--keep-alive", "30", app],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert self.proc.stderr is not None
        booted, self.url = 0, ""
        for line in self.proc.stderr:
            if match := re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", line):
                self.url = match.group(1)
            booted += "Booting worker" in line
            if self.url and booted == workers:
                break
        if not self.url:
            raise SystemExit(f"gunicorn did not start: {app}")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()  # type: ignore[union-attr]

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far (Linux /proc)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in [self.proc.pid, *self._children()]:
            try:
                with open(f"/proc/{pid}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def _children(self) -> list[int]:
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as handle:
                return [int(pid) for pid in handle.read().split()]
        except OSError:
            return []

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


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
    parser.add_argument("--work-ms", type=float, default=0.0, help="upstream work per request (ms)")
    parser.add_argument("--gunicorn", type=int, default=0, metavar="N",
                        help="run upstream and proxy under gunicorn -w N (0: in this process)")
    args = parser.parse_args()
    servers: list[Gunicorn] = []
    if args.gunicorn:
        upstream_url = _start(servers, f"proxy_bench:make_upstream(work_ms={args.work_ms})", args)
        proxy_url = _start(servers, f'hermes_plugin.proxy:create_app(upstream="{upstream_url}", '
                                    f'preset="hermes-webui")', args)
        bench(args, upstream_url, proxy_url, servers[1], servers[0])
        for server in servers:
            server.stop()
        return
    with LoopbackServer(make_upstream(args.work_ms)) as upstream, \
            LoopbackServer(create_app(upstream.url, preset="hermes-webui")) as proxy:
        bench(args, upstream.url, proxy.url, None, None)


def _start(servers: list[Gunicorn], app: str, args: argparse.Namespace) -> str:
    servers.append(Gunicorn(app, args.gunicorn, max(4, args.threads)))
    return servers[-1].url


def bench(args: argparse.Namespace, upstream: str, proxy: str, proxy_server: Gunicorn | None,
          upstream_server: Gunicorn | None) -> None:
    targets = {"direct": upstream, "proxy": proxy}
    where = f"gunicorn -w {args.gunicorn} each" if args.gunicorn else "one process"
    print(f"proxy bench: {args.rounds} rounds x {args.requests} requests, {args.threads} client threads, "
          f"upstream work {args.work_ms:g} ms, {where}")
    print(f"{'route':7} {'path':7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}   proxy/direct req/s"
          + ("   CPU ms/req (upstream's own on direct rows)" if proxy_server else ""))
    for name, path in ROUTES.items():
        for target in targets.values():
            run_round(target, path, args.threads * 4, args.threads)  # warm the pools
        latencies: dict[str, list[float]] = {"direct": [], "proxy": []}
        rates: dict[str, list[float]] = {"direct": [], "proxy": []}
        cpu = {"direct": 0.0, "proxy": 0.0}
        measured = {"direct": upstream_server, "proxy": proxy_server}
        for r in range(args.rounds):
            order = ["direct", "proxy"] if r % 2 == 0 else ["proxy", "direct"]
            for side in order:
                server = measured[side]
                before = server.cpu_seconds() if server else 0.0
                lat, rate = run_round(targets[side], path, args.requests, args.threads)
                if server:
                    cpu[side] += server.cpu_seconds() - before
                latencies[side].extend(lat)
                rates[side].append(rate)
        for side in ("direct", "proxy"):
            extra = f"   {statistics.median(rates['proxy']) / statistics.median(rates['direct']):18.2f}" \
                if side == "proxy" else " " * 21
            if proxy_server:
                extra += f"   {cpu[side] * 1000 / (args.rounds * args.requests):8.2f}"
            print(f"{name:7} {side:7} {percentile(latencies[side], 0.5) * 1000:8.2f} "
                  f"{percentile(latencies[side], 0.99) * 1000:8.2f} {statistics.median(rates[side]):8.0f}{extra}")
        added = percentile(latencies["proxy"], 0.5) - percentile(latencies["direct"], 0.5)
        print(f"{name:7} added p50 latency: {added * 1000:.2f} ms")


if __name__ == "__main__":
    main()
