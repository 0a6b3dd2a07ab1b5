"""The hermes-plugin CLI end to end: click's CliRunner and the installed console script, against FakeProviders."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from support.processes import ServingCommand, console_script
from support.sample_plugin import install_sample_plugin

from hermes_plugin.cli import cli
from hermes_plugin.testing.fake_provider import FakeProvider

CATALOG_KEYS = {"id", "label", "state", "fetched_at", "error", "models"}
LIVE = ["local/live-a", {"id": "local/live-b", "label": "Live B"}]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Only the providers these tests configure; no installed third-party plugin, no user cache touched.
    monkeypatch.setenv("HERMES_PLUGIN_LOAD", "")
    monkeypatch.delenv("HERMES_PLUGIN_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    with FakeProvider(kind="openai", models=LIVE) as fake:
        yield fake


def write_config(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "hermes.toml"
    path.write_text(
        "[providers.local]\n"
        'kind = "openai-compatible"\n'
        f'base_url = "{base_url}"\n'
        'label = "Local"\n'
        'static = ["local/static-a"]\n'
        "\n"
        "[providers.fixed]\n"
        'static = ["fixed/one"]\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config(tmp_path: Path, provider: FakeProvider) -> Path:
    return write_config(tmp_path, provider.base_url)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, prog_name="hermes-plugin")


def script_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "HERMES_PLUGIN_CONFIG"}
    env.update(extra)
    return env


def script(*args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
    """Run the installed ``hermes-plugin`` console script in a fresh process."""
    popen.setdefault("env", script_env())
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=120, **popen)


def by_id(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["id"]: item for item in payload["providers"]}


def models(item: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    return [(m["id"], m["label"], m["source"]) for m in item["models"]]


def test_catalog_json_lists_static_and_live_models(config: Path, tmp_path: Path, provider: FakeProvider) -> None:
    result = run("--config", str(config), "--cache", str(tmp_path / "cache.sqlite"), "catalog", "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # not a terminal: no progress indicator
    providers = by_id(json.loads(result.stdout))
    assert set(providers) == {"local", "fixed"}
    local = providers["local"]
    assert set(local) == CATALOG_KEYS
    assert local["label"] == "Local" and local["state"] == "fresh" and local["error"] is None
    assert isinstance(local["fetched_at"], (int, float))
    assert [(i, s) for i, _, s in models(local)] == [
        ("local/static-a", "static"), ("local/live-a", "live"), ("local/live-b", "live")]
    assert [m for m in local["models"] if m["id"] == "local/live-b"][0]["label"] == "Live B"
    assert [(i, s) for i, _, s in models(providers["fixed"])] == [("fixed/one", "static")]
    assert provider.requests == 1


def test_catalog_json_for_one_provider_is_that_providers_object(config: Path) -> None:
    result = run("--config", str(config), "--cache", "memory", "catalog", "local", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == CATALOG_KEYS and payload["id"] == "local" and payload["state"] == "fresh"


def test_config_from_environment_variable(config: Path) -> None:
    result = run("--cache", "memory", "providers", "--json", env={"HERMES_PLUGIN_CONFIG": str(config)})
    assert result.exit_code == 0, result.output
    assert {p["id"] for p in json.loads(result.stdout)["providers"]} == {"local", "fixed"}


def test_stale_catalog_served_after_restart_when_provider_is_down(config: Path, tmp_path: Path,
                                                                  provider: FakeProvider) -> None:
    cache = str(tmp_path / "shared-cache.sqlite")
    first = script("--config", str(config), "--cache", cache, "catalog", "--json")
    assert first.returncode == 0, first.stderr
    assert by_id(json.loads(first.stdout))["local"]["state"] == "fresh"
    provider.stop()

    second = script("--config", str(config), "--cache", cache, "catalog", "--json", "--refresh")
    assert second.returncode == 0, second.stderr
    local = by_id(json.loads(second.stdout))["local"]
    assert local["state"] == "stale"
    assert local["error"]  # says why the refresh failed
    assert [i for i, _, _ in models(local)] == ["local/static-a", "local/live-a", "local/live-b"]
    assert "Traceback" not in second.stderr


def test_failed_state_with_fresh_cache_and_provider_down(config: Path, tmp_path: Path, provider: FakeProvider) -> None:
    provider.stop()
    result = run("--config", str(config), "--cache", str(tmp_path / "empty-cache.sqlite"), "catalog", "--json")
    assert result.exit_code == 0, result.output
    local = by_id(json.loads(result.stdout))["local"]
    assert local["state"] == "failed" and local["error"] and local["fetched_at"] is None
    assert [(i, s) for i, _, s in models(local)] == [("local/static-a", "static")]


def test_catalog_table(config: Path, provider: FakeProvider) -> None:
    result = run("--config", str(config), "--cache", "memory", "catalog")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("local (Local)  fresh  fetched ") and line.endswith(" ago") for line in lines)
    assert any(line.split() == ["local/live-b", "live", "Live", "B"] for line in lines)
    assert any(line.split() == ["local/static-a", "static"] for line in lines)
    provider.stop()
    failed = run("--config", str(config), "--cache", "memory", "catalog", "local")
    assert failed.exit_code == 0
    header = failed.stdout.splitlines()[0]
    assert header.startswith("local (Local)  failed  never fetched  error: ")


def test_catalog_age_wording() -> None:
    from hermes_plugin.cli import _age

    assert _age(None, 1000.0) == "never fetched"
    assert [_age(1000.0 - ago, 1000.0) for ago in (0, 59, 60, 3599, 3600, 86400 * 3)] == [
        "fetched 0s ago", "fetched 59s ago", "fetched 1m ago", "fetched 59m ago", "fetched 1h ago", "fetched 3d ago"]
    assert _age(1010.0, 1000.0) == "fetched 0s ago"  # a clock step backwards is not a negative age


def test_providers_command(config: Path) -> None:
    result = run("--config", str(config), "providers", "--json")
    assert result.exit_code == 0, result.output
    providers = by_id(json.loads(result.stdout))
    assert providers["local"] == {"id": "local", "label": "Local", "kind": "openai-compatible", "plugin": "config",
                                  "live": True, "static": 1}
    assert providers["fixed"] == {"id": "fixed", "label": "fixed", "kind": "static", "plugin": "config",
                                  "live": False, "static": 1}
    table = run("--config", str(config), "providers")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split() == ["ID", "LABEL", "KIND", "PLUGIN", "LIVE", "STATIC"]
    assert ["local", "Local", "openai-compatible", "config", "yes", "1"] in [ln.split() for ln in table.stdout.splitlines()]


def test_providers_needs_no_network(tmp_path: Path) -> None:
    # A provider that is down does not matter for listing: registration never fetches.
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    result = script("--config", str(config), "providers")
    assert result.returncode == 0, result.stderr
    assert "local" in result.stdout and result.stderr == ""


def test_plugins_command_lists_bundled_plugins() -> None:
    result = run("plugins", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["errors"] == []
    names = {info["name"]: info for info in payload["plugins"]}
    assert names["hermes_plugin.hooks.openai_compatible"]["hooks"] == ["register_provider_kinds"]
    assert names["hermes_plugin.hooks.openai_compatible"]["distribution"] == "hermes-plugin"
    text = run("plugins")
    assert "hermes_plugin.hooks.ollama  [hermes-plugin]" in text.stdout
    assert "  hooks: register_provider_kinds" in text.stdout


def test_plugins_from_an_installed_distribution_and_a_broken_one(tmp_path: Path) -> None:
    site = install_sample_plugin(tmp_path)
    env = script_env(PYTHONPATH=str(site), HERMES_PLUGIN_LOAD="hermes-sample-plugin")
    listing = script("plugins", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "hermes-sample  [hermes-sample-plugin 0.1.0]" in listing.stdout
    errors = listing.stdout.split("Errors:\n", 1)[1].splitlines()
    assert len(errors) == 1 and errors[0].startswith("  hermes-sample-broken: ")
    assert "broken on purpose" in errors[0]

    catalog = script("--cache", "memory", "catalog", "sample", "--json", env=env)
    assert catalog.returncode == 0, catalog.stderr
    assert [m["id"] for m in json.loads(catalog.stdout)["models"]] == ["sample/small", "sample/large"]
    # The broken plugin is one warning line on stderr, not a traceback and not a failure.
    assert catalog.stderr.splitlines() == [
        line for line in catalog.stderr.splitlines() if line.startswith("Warning: plugin 'hermes-sample-broken'")]
    assert len(catalog.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[providers.local\n", "is not valid TOML"),
        ('[providers.local]\nkind = "warp-drive"\n', "provider local: unknown kind 'warp-drive'"),
        ('[providers.local]\nkind = "openai-compatible"\n', "provider local: "),
        ("providers = 3\n", "[providers] must be a table"),
        ('[providers."bad id"]\nstatic = ["x"]\n', "invalid provider id 'bad id'"),
    ],
)
def test_bad_config_is_one_line_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content, encoding="utf-8")
    for command in (["catalog"], ["providers"]):
        result = run("--config", str(path), "--cache", "memory", *command)
        assert result.exit_code == 2
        assert result.stdout == ""
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr


def test_bad_config_through_the_console_script(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[providers.local\nkind = 1\n", encoding="utf-8")
    result = script("--config", str(path), "catalog")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"Error: config file {path} is not valid TOML")
    missing = script("--config", str(tmp_path / "nope.toml"), "providers")
    assert missing.returncode == 2
    assert missing.stderr == f"Error: config file not found: {tmp_path / 'nope.toml'}\n"


def test_unknown_provider(config: Path, provider: FakeProvider) -> None:
    result = run("--config", str(config), "--cache", "memory", "catalog", "nope")
    assert result.exit_code == 2
    assert result.stderr == "Error: Unknown provider: nope\n"
    assert result.stdout == ""
    assert provider.requests == 0  # refused before anything was fetched


def test_progress_indicator_on_a_terminal(config: Path, provider: FakeProvider) -> None:
    exe = console_script()
    provider.latency = 3600  # hold the live fetch until the test has seen the spinner
    master, slave = pty.openpty()
    proc = subprocess.Popen([exe, "--config", str(config), "--cache", "memory", "catalog", "local", "--json"],
                            stdout=subprocess.PIPE, stderr=slave, env=script_env(), text=True)
    os.close(slave)
    try:
        seen = b""
        while b"fetching local" not in seen:
            ready, _, _ = select.select([master], [], [], 60)
            assert ready, f"no progress indicator on the terminal; got {seen!r}"
            seen += os.read(master, 1024)
        provider.latency = 0  # requests arriving from now on answer at once; the waiting one is released
        provider.release()
        out, _ = proc.communicate(timeout=60)
        while True:  # the rest of the terminal output, up to EOF (EIO on Linux once the child is gone)
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0
    assert json.loads(out)["state"] == "fresh"
    assert seen.endswith(b"\r\x1b[K")  # the indicator cleans up after itself


def flask_app(tmp_path: Path, base_url: str, **config: Any) -> Flask:
    app = Flask("hostapp", instance_path=str(tmp_path / "instance"))
    app.config["HERMES_PLUGIN_PROVIDERS"] = {
        "local": {"kind": "openai-compatible", "base_url": base_url, "static": ["local/static-a"]}}
    app.config.update(config)
    return app


def test_flask_command_group_uses_app_config(tmp_path: Path, provider: FakeProvider) -> None:
    app = flask_app(tmp_path, provider.base_url, HERMES_PLUGIN_CACHE="memory")
    result = app.test_cli_runner().invoke(cli, ["catalog", "--json"])
    assert result.exit_code == 0, result.output
    local = by_id(json.loads(result.stdout))["local"]
    assert local["state"] == "fresh" and [i for i, _, _ in models(local)][-1] == "local/live-b"


def test_flask_command_group_uses_the_guards_catalog(tmp_path: Path, provider: FakeProvider) -> None:
    from hermes_plugin import ModelGuard

    app = flask_app(tmp_path, provider.base_url, HERMES_PLUGIN_CACHE="memory")
    ModelGuard(app)
    # Only the app's own catalog service knows this provider: it learned it from a host response.
    app.extensions["hermes_plugin"].catalog.observe("observed", ["seen/model"], source="live")
    result = app.test_cli_runner().invoke(cli, ["catalog", "observed", "--json"])
    assert result.exit_code == 0, result.output
    assert [m["id"] for m in json.loads(result.stdout)["models"]] == ["seen/model"]


def test_flask_cli_entry_point(tmp_path: Path, provider: FakeProvider) -> None:
    (tmp_path / "cli_hostapp.py").write_text(
        "from flask import Flask\n"
        "app = Flask(__name__)\n"
        f"app.config['HERMES_PLUGIN_PROVIDERS'] = {{'local': {{'kind': 'openai-compatible', "
        f"'base_url': {provider.base_url!r}}}}}\n",
        encoding="utf-8",
    )
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "cli_hostapp", "hermes-plugin", "providers", "--json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=script_env())
    assert result.returncode == 0, result.stderr
    assert by_id(json.loads(result.stdout))["local"]["kind"] == "openai-compatible"


def test_errors_and_help_never_print_a_traceback(tmp_path: Path) -> None:
    result = script("catalog", "one", "two")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert script("--help").stdout.startswith("Usage: hermes-plugin")
    assert "--static-latency" in run("demo", "--help").stdout
    bad = run("demo", "--fail", "sometimes")
    assert bad.exit_code == 2 and "'sometimes' is not one of" in bad.stderr


@pytest.mark.parametrize("guard", [True, False])
def test_demo_command_serves_until_interrupted(tmp_path: Path, guard: bool) -> None:
    args = [console_script(), "demo", "--port", "0", "--latency", "0", "--data", str(tmp_path / "data")]
    with ServingCommand(args + ([] if guard else ["--no-guard"]), env=script_env()) as demo:
        # The demo prints its URL once it listens; ServingCommand waited for that line and the open port.
        assert demo.banner.startswith(f"hermes-plugin demo, guard {'on' if guard else 'OFF'}: http://127.0.0.1:")
        with urllib.request.urlopen(demo.url + "/", timeout=30) as response:
            page = response.read().decode("utf-8")
        assert 'id="modelSelect"' in page
        assert ('id="hermes-plugin-config"' in page) == guard
        assert demo.interrupt() == 0, demo.stderr
        assert "Traceback" not in demo.stderr
