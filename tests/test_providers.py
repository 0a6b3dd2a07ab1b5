"""Bundled provider kinds, provider HTTP and the loopback test servers, against real servers on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hermes_plugin.hooks.anthropic import Anthropic
from hermes_plugin.hooks.ollama import Ollama
from hermes_plugin.hooks.openai_compatible import OpenAICompatible
from hermes_plugin.hooks.static_file import StaticFile

from hermes_plugin.catalog import CatalogService
from hermes_plugin.errors import ConfigError, ProviderResponseError
from hermes_plugin.http import CACHE_FILE, ProviderHTTP, make_cached_session
from hermes_plugin.models import Model
from hermes_plugin.plugins import collect_registrations, make_plugin_manager, make_spec
from hermes_plugin.testing.fake_provider import FakeProvider
from hermes_plugin.testing.servers import LoopbackServer

FAST: dict[str, Any] = {"timeout": (1.0, 0.5), "total_timeout": 1.5}


@pytest.fixture
def session() -> Iterator[Any]:
    cached = make_cached_session("memory")
    yield cached
    cached.close()


def catalog_of(live: Any, **kwargs: Any) -> Any:
    svc = CatalogService(specs=[make_spec("p", live=live)], cache="memory", **{**FAST, **kwargs})
    try:
        return svc.catalog("p")
    finally:
        svc.close()


def test_openai_compatible_sends_the_key_and_reads_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", "sk-local-123456")
    models = ["plain", Model("named", "Named <b>model</b>"), {"id": "x/y:latest", "label": "XY"}]
    with FakeProvider("openai", models, api_key="sk-local-123456") as fake:
        source = OpenAICompatible(fake.base_url, api_key_env="LOCAL_KEY", headers={"X-Title": "hermes"})
        cat = catalog_of(source)
        monkeypatch.setenv("LOCAL_KEY", "sk-rotated-654321")  # read at fetch time, not at declaration
        rotated = catalog_of(source)
    assert [(m.id, m.label) for m in cat.models] == [("plain", None), ("named", "Named <b>model</b>"), ("x/y:latest", "XY")]
    assert rotated.state == "failed" and "HTTP 401" in (rotated.error or "")
    assert "sk-" not in repr(source) and "X-Title" not in repr(source)


def test_openai_compatible_missing_key_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with FakeProvider("openai", ["m"]) as fake:
        cat = catalog_of(OpenAICompatible(fake.base_url, api_key_env="NOT_SET_KEY"))
        assert fake.requests == 0
    assert cat.state == "failed" and cat.error == "environment variable NOT_SET_KEY is not set"


def test_invalid_ids_are_skipped_and_kept_exactly_otherwise() -> None:
    with FakeProvider("openai", ["  spaced id  ", "", "ctl\x07", {"id": 7}, "ünï/cødé", "a" * 257]) as fake:
        cat = catalog_of(OpenAICompatible(fake.base_url))
    assert [m.id for m in cat.models] == ["  spaced id  ", "ünï/cødé"]


def test_ollama_lists_installed_models() -> None:
    with FakeProvider("ollama", ["llama3.1:8b", "qwen2.5-coder:7b"]) as fake:
        cat = catalog_of(Ollama(fake.base_url))
        assert fake.base_url == fake.url
    assert cat.state == "fresh" and [m.id for m in cat.models] == ["llama3.1:8b", "qwen2.5-coder:7b"]


def test_anthropic_follows_pages_with_labels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-test-000111")
    models = [{"id": f"claude-{i:02d}", "label": f"Claude {i}"} for i in range(45)]
    with FakeProvider("anthropic", models, api_key="sk-ant-test-000111", page_size=10) as fake:
        cat = catalog_of(Anthropic("ANTHROPIC_TEST_KEY", fake.base_url))
        assert fake.requests == 5
    assert cat.state == "fresh" and len(cat.models) == 45
    assert (cat.models[0].id, cat.models[0].label) == ("claude-00", "Claude 0")
    assert cat.models[-1].id == "claude-44"


def test_anthropic_without_the_key_fails_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-wrong-999")
    with FakeProvider("anthropic", ["claude-x"], api_key="sk-ant-right-000") as fake:
        cat = catalog_of(Anthropic("ANTHROPIC_TEST_KEY", fake.base_url))
    assert cat.state == "failed" and "HTTP 401" in (cat.error or "") and "sk-ant" not in (cat.error or "")


def test_anthropic_pagination_that_never_ends_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "key-0123")

    def endless(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = {"data": [{"id": "same", "display_name": "Same"}], "has_more": True, "last_id": "same"}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    with LoopbackServer(endless) as server:
        cat = catalog_of(Anthropic("ANTHROPIC_TEST_KEY", server.url))
    assert cat.state == "failed" and "has_more without a new last_id" in (cat.error or "")


@pytest.mark.parametrize(("name", "content"), [
    ("models.json", '["m/one", {"id": "m/two", "label": "Two"}]'),
    ("models.json", '{"models": ["m/one", {"id": "m/two", "label": "Two"}]}'),
    ("models.toml", 'models = ["m/one", {id = "m/two", label = "Two"}]'),
])
def test_static_file_is_read_at_fetch_time(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    svc = CatalogService(make_plugin_manager(load=""), {"file": {"kind": "static-file", "path": str(path)}},
                         cache="memory", **FAST)
    try:
        first = svc.catalog("file")
        path.write_text('["m/three"]' if name.endswith(".json") else 'models = ["m/three"]', encoding="utf-8")
        second = svc.catalog("file", refresh=True)
    finally:
        svc.close()
    assert [(m.id, m.label, m.source) for m in first.models] == [("m/one", None, "live"), ("m/two", "Two", "live")]
    assert [m.id for m in second.models] == ["m/three"]


def test_static_file_errors_are_provider_errors(tmp_path: Path) -> None:
    missing = catalog_of(StaticFile(str(tmp_path / "missing.json")))
    (tmp_path / "broken.json").write_text("[", encoding="utf-8")
    broken = catalog_of(StaticFile(str(tmp_path / "broken.json")))
    (tmp_path / "shape.json").write_text('{"data": []}', encoding="utf-8")
    shape = catalog_of(StaticFile(str(tmp_path / "shape.json")))
    assert missing.state == "failed" and "cannot read" in (missing.error or "")
    assert broken.state == "failed" and "not valid JSON" in (broken.error or "")
    assert shape.state == "failed" and "expected a list of models" in (shape.error or "")


@pytest.mark.parametrize(("table", "message"), [
    ({"kind": "openai-compatible"}, "needs base_url"),
    ({"kind": "ollama"}, "needs base_url"),
    ({"kind": "static-file"}, "needs path"),
    ({"kind": "openai-compatible", "base_url": "ftp://x"}, "http:// or https://"),
    ({"kind": "openai-compatible", "base_url": "http://x/v1", "api_key": "sk-1"}, "unknown key(s) api_key"),
    ({"kind": "openai-compatible", "base_url": "http://x/v1", "headers": {"X": 1}}, "headers must be"),
    ({"kind": "anthropic", "api_key_env": ""}, "api_key_env must be"),
    ({"kind": "nope"}, "unknown kind 'nope'"),
])
def test_bad_provider_tables_are_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=r"provider p: ") as info:
        collect_registrations(make_plugin_manager(load=""), {"p": table})
    assert message in str(info.value)
    assert "sk-1" not in str(info.value)


def test_config_kinds_build_declarations() -> None:
    specs, errors = collect_registrations(make_plugin_manager(load=""), {
        "a": {"kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1", "api_key_env": "A_KEY"},
        "o": {"kind": "ollama", "base_url": "http://127.0.0.1:11434"},
        "c": {"kind": "anthropic"},
    })
    assert errors == []
    assert specs["a"].live == OpenAICompatible("http://127.0.0.1:9/v1", "A_KEY")
    assert specs["o"].live == Ollama("http://127.0.0.1:11434")
    assert specs["c"].live == Anthropic()


def test_provider_http_reports_stale_and_times(session: Any) -> None:
    with FakeProvider("openai", ["m"]) as fake:
        url = fake.base_url + "/models"
        first = ProviderHTTP(session, FAST["timeout"])
        assert first.get_json(url)["data"][0]["id"] == "m"
        assert not first.from_cache and not first.used_stale
        cached = ProviderHTTP(session, FAST["timeout"])
        cached.get_json(url)
        assert cached.from_cache and fake.requests == 1
        assert cached.fetched_at == pytest.approx(first.fetched_at, abs=1.0)
        fake.fault = "429"
        stale = ProviderHTTP(session, FAST["timeout"], refresh=True)
        assert stale.get_json(url)["data"][0]["id"] == "m"
        assert stale.used_stale and stale.errors == [f"HTTP 429 from GET {url} (Retry-After: 7)"]
        with pytest.raises(requests.HTTPError, match="HTTP 429"):
            ProviderHTTP(session, FAST["timeout"]).get_json(url + "?never=cached")


def test_provider_http_errors_carry_no_query_string(session: Any) -> None:
    with FakeProvider("openai", ["m"], fault="refused") as fake:
        with pytest.raises(requests.ConnectionError) as info:
            ProviderHTTP(session, FAST["timeout"]).get_json(fake.base_url + "/models", params={"key": "secret-q"})
    assert "secret-q" not in str(info.value) and "connection refused" in str(info.value)


def test_size_cap_applies_to_declared_and_streamed_bodies() -> None:
    capped = make_cached_session("memory", max_bytes=1000)
    try:
        with FakeProvider("openai", [f"model-{i:04d}" for i in range(100)]) as fake:
            with pytest.raises(ProviderResponseError, match="larger than 1000 bytes"):
                ProviderHTTP(capped, FAST["timeout"]).get_json(fake.base_url + "/models")

            def chunked(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
                start_response("200 OK", [("Content-Type", "application/json")])
                yield b"[" + b'"x",' * 400 + b'"y"]'

            with LoopbackServer(chunked) as server, pytest.raises(ProviderResponseError, match="larger than"):
                ProviderHTTP(capped, FAST["timeout"]).get_json(server.url)
    finally:
        capped.close()


def test_make_cached_session_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sqlite_session = make_cached_session("sqlite", cache_dir=tmp_path / "dir")
    sqlite_session.close()
    assert (tmp_path / "dir" / CACHE_FILE).exists()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    make_cached_session("sqlite").close()
    assert (tmp_path / "xdg" / "hermes-plugin" / CACHE_FILE).exists()
    make_cached_session(str(tmp_path / "own.db")).close()
    assert (tmp_path / "own.db").exists()
    with pytest.raises(ConfigError, match="unknown cache 'postgres://x'"):
        make_cached_session("postgres://x")
    try:
        import redis  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="redis package"):
            make_cached_session("redis://127.0.0.1:6379/0")


def test_loopback_server_stops_promptly_with_a_request_hanging() -> None:
    entered, never = threading.Event(), threading.Event()

    def hang(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        entered.set()
        never.wait()
        start_response("200 OK", [])
        return [b""]

    server = LoopbackServer(hang).start()
    outcome: list[str] = []
    client = threading.Thread(target=lambda: outcome.append(_try_get(server.url, 30)), daemon=True)
    client.start()
    assert entered.wait(5)
    port = server.port
    server.stop()  # returns although the handler thread is still blocked
    assert not server.running
    assert _try_get(f"http://127.0.0.1:{port}/", 2) == "ConnectionError"
    server.start()
    assert server.port == port and server.running
    never.set()
    client.join()
    assert outcome == ["200"]
    assert _try_get(server.url, 2) == "200"
    server.stop()


def _try_get(url: str, timeout: float) -> str:
    try:
        return str(requests.get(url, timeout=timeout).status_code)
    except requests.RequestException as exc:
        return type(exc).__name__


def test_fake_provider_refused_relistens_on_the_same_port() -> None:
    with FakeProvider("openai", ["m"]) as fake:
        port = fake.port
        fake.fault = "refused"
        assert _try_get(fake.base_url + "/models", 2) == "ConnectionError"
        fake.fault = None
        assert fake.port == port and _try_get(fake.base_url + "/models", 2) == "200"


def test_fake_provider_timeout_hangs_until_released() -> None:
    with FakeProvider("openai", ["m"], fault="timeout") as fake:
        assert _try_get(fake.base_url + "/models", 0.3) == "ReadTimeout"
        results: list[str] = []
        waiter = threading.Thread(target=lambda: results.append(_try_get(fake.base_url + "/models", 30)))
        waiter.start()
        assert fake.wait_requests(2)  # the waiter's request has reached the server
        fake.release()
        waiter.join()
        assert results == ["504"]


def test_fake_provider_control_api_and_auth() -> None:
    with FakeProvider("openai", ["m"], api_key="k-1") as fake:
        assert requests.get(fake.base_url + "/models", timeout=2).status_code == 401
        assert requests.get(fake.base_url + "/models", headers={"Authorization": "Bearer k-1"},
                            timeout=2).status_code == 200
        state = requests.post(fake.url + "/_fake/config", json={"latency": 0, "fault": "500", "models": ["n"]},
                              timeout=2).json()
        assert state["fault"] == "500" and state["models"] == [{"id": "n", "label": None}]
        assert fake.fault == "500" and fake.models == ["n"]
        bad = requests.post(fake.url + "/_fake/config", json={"fault": "explode"}, timeout=2)
        assert bad.status_code == 400 and fake.fault == "500"
        assert requests.post(fake.url + "/_fake/config", json={"latency": -1}, timeout=2).status_code == 400
        assert fake.requests == 2
        fake.reset()
        assert fake.requests == 0
    with pytest.raises(ValueError, match="kind must be"):
        FakeProvider("gemini")


def test_fake_provider_chat_completion_names_the_model_it_was_asked_for() -> None:
    with FakeProvider("openai", ["m", "n"], api_key="k-1") as fake:
        auth = {"Authorization": "Bearer k-1"}
        url = fake.base_url + "/chat/completions"
        assert requests.post(url, json={"model": "m", "messages": []}, timeout=2).status_code == 401
        plain = requests.post(url, json={"model": "n", "messages": []}, headers=auth, timeout=2).json()
        assert plain["model"] == "n" and plain["choices"][0]["message"]["content"] == "Reply from n."
        with requests.post(url, json={"model": "m", "stream": True}, headers=auth, stream=True, timeout=2) as streamed:
            assert streamed.headers["Content-Type"].startswith("text/event-stream")
            events = [line[len("data: "):] for line in streamed.iter_lines(decode_unicode=True) if line]
        assert events[-1] == "[DONE]"
        assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Reply from m."
        fake.models = ["n"]  # a model the provider no longer lists is refused, as a real provider does
        gone = requests.post(url, json={"model": "m"}, headers=auth, timeout=2)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
        assert requests.post(url, data="not json", headers=auth, timeout=2).status_code == 400
        assert fake.completions == ["n", "m", "m"]
        assert requests.get(fake.url + "/_fake/config", timeout=2).json()["completions"] == ["n", "m", "m"]
        assert fake.requests == 0  # completions are not model-list requests
        fake.reset()
        assert fake.completions == []
