"""The ``[proxy]`` table: which upstream routes write a session's model, how to read one, and limits."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import jsonpath
from ..config import CONFIG_ENV, load_toml, providers_table
from ..errors import ConfigError
from ..extension import WriteSpec, check_alias_rules
from ..picker import check_picker_adapter
from ..presets import preset
from ..replacements import check_table
from ..writefields import WriteFields
from ..writeguard import ABSENT_POLICIES, check_absent_policies

PROXY_KEYS = {"writes", "session_read", "live_urls", "static_urls", "session_urls", "model_select", "picker",
              "session_ttl", "session_learn_ttl", "timeout", "connect_timeout", "pool_size", "cache", "on_keep", "prefix",
              "auth_url", "auth_ttl", "max_write_bytes", "allowed_hosts", "model_aliases", "session_write",
              "model_replacements", "max_price_ratio", "default_model", "new_session_model", "upstream_models",
              "picker_adapter", "session_list", "defaults", "preset", "absent_model",
              "absent_model_providers"}


@dataclass(frozen=True)
class WriteRoute:
    """One upstream route that writes a session's model."""

    method: str
    url: re.Pattern[str]
    spec: WriteSpec
    session_in_path: bool

    def browser(self) -> dict[str, str]:
        where = "path" if self.session_in_path else "body"
        return {"method": self.method, "url": self.url.pattern, "session": f"{where}:{self.spec.session}",
                "model": f"body:{self.spec.fields.primary}"}


@dataclass(frozen=True)
class SessionRead:
    """How to read a session's stored model from the upstream: ``GET url`` (``{session}`` filled in), JSON path.

    Hosts that load a chat by POST (``POST /load {"id": ...}``) give ``method`` and a JSON ``body`` whose
    ``"{session}"`` strings are filled in.
    """

    url: str
    model: str
    method: str = "GET"
    body: Any = None

    def request_body(self, session: str) -> Any:
        return _fill(self.body, session)


def _fill(value: Any, session: str) -> Any:
    if isinstance(value, str):
        return value.replace("{session}", session)
    if isinstance(value, dict):
        return {key: _fill(item, session) for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, session) for item in value]
    return value


@dataclass(frozen=True)
class UpstreamRead:
    """A value read from the upstream: ``GET url``, then the JSON path ``model`` (the default model)."""

    url: str
    model: str


@dataclass(frozen=True)
class SessionList:
    """How to list the upstream's sessions: ``GET url``, the list at ``sessions``, each item's id (and model)."""

    url: str
    sessions: str
    session: str
    model: str | None = None


@dataclass(frozen=True)
class DefaultRead:
    """A default model of the upstream: ``GET url``, the model at ``model``, reported under ``name``."""

    url: str
    model: str
    name: str


@dataclass(frozen=True)
class SessionWrite:
    """How the proxy stores a session's model itself (undo, the user's answers): the upstream's own write.

    ``url`` may hold ``{session}``; in ``body``, the strings ``"{session}"`` and ``"{model}"`` are filled in.
    """

    method: str
    url: str
    body: dict[str, Any]

    def render(self, session: str, model: str) -> tuple[str, dict[str, Any]]:
        from urllib.parse import quote

        def fill(value: Any) -> Any:
            if isinstance(value, dict):
                return {key: fill(item) for key, item in value.items()}
            if isinstance(value, list):
                return [fill(item) for item in value]
            return {"{session}": session, "{model}": model}.get(value, value) if isinstance(value, str) else value

        return self.url.replace("{session}", quote(session, safe="")), fill(self.body)


def _session_write(value: Any) -> SessionWrite:
    usage = '[proxy] session_write must be {method = "POST", url = "/path", body = {... "{session}", "{model}" ...}}'
    if not isinstance(value, Mapping) or set(value) - {"method", "url", "body"}:
        raise ConfigError(usage)
    method, url, body = str(value.get("method", "POST")).upper(), value.get("url"), value.get("body")
    if method not in ("POST", "PUT", "PATCH"):
        raise ConfigError(f"[proxy] session_write: method must be POST, PUT or PATCH, got {method!r}")
    if not isinstance(url, str) or not url.startswith("/") or url.startswith("//"):
        raise ConfigError("[proxy] session_write: url must be a path on the upstream, starting with a single '/'")
    if not isinstance(body, Mapping) or "{model}" not in repr(dict(body)):
        raise ConfigError("[proxy] session_write: body must be a table that places \"{model}\"")
    return SessionWrite(method, url, dict(body))


@dataclass(frozen=True)
class UpstreamModelsRead:
    """``GET url`` on the upstream lists the models it serves now; ``models`` is the JSON path of their ids."""

    url: str
    models: str


