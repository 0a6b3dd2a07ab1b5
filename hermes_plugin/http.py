"""Provider HTTP: one cached session per app, bounded reads, and stale-if-error per request."""

from __future__ import annotations

import contextvars
import hashlib
import os
import pickle
import stat
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import requests
import requests_cache
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.structures import CaseInsensitiveDict
from requests_cache import CachedResponse
from requests_cache.cache_keys import create_key
from requests_cache.serializers import SerializerPipeline, Stage
from requests_cache.serializers.preconf import base_stage
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from . import jsontext
from .errors import ConfigError, ProviderResponseError
from .redact import contains_secret, redact

CACHE_FILE = "hermes-plugin-cache.sqlite"
DEFAULT_MAX_BYTES = 5 * 2**20
DEFAULT_TOTAL_TIMEOUT = 15.0
DEFAULT_TIMEOUT: tuple[float, float] = (3.05, 10.0)
CHUNK = 64 * 1024
# Headers every request carries that say nothing about who asks: all others count as credentials.
# (requests-cache itself adds Cache-Control and validators to requests it revalidates.)
PLAIN_HEADERS = frozenset({"accept", "accept-encoding", "accept-language", "connection", "user-agent",
                           "content-length", "content-type", "cache-control", "pragma", "if-none-match",
                           "if-modified-since", "anthropic-version"})

# The absolute (monotonic) deadline of the fetch in progress on this thread; the adapter honours it.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("hermes_plugin_deadline", default=None)


def instance_cache_dir(instance_path: str | os.PathLike[str]) -> Path:
    """The cache's own folder inside a Flask app's instance folder (0700 without touching the instance folder)."""
    return Path(instance_path) / "hermes-plugin"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hermes-plugin"


def credential_key(request: Any, **kwargs: Any) -> str:
    """requests-cache's key plus a digest of every credential: two keys never share an entry.

    Every header but the plain ones (``PLAIN_HEADERS``) and the URL's userinfo count as credentials
    (``Authorization``, ``x-api-key``, Azure's ``api-key``, any custom header); only a digest of their
    values enters the key, never the values themselves.
    """
    base = create_key(request, **kwargs)
    headers = getattr(request, "headers", None) or {}
    secrets = sorted(f"{name.lower()}={value}" for name, value in headers.items()
                     if name.lower() not in PLAIN_HEADERS)
    userinfo = urlsplit(getattr(request, "url", "") or "").netloc.rpartition("@")[0]
    if userinfo:
        secrets.append(f"userinfo={userinfo}")
    if not secrets:
        return base
    digest = hashlib.sha256("\n".join(secrets).encode("utf-8", "surrogateescape")).hexdigest()
    return hashlib.sha256(f"{base}:{digest}".encode()).hexdigest()[:32]


def _without_userinfo(url: Any) -> Any:
    if not isinstance(url, str) or "@" not in url:
        return url
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def without_credentials(response: CachedResponse) -> CachedResponse:
    """What is written to the cache: no request headers or cookies at all, URLs without userinfo."""
    request = attrs.evolve(response.request, headers=CaseInsensitiveDict(), cookies=RequestsCookieJar(),
                           url=_without_userinfo(response.request.url))
    history = [without_credentials(item) for item in response.history or []]
    return attrs.evolve(response, request=request, url=_without_userinfo(response.url), history=history)


# pickle like requests-cache's default, after dropping every credential from the stored request.
CREDENTIAL_FREE_PICKLE = SerializerPipeline(
    [Stage(dumps=without_credentials, loads=lambda response: response), base_stage, Stage(pickle)],
    name="hermes-credential-free-pickle", is_binary=True)


class CrossOriginRedirect(requests.RequestException):
    """A provider redirected to another origin: not followed, so its credentials go nowhere else."""


