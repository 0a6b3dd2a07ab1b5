"""``ModelGuard``: the Flask extension that guards a host's model writes and serves the browser guard."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import logging
import os
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, has_app_context, has_request_context, make_response, request
from flask.wrappers import Response

from . import api, inject, jsonpath, jsontext, observe
from .catalog_changes import CatalogChanges
from .config import load_providers
from .errors import ConfigError, InvalidModelId
from .impact import DefaultModels, Impact, SessionIds
from .models import validate_write_id
from .names import EXTENSION
from .picker import check_picker_adapter
from .plugins import make_plugin_manager
from .prices import Price, ratio
from .replacements import Replacements, check_table
from .state import REDIS_SCHEMES, StateUnavailable, open_store
from .writefields import FieldError, FieldValue, Models, WriteFields
from .writeguard import (
    ABSENT_POLICIES,
    INTENTS,
    NEW_SESSION_POLICIES,
    ON_KEEP,
    AuditLog,
    Decision,
    Versions,
    absent_policy,
    check_absent_policies,
    decide,
    decide_models,
    decide_new_session,
    needs_availability,
)
from .ws import fleet_message

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNMARKED_POLICIES = ("browser-auto", "user", "auto")
DEFAULTS: dict[str, Any] = {
    "HERMES_PLUGIN_PREFIX": "/hermes-plugin",
    "HERMES_PLUGIN_PROVIDERS": {},
    "HERMES_PLUGIN_CONFIG": None,
    "HERMES_PLUGIN_CACHE": "sqlite",
    "HERMES_PLUGIN_CACHE_EXPIRE": 300,
    "HERMES_PLUGIN_FETCH_TIMEOUT": 15,
    "HERMES_PLUGIN_MODEL_SELECT": "#modelSelect, [data-hermes-model]",
    "HERMES_PLUGIN_PICKER": None,
    "HERMES_PLUGIN_PICKER_ADAPTER": None,
    "HERMES_PLUGIN_LIVE_URLS": [],
    "HERMES_PLUGIN_STATIC_URLS": [],
    "HERMES_PLUGIN_SESSION_URLS": [],
    "HERMES_PLUGIN_ON_KEEP": "keep",
    "HERMES_PLUGIN_UNMARKED_INTENT": "browser-auto",
    "HERMES_PLUGIN_INJECT": True,
    "HERMES_PLUGIN_AUDIT_SIZE": 100,
    "HERMES_PLUGIN_AUDIT_MAX_ENTRIES": 10000,
    "HERMES_PLUGIN_REDIS_URL": None,
    "HERMES_PLUGIN_STATE": None,
    "HERMES_PLUGIN_LOCK_TIMEOUT": 30,
    "HERMES_PLUGIN_WS_QUEUE": 100,
    "HERMES_PLUGIN_ALLOWED_ORIGINS": [],
    "HERMES_PLUGIN_MAX_OBSERVED": 64,
    "HERMES_PLUGIN_REFRESH_INTERVAL": 10,
    "HERMES_PLUGIN_ALLOWED_HOSTS": None,
    "HERMES_PLUGIN_MODEL_ALIASES": [],
    "HERMES_PLUGIN_READABLE_SCRIPT": False,
    "HERMES_PLUGIN_NEW_SESSION_MODEL": "default",
    "HERMES_PLUGIN_DEFAULT_MODEL": None,
    "HERMES_PLUGIN_MODEL_REPLACEMENTS": {},
    "HERMES_PLUGIN_MAX_PRICE_RATIO": 1.0,
    "HERMES_PLUGIN_ABSENT_MODEL": "fallback",
    "HERMES_PLUGIN_ABSENT_MODEL_PROVIDERS": {},
}
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# Decisions the page must show the user: a change made without them (with Undo), or a choice to ask them.
NOTICES = {"model_absent": "changed", "replacement_suggested": "ask", "price_increase": "ask"}


@dataclass(frozen=True)
class WriteSpec:
    """Where a guarded write carries its session id and its model (dotted JSON paths or a URL variable).

    ``model`` is one path or several (every field of the write that names the model, ``[]`` for lists).
    """

    session: str
    model: str | tuple[str, ...]
    session_match: str | None = None  # a regex a session id must match in full; other ids are no session


    @functools.cached_property
    def fields(self) -> WriteFields:
        return WriteFields.of(self.model)


class WriteRefused(Exception):
    """A guarded write answered with an error before the view runs."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.response = api.json_error(status, error, detail, **extra)


