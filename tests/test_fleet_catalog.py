"""State shared by workers, in one process: the catalog service (one upstream fetch across services,
stale on a lock timeout, refreshes and observed catalogs reaching the other workers) and session
versions (made-up reads, the host's own version). Each ``CatalogService`` here stands for one worker
process: they share only the state file and the cache file, as gunicorn workers do."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hermes_plugin.hooks.openai_compatible import OpenAICompatible
from support.hostapp import create_app

from hermes_plugin.catalog import CatalogService
from hermes_plugin.extension import DEFAULTS, state_settings
from hermes_plugin.plugins import make_spec
from hermes_plugin.state import open_store
from hermes_plugin.testing.fake_provider import FakeProvider

WAIT = 10  # seconds a waiting worker allows the fetch: generous, as CI machines run loaded


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider("openai", ["live/a"], latency=0.3) as fake:
        yield fake


def worker(folder: Path, fake: FakeProvider, **kwargs: Any) -> CatalogService:
    """One worker's catalog service: SQLite cache and SQLite state in ``folder``."""
    spec = make_spec("p", live=OpenAICompatible(fake.base_url))
    store = open_store("sqlite", folder)
    return CatalogService(specs=[spec], cache="sqlite", cache_dir=folder, fleet=store,
                          **{"timeout": (1.0, 2.0), "total_timeout": WAIT, **kwargs})


