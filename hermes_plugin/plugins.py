"""The pluggy plugin manager: bundled provider kinds, third-party entry points, isolated registration."""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import ConfigError, PluginRegistrationError, ProviderResponseError
from .models import Model, to_models

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hermes_plugin"
LOAD_ENV = "HERMES_PLUGIN_LOAD"
# Bundled plugins are ordinary plugins; they only declare config kinds, so they register no provider by themselves.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "hermes_plugin.hooks.openai_compatible",
    "hermes_plugin.hooks.ollama",
    "hermes_plugin.hooks.anthropic",
    "hermes_plugin.hooks.static_file",
)
PROVIDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class ProviderSpec:
    """What one registration declared: static models, a live source, and where it came from."""

    id: str
    label: str | None = None
    static: list[Model] = field(default_factory=list)
    live: Any = None
    expire_after: float | None = None
    plugin: str = "config"
    # An empty live list is a real "no models" only when the provider says so; otherwise it is
    # treated as a failed fetch (many hosts turn an outage into ``200 []``).
    empty_means_none: bool = False


def make_plugin_manager(load: str | None = None, *, entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with the bundled plugins and (unless narrowed by ``HERMES_PLUGIN_LOAD``) entry points.

    ``load`` overrides the environment: a comma list of entry-point or distribution names, "" for none.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    pm.load_errors = []  # type: ignore[attr-defined]
    for module_path in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_path), name=module_path)
    if entry_points:
        wanted = os.environ.get(LOAD_ENV) if load is None else load
        _load_entry_points(pm, None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()})
    return pm


def _load_entry_points(pm: pluggy.PluginManager, wanted: set[str] | None) -> None:
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        if wanted is not None and ep.name not in wanted and dist not in wanted:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin must not stop the others from loading
            log.warning("hermes-plugin: cannot load plugin %s: %s", ep.name, exc)
            pm.load_errors.append(PluginRegistrationError(ep.name, exc))  # type: ignore[attr-defined]
        else:
            _remember_dist(pm, ep.name, ep.dist)


def _remember_dist(pm: pluggy.PluginManager, name: str, dist: metadata.Distribution | None) -> None:
    dists = getattr(pm, "hermes_dists", {})
    if dist is not None:
        dists[name] = (dist.name, dist.version)
    pm.hermes_dists = dists  # type: ignore[attr-defined]