def _check_config(config: Any) -> None:
    prefix = config["HERMES_PLUGIN_PREFIX"]
    if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigError(f"HERMES_PLUGIN_PREFIX must start with '/' and not end with one, got {prefix!r}")
    if config["HERMES_PLUGIN_ON_KEEP"] not in ON_KEEP:
        raise ConfigError(f"HERMES_PLUGIN_ON_KEEP must be one of {ON_KEEP}")
    if config["HERMES_PLUGIN_UNMARKED_INTENT"] not in UNMARKED_POLICIES:
        raise ConfigError(f"HERMES_PLUGIN_UNMARKED_INTENT must be one of {UNMARKED_POLICIES}")
    check_alias_rules(config["HERMES_PLUGIN_MODEL_ALIASES"])
    check_picker_adapter(config["HERMES_PLUGIN_PICKER_ADAPTER"])
    if config["HERMES_PLUGIN_ABSENT_MODEL"] not in ABSENT_POLICIES:
        raise ConfigError(f"HERMES_PLUGIN_ABSENT_MODEL must be one of {ABSENT_POLICIES}")
    try:
        check_absent_policies(config["HERMES_PLUGIN_ABSENT_MODEL_PROVIDERS"], "HERMES_PLUGIN_ABSENT_MODEL_PROVIDERS")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config["HERMES_PLUGIN_NEW_SESSION_MODEL"] not in NEW_SESSION_POLICIES:
        raise ConfigError(f"HERMES_PLUGIN_NEW_SESSION_MODEL must be one of {NEW_SESSION_POLICIES}")
    default = config["HERMES_PLUGIN_DEFAULT_MODEL"]
    if default is not None:
        try:
            validate_write_id(default)
        except InvalidModelId as exc:
            raise ConfigError(f"HERMES_PLUGIN_DEFAULT_MODEL: {exc}") from None
    for entry in config["HERMES_PLUGIN_SESSION_URLS"]:
        if isinstance(entry, dict):
            observe.url_method(entry, "HERMES_PLUGIN_SESSION_URLS")  # the browser reads by this method
    for key in ("HERMES_PLUGIN_AUDIT_SIZE", "HERMES_PLUGIN_AUDIT_MAX_ENTRIES", "HERMES_PLUGIN_WS_QUEUE",
                "HERMES_PLUGIN_MAX_OBSERVED"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ConfigError(f"{key} must be a positive integer")
    check_table(config["HERMES_PLUGIN_MODEL_REPLACEMENTS"])
    max_ratio = config["HERMES_PLUGIN_MAX_PRICE_RATIO"]
    if not isinstance(max_ratio, (int, float)) or isinstance(max_ratio, bool) or not max_ratio > 0:
        raise ConfigError("HERMES_PLUGIN_MAX_PRICE_RATIO must be a positive number (1.0: no automatic price rise)")
    timeout = config["HERMES_PLUGIN_LOCK_TIMEOUT"]
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError("HERMES_PLUGIN_LOCK_TIMEOUT must be a positive number of seconds")


def state_settings(config: Any) -> tuple[str, str]:
    """``(state store, HTTP cache)`` from the config: a Redis URL puts both in Redis unless set otherwise."""
    redis_url = config.get("HERMES_PLUGIN_REDIS_URL") or os.environ.get("HERMES_PLUGIN_REDIS_URL") or None
    cache = config["HERMES_PLUGIN_CACHE"]
    state = config.get("HERMES_PLUGIN_STATE")
    if redis_url:
        state = state or redis_url
        cache = redis_url if cache in ("sqlite", "memory") else cache  # a fleet shares its catalog cache too
    if not state and isinstance(cache, str) and cache.startswith(REDIS_SCHEMES):
        state = cache  # a Redis cache was the older way to ask for a fleet: the guard state joins it
    # A memory cache means a test or a throwaway process: keep the guard state in memory with it.
    state = state or ("memory" if cache == "memory" else "sqlite")
    return state, cache


def _warn_scope(state: str) -> None:
    """Say at startup how far versions and push reach, naming the setting that widens them."""
    if state == "memory":
        log.warning("hermes-plugin: guard state is in memory: versions, the model log and WebSocket push are "
                    "per process; with several workers set HERMES_PLUGIN_STATE='sqlite' or HERMES_PLUGIN_REDIS_URL")
    elif not state.startswith(REDIS_SCHEMES):
        log.warning("hermes-plugin: guard state is in SQLite: WebSocket push and catalog invalidation reach the "
                    "workers of this host only; set HERMES_PLUGIN_REDIS_URL to share them across hosts")


def check_alias_rules(rules: Any) -> None:
    """``HERMES_PLUGIN_MODEL_ALIASES``: regexes with a ``model`` named group (and maybe ``provider``)."""
    if not isinstance(rules, (list, tuple)) or not all(isinstance(rule, str) for rule in rules):
        raise ConfigError("HERMES_PLUGIN_MODEL_ALIASES must be a list of regex strings")
    for rule in rules:
        try:
            pattern = re.compile(rule)
        except re.error as exc:
            raise ConfigError(f"HERMES_PLUGIN_MODEL_ALIASES: {rule!r}: {exc}") from None
        if "model" not in pattern.groupindex:
            raise ConfigError(f"HERMES_PLUGIN_MODEL_ALIASES: {rule!r} needs a named group (?P<model>...)")


class GuardState:
    """Everything one app's guard holds: catalog service, versions, audit, locks, WebSocket hub."""

    def __init__(self, guard: ModelGuard, app: Flask) -> None:
        from .catalog import CatalogService  # pulls in requests-cache: only once an app is initialised
        from .http import instance_cache_dir
        from .ws import Hub

        config = app.config
        self.guard = guard
        self.config = config
        self.app_ref = weakref.ref(app)
        self.pm = make_plugin_manager()
        providers = dict(load_providers(config["HERMES_PLUGIN_CONFIG"]))
        providers.update(config["HERMES_PLUGIN_PROVIDERS"] or {})
        state, cache = state_settings(config)
        if cache == "sqlite" or state == "sqlite":
            os.makedirs(app.instance_path, exist_ok=True)
        # The state file sits beside the catalog cache, in the instance folder's private (0700) subfolder.
        self.store = open_store(state, instance_cache_dir(app.instance_path),
                                audit_per_session=config["HERMES_PLUGIN_AUDIT_SIZE"],
                                audit_max_entries=config["HERMES_PLUGIN_AUDIT_MAX_ENTRIES"])
        _warn_scope(state)
        self.catalog = CatalogService(
            self.pm, providers_config=providers, cache=cache, cache_dir=instance_cache_dir(app.instance_path),
            expire_after=config["HERMES_PLUGIN_CACHE_EXPIRE"], total_timeout=config["HERMES_PLUGIN_FETCH_TIMEOUT"],
            max_observed=config["HERMES_PLUGIN_MAX_OBSERVED"], refresh_interval=config["HERMES_PLUGIN_REFRESH_INTERVAL"],
            fleet=self.store,
        )
        self.versions = Versions(self.store)
        self.audit = AuditLog(self.store)
        self.hub = Hub(config["HERMES_PLUGIN_WS_QUEUE"], fleet=self.store)
        self.endpoints = observe.endpoints(config["HERMES_PLUGIN_LIVE_URLS"], config["HERMES_PLUGIN_STATIC_URLS"])
        self.page_session_names: frozenset[str] | None = None  # inject.page_session
        self.uninjected_routes: set[str] = set()  # routes already warned about (inject.warn_uninjected)
        self.guarded_endpoints: set[str] = set()  # ModelGuard.guard_endpoint views wrapped in this app
        self.missing_endpoints: set[str] = set()  # guard_endpoint names not registered when requests came
        # A last source of the host's default model (the reverse proxy reads its upstream's setting).
        self.default_model_reader: Callable[[], str | None] | None = None
        self.browser_config_json: dict[str, str] = {}  # per script root, computed on the first page
        self._browser_writes: list[dict[str, str]] = []  # write routes no view declares (the reverse proxy's)
        self.replacements = Replacements(check_table(config["HERMES_PLUGIN_MODEL_REPLACEMENTS"]), self.pm)
        # Last known price of every model seen: a retired model's price outlives its catalog entry.
        self.prices: dict[str, Price] = {}
        self.catalog.subscribe(self._catalog_changed)
        self.changes = CatalogChanges(self.catalog)  # the status page's "changed since the last refresh"
        self.impact = Impact(self)  # after each refresh: sessions and defaults on a model now gone

    def add_browser_writes(self, routes: Iterable[dict[str, str]]) -> None:
        """Declare write routes that no guarded view serves (``{"method", "url", "session", "model"}``), so the
        browser guard also holds and marks them; the reverse proxy declares its upstream's routes this way."""
        self._browser_writes.extend(dict(route) for route in routes)

    def browser_writes(self) -> list[dict[str, str]]:
        """The write routes declared with ``add_browser_writes``."""
        return [dict(route) for route in self._browser_writes]

    def _catalog_changed(self, catalog: Any) -> None:
        # Local only: every worker settles its own copy (an invalidation makes the others re-read) and tells its tabs.
        self.remember_prices(catalog)
        self.hub.publish({"type": "catalog", "provider": catalog.id, "state": catalog.state}, fleet=False)

    def remember_prices(self, catalog: Any) -> None:
        """Keep the prices a catalog carries, here and in the shared store, so they outlive the models."""
        seen = {model.id: model.price for model in catalog.models if model.price is not None}
        if not seen or all(self.prices.get(mid) == price for mid, price in seen.items()):
            return
        self.prices.update(seen)
        try:
            record = self.store.get(f"prices:{catalog.id}") or {}
            record.update({mid: [price.input, price.output] for mid, price in seen.items()})
            self.store.put(f"prices:{catalog.id}", record)
        except StateUnavailable as exc:
            log.warning("hermes-plugin: could not share the prices of %s: %s", catalog.id, exc)

    def price_of(self, model: str, remembered: bool = True) -> Price | None:
        """The model's price from a catalog now, else (``remembered``) the last one seen by this or another
        worker: what a retired model cost."""
        providers = self.catalog.provider_ids()
        for provider in providers:
            for entry in self.catalog.snapshot(provider).models:
                if entry.id == model and entry.price is not None:
                    return entry.price  # type: ignore[no-any-return]
        if not remembered:
            return None
        if model in self.prices:
            return self.prices[model]
        try:
            for provider in providers:  # one small read per provider, never a scan of the shared store
                value = (self.store.get(f"prices:{provider}") or {}).get(model)
                if isinstance(value, list) and len(value) == 2:
                    return Price(float(value[0]), float(value[1]))
        except (StateUnavailable, TypeError, ValueError):
            return None
        return None

    def absent_policy(self, model: str) -> str:
        """What an automatic write does to ``model`` while no catalogue lists it: ``fallback`` or ``keep``."""
        return absent_policy(model, self.config["HERMES_PLUGIN_ABSENT_MODEL"],
                             self.config["HERMES_PLUGIN_ABSENT_MODEL_PROVIDERS"])

    def suggestion(self, model: str) -> str | None:
        """The retirement map's replacement to offer for a confirmed-absent ``model``."""
        return self.replacements.suggest(model, lambda candidate: str(self.catalog.explain(candidate)[0]))

    def write_model(self, session: str, model: str) -> None:
        """Store ``model`` for ``session`` through the host's setter (``@guard.session_model_setter``)."""
        setter = self.guard._setter
        if setter is None:
            raise WriteRefused(501, "not_supported", "this host registered no session_model_setter: the plugin "
                               "cannot change a session's model itself")
        setter(session, model)

    def session_lock(self, session: str) -> Any:
        """The per-session lock every worker honours: version check, the view's write and the re-read in one step."""
        return self.store.lock(f"session:{session}", timeout=float(self.config["HERMES_PLUGIN_LOCK_TIMEOUT"]))

    def session_version(self, session: str) -> tuple[str | None, int]:
        """The stored model and its version, read as one step (never a new version paired with an old model)."""
        models = self.read_models(session)
        version = self.versions.peek(session, model_key(models), self.host_version(session))
        if version is None:
            with self.session_lock(session):  # the record lags the model: bring it up to date under the lock
                models = self.read_models(session)
                version = self.versions.current(session, model_key(models), self.host_version(session))
        return (models[0] if models else None), version

    def host_version(self, session: str) -> str | None:
        """The host's own version of a session (``@guard.session_version``), as text; None when it has none."""
        reader = self.guard._version_reader
        value = reader(session) if reader is not None else None
        return None if value is None else str(value)

    def read_model(self, session: str) -> str | None:
        """The host's stored model for a session (the first of a multi-model session's list), or None."""
        models = self.read_models(session)
        return models[0] if models else None

    def read_models(self, session: str) -> Models | None:
        """The host's stored model list: a string is one model; anything but non-empty strings counts as none."""
        reader = self.guard._reader
        value = reader(session) if reader is not None else None
        if isinstance(value, str):
            return (value,) if value else None
        if isinstance(value, (list, tuple)) and value and all(isinstance(m, str) and m for m in value):
            return tuple(value)
        return None

    def unservable(self, models: Models) -> str | None:
        """Why the host could not serve ``models`` now (``@guard.servable``), or None when it can or nobody asks."""
        for check in self.guard._servable:
            problem = check(models)
            if problem:
                return str(problem)
        return None

    def availability(self, model: str) -> str:
        """Availability of a stored model, as the write guard judges it."""
        return self.explain(model)[0]

    def explain(self, model: str) -> tuple[str, str | None, str | None]:
        """``(availability, provider, reason)`` of a stored model; providers never fetched are fetched before
        calling it ``unknown``. The write guard and the session API both ask this, so they always agree."""
        verdict = self.catalog.explain(model)
        if verdict[0] != "unknown":
            return verdict
        never_fetched = [
            provider for provider in self.catalog.provider_ids()
            if (snap := self.catalog.snapshot(provider)).fetched_at is None and snap.error is None
        ]
        if not never_fetched:
            return verdict
        # Only the never-fetched ones: refetching failed providers on every write would stall writes.
        for provider in never_fetched:
            self.catalog.catalog(provider)
        return self.catalog.explain(model)  # type: ignore[no-any-return]

    def default_model(self) -> str | None:
        """The host's default model for new sessions: the ``hermes_plugin_default_model`` hook, else
        ``HERMES_PLUGIN_DEFAULT_MODEL``, else the reader the reverse proxy sets; None when none says."""
        sources: list[Callable[[], Any]] = [
            lambda: self.pm.hook.hermes_plugin_default_model(request=request),
            lambda: self.config["HERMES_PLUGIN_DEFAULT_MODEL"],
        ]
        if self.default_model_reader is not None:
            sources.append(self.default_model_reader)
        for source in sources:
            try:
                model = source()
                if model is not None:
                    return validate_write_id(model)
            except InvalidModelId as exc:
                log.warning("hermes-plugin: ignoring an invalid default model: %s", exc)
            except Exception:  # a broken source must not break the host's create
                log.exception("hermes-plugin: reading the default model failed")
        return None

    def model_aliases(self, model: str, provider: str | None) -> list[str]:
        """Other spellings of a stored model the page may show: the ``resolve_model_alias`` hook's answer."""
        try:
            alias = self.pm.hook.resolve_model_alias(model_id=model, provider=provider)
        except Exception:  # a broken alias plugin must not break the session API
            log.exception("hermes-plugin: resolve_model_alias failed for %r", model)
            return []
        return [alias] if isinstance(alias, str) and alias and alias != model else []

    def notify(self, decision: Decision) -> None:
        """``model_write_decided`` to every observer; one that raises is logged and skipped."""
        for impl in self.pm.hook.model_write_decided.get_hookimpls():
            try:
                impl.function(**({"decision": decision} if "decision" in impl.argnames else {}))
            except Exception:
                log.exception("hermes-plugin: model_write_decided observer %s failed", impl.plugin_name)

    def authorized(self, action: str, session_id: str | None) -> bool:
        if self.pm.hook.authorize_request(request=request, action=action, session_id=session_id) is False:
            return False
        return all(check(action, session_id) for check in self.guard._authorizers)

    def host_refused(self) -> str | None:
        """Why this request's Host may not use the guard (DNS rebinding), or None; no list allows any."""
        return host_problem(request.host, self.config["HERMES_PLUGIN_ALLOWED_HOSTS"])

    def cross_origin(self) -> str | None:
        """Why this request counts as cross-origin, or None (same origin or an allowed one)."""
        origin = request.headers.get("Origin")
        if origin is not None:
            scheme = {"ws": "http", "wss": "https"}.get(request.scheme, request.scheme)  # a WebSocket's page origin
            if origin == f"{scheme}://{request.host}" or origin in self.config["HERMES_PLUGIN_ALLOWED_ORIGINS"]:
                return None
            return f"origin {origin[:100]!r} may not write here"
        # same-site is still another origin (a sibling subdomain): only same-origin and "none" (typed URL) pass.
        if request.headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
            return f"{request.headers['Sec-Fetch-Site'].lower()} request"
        return None

    def intent(self) -> str:
        header = request.headers.get("X-Hermes-Intent")
        if header is not None:
            intent = header.strip().lower()
            if intent not in INTENTS:
                raise WriteRefused(400, "bad_request", "X-Hermes-Intent must be 'user' or 'auto'")
            return intent
        policy = self.config["HERMES_PLUGIN_UNMARKED_INTENT"]
        if policy == "browser-auto":
            # A browser sends Sec-Fetch-Site; one without the guard script cannot tell a pick from a fallback.
            return "auto" if "Sec-Fetch-Site" in request.headers else "user"
        return str(policy)

    def after_request(self, response: Response) -> Response:
        observe.observe_response(self.catalog, self.endpoints, response)
        return inject.inject(self, response)


class ModelGuard:
    """Guard a Flask app's model writes: ``guard = ModelGuard(app)`` or ``ModelGuard()`` + ``init_app``."""

    def __init__(self, app: Flask | None = None) -> None:
        self._reader: Callable[[str], Any] | None = None
        self._version_reader: Callable[[str], Any] | None = None
        self._setter: Callable[[str, str], Any] | None = None
        self._authorizers: list[Callable[[str, str | None], bool]] = []
        self._servable: list[Callable[[Models], str | None]] = []
        self._session_ids: list[SessionIds] = []
        self._default_models: list[DefaultModels] = []
        self._apps: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._endpoints: dict[str, WriteSpec] = {}  # guard_endpoint(): endpoint -> where its write carries what
        self._endpoints_lock = threading.Lock()
        self._bp, self._sock = api.make_blueprint(self._authorized)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        for key, value in DEFAULTS.items():
            app.config.setdefault(key, copy.deepcopy(value))
        _check_config(app.config)
        app.extensions[EXTENSION] = GuardState(self, app)
        prefix = app.config["HERMES_PLUGIN_PREFIX"]
        app.register_blueprint(self._bp, url_prefix=prefix)
        self._sock.init_app(app)
        app.before_request(functools.partial(api.routing_error, prefix))
        app.before_request(functools.partial(self._guard_endpoints, app))
        app.after_request(app.extensions[EXTENSION].after_request)
        self._apps.add(app)
        self._guard_endpoints(app)

    # -- what the host registers -------------------------------------------------------------------

    def session_model(self, reader: Callable[[str], Any]) -> Callable[[str], Any]:
        """Register ``reader(session_id) -> stored model or None`` (a list of models for a multi-model session)."""
        self._reader = reader
        return reader

    def session_version(self, reader: Callable[[str], Any]) -> Callable[[str], Any]:
        """Optionally register ``reader(session_id) -> the host's own version of the session`` (a row version,
        ``updated_at``): the ETag then also moves when the host changes the session, not only its model."""
        self._version_reader = reader
        return reader

    def servable(self, check: Callable[[Models], str | None]) -> Callable[[Models], str | None]:
        """Register ``check(models) -> None or why not``: asked before a kept model is forwarded, so the guard
        answers 409 instead of sending the host a model it would refuse."""
        self._servable.append(check)
        return check

    def session_model_setter(self, setter: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
        """Register ``setter(session_id, model)`` that stores a session's model: the plugin's undo and the
        user's answers to its prompts write through it, under the session's lock, audited like any write."""
        self._setter = setter
        return setter

    def session_ids(self, source: SessionIds) -> SessionIds:
        """Register ``source() -> iterable of session ids`` (or ``(id, stored model)`` pairs) for the impact report."""
        self._session_ids.append(source)
        return source

    def default_models(self, source: DefaultModels) -> DefaultModels:
        """Register ``source() -> {name: model}``: the host's default models, for the impact report."""
        self._default_models.append(source)
        return source

    def authorize(self, check: Callable[[str, str | None], bool]) -> Callable[[str, str | None], bool]:
        """Register ``check(action, session_id) -> bool`` for the plugin's own routes (False -> 403)."""
        self._authorizers.append(check)
        return check

    def model_write(self, session: str = "session_id", model: str | Sequence[str] = "model") -> Callable[[F], F]:
        """Guard a view that writes a session's model: ``session``/``model`` name where the write carries them
        (``model`` may list every field that names it, ``[]`` marking lists: ``["model", "models[]"]``)."""
        spec = write_spec(session, model)
        return lambda view: guarded_view(spec, view)  # type: ignore[return-value]

    def guard_endpoint(self, endpoint: str, session: str = "session_id", model: str | Sequence[str] = "model") -> None:
        """Guard an existing view of an app you do not own, by its endpoint name (``"chats.update"``).

        The registered view function is wrapped where it is called: inside the host's own decorators
        (login checks run first) when they are ``functools.wraps`` decorators, else around the view with a
        warning. Works before or after the view is registered, before or after ``init_app``.
        """
        if not isinstance(endpoint, str) or not endpoint:
            raise ValueError("guard_endpoint needs the endpoint name of a view, e.g. 'chats.update'")
        spec = write_spec(session, model)
        with self._endpoints_lock:
            self._endpoints[endpoint] = spec
        for app in list(self._apps):
            self._guard_endpoints(app)

    def _guard_endpoints(self, app: Flask) -> None:
        """Wrap every ``guard_endpoint`` view registered by now (also runs before each request: cheap when done)."""
        state = app.extensions.get(EXTENSION)
        if state is None or len(state.guarded_endpoints) == len(self._endpoints):
            return
        with self._endpoints_lock:
            wrapped = False
            for endpoint, spec in self._endpoints.items():
                if endpoint in state.guarded_endpoints:
                    continue
                if endpoint not in app.view_functions:
                    if has_request_context() and endpoint not in state.missing_endpoints:
                        state.missing_endpoints.add(endpoint)  # serving requests, and still no such view: say so
                        log.warning("hermes-plugin: guard_endpoint(%r): the app has no such endpoint (yet); its "
                                    "writes are not guarded", endpoint)
                    continue
                app.view_functions[endpoint] = guard_registered_view(app.view_functions[endpoint], spec, endpoint)
                state.guarded_endpoints.add(endpoint)
                wrapped = True
            if wrapped:  # the pages' write routes and session names change; a still-missing view changes nothing
                state.browser_config_json.clear()
                state.page_session_names = None

    # -- the current app's services ----------------------------------------------------------------

    @property
    def catalog(self) -> Any:
        """The current app's ``CatalogService``."""
        return self._current().catalog

    @property
    def pm(self) -> Any:
        """The current app's pluggy plugin manager."""
        return self._current().pm

    def state(self, app: Flask | None = None) -> GuardState:
        """The per-app state (versions, audit, hub); mostly for tests and tools."""
        return _state(app) if app is not None else self._current()

    def _current(self) -> GuardState:
        if has_app_context() and EXTENSION in current_app.extensions:
            return _state(current_app)
        apps = list(self._apps)
        if len(apps) != 1:
            raise RuntimeError("ModelGuard is used by several apps (or none): use it inside an app context")
        return _state(apps[0])

    def _authorized(self, action: str, session_id: str | None) -> bool:
        return _state(current_app).authorized(action, session_id)


def write_spec(session: str, model: str | Sequence[str]) -> WriteSpec:
    """A checked ``WriteSpec``: the session names one value; the model one path or several (``[]`` for lists)."""
    jsonpath.parse(session)
    if "[]" in session:
        raise ValueError(f"model_write's session names one value, got {session!r}")
    spec = WriteSpec(session, model if isinstance(model, str) else tuple(model))
    spec.fields  # noqa: B018  # a malformed model path fails here, at import time, not on the first write
    return spec


def guarded_view(spec: WriteSpec, view: Callable[..., Any]) -> Callable[..., Any]:
    """``view`` as a guarded write (reads pass through untouched)."""
    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if request.method in SAFE_METHODS:
            return view(*args, **kwargs)
        return guard_write(spec, view, *args, **kwargs)

    guarded._hermes_write = spec  # type: ignore[attr-defined]  # found by inject.write_routes
    return guarded


def guard_registered_view(registered: Callable[..., Any], spec: WriteSpec, endpoint: str) -> Callable[..., Any]:
    """The registered view with the guard around the host's own function, under the host's decorators.

    A ``functools.wraps`` decorator keeps the function it calls in a closure cell and names it in
    ``__wrapped__``: following that chain finds the host's function, and its cell gets the guarded one,
    so the guard (which reads the session's stored model) runs only once the host's checks let the request in.
    """
    if getattr(registered, "_hermes_write", None) is not None:
        return registered  # already guarded
    outer = registered
    while (inner := getattr(outer, "__wrapped__", None)) is not None:
        cells = [cell for cell in getattr(outer, "__closure__", None) or () if _cell_holds(cell, inner)]
        if len(cells) != 1:
            break  # a decorator that keeps its function elsewhere: cannot reach inside it
        if getattr(inner, "__wrapped__", None) is None:
            cells[0].cell_contents = guarded_view(spec, inner)
            registered._hermes_write = spec  # type: ignore[attr-defined]  # found by inject.write_routes
            return registered
        outer = inner
    if outer is not registered or getattr(registered, "__wrapped__", None) is not None:
        log.warning("hermes-plugin: guard_endpoint(%r): cannot reach the view inside its decorators; the guard "
                    "runs around them, before the host's own checks", endpoint)
    return guarded_view(spec, registered)


def _cell_holds(cell: Any, value: Any) -> bool:
    try:
        return cell.cell_contents is value
    except ValueError:  # an empty cell
        return False


def host_problem(host: str, allowed: Any) -> str | None:
    """``Host`` against an allowed-hosts list (names, case-insensitive, port ignored; ``"*"`` any)."""
    if not allowed or "*" in allowed:
        return None
    if host.startswith("["):  # an IPv6 literal, maybe with a port: [::1]:8788
        name = host[1:host.find("]")] if "]" in host else host
    else:
        name = host.rsplit(":", 1)[0]
    if name.lower() in {str(entry).lower() for entry in allowed}:
        return None
    return f"host {host[:100]!r} is not in HERMES_PLUGIN_ALLOWED_HOSTS"


def _state(app: Any) -> GuardState:
    try:
        return app.extensions[EXTENSION]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError("this app was not initialised with ModelGuard (call guard.init_app(app))") from None


def guard_write(spec: WriteSpec, view: Callable[..., Any], *args: Any, **kwargs: Any) -> Response:
    """Run ``view`` as a guarded write of the current app (the decorator and the reverse proxy share this)."""
    try:
        return _guarded_write(_state(current_app), spec, view, args, kwargs)
    except WriteRefused as refused:
        return refused.response


def _parse_write(spec: WriteSpec) -> tuple[dict[str, Any], str | None, list[FieldValue]]:
    """The JSON body, session id and model fields of a write; WriteRefused before anything is touched."""
    if not request.is_json:
        raise WriteRefused(415, "unsupported_media_type", "a guarded write must send a JSON body (application/json)")
    try:
        body = jsontext.loads(request.get_data(cache=True))
    except ValueError as exc:
        raise WriteRefused(400, "bad_request", f"malformed JSON: {str(exc)[:200]}") from None
    if not isinstance(body, dict):
        raise WriteRefused(400, "bad_request", f"the body must be a JSON object, got {type(body).__name__}")
    view_args = request.view_args or {}
    try:
        if spec.session in view_args:  # a URL variable wins over a body field of the same name
            session: Any = str(view_args[spec.session])
        else:
            session = jsonpath.get(body, spec.session)
        found = spec.fields.read(body)
    except (jsonpath.PathError, FieldError) as exc:
        raise WriteRefused(400, "bad_request", str(exc)[:200]) from None
    session = None if session is jsonpath.MISSING else session
    if session is not None and spec.session_match and not (
            isinstance(session, str) and re.fullmatch(spec.session_match, session)):
        session = None  # e.g. a temporary chat the host never stores: judged like a write without a session
    if session is not None:
        problem = api.session_id_problem(session)
        if problem:
            raise WriteRefused(400, "bad_request", problem)
    return body, session, found


def _keep_in_request(body: dict[str, Any]) -> None:
    # The view may read get_json() or get_data(): both caches must show the kept model, not the proposal.
    request._cached_json = (body, body)  # type: ignore[attr-defined]
    request._cached_data = json.dumps(body).encode()  # type: ignore[attr-defined]


def model_key(models: Models | None) -> str | None:
    """What a session's version is tied to: its one model, or its whole list when it has several."""
    if not models:
        return None
    return models[0] if len(models) == 1 else json.dumps(list(models))


def _guarded_write(state: GuardState, spec: WriteSpec, view: Callable[..., Any],
                   args: tuple[Any, ...], kwargs: dict[str, Any]) -> Response:
    refused = state.host_refused()
    if refused:
        raise WriteRefused(403, "host_not_allowed", refused)
    refused = state.cross_origin()
    if refused:
        raise WriteRefused(403, "cross_origin", refused)
    body, session, found = _parse_write(spec)
    intent = state.intent()
    request._cached_json = (body, body)  # type: ignore[attr-defined]  # the view need not parse it again
    on_keep = state.config["HERMES_PLUGIN_ON_KEEP"]
    if session is None:  # a new session or a message without one: nothing is stored yet
        proposed = WriteFields.proposal(found, None)
        return _new_session_write(state, spec, view, args, kwargs, body, proposed, intent)
    try:
        with state.session_lock(session):
            return _locked_write(state, spec, view, args, kwargs, body, session, found, intent, on_keep)
    except StateUnavailable as exc:
        # Refuse rather than write without the lock: a write we cannot order could silently lose another.
        raise WriteRefused(503, "state_unavailable", f"the guard's shared state is unavailable, nothing was "
                           f"written: {exc}", headers={"Retry-After": "1"}) from None


def _new_session_write(state: GuardState, spec: WriteSpec, view: Callable[..., Any], args: tuple[Any, ...],
                       kwargs: dict[str, Any], body: dict[str, Any], proposals: Models | None,
                       intent: str) -> Response:
    """A write that names no session (a create): the host's new-session policy decides its model."""
    policy = state.config["HERMES_PLUGIN_NEW_SESSION_MODEL"]
    proposed = proposals[0] if proposals else None
    # Only a one-model write can take the default in every field; a multi-model create keeps its models.
    asks_default = policy == "default" and intent == "auto" and proposals is not None and len(proposals) == 1
    decision = decide_new_session(proposed, intent, state.default_model() if asks_default else None, policy)
    if decision.default_model is not None and not spec.fields.rewrite(body, (decision.default_model,)):
        decision = decide_new_session(proposed, intent, None, policy)  # the fields cannot all say it
    state.notify(decision)
    if decision.default_model is not None:
        _keep_in_request(body)
    response = make_response(view(*args, **kwargs))
    response.headers["X-Hermes-Decision"] = decision.outcome
    created = created_session(response, spec) if response.status_code < 400 else None
    if created is not None:
        _audit_created(state, decision, created)
    # What the browser guard needs to show the new session's model (header values must be ASCII).
    for name, value in (("X-Hermes-Model-Default", decision.default_model), ("X-Hermes-Session", created)):
        if value is not None and value.isascii():
            response.headers[name] = value
    return response


def created_session(response: Response, spec: WriteSpec) -> str | None:
    """The new session's id from a create's JSON answer: at the write's session path, or one level down
    (``{"session": {"session_id": ...}}``); None when the answer does not say."""
    if response.is_streamed or response.direct_passthrough or not response.is_json:
        return None
    try:
        answer = jsontext.loads(response.get_data())
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    places = [answer, *(value for value in answer.values() if isinstance(value, dict))]
    for place in places:
        try:
            found = jsonpath.get(place, spec.session)
        except jsonpath.PathError:
            continue
        if isinstance(found, (str, int)) and not isinstance(found, bool) and api.session_id_problem(str(found)) is None:
            return str(found)
    return None


def _audit_created(state: GuardState, decision: Decision, session: str) -> None:
    """The new session's first model-log entry: the model its create carried, and why (no extra read of it)."""
    try:
        state.audit.record(dataclasses.replace(decision, session=session), decision.default_model or decision.proposed)
    except StateUnavailable as exc:
        log.warning("hermes-plugin: could not log the creation of session %r: %s", session[:100], exc)


def _locked_write(state: GuardState, spec: WriteSpec, view: Callable[..., Any], args: tuple[Any, ...],
                  kwargs: dict[str, Any], body: dict[str, Any], session: str, found: list[FieldValue],
                  intent: str, on_keep: str) -> Response:
    """A guarded write of ``session``; the caller holds the session's lock."""
    stored = state.read_models(session)
    version = state.versions.current(session, model_key(stored), state.host_version(session))
    if_match = request.headers.get("If-Match")
    if if_match is not None and not state.versions.matches(if_match, version):
        response = api.json_error(412, "stale_version", "the session's model changed since you read it",
                                  version=version)
        response.set_etag(str(version))
        return response
    proposed = WriteFields.proposal(found, stored)

    def decide_entry(old: str | None, new: str | None) -> Decision:
        availability = state.availability(old) if old and needs_availability(old, new, intent) else None
        replacement = price_ratio = None
        if availability == "absent":  # only an automatic switch away from a gone model looks at the map and prices
            assert old is not None and new is not None
            replacement = state.suggestion(old)
            price_ratio = ratio(state.price_of(old), state.price_of(new))
        return decide(old, new, intent, availability, on_keep, session, replacement=replacement,
                      price_ratio=price_ratio, max_price_ratio=float(state.config["HERMES_PLUGIN_MAX_PRICE_RATIO"]),
                      absent=state.absent_policy(old) if old else "fallback")

    # A list of another length is judged whole: the policy of its first stored model answers for it.
    absent = state.absent_policy(stored[0]) if stored else "fallback"
    decision, kept = decide_models(stored, proposed, intent, state.availability, on_keep, session, decide_entry,
                                   absent)
    problem = None
    if kept is not None:
        # Keep only what the host can serve, and only when every field of the body can say so.
        problem = state.unservable(kept)
        if problem is not None:
            decision = dataclasses.replace(decision, outcome="reject", reason="model_unservable")
        elif not spec.fields.rewrite(body, kept):
            decision = dataclasses.replace(decision, outcome="reject", reason="fields_differ")
            problem = "the write names models in a list the kept models cannot fill entry by entry"
        else:
            _keep_in_request(body)
    state.notify(decision)
    if decision.outcome == "reject":
        state.audit.record(decision, decision.stored)
        response = refusal(decision, problem)
    else:
        response = make_response(view(*args, **kwargs))
        if response.status_code < 400:
            version = _record(state, decision, stored, version)
    if decision.outcome in ("keep", "reject"):
        response.headers["X-Hermes-Model-Kept"] = decision.reason
    notice = NOTICES.get(decision.reason)
    if notice and (notice == "ask" or response.status_code < 400):  # the page tells the user (the guard's notices script)
        response.headers["X-Hermes-Notice"] = notice
    response.headers["X-Hermes-Decision"] = decision.outcome
    response.set_etag(str(version))
    return response


def refusal(decision: Decision, problem: str | None = None) -> Response:
    """The 409 for a refused automatic write: a stable error code and why, in words (``problem`` when known)."""
    stored, proposed = decision.stored, decision.proposed
    extra: dict[str, Any] = {"reason": decision.reason, "stored_model": stored, "proposed_model": proposed}
    if decision.replacement is not None:
        extra["replacement"] = decision.replacement
    if decision.reason == "price_increase":
        shown = "more" if decision.price_ratio == float("inf") else f"{decision.price_ratio:.2f} times as much"
        return api.json_error(409, "price_increase", f"kept the stored model {stored!r}: {proposed!r} costs {shown} "
                              "and an automatic switch may not raise the price; the user must choose it",
                              price_ratio=None if decision.price_ratio == float("inf") else decision.price_ratio,
                              **extra)
    return api.json_error(409, "model_write_rejected", f"kept the stored model {stored!r}: {problem or decision.reason}",
                          **extra)


def _record(state: GuardState, decision: Decision, stored: str | Models | None, version: int) -> int:
    """After a successful view: version, audit and WebSocket event if the stored model changed; the new version.

    All three are stored in one step (one transaction, one Redis round trip).
    """
    session = decision.session
    assert session is not None
    if isinstance(stored, str):  # the plugin's own set API passes the one stored model
        stored = (stored,)
    after_models = state.read_models(session)
    after = (after_models[0] if len(after_models) == 1 else ", ".join(after_models)) if after_models else None
    event = None
    try:
        version, record = state.versions.next(session, model_key(after_models), state.host_version(session))
        entry = None
        if after_models != stored:
            entry = state.audit.entry(decision, after)
            event = {"type": "model", "session": session, "model": after_models[0] if after_models else None,
                     "version": version}
        elif decision.outcome == "keep":
            entry = state.audit.entry(decision, decision.stored)
        shared = state.hub.fleet is not None
        state.store.record(session, record, entry, fleet_message(event) if event and shared else None)
        if event and not shared:
            state.hub.publish(event, fleet=False)
    except StateUnavailable as exc:
        # The host has written: say so. The version catches up with the stored model on the next read.
        log.warning("hermes-plugin: recorded the write of session %r only partly: %s", session[:100], exc)
        if event is not None:
            state.hub.publish(event, fleet=False)  # this worker's tabs still hear it
    return version
