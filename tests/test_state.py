"""The state stores (memory, SQLite, Redis) behind versions, the model log, locks and cross-worker events.

The SQLite and Redis stores are exercised the way workers use them: two store objects on one file or
one redis-server stand for two processes, and the lock test runs real separate processes.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from support.redisserver import RedisServer, need_redis_server, redis_server, redis_url  # noqa: F401  (fixtures)

from hermes_plugin.extension import DEFAULTS
from hermes_plugin.state import (
    AUDIT_MAX_ENTRIES,
    MAX_AUDIT_TEXT,
    LockTimeout,
    StateStore,
    StateUnavailable,
    model_digest,
    open_store,
)
from hermes_plugin.state.sqlite import WAL_LIMIT
from hermes_plugin.writeguard import AuditLog, Decision, Versions

WAIT = 10


@pytest.fixture(params=["memory", "sqlite", "redis"])
def kind(request: Any) -> str:
    return str(request.param)


def make(kind: str, tmp_path: Path, redis: str | None, **bounds: Any) -> StateStore:
    if kind == "memory":
        return open_store("memory", **bounds)
    if kind == "sqlite":
        return open_store("sqlite", tmp_path / "instance", **bounds)
    assert redis is not None
    return open_store(redis, **bounds)


@pytest.fixture(params=["sqlite", "redis"])
def shared_kind(request: Any) -> str:
    return str(request.param)


@pytest.fixture
def stores(kind: str, tmp_path: Path, request: Any) -> Any:
    """A factory of stores sharing one backing (one file, one redis-server): each call is "another worker"."""
    yield from _factory(kind, tmp_path, request)


@pytest.fixture
def shared_stores(shared_kind: str, tmp_path: Path, request: Any) -> Any:
    """``stores`` for the backends several processes share."""
    yield from _factory(shared_kind, tmp_path, request)


def _factory(kind: str, tmp_path: Path, request: Any) -> Any:
    url = None
    if kind == "redis":
        need_redis_server()
        server = RedisServer(tmp_path / "redis").start()
        request.addfinalizer(server.stop)
        url = server.url
    opened: list[StateStore] = []

    def factory(**bounds: Any) -> StateStore:
        store = make(kind, tmp_path, url, **bounds)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def test_versions_follow_the_stored_model(stores):
    versions = Versions(stores())
    assert versions.peek("s", None) == 1  # a missing session: version 1, nothing written
    assert versions.peek("s", "a") is None  # a model with no record must be recorded under the lock
    assert versions.current("s", "a") == 1
    assert versions.peek("s", "a") == 1
    assert versions.current("s", "b") == 2  # the stored model changed (through the guard or not)
    assert versions.current("s", "b") == 2
    assert versions.peek("s", "a") is None  # an old model read while a write lands: never paired with 2
    assert versions.current("s", "a") == 3  # back to "a" is a new state, not the old version


def test_every_worker_computes_the_same_version(shared_stores):
    one, two = Versions(shared_stores()), Versions(shared_stores())
    assert one.current("s", "a") == 1
    assert one.current("s", "b") == 2
    assert two.peek("s", "b") == 2
    assert two.current("s", "c") == 3
    assert one.peek("s", "c") == 3


def test_reads_of_missing_sessions_never_push_out_a_version(stores):
    store = stores()
    versions = Versions(store)
    versions.current("real", "a")
    assert versions.current("real", "b") == 2
    for n in range(10_001):
        assert versions.peek(f"made-up-{n}", None) == 1
    assert store.get_version("made-up-5") is None
    assert versions.peek("real", "b") == 2
    assert not Versions.matches('"1"', versions.current("real", "b"))  # the tab's stale If-Match still fails


@pytest.mark.parametrize(("header", "ok"), [('"2"', True), ("2", True), ('W/"2"', True), ("*", True),
                                            ('"1", "2"', True), ('"1"', False), ("garbage", False), ("", False)])
def test_if_match(header, ok):
    assert Versions.matches(header, 2) is ok


def test_model_digest_is_stable_and_distinguishes_none():
    assert model_digest("a") == model_digest("a")
    assert len({model_digest(None), model_digest(""), model_digest("a"), model_digest("b")}) == 4


def test_audit_entries_per_session_bound(stores):
    audit = AuditLog(stores(audit_per_session=3))
    for index in range(5):
        audit.record(Decision("pass", "user", session="a", stored=f"m{index}", proposed=f"m{index + 1}"),
                     f"m{index + 1}", at=float(index))
    entries = audit.entries("a")
    assert [entry["new"] for entry in entries] == ["m3", "m4", "m5"]
    assert entries[-1] == {"time": 4.0, "old": "m4", "new": "m5", "proposed": "m5", "intent": "user",
                           "outcome": "pass", "reason": "user", "by": "user"}
    audit.record(Decision("keep", "model_present", session="b", stored="x", proposed="y", intent="auto"), "x")
    assert audit.entries("b")[0]["outcome"] == "keep"
    assert audit.entries("nobody") == []
    with pytest.raises(ValueError):
        audit.record(Decision("pass", "same"), None)


def test_audit_log_rotates_oldest_first_at_its_total_bound(stores):
    store = stores(audit_per_session=10, audit_max_entries=25)
    audit = AuditLog(store)
    for index in range(60):  # 60 entries over 6 sessions, round robin
        session = f"s{index % 6}"
        audit.record(Decision("pass", "user", session=session, stored="x", proposed=f"m{index}"), f"m{index}")
    assert store.audit_count() == 25
    kept = sorted(int(entry["new"][1:]) for n in range(6) for entry in audit.entries(f"s{n}"))
    assert kept == list(range(35, 60))  # exactly the newest 25, whichever session they belong to


def test_audit_log_bounds_text_and_defaults_fit_a_laptop(stores):
    store = stores()
    assert store.audit_max_entries == AUDIT_MAX_ENTRIES == DEFAULTS["HERMES_PLUGIN_AUDIT_MAX_ENTRIES"] == 10_000
    AuditLog(store).record(Decision("pass", "user", session="s", stored="x" * 100_000, proposed="y"), "y")
    assert len(store.audit_entries("s")[0]["old"]) == MAX_AUDIT_TEXT  # so 10,000 entries stay about 11 MB at worst


def test_sqlite_audit_file_stays_small(tmp_path):
    store = open_store("sqlite", tmp_path, audit_max_entries=500)
    audit = AuditLog(store)
    for index in range(3_000):
        audit.record(Decision("pass", "user", session=f"s{index % 50}", stored="a" * 256, proposed="b" * 256),
                     "b" * 256)
    assert store.audit_count() == 500
    # 500 entries of ~900 bytes; without rotation the file grows by that much per entry (~2.7 MB here)
    assert (tmp_path / "hermes-plugin-state.sqlite").stat().st_size < 1 * 2**20
    wal = tmp_path / "hermes-plugin-state.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size <= WAL_LIMIT + 2**16  # checkpointed back to its limit


def test_lock_excludes_other_holders_and_times_out(stores, kind):
    one = stores()
    two = one if kind == "memory" else stores()
    with one.lock("session:s"):
        failed: list[BaseException] = []

        def contend() -> None:  # another thread (and for shared stores another store object): it must wait
            try:
                with two.lock("session:s", timeout=0.2):
                    pass
            except LockTimeout as exc:
                failed.append(exc)

        thread = threading.Thread(target=contend)
        thread.start()
        thread.join()
        assert len(failed) == 1
        with two.lock("session:other", timeout=WAIT):  # another name is not blocked
            pass
    with two.lock("session:s", timeout=WAIT):  # released
        pass


COUNTER = """
import sys
from pathlib import Path
from hermes_plugin.state import open_store
store = open_store(sys.argv[1], sys.argv[2])
counter = Path(sys.argv[3])
for _ in range(int(sys.argv[4])):
    with store.lock("session:counter"):
        value = int(counter.read_text())  # read, pause, write: unguarded, processes lose increments
        counter.write_text(str(value + 1))
