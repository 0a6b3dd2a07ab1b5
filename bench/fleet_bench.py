"""Several workers and hosts: the five fleet figures, throughput at -w 1/2/4, upstream fetches, WebSocket delay.

Everything runs for real: the fleet host (tests/fleethost.py, sessions in SQLite) under gunicorn
(gthread), redis-server on a free port, a fake provider with 500 ms latency, clients on loopback.

1. The five figures (goal: 0, 0, 12/12, 10/10, 1) with the per-process state for contrast (what every
   worker had before state was shared), SQLite state, Redis, and two hosts sharing one Redis.
2. Guarded-write and catalog-read throughput at -w 1, 2, 4 with SQLite and with Redis, and the ratio to
   the same host without ModelGuard under the same workers (writes vs its unguarded write route,
   catalog reads vs its plain JSON read route).
3. Upstream requests for K concurrent catalog requests across the fleet.
4. Delay from a write to the WebSocket event on another worker (p50/p95).
5. The model log's size on disk at its default bound.

    python bench/fleet_bench.py [--seconds 1] [--rounds 4] [--clients 16] [--k 40 200] [--parts figures throughput upstream ws audit]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.fleet import (  # noqa: E402
    LIVE,
    GunicornHost,
    P,
    audit_visibility,
    concurrent_catalog_reads,
    model_events,
    racing_writers,
    stale_etag_refusals,
    start_fleet,
    stop_fleet,
)
from support.fleethost import seed_sessions  # noqa: E402
from support.redisserver import RedisServer  # noqa: E402
from support.wsclient import RawWS  # noqa: E402

from hermes_plugin.state import STATE_FILE, open_store  # noqa: E402
from hermes_plugin.testing.fake_provider import FakeProvider  # noqa: E402
from hermes_plugin.writeguard import AuditLog, Decision  # noqa: E402

PARTS = ["figures", "throughput", "upstream", "ws", "audit"]
SETUPS = [  # name, hosts, workers per host, redis, state
    ("per-process state (contrast)", 1, 4, False, "memory"),
    ("SQLite, one host", 1, 4, False, None),
    ("Redis, one host", 1, 4, True, None),
    ("Redis, two hosts", 2, 2, True, None),
]


def figures(tmp: Path) -> None:
    print("## The five figures (fresh connections; goal column first)\n")
    print("| set-up | workers | stale ETag refused (goal 0/40) | lost updates (goal 0) | model log seen (goal 12/12) "
          "| WS events per client, fewest (goal 10/10) | upstream for 40 catalog requests (goal 1) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for n, (name, hosts, workers, redis, state) in enumerate(SETUPS):
        fleet = start_fleet(tmp / f"figures{n}", hosts, workers, redis, state=state)
        try:
            upstream, _ = concurrent_catalog_reads(fleet, 40)
            refused, _ = stale_etag_refusals(fleet, 40)
            writers = racing_writers(fleet, 8, 15)
            seen, _ = audit_visibility(fleet, 12, 8)
            received, _ = model_events(fleet, 6, 10, timeout=3)
        finally:
            stop_fleet(fleet)
        fewest = min(len(events) for events in received)
        print(f"| {name} | {hosts} x -w {workers} | {refused}/40 | {writers.lost()}/{len(writers.ok)} accepted "
              f"| {seen}/12 | {fewest}/10 | {upstream} |", flush=True)


def drive(url: str, clients: int, seconds: float, request: Any) -> float:
    """Requests per second from ``clients`` keep-alive clients calling ``request(session, n, url)``."""
    counts = [0] * clients
    errors: list[str] = []
    stop = threading.Event()
    start = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        http = requests.Session()
        start.wait()
        n = 0
        while not stop.is_set():
            response = request(http, index, n, url)
            if response.status_code != 200:
                errors.append(f"{response.status_code} {response.text[:100]}")
                stop.set()
            n += 1
        counts[index] = n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    stop.wait(seconds)  # the measurement window
    stop.set()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"benchmark request failed: {errors[0]}")
    return sum(counts) / (time.perf_counter() - began)


def guarded_write(http: requests.Session, index: int, n: int, url: str) -> requests.Response:
    return http.post(url + "/api/session/update", json={"session_id": f"w{index}", "model": f"m/{n}"},
                     headers={"X-Hermes-Intent": "user"}, timeout=30)


def catalog_read(http: requests.Session, index: int, n: int, url: str) -> requests.Response:
    return http.get(f"{url}{P}/api/catalog", timeout=30)


def host_read(http: requests.Session, index: int, n: int, url: str) -> requests.Response:
    return http.get(f"{url}/api/session/w{index}", timeout=30)


def throughput(tmp: Path, clients: int, seconds: float, rounds: int) -> None:
    print(f"\n## Throughput ({clients} keep-alive clients; {rounds} interleaved rounds of {seconds:g} s per figure; "
          "gunicorn gthread, 8 threads)\n")
    print("| -w | unguarded writes/s | SQLite guarded writes/s (ratio) | Redis guarded writes/s (ratio) "
          "| unguarded JSON reads/s | SQLite catalog reads/s (ratio) | Redis catalog reads/s (ratio) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    sessions = {f"w{i}": "start/model" for i in range(clients)}
    redis = RedisServer(tmp / "redis-throughput").start()
    provider = FakeProvider("openai", models=[LIVE]).start()
    try:
        for workers in (1, 2, 4):
            root = tmp / f"throughput-{workers}"
            root.mkdir()
            seed_sessions(root, sessions)
            hosts = [GunicornHost(root, "plain", workers, guard=False),
                     GunicornHost(root, "sqlite", workers, provider=provider.base_url),
                     GunicornHost(root, "redis", workers, redis=redis.url, provider=provider.base_url)]
            try:
                for host in hosts:
                    host.start()
                for host in hosts[1:]:
                    requests.get(f"{host.url}{P}/api/catalog", timeout=30)  # warm: reads measure the cached path
                writes = [0.0] * 3
                reads = [0.0] * 3
                for round_ in range(rounds):
                    order = range(3) if round_ % 2 == 0 else reversed(range(3))  # drift hits every host alike
                    for i in order:
                        writes[i] += drive(hosts[i].url, clients, seconds, guarded_write)
                        reads[i] += drive(hosts[i].url, clients, seconds, host_read if i == 0 else catalog_read)
            finally:
                for host in hosts:
                    host.stop()
            w = [value / rounds for value in writes]
            r = [value / rounds for value in reads]
            print(f"| {workers} | {w[0]:.0f} | {w[1]:.0f} ({w[1] / w[0]:.2f}) | {w[2]:.0f} ({w[2] / w[0]:.2f}) "
                  f"| {r[0]:.0f} | {r[1]:.0f} ({r[1] / r[0]:.2f}) | {r[2]:.0f} ({r[2] / r[0]:.2f}) |", flush=True)
    finally:
        provider.stop()
        redis.stop()


def upstream_per_k(tmp: Path, ks: list[int]) -> None:
    print("\n## Upstream requests for K concurrent catalog requests (cold cache, provider latency 500 ms)\n")
    print("| set-up | " + " | ".join(f"K={k}" for k in ks) + " |")
    print("| --- |" + " ---: |" * len(ks))
    for n, (name, hosts, workers, redis, state) in enumerate(SETUPS):
        counts = []
        for k in ks:
            fleet = start_fleet(tmp / f"k{n}-{k}", hosts, workers, redis, state=state)
            try:
                counts.append(concurrent_catalog_reads(fleet, k)[0])
            finally:
                stop_fleet(fleet)
        print(f"| {name}, {hosts} x -w {workers} | " + " | ".join(str(c) for c in counts) + " |", flush=True)


def ws_delay(tmp: Path, writes: int = 60) -> None:
    print(f"\n## Delay from a write to the WebSocket event ({writes} writes, 4 clients each)\n")
    print("| set-up | where the clients are | p50 ms | p95 ms | max ms | events received |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, hosts, workers, redis in (("SQLite, one host", 1, 4, False), ("Redis, two hosts", 2, 2, True)):
        fleet = start_fleet(tmp / f"ws-{hosts}-{redis}", hosts, workers, redis)
        try:
            writer = fleet.hosts[-1].url
            listen = fleet.hosts[0].url
            sockets = [RawWS(listen, timeout=10) for _ in range(4)]
            for client in sockets:
                assert client.receive_json() == {"type": "hello"}
            sent: dict[str, float] = {}
            arrived: list[dict[str, float]] = [{} for _ in sockets]

            def receive(client: RawWS, got: dict[str, float]) -> None:
                while len(got) < writes:
                    try:
                        event = client.receive_json()
                    except OSError:
                        return
                    if event.get("type") == "model" and event.get("session") == "fig4":
                        got[event["model"]] = time.perf_counter()

            threads = [threading.Thread(target=receive, args=(c, arrived[i])) for i, c in enumerate(sockets)]
            for thread in threads:
                thread.start()
            for n in range(writes):
                model = f"delay/{n}"
                sent[model] = time.perf_counter()
                response = requests.post(writer + "/api/session/update", json={"session_id": "fig4", "model": model},
                                         headers={"X-Hermes-Intent": "user"}, timeout=30)  # a fresh connection
                assert response.status_code == 200, response.text
            for thread in threads:
                thread.join()
            for client in sockets:
                client.close()
        finally:
            stop_fleet(fleet)
        delays = sorted((at - sent[model]) * 1000 for got in arrived for model, at in got.items())
        where = "any of the 4 workers (3 in 4 writes land on another)" if hosts == 1 else "the other host"
        p95 = delays[max(0, int(len(delays) * 0.95) - 1)] if delays else float("nan")
        median = statistics.median(delays) if delays else float("nan")
        print(f"| {name} | {where} | {median:.1f} | {p95:.1f} | {max(delays, default=float('nan')):.1f} "
              f"| {len(delays)}/{writes * len(sockets)} |", flush=True)


def audit_size(tmp: Path, entries: int = 12_000) -> None:
    print(f"\n## Model log on disk with the default bound ({entries} entries written over 500 sessions, SQLite state)\n")
    print("| texts per entry | entries kept | state file MB | WAL MB |")
    print("| --- | ---: | ---: | ---: |")
    for label, size in (("worst case (stored models over the 256-character cut)", 600), ("30-character model ids", 30)):
        folder = tmp / f"audit-{size}"
        store = open_store("sqlite", folder)
        audit = AuditLog(store)
        for n in range(entries):
            audit.record(Decision("pass", "user", session=f"s{n % 500}", stored="o" * size, proposed="p" * min(size, 256)),
                         "n" * size)
        main_mb = (folder / STATE_FILE).stat().st_size / 2**20
        wal = folder / (STATE_FILE + "-wal")
        wal_mb = wal.stat().st_size / 2**20 if wal.exists() else 0.0
        print(f"| {label} | {store.audit_count()} | {main_mb:.1f} | {wal_mb:.1f} |", flush=True)
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="one measurement window")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved windows per throughput figure")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive client threads for throughput")
    parser.add_argument("--k", type=int, nargs="+", default=[40, 200], help="concurrent catalog requests")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS, help="what to measure (default: all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if "figures" in args.parts:
            figures(tmp)
        if "throughput" in args.parts:
            throughput(tmp, args.clients, args.seconds, args.rounds)
        if "upstream" in args.parts:
            upstream_per_k(tmp, args.k)
        if "ws" in args.parts:
            ws_delay(tmp)
        if "audit" in args.parts:
            audit_size(tmp)
    print("\nAll on one 2-core machine: gunicorn workers, redis-server, the provider and the client threads share it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
