"""Start the fleet host (``fleethost.py``) under real gunicorn: one or several instances, several workers each.

Clients use fresh connections (``requests.get``/``post`` open one per call) so their requests land on
different workers, as a load balancer's would; the ``X-Worker`` header says which one answered.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from redisserver import free_port

TESTS = Path(__file__).resolve().parent
START_TIMEOUT = 60.0


class GunicornHost:
    """``gunicorn -w N -k gthread`` serving ``fleethost:create_app()`` on a free loopback port."""

    def __init__(self, root: Path, name: str, workers: int, *, redis: str | None = None,
                 provider: str | None = None, guard: bool = True, threads: int = 8) -> None:
        self.root, self.name, self.workers, self.threads = root, name, workers, threads
        self.port = free_port()
        self.env = {**os.environ, "FLEET_DIR": str(root), "FLEET_INSTANCE": str(root / f"instance-{name}"),
                    "FLEET_NAME": name, "FLEET_GUARD": "1" if guard else "0", "PYTHONPATH": str(TESTS)}
        self.env.pop("HERMES_PLUGIN_REDIS_URL", None)
        if redis:
            self.env["FLEET_REDIS"] = redis
        if provider:
            self.env["FLEET_PROVIDER"] = provider
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / f"gunicorn-{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GunicornHost:
        command = [sys.executable, "-m", "gunicorn", "-w", str(self.workers), "-k", "gthread",
                   "--threads", str(self.threads), "-b", f"127.0.0.1:{self.port}", "--graceful-timeout", "3",
                   "--chdir", str(TESTS), "fleethost:create_app()"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.wait_workers()
        return self

    def wait_workers(self) -> set[str]:
        """Poll until every worker has answered once (each has its app up), within a deadline."""
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
