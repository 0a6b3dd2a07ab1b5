"""RELIABILITY.md part 3: many clients racing guarded writes, with and without If-Match; two tabs racing (S9).

A "lost update" is a successful write based on a version that another successful write had already
consumed: both clients read version n, both were told "written", and one of them was silently
overwritten. With If-Match the guard must make that count 0; without it the count is reported for
contrast (not asserted: how often unversioned writers collide depends on scheduling).

Scale: ``HERMES_RELIABILITY=1`` (``tox -e reliability``) runs the long-run figures (50 clients x
100 writes, S9 x 50); CI runs 50 clients x 10 writes and S9 x 5. ``bench/concurrency_bench.py`` prints
the table from the same code.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e.conftest import DemoHost, demo_host, demo_providers_pair  # noqa: F401  (fixtures for the S9 repeat)
from support.hostapp import create_app, running

FULL = os.environ.get("HERMES_RELIABILITY") == "1"
CLIENTS = 50
WRITES = 100 if FULL else 10
S9_REPEATS = 50 if FULL else 5
SESSIONS_ACROSS = 10


@dataclass
class Load:
    """What one run of racing clients saw."""

    mode: str
    sessions: int
    clients: int
    writes_per_client: int
    ok: list[tuple[str, int, int, str]] = field(default_factory=list)  # (session, base version, new version, model)
    conflicts: int = 0  # 412 stale_version answers
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def attempts(self) -> int:
        return self.clients * self.writes_per_client

    def lost_updates(self) -> int:
        """Successful writes whose base version another successful write of the same session had used."""
        used = Counter((session, base) for session, base, _, _ in self.ok)
        return sum(n - 1 for n in used.values())

    def row(self) -> dict[str, Any]:
        return {"mode": self.mode, "sessions": self.sessions, "clients": self.clients,
                "writes": self.attempts, "written": len(self.ok), "412": self.conflicts,
                "lost": self.lost_updates(), "errors": len(self.errors),
                "writes_per_s": round(self.attempts / self.seconds) if self.seconds else 0}


def etag_version(response: requests.Response) -> int:
    return int(response.headers["ETag"].strip('"').removeprefix("W/").strip('"'))


def hammer(url: str, sessions: list[str], clients: int, writes: int, if_match: bool) -> Load:
    """``clients`` threads, each: read the session's version, then one guarded write, ``writes`` times."""
    load = Load("If-Match" if if_match else "no If-Match", len(sessions), clients, writes)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        http = requests.Session()
        session = sessions[n % len(sessions)]
        start.wait()
        for i in range(writes):
            try:
                read = http.get(f"{url}/hermes-plugin/api/sessions/{session}/model", timeout=60)
                base = etag_version(read)
                headers = {"X-Hermes-Intent": "user"}
                if if_match:
                    headers["If-Match"] = f'"{base}"'
                model = f"client{n}/write{i}"
                response = http.post(f"{url}/api/session/update", json={"session_id": session, "model": model},
                                     headers=headers, timeout=60)
            except requests.RequestException as exc:
                with lock:
                    load.errors.append(repr(exc))
                continue
            with lock:
                if response.status_code == 200:
                    load.ok.append((session, base, etag_version(response), model))
                elif response.status_code == 412 and response.json()["error"] == "stale_version":
                    load.conflicts += 1
                else:
                    load.errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    load.seconds = time.perf_counter() - began
    return load


def run_load(tmp_path: Path, sessions: int, if_match: bool, clients: int = CLIENTS, writes: int = WRITES
             ) -> tuple[Load, dict[str, Any], Any]:
    """A fresh host with ``sessions`` sessions, hammered; returns the load, the final store and the app."""
    ids = [f"s{n}" for n in range(sessions)]
    app = create_app(tmp_path, sessions={sid: "start/model" for sid in ids})
    with running(app) as url:
        load = hammer(url, ids, clients, writes, if_match)
        final = {sid: requests.get(f"{url}/hermes-plugin/api/sessions/{sid}/model", timeout=10) for sid in ids}
    store = app.store.all()  # type: ignore[attr-defined]
    return load, {sid: (store[sid]["model"], etag_version(r)) for sid, r in final.items()}, app


def assert_consistent(load: Load, final: dict[str, Any]) -> None:
    """Storage and versions agree with what the clients were told."""
    assert load.errors == []
    assert len(load.ok) + load.conflicts == load.attempts
    for session, (model, version) in final.items():
        mine = sorted((new, m) for s, _, new, m in load.ok if s == session)
        assert len({new for new, _ in mine}) == len(mine)  # every success got its own version
        if mine:
            assert version == mine[-1][0] and model == mine[-1][1]  # the last "written" is what is stored
        assert version == 1 + len(mine)  # each success bumped the version exactly once


@pytest.mark.parametrize("sessions", [1, SESSIONS_ACROSS], ids=["one-session", "across-sessions"])
def test_if_match_writers_lose_no_update(tmp_path, sessions):
    load, final, _ = run_load(tmp_path, sessions, if_match=True)
    assert_consistent(load, final)
    assert load.lost_updates() == 0
    assert load.ok  # progress: some writes got through on every run


@pytest.mark.parametrize("sessions", [1, SESSIONS_ACROSS], ids=["one-session", "across-sessions"])
def test_unversioned_writers_are_all_written_and_consistent(tmp_path, sessions):
    load, final, _ = run_load(tmp_path, sessions, if_match=False)
    assert_consistent(load, final)
    assert load.conflicts == 0 and len(load.ok) == load.attempts  # without If-Match nothing is refused


@pytest.mark.e2e
@pytest.mark.parametrize("repeat", range(S9_REPEATS))
def test_s9_two_tabs_racing_repeated(demo_host, repeat):  # noqa: F811
    """S9 again and again: tab 2's automatic write after tab 1's pick is kept back; tab 2 follows tab 1."""
    opus, gpt4o = "openrouter/claude-opus", "openrouter/gpt-4o"
    host: DemoHost = demo_host()
    tab1, tab2, result = host.race_two_tabs("opus", stored=opus, pick=gpt4o)
    assert [w.decision for w in host.writes.writes if w.model == opus] == ["keep"]  # tab 2's write, kept back
    assert result["session"]["model"] == gpt4o
    assert host.stored("opus") == gpt4o
    assert tab1.value == gpt4o and tab2.value == gpt4o
    assert [(c.old, c.new) for c in host.writes.changes] == [(opus, gpt4o)]
