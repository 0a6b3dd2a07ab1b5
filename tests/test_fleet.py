"""Several gunicorn workers, and two hosts, acting as one guard: real gunicorn, real redis-server, fresh connections.

The five figures of a multi-worker deployment, each at its goal, in three set-ups: one host with the
default SQLite state, one host with Redis, two hosts sharing one Redis. Then the faults: Redis stopped
mid-run refuses writes with a 503 and serves catalogs stale; Redis back, everything recovers without a
restart.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as redis_client
from fleet import GunicornHost, get, post
from fleethost import seed_sessions, stored_models
from redisserver import RedisServer, need_redis_server
from wsclient import RawWS

from hermes_plugin.testing.fake_provider import FakeProvider

LIVE = "live/only-model"
WAIT = 30  # an upper bound for something that must happen, never a synchronisation delay
P = "/hermes-plugin"
SESSIONS = {name: "start/model" for name in ("fig1", "fig2", "fig3", "fig4", "fig5", "cat")}
SETUPS = {
    "sqlite-one-host": {"hosts": 1, "workers": 4, "redis": False},
    "redis-one-host": {"hosts": 1, "workers": 4, "redis": True},
    "redis-two-hosts": {"hosts": 2, "workers": 2, "redis": True},
}


@dataclass
class Fleet:
    root: Path
    hosts: list[GunicornHost]
    provider: FakeProvider
    redis: RedisServer | None = None
    turn: int = 0
    workers: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self) -> str:
        """The next host's URL, round robin: consecutive requests go to different hosts (and workers)."""
        with self.lock:
            self.turn += 1
            return self.hosts[self.turn % len(self.hosts)].url

    def saw(self, response: Any) -> Any:
        with self.lock:
            self.workers.add(response.headers.get("X-Worker", "?"))
        return response


def start_fleet(root: Path, hosts: int, workers: int, redis: bool, persist: bool = False) -> Fleet:
    root.mkdir(parents=True, exist_ok=True)
    seed_sessions(root, SESSIONS)
    provider = FakeProvider("openai", models=[LIVE], latency=0.5).start()
    server = None
    if redis:
        need_redis_server()
        server = RedisServer(root / "redis", persist=persist).start()
    started: list[GunicornHost] = []
    try:
        for n in range(hosts):
            started.append(GunicornHost(root, f"h{n}", workers, redis=server.url if server else None,
                                        provider=provider.base_url, threads=16).start())
    except BaseException:
        stop_fleet(Fleet(root, started, provider, server))
        raise
    return Fleet(root, started, provider, server)


def stop_fleet(fleet: Fleet) -> None:
    for host in fleet.hosts:
        host.stop()
    if fleet.redis is not None:
        fleet.redis.stop()
    fleet.provider.stop()


@pytest.fixture(scope="module", params=list(SETUPS))
def fleet(request: Any, tmp_path_factory: Any) -> Iterator[Fleet]:
    running = start_fleet(tmp_path_factory.mktemp(request.param), **SETUPS[request.param])
    try:
        yield running
    finally:
        stop_fleet(running)


def version(response: Any) -> int:
    return int(response.headers["ETag"].strip('"'))


def write(fleet: Fleet, session: str, model: str, **headers: str) -> Any:
    return fleet.saw(post(fleet.url() + "/api/session/update", json={"session_id": session, "model": model},
                          headers={"X-Hermes-Intent": "user", **headers}))


def read(fleet: Fleet, session: str) -> Any:
    return fleet.saw(get(f"{fleet.url()}{P}/api/sessions/{session}/model"))


# Figure 5 runs first in each set-up: the catalog cache must be cold for it.
def test_one_upstream_fetch_for_concurrent_catalog_requests(fleet):
    fleet.provider.reset()
    start = threading.Barrier(40)
    answers: list[Any] = []

    def client() -> None:
        start.wait()
        answers.append(fleet.saw(get(f"{fleet.url()}{P}/api/catalog/prov", timeout=WAIT)))

    threads = [threading.Thread(target=client) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [response.status_code for response in answers] == [200] * 40
    assert all(LIVE in {m["id"] for m in response.json()["models"]} for response in answers)
    assert fleet.provider.requests == 1
    assert len({response.headers["X-Worker"] for response in answers}) > 1  # really several workers


def test_etag_just_read_is_never_refused(fleet):
    refused = 0
    for n in range(40):
        etag = read(fleet, "fig1").headers["ETag"]
        response = write(fleet, "fig1", f"model/{n}", **{"If-Match": etag})
        assert response.status_code in (200, 412), response.text
        refused += response.status_code == 412
    assert refused == 0
    assert stored_models(fleet.root)["fig1"] == "model/39"
    assert len(fleet.workers) > 1


def test_if_match_writers_lose_no_update(fleet):
    ok: list[tuple[int, int, str]] = []  # (version read, version written, model)
    errors: list[str] = []
    conflicts = Counter[str]()
    start = threading.Barrier(8)

    def client(n: int) -> None:
        start.wait()
        for i in range(15):
            base = read(fleet, "fig2")
            model = f"client{n}/write{i}"
            response = write(fleet, "fig2", model, **{"If-Match": base.headers["ETag"]})
            if response.status_code == 200:
                ok.append((version(base), version(response), model))
            elif response.status_code == 412 and response.json()["error"] == "stale_version":
                conflicts["412"] += 1
            else:
                errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ok) + conflicts["412"] == 8 * 15
    bases = Counter(base for base, _, _ in ok)
    assert sum(count - 1 for count in bases.values()) == 0  # no two accepted writes built on the same version
    assert sorted(new for _, new, _ in ok) == list(range(2, 2 + len(ok)))  # each success moved the version by one
    last = max(ok, key=lambda item: item[1])
    assert stored_models(fleet.root)["fig2"] == last[2]
    assert version(read(fleet, "fig2")) == last[1]