def test_workers_fetching_together_make_one_upstream_request(tmp_path, provider):
    workers = [worker(tmp_path, provider) for _ in range(4)]
    try:
        start = threading.Barrier(len(workers))
        results: list[Any] = []

        def ask(svc: CatalogService) -> None:
            start.wait()
            results.append(svc.catalog("p"))

        threads = [threading.Thread(target=ask, args=(svc,)) for svc in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [cat.state for cat in results] == ["fresh"] * 4
        assert all(cat.ids == {"live/a"} for cat in results)
        assert provider.requests == 1  # the others waited on the fetch lock and read the cache
    finally:
        for svc in workers:
            svc.close()


def test_a_waiter_past_the_timeout_serves_the_stale_copy(tmp_path, provider):
    first = worker(tmp_path, provider)
    try:
        assert first.catalog("p").state == "fresh"  # in the shared cache now
    finally:
        first.close()
    provider.configure(models=["live/a", "live/b"])
    waiter = worker(tmp_path, provider, total_timeout=0.5)
    store = open_store("sqlite", tmp_path)
    try:
        with store.lock("fetch:p"):  # another worker's fetch that never finishes in time
            provider.reset()
            cat = waiter.catalog("p")
        assert cat.state == "stale" and cat.ids == {"live/a"}
        assert "did not finish" in (cat.error or "")
        assert provider.requests == 0
    finally:
        waiter.close()


def test_a_refresh_in_one_worker_reaches_the_other(tmp_path, provider):
    one, two = worker(tmp_path, provider), worker(tmp_path, provider)
    settled: queue.Queue[Any] = queue.Queue()
    two.subscribe(settled.put)
    try:
        assert one.catalog("p").ids == two.catalog("p").ids == {"live/a"}
        while not settled.empty():
            settled.get_nowait()
        provider.configure(models=["live/a", "live/new"])
        provider.reset()
        assert "live/new" in one.catalog("p", refresh=True).ids
        while "live/new" not in settled.get(timeout=WAIT).ids:  # pushed to worker two, not polled by it
            pass
        assert "live/new" in two.snapshot("p").ids
        assert provider.requests == 1  # worker two re-read the shared cache
    finally:
        one.close()
        two.close()


def test_a_worker_that_has_not_heard_of_a_refresh_yet_still_reads_the_new_list(tmp_path, provider):
    """Messages between workers take a moment (SQLite's are polled): a read in that moment is not served the
    old list; the fleet's fetch count says another worker has a newer one, read from the shared cache."""
    one = worker(tmp_path, provider)
    store = open_store("sqlite", tmp_path)
    store.listen = lambda listener: None  # type: ignore[method-assign]  # its messages never arrive
    two = CatalogService(specs=[make_spec("p", live=OpenAICompatible(provider.base_url))], cache="sqlite",
                         cache_dir=tmp_path, fleet=store, timeout=(1.0, 2.0), total_timeout=WAIT)
    try:
        assert one.catalog("p").ids == two.catalog("p").ids == {"live/a"}
        provider.configure(models=["live/a", "live/new"])
        provider.reset()
        assert "live/new" in one.catalog("p", refresh=True).ids
        assert two.catalog("p").ids == {"live/a", "live/new"}
        assert provider.requests == 1  # worker two re-read the shared cache
    finally:
        one.close()
        two.close()


def test_catching_up_with_the_fleet_keeps_the_pause_after_a_failed_fetch(tmp_path, provider):
    """A worker behind the fleet whose re-read fails (here: its own cache, an upstream answering 500) does
    not ask the upstream again on every read: the usual pause after a failure still holds."""
    one = worker(tmp_path, provider)
    two = CatalogService(specs=[make_spec("p", live=OpenAICompatible(provider.base_url))], cache="sqlite",
                         cache_dir=tmp_path / "own", fleet=open_store("sqlite", tmp_path),
                         timeout=(1.0, 2.0), total_timeout=WAIT, retry_after_failure=60)
    try:
        assert two.catalog("p").state == "fresh"
        assert one.catalog("p", refresh=True).state == "fresh"  # the fleet's count moves on: two is behind
        two.session.cache.clear()
        provider.configure(fault="500")
        provider.reset()
        for _ in range(5):
            assert two.catalog("p").ids == {"live/a"}  # its last copy, marked stale
        assert two.snapshot("p").state == "stale"
        assert provider.requests == 1  # one attempt to catch up, then the pause
    finally:
        one.close()
        two.close()


def test_observed_catalogs_are_shared_with_workers_started_later(tmp_path, provider):
    one = worker(tmp_path, provider)
    try:
        one.observe("host-prov", ["host/m1"], "live")
        later = worker(tmp_path, provider)
        try:
            assert later.availability("host/m1") == "present"
            assert later.availability("host/gone", "host-prov") == "absent"
        finally:
            later.close()
    finally:
        one.close()


def test_startup_warning_names_the_setting(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hermes_plugin.extension"):
        create_app(tmp_path / "memory")  # the test host keeps state in memory
        create_app(tmp_path / "sqlite", HERMES_PLUGIN_CACHE="sqlite")
    messages = [record.getMessage() for record in caplog.records]
    assert any("per process" in m and "HERMES_PLUGIN_REDIS_URL" in m for m in messages)
    assert any("this host only" in m and "HERMES_PLUGIN_REDIS_URL" in m for m in messages)


def test_reading_made_up_sessions_cannot_revive_a_stale_if_match(tmp_path):
    app = create_app(tmp_path, sessions={"s1": "model/a"})
    client = app.test_client()
    prefix = "/hermes-plugin/api/sessions"
    seen = client.get(f"{prefix}/s1/model").headers["ETag"]  # the tab read this version
    changed = client.post("/api/session/update", json={"session_id": "s1", "model": "model/b"},
                          headers={"X-Hermes-Intent": "user"})
    assert changed.status_code == 200 and changed.headers["ETag"] != seen
    for n in range(10_001):  # one more than the old per-process LRU held
        assert client.get(f"{prefix}/made-up-{n}/model").status_code == 200
    stale = client.post("/api/session/update", json={"session_id": "s1", "model": "model/c"},
                        headers={"X-Hermes-Intent": "user", "If-Match": seen})
    assert stale.status_code == 412 and stale.json["error"] == "stale_version"
    assert app.store.get("s1")["model"] == "model/b"


def test_host_version_moves_the_etag_when_the_host_changes_the_session(tmp_path):
    app = create_app(tmp_path, sessions={"s1": "model/a"})
    app.guard.session_version(lambda session_id: (app.store.get(session_id) or {}).get("workspace"))
    client = app.test_client()
    url = "/hermes-plugin/api/sessions/s1/model"
    first = client.get(url).headers["ETag"]
    assert client.get(url).headers["ETag"] == first  # stable while nothing changes
    app.store.update("s1", workspace="renamed")  # the host changed the session without the guard
    second = client.get(url).headers["ETag"]
    assert second != first
    stale = client.post("/api/session/update", json={"session_id": "s1", "model": "model/b"},
                        headers={"X-Hermes-Intent": "user", "If-Match": first})
    assert stale.status_code == 412 and app.store.get("s1")["model"] == "model/a"
    fresh = client.post("/api/session/update", json={"session_id": "s1", "model": "model/b"},
                        headers={"X-Hermes-Intent": "user", "If-Match": second})
    assert fresh.status_code == 200 and app.store.get("s1")["model"] == "model/b"


def test_a_write_that_cannot_get_its_session_lock_is_refused_unwritten(tmp_path):
    app = create_app(tmp_path, sessions={"s1": "model/a"}, HERMES_PLUGIN_LOCK_TIMEOUT=0.3)
    store = app.guard.state(app).store
    with store.lock("session:s1"):  # another worker's write of s1, still in its view
        response = app.test_client().post("/api/session/update", json={"session_id": "s1", "model": "model/b"},
                                          headers={"X-Hermes-Intent": "user"})
    assert response.status_code == 503 and response.json["error"] == "state_unavailable"
    assert response.headers["Retry-After"] == "1"
    assert app.store.get("s1")["model"] == "model/a"
    other = app.test_client().post("/api/session/update", json={"session_id": "s1", "model": "model/b"},
                                   headers={"X-Hermes-Intent": "user"})
    assert other.status_code == 200 and app.store.get("s1")["model"] == "model/b"


@pytest.mark.parametrize(("config", "env", "expected"), [
    ({}, None, ("sqlite", "sqlite")),
    ({"HERMES_PLUGIN_CACHE": "memory"}, None, ("memory", "memory")),
    ({"HERMES_PLUGIN_REDIS_URL": "redis://r:6379/0"}, None, ("redis://r:6379/0", "redis://r:6379/0")),
    ({}, "redis://env:6379/1", ("redis://env:6379/1", "redis://env:6379/1")),
    ({"HERMES_PLUGIN_CACHE": "redis://c:6379/0"}, None, ("redis://c:6379/0", "redis://c:6379/0")),
    ({"HERMES_PLUGIN_CACHE": "/tmp/x.sqlite", "HERMES_PLUGIN_REDIS_URL": "redis://r"}, None,
     ("redis://r", "/tmp/x.sqlite")),
    ({"HERMES_PLUGIN_STATE": "memory", "HERMES_PLUGIN_REDIS_URL": "redis://r"}, None, ("memory", "redis://r")),
])
def test_where_state_and_cache_live(monkeypatch, config, env, expected):
    if env is None:
        monkeypatch.delenv("HERMES_PLUGIN_REDIS_URL", raising=False)
    else:
        monkeypatch.setenv("HERMES_PLUGIN_REDIS_URL", env)
    assert state_settings({**DEFAULTS, **config}) == expected
