"""The real hermes-webui (a stdlib + PyYAML app nobody here wrote), started offline for end-to-end tests.

The release tarball (MIT) is not in the repository: it is looked for at ``TARBALL``, a ``shared/hosts/`` folder
beside the checkout. ``GatedRelay`` sits between the
browser side and the app and holds the live model list until the test opens it: "a slow provider" with
the timing in the test's hands, so each run is the same race.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.wrappers import Request

REPO = Path(__file__).resolve().parents[2]
TARBALL = REPO.parent / "shared" / "hosts" / "hermes-webui-v0.50.227.tar.gz"
CONFIG_YAML = """model: {provider: deepseek, default: deepseek-chat-v3-0324}
providers: {deepseek: {models: [deepseek-chat-v3-0324]}}
"""
SAVED = "deepseek-reasoner"  # only in the live list, where the page spells it @deepseek:deepseek-reasoner
DEFAULT = "deepseek-chat-v3-0324"  # the static list's first model: the page's fallback
ALIAS = "@deepseek:" + SAVED
START_TIMEOUT = 30
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


def tarball() -> Path:
    """The release tarball; a clear failure in CI (and a skip on a machine without it) otherwise."""
    if TARBALL.exists():
        return TARBALL
    message = f"hermes-webui release not found at {TARBALL} (the shared hosts folder sits beside the repository)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WebUI:
    """One running hermes-webui process with its own state folder."""

    root: Path
    url: str = ""
    process: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.root / "server.log"

    def start(self) -> WebUI:
        with tarfile.open(tarball()) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse links and paths out of the folder
                tar.extractall(self.root / "app", filter="data")
            else:
                tar.extractall(self.root / "app")  # noqa: S202  (our own release tarball)
        app_dir = next((self.root / "app").iterdir())
        home = self.root / "home"
        for folder in (home / "webui", self.root / "workspace", self.root / "agent"):
            folder.mkdir(parents=True)
        (home / "config.yaml").write_text(CONFIG_YAML)
        port = free_port()
        env = {
            **os.environ, "HERMES_WEBUI_PORT": str(port), "HERMES_WEBUI_HOST": "127.0.0.1",
            "HERMES_HOME": str(home), "HERMES_BASE_HOME": str(home), "HERMES_WEBUI_STATE_DIR": str(home / "webui"),
            "HERMES_WEBUI_DEFAULT_WORKSPACE": str(self.root / "workspace"), "HERMES_WEBUI_SKIP_ONBOARDING": "1",
            "HERMES_WEBUI_AGENT_DIR": str(self.root / "agent"),
        }
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, "server.py"], cwd=app_dir, env=env, stdout=out,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:  # ready when GET /api/settings answers 200
            if self.process.poll() is not None:
                raise RuntimeError(f"hermes-webui exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/api/settings", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)  # polling a readiness condition with a deadline
        raise RuntimeError(f"hermes-webui did not start in {START_TIMEOUT}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def new_session(self, model: str) -> str:
        response = requests.post(self.url + "/api/session/new", json={"model": model},
                                 headers={"Origin": self.url}, timeout=10)
        response.raise_for_status()
        return str(response.json()["session"]["session_id"])

    def stored(self, session: str) -> str:
        """The model on disk, as the app stores it (no display resolution)."""
        response = requests.get(f"{self.url}/api/session", params={"session_id": session, "messages": "0",
                                                                     "resolve_model": "0"}, timeout=10)
        return str(response.json()["session"]["model"])


class GatedRelay:
    """A small forwarding WSGI app: everything goes to ``upstream``; the live model list waits for ``gate``."""

    def __init__(self, upstream: str, gated_path: str = "/api/models/live") -> None:
        self.upstream = upstream
        self.gated_path = gated_path
        self.gate = threading.Event()
        self.parked = threading.Event()  # a live request is waiting at the gate
        self.posts: list[tuple[str, bytes]] = []  # (path, body) of every POST, as the app receives it
        self.http = requests.Session()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        if request.path == self.gated_path:
            self.parked.set()
            self.gate.wait(START_TIMEOUT)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {"content-length"}}
        if request.method == "POST":
            self.posts.append((request.path, request.get_data()))
        upstream = self.http.request(request.method, self.upstream + request.full_path.rstrip("?"),
                                     headers=headers, data=request.get_data(), stream=True, allow_redirects=False,
                                     timeout=(5, 120))
        out = [(k, v) for k, v in upstream.raw.headers.items() if k.lower() not in HOP_BY_HOP]
        start_response(f"{upstream.status_code} {upstream.reason}", out)
        return self._body(upstream)

    @staticmethod
    def _body(upstream: requests.Response) -> Iterator[bytes]:
        try:
            while chunk := upstream.raw.read1(65536, decode_content=False):
                yield chunk
        finally:
            upstream.close()


class CorrectionFirst:
    """A proxy app, plus: the browser guard's question about a session (``…/sessions/<id>/model``) waits until
    the app's own correction (``POST /api/session/update``) reached the proxy, the order of the app alone with
    quick lists. Asked first, the guard would show the saved model as unavailable before the app looks, and the
    app would then find it in its picker and make no correction at all."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.corrected = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "POST" and path == "/api/session/update":
            self.corrected.set()
        elif path.startswith("/hermes-plugin/api/sessions/") and path.endswith("/model"):
            self.corrected.wait(START_TIMEOUT)
        return self.app(environ, start_response)  # type: ignore[no-any-return]
