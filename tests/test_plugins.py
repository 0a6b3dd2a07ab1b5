"""The plugin system: bundled plugins, HERMES_PLUGIN_LOAD, isolated registration, config tables, entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.sample_plugin import SAMPLE_MODULES, install_sample_plugin

from hermes_plugin import Model, hookimpl
from hermes_plugin.config import CONFIG_ENV, load_providers, load_toml, providers_table
from hermes_plugin.errors import ConfigError, PluginRegistrationError
from hermes_plugin.plugins import (
    DEFAULT_PLUGINS,
    LOAD_ENV,
    collect_kinds,
    collect_registrations,
    make_plugin_manager,
    plugin_infos,
    spec_from_table,
)
from hermes_plugin.replacements import Replacements

BUNDLED_KINDS = {"openai-compatible", "ollama", "anthropic", "static-file"}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's shell must not decide which plugins these tests see.
    monkeypatch.delenv(LOAD_ENV, raising=False)
    monkeypatch.delenv(CONFIG_ENV, raising=False)


class Registrar:
    """A plugin object written in the test, registered by name (llm style) and unregistered in `finally`."""

    def __init__(self, *calls: tuple[tuple[Any, ...], dict[str, Any]], fail: BaseException | None = None) -> None:
        self.calls = calls
        self.fail = fail

    @hookimpl
    def register_catalogs(self, register: Any) -> None:
        for args, kwargs in self.calls:
            register(*args, **kwargs)
        if self.fail is not None:
            raise self.fail


def call(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return args, kwargs


def test_default_plugins_registered() -> None:
    pm = make_plugin_manager(load="")
    names = [name for name, _ in pm.list_name_plugin()]
    assert sorted(names) == sorted(DEFAULT_PLUGINS)
    infos = {info["name"]: info for info in plugin_infos(pm)}
    for name in DEFAULT_PLUGINS:
        assert infos[name]["distribution"] == "hermes-plugin"
        assert "register_provider_kinds" in infos[name]["hooks"]


def test_bundled_plugins_declare_kinds_but_no_providers() -> None:
    pm = make_plugin_manager(load="")
    specs, errors = collect_registrations(pm)
    assert specs == {} and errors == []
    kind_errors: list[PluginRegistrationError] = []
    assert BUNDLED_KINDS <= set(collect_kinds(pm, kind_errors))
    assert kind_errors == []


def test_empty_load_env_means_no_entry_point_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOAD_ENV, "")
    pm = make_plugin_manager()
    assert sorted(name for name, _ in pm.list_name_plugin()) == sorted(DEFAULT_PLUGINS)


def test_plugin_registered_in_test_by_name() -> None:
    pm = make_plugin_manager(load="")
    pm.register(Registrar(call("intest", static=["intest/a"], label="In Test")), name="in-test")
    try:
        specs, errors = collect_registrations(pm)
        assert errors == []
        assert specs["intest"].static == [Model("intest/a")]
        assert specs["intest"].label == "In Test"
        assert specs["intest"].plugin == "in-test"
        info = next(i for i in plugin_infos(pm) if i["name"] == "in-test")
        assert info["hooks"] == ["register_catalogs"] and info["distribution"] is None
    finally:
        pm.unregister(name="in-test")
    assert "intest" not in collect_registrations(pm)[0]


def test_hook_register_catalogs() -> None:
    fetched: list[Any] = []

    def fetch(http: Any) -> list[str]:
        fetched.append(http)
        return ["live/x"]

    class Source:
        def fetch(self, http: Any) -> list[str]:
            fetched.append(http)
            return []

    source = Source()
    plugin = Registrar(
        call("alpha", static=["a/1", Model("a/2", "Two"), {"id": "a/3", "label": "Three"}], live=fetch, label="Alpha"),
        call("beta", live=source, expire_after=30),
    )
    pm = make_plugin_manager(load="")
    pm.register(plugin, name="catalogs")
    try:
        specs, errors = collect_registrations(pm)
    finally:
        pm.unregister(name="catalogs")
    assert errors == []
    alpha, beta = specs["alpha"], specs["beta"]
    assert alpha.static == [Model("a/1"), Model("a/2", "Two"), Model("a/3", "Three")]
    assert alpha.live is fetch and alpha.label == "Alpha" and alpha.plugin == "catalogs"
    assert beta.live is source and beta.static == [] and beta.expire_after == 30.0 and beta.label is None
    assert fetched == []  # registering declares; nothing is fetched during the hook call


def test_raising_plugin_is_reported_and_others_still_register() -> None:
    pm = make_plugin_manager(load="")
    pm.register(Registrar(call("good", static=["g/1"])), name="good-plugin")
    pm.register(Registrar(call("half", static=["h/1"]), fail=RuntimeError("upstream SDK exploded")), name="bad-plugin")
    try:
        specs, errors = collect_registrations(pm)
    finally:
        pm.unregister(name="good-plugin")
        pm.unregister(name="bad-plugin")
    assert list(specs) == ["good"]  # the failing plugin's earlier register() call is dropped with it
    assert len(errors) == 1
    assert errors[0].plugin == "bad-plugin"
    assert isinstance(errors[0].error, RuntimeError)
    assert "bad-plugin" in str(errors[0]) and "upstream SDK exploded" in str(errors[0])


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("",), {}, "invalid provider id"),
        (("has space",), {}, "invalid provider id"),
        (("../etc",), {}, "invalid provider id"),
        (("x" * 65,), {}, "invalid provider id"),
        ((42,), {}, "invalid provider id"),
        (("p",), {"live": "http://not-a-source"}, "live must be a source"),
        (("p",), {"label": 3}, "label must be a string"),
        (("p",), {"expire_after": "soon"}, "expire_after"),
        (("p",), {"static": ["ok", "bad\x00id"]}, "control"),
        (("p",), {"static": "one-string-not-a-list"}, "static must be a list"),
    ],
)
def test_bad_register_arguments_are_reported(args: tuple[Any, ...], kwargs: dict[str, Any], message: str) -> None:
    pm = make_plugin_manager(load="")
    pm.register(Registrar(call(*args, **kwargs)), name="sloppy")
    pm.register(Registrar(call("fine", static=["f/1"])), name="fine-plugin")
    try:
        specs, errors = collect_registrations(pm)
    finally:
        pm.unregister(name="sloppy")
        pm.unregister(name="fine-plugin")
    assert list(specs) == ["fine"]
    assert [e.plugin for e in errors] == ["sloppy"]
    assert message in str(errors[0])


def test_duplicate_provider_is_reported_and_one_registration_kept() -> None:
    pm = make_plugin_manager(load="")
    pm.register(Registrar(call("shared", static=["first/1"])), name="first")
    pm.register(Registrar(call("shared", static=["second/1"])), name="second")
    try:
        specs, errors = collect_registrations(pm)
    finally:
        pm.unregister(name="first")
        pm.unregister(name="second")
    kept = specs["shared"].plugin
    other = ({"first", "second"} - {kept}).pop()
    assert specs["shared"].static == [Model(f"{kept}/1")]  # the whole registration of one plugin, not a mix
    assert len(errors) == 1 and errors[0].plugin == other
    assert f"'shared' already registered by {kept}" in str(errors[0])


def test_configured_provider_overrides_plugin_provider() -> None:
    pm = make_plugin_manager(load="")
    pm.register(Registrar(call("local", static=["plugin/1"])), name="local-plugin")
    try:
        specs, errors = collect_registrations(pm, {"local": {"static": ["config/1"], "label": "Local"}})
    finally:
        pm.unregister(name="local-plugin")
    assert errors == []
    assert specs["local"].plugin == "config" and specs["local"].static == [Model("config/1")]


class EchoKind:
    """Declares a config kind the way a plugin would."""

    def __init__(self) -> None:
        self.tables: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def register_provider_kinds(self, register: Any) -> None:
        def factory(provider_id: str, table: dict[str, Any]) -> dict[str, Any]:
            self.tables.append((provider_id, table))
            if "word" not in table:
                raise ValueError("echo kind needs 'word'")
            return {"live": lambda http: [table["word"]], "static": ["echo/base"], "label": "Echo " + table["word"]}

        register("echo", factory)


def test_hook_register_provider_kinds() -> None:
    pm = make_plugin_manager(load="")
    echo = EchoKind()
    pm.register(echo, name="echo-kind")
    try:
        kind_errors: list[PluginRegistrationError] = []
        assert "echo" in collect_kinds(pm, kind_errors) and kind_errors == []
        specs, errors = collect_registrations(pm, {"e": {"kind": "echo", "word": "hi", "static": ["echo/extra"]}})
        with pytest.raises(ConfigError, match="provider e2: echo kind needs 'word'"):
            collect_registrations(pm, {"e2": {"kind": "echo"}})
    finally:
        pm.unregister(name="echo-kind")
    assert errors == []
    spec = specs["e"]
    assert echo.tables[0] == ("e", {"kind": "echo", "word": "hi", "static": ["echo/extra"]})
    assert spec.static == [Model("echo/base"), Model("echo/extra")]  # the kind's static first, then the table's
    assert spec.label == "Echo hi" and spec.live(None) == ["hi"] and spec.plugin == "config"


def test_bad_kind_registration_is_reported() -> None:
    class BadKinds:
        @hookimpl
        def register_provider_kinds(self, register: Any) -> None:
            register(42, "not callable")

    pm = make_plugin_manager(load="")
    pm.register(BadKinds(), name="bad-kinds")
    try:
        errors: list[PluginRegistrationError] = []
        kinds = collect_kinds(pm, errors)
    finally:
        pm.unregister(name="bad-kinds")
    assert BUNDLED_KINDS <= set(kinds)
    assert [e.plugin for e in errors] == ["bad-kinds"] and "register(kind: str, factory: callable)" in str(errors[0])


def _kinds() -> dict[str, Any]:
    errors: list[PluginRegistrationError] = []
    kinds = collect_kinds(make_plugin_manager(load=""), errors)
    assert errors == []
    return kinds


def test_spec_from_table_static_and_bundled_kinds() -> None:
    kinds = _kinds()
    static = spec_from_table("s", {"static": ["s/1", "s/2"], "label": "Static", "expire_after": 60}, kinds)
    assert static.static == [Model("s/1"), Model("s/2")] and static.live is None
    assert static.label == "Static" and static.expire_after == 60.0 and static.plugin == "config"
    local = spec_from_table("local", {"kind": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
                                      "api_key_env": "LOCAL_API_KEY", "static": ["local/tiny"]}, kinds)
    assert local.static == [Model("local/tiny")]
    assert type(local.live).__name__ == "OpenAICompatible" and local.live.base_url == "http://127.0.0.1:9/v1"
    ollama = spec_from_table("o", {"kind": "ollama", "base_url": "http://127.0.0.1:9"}, kinds)
    assert callable(ollama.live.fetch)


@pytest.mark.parametrize(
    ("provider_id", "table", "message"),
    [
        ("p", ["not", "a", "table"], "provider p: expected a table, got list"),
        ("p", {"kind": "nope"}, "provider p: unknown kind 'nope' (known: static, anthropic,"),
        ("p", {"live": "x"}, "provider p: unknown kind None"),
        ("p", {"kind": "openai-compatible"}, "provider p: "),
        ("p", {"kind": "ollama"}, "provider p: "),
        ("bad id", {"static": ["x"]}, "invalid provider id 'bad id'"),
        ("p", {"static": ["x"], "label": 5}, "label must be a string"),
        ("p", {"static": ["ok", ""]}, "model id must be"),
        ("p", {"static": "just-one-id"}, "static must be a list"),
    ],
)
def test_spec_from_table_rejects_bad_tables(provider_id: str, table: Any, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        spec_from_table(provider_id, table, _kinds())
    assert message in str(excinfo.value)


def test_toml_file_to_providers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "hermes.toml"
    path.write_text('[providers.local]\nkind = "openai-compatible"\nbase_url = "http://127.0.0.1:9/v1"\n'
                    'static = ["local/tiny"]\n\n[providers.fixed]\nstatic = ["fixed/a"]\n', encoding="utf-8")
    table = load_providers(path)
    assert set(table) == {"local", "fixed"}
    assert load_providers() == {}  # neither a path nor the environment variable: no providers
    monkeypatch.setenv(CONFIG_ENV, str(path))
    assert load_providers() == table
    specs, errors = collect_registrations(make_plugin_manager(load=""), table)
    assert errors == [] and specs["fixed"].static == [Model("fixed/a")]
    assert specs["local"].live.base_url == "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[providers.local\nkind = 1\n", "is not valid TOML"),
        (b'[providers]\nlocal = "x" = 1\n', "is not valid TOML"),
        (b"\xff\xfe[providers]\n", "is not valid TOML"),
    ],
)
def test_toml_loading_errors_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as excinfo:
        load_toml(path)
    assert str(path) in str(excinfo.value) and message in str(excinfo.value)


def test_missing_toml_file_and_bad_providers_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*missing.toml"):
        load_providers(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"\[providers\] must be a table"):
        providers_table({"providers": ["local"]})
    path = tmp_path / "scalar.toml"
    path.write_text("providers = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"\[providers\] must be a table"):
        load_providers(path)


# --- entry points, through a real distribution installed with pip -------------------------------------------


@pytest.fixture(scope="module")
def sample_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/sample_plugin installed by pip into its own directory (pip builds it in an isolated environment)."""
    return install_sample_plugin(tmp_path_factory.mktemp("sample-plugin"))