class ProviderSession(requests_cache.CachedSession):
    """The cached session providers are fetched with: redirects are followed within one origin only."""

    def rebuild_auth(self, prepared_request: requests.PreparedRequest, response: requests.Response) -> None:
        # requests strips only Authorization on a host change; x-api-key, api-key and others would follow.
        if _origin(prepared_request.url) != _origin(response.request.url):
            raise CrossOriginRedirect(
                f"redirect from GET {safe_url(str(response.request.url))} to another origin "
                f"({_origin_text(prepared_request.url)}) not followed: credentials are never sent to another origin")
        super().rebuild_auth(prepared_request, response)


def _origin(url: Any) -> tuple[str, str, int | None]:
    parts = urlsplit(str(url or ""))
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _origin_text(url: Any) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


class BoundedReadTimeout(requests.ReadTimeout):
    """A read timeout raised by BoundedAdapter; its text is ours and safe to show."""


class BoundedAdapter(HTTPAdapter):
    """Reads every body itself: at most ``max_bytes`` and within ``total_timeout`` seconds overall.

    Without this a provider can stream a huge body, or drip a byte just inside each read timeout
    forever. The body is stored in ``_content`` so requests-cache caches a fully read response.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_bytes = max_bytes
        self.total_timeout = total_timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        deadline = time.monotonic() + self.total_timeout
        outer = _deadline.get()
        if outer is not None:
            deadline = min(deadline, outer)
        response = super().send(request, stream=True, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        try:
            response._content = self._read(response, deadline)
        except BaseException:
            response.close()
            raise
        response._content_consumed = True  # type: ignore[attr-defined]  # private: newer requests stubs omit it
        response.close()  # content is consumed: this only returns the connection to the pool
        return response

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ProviderResponseError(f"response larger than {self.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                if time.monotonic() > deadline:
                    raise BoundedReadTimeout(f"response not complete within {self.total_timeout:g} s")
                chunk = response.raw.read1(CHUNK, decode_content=True)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > self.max_bytes:
                    raise ProviderResponseError(f"response larger than {self.max_bytes} bytes")
                chunks.append(chunk)
        except ReadTimeoutError as exc:
            raise BoundedReadTimeout("read timed out") from exc
        except ProtocolError as exc:
            raise requests.ConnectionError("connection broken while reading the response") from exc
        except DecodeError as exc:
            raise requests.exceptions.ContentDecodingError("cannot decode the response body") from exc


def _backend(cache: str, cache_dir: str | os.PathLike[str] | None) -> Any:
    if not isinstance(cache, str) or not cache:
        raise ConfigError("cache must be 'memory', 'sqlite', a .sqlite/.db path or a redis:// URL")
    if cache == "memory":
        return "memory"
    if cache.startswith(("redis://", "rediss://", "unix://")):
        try:
            from redis import Redis
            from requests_cache.backends.redis import RedisCache
        except ImportError as exc:
            raise ConfigError("a redis:// cache needs the redis package: pip install 'hermes-plugin[redis]'") from exc
        # ttl=False: expired entries must survive, they are the stale copy served when a provider fails.
        return RedisCache(namespace="hermes-plugin", connection=Redis.from_url(cache), ttl=False,
                          serializer=CREDENTIAL_FREE_PICKLE)
    if cache == "sqlite":
        directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = directory / CACHE_FILE
    elif cache.endswith((".sqlite", ".db")):
        path = Path(cache).expanduser()
    else:
        raise ConfigError(f"unknown cache {cache!r}: use 'memory', 'sqlite', a .sqlite/.db path or a redis:// URL")
    try:
        private_file(path, own_folder=cache == "sqlite")
    except OSError as exc:
        raise ConfigError(f"cannot create the cache file {path}: {exc}") from exc
    return requests_cache.SQLiteCache(path, wal=True, serializer=CREDENTIAL_FREE_PICKLE)


def private_file(path: Path, own_folder: bool) -> None:
    """Create ``path`` readable by its owner only (0600); its folder 0700 when it is ours alone."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        own_folder = True
    if own_folder and stat.S_IMODE(folder.stat().st_mode) != 0o700:
        folder.chmod(0o700)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    if stat.S_IMODE(path.stat().st_mode) != 0o600:
        path.chmod(0o600)


