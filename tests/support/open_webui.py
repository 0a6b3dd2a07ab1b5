"""The real Open WebUI on loopback, offline, auth off, its one OpenAI-compatible provider a FakeProvider.

Open WebUI lives in its own virtual environment (``tests/support/open_webui_setup.sh`` installs it; the
``OPEN_WEBUI_VENV`` variable points elsewhere). Tests that use it carry the ``open_webui`` marker: without
the install they skip locally and fail under ``CI=true``, where a missing install is a broken pipeline.

How Open WebUI behaves here (read from its 0.12.4 source):
- ``WEBUI_AUTH=False``: ``POST /api/v1/auths/signin`` with any body signs in the one admin
  (``admin@localhost``) and returns a JWT; the page keeps it in ``localStorage.token`` and sends it as a
  bearer token (the same call sets a ``token`` cookie too).
- ``GET /api/models`` rebuilds the server's model registry (``app.state.MODELS``) from the provider on
  every call (the provider's answer is cached ``MODELS_CACHE_TTL`` seconds; ``?refresh=true`` clears it);
  ``POST /api/chat/completions`` answers ``400 Model not found`` for a model the last build lacked.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from hermes_plugin.testing.fake_provider import FakeProvider

VERSION = "0.12.4"
REPO = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO / "tests" / "support" / "open_webui_setup.sh"
MODELS = ("chat-model", "other-model")  # what the fake provider lists unless a test changes it
API_KEY = "sk-fake-open-webui"
# Upper bounds on a loaded 2-core machine (a cold start takes 20-40 s); every wait ends once its condition holds.
START_DEADLINE = 240.0
STOP_DEADLINE = 30.0
POLL = 0.25

# Offline and quiet: no update check, no telemetry, no model downloads, no Ollama, no LLM side tasks
# (title, tags, follow-ups would send extra completions to the provider and blur what a test counts).
OFFLINE_ENV = {
    "WEBUI_AUTH": "False",
    "OFFLINE_MODE": "true",  # also sets HF_HUB_OFFLINE and turns off the version check and model auto-updates
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ENABLE_VERSION_UPDATE_CHECK": "false",
    "SCARF_NO_ANALYTICS": "true",
    "DO_NOT_TRACK": "true",
    "ANONYMIZED_TELEMETRY": "false",
    "ENABLE_OLLAMA_API": "false",
    "ENABLE_OPENAI_API": "true",
    "ENABLE_PERSISTENT_CONFIG": "false",  # the environment, not a config saved in the database, decides
    "RAG_EMBEDDING_ENGINE": "openai",  # no local SentenceTransformer to load (it would look for a download)
    "ENABLE_WEB_SEARCH": "false",
    "ENABLE_TITLE_GENERATION": "false",
    "ENABLE_TAGS_GENERATION": "false",
    "ENABLE_FOLLOW_UP_GENERATION": "false",
    "ENABLE_AUTOCOMPLETE_GENERATION": "false",
    "ENABLE_CODE_INTERPRETER": "false",
    "ENABLE_MEMORIES": "false",
}


def venv_path() -> Path:
    return Path(os.environ.get("OPEN_WEBUI_VENV") or REPO / ".venv-open-webui")


def executable() -> Path | None:
    """The venv's ``open-webui`` command when the pinned version is installed there, else None."""
    venv = venv_path()
    command = venv / "bin" / "open-webui"
    if not command.exists():
        return None
    found = list((venv / "lib").glob(f"python3*/site-packages/open_webui-{VERSION}.dist-info"))
    return command if found else None


