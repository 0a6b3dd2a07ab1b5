"""Start the fleet host (``fleethost.py``) under real gunicorn: one or several instances, several workers each.

Clients use fresh connections (``requests.get``/``post`` open one per call) so their requests land on
different workers, as a load balancer's would; the ``X-Worker`` header says which one answered.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from hermes_plugin.testing.fake_provider import FakeProvider
from support.fleethost import seed_sessions
from support.redisserver import RedisServer
from support.wsclient import RawWS

TESTS = Path(__file__).resolve().parent.parent
LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 60.0


class GunicornHost:
    """``gunicorn -w N -k gthread`` serving ``support.fleethost:create_app()`` on a free loopback port."""

    def __init__(self, root: Path, name: str, workers: int, *, redis: str | None = None,
                 provider: str | None = None, cold: str | None = None, guard: bool = True, threads: int = 8,
                 state: str | None = None,
                 app: str = "support.fleethost:create_app()", env: dict[str, str] | None = None,
                 health: str = "/health") -> None:
        self.root, self.name, self.workers, self.threads = root, name, workers, threads
        self.app, self.health = app, health
        self.port = 0  # gunicorn binds port 0; the port it got is read from its log
        self.env = {**os.environ, "FLEET_DIR": str(root), "FLEET_INSTANCE": str(root / f"instance-{name}"),
                    "FLEET_NAME": name, "FLEET_GUARD": "1" if guard else "0", "PYTHONPATH": str(TESTS)}
        self.env.pop("HERMES_PLUGIN_REDIS_URL", None)
        if redis:
            self.env["FLEET_REDIS"] = redis
        if provider:
            self.env["FLEET_PROVIDER"] = provider
        if cold:
            self.env["FLEET_COLD_PROVIDER"] = cold
        if state:
            self.env["FLEET_STATE"] = state
        self.env.update(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / f"gunicorn-{name}.log"
        self.access_log = root / f"access-{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GunicornHost:
        command = [sys.executable, "-m", "gunicorn", "-w", str(self.workers), "-k", "gthread",
                   "--threads", str(self.threads), "-b", "127.0.0.1:0", "--graceful-timeout", "3",
                   "--access-logfile", str(self.access_log), "--access-logformat", "%(p)s %(r)s %(s)s",
                   "--chdir", str(TESTS), self.app]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.port = self._bound_port()
        self.wait_workers()
        return self

    def _bound_port(self) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        while not (found := LISTENING.search(self.log.read_text(errors="replace"))):
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.05)  # polling its log for a condition, with a deadline
        return int(found.group(1))

    def wait_workers(self) -> set[str]:
        """Poll until every worker has answered once (each has its app up), within a deadline."""
        if self.health != "/health":  # not the fleet host: no X-Worker header, the access log names the pid
            return self._wait_in_access_log()
        seen: set[str] = set()
        deadline = time.monotonic() + START_TIMEOUT
        while len(seen) < self.workers:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(seen)} of {self.workers} workers answered: {self.log.read_text()[-3000:]}")
            try:
                seen.add(requests.get(self.url + "/health", timeout=5).headers["X-Worker"])
            except requests.RequestException:
                time.sleep(0.05)  # not listening yet: poll again (a deadline bounds it)
        return seen

    def _wait_in_access_log(self) -> set[str]:
        deadline = time.monotonic() + START_TIMEOUT
        while len(pids := self.pids()) < self.workers:
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(pids)} of {self.workers} workers answered: {self.log.read_text()[-3000:]}")
            try:
                requests.get(self.url + self.health, timeout=5)
            except requests.RequestException:
                time.sleep(0.05)  # not listening yet: poll again (a deadline bounds it)
        return pids

    def pids(self) -> set[str]:
        """Workers that served at least one request (from the access log)."""
        if not self.access_log.exists():
            return set()
        return {line.split(" ", 1)[0] for line in self.access_log.read_text().splitlines() if line.strip()}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


def get(url: str, **kwargs: Any) -> requests.Response:
    """A GET on a fresh connection."""
    kwargs.setdefault("timeout", 30)
    return requests.get(url, **kwargs)


def post(url: str, **kwargs: Any) -> requests.Response:
    """A POST on a fresh connection."""
    kwargs.setdefault("timeout", 30)
    return requests.post(url, **kwargs)


LIVE = "live/only-model"
P = "/hermes-plugin"
WAIT = 30  # an upper bound for something that must happen, never a synchronisation delay
SESSIONS = {name: "start/model" for name in ("fig1", "fig2", "fig3", "fig4", "fig5", "cat")}


@dataclass
class Fleet:
    """Running hosts (gunicorn instances), their provider and their Redis (if any)."""

    root: Path
    hosts: list[GunicornHost]
    provider: FakeProvider
    redis: RedisServer | None = None
    cold: FakeProvider | None = None  # provider "cold": only the concurrent-fetch figure asks for it
    turn: int = 0
    workers: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self) -> str:
        """The next host's URL, round robin: consecutive requests go to different hosts (and workers)."""
        with self.lock:
            self.turn += 1
            return self.hosts[self.turn % len(self.hosts)].url

    def saw(self, response: Any) -> Any:
        with self.lock:
            self.workers.add(response.headers.get("X-Worker", "?"))
        return response


