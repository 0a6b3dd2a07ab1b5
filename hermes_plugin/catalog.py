"""The catalog service: static + live catalogs per provider, single-flight fetches, three-valued availability."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import pluggy
import requests

from .errors import (
    HermesPluginError,
    InvalidModelId,
    PluginRegistrationError,
    ProviderResponseError,
    UnknownProviderError,
)
from .http import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, DEFAULT_TOTAL_TIMEOUT, ProviderHTTP, make_cached_session
from .models import Model, to_model, to_models
from .plugins import PROVIDER_ID, ProviderSpec, collect_registrations, make_plugin_manager
from .prices import Price
from .redact import contains_secret, redact, source_secrets
from .state import LockTimeout, StateStore, StateUnavailable

log = logging.getLogger(__name__)

STATES = ("fresh", "stale", "pending", "failed")
MAX_ERROR_LENGTH = 500
RETRY_AFTER_FAILURE = 5.0  # seconds before a failed/stale provider is asked again (unless refresh)
WAIT_MARGIN = 1.0  # callers wait total_timeout plus this for a fetch to settle, then get "pending"
MAX_WORKERS = 16
REFRESH_INTERVAL = 10.0  # seconds: at most one forced refresh per provider (anyone can ask for one)
MAX_OBSERVED = 64  # providers learnt from the host's responses; beyond this, new ones are not recorded
EMPTY_LIVE = ("the live catalog answered an empty list, which is not taken as proof that no model exists "
              "(set empty_means_none on the provider if it can really have none)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

Subscriber = Callable[["ProviderCatalog"], None]


@dataclass(frozen=True)
class CatalogModel:
    id: str
    label: str | None
    source: str  # "static" | "live"
    price: Price | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "label": self.label or self.id, "source": self.source}
        if self.price is not None:
            out["price"] = self.price.to_json()
        return out


@dataclass(frozen=True)
class ProviderCatalog:
    """One provider's merged catalog at one moment (immutable; take a new snapshot to see changes)."""

    id: str
    label: str
    state: str
    fetched_at: float | None
    error: str | None
    models: list[CatalogModel] = field(default_factory=list)

    @property
    def ids(self) -> set[str]:
        return {model.id for model in self.models}

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.label, "state": self.state, "fetched_at": self.fetched_at,
                "error": self.error, "models": [model.to_json() for model in self.models]}


@dataclass
class _Provider:
    """Mutable per-provider state; every field is read and written under ``lock``."""

    spec: ProviderSpec
    observed_only: bool = False  # created by observe(): only a live observation can confirm absence
    lock: threading.Lock = field(default_factory=threading.Lock)
    observed_static: list[Model] = field(default_factory=list)
    live: list[Model] | None = None  # last known live models
    state: str = "new"  # "new" (never fetched) | fresh | stale | failed; "pending" is future is not None
    confirmed: bool = False  # the live list in hand came from a successful, non-stale fetch
    fetched_at: float | None = None
    error: str | None = None
    future: Future[ProviderCatalog] | None = None
    fresh_until: float = 0.0  # wall clock: no refetch before this (the cache lifetime)
    retry_at: float = 0.0  # monotonic: no new attempt before this after a failure
    next_refresh: float = 0.0  # monotonic: no forced refresh before this
    generation: int = 0  # the fleet's count of upstream fetches this copy reflects (a higher count: re-read)
    # Last price the provider gave each model: a host's own list (observed) rarely repeats the prices.
    prices: dict[str, Price] = field(default_factory=dict)
    # The last list the host served for it, as given and as validated: the same list is not validated again
    # (a tuple read and replaced whole, outside the lock: at worst a list is validated once more).
    last_observed: tuple[tuple[Any, ...], tuple[Model, ...]] | None = None


@dataclass
class _Result:
    models: list[Model] | None
    stale: bool = False
    fetched_at: float | None = None
    error: str | None = None
    network: bool = False  # an upstream answered (not only the cache): other workers should re-read
    generation: int = 0  # the fleet's count of upstream fetches once this one ended