def make_cached_session(cache: str = "sqlite", cache_dir: str | os.PathLike[str] | None = None,
                        expire_after: float = 300, *, max_bytes: int = DEFAULT_MAX_BYTES,
                        total_timeout: float = DEFAULT_TOTAL_TIMEOUT) -> requests_cache.CachedSession:
    """The one CachedSession of an app or service (never ``install_cache``: it is global and not thread-safe)."""
    session = ProviderSession(
        backend=_backend(cache, cache_dir),
        expire_after=expire_after,
        allowable_codes=(200,),
        allowable_methods=("GET",),
        key_fn=credential_key,
        stale_if_error=False,  # ProviderHTTP does stale-if-error itself, so it can report it
    )
    adapter = BoundedAdapter(max_bytes=max_bytes, total_timeout=total_timeout)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def safe_url(url: str) -> str:
    """The URL without query string or userinfo: what may appear in an error message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _as_epoch(value: Any) -> float | None:
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:  # requests-cache stores UTC; older entries may be naive
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


class ProviderHTTP:
    """What a live source receives: ``get_json`` with timeouts, caching and stale-if-error, plus a report.

    After the source ran: ``used_stale`` (an expired cached answer stood in for a failed request),
    ``errors`` (texts of those failures), ``fetched_at`` (epoch seconds of the oldest data used) and
    ``from_cache`` (nothing came from the network).
    """

    def __init__(self, session: requests_cache.CachedSession, timeout: tuple[float, float] | float = DEFAULT_TIMEOUT,
                 refresh: bool = False, *, expire_after: float | None = None, total_timeout: float | None = None,
                 offline: bool = False, secrets: Sequence[str] = ()) -> None:
        self.session = session
        self.secrets = tuple(secrets)  # masked in every text this fetch produces, before any clipping
        self.timeout = timeout
        self.refresh = refresh
        self.expire_after = expire_after
        self.offline = offline  # serve only what is cached, whatever its age (a stale re-run)
        self.deadline = time.monotonic() + total_timeout if total_timeout is not None else None
        self.used_stale = False
        self.errors: list[str] = []
        self.requests = 0
        self._network = 0
        self._created: list[float] = []
        self._written: list[tuple[str, Any]] = []  # (cache key, the entry it replaced) for rollback()

    @property
    def from_cache(self) -> bool:
        return self.requests > 0 and self._network == 0

    @property
    def fetched_at(self) -> float:
        return min(self._created) if self._created else time.time()

    def get_json(self, url: str, headers: Mapping[str, str] | None = None,
                 params: Mapping[str, Any] | None = None) -> Any:
        """GET ``url`` and decode JSON; on failure fall back to the cached answer of any age, else raise."""
        self.requests += 1
        prepared = self.session.prepare_request(requests.Request("GET", url, headers=dict(headers or {}),
                                                                 params=dict(params or {})))
        key = self.session.cache.create_key(prepared)
        previous = self.session.cache.get_response(key)
        if self.offline:
            if previous is None:
                raise ProviderResponseError(f"nothing cached for GET {safe_url(url)}")
            return self._use_cached(previous, url)
        try:
            response = self._send(url, headers, params)
        except (requests.RequestException, ProviderResponseError) as exc:
            return self._fallback(previous, url, _sanitized(exc, url), exc)
        from_cache = bool(getattr(response, "from_cache", False))
        try:
            data = jsontext.loads(response.content)
        except ValueError as exc:
            if not from_cache:
                self._restore(key, previous)  # never keep an unusable answer in place of a good one
            return self._fallback(previous, url, ProviderResponseError(f"invalid JSON from GET {safe_url(url)}"), exc)
        if from_cache:
            self._note_created(response)
        else:
            self._network += 1
            self._written.append((key, previous))
            self._created.append(time.time())
            if self.secrets and contains_secret(response.content.decode("utf-8", "replace"), self.secrets):
                self.rollback()  # a body echoing a credential is used (filtered) but never written to disk
        return data

    def _fallback(self, previous: Any, url: str, error: BaseException, cause: BaseException) -> Any:
        """Serve the cached answer (any age) after a failure, or raise ``error`` (a secret-free copy)."""
        if previous is not None:
            try:
                data = jsontext.loads(previous.content)
            except ValueError:
                pass
            else:
                self.used_stale = True
                self.errors.append(str(error))
                self._note_created(previous)
                return data
        raise error from cause

    def _use_cached(self, cached: Any, url: str) -> Any:
        try:
            data = jsontext.loads(cached.content)
        except ValueError as exc:
            raise ProviderResponseError(f"invalid JSON cached for GET {safe_url(url)}") from exc
        self._note_created(cached)
        return data

    def rollback(self) -> None:
        """Undo this fetch's cache writes: the source rejected what it got, keep the last good answer."""
        for key, previous in reversed(self._written):
            self._restore(key, previous)
        self._written.clear()

    def _send(self, url: str, headers: Mapping[str, str] | None, params: Mapping[str, Any] | None) -> Any:
        timeout = self.timeout
        token = None
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise BoundedReadTimeout("fetch deadline exceeded")
            timeout = _clip(timeout, remaining)
            token = _deadline.set(self.deadline)
        try:
            kwargs: dict[str, Any] = {"force_refresh": True} if self.refresh else {}
            if self.expire_after is not None:
                kwargs["expire_after"] = self.expire_after
            response = self.session.get(url, headers=dict(headers or {}), params=dict(params or {}),
                                        timeout=timeout, **kwargs)
        finally:
            if token is not None:
                _deadline.reset(token)
        if response.status_code >= 400:
            message = f"HTTP {response.status_code} from GET {safe_url(url)}"
            if response.status_code == 429 and response.headers.get("Retry-After"):
                message += f" (Retry-After: {redact(response.headers['Retry-After'], self.secrets)[:40]})"
            raise requests.HTTPError(message, response=response)
        return response

    def _note_created(self, response: Any) -> None:
        created = _as_epoch(getattr(response, "created_at", None))
        self._created.append(created if created is not None else time.time())

    def _restore(self, key: str, previous: Any) -> None:
        try:
            if previous is not None:
                self.session.cache.save_response(previous, key, previous.expires)
            else:
                self.session.cache.delete(key)
        except Exception:  # a cache that cannot be repaired is no reason to fail the fetch twice
            pass


def _clip(timeout: Any, remaining: float) -> Any:
    remaining = max(remaining, 0.001)
    if isinstance(timeout, tuple):
        return tuple(min(t, remaining) if t is not None else remaining for t in timeout)
    return min(timeout, remaining) if timeout is not None else remaining


def _sanitized(exc: BaseException, url: str) -> BaseException:
    """A copy of ``exc`` whose text we wrote: library texts can carry URLs with query strings."""
    where = f"GET {safe_url(url)}"
    if isinstance(exc, (requests.HTTPError, CrossOriginRedirect)):
        return exc  # built by _send / ProviderSession from the status line and safe URLs
    if isinstance(exc, ProviderResponseError):
        return ProviderResponseError(f"{exc} from {where}")
    if isinstance(exc, BoundedReadTimeout):
        return requests.ReadTimeout(f"{exc}: {where}")
    if isinstance(exc, requests.Timeout):
        return type(exc)(f"timed out: {where}")
    if isinstance(exc, requests.ConnectionError):
        reason = "connection refused" if "refused" in str(exc).lower() else "connection failed"
        return type(exc)(f"{reason}: {where}")
    return type(exc)(f"{type(exc).__name__}: {where}")