def start_fleet(root: Path, hosts: int, workers: int, redis: bool, persist: bool = False,
                state: str | None = None, threads: int = 16) -> Fleet:
    """``hosts`` gunicorn instances of ``workers`` workers on one sessions database (and one Redis if asked)."""
    root.mkdir(parents=True, exist_ok=True)
    seed_sessions(root, SESSIONS)
    provider = FakeProvider("openai", models=[LIVE], latency=0.5).start()
    cold = FakeProvider("openai", models=[LIVE], latency=0.5).start()
    server = None
    started: list[GunicornHost] = []
    try:
        if redis:
            server = RedisServer(root / "redis", persist=persist).start()
        for n in range(hosts):
            started.append(GunicornHost(root, f"h{n}", workers, redis=server.url if server else None,
                                        provider=provider.base_url, cold=cold.base_url, threads=threads,
                                        state=state).start())
    except BaseException:
        stop_fleet(Fleet(root, started, provider, server, cold=cold))
        raise
    return Fleet(root, started, provider, server, cold=cold)


def stop_fleet(fleet: Fleet) -> None:
    for host in fleet.hosts:
        host.stop()
    if fleet.redis is not None:
        fleet.redis.stop()
    fleet.provider.stop()
    if fleet.cold is not None:
        fleet.cold.stop()


def version(response: Any) -> int:
    return int(response.headers["ETag"].strip('"'))


def write(fleet: Fleet, session: str, model: str, **headers: str) -> Any:
    return fleet.saw(post(fleet.url() + "/api/session/update", json={"session_id": session, "model": model},
                          headers={"X-Hermes-Intent": "user", **headers}))


def read(fleet: Fleet, session: str) -> Any:
    return fleet.saw(get(f"{fleet.url()}{P}/api/sessions/{session}/model"))


def connect(fleet: Fleet, timeout: float = WAIT) -> RawWS:
    client = RawWS(fleet.url(), timeout=timeout)
    assert client.receive_json() == {"type": "hello"}
    return client


def events(client: RawWS, kind: str, count: int, **match: Any) -> list[dict[str, Any]]:
    """The next ``count`` events of ``kind`` matching ``match``; fewer if the socket times out first."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        try:
            event = client.receive_json()
        except OSError:  # the socket's timeout: no more events came
            break
        if event["type"] == kind and all(event.get(key) == value for key, value in match.items()):
            found.append(event)
    return found


# -- the five figures ---------------------------------------------------------------------------------


def concurrent_catalog_reads(fleet: Fleet, count: int = 40) -> tuple[int, list[Any]]:
    """Upstream requests for ``count`` concurrent catalog requests on a cold cache, and the answers
    (provider ``cold``: nothing else asks for it, whatever ran before on this fleet)."""
    assert fleet.cold is not None
    fleet.cold.reset()
    start = threading.Barrier(count)
    answers: list[Any] = []

    def client() -> None:
        start.wait()
        answers.append(fleet.saw(get(f"{fleet.url()}{P}/api/catalog/cold", timeout=WAIT)))

    threads = [threading.Thread(target=client) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return fleet.cold.requests, answers


def stale_etag_refusals(fleet: Fleet, writes: int = 40, session: str = "fig1") -> tuple[int, list[int]]:
    """One client, no contention: how many writes with the ETag it had just read were refused (412)."""
    refused, statuses = 0, []
    for n in range(writes):
        etag = read(fleet, session).headers["ETag"]
        response = write(fleet, session, f"model/{n}", **{"If-Match": etag})
        statuses.append(response.status_code)
        refused += response.status_code == 412
    return refused, statuses


@dataclass
class Writers:
    ok: list[tuple[int, int, str]] = field(default_factory=list)  # (version read, version written, model)
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)

    def lost(self) -> int:
        """Accepted writes built on a version another accepted write had already used."""
        bases = Counter(base for base, _, _ in self.ok)
        return sum(count - 1 for count in bases.values())


def racing_writers(fleet: Fleet, clients: int = 8, writes: int = 15, session: str = "fig2") -> Writers:
    """``clients`` threads, each ``writes`` times: read the version, write with If-Match (fresh connections)."""
    result = Writers()
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def client(n: int) -> None:
        start.wait()
        for i in range(writes):
            base = read(fleet, session)
            model = f"client{n}/write{i}"
            response = write(fleet, session, model, **{"If-Match": base.headers["ETag"]})
            with lock:
                if response.status_code == 200:
                    result.ok.append((version(base), version(response), model))
                elif response.status_code == 412 and response.json()["error"] == "stale_version":
                    result.conflicts += 1
                else:
                    result.errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def audit_visibility(fleet: Fleet, changes: int = 12, reads: int = 8, session: str = "fig3") -> tuple[int, list[str]]:
    """Make ``changes`` model changes, then read the model log ``reads`` times: the fewest changes any read saw."""
    models = [f"log/{n}" for n in range(changes)]
    for model in models:
        write(fleet, session, model)
    fewest = changes
    for _ in range(reads):
        entries = fleet.saw(get(f"{fleet.url()}{P}/api/sessions/{session}/model-log")).json()["entries"]
        fewest = min(fewest, sum(entry["new"] in models for entry in entries))
    return fewest, models


def model_events(fleet: Fleet, clients: int = 6, changes: int = 10, session: str = "fig4",
                 timeout: float = WAIT) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """``clients`` WebSocket clients, ``changes`` model changes: the model events each client received."""
    sockets = [connect(fleet, timeout) for _ in range(clients)]
    try:
        models = [f"ws/{n}" for n in range(changes)]
        for model in models:
            write(fleet, session, model)
        return [events(client, "model", changes, session=session) for client in sockets], models
    finally:
        for client in sockets:
            client.close()
