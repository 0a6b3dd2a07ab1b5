"""CPU time the proxy app spends per request, without the WSGI server around it: this checkout vs another.

The upstream (``proxy_bench.make_upstream``) runs under gunicorn in its own processes; the proxy app
(``--preset hermes-webui``) is called as a WSGI app in this process, one request at a time, and the
process's CPU time (user + system, ``time.process_time``) is divided by the number of requests. What the
serving WSGI server itself costs per request (parsing, writing, its thread hand-offs) is the same for any
app and is not in these figures; ``proxy_bench.py --gunicorn`` measures the whole process.

``--baseline CHECKOUT`` measures another checkout's proxy the same way, in a child process (one Python
process can import only one ``hermes_plugin``), interleaved with this one's rounds.

    python bench/proxy_app_cpu.py [--requests 2000] [--rounds 5] [--baseline /work/main] [--profile json [--sort cumulative]]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
from typing import Any

from werkzeug.test import EnvironBuilder

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proxy_bench import ROUTES, Gunicorn  # noqa: E402

HEADERS = {"User-Agent": "bench/1", "Accept-Encoding": "gzip, deflate", "Connection": "keep-alive"}


def environ_for(route: str) -> dict[str, Any]:
    target = ROUTES[route]
    path, _, query = target.partition("?")
    accept = "text/html,application/xhtml+xml,*/*;q=0.8" if route == "html" else "*/*"
    environ = EnvironBuilder(path=path, query_string=query, headers={**HEADERS, "Accept": accept},
                             base_url="http://127.0.0.1:8788").get_environ()
    environ["RAW_URI"] = target  # as gunicorn gives it
    return environ


def measure(upstream: str, route: str, requests: int, profile: bool = False, sort: str = "tottime") -> float:
    """CPU milliseconds per request of the proxy app for ``route`` (after a warm-up)."""
    from hermes_plugin.proxy import create_app

    app = create_app(upstream, preset="hermes-webui")
    base = environ_for(route)

    def one() -> None:
        environ = dict(base)
        statuses: list[str] = []
        body = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        try:
            for _ in body:
                pass
        finally:
            getattr(body, "close", lambda: None)()
        assert statuses and statuses[0].startswith("200"), statuses

    for _ in range(200):
        one()
    profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not time waiting on the upstream
    if profiler:
        profiler.enable()
    start = time.process_time()
    for _ in range(requests):
        one()
    spent = time.process_time() - start
    if profiler:
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(sort).print_stats(30)
        print(out.getvalue(), file=sys.stderr)
    return spent * 1000 / requests


def child(upstream: str, requests: int) -> None:
    """One round of every route, as JSON on stdout (the baseline's process runs this)."""
    print(json.dumps({route: measure(upstream, route, requests) for route in ROUTES}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", metavar="CHECKOUT")
    parser.add_argument("--profile", choices=list(ROUTES), help="print a CPU-time cProfile of this route to stderr")
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"], help="the profile's order")
    parser.add_argument("--child", metavar="UPSTREAM", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.requests)
        return
    upstream = Gunicorn("proxy_bench:make_upstream(work_ms=0)", 2, 8)
    try:
        if args.profile:
            measure(upstream.url, args.profile, args.requests, profile=True, sort=args.sort)
            return
        sides = ["proxy", "baseline"] if args.baseline else ["proxy"]
        figures: dict[str, dict[str, list[float]]] = {side: {route: [] for route in ROUTES} for side in sides}
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                env = dict(os.environ)
                if side == "baseline":
                    env["PYTHONPATH"] = os.path.abspath(args.baseline)
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", upstream.url,
                                      "--requests", str(args.requests)], env=env, check=True, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
                for route, value in json.loads(out.splitlines()[-1]).items():
                    figures[side][route].append(value)
    finally:
        upstream.stop()
    print(f"proxy app CPU per request (median of {args.rounds} rounds x {args.requests} requests), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
          + (f", baseline {args.baseline}" if args.baseline else ""))
    print(f"{'route':7} {'proxy ms':>9}" + (f" {'baseline ms':>12} {'proxy/baseline':>15}" if args.baseline else ""))
    for route in ROUTES:
        mine = statistics.median(figures["proxy"][route])
        line = f"{route:7} {mine:9.3f}"
        if args.baseline:
            theirs = statistics.median(figures["baseline"][route])
            line += f" {theirs:12.3f} {mine / theirs:15.2f}"
        print(line)


if __name__ == "__main__":
    main()
