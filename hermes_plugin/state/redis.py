"""The fleet state store: one Redis shared by every worker of every host (``HERMES_PLUGIN_REDIS_URL``).

Locks are redis-py ``Lock`` objects (with an expiry, so a dead worker cannot hold one forever), events
go through pub/sub, and the audit log is trimmed in one Lua script so its bound holds under concurrency.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import LOCK_TIMEOUT, LockTimeout, StateStore, StateUnavailable, clip_entry

try:
    import redis
    from redis.exceptions import LockError, RedisError
except ImportError:  # pragma: no cover - the message names the extra to install
    redis = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_TTL = 60.0  # a lock held longer than this (a worker killed mid-write) expires by itself
LOCK_POLL = 0.002
SUBSCRIBE_WAIT = 2.0
# Append an entry; trim the session's list and the fleet-wide order list (one element per entry, oldest first).
AUDIT_SCRIPT = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
if redis.call('LLEN', KEYS[1]) > tonumber(ARGV[3]) then
  redis.call('LPOP', KEYS[1])
  redis.call('LREM', KEYS[2], 1, ARGV[2])
end
while redis.call('LLEN', KEYS[2]) > tonumber(ARGV[4]) do
  local oldest = redis.call('LPOP', KEYS[2])
  redis.call('LPOP', ARGV[5] .. oldest)
end
return 1
"""


class RedisStore(StateStore):
    shared = True
    kind = "redis"

    def __init__(self, url: str, namespace: str = "hermes-plugin", **bounds: Any) -> None:
        super().__init__(**bounds)
        if redis is None:
            from ..errors import ConfigError

            raise ConfigError("HERMES_PLUGIN_REDIS_URL needs the redis package: pip install 'hermes-plugin[redis]'")
        self.url = url
        self.ns = namespace
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self.channel = f"{namespace}:events"
        self._audit = self.client.register_script(AUDIT_SCRIPT)
        self._listener: threading.Thread | None = None
        self._listener_pid = -1
        self._subscribed = threading.Event()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except RedisError as exc:
            raise StateUnavailable(f"Redis is not reachable: {type(exc).__name__}") from exc

    def _key(self, kind: str, name: str) -> str:
        return f"{self.ns}:{kind}:{name}"

    @contextmanager
    def lock(self, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        lock = self.client.lock(self._key("lock", name), timeout=LOCK_TTL, sleep=LOCK_POLL,
                                blocking_timeout=timeout, thread_local=False)
        with self._errors():
            if not lock.acquire():
                raise LockTimeout(f"{name} is held by another worker (waited {timeout:g} s)")
        try:
            yield
        finally:
            try:
                lock.release()
            except (LockError, RedisError) as exc:  # expired or Redis gone: the holder's work is done either way
                log.warning("hermes-plugin: releasing lock %s: %s", name, type(exc).__name__)

    def get_version(self, session: str) -> tuple[int, str] | None:
        with self._errors():
            raw = self.client.get(self._key("version", session))
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        version, _, digest = text.partition(" ")
        return int(version), digest

    def set_version(self, session: str, version: int, digest: str) -> None:
        with self._errors():
            self.client.set(self._key("version", session), f"{version} {digest}")

    def audit_append(self, session: str, entry: dict[str, Any]) -> None:
        self.record(session, entry=entry)

    def record(self, session: str, version: tuple[int, str] | None = None, entry: dict[str, Any] | None = None,
               message: dict[str, Any] | None = None) -> None:
        """Version, model-log entry and event in one round trip (a pipeline, in this order)."""
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            if version is not None:
                pipe.set(self._key("version", session), f"{version[0]} {version[1]}")
            if entry is not None:
                self._audit(keys=[self._key("audit", session), self._key("audit-order", "all")],
                            args=[json.dumps(clip_entry(entry)), session, self.audit_per_session,
                                  self.audit_max_entries, self._key("audit", "")], client=pipe)
            if message is not None:
                pipe.publish(self.channel, json.dumps({**message, "origin": self.origin, "echo": True}))
            pipe.execute()

    def audit_entries(self, session: str) -> list[dict[str, Any]]:
        with self._errors():
            rows = self.client.lrange(self._key("audit", session), 0, -1)
        return [json.loads(row) for row in rows]

    def audit_count(self) -> int:
        with self._errors():
            return int(self.client.llen(self._key("audit-order", "all")))

    def audit_sessions(self, limit: int) -> list[str]:
        # The global order list names each entry's session, oldest first: its tail is the newest activity.
        with self._errors():
            rows = self.client.lrange(self._key("audit-order", "all"), -50 * limit, -1)
        owners = [row.decode() if isinstance(row, bytes) else str(row) for row in reversed(rows)]
        return list(dict.fromkeys(owners))[:limit]

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._errors():
            self.client.set(self._key("kv", key), json.dumps(value))

    def get(self, key: str) -> dict[str, Any] | None:
        with self._errors():
            raw = self.client.get(self._key("kv", key))
        return json.loads(raw) if raw is not None else None

    def items(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        start = len(self._key("kv", ""))
        with self._errors():
            keys = list(self.client.scan_iter(match=self._key("kv", prefix) + "*", count=500))
            values = self.client.mget(keys) if keys else []
        return iter([(key.decode()[start:], json.loads(value)) for key, value in zip(keys, values, strict=True)
                     if value is not None])

    def publish(self, message: dict[str, Any], echo: bool = False) -> None:
        with self._errors():
            self.client.publish(self.channel, json.dumps({**message, "origin": self.origin, "echo": echo}))

    def listen(self, listener: Any) -> None:
        super().listen(listener)
        if self._listener is None or self._listener_pid != os.getpid():  # threads do not survive a fork
            self._listener_pid = os.getpid()
            self._listener = threading.Thread(target=_listen, args=(weakref.ref(self),), daemon=True,
                                              name="hermes-state-pubsub")
            self._threads = [self._listener]
            self._listener.start()
            # Events published before the subscription is active would be lost: wait for it (briefly, if Redis is up).
            self._subscribed.wait(SUBSCRIBE_WAIT)

    def ping(self) -> None:
        with self._errors():
            self.client.ping()

    def close(self) -> None:
        self._stop.set()
        self.client.close()


def _listen(ref: weakref.ReferenceType[RedisStore]) -> None:
    """Subscribe, and after Redis comes back, subscribe again and tell listeners they may have missed events.

    Holds the store only weakly (between messages), so the thread ends when the app and its store are gone.
    """
    backoff, lost = 0.1, False
    while (store := ref()) is not None and not store._stop.is_set():
        pubsub = store.client.pubsub()
        try:
            pubsub.subscribe(store.channel)
            if lost:
                lost = False
                store._deliver({"type": "resync"})
            backoff = 0.1
            del store
            while (store := ref()) is not None and not store._stop.is_set():
                del store
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                store = ref()
                if store is None:
                    return
                if message.get("type") == "subscribe":
                    store._subscribed.set()
                elif message.get("type") == "message":
                    store._deliver(json.loads(message["data"]))
                del store
        except Exception as exc:  # Redis gone, or the store closed under us: retry unless stopped
            if not lost and (store := ref()) is not None and not store._stop.is_set():
                log.warning("hermes-plugin: Redis event channel lost (%s); retrying", type(exc).__name__)
            lost = True
            stop = store._stop if (store := ref()) is not None else None
            del store
            if stop is None or stop.wait(backoff):  # a back-off between reconnect attempts, not a synchronisation
                return
            backoff = min(backoff * 2, 2.0)
        finally:
            try:
                pubsub.close()
            except Exception:  # closing a broken connection may itself fail
                pass