def plugin_infos(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Loaded plugins, their hooks and distributions (for `hermes-plugin plugins`)."""
    dists = getattr(pm, "hermes_dists", {})
    infos = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda pair: pair[0]):
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        dist = dists.get(name)
        infos.append({
            "name": name,
            "hooks": hooks,
            "distribution": dist[0] if dist else ("hermes-plugin" if name in DEFAULT_PLUGINS else None),
            "version": dist[1] if dist else None,
        })
    return infos


def _each_impl(pm: pluggy.PluginManager, hook_name: str) -> Iterable[tuple[str, Callable[..., Any], list[str]]]:
    # Call implementations one by one: pluggy stops a hook call at the first implementation that raises.
    caller = getattr(pm.hook, hook_name)
    for impl in reversed(caller.get_hookimpls()):
        yield impl.plugin_name, impl.function, list(impl.argnames)


def collect_kinds(pm: pluggy.PluginManager, errors: list[PluginRegistrationError]) -> dict[str, Callable[..., Any]]:
    """Every config kind plugins declare (``openai-compatible``, ``ollama``, ...) -> its factory."""
    kinds: dict[str, Callable[..., Any]] = {}
    for plugin, function, _ in _each_impl(pm, "register_provider_kinds"):
        found: dict[str, Callable[..., Any]] = {}

        def register(kind: str, factory: Callable[..., Any], _into: dict[str, Callable[..., Any]] = found) -> None:
            if not isinstance(kind, str) or not kind or not callable(factory):
                raise TypeError("register(kind: str, factory: callable)")
            _into[kind] = factory

        try:
            function(register=register)
        except Exception as exc:
            errors.append(PluginRegistrationError(plugin, exc))
            log.warning("%s", errors[-1])
            continue
        kinds.update(found)
    return kinds


def make_spec(provider_id: Any, static: Any = (), live: Any = None, label: Any = None,
              expire_after: Any = None, plugin: str = "config", empty_means_none: Any = False) -> ProviderSpec:
    """Validate one ``register(...)`` call and turn it into a ProviderSpec."""
    if not isinstance(provider_id, str) or not PROVIDER_ID.match(provider_id):
        raise ValueError(f"invalid provider id {provider_id!r} (letters, digits, '.', '_', '-'; at most 64)")
    if live is not None and not (callable(live) or callable(getattr(live, "fetch", None))):
        raise TypeError(f"provider {provider_id}: live must be a source with fetch(http) or a callable")
    if label is not None and not isinstance(label, str):
        raise TypeError(f"provider {provider_id}: label must be a string")
    if expire_after is not None and not isinstance(expire_after, (int, float)):
        raise TypeError(f"provider {provider_id}: expire_after must be seconds")
    if not isinstance(empty_means_none, bool):
        raise TypeError(f"provider {provider_id}: empty_means_none must be true or false")
    if isinstance(static, (str, bytes, Mapping)):  # list("abc") would register one model per character
        raise TypeError(f"provider {provider_id}: static must be a list of model ids or Model objects")
    try:
        models = to_models(list(static or ()))
    except ProviderResponseError as exc:
        raise ValueError(f"provider {provider_id}: {exc}") from exc
    return ProviderSpec(provider_id, label, models, live,
                        float(expire_after) if expire_after is not None else None, plugin, empty_means_none)


def collect_registrations(
    pm: pluggy.PluginManager, providers_config: Mapping[str, Any] | None = None
) -> tuple[dict[str, ProviderSpec], list[PluginRegistrationError]]:
    """Run ``register_catalogs`` plugin by plugin (a failing plugin is reported and skipped), then config.

    Configured providers (``HERMES_PLUGIN_PROVIDERS`` / TOML) win over plugin ones with the same id.
    Configuration errors raise ConfigError: the host's own config should fail loudly at startup.
    """
    errors: list[PluginRegistrationError] = list(getattr(pm, "load_errors", []))
    specs: dict[str, ProviderSpec] = {}
    for plugin, function, _ in _each_impl(pm, "register_catalogs"):
        pending: list[ProviderSpec] = []

        def register(provider_id: str, static: Any = (), live: Any = None, label: Any = None,
                     expire_after: Any = None, empty_means_none: Any = False, _plugin: str = plugin,
                     _into: list[ProviderSpec] = pending) -> None:
            _into.append(make_spec(provider_id, static, live, label, expire_after, _plugin, empty_means_none))

        try:
            function(register=register)
        except Exception as exc:
            errors.append(PluginRegistrationError(plugin, exc))
            log.warning("%s", errors[-1])
            continue
        for spec in pending:  # a plugin's registrations count only if its whole call succeeded
            if spec.id in specs:
                errors.append(PluginRegistrationError(plugin, f"provider {spec.id!r} already registered by {specs[spec.id].plugin}"))
                continue
            specs[spec.id] = spec
    if providers_config:
        kinds = collect_kinds(pm, errors)
        for provider_id, table in providers_config.items():
            specs[provider_id] = spec_from_table(provider_id, table, kinds)
    return specs, errors


def spec_from_table(provider_id: str, table: Any, kinds: Mapping[str, Callable[..., Any]]) -> ProviderSpec:
    """One provider table of the config (``{"kind": ..., "base_url": ..., "static": [...]}``)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"provider {provider_id}: expected a table, got {type(table).__name__}")
    kind = table.get("kind", "static" if "live" not in table else None)
    empty_means_none = table.get("empty_means_none", False)
    if kind == "static":
        declared: dict[str, Any] = {}
    elif kind in kinds:
        try:  # the catalog's own keys are not the kind's business
            declared = dict(kinds[kind](provider_id, {k: v for k, v in table.items() if k != "empty_means_none"})
                            or {})
        except (TypeError, ValueError, KeyError) as exc:
            raise ConfigError(f"provider {provider_id}: {exc}") from exc
    else:
        raise ConfigError(f"provider {provider_id}: unknown kind {kind!r} (known: static, {', '.join(sorted(kinds))})")
    table_static = table.get("static", ()) or ()
    if isinstance(table_static, (str, bytes, Mapping)):
        raise ConfigError(f"provider {provider_id}: static must be a list of model ids")
    static = list(declared.pop("static", ()) or ()) + list(table_static)
    label = table.get("label", declared.pop("label", None))
    expire_after = table.get("expire_after", declared.pop("expire_after", None))
    try:
        return make_spec(provider_id, static, declared.pop("live", None), label, expire_after, "config",
                         empty_means_none)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from exc
