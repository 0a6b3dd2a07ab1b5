"""Guard state that several worker processes (and hosts) share: versions, audit log, locks, events.

Three backends with one interface (``StateStore``):

- ``memory``: this process only (tests, a single-process dev server);
- ``sqlite``: one file in the instance folder, shared by every worker of one host (WAL + file locks);
- ``redis``: one Redis shared by a whole fleet (``HERMES_PLUGIN_REDIS_URL``).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from ..errors import ConfigError, HermesPluginError

log = logging.getLogger(__name__)

STATE_FILE = "hermes-plugin-state.sqlite"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
LOCK_TIMEOUT = 30.0  # seconds a guarded write waits for its session before a 503
AUDIT_PER_SESSION = 100
AUDIT_MAX_ENTRIES = 10_000  # all sessions together: about 11 MB on disk at worst, ~3 MB for usual model ids
MAX_AUDIT_TEXT = 256  # a stored model the host holds can be anything: the log keeps a bounded copy (ids are <= 256)
EXIT_WAIT = 2.0  # at interpreter exit, how long background threads get to notice they must stop

Listener = Callable[[dict[str, Any]], None]


class StateUnavailable(HermesPluginError):
    """The shared state (Redis, the SQLite file) cannot be reached: refuse writes rather than risk losing one."""


class LockTimeout(StateUnavailable):
    """Another writer held a lock for longer than the wait allowed."""


def model_digest(model: str | None, host_version: str | None = None) -> str:
    """What a version is tied to: a digest of the stored model, and of the host's own version of the session
    when it declares one (the same in every process)."""
    data = b"\x00" if model is None else b"m" + model.encode("utf-8", "surrogatepass")
    if host_version is not None:
        data += b"\x00v" + host_version.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()[:20]


def clip_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """An audit entry with every text field bounded, so the log's size bound holds in bytes too."""
    return {key: value[:MAX_AUDIT_TEXT] if isinstance(value, str) else value for key, value in entry.items()}


class StateStore:
    """The interface every backend implements; ``shared`` says whether other processes see the same state."""

    shared = False
    kind = "memory"

    def __init__(self, audit_per_session: int = AUDIT_PER_SESSION, audit_max_entries: int = AUDIT_MAX_ENTRIES) -> None:
        if audit_per_session < 1 or audit_max_entries < 1:
            raise ValueError("audit bounds must be at least 1")
        self.audit_per_session = audit_per_session
        self.audit_max_entries = audit_max_entries
        self.origin = uuid.uuid4().hex  # this process's id on the event channel: its own events come back to it
        self._listeners: list[Listener] = []
        self._stop = threading.Event()  # ends this store's background thread
        self._threads: list[threading.Thread] = []
        _open_stores.add(self)

    # -- locks ---------------------------------------------------------------------------------------
    def lock(self, name: str, timeout: float = LOCK_TIMEOUT) -> AbstractContextManager[None]:
        """Hold ``name`` across every process sharing this store; LockTimeout / StateUnavailable otherwise."""
        raise NotImplementedError

    # -- versions ------------------------------------------------------------------------------------
    def get_version(self, session: str) -> tuple[int, str] | None:
        """``(version, digest of the model it was given for)`` or None when the session has no record."""
        raise NotImplementedError

    def set_version(self, session: str, version: int, digest: str) -> None:
        raise NotImplementedError

    # -- audit log -----------------------------------------------------------------------------------
    def audit_append(self, session: str, entry: dict[str, Any]) -> None:
        raise NotImplementedError

    def audit_entries(self, session: str) -> list[dict[str, Any]]:
        """Oldest first."""
        raise NotImplementedError

    def audit_count(self) -> int:
        """Entries kept for all sessions together (bounded by ``audit_max_entries``)."""
        raise NotImplementedError

    def audit_sessions(self, limit: int) -> list[str]:
        """Up to ``limit`` sessions with the newest model-log entries, newest first (the status page's list)."""
        return []

    def record(self, session: str, version: tuple[int, str] | None = None, entry: dict[str, Any] | None = None,
               message: dict[str, Any] | None = None) -> None:
        """After a write, in one step where the backend allows: the new version record, a model-log entry and a
        message for every worker (sent with ``echo``)."""
        if version is not None:
            self.set_version(session, *version)
        if entry is not None:
            self.audit_append(session, entry)
        if message is not None:
            self.publish(message, echo=True)

    # -- small shared values (observed catalogs, fetch marks) --------------------------------------------
    def put(self, key: str, value: dict[str, Any]) -> None:
        raise NotImplementedError

    def get(self, key: str) -> dict[str, Any] | None:
        raise NotImplementedError

    def items(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        raise NotImplementedError

    # -- events between processes ----------------------------------------------------------------------
    def publish(self, message: dict[str, Any], echo: bool = False) -> None:
        """Send ``message`` to the listeners of every *other* process sharing this store (and this one's with
        ``echo``: one channel for all keeps every listener's order the same)."""

    def listen(self, listener: Listener) -> None:
        """Call ``listener(message)`` for each message another process publishes (from a background thread)."""
        self._listeners.append(listener)

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("origin") == self.origin and not message.get("echo"):
            return
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:  # one broken listener must not stop the channel
                log.exception("hermes-plugin: state listener failed")

    def ping(self) -> None:
        """Raise StateUnavailable when the store cannot be reached."""

    def close(self) -> None:
        """Release connections and background threads."""


_open_stores: weakref.WeakSet[StateStore] = weakref.WeakSet()


@atexit.register
def _stop_threads() -> None:
    """Stop every store's background thread before the interpreter tears down what they use (sqlite3, sockets)."""
    stores = list(_open_stores)
    for store in stores:
        store._stop.set()
    deadline = time.monotonic() + EXIT_WAIT
    for store in stores:
        for thread in store._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def open_store(kind: str, instance_path: str | os.PathLike[str] | None = None, *,
               audit_per_session: int = AUDIT_PER_SESSION, audit_max_entries: int = AUDIT_MAX_ENTRIES,
               namespace: str = "hermes-plugin") -> StateStore:
    """``memory``, ``sqlite`` (in ``instance_path``), a ``.sqlite``/``.db`` path, or a ``redis://`` URL."""
    bounds: dict[str, Any] = {"audit_per_session": audit_per_session, "audit_max_entries": audit_max_entries}
    if kind == "memory":
        from .memory import MemoryStore

        return MemoryStore(**bounds)
    if isinstance(kind, str) and kind.startswith(REDIS_SCHEMES):
        from .redis import RedisStore

        return RedisStore(kind, namespace=namespace, **bounds)
    if kind == "sqlite":
        if instance_path is None:
            raise ConfigError("the sqlite state store needs a folder (the app's instance folder)")
        path = os.path.join(os.fspath(instance_path), STATE_FILE)
    elif isinstance(kind, str) and kind.endswith((".sqlite", ".db")):
        path = os.path.expanduser(kind)
    else:
        raise ConfigError(f"unknown state store {kind!r}: use 'memory', 'sqlite', a .sqlite path or a redis:// URL")
    from .sqlite import SQLiteStore

    return SQLiteStore(path, **bounds)
