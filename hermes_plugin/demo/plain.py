"""The demo host without Flask: the same API and page on ``http.server``, as hermes-webui is served.

It knows nothing of hermes-plugin; put ``hermes-plugin proxy --preset demo`` in front of it to guard it.
Reuses the Flask build's template, static files, session store and provider tables, so both builds are
the same app to a browser.
"""

from __future__ import annotations

import json
import mimetypes
import os
import threading
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from .. import jsontext
from ..errors import InvalidModelId
from ..models import validate_write_id
from .app import HERE
from .app import seed_sessions as _seed
from .store import SessionStore

MAX_BODY = 1 * 2**20  # the demo's writes are small JSON objects


class PlainDemo:
    """App state and routes; ``serve()`` starts a ThreadingHTTPServer for it on loopback."""

    def __init__(self, providers: Mapping[str, Mapping[str, Any]], data_dir: str | os.PathLike[str],
                 static_latency_ms: int = 0, cache_ttl: float = 300, fetch_timeout: float = 10,
                 live_cache_ttl: float = 600, seed: bool = True, static_fail: bool = False,
                 guard_label: str = "off") -> None:
        from ..catalog import CatalogService
        from ..plugins import make_plugin_manager

        self.providers = {pid: dict(table) for pid, table in providers.items()}
        self.store = SessionStore(data_dir)
        if seed:
            _seed(self.store)
        default = next((m for t in self.providers.values() for m in t.get("static", [])), "")
        self.settings = {"default_model": default}
        self.static_latency_ms, self.static_fail = static_latency_ms, static_fail
        self.live_cache_ttl, self.guard_label = live_cache_ttl, guard_label
        self.catalog = CatalogService(make_plugin_manager(load=""), providers_config=self.providers, cache="memory",
                                      expire_after=cache_ttl, timeout=(min(3.05, fetch_timeout), fetch_timeout),
                                      total_timeout=fetch_timeout)
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())
        self.templates.globals["url_for"] = lambda endpoint, filename: f"/static/{filename}"
        self.server: ThreadingHTTPServer | None = None

    # -- routes: (status, JSON-able body) -----------------------------------------------------------

    def get(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/api/sessions":
            keys = ("session_id", "title", "model", "provider")
            return 200, {"sessions": [{k: s[k] for k in keys} for s in self.store.all()]}
        if path == "/api/session":
            session = self.store.get(query.get("session_id", ""))
            return (200, {"session": session}) if session else (404, {"error": "not_found", "detail": "no such session"})
        if path == "/api/models":
            if self.static_latency_ms:
                time.sleep(self.static_latency_ms / 1000)  # the simulated slow host of the upstream bug's second race
            if self.static_fail:
                return 503, {"error": "static_failed", "detail": "static model list unavailable"}
            return 200, {"groups": [{"provider": pid, "label": t.get("label") or pid,
                                     "models": [{"id": m, "label": m} for m in t.get("static", [])]}
                                    for pid, t in self.providers.items()]}
        if path == "/api/models/live":
            provider = query.get("provider", "")
            if provider not in self.providers:
                return 404, {"error": "unknown_provider", "detail": f"Unknown provider: {provider}"}
            snap = self.catalog.catalog(provider)
            live = [{"id": m.id, "label": m.label or m.id} for m in snap.models if m.source == "live"]
            payload = {"provider": provider, "state": snap.state, "error": snap.error, "models": live}
            return (502 if not live and snap.state == "failed" else 200), payload
        if path == "/api/settings":
            return 200, self.settings
        return 404, {"error": "not_found", "detail": "no such route"}

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        required = {"/api/settings": ("default_model",), "/api/session/update": ("session_id", "model"),
                    "/api/session/new": ("model",), "/api/chat/start": ("session_id", "model", "message")}
        if path not in required:
            return 404, {"error": "not_found", "detail": "no such route"}
        problem = _check(body, required[path])
        if problem:
            return 400, {"error": "bad_request", "detail": problem}
        text = lambda name: body.get(name) if isinstance(body.get(name), str) else None  # noqa: E731
        if path == "/api/settings":
            self.settings["default_model"] = body["default_model"]
            return 200, self.settings
        if path == "/api/session/new":
            return 200, {"session": self.store.create(body["model"], provider=text("provider"))}
        if path == "/api/session/update":
            session = self.store.update(body["session_id"], model=body["model"], provider=text("provider"),
                                        title=text("title"))
            return (200, {"session": session}) if session else (404, {"error": "not_found", "detail": "no such session"})
        model = body["model"]
        if self.store.update(body["session_id"], model=model) is None:
            return 404, {"error": "not_found", "detail": "no such session"}
        reply = f"[{model}] echo: {body['message']}"
        self.store.append_message(body["session_id"], "user", body["message"], model)
        self.store.append_message(body["session_id"], "assistant", reply, model)
        return 200, {"reply": reply, "model": model}

    def page(self, query: dict[str, str]) -> bytes:
        sessions = self.store.all()
        initial = query.get("session") or (sessions[0]["session_id"] if sessions else "")
        return self.templates.get_template("index.html").render(
            default_model=self.settings["default_model"], initial_session=initial,
            live_cache_ttl=self.live_cache_ttl, guard=self.guard_label).encode()

    # -- serving ------------------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> PlainDemo:
        """Listen in a daemon thread; ``url`` says where; ``stop()`` ends it."""
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         name="plain-demo", daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None, "not serving"
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        self.catalog.close()


def _check(body: Any, required: tuple[str, ...]) -> str | None:
    if not isinstance(body, dict):
        return "expected a JSON object"
    for name in required:
        if not isinstance(body.get(name), str) or not body[name]:
            return f"{name} must be a non-empty string"
    if "model" in body:
        try:
            validate_write_id(body["model"])
        except InvalidModelId as exc:
            return f"model: {exc}"
    return None


def _handler(app: PlainDemo) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real app server would
        # Buffered: headers and body leave in one write (two small writes on a kept-alive connection meet
        # Nagle + delayed ACK, 40 ms per response); http.server flushes after every request.
        wbufsize = -1

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet like the Flask build's test server

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/":
                self._send(200, "text/html; charset=utf-8", app.page(query))
            elif url.path == "/favicon.ico":
                self._send(204, None, b"")
            elif url.path.startswith("/static/"):
                self._static(url.path.removeprefix("/static/"))
            else:
                self._json(*app.get(url.path, query))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                self._json(413, {"error": "too_large", "detail": "body too large"})
                return
            raw = self.rfile.read(length)
            if "json" not in self.headers.get("Content-Type", ""):
                self._json(415, {"error": "unsupported_media_type", "detail": "send JSON"})
                return
            try:
                body = jsontext.loads(raw)
            except ValueError:  # malformed, or nested too deep to read safely
                self._json(400, {"error": "bad_request", "detail": "malformed JSON"})
                return
            self._json(*app.post(urlsplit(self.path).path, body))

        def _static(self, name: str) -> None:
            folder = (HERE / "static").resolve()
            path = (folder / name).resolve()
            if path.parent != folder or not path.is_file():
                self._json(404, {"error": "not_found", "detail": "no such file"})
                return
            self._send(200, mimetypes.guess_type(path.name)[0] or "application/octet-stream", path.read_bytes())

        def _json(self, status: int, body: Any) -> None:
            self._send(status, "application/json", json.dumps(body).encode())

        def _send(self, status: int, content_type: str | None, data: bytes) -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    return Handler


def main(port: int = 8787, latency_ms: int = 300) -> None:
    """``python -m hermes_plugin.demo.plain [PORT]``: the plain host with two simulated providers, unguarded."""
    import sys
    import tempfile

    from ..testing.fake_provider import FakeProvider
    from .app import LOCALAI_LIVE, OPENROUTER_LIVE, demo_providers

    port = int(sys.argv[1]) if len(sys.argv) > 1 else port
    openrouter = FakeProvider("openai", OPENROUTER_LIVE, latency=latency_ms / 1000).start()
    localai = FakeProvider("ollama", LOCALAI_LIVE, latency=latency_ms / 1000).start()
    demo = PlainDemo(demo_providers(openrouter.base_url, localai.base_url), tempfile.mkdtemp(prefix="hermes-plain-"))
    demo.serve(port=port)
    print(f"plain demo host (no guard): {demo.url}/ — guard it with: "
          f"hermes-plugin proxy --upstream {demo.url} --preset demo", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
        openrouter.stop()
        localai.stop()


if __name__ == "__main__":
    main()