def require_executable() -> Path:
    """The ``open-webui`` command, or skip (locally) / fail (``CI=true``) with how to install it."""
    command = executable()
    if command is None:
        message = (f"Open WebUI {VERSION} is not installed in {venv_path()}: "
                   f"run `bash {SETUP_SCRIPT.relative_to(REPO)}` (about 3 minutes, 3 GB)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return command


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class OpenWebUI:
    """A running Open WebUI: its URL, an admin bearer token, its fake provider, REST helpers."""

    url: str
    provider: FakeProvider
    proc: subprocess.Popen[bytes]
    log_path: Path
    token: str = ""
    http: requests.Session = field(default_factory=requests.Session)

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.http.request(method, self.url + path, headers=headers, **kwargs)

    def sign_in(self) -> str:
        """Auth off: any sign-in is the admin's; keep its token for the REST helpers and the browser."""
        response = self.http.post(self.url + "/api/v1/auths/signin", json={"email": "", "password": ""}, timeout=30)
        response.raise_for_status()
        self.token = response.json()["token"]
        return self.token

    def model_ids(self, refresh: bool = False) -> list[str]:
        """``GET /api/models``: what the page would list; rebuilds the server's registry as a side effect."""
        response = self.api("GET", "/api/models", params={"refresh": "true"} if refresh else None)
        response.raise_for_status()
        return [model["id"] for model in response.json()["data"]]

    def create_chat(self, models: list[str], title: str = "Saved chat") -> dict[str, Any]:
        """A saved chat as the page creates one (``POST /api/v1/chats/new``) with one exchange in its history."""
        user_id, reply_id = secrets.token_hex(8), secrets.token_hex(8)
        now = int(time.time())
        history = {"currentId": reply_id, "messages": {
            user_id: {"id": user_id, "parentId": None, "childrenIds": [reply_id], "role": "user",
                      "content": "Hello", "models": models, "timestamp": now},
            reply_id: {"id": reply_id, "parentId": user_id, "childrenIds": [], "role": "assistant",
                       "content": f"Reply from {models[0]}.", "model": models[0], "done": True, "timestamp": now},
        }}
        chat = {"title": title, "models": models, "history": history, "params": {}, "tags": [], "files": [],
                "messages": [{"role": "user", "content": "Hello"},
                             {"role": "assistant", "content": f"Reply from {models[0]}."}],
                "timestamp": now * 1000}
        response = self.api("POST", "/api/v1/chats/new", json={"chat": chat})
        response.raise_for_status()
        return response.json()

    def chat(self, chat_id: str) -> dict[str, Any]:
        """The stored chat (``GET /api/v1/chats/<id>``); its ``chat.models`` is the chat's model list."""
        response = self.api("GET", f"/api/v1/chats/{chat_id}")
        response.raise_for_status()
        return response.json()

    def stored_models(self, chat_id: str) -> list[str]:
        return list(self.chat(chat_id)["chat"].get("models") or [])

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start(provider: FakeProvider, data_dir: Path, deadline: float = START_DEADLINE) -> OpenWebUI:
    """Start ``open-webui serve`` on a free loopback port and return once ``GET /ready`` answers 200."""
    command = require_executable()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, **OFFLINE_ENV,
           "DATA_DIR": str(data_dir),
           "WEBUI_SECRET_KEY": secrets.token_urlsafe(24),
           "OPENAI_API_BASE_URLS": provider.base_url,
           "OPENAI_API_KEYS": API_KEY,
           "HF_HOME": str(data_dir / "hf")}
    log_path = data_dir / "open-webui.log"
    log = log_path.open("wb")  # a file, not a pipe: a chatty server can never block on a full pipe
    proc = subprocess.Popen([str(command), "serve", "--host", "127.0.0.1", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data_dir, start_new_session=True)
    log.close()
    server = OpenWebUI(url=f"http://127.0.0.1:{port}", provider=provider, proc=proc, log_path=log_path)
    end = time.monotonic() + deadline
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"open-webui exited with {proc.returncode} before it was ready:\n"
                                     f"{server.log_tail()}")
            try:
                if requests.get(server.url + "/ready", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > end:
                raise AssertionError(f"open-webui not ready within {deadline}s:\n{server.log_tail()}")
            time.sleep(POLL)  # polling readiness with a deadline, not a fixed delay
        server.sign_in()
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: OpenWebUI) -> None:
    """SIGTERM the server's process group (uvicorn and any child), SIGKILL it if it outlives the deadline."""
    server.http.close()
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGTERM)
        try:
            server.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


@pytest.fixture(scope="module")
def open_webui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenWebUI]:
    """One Open WebUI per test module (a start costs 20-40 s), its data in a fresh temporary folder."""
    require_executable()
    with FakeProvider("openai", list(MODELS), api_key=API_KEY) as provider:
        server = start(provider, tmp_path_factory.mktemp("open-webui"))
        try:
            yield server
        finally:
            stop(server)


@pytest.fixture
def open_webui(open_webui_server: OpenWebUI) -> Iterator[OpenWebUI]:
    """The module's Open WebUI with its provider back to the default list and the server's registry rebuilt."""
    provider = open_webui_server.provider
    provider.configure(latency=0, fault=None, models=list(MODELS))
    provider.reset()
    assert open_webui_server.model_ids(refresh=True) == list(MODELS)
    yield open_webui_server
    provider.configure(latency=0, fault=None, models=list(MODELS))
