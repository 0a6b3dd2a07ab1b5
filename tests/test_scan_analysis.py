"""The race scanner's judgement without a browser: which JSON is a catalog, which writes changed a value,
and the exit status when it cannot run."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from click.testing import CliRunner

from hermes_plugin.cli import cli
from hermes_plugin.scan import catalog_ids, model_like, runner
from hermes_plugin.scan.traffic import Exchange
from hermes_plugin.scan.writes import changes
from hermes_plugin.testing.browser import BrowserMissing


@pytest.mark.parametrize(
    "value", ["openai/gpt-4.1", "qwen2.5:7b", "deepseek-chat-v3-0324", "@deepseek:deepseek-r1", "moonshotai/kimi-k2"]
)
def test_model_ids_are_model_like(value: str) -> None:
    assert model_like(value)


@pytest.mark.parametrize(
    "value",
    [
        "hello",
        "49c0813d2d58",
        "6f1c2a9e-7d3b-4a8e-9f00-123456789abc",
        "12345",
        "two words-x",
        "",
        None,
        7,
        "<b>x</b>/y",
    ],
)
def test_words_and_opaque_ids_are_not(value: Any) -> None:
    assert not model_like(value)


def test_catalog_shapes_other_apps_use() -> None:
    grouped = {
        "groups": [
            {
                "provider": "openrouter",
                "models": [{"id": "openrouter/claude-opus", "label": "Opus"}, {"id": "openrouter/gpt-4o"}],
            }
        ]
    }
    assert catalog_ids(grouped) == ["openrouter/claude-opus", "openrouter/gpt-4o"]
    assert catalog_ids({"data": [{"id": "gpt-4.1", "object": "model"}]}) == ["gpt-4.1"]  # OpenAI's /v1/models
    assert catalog_ids({"models": [{"name": "llama3:8b", "model": "llama3:8b"}]}) == ["llama3:8b"]  # Ollama
    assert catalog_ids(["@deepseek:deepseek-reasoner", "@deepseek:deepseek-chat"]) == [
        "@deepseek:deepseek-reasoner",
        "@deepseek:deepseek-chat",
    ]  # a flat list of aliases


def test_session_lists_and_settings_are_not_catalogs() -> None:
    sessions = {
        "sessions": [
            {"session_id": "kimi", "title": "Kimi", "model": "moonshotai/kimi-k2"},
            {"session_id": "opus", "title": "Opus", "model": "openrouter/claude-opus"},
        ]
    }
    assert catalog_ids(sessions) == []
    assert catalog_ids({"theme": "dark", "tags": ["work", "home"], "ids": ["49c0813d2d58", "5a1"]}) == []


def read(target: str, answer: Any) -> Exchange:
    return Exchange("GET", target, 0.0, status=200, answer=answer)


def write(target: str, body: Any, status: int = 200) -> Exchange:
    return Exchange("POST", target, 0.1, status=status, body=body)


SESSION = read(
    "/api/session?session_id=kimi",
    {"session": {"session_id": "kimi", "model": "moonshotai/kimi-k2", "provider": "openrouter"}},
)
LIST = read(
    "/api/sessions",
    {
        "sessions": [
            {"session_id": "kimi", "model": "moonshotai/kimi-k2"},
            {"session_id": "opus", "model": "openrouter/claude-opus"},
        ]
    },
)


def test_a_write_that_replaces_the_model_the_page_read_is_a_change() -> None:
    fallback = write(
        "/api/session/update", {"session_id": "kimi", "model": "openrouter/claude-opus", "provider": "openrouter"}
    )
    [change] = changes([SESSION, LIST, fallback])
    assert (change.field, change.before, change.after) == ("model", "moonshotai/kimi-k2", "openrouter/claude-opus")
    assert change.identity == ("session_id", "kimi")  # tied by the id, never by another session's equal model


def test_writing_back_what_was_read_refused_writes_and_untied_writes_are_not_changes() -> None:
    same = write("/api/session/update", {"session_id": "kimi", "model": "moonshotai/kimi-k2"})
    refused = write("/api/session/update", {"session_id": "kimi", "model": "openrouter/gpt-4o"}, status=409)
    untied = write("/api/telemetry", {"model": "openrouter/gpt-4o"})
    before_read = write("/api/session/update", {"session_id": "kimi", "model": "openrouter/gpt-4o"})
    assert changes([SESSION, same, refused, untied]) == []
    assert changes([before_read, SESSION]) == []  # a write before any read of that session: nothing to compare


def test_a_write_that_names_its_object_in_the_path() -> None:
    chat = read("/api/v1/chats/c0ffee12", {"chat": {"id": "c0ffee12", "models": None, "model": "llama3:8b"}})
    put = Exchange("PUT", "/api/v1/chats/c0ffee12", 0.2, status=200, body={"model": "mistral:7b"})
    [change] = changes([chat, put])
    assert (change.field, change.before, change.after, change.identity) == (
        "model",
        "llama3:8b",
        "mistral:7b",
        (None, "c0ffee12"),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_app_that_does_not_answer_exits_2() -> None:
    result = CliRunner().invoke(cli, ["scan", "--upstream", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 2
    assert "does not answer" in result.stderr


def test_no_browser_exits_2(monkeypatch: pytest.MonkeyPatch, loopback_server: Any) -> None:
    def missing(*args: Any) -> Any:
        raise BrowserMissing("hermes-plugin: chromium not found")

    monkeypatch.setattr(runner, "launch_chromium", missing)
    url = loopback_server(lambda environ, start: (start("200 OK", [("Content-Type", "text/html")]), [b"<p>"])[1]).url
    result = CliRunner().invoke(cli, ["scan", "--upstream", url, "--json"])
    assert result.exit_code == 2
    assert "chromium not found" in result.stderr and result.stdout == ""


@pytest.mark.parametrize(
    "args", [["--start-url", "//evil.example/"], ["--local-storage", "novalue"], ["--trials", "0"]]
)
def test_bad_options_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["scan", "--upstream", "http://127.0.0.1:9", *args])
    assert result.exit_code == 2
    assert "Error" in result.stderr


def test_the_scan_proxy_delays_catalogs_by_shape_or_by_name_and_records_writes(loopback_server: Any) -> None:
    """The scanner's own proxy, in front of a real loopback app: which answers it holds, and what it records."""
    from flask import Flask, jsonify, request

    from hermes_plugin.scan.traffic import Traffic, create_scan_app

    upstream = Flask("odd_app")
    upstream.add_url_rule("/api/models", "models", lambda: jsonify(["openai/gpt-4.1", "openai/o3"]))
    upstream.add_url_rule("/api/odd", "odd", lambda: jsonify({"names": "gpt-4.1,o3"}))  # no list: not by shape
    upstream.add_url_rule("/api/me", "me", lambda: jsonify({"id": "u1", "tags": ["a", "b"]}))
    upstream.add_url_rule("/api/save", "save", lambda: jsonify(saved=request.get_json()), methods=["POST"])
    traffic = Traffic(catalog_paths=[r"^/api/odd$"])
    client = create_scan_app(loopback_server(upstream).url, traffic).test_client()

    traffic.begin_trial(0.01)
    for path in ("/api/models", "/api/odd", "/api/me"):
        assert client.get(path).status_code == 200
    assert (
        client.post("/api/save", json={"chat_id": "c1", "model": "openai/o3"}).get_json()["saved"]["model"]
        == "openai/o3"
    )
    delayed = {e.target: e.delayed for e in traffic.exchanges if e.method == "GET"}
    assert delayed == {"/api/models": 0.01, "/api/odd": 0.01, "/api/me": 0.0}
    assert set(traffic.catalogs) == {"GET /api/models", "GET /api/odd"}
    [write] = [e for e in traffic.exchanges if e.method == "POST"]
    assert write.body == {"chat_id": "c1", "model": "openai/o3"} and write.status == 200

    traffic.begin_trial(0.01, only="/api/odd")  # one endpoint alone
    client.get("/api/models")
    client.get("/api/odd")
    assert {e.target: e.delayed for e in traffic.exchanges} == {"/api/models": 0.0, "/api/odd": 0.01}
