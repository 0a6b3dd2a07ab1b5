"""The in-process state store: correct for one process only (tests, a dev server)."""

from __future__ import annotations

import copy
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import LOCK_TIMEOUT, LockTimeout, StateStore, clip_entry


class NamedLocks:
    """One lock per name while someone holds or waits for it; idle names hold no memory."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locks: dict[str, list[Any]] = {}  # name -> [lock, holders and waiters]

    @contextmanager
    def hold(self, name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        with self._mutex:
            entry = self._locks.setdefault(name, [threading.Lock(), 0])
            entry[1] += 1
        try:
            if not entry[0].acquire(timeout=timeout):
                raise LockTimeout(f"{name} is held by another writer (waited {timeout:g} s)")
            try:
                yield
            finally:
                entry[0].release()
        finally:
            with self._mutex:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[name]

    def __len__(self) -> int:
        with self._mutex:
            return len(self._locks)


class MemoryStore(StateStore):
    """Dicts and thread locks; nothing is shared with other processes."""

    def __init__(self, **bounds: Any) -> None:
        super().__init__(**bounds)
        self.locks = NamedLocks()
        self._mutex = threading.Lock()
        self._versions: dict[str, tuple[int, str]] = {}  # only sessions that exist get a record: reads cannot evict
        self._audit: deque[tuple[str, dict[str, Any]]] = deque(maxlen=self.audit_max_entries)
        self._values: dict[str, dict[str, Any]] = {}

    def lock(self, name: str, timeout: float = LOCK_TIMEOUT) -> Any:
        return self.locks.hold(name, timeout)

    def get_version(self, session: str) -> tuple[int, str] | None:
        with self._mutex:
            return self._versions.get(session)

    def set_version(self, session: str, version: int, digest: str) -> None:
        with self._mutex:
            self._versions[session] = (version, digest)

    def audit_append(self, session: str, entry: dict[str, Any]) -> None:
        with self._mutex:
            self._audit.append((session, clip_entry(entry)))  # maxlen drops the oldest of all sessions
            mine = [i for i, (owner, _) in enumerate(self._audit) if owner == session]
            if len(mine) > self.audit_per_session:
                del self._audit[mine[0]]

    def audit_entries(self, session: str) -> list[dict[str, Any]]:
        with self._mutex:
            return [dict(entry) for owner, entry in self._audit if owner == session]

    def audit_count(self) -> int:
        with self._mutex:
            return len(self._audit)

    def audit_sessions(self, limit: int) -> list[str]:
        with self._mutex:
            owners = [owner for owner, _ in reversed(self._audit)]
        return list(dict.fromkeys(owners))[:limit]

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._mutex:
            self._values[key] = copy.deepcopy(value)

    def get(self, key: str) -> dict[str, Any] | None:
        with self._mutex:
            value = self._values.get(key)
            return copy.deepcopy(value) if value is not None else None

    def items(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        with self._mutex:
            found = [(key, copy.deepcopy(value)) for key, value in self._values.items() if key.startswith(prefix)]
        return iter(found)
