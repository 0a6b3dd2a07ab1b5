"""Overhead of ``hermes-plugin proxy``: latency p50/p99 and throughput, proxy vs direct, in one run.

One upstream app on a real loopback server; the proxy (``--preset hermes-webui`` routes) in front of it
on another. For a JSON route (a session read, which the proxy relays untouched), a 100 KB HTML page (the
proxy injects the guard into it), a streamed response (10 chunks of 10 KB) and the static model catalog
(the guard learns from it), the same http.client client measures every target in the same rounds, in
rotating order, so drift in machine load hits them alike.

``--work-ms 5`` makes every upstream request wait 5 ms (a chat app's database or disk), and
``--gunicorn 4`` runs the upstream and the proxy each under ``gunicorn -w 4 -k gthread`` in their own
processes instead of in this one; the CPU time per request of each server (master + workers, from
``/proc``) is then printed, the median over rounds (other jobs on a shared machine inflate single rounds).
``--baseline CHECKOUT`` adds the proxy of another checkout (e.g. the main branch) as a third target, and
``--bare`` a minimal relay with no guard under the same server (``bare_relay.py``): the cost no Python relay
served by gunicorn can avoid on this machine, which puts the proxy's figures in proportion.

    python bench/proxy_bench.py [--rounds 6] [--requests 200] [--threads 8] [--work-ms 5] [--gunicorn 4]
                                [--proxy-threads T] [--baseline /work/main] [--bare] [--pin]

``--pin`` puts the relays (proxy, baseline, bare) on the first CPU and the upstream and this client on the
others, so a relay's cost shows as what it adds, not as CPU it takes from the upstream it relays to.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from flask import Flask, Response

from hermes_plugin.proxy import create_app
from hermes_plugin.testing.servers import LoopbackServer

PAGE = ("<!doctype html><html><head><title>chat</title></head><body><div class=msg>"
        + "lorem ipsum " * 8500 + "</div></body></html>")  # about 100 KB
ROUTES = {"json": "/api/session?session_id=s1", "html": "/", "stream": "/stream", "catalog": "/api/models"}
GROUPS = [{"provider_id": f"p{p}", "models": [{"id": f"p{p}/model-{m}"} for m in range(20)]} for p in range(5)]


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

    @app.get("/api/models")
    def models() -> dict[str, object]:
        do_work()
        return {"groups": GROUPS}  # the static catalog: the guard reads it through the proxy

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

    def __init__(self, app: str, workers: int, threads: int, code: str | None = None,
                 cpus: set[int] | None = None) -> None:
        here = os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ)
        if code:  # another checkout's hermes_plugin (the baseline) shadows the installed one
            env["PYTHONPATH"] = os.pathsep.join([code, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "-w", str(workers), "-k", "gthread",
             "--threads", str(threads), "--chdir", here, "--keep-alive", "30", app],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
            cwd=here,  # "python -m" puts the working directory first on sys.path: it must not hold a checkout
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)  # workers inherit it
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
        """CPU time of the master and its workers so far: every thread's time on a CPU, in nanoseconds, from
        ``/proc/<pid>/task/<tid>/schedstat`` (exact), else user + system clock ticks from ``/proc/<pid>/stat``
        (sampled at each tick, which makes short bursts of work noisy)."""
        total = 0.0
        for pid in [self.proc.pid, *self._children()]:
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
                total += sum(_schedstat_seconds(f"/proc/{pid}/task/{tid}/schedstat") for tid in tasks)
            except OSError:
                total += _stat_seconds(pid)
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


def _schedstat_seconds(path: str) -> float:
    try:
        with open(path) as handle:
            return int(handle.read().split()[0]) / 1e9
    except FileNotFoundError:  # a thread that ended meanwhile
        return 0.0


def _stat_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_round(base: str, path: str, n: int, threads: int) -> tuple[list[float], float]:
    """n GETs over ``threads`` keep-alive connections: per-request latencies (s) and requests per second.

    The client is http.client (a few tens of microseconds a request, the same for every target): on a small
    machine the client shares the CPU with both servers, and a heavy client would hide the proxy's cost.
    """
    local = threading.local()
    host = urlsplit(base)
    headers = {"Accept": "text/html"} if path == "/" else {"Accept": "*/*"}

    def one(_: int) -> float:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()  # the whole body: the stream's last chunk is part of the latency
        assert response.status == 200, response.status
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
    parser.add_argument("--proxy-threads", type=int, default=0, metavar="T",
                        help="gunicorn --threads of the proxy (default: as many as client threads, at least 4)")
    parser.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated, of {', '.join(ROUTES)}")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also measure the proxy of another checkout (e.g. /work/main), same run, same client")
    parser.add_argument("--bare", action="store_true",
                        help="also measure a minimal relay with no guard under the same server (bare_relay.py)")
    parser.add_argument("--pin", action="store_true",
                        help="relays on the first CPU, the upstream and this client on the others: the relay's "
                             "cost measured where it does not take CPU from the upstream and the client")
    args = parser.parse_args()
    if (args.baseline or args.bare or args.pin) and not args.gunicorn:
        parser.error("--baseline, --bare and --pin need --gunicorn N (they run in their own processes)")
    relay_cpus = others = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs at least two CPUs")
        relay_cpus, others = set(cpus[:1]), set(cpus[1:])
        os.sched_setaffinity(0, others)  # this client's threads are started from here and inherit it
    args.pinned = others and f"relays on CPUs {sorted(relay_cpus or ())}, upstream and client on {sorted(others)}"
    if args.gunicorn:
        threads = max(4, args.threads)
        upstream = Gunicorn(f"proxy_bench:make_upstream(work_ms={args.work_ms})", args.gunicorn, threads,
                            cpus=others)
        factory = f'hermes_plugin.proxy:create_app(upstream="{upstream.url}", preset="hermes-webui")'
        relay_threads = args.proxy_threads or threads
        servers = {"direct": upstream, "proxy": Gunicorn(factory, args.gunicorn, relay_threads, cpus=relay_cpus)}
        if args.baseline:
            servers["baseline"] = Gunicorn(factory, args.gunicorn, relay_threads, code=os.path.abspath(args.baseline),
                                           cpus=relay_cpus)
        if args.bare:
            servers["bare"] = Gunicorn(f'bare_relay:make_app("{upstream.url}")', args.gunicorn, relay_threads,
                                       cpus=relay_cpus)
        try:
            bench(args, {side: server.url for side, server in servers.items()}, servers)
        finally:
            for server in servers.values():
                server.stop()
        return
    with LoopbackServer(make_upstream(args.work_ms)) as upstream, \
            LoopbackServer(create_app(upstream.url, preset="hermes-webui")) as proxy:
        bench(args, {"direct": upstream.url, "proxy": proxy.url}, {})


def bench(args: argparse.Namespace, targets: dict[str, str], servers: dict[str, Gunicorn]) -> None:
    """Every target measured in the same rounds, in rotating order; CPU per request read from /proc."""
    where = f"gunicorn -w {args.gunicorn} -k gthread each" if args.gunicorn else "one process"
    if args.pinned:
        where += f", {args.pinned}"
    print(f"proxy bench: {args.rounds} rounds x {args.requests} requests, {args.threads} client threads, "
          f"upstream work {args.work_ms:g} ms, {where}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}" + (f", baseline {args.baseline}" if args.baseline else ""))
    print(f"{'route':7} {'target':8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}   /direct req/s  added p50 ms"
          + ("   CPU ms/req (direct: the upstream's own)" if servers else ""))
    sides = list(targets)
    for name in args.routes.split(","):
        path = ROUTES[name]
        for target in targets.values():
            run_round(target, path, args.requests, args.threads)  # warm every worker, thread and pool
        latencies: dict[str, list[float]] = {side: [] for side in sides}
        rates: dict[str, list[float]] = {side: [] for side in sides}
        cpu: dict[str, list[float]] = {side: [] for side in sides}
        for r in range(args.rounds):
            for side in sides[r % len(sides):] + sides[:r % len(sides)]:  # rotate who goes first
                server = servers.get(side)
                before = server.cpu_seconds() if server else 0.0
                lat, rate = run_round(targets[side], path, args.requests, args.threads)
                if server:
                    cpu[side].append((server.cpu_seconds() - before) / args.requests)
                latencies[side].extend(lat)
                rates[side].append(rate)
        direct_rate, direct_p50 = statistics.median(rates["direct"]), percentile(latencies["direct"], 0.5)
        for side in sides:
            p50 = percentile(latencies[side], 0.5)
            extra = "" if side == "direct" else \
                f"{statistics.median(rates[side]) / direct_rate:14.2f}{(p50 - direct_p50) * 1000:14.2f}"
            line = (f"{name:7} {side:8} {p50 * 1000:8.2f} {percentile(latencies[side], 0.99) * 1000:8.2f} "
                    f"{statistics.median(rates[side]):8.0f}   {extra:28}")
            if servers:
                line += f"   {statistics.median(cpu[side]) * 1000:8.2f}"
            print(line.rstrip(), flush=True)


if __name__ == "__main__":
    main()
