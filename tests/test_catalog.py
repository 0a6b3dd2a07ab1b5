"""CatalogService against real fake providers on loopback: merging, caching, stale, single flight, faults."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hermes_plugin.hooks.openai_compatible import OpenAICompatible

from hermes_plugin import hookimpl
from hermes_plugin.catalog import CatalogService, ProviderCatalog
from hermes_plugin.errors import UnknownProviderError
from hermes_plugin.plugins import make_plugin_manager, make_spec
from hermes_plugin.testing.fake_provider import FakeProvider

FAST: dict[str, Any] = {"timeout": (1.0, 0.5), "total_timeout": 1.5}


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider("openai", ["live/a", "live/b"]) as fake:
        yield fake


def service(*specs: Any, cache: str = "memory", **kwargs: Any) -> CatalogService:
    return CatalogService(specs=list(specs), cache=cache, **{**FAST, **kwargs})


def live_spec(fake: FakeProvider, provider_id: str = "p", static: Any = (), **kwargs: Any) -> Any:
    return make_spec(provider_id, static=static, live=OpenAICompatible(fake.base_url, **kwargs))


def test_static_and_live_are_merged_static_first(provider: FakeProvider) -> None:
    svc = service(live_spec(provider, static=["static/x", "live/a"]))
    try:
        cat = svc.catalog("p")
    finally:
        svc.close()
    assert cat.state == "fresh" and cat.error is None and isinstance(cat.fetched_at, float)
    assert [(m.id, m.source) for m in cat.models] == [("static/x", "static"), ("live/a", "static"), ("live/b", "live")]
    assert cat.to_json() == {
        "id": "p", "label": "p", "state": "fresh", "fetched_at": cat.fetched_at, "error": None,
        "models": [{"id": "static/x", "label": "static/x", "source": "static"},
                   {"id": "live/a", "label": "live/a", "source": "static"},
                   {"id": "live/b", "label": "live/b", "source": "live"}],
    }


def test_cache_hit_makes_no_upstream_request(provider: FakeProvider, tmp_path: Path) -> None:
    db = str(tmp_path / "cache.sqlite")
    first = service(live_spec(provider), cache=db)
    try:
        fetched = first.catalog("p")
        assert first.catalog("p").ids == fetched.ids
    finally:
        first.close()
    second = service(live_spec(provider), cache=db)  # a restart: only the HTTP cache remembers
    try:
        cached = second.catalog("p")
    finally:
        second.close()
    assert provider.requests == 1
    assert cached.state == "fresh" and cached.ids == {"live/a", "live/b"}
    assert cached.fetched_at == pytest.approx(fetched.fetched_at, abs=1.0)


def test_refresh_forces_an_upstream_request(provider: FakeProvider) -> None:
    svc = service(live_spec(provider))
    try:
        svc.catalog("p")
        provider.models = ["live/new"]
        assert svc.catalog("p").ids == {"live/a", "live/b"}
        assert svc.catalog("p", refresh=True).ids == {"live/new"}
    finally:
        svc.close()
    assert provider.requests == 2


def test_stale_served_after_provider_starts_failing(provider: FakeProvider) -> None:
    svc = service(live_spec(provider))
    try:
        good = svc.catalog("p")
        provider.fault = "500"
        cat = svc.catalog("p", refresh=True)
        assert cat.state == "stale"
        assert cat.ids == {"live/a", "live/b"}
        assert cat.error is not None and "HTTP 500" in cat.error
        assert cat.fetched_at == pytest.approx(good.fetched_at, abs=1.0)
        assert svc.availability("live/a", "p") == "present"
        assert svc.availability("live/zzz", "p") == "unknown"
    finally:
        svc.close()


def test_stale_across_a_restart_on_the_same_sqlite_file(provider: FakeProvider, tmp_path: Path) -> None:
    db = str(tmp_path / "cache.sqlite")
    first = service(live_spec(provider), cache=db)
    try:
        good = first.catalog("p")
    finally:
        first.close()
    provider.fault = "refused"
    second = service(live_spec(provider), cache=db)
    try:
        cat = second.catalog("p", refresh=True)
    finally:
        second.close()
    assert cat.state == "stale" and cat.ids == {"live/a", "live/b"}
    assert cat.error is not None and "connection refused" in cat.error
    assert cat.fetched_at == pytest.approx(good.fetched_at, abs=1.0)


@pytest.mark.parametrize("fault", ["schema", "malformed"])
def test_a_bad_answer_does_not_replace_the_cached_good_one(provider: FakeProvider, tmp_path: Path, fault: str) -> None:
    db = str(tmp_path / "cache.sqlite")
    first = service(live_spec(provider), cache=db)
    try:
        first.catalog("p")
        provider.fault = fault
        assert first.catalog("p", refresh=True).state == "stale"
    finally:
        first.close()
    provider.fault = "refused"
    second = service(live_spec(provider), cache=db)
    try:
        cat = second.catalog("p", refresh=True)
    finally:
        second.close()
    assert cat.state == "stale" and cat.ids == {"live/a", "live/b"}


def test_unknown_versus_absent_through_every_state(provider: FakeProvider) -> None:
    entered, gate = threading.Event(), threading.Event()

    def gated(http: Any) -> Any:
        entered.set()
        gate.wait()
        return OpenAICompatible(provider.base_url).fetch(http)

    svc = service(make_spec("p", live=gated), make_spec("fixed", static=["fixed/one"]))
    try:
        # never fetched
        assert svc.snapshot("p").state == "pending"
        assert svc.explain("ghost", "p") == ("unknown", "p", "p's live catalog is not fetched yet")
        # a provider without a live source is confirmed by its static list
        assert svc.availability("ghost", "fixed") == "absent"
        assert svc.availability("fixed/one") == "present"
        worker = threading.Thread(target=svc.catalog, args=("p",))
        worker.start()
        assert entered.wait(5)
        assert svc.snapshot("p").state == "pending"
        assert svc.availability("ghost", "p") == "unknown"
        assert svc.availability("ghost") == "unknown"
        gate.set()
        worker.join()
        assert svc.snapshot("p").state == "fresh"
        assert svc.availability("live/a", "p") == "present"
        assert svc.availability("ghost", "p") == "absent"
        assert svc.availability("ghost") == "absent"  # every provider confirmed, none lists it
        provider.fault = "500"
        assert svc.catalog("p", refresh=True).state == "stale"
        assert svc.availability("ghost", "p") == "unknown"
        assert svc.availability("ghost") == "unknown"
    finally:
        gate.set()
        svc.close()


def test_failed_with_nothing_cached_is_unknown(provider: FakeProvider) -> None:
    provider.fault = "500"
    svc = service(live_spec(provider))
    try:
        cat = svc.catalog("p")
        availability, provider_id, reason = svc.explain("live/a", "p")
    finally:
        svc.close()
    assert cat.state == "failed" and cat.models == [] and cat.fetched_at is None
    assert (availability, provider_id) == ("unknown", "p")
    assert reason is not None and "HTTP 500" in reason


def test_unknown_provider() -> None:
    svc = service()
    try:
        with pytest.raises(UnknownProviderError):
            svc.catalog("nope")
        assert svc.availability("m", "nope") == "unknown"
        assert svc.availability("m") == "unknown"  # no providers at all confirms nothing
    finally:
        svc.close()


def test_fifty_concurrent_callers_make_one_upstream_request(provider: FakeProvider) -> None:
    provider.latency = 0.2
    svc = service(live_spec(provider))
    barrier = threading.Barrier(50)
    results: list[ProviderCatalog] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        cat = svc.catalog("p")
        with lock:
            results.append(cat)

    threads = [threading.Thread(target=call) for _ in range(50)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        svc.close()
    assert provider.requests == 1
    assert len(results) == 50
    assert all(cat.state == "fresh" and cat.ids == {"live/a", "live/b"} for cat in results)


FAULT_TEXT = {
    "timeout": "timed out",
    "refused": "connection refused",
    "500": "HTTP 500",
    "429": "HTTP 429 from GET http://127.0.0.1",
    "malformed": "invalid JSON",
    "schema": 'expected {"data": [...]}',
    "huge": "larger than",
    "deep": "invalid JSON",
    "drip": "not complete within",
}


@pytest.mark.parametrize("fault", sorted(FAULT_TEXT))
def test_every_fault_fails_without_cache_and_goes_stale_with_it(provider: FakeProvider, fault: str) -> None:
    cold_svc, warm_svc = service(live_spec(provider, "cold")), service(live_spec(provider, "warm"))
    try:
        warm_svc.catalog("warm")
        provider.fault = fault
        cold = cold_svc.catalog("cold")
        warm = warm_svc.catalog("warm", refresh=True)
    finally:
        provider.release()
        cold_svc.close()
        warm_svc.close()
    assert cold.state == "failed" and cold.models == []
    assert warm.state == "stale" and warm.ids == {"live/a", "live/b"}
    for cat in (cold, warm):
        assert cat.error is not None and FAULT_TEXT[fault] in cat.error
    if fault == "429":
        assert "Retry-After: 7" in (cold.error or "")


def test_credentials_are_part_of_the_cache_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOD_KEY", "sk-good-0123456789")
    monkeypatch.setenv("BAD_KEY", "sk-bad-9876543210")
    db = tmp_path / "cache.sqlite"
    with FakeProvider("openai", ["m/1"], api_key="sk-good-0123456789") as fake:
        svc = service(live_spec(fake, "good", api_key_env="GOOD_KEY"),
                      live_spec(fake, "bad", api_key_env="BAD_KEY"), cache=str(db))
        try:
            good = svc.catalog("good")
            bad = svc.catalog("bad")  # same URL: must not be answered from the good key's entry
        finally:
            svc.close()
        assert fake.requests == 2
    assert good.state == "fresh" and good.ids == {"m/1"}
    assert bad.state == "failed" and bad.error is not None and "HTTP 401" in bad.error
    with sqlite3.connect(db) as conn:
        stored = b"".join(bytes(value) for (value,) in conn.execute("SELECT value FROM responses"))
    assert stored and b"sk-good" not in stored


def test_api_key_never_in_errors_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-secret-abcdef123456"
    monkeypatch.setenv("FAKE_KEY", secret)

    def leaky(http: Any) -> Any:
        raise RuntimeError(f"upstream said: bad key {secret}")

    with FakeProvider("openai", ["m/1"], api_key="another-key") as fake:
        spec = make_spec("p", live=OpenAICompatible(fake.base_url, api_key_env="FAKE_KEY"))
        leaky_spec = make_spec("leak", live=OpenAICompatible(fake.base_url, api_key_env="FAKE_KEY"))
        leaky_spec.live = type("Leaky", (), {"api_key_env": "FAKE_KEY", "fetch": staticmethod(leaky)})()
        svc = service(spec, leaky_spec)
        try:
            cats = svc.catalogs()
            texts = [str(cat.to_json()) for cat in cats] + [svc.explain("x", "p")[2] or "", repr(spec.live)]
        finally:
            svc.close()
    assert [cat.state for cat in cats] == ["failed", "failed"]
    assert "HTTP 401" in (cats[0].error or "") and "RuntimeError" in (cats[1].error or "")
    assert all(secret not in text for text in texts)


def test_sources_that_misbehave_become_error_states(provider: FakeProvider) -> None:
    def raises(http: Any) -> Any:
        raise ZeroDivisionError("boom")

    def garbage(http: Any) -> Any:
        return 42

    def all_invalid(http: Any) -> Any:
        return ["", "bad\x00id", {"id": 5}]

    def some_invalid(http: Any) -> Any:
        yield "good/one"
        yield "bad\u202eid"
        yield {"id": "good/two", "label": "Two"}

    svc = service(make_spec("raises", live=raises), make_spec("garbage", live=garbage),
                  make_spec("invalid", live=all_invalid), make_spec("mixed", live=some_invalid))
    try:
        cats = {cat.id: cat for cat in svc.catalogs()}
    finally:
        svc.close()
    assert cats["raises"].state == "failed" and cats["raises"].error == "ZeroDivisionError: boom"
    assert cats["garbage"].state == "failed" and "expected a list" in (cats["garbage"].error or "")
    assert cats["invalid"].state == "failed" and "valid id" in (cats["invalid"].error or "")
    assert cats["mixed"].state == "fresh"
    assert [(m.id, m.label) for m in cats["mixed"].models] == [("good/one", None), ("good/two", "Two")]


def test_per_provider_cache_lifetime(provider: FakeProvider) -> None:
    uncached = make_spec("uncached", live=OpenAICompatible(provider.base_url), expire_after=0)
    svc = service(uncached, live_spec(provider, "cached"))
    try:
        for _ in range(2):
            svc.catalog("uncached")
        uncached_requests = provider.requests
        for _ in range(2):
            svc.catalog("cached")
    finally:
        svc.close()
    assert uncached_requests == 2
    assert provider.requests == 3


def test_plugin_register_catalogs_with_a_callable_live_source(provider: FakeProvider) -> None:
    class Plugin:
        @hookimpl
        def register_catalogs(self, register: Any) -> None:
            def fetch(http: Any) -> list[str]:
                return [item["id"] for item in http.get_json(provider.base_url + "/models")["data"]]

            register("plugged", static=["plugged/static"], live=fetch, label="Plugged")

    pm = make_plugin_manager(load="")
    pm.register(Plugin(), name="test-plugin")
    try:
        svc = CatalogService(pm, cache="memory", **FAST)
        try:
            cat = svc.catalog("plugged")
        finally:
            svc.close()
    finally:
        pm.unregister(name="test-plugin")
    assert cat.label == "Plugged" and cat.state == "fresh"
    assert [(m.id, m.source) for m in cat.models] == [("plugged/static", "static"), ("live/a", "live"), ("live/b", "live")]
    assert svc.plugin_errors == []


def test_hook_resolve_model_alias(provider: FakeProvider) -> None:
    class Aliases:
        @hookimpl
        def resolve_model_alias(self, model_id: str, provider: str | None) -> str | None:
            return model_id.split(":", 1)[1] if model_id.startswith("@fake:") else None

    pm = make_plugin_manager(load="")
    pm.register(Aliases(), name="test-aliases")
    try:
        svc = CatalogService(pm, {"p": {"kind": "openai-compatible", "base_url": provider.base_url}},
                             cache="memory", **FAST)
        try:
            svc.catalog("p")
            assert svc.availability("@fake:live/a", "p") == "present"
            assert svc.availability("@fake:live/a") == "present"
            assert svc.availability("@fake:gone", "p") == "absent"
            assert svc.availability("@other:live/a", "p") == "absent"
        finally:
            svc.close()
    finally:
        pm.unregister(name="test-aliases")


def test_observe_records_the_hosts_own_catalogs() -> None:
    svc = service()
    try:
        svc.observe("host", ["host/static"], source="static")
        assert svc.provider_ids() == ["host"]
        assert svc.availability("ghost", "host") == "unknown"  # an observed static list never confirms absence
        svc.observe("host", ["host/live", "bad\x00"], source="live")
        cat = svc.snapshot("host")
        assert cat.state == "fresh" and [(m.id, m.source) for m in cat.models] == [
            ("host/static", "static"), ("host/live", "live")]
        assert svc.availability("ghost", "host") == "absent"
        svc.observe("host", [], source="live", ok=False, error="HTTP 502")
        assert svc.snapshot("host").state == "stale"
        assert svc.availability("ghost", "host") == "unknown"
        failed = svc.observe("other", [], ok=False, error="HTTP 500")  # a failure alone adds no provider
        assert failed.state == "failed" and failed.error == "HTTP 500"
        assert svc.provider_ids() == ["host"]
        svc.observe("other", ["other/a"], source="static")
        with pytest.raises(ValueError):
            svc.observe("bad id!", ["m"])
        with pytest.raises(ValueError):
            svc.observe("host", ["m"], source="cached")
        assert svc.provider_ids() == ["host", "other"]
    finally:
        svc.close()


def test_subscribers_hear_settled_fetches_and_a_broken_one_is_contained(provider: FakeProvider) -> None:
    heard: list[tuple[str, str]] = []

    def broken(cat: ProviderCatalog) -> None:
        raise RuntimeError("subscriber bug")

    svc = service(live_spec(provider))
    try:
        svc.subscribe(broken)
        unsubscribe = svc.subscribe(lambda cat: heard.append((cat.id, cat.state)))
        assert svc.catalog("p").state == "fresh"
        svc.observe("p", ["live/a"], source="static")  # same model set: no event
        svc.observe("p", ["extra/one"], source="static")
        unsubscribe()
        svc.catalog("p", refresh=True)
    finally:
        svc.close()
    assert heard == [("p", "fresh"), ("p", "fresh")]


def test_config_providers_and_plugin_errors(provider: FakeProvider) -> None:
    class Broken:
        @hookimpl
        def register_catalogs(self, register: Any) -> None:
            raise RuntimeError("cannot register")

    pm = make_plugin_manager(load="")
    pm.register(Broken(), name="test-broken")
    try:
        svc = CatalogService(pm, {"local": {"kind": "openai-compatible", "base_url": provider.base_url,
                                            "static": ["local/tiny"], "label": "Local"}}, cache="memory", **FAST)
        try:
            cat = svc.catalog("local")
        finally:
            svc.close()
    finally:
        pm.unregister(name="test-broken")
    assert cat.label == "Local" and [m.id for m in cat.models] == ["local/tiny", "live/a", "live/b"]
    assert [error.plugin for error in svc.plugin_errors] == ["test-broken"]


def test_closing_while_a_fetch_runs_closes_the_cache_after_that_fetch(provider: FakeProvider, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The SQLite cache's connection closed under a read in another thread can crash the process: the
    # fetch still running finishes with the cache, and only then is it closed.
    svc = service(live_spec(provider), cache=str(tmp_path / "cache.sqlite"), total_timeout=10)
    events: list[str] = []
    closed, close = threading.Event(), svc.session.close
    monkeypatch.setattr(svc.session, "close", lambda: (events.append("closed"), closed.set(), close()))
    provider.latency = 30  # until release(): the fetch is in flight while the service closes
    results: list[ProviderCatalog] = []
    asker = threading.Thread(target=lambda: results.append(svc.catalog("p")))
    asker.start()
    assert provider.wait_requests(1, timeout=10)
    svc.close()
    assert events == []  # not under the running fetch
    provider.release()
    asker.join(timeout=20)
    assert [cat.state for cat in results] == ["fresh"] and results[0].ids == {"live/a", "live/b"}
    assert closed.wait(10)  # by the fetch's thread, right after it settled the answer
    assert events == ["closed"]
    svc.close()  # a second close does nothing
    assert events == ["closed"]