@dataclass
class ProxyConfig:
    """The ``[proxy]`` table, validated."""

    writes: list[WriteRoute] = field(default_factory=list)
    session_read: SessionRead | None = None
    session_write: SessionWrite | None = None
    model_replacements: dict[str, str] = field(default_factory=dict)
    max_price_ratio: float = 1.0
    live_urls: list[dict[str, Any]] = field(default_factory=list)
    static_urls: list[dict[str, Any]] = field(default_factory=list)
    session_urls: list[dict[str, Any]] = field(default_factory=list)
    model_select: str = "#modelSelect, [data-hermes-model]"
    picker: str | None = None
    session_ttl: float = 2.0
    session_learn_ttl: float | None = None  # learnt stored models; None: 30 s, or 0 when session_ttl is 0
    auth_url: str = "/"  # asked as the caller before any plugin route without a session: 2xx lets it through
    auth_ttl: float = 2.0
    allowed_hosts: list[str] | None = None  # Host names the proxy answers to (DNS rebinding); None: any
    max_write_bytes: int = 2**20  # guarded write bodies are read whole; everything else streams unbounded
    timeout: float = 120.0
    connect_timeout: float = 5.0
    pool_size: int = 32
    cache: str = "memory"
    on_keep: str = "keep"
    prefix: str = "/hermes-plugin"
    providers: dict[str, Any] = field(default_factory=dict)
    model_aliases: list[str] = field(default_factory=list)
    upstream_models: UpstreamModelsRead | None = None  # asked before a kept model is forwarded
    picker_adapter: dict[str, str] | None = None  # how the page's custom (non-<select>) model picker works
    session_list: SessionList | None = None  # the impact report's sessions
    defaults: list[DefaultRead] = field(default_factory=list)  # the impact report's default models
    default_model: UpstreamRead | None = None  # where the upstream says which model new sessions get
    new_session_model: str = "default"
    absent_model: str = "fallback"  # an automatic write over a stored model no catalogue lists: fallback | keep
    absent_model_providers: dict[str, str] = field(default_factory=dict)  # per provider the stored id names

    @property
    def learn_ttl(self) -> float:
        """Seconds a learnt stored model is used; off by default where reads are not cached (several workers)."""
        if self.session_learn_ttl is not None:
            return self.session_learn_ttl
        return 30.0 if self.session_ttl > 0 else 0.0


def _where(value: Any, what: str) -> tuple[str, bool]:
    """``"session_id"``/``"body:session_id"`` -> (path, False); ``"path:chat_id"`` -> (group, True)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"[proxy] writes: {what} must be a non-empty string, got {value!r}")
    kind, _, name = value.partition(":") if ":" in value else ("body", "", value)
    if kind not in ("body", "path"):
        raise ConfigError(f"[proxy] writes: {what} {value!r} must be 'body:<json path>' or 'path:<group>'")
    try:
        jsonpath.parse(name)
    except jsonpath.PathError as exc:
        raise ConfigError(f"[proxy] writes: {what}: {exc}") from None
    return name, kind == "path"


def _write_route(entry: Any) -> WriteRoute:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"[proxy] writes: each entry must be a table, got {entry!r}")
    unknown = set(entry) - {"method", "url", "session", "model", "session_match"}
    if unknown:
        raise ConfigError(f"[proxy] writes: unknown keys {sorted(unknown)} in {dict(entry)!r}")
    method = str(entry.get("method", "POST")).upper()
    if method not in ("POST", "PUT", "PATCH", "DELETE"):
        raise ConfigError(f"[proxy] writes: method must be POST, PUT, PATCH or DELETE, got {method!r}")
    try:
        url = re.compile(entry["url"])
    except (KeyError, TypeError, re.error) as exc:
        raise ConfigError(f"[proxy] writes: bad url in {dict(entry)!r}: {exc}") from None
    session, in_path = _where(entry.get("session", "session_id"), "session")
    if "[]" in session:
        raise ConfigError(f"[proxy] writes: session {entry.get('session')!r} must name one value, not walk a list")
    if in_path and session not in url.groupindex:
        raise ConfigError(f"[proxy] writes: {entry['url']!r} has no named group {session!r}")
    match = entry.get("session_match")
    if match is not None:
        try:
            re.compile(match)
        except (TypeError, re.error) as exc:
            raise ConfigError(f"[proxy] writes: bad session_match in {dict(entry)!r}: {exc}") from None
    return WriteRoute(method, url, WriteSpec(session, _model_paths(entry.get("model", "model")), match), in_path)


def _model_paths(value: Any) -> str | tuple[str, ...]:
    """A write's ``model``: one body path or a list of them (every field naming the model, ``[]`` for lists)."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise ConfigError(f"[proxy] writes: model must be a path or a non-empty list of paths, got {value!r}")
    paths = []
    for item in values:
        path, in_path = _where(item, "model")
        if in_path:
            raise ConfigError("[proxy] writes: the model must come from the JSON body ('body:<path>')")
        paths.append(path)
    try:
        WriteFields.of(paths)
    except jsonpath.PathError as exc:
        raise ConfigError(f"[proxy] writes: model: {exc}") from None
    return paths[0] if isinstance(value, str) else tuple(paths)