def test_every_change_is_in_the_model_log(fleet):
    models = [f"log/{n}" for n in range(12)]
    for model in models:
        assert write(fleet, "fig3", model).status_code == 200
    for _ in range(len(fleet.hosts) * 4):  # whichever worker answers, it sees all twelve
        entries = fleet.saw(get(f"{fleet.url()}{P}/api/sessions/fig3/model-log")).json()["entries"]
        assert [entry["new"] for entry in entries] == models


def connect(fleet: Fleet) -> RawWS:
    client = RawWS(fleet.url(), timeout=WAIT)
    assert client.receive_json() == {"type": "hello"}
    return client


def events(client: RawWS, kind: str, count: int, **match: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while len(found) < count:
        event = client.receive_json()  # raises on the socket timeout: the event never came
        if event["type"] == kind and all(event.get(key) == value for key, value in match.items()):
            found.append(event)
    return found


def test_model_events_reach_every_client(fleet):
    clients = [connect(fleet) for _ in range(6)]
    try:
        models = [f"ws/{n}" for n in range(10)]
        for model in models:
            assert write(fleet, "fig4", model).status_code == 200
        for client in clients:
            received = events(client, "model", 10, session="fig4")
            assert [event["model"] for event in received] == models
            assert [event["version"] for event in received] == list(range(2, 12))
    finally:
        for client in clients:
            client.close()


def test_refresh_in_one_worker_reaches_every_worker_and_client(fleet):
    clients = [connect(fleet) for _ in range(4)]
    try:
        fleet.provider.configure(models=[LIVE, "live/new-model"])
        fleet.provider.reset()
        refreshed = get(f"{fleet.url()}{P}/api/catalog/prov?refresh=1")
        assert "live/new-model" in {m["id"] for m in refreshed.json()["models"]}
        for client in clients:
            assert events(client, "catalog", 1, provider="prov")[0]["state"] == "fresh"
        for _ in range(len(fleet.hosts) * 6):  # no worker still serves the old list: it was told, not polled
            models = {m["id"] for m in fleet.saw(get(f"{fleet.url()}{P}/api/catalog/prov")).json()["models"]}
            assert "live/new-model" in models
        assert fleet.provider.requests == 1
    finally:
        fleet.provider.configure(models=[LIVE])
        for client in clients:
            client.close()


# -- faults -----------------------------------------------------------------------------------------


def numsub(server: RedisServer) -> int:
    client = redis_client.Redis.from_url(server.url)
    try:
        return int(dict(client.pubsub_numsub("hermes-plugin:events")).get(b"hermes-plugin:events", 0))
    finally:
        client.close()


def wait_for(condition: Any, what: str) -> Any:
    import time

    deadline = time.monotonic() + WAIT
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling a condition with a deadline
    return result


def test_redis_stopped_refuses_writes_serves_stale_then_recovers(tmp_path):
    fleet = start_fleet(tmp_path, hosts=1, workers=3, redis=True, persist=True)
    assert fleet.redis is not None
    try:
        host = fleet.hosts[0]
        warm: set[str] = set()

        def every_worker_has_the_catalog() -> bool:
            response = get(f"{host.url}{P}/api/catalog/prov")
            if LIVE in {m["id"] for m in response.json()["models"]}:
                warm.add(response.headers["X-Worker"])
            return len(warm) == host.workers

        wait_for(every_worker_has_the_catalog, "every worker to hold the catalog")
        assert write(fleet, "fig5", "before/outage").status_code == 200
        before = version(read(fleet, "fig5"))

        fleet.redis.stop()
        for n in range(6):
            response = write(fleet, "fig5", f"during/{n}")
            assert response.status_code == 503
            assert response.json()["error"] == "state_unavailable"
            assert response.headers["Retry-After"] == "1"
        assert stored_models(tmp_path)["fig5"] == "before/outage"  # refused means nothing written
        assert read(fleet, "fig5").status_code == 503
        for _ in range(6):
            catalog = get(f"{host.url}{P}/api/catalog/prov")
            assert catalog.status_code == 200 and LIVE in {m["id"] for m in catalog.json()["models"]}
        refreshed = get(f"{host.url}{P}/api/catalog/prov?refresh=1").json()
        assert refreshed["state"] == "stale" and LIVE in {m["id"] for m in refreshed["models"]}

        fleet.redis.start()  # same port, its append-only file brings the state back
        wait_for(lambda: numsub(fleet.redis) >= host.workers, "every worker to re-subscribe")
        response = write(fleet, "fig5", "after/outage", **{"If-Match": f'"{before}"'})
        assert response.status_code == 200
        assert version(response) == before + 1
        log = [entry["new"] for entry in get(f"{host.url}{P}/api/sessions/fig5/model-log").json()["entries"]]
        assert log == ["before/outage", "after/outage"]  # nothing lost, nothing half-written
        clients = [connect(fleet) for _ in range(4)]
        try:
            assert write(fleet, "fig5", "after/ws").status_code == 200
            for client in clients:
                assert events(client, "model", 1, session="fig5")[0]["model"] == "after/ws"
        finally:
            for client in clients:
                client.close()
    finally:
        stop_fleet(fleet)
