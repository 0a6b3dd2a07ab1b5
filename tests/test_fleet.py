"""Several gunicorn workers, and two hosts, acting as one guard: real gunicorn, real redis-server, fresh connections.

The five figures of a multi-worker deployment, each at its goal, in three set-ups: one host with the
default SQLite state, one host with Redis, two hosts sharing one Redis. Then the faults: Redis stopped
mid-run refuses writes with a 503 and serves catalogs stale; Redis back, everything recovers without a
restart. The reverse proxy under four workers shares its state through Redis the same way.
``bench/fleet_bench.py`` prints the same figures, and the per-process state for contrast.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_client
from support.fleet import (
    LIVE,
    WAIT,
    Fleet,
    GunicornHost,
    P,
    audit_visibility,
    concurrent_catalog_reads,
    connect,
    events,
    get,
    model_events,
    racing_writers,
    read,
    stale_etag_refusals,
    start_fleet,
    stop_fleet,
    version,
    write,
)
from support.fleethost import seed_sessions, stored_models
from support.redisserver import RedisServer, need_redis_server

from hermes_plugin.testing.fake_provider import FakeProvider

SETUPS = {
    "sqlite-one-host": {"hosts": 1, "workers": 4, "redis": False},
    "redis-one-host": {"hosts": 1, "workers": 4, "redis": True},
    "redis-two-hosts": {"hosts": 2, "workers": 2, "redis": True},
}


@pytest.fixture(scope="module", params=list(SETUPS))
def fleet(request: Any, tmp_path_factory: Any) -> Iterator[Fleet]:
    if SETUPS[request.param]["redis"]:
        need_redis_server()
    running = start_fleet(tmp_path_factory.mktemp(request.param), **SETUPS[request.param])
    try:
        yield running
    finally:
        stop_fleet(running)


def test_one_upstream_fetch_for_concurrent_catalog_requests(fleet):
    upstream, answers = concurrent_catalog_reads(fleet, 40)
    assert [response.status_code for response in answers] == [200] * 40
    assert all(LIVE in {m["id"] for m in response.json()["models"]} for response in answers)
    assert upstream == 1
    assert len({response.headers["X-Worker"] for response in answers}) > 1  # really several workers


def test_etag_just_read_is_never_refused(fleet):
    refused, statuses = stale_etag_refusals(fleet, 40)
    assert refused == 0 and statuses == [200] * 40
    assert stored_models(fleet.root)["fig1"] == "model/39"
    assert len(fleet.workers) > 1


def test_if_match_writers_lose_no_update(fleet):
    result = racing_writers(fleet, clients=8, writes=15)
    assert result.errors == []
    assert len(result.ok) + result.conflicts == 8 * 15
    assert result.lost() == 0  # no two accepted writes built on the same version
    assert sorted(new for _, new, _ in result.ok) == list(range(2, 2 + len(result.ok)))  # one step per success
    last = max(result.ok, key=lambda item: item[1])
    assert stored_models(fleet.root)["fig2"] == last[2]
    assert version(read(fleet, "fig2")) == last[1]


def test_every_change_is_in_the_model_log(fleet):
    fewest, models = audit_visibility(fleet, changes=12, reads=len(fleet.hosts) * 4)
    assert fewest == 12
    entries = get(f"{fleet.url()}{P}/api/sessions/fig3/model-log").json()["entries"]
    assert [entry["new"] for entry in entries] == models  # in order, whichever worker wrote each


def test_model_events_reach_every_client(fleet):
    received, models = model_events(fleet, clients=6, changes=10)
    for events_of_one_client in received:
        assert [event["model"] for event in events_of_one_client] == models  # all ten, in write order
        assert [event["version"] for event in events_of_one_client] == list(range(2, 12))


def test_refresh_in_one_worker_reaches_every_worker_and_client(fleet):
    clients = [connect(fleet) for _ in range(4)]
    try:
        fleet.provider.configure(models=[LIVE, "live/new-model"])
        fleet.provider.reset()
        refreshed = get(f"{fleet.url()}{P}/api/catalog/prov?refresh=1")
        assert "live/new-model" in {m["id"] for m in refreshed.json()["models"]}
        for client in clients:
            assert [event["state"] for event in events(client, "catalog", 1, provider="prov")] == ["fresh"]
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
    deadline = time.monotonic() + WAIT
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling a condition with a deadline
    return result


def test_redis_stopped_refuses_writes_serves_stale_then_recovers(tmp_path):
    need_redis_server()
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
                assert [event["model"] for event in events(client, "model", 1, session="fig5")] == ["after/ws"]
        finally:
            for client in clients:
                client.close()
    finally:
        stop_fleet(fleet)


# -- the reverse proxy under several workers ---------------------------------------------------------

PROXY_CONFIG = """
[proxy]
writes = [{method = "POST", url = '^/api/session/update$', session = "session_id", model = "model"}]
session_read = {url = "/api/session/{session}", model = "model"}
session_ttl = 0
auth_url = "/health"

[providers.prov]
kind = "openai-compatible"
base_url = "%s"

[providers.cold]
kind = "openai-compatible"
base_url = "%s"
"""


def test_proxy_workers_share_guard_state_through_redis(tmp_path):
    need_redis_server()
    seed_sessions(tmp_path, {name: "start/model" for name in ("fig1", "fig2", "fig3", "fig4")})
    server = RedisServer(tmp_path / "redis").start()
    provider = FakeProvider("openai", models=[LIVE], latency=0.5).start()
    cold = FakeProvider("openai", models=[LIVE], latency=0.5).start()
    upstream = GunicornHost(tmp_path, "upstream", 2, guard=False).start()  # the app itself knows nothing of the guard
    config = tmp_path / "proxy.toml"
    config.write_text(PROXY_CONFIG % (provider.base_url, cold.base_url))
    # Health from the model log: the session model route judges availability, which fetches never-fetched providers.
    proxies = GunicornHost(tmp_path, "proxy", 4, threads=16, health=f"{P}/api/sessions/fig1/model-log",
                           app=f"hermes_plugin.proxy:create_app(upstream={upstream.url!r}, config={str(config)!r})",
                           env={"HERMES_PLUGIN_REDIS_URL": server.url})
    fleet = Fleet(tmp_path, [proxies], provider, server, cold=cold)
    try:
        proxies.start()
        upstream_requests, answers = concurrent_catalog_reads(fleet, 40)
        assert [response.status_code for response in answers] == [200] * 40
        assert upstream_requests == 1
        assert stale_etag_refusals(fleet, 20)[0] == 0
        result = racing_writers(fleet, clients=6, writes=10)
        assert result.errors == [] and result.ok and result.lost() == 0
        assert audit_visibility(fleet, changes=8, reads=6)[0] == 8
        received, models = model_events(fleet, clients=4, changes=6)
        assert all([event["model"] for event in got] == models for got in received)
        assert len(proxies.pids()) == 4  # every proxy worker served part of it
    finally:
        proxies.stop()
        upstream.stop()
        stop_fleet(fleet)