"""


def test_lock_serialises_separate_processes(shared_stores, tmp_path):
    store = shared_stores()
    target = getattr(store, "url", None) or "sqlite"
    counter = tmp_path / "counter"
    counter.write_text("0")
    runs = 150
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(COUNTER), target, str(tmp_path / "instance"),
                               str(counter), str(runs)]) for _ in range(3)]
    assert [proc.wait(timeout=60) for proc in procs] == [0, 0, 0]
    assert int(counter.read_text()) == 3 * runs


def test_events_reach_other_workers_not_the_sender(shared_stores):
    sender, receiver = shared_stores(), shared_stores()
    got: queue.Queue[dict[str, Any]] = queue.Queue()
    echoed: queue.Queue[dict[str, Any]] = queue.Queue()
    receiver.listen(got.put)
    sender.listen(echoed.put)
    # The listener subscribes in the background: publish until the first message arrives (a deadline, not a sleep).
    first: dict[str, Any] | None = None
    for _ in range(100):
        sender.publish({"type": "ping"})
        try:
            first = got.get(timeout=0.1)
            break
        except queue.Empty:
            continue
    assert first is not None and first["type"] == "ping"
    sender.publish({"type": "ws", "event": {"n": 1}})
    while (message := got.get(timeout=WAIT))["type"] == "ping":
        pass
    assert message["type"] == "ws" and message["event"] == {"n": 1}
    assert echoed.empty()  # a worker does not hear its own events back


def test_values_are_shared(stores):
    one = stores()
    one.put("observed:p:live", {"models": ["a"]})
    one.put("observed:q:live", {"models": ["b"]})
    one.put("other", {"x": 1})
    assert one.get("observed:p:live") == {"models": ["a"]}
    assert one.get("missing") is None
    assert dict(one.items("observed:")) == {"observed:p:live": {"models": ["a"]}, "observed:q:live": {"models": ["b"]}}


def test_redis_down_is_state_unavailable_then_recovers(tmp_path):
    need_redis_server()
    server = RedisServer(tmp_path / "redis").start()
    try:
        store = open_store(server.url)
        versions = Versions(store)
        assert versions.current("s", "a") == 1
        server.stop()
        with pytest.raises(StateUnavailable):
            versions.current("s", "b")
        with pytest.raises(StateUnavailable):
            with store.lock("session:s", timeout=1):
                pass
        server.start()  # an empty Redis on the same port (persistence is off): the store reconnects by itself
        assert versions.current("s", "b") == 1
    finally:
        server.stop()


def test_unknown_store_kind_is_a_config_error(tmp_path):
    from hermes_plugin.errors import ConfigError

    with pytest.raises(ConfigError):
        open_store("postgres://x")
    with pytest.raises(ConfigError):
        open_store("sqlite")  # no folder


def test_record_stores_version_entry_and_event_in_one_step(shared_stores):
    writer, reader = shared_stores(), shared_stores()
    got: queue.Queue[dict[str, Any]] = queue.Queue()
    reader.listen(got.put)
    # The listener subscribes in the background: record until the event arrives (a deadline, not a sleep).
    for n in range(100):
        writer.record("s", (n + 1, model_digest(f"m{n}")), {"new": f"m{n}"}, {"type": "ws", "event": {"n": n}})
        try:
            message = got.get(timeout=0.1)
            break
        except queue.Empty:
            continue
    assert message["type"] == "ws"
    version, _ = reader.get_version("s") or (0, "")
    assert version >= message["event"]["n"] + 1  # the event never arrives before the version it announces
    assert [entry["new"] for entry in reader.audit_entries("s")][: message["event"]["n"] + 1] == \
        [f"m{k}" for k in range(message["event"]["n"] + 1)]


def test_audit_sessions_newest_first_across_workers(stores, kind):
    """The status page's "latest model changes": every worker's writes, the most recently changed first."""
    first = stores()
    second = stores() if kind != "memory" else first  # two workers on one backing (memory: one process)
    assert first.audit_sessions(10) == []
    for store, session in ((first, "a"), (second, "b"), (first, "c"), (second, "a")):
        AuditLog(store).record(Decision("pass", "user", session=session, stored="m1", proposed="m2"), "m2")
    assert first.audit_sessions(10) == second.audit_sessions(10) == ["a", "c", "b"]
    assert first.audit_sessions(2) == ["a", "c"]