def _url_list(table: Mapping[str, Any], key: str) -> list[dict[str, Any]]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
        raise ConfigError(f"[proxy] {key} must be a list of tables")
    return [dict(e) for e in value]


def _with_preset(table: Mapping[str, Any]) -> Mapping[str, Any]:
    """``preset = "NAME"``: the built-in table, with this table's own keys on top (so one file can add providers,
    prices and a ratio to a known app's routes)."""
    if "preset" not in table:
        return table
    name = table["preset"]
    if not isinstance(name, str):
        raise ConfigError("[proxy] preset must be the name of a built-in table, e.g. \"hermes-webui\"")
    return {**preset(name), **{key: value for key, value in table.items() if key != "preset"}}


def proxy_config(table: Mapping[str, Any], providers: Mapping[str, Any] | None = None) -> ProxyConfig:
    """Validate a ``[proxy]`` table; every mistake is one ConfigError naming the key."""
    if not isinstance(table, Mapping):
        raise ConfigError("[proxy] must be a table")
    table = _with_preset(table)
    unknown = set(table) - PROXY_KEYS
    if unknown:
        raise ConfigError(f"[proxy]: unknown keys {sorted(unknown)} (known: {', '.join(sorted(PROXY_KEYS))})")
    writes = table.get("writes", [])
    if not isinstance(writes, list):
        raise ConfigError("[proxy] writes must be a list of tables")
    cfg = ProxyConfig(writes=[_write_route(e) for e in writes], providers=dict(providers or {}))
    read = table.get("session_read")
    if read is not None:
        method = str(read.get("method", "GET")).upper() if isinstance(read, Mapping) else "GET"
        named = isinstance(read, Mapping) and isinstance(read.get("url"), str) and (
            "{session}" in read["url"] or "{session}" in repr(read.get("body")))
        if not named or method not in ("GET", "POST") or (read.get("body") is not None and method == "GET"):
            raise ConfigError("[proxy] session_read must be {url = \"...{session}...\", model = \"json.path\"}, or "
                              "{method = \"POST\", url, body = {id = \"{session}\"}, model}")
        try:
            jsonpath.parse(read.get("model"))
        except jsonpath.PathError as exc:
            raise ConfigError(f"[proxy] session_read model: {exc}") from None
        cfg.session_read = SessionRead(read["url"], read["model"], method, read.get("body"))
    read = table.get("upstream_models")
    if read is not None:
        if not isinstance(read, Mapping) or not isinstance(read.get("url"), str) or not read["url"].startswith("/") \
                or read["url"].startswith("//") or not isinstance(read.get("models"), str):
            raise ConfigError("[proxy] upstream_models must be {url = \"/path\", models = \"json.path[].id\"}")
        try:
            jsonpath.parse(read["models"])
        except jsonpath.PathError as exc:
            raise ConfigError(f"[proxy] upstream_models models: {exc}") from None
        cfg.upstream_models = UpstreamModelsRead(read["url"], read["models"])
    if table.get("picker_adapter") is not None:
        cfg.picker_adapter = check_picker_adapter(table["picker_adapter"], "[proxy] picker_adapter")
    if table.get("session_write") is not None:
        cfg.session_write = _session_write(table["session_write"])
    cfg.model_replacements = check_table(table.get("model_replacements", {}), "[proxy] model_replacements")
    if "max_price_ratio" in table:
        value = table["max_price_ratio"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise ConfigError("[proxy] max_price_ratio must be a positive number")
        cfg.max_price_ratio = float(value)
    cfg.live_urls, cfg.static_urls = _url_list(table, "live_urls"), _url_list(table, "static_urls")
    cfg.session_urls = _url_list(table, "session_urls")
    default = table.get("default_model")
    if default is not None:
        if not isinstance(default, Mapping) or not isinstance(default.get("url"), str) \
                or not default["url"].startswith("/") or default["url"].startswith("//"):
            raise ConfigError('[proxy] default_model must be {url = "/path on the upstream", model = "json.path"}')
        try:
            jsonpath.parse(default.get("model"))  # type: ignore[arg-type]
        except jsonpath.PathError as exc:
            raise ConfigError(f"[proxy] default_model model: {exc}") from None
        cfg.default_model = UpstreamRead(default["url"], default["model"])
    check_alias_rules(table.get("model_aliases", []))
    cfg.model_aliases = list(table.get("model_aliases", []))
    for key in ("model_select", "picker", "cache", "on_keep", "prefix", "auth_url", "new_session_model",
                "absent_model"):
        if key in table:
            if not isinstance(table[key], str) or not table[key]:
                raise ConfigError(f"[proxy] {key} must be a non-empty string")
            setattr(cfg, key, table[key])
    if cfg.absent_model not in ABSENT_POLICIES:
        raise ConfigError(f"[proxy] absent_model must be one of {ABSENT_POLICIES}, got {cfg.absent_model!r}")
    try:
        cfg.absent_model_providers = check_absent_policies(table.get("absent_model_providers", {}),
                                                           "[proxy] absent_model_providers")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not cfg.auth_url.startswith("/") or cfg.auth_url.startswith("//"):
        raise ConfigError("[proxy] auth_url must be a path on the upstream, starting with a single '/'")
    for key in ("session_ttl", "session_learn_ttl", "timeout", "connect_timeout", "auth_ttl"):
        if key in table:
            if not isinstance(table[key], (int, float)) or isinstance(table[key], bool) or table[key] < 0:
                raise ConfigError(f"[proxy] {key} must be a number of seconds >= 0")
            setattr(cfg, key, float(table[key]))
    if "allowed_hosts" in table:
        hosts = table["allowed_hosts"]
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
            raise ConfigError("[proxy] allowed_hosts must be a non-empty list of host names (\"*\" for any)")
        cfg.allowed_hosts = hosts
    if "max_write_bytes" in table:
        value = table["max_write_bytes"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError("[proxy] max_write_bytes must be a positive integer")
        cfg.max_write_bytes = value
    if "pool_size" in table:
        if not isinstance(table["pool_size"], int) or isinstance(table["pool_size"], bool) or table["pool_size"] < 1:
            raise ConfigError("[proxy] pool_size must be a positive integer")
        cfg.pool_size = table["pool_size"]
    cfg.session_list = _session_list(table.get("session_list"))
    cfg.defaults = _defaults(table.get("defaults", []))
    if cfg.writes and cfg.session_read is None:
        raise ConfigError("[proxy] writes need session_read: the guard must know a session's stored model")
    return cfg


def _upstream_path(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        raise ConfigError(f"[proxy] {key} url must be a path on the upstream, starting with a single '/'")
    return value


def _path(value: Any, key: str) -> str:
    try:
        jsonpath.parse(value)
    except jsonpath.PathError as exc:
        raise ConfigError(f"[proxy] {key}: {exc}") from None
    return str(value)


def _session_list(table: Any) -> SessionList | None:
    if table is None:
        return None
    if not isinstance(table, Mapping) or set(table) - {"url", "sessions", "session", "model"}:
        raise ConfigError('[proxy] session_list must be {url = "/api/sessions", sessions = "sessions[]", '
                          'session = "session_id", model = "model"}')
    model = table.get("model")
    return SessionList(_upstream_path(table.get("url"), "session_list"),
                       _path(table.get("sessions", "[]"), "session_list sessions"),
                       _path(table.get("session", "session_id"), "session_list session"),
                       None if model is None else _path(model, "session_list model"))


def _defaults(entries: Any) -> list[DefaultRead]:
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigError("[proxy] defaults must be a list of tables {url, model, name}")
    out = []
    for entry in entries:
        if set(entry) - {"url", "model", "name"}:
            raise ConfigError(f"[proxy] defaults: unknown keys in {dict(entry)!r}")
        model = _path(entry.get("model"), "defaults model")
        name = entry.get("name", model)
        if not isinstance(name, str) or not name:
            raise ConfigError("[proxy] defaults name must be a non-empty string")
        out.append(DefaultRead(_upstream_path(entry.get("url"), "defaults"), model, name))
    return out


def load_config(path: str | None = None, preset_name: str | None = None) -> ProxyConfig:
    """``--preset`` (a built-in ``[proxy]`` table) or ``--config`` (TOML with ``[proxy]`` and ``[providers.*]``)."""
    if path and preset_name:
        raise ConfigError("give --config or --preset, not both (a [proxy] table can start from one: preset = NAME)")
    if preset_name:
        return proxy_config(preset(preset_name))
    if not path:
        raise ConfigError(f"the proxy needs --config FILE (with a [proxy] table), ${CONFIG_ENV} or --preset NAME")
    data = load_toml(path)
    if "proxy" not in data:
        raise ConfigError(f"{path}: no [proxy] table (see docs/proxy.md)")
    return proxy_config(data["proxy"], providers_table(data))