class CatalogService:
    """Providers' catalogs for one app: see docs/internals.md ("Catalog service")."""

    def __init__(self, pm: pluggy.PluginManager | None = None, providers_config: Mapping[str, Any] | None = None, *,
                 specs: Mapping[str, ProviderSpec] | Iterable[ProviderSpec] | None = None,
                 cache: str = "sqlite", cache_dir: str | os.PathLike[str] | None = None, expire_after: float = 300,
                 timeout: tuple[float, float] | float = DEFAULT_TIMEOUT, total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
                 max_bytes: int = DEFAULT_MAX_BYTES, session: Any = None,
                 retry_after_failure: float = RETRY_AFTER_FAILURE, max_observed: int = MAX_OBSERVED,
                 refresh_interval: float = REFRESH_INTERVAL, fleet: StateStore | None = None) -> None:
        self.plugin_errors: list[PluginRegistrationError] = []
        if specs is None:
            self.pm: pluggy.PluginManager | None = pm or make_plugin_manager()
            found, self.plugin_errors = collect_registrations(self.pm, providers_config)
            spec_list = list(found.values())
        else:
            self.pm = pm
            spec_list = list(specs.values()) if isinstance(specs, Mapping) else list(specs)
        self.expire_after = float(expire_after)
        self.timeout = timeout
        self.total_timeout = float(total_timeout)
        self.retry_after_failure = float(retry_after_failure)
        self.max_observed = int(max_observed)
        self.refresh_interval = float(refresh_interval)
        self._observed_full_logged = False
        self.session = session if session is not None else make_cached_session(
            cache, cache_dir, expire_after, max_bytes=max_bytes, total_timeout=total_timeout)
        self._lock = threading.Lock()
        self._providers: dict[str, _Provider] = {spec.id: _Provider(spec) for spec in spec_list}
        self._subscribers: list[Subscriber] = []
        self._executor = ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="hermes-catalog")
        self._closed = False
        self._running = 0  # fetches in flight: they use the cache's connection, which is closed after the last
        # Shared with the other workers (and hosts): fetch locks, observed catalogs, invalidations.
        self.fleet = fleet if fleet is not None and fleet.shared else None
        if self.fleet is not None:
            self.fleet.listen(self._from_fleet)
            self._load_observed()

    # -- reading ---------------------------------------------------------------------------------

    def provider_ids(self) -> list[str]:
        with self._lock:
            return list(self._providers)

    def snapshot(self, provider: str) -> ProviderCatalog:
        """The provider's catalog as known now; never does I/O."""
        prov = self._get(provider)
        with prov.lock:
            return _snapshot(prov)

    def catalog(self, provider: str, refresh: bool = False) -> ProviderCatalog:
        """Fetch if needed (one fetch per provider however many callers) and return the result.

        Never raises for provider trouble: errors become the ``failed``/``stale`` state. A caller waits at
        most ``total_timeout`` (plus a margin) and otherwise gets the ``pending`` snapshot.
        """
        prov = self._get(provider)
        self._catch_up(prov)
        future = self._start(prov, refresh and self._may_refresh(prov))
        self._wait(prov, future, time.monotonic() + self.total_timeout + WAIT_MARGIN)
        return self.snapshot(provider)

    def catalogs(self, refresh: bool = False) -> list[ProviderCatalog]:
        """Every provider's catalog, fetched concurrently."""
        ids = self.provider_ids()
        provs = [self._get(provider_id) for provider_id in ids]
        for prov in provs:
            self._catch_up(prov)
        futures = [self._start(prov, refresh and self._may_refresh(prov)) for prov in provs]
        deadline = time.monotonic() + self.total_timeout + WAIT_MARGIN
        for prov, future in zip(provs, futures, strict=True):
            self._wait(prov, future, deadline)
        return [self.snapshot(provider_id) for provider_id in ids]

    @staticmethod
    def _wait(prov: _Provider, future: Future[ProviderCatalog] | None, deadline: float) -> None:
        """Wait until ``prov`` has no fetch in flight, or the deadline. A fetch that began while this one ran
        (another worker's refresh, announced: this copy re-reads the shared cache) is waited for too, so
        the caller gets the settled list, not "pending"."""
        while future is not None:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                return
            with prov.lock:
                future = prov.future

    def availability(self, model_id: str, provider: str | None = None) -> str:
        return self.explain(model_id, provider)[0]

    def explain(self, model_id: str, provider: str | None = None) -> tuple[str, str | None, str | None]:
        """``(availability, provider, reason)``: only a confirmed live catalog (or a static-only provider) says absent."""
        model_id = self._resolve_alias(model_id, provider)
        if provider is not None:
            with self._lock:
                prov = self._providers.get(provider)
            if prov is None:
                return "unknown", provider, f"provider {provider} is not registered"
            return _judge(prov, model_id)
        with self._lock:
            provs = list(self._providers.values())
        if not provs:
            return "unknown", None, "no providers are registered"
        verdicts = [_judge(prov, model_id) for prov in provs]
        for verdict in verdicts:
            if verdict[0] == "present":
                return verdict
        for verdict in verdicts:
            if verdict[0] == "unknown":
                return "unknown", verdict[1], verdict[2]
        return "absent", None, f"{model_id} is not listed by any provider ({', '.join(p.spec.id for p in provs)})"

    # -- writing ---------------------------------------------------------------------------------

    def observe(self, provider: str, models: Any, source: str = "live", ok: bool = True,
                error: str | None = None, *, share: bool = True, empty_means_none: bool = False) -> ProviderCatalog:
        """Record a catalog the host's own endpoint served (or failed to serve) for ``provider``.

        An empty live list counts as a failed fetch unless ``empty_means_none`` (here or in the provider's
        config) says the provider really can have no models.
        A change is shared with the other workers (``share=False`` when applying one of theirs).
        """
        if not isinstance(provider, str) or not PROVIDER_ID.match(provider):
            raise ValueError(f"invalid provider id {provider!r}")
        if source not in ("live", "static"):
            raise ValueError(f"source must be 'live' or 'static', got {source!r}")
        with self._lock:
            known = self._providers.get(provider)
        parsed = _observed_models(known, list(models or ())) if ok else []
        if ok and source == "live" and not parsed and not empty_means_none:
            if known is None or not known.spec.empty_means_none:
                ok, error = False, EMPTY_LIVE
        failure = None if ok else _clip(redact(str(error or "the host's catalog request failed"), self.secrets()))
        with self._lock:
            prov = self._providers.get(provider)
            if prov is None:
                new = _Provider(ProviderSpec(provider, provider, plugin="observed"), observed_only=True)
                # Anyone can make the host answer for a made-up provider: only a successful answer may add
                # one, and only up to max_observed, so outsiders cannot bury the real ones in "unknown".
                observed = sum(1 for known in self._providers.values() if known.observed_only)
                if not ok or observed >= self.max_observed:
                    if ok and not self._observed_full_logged:
                        self._observed_full_logged = True
                        log.warning("hermes-plugin: %d providers observed already; not recording more "
                                    "(HERMES_PLUGIN_MAX_OBSERVED)", observed)
                    if not ok:  # what the caller saw, though nothing is recorded
                        new.state, new.error = "failed", failure
                    return _snapshot(new)
                prov = self._providers[provider] = new
        with prov.lock:
            before = _signature(prov)
            if source == "static":
                if ok:
                    prov.observed_static = parsed
            elif ok:  # a non-empty list, or an empty one the config says is real
                _remember_prices(prov, parsed)
                prov.live, prov.state, prov.confirmed = parsed, "fresh", True
                prov.fetched_at, prov.error = time.time(), None
                prov.fresh_until = prov.fetched_at + self._expire_after(prov)
            elif not ok:
                prov.state = "stale" if prov.live is not None else "failed"
                prov.confirmed = False
                prov.error = failure
            after = _snapshot(prov)
        if (after.state, after.ids, after.error) != before:
            if share and self.fleet is not None:
                self._share_observation(provider, [m.id for m in parsed], source, ok, failure)  # already redacted
            self._notify(after)
        return after

    def invalidate(self, provider: str) -> None:
        """Forget that ``provider``'s catalog is fresh and re-read it (from the shared cache when another worker
        just fetched it): how one worker's refresh reaches the others at once."""
        with self._lock:
            prov = self._providers.get(provider)
        if prov is None:
            return
        with prov.lock:
            prov.fresh_until = 0.0
            prov.retry_at = 0.0
        self._start(prov, refresh=False)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(ProviderCatalog)`` when a provider's fetch settles or its models change; returns an unsubscribe."""
        with self._lock:
            self._subscribers.append(callback)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def secrets(self) -> list[str]:
        """Every credential the configured sources may send (read now: keys live in the environment)."""
        with self._lock:
            sources = [prov.spec.live for prov in self._providers.values() if prov.spec.live is not None]
        return [secret for source in sources for secret in source_secrets(source)]

    def close(self) -> None:
        """Stop fetching. The cache is closed now, or by the last fetch still running when that one ends:
        closing its SQLite connection under a read in another thread can crash the process."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = self._running == 0
        self._executor.shutdown(wait=False, cancel_futures=True)
        if idle:
            self.session.close()

    # -- internals -------------------------------------------------------------------------------

    def _get(self, provider: str) -> _Provider:
        with self._lock:
            prov = self._providers.get(provider)
        if prov is None:
            raise UnknownProviderError(provider)
        return prov

    def _catch_up(self, prov: _Provider) -> None:
        """Another worker fetched since this copy was read: read again (from the shared cache) before
        answering, so no worker serves a list older than one the fleet already has, whether or not its
        invalidation message has arrived yet."""
        if self.fleet is None or prov.spec.live is None:
            return
        try:
            fleet_count = (self.fleet.get(f"fetched:{prov.spec.id}") or {}).get("n", 0)
        except StateUnavailable:
            return  # the shared state is gone: the copy in hand is the best there is
        with prov.lock:
            if isinstance(fleet_count, int) and fleet_count > prov.generation:
                prov.fresh_until = 0.0  # not retry_at: a copy that failed to catch up keeps its retry pause

    def _may_refresh(self, prov: _Provider) -> bool:
        """A forced refresh at most every ``refresh_interval`` seconds per provider; others read as usual."""
        now = time.monotonic()
        with prov.lock:
            if now < prov.next_refresh:
                return False
            prov.next_refresh = now + self.refresh_interval
            return True

    def _expire_after(self, prov: _Provider) -> float:
        return prov.spec.expire_after if prov.spec.expire_after is not None else self.expire_after

    def _resolve_alias(self, model_id: str, provider: str | None) -> str:
        if self.pm is None:
            return model_id
        try:
            alias = self.pm.hook.resolve_model_alias(model_id=model_id, provider=provider)
        except Exception:  # a broken alias plugin must not break availability
            log.exception("hermes-plugin: resolve_model_alias failed for %r", model_id)
            return model_id
        return alias if isinstance(alias, str) and alias else model_id

    def _start(self, prov: _Provider, refresh: bool) -> Future[ProviderCatalog] | None:
        """The in-flight fetch to wait for (joining one already running), or None when none is needed."""
        with prov.lock:
            if prov.future is not None:
                return prov.future
            if prov.spec.live is None or self._closed:
                return None
            if not refresh:
                if prov.state == "fresh" and time.time() < prov.fresh_until:
                    return None
                if prov.state in ("stale", "failed") and time.monotonic() < prov.retry_at:
                    return None
            future: Future[ProviderCatalog] = Future()
            prov.future = future
        try:
            self._executor.submit(self._run, prov, refresh, future)
        except RuntimeError:  # closed meanwhile
            self._settle_unfetched(prov, future)
        return future

    @staticmethod
    def _settle_unfetched(prov: _Provider, future: Future[ProviderCatalog]) -> None:
        """A fetch that will not run (the service closed) settles at once with what is known."""
        with prov.lock:
            prov.future = None
            snap = _snapshot(prov)
        future.set_result(snap)

    def _run(self, prov: _Provider, refresh: bool, future: Future[ProviderCatalog]) -> None:
        with self._lock:
            closed = self._closed
            self._running += not closed
        if closed:  # closed after this fetch was queued
            self._settle_unfetched(prov, future)
            return
        try:
            self._settle(prov, refresh, future)
        finally:
            with self._lock:
                self._running -= 1
                last = self._closed and self._running == 0
            if last:
                self.session.close()

    def _settle(self, prov: _Provider, refresh: bool, future: Future[ProviderCatalog]) -> None:
        try:
            with prov.lock:
                have_live = prov.live is not None
            result = self._fetch_once(prov.spec, refresh, self._expire_after(prov), have_live)
        except BaseException as exc:  # _fetch catches everything it can; this keeps the future settling
            result = _Result(None, error=_error_text(exc, self.secrets()))
        with prov.lock:
            if result.models is not None:
                prov.generation = max(prov.generation, result.generation)
                prov.live = result.models
                _remember_prices(prov, result.models)
                prov.state = "stale" if result.stale else "fresh"
                prov.confirmed = not result.stale
                prov.fetched_at = result.fetched_at
                prov.error = result.error
                prov.fresh_until = (result.fetched_at or time.time()) + self._expire_after(prov)
            else:
                prov.state = "stale" if prov.live is not None else "failed"
                prov.confirmed = False
                prov.error = result.error
            if prov.state != "fresh":
                prov.retry_at = time.monotonic() + min(self.retry_after_failure, self._expire_after(prov))
            prov.future = None
            snap = _snapshot(prov)
        future.set_result(snap)
        if result.network:
            self._publish({"type": "invalidate", "provider": prov.spec.id})
        self._notify(snap)

    def _fetch_once(self, spec: ProviderSpec, refresh: bool, expire_after: float, have_live: bool) -> _Result:
        """One upstream fetch per fleet: the provider's fleet-wide lock is held around the fetch, so workers
        that missed the cache together wait and then read the winner's answer from the shared cache."""
        if self.fleet is None:
            return self._fetch(spec, refresh, expire_after, have_live)
        mark = f"fetched:{spec.id}"
        try:
            seen = (self.fleet.get(mark) or {}).get("n", 0)
            with self.fleet.lock(f"fetch:{spec.id}", timeout=self.total_timeout):
                done = (self.fleet.get(mark) or {}).get("n", 0)
                if refresh and done > seen:
                    refresh = False  # another worker refreshed while this one waited: its answer is in the cache
                result = self._fetch(spec, refresh, expire_after, have_live)
                result.generation = done
                if result.network:
                    with contextlib.suppress(StateUnavailable):  # waiting refreshes and other workers' reads
                        self.fleet.put(mark, {"n": done + 1, "at": time.time()})
                        result.generation = done + 1
                return result
        except LockTimeout:
            stale = self._cached_copy(spec, self.secrets())
            error = f"another worker's fetch of {spec.id} did not finish within {self.total_timeout:g} s"
            if stale is not None:
                return _Result(stale[0], stale=True, fetched_at=stale[1], error=error)
            return _Result(None, error=error)
        except StateUnavailable as exc:
            # The shared state is gone (and with Redis, the shared cache too): fetch alone; stale if that fails.
            log.warning("hermes-plugin: fetching %s without the fleet lock: %s", spec.id, exc)
            return self._fetch(spec, refresh, expire_after, have_live)

    def _publish(self, message: dict[str, Any]) -> None:
        if self.fleet is None:
            return
        try:
            self.fleet.publish(message)
        except StateUnavailable as exc:
            log.warning("hermes-plugin: could not tell other workers about %s: %s", message.get("provider"), exc)

    def _share_observation(self, provider: str, ids: list[str], source: str, ok: bool, error: str | None) -> None:
        record = {"provider": provider, "models": ids, "source": source, "ok": ok, "error": error}
        try:
            assert self.fleet is not None
            self.fleet.put(f"observed:{provider}:{source}", record)
        except StateUnavailable as exc:
            log.warning("hermes-plugin: could not share the observed catalog of %s: %s", provider, exc)
            return
        self._publish({"type": "observed", **record})

    def _load_observed(self) -> None:
        """Catalogs other workers learnt before this one started."""
        assert self.fleet is not None
        try:
            records = [record for _, record in self.fleet.items("observed:")]
        except StateUnavailable as exc:
            log.warning("hermes-plugin: could not load observed catalogs: %s", exc)
            return
        for record in records:
            self._apply_observation(record)

    def _apply_observation(self, record: dict[str, Any]) -> None:
        try:
            # The sending worker already judged an empty list: shared as a success, it was a real one.
            self.observe(record["provider"], record.get("models") or [], record.get("source", "live"),
                         ok=bool(record.get("ok", True)), error=record.get("error"), share=False,
                         empty_means_none=True)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("hermes-plugin: ignoring a malformed shared catalog observation: %s", exc)

    def _from_fleet(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "invalidate" and isinstance(message.get("provider"), str):
            self.invalidate(message["provider"])
        elif kind == "observed":
            self._apply_observation(message)
        elif kind == "resync":  # events may have been missed while the channel was down
            for provider in self.provider_ids():
                self.invalidate(provider)
            self._load_observed()

    def _fetch(self, spec: ProviderSpec, refresh: bool, expire_after: float, have_live: bool) -> _Result:
        secrets = self.secrets()
        http = ProviderHTTP(self.session, self.timeout, refresh, expire_after=expire_after,
                            total_timeout=self.total_timeout, secrets=secrets)
        try:
            models = _without_secrets(_validated(_call(spec.live, http)), secrets)
            if not models and not spec.empty_means_none:
                raise ProviderResponseError(EMPTY_LIVE)  # handled as a failed fetch: the last good copy stays
        except Exception as exc:
            http.rollback()  # keep the last good cached answer for the stale copy below and after restarts
            error = _error_text(exc, secrets)
            if not have_live and http.requests:
                stale = self._cached_copy(spec, secrets)
                if stale is not None:
                    return _Result(stale[0], stale=True, fetched_at=stale[1], error=error)
            return _Result(None, error=error)
        errors = "; ".join(http.errors) or None
        return _Result(models, stale=http.used_stale, fetched_at=http.fetched_at,
                       error=_clip(redact(errors, secrets)) if errors else None,
                       network=http.requests > 0 and not http.from_cache and not http.used_stale)

    def _cached_copy(self, spec: ProviderSpec, secrets: list[str]) -> tuple[list[Model], float] | None:
        """Re-run the source on cached answers of any age (e.g. the last good catalog before a restart)."""
        offline = ProviderHTTP(self.session, offline=True, secrets=secrets)
        try:
            return _without_secrets(_validated(_call(spec.live, offline)), secrets), offline.fetched_at
        except Exception:
            return None

    def _notify(self, snap: ProviderCatalog) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(snap)
            except Exception:  # a subscriber's bug must not break fetching or other subscribers
                log.exception("hermes-plugin: catalog subscriber failed")


def _call(source: Any, http: ProviderHTTP) -> Any:
    fetch = getattr(source, "fetch", None)
    return fetch(http) if callable(fetch) else source(http)


def _validated(items: Any) -> list[Model]:
    """Valid items kept exactly; invalid ones skipped; a non-list or an all-invalid list is an error."""
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
        raise ProviderResponseError(f"expected a list of models, got {type(items).__name__}")
    models: dict[str, Model] = {}
    rejected = 0
    for item in items:
        try:
            model = to_model(item)
        except InvalidModelId:
            rejected += 1
            continue
        models.setdefault(model.id, model)
    if rejected and not models:
        raise ProviderResponseError(f"none of the {rejected} models returned has a valid id")
    return list(models.values())


def _observed_models(prov: _Provider | None, items: list[Any]) -> list[Model]:
    """``to_models`` of a list the host served, skipping bad items; the list the provider was last served
    again (a page reloading an unchanged catalog) is taken as validated then."""
    given = tuple(items)
    last = prov.last_observed if prov is not None else None  # one tuple, read and replaced whole
    if last is not None and last[0] == given:
        return list(last[1])
    parsed = to_models(given, strict=False)
    if prov is not None:
        prov.last_observed = (given, tuple(parsed))
    return parsed


def _remember_prices(prov: _Provider, models: Iterable[Model]) -> None:
    prov.prices.update({model.id: model.price for model in models if model.price is not None})


def _snapshot(prov: _Provider) -> ProviderCatalog:
    """Build the immutable view; the caller holds ``prov.lock``."""
    merged: dict[str, CatalogModel] = {}
    for model in [*prov.spec.static, *prov.observed_static]:
        merged.setdefault(model.id, CatalogModel(model.id, model.label, "static", model.price or prov.prices.get(model.id)))
    for model in prov.live or ():
        merged.setdefault(model.id, CatalogModel(model.id, model.label, "live", model.price or prov.prices.get(model.id)))
    return ProviderCatalog(prov.spec.id, prov.spec.label or prov.spec.id, _state(prov), prov.fetched_at, prov.error,
                           list(merged.values()))


def _state(prov: _Provider) -> str:
    if prov.future is not None:
        return "pending"
    if prov.state == "new":
        return "fresh" if prov.spec.live is None else "pending"
    return prov.state


def _signature(prov: _Provider) -> tuple[str, set[str], str | None]:
    """A snapshot's state, ids and error (what a change is told by), without building the snapshot."""
    ids = {model.id for model in prov.spec.static}
    ids.update(model.id for model in prov.observed_static)
    ids.update(model.id for model in prov.live or ())
    return _state(prov), ids, prov.error


def _judge(prov: _Provider, model_id: str) -> tuple[str, str | None, str | None]:
    with prov.lock:
        snap = _snapshot(prov)
        no_live = prov.spec.live is None and not prov.observed_only
        confirmed = prov.confirmed and prov.future is None
        observed_live = prov.live is not None
        raw_state = prov.state
    name = snap.id
    if model_id in snap.ids:
        return "present", name, None
    if no_live:
        return "absent", name, f"{model_id} is not in {name}'s static catalog (it has no live catalog)"
    if confirmed and snap.state == "fresh":
        return "absent", name, f"{model_id} is not listed by {name}'s live catalog"
    if snap.state == "pending":
        why = "not fetched yet" if raw_state == "new" else "being fetched"
        return "unknown", name, f"{name}'s live catalog is {why}"
    if snap.state == "stale":
        return "unknown", name, f"{name}'s live catalog is stale ({snap.error or 'last fetch failed'})"
    if snap.state == "failed":
        return "unknown", name, f"{name}'s live catalog could not be fetched ({snap.error or 'unknown error'})"
    if not observed_live:
        return "unknown", name, f"no live catalog of {name} has been seen yet"
    return "unknown", name, f"{name}'s live catalog is not confirmed"


def _error_text(exc: BaseException, secrets: list[str]) -> str:
    # Our exceptions carry texts we wrote; anything else (a plugin's) gets its type name for context.
    ours = isinstance(exc, (HermesPluginError, requests.RequestException))
    text = str(exc) if ours else f"{type(exc).__name__}: {exc}"
    return _clip(redact(text or type(exc).__name__, secrets))  # redact first: a clipped key is still a key


def _without_secrets(models: list[Model], secrets: list[str]) -> list[Model]:
    """A provider echoing a credential as a model id loses that model; in a label, the label loses it."""
    if not secrets:
        return models
    kept = []
    for model in models:
        if contains_secret(model.id, secrets):
            continue
        if model.label is not None and contains_secret(model.label, secrets):
            model = Model(model.id, redact(model.label, secrets), model.price)
        kept.append(model)
    if models and not kept:
        raise ProviderResponseError("every model id returned contains a credential")
    return kept


def _clip(text: str) -> str:
    text = " ".join(_CONTROL.sub(" ", text).split())  # no terminal escapes or forged lines in errors
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 1] + "…"
