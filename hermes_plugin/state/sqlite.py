"""The one-host state store: a SQLite file (WAL) in the instance folder plus a lock file beside it.

Every worker of a host opens the same file. Locks are byte-range locks (``fcntl``) on the lock file,
one byte per slot, so they are released by the kernel if a worker dies; events between workers go
through a small table that each process polls.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import LOCK_TIMEOUT, LockTimeout, StateStore, StateUnavailable, clip_entry

log = logging.getLogger(__name__)

SLOTS = 4096  # lock slots: two names share one only by hash collision, which just serialises them
POLL_SECONDS = 0.025  # how often a process looks for other workers' events
KEEP_EVENTS = 1000
WAL_LIMIT = 2**20
WAL_PAGES = 256  # checkpoint every ~1 MB of WAL, so the WAL file stays small too
UPSERT_VERSION = ("INSERT INTO versions (session, version, digest) VALUES (?, ?, ?) "
                  "ON CONFLICT(session) DO UPDATE SET version = excluded.version, digest = excluded.digest")
SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (session TEXT PRIMARY KEY, version INTEGER NOT NULL, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, session TEXT NOT NULL, entry TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_session ON audit (session, id);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, origin TEXT NOT NULL, body TEXT NOT NULL);
"""


class _LockFile:
    """This process's handle on one lock file: a thread lock per slot, then the slot's byte lock for other processes.

    ``fcntl`` locks belong to a process (two descriptors of one process never exclude each other, and
    closing any of them drops them all), so every store on the same file in a process shares this one.
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.mutex = threading.Lock()
        self.slots: dict[int, threading.Lock] = {}

    @contextmanager
    def hold(self, name: str, timeout: float) -> Iterator[None]:
        slot = zlib.crc32(name.encode("utf-8", "surrogatepass")) % SLOTS
        with self.mutex:
            local = self.slots.setdefault(slot, threading.Lock())
        deadline = time.monotonic() + timeout
        if not local.acquire(timeout=timeout):
            raise LockTimeout(f"{name} is held by another writer (waited {timeout:g} s)")
        try:
            pause = 0.0005
            while True:
                try:
                    fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, slot)
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        raise LockTimeout(f"{name} is held by another worker (waited {timeout:g} s)") from None
                    time.sleep(pause)  # another process holds it; kernel locks have no wait-with-timeout
                    pause = min(pause * 2, 0.01)
            try:
                yield
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, slot)
        finally:
            local.release()


_lock_files: dict[tuple[int, str], _LockFile] = {}  # (pid, path): a forked child opens its own
_lock_files_mutex = threading.Lock()


def _lock_file(path: str) -> _LockFile:
    key = (os.getpid(), os.path.realpath(path))
    with _lock_files_mutex:
        found = _lock_files.get(key)
        if found is None:
            found = _lock_files[key] = _LockFile(path)
        return found


class SQLiteStore(StateStore):
    shared = True
    kind = "sqlite"

    def __init__(self, path: str, **bounds: Any) -> None:
        super().__init__(**bounds)
        self.path = path
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # guard state is nobody else's business
            os.close(fd)
        except OSError as exc:
            raise StateUnavailable(f"cannot create the state file {path}: {exc}") from exc
        self._local = threading.local()
        self._pid = -1
        self._poller: threading.Thread | None = None
        self._published = 0
        with self._connect() as db:
            db.executescript(SCHEMA)

    # -- connections -----------------------------------------------------------------------------------
    def _fork_check(self) -> None:
        # After a fork (gunicorn --preload) nothing opened by the parent may be used: start afresh.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._local = threading.local()
            if self._listeners and self._poller is not None:
                self._poller = None
                self._start_poller()

    def _connect(self) -> sqlite3.Connection:
        self._fork_check()
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes of the app
                db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")  # the WAL shrinks back after checkpoints
                db.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES}")
            except sqlite3.Error as exc:
                raise StateUnavailable(f"cannot open the state file {self.path}: {exc}") from exc
            self._local.db = db
        return db

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._connect()
        except sqlite3.Error as exc:
            raise StateUnavailable(f"state file {self.path}: {exc}") from exc

    # -- locks -----------------------------------------------------------------------------------------
    def lock(self, name: str, timeout: float = LOCK_TIMEOUT) -> Any:
        self._fork_check()
        return _lock_file(self.path + ".lock").hold(name, timeout)

    # -- versions --------------------------------------------------------------------------------------
    def get_version(self, session: str) -> tuple[int, str] | None:
        with self._db() as db:
            row = db.execute("SELECT version, digest FROM versions WHERE session = ?", (session,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def set_version(self, session: str, version: int, digest: str) -> None:
        with self._db() as db:
            db.execute(UPSERT_VERSION, (session, version, digest))

    # -- audit log -------------------------------------------------------------------------------------
    def audit_append(self, session: str, entry: dict[str, Any]) -> None:
        self.record(session, entry=entry)

    def record(self, session: str, version: tuple[int, str] | None = None, entry: dict[str, Any] | None = None,
               message: dict[str, Any] | None = None) -> None:
        """Version, model-log entry and event in one transaction: one write lock per guarded write, all or nothing."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if version is not None:
                    db.execute(UPSERT_VERSION, (session, *version))
                if entry is not None:
                    self._append(db, session, entry)
                if message is not None:
                    self._insert_event(db, message, echo=True)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _append(self, db: sqlite3.Connection, session: str, entry: dict[str, Any]) -> None:
        cur = db.execute("INSERT INTO audit (session, entry) VALUES (?, ?)", (session, json.dumps(clip_entry(entry))))
        newest = cur.lastrowid
        db.execute("DELETE FROM audit WHERE session = ? AND id <= (SELECT id FROM audit WHERE session = ? "
                   "ORDER BY id DESC LIMIT 1 OFFSET ?)", (session, session, self.audit_per_session))
        # ids only grow, so "newer than newest - bound" keeps at most the bound, oldest dropped first.
        db.execute("DELETE FROM audit WHERE id <= ?", (int(newest or 0) - self.audit_max_entries,))

    def audit_entries(self, session: str) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT entry FROM audit WHERE session = ? ORDER BY id", (session,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def audit_count(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT count(*) FROM audit").fetchone()[0])

    def audit_sessions(self, limit: int) -> list[str]:
        with self._db() as db:
            rows = db.execute("SELECT session FROM audit GROUP BY session ORDER BY MAX(id) DESC LIMIT ?",
                              (limit,)).fetchall()
        return [str(row[0]) for row in rows]

    # -- values ----------------------------------------------------------------------------------------
    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._db() as db:
            db.execute("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       (key, json.dumps(value)))

    def get(self, key: str) -> dict[str, Any] | None:
        with self._db() as db:
            row = db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def items(self, prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        with self._db() as db:
            rows = db.execute("SELECT key, value FROM kv WHERE substr(key, 1, ?) = ?", (len(prefix), prefix)).fetchall()
        return iter([(key, json.loads(value)) for key, value in rows])

    # -- events ----------------------------------------------------------------------------------------
    def publish(self, message: dict[str, Any], echo: bool = False) -> None:
        with self._db() as db:
            self._insert_event(db, message, echo)

    def _insert_event(self, db: sqlite3.Connection, message: dict[str, Any], echo: bool) -> None:
        body = json.dumps({**message, "origin": self.origin, "echo": echo})
        cur = db.execute("INSERT INTO events (origin, body) VALUES (?, ?)", (self.origin, body))
        self._published += 1
        if self._published % 100 == 0:  # keep the table small; pollers are never that far behind
            db.execute("DELETE FROM events WHERE id <= ?", (int(cur.lastrowid or 0) - KEEP_EVENTS,))

    def listen(self, listener: Any) -> None:
        super().listen(listener)
        self._fork_check()
        if self._poller is None:
            self._start_poller()

    def _start_poller(self) -> None:
        with self._db() as db:
            last = int(db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
        self._poller = threading.Thread(target=_poll, args=(weakref.ref(self), self._stop, last, os.getpid()),
                                        daemon=True, name="hermes-state-events")
        self._threads = [self._poller]
        self._poller.start()

    def poll_once(self, last: int) -> int:
        """Deliver the events published after ``last``; returns the newest id seen."""
        try:
            with self._db() as db:
                rows = db.execute("SELECT id, body FROM events WHERE id > ? ORDER BY id", (last,)).fetchall()
        except StateUnavailable as exc:
            log.warning("hermes-plugin: cannot read events from %s: %s", self.path, exc)
            return last
        for event_id, body in rows:
            last = event_id
            self._deliver(json.loads(body))
        return last

    def ping(self) -> None:
        with self._db() as db:
            db.execute("SELECT 1").fetchone()

    def close(self) -> None:
        self._stop.set()


def _poll(ref: weakref.ReferenceType[SQLiteStore], stop: threading.Event, last: int, pid: int) -> None:
    """The event poller: holds the store only weakly, so it ends when the app (and its store) is gone."""
    while not stop.wait(POLL_SECONDS) and os.getpid() == pid:
        store = ref()
        if store is None:
            return
        last = store.poll_once(last)
        del store