@pytest.fixture
def installed(sample_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(sample_site))
    yield sample_site
    for name in SAMPLE_MODULES:  # later tests must import them afresh from their own sys.path
        sys.modules.pop(name, None)


def _entry_point_names(pm: Any) -> set[str]:
    return {name for name, _ in pm.list_name_plugin()} - set(DEFAULT_PLUGINS)


def test_entry_point_plugin_from_installed_distribution(installed: Path) -> None:
    pm = make_plugin_manager()
    assert _entry_point_names(pm) == {"hermes-sample"}
    info = next(i for i in plugin_infos(pm) if i["name"] == "hermes-sample")
    assert info["distribution"] == "hermes-sample-plugin" and info["version"] == "0.1.0"
    assert info["hooks"] == ["hermes_plugin_model_replacements", "register_catalogs"]
    # The sample's retirement map arrives through the installed entry point.
    assert Replacements({}, pm).table() == {"sample/retired": "sample/large"}
    specs, errors = collect_registrations(pm)
    assert specs["sample"].static == [Model("sample/small"), Model("sample/large", "Sample Large")]
    assert specs["sample"].label == "Sample Provider" and specs["sample"].plugin == "hermes-sample"
    # The broken entry point is reported, not fatal: which plugin and what went wrong.
    assert [e.plugin for e in errors] == ["hermes-sample-broken"]
    assert "sample plugin is broken on purpose" in str(errors[0])


def test_load_env_selects_entry_point_by_name(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOAD_ENV, "hermes-sample")
    pm = make_plugin_manager()
    assert _entry_point_names(pm) == {"hermes-sample"}
    assert collect_registrations(pm)[1] == []  # the broken one was never imported


def test_load_env_selects_by_distribution_name(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOAD_ENV, " other , hermes-sample-plugin ")
    pm = make_plugin_manager()
    assert _entry_point_names(pm) == {"hermes-sample"}
    assert [e.plugin for e in pm.load_errors] == ["hermes-sample-broken"]


@pytest.mark.parametrize("value", ["other", ""])
def test_load_env_excludes_installed_plugin(installed: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(LOAD_ENV, value)
    pm = make_plugin_manager()
    assert _entry_point_names(pm) == set()
    specs, errors = collect_registrations(pm)
    assert specs == {} and errors == []


def test_load_argument_overrides_environment(installed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LOAD_ENV, "other")
    assert _entry_point_names(make_plugin_manager(load="hermes-sample")) == {"hermes-sample"}
    assert _entry_point_names(make_plugin_manager(load="hermes-sample", entry_points=False)) == set()
