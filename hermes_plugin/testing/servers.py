"""A real HTTP server on 127.0.0.1 for any WSGI app, in a background thread (tests, demo, pytest plugin)."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

# How often serve_forever checks for shutdown: bounds how long stop() waits for the loop to exit.
POLL_INTERVAL = 0.05


class _QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without the per-request access log line (errors are still logged)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class LoopbackServer:
    """Serve ``wsgi_app`` on ``127.0.0.1`` (port 0 = any free port) with one thread per request.

    Request threads are daemon threads and are never joined, so ``stop()`` returns promptly even
    while a request hangs; the listening socket is closed, so new connections are refused.
    ``start()`` after ``stop()`` listens again on the same port.
    """

    def __init__(self, wsgi_app: Any, port: int = 0, host: str = "127.0.0.1") -> None:
        self.app = wsgi_app
        self.host = host
        self._port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("server not started yet")
        return self._port

    @property
    def bound(self) -> bool:
        """Whether a port has been chosen (it stays the same across stop()/start())."""
        return bool(self._port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> LoopbackServer:
        with self._lock:
            if self._server is not None:
                return self
            server = make_server(self.host, self._port, self.app, threaded=True, request_handler=_QuietHandler)
            self._port = server.socket.getsockname()[1]  # the real port once bound (stable across restarts)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL},
                                      name=f"loopback-{self._port}", daemon=True)
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        server.shutdown()  # waits for the serve loop only, not for in-flight request threads
        server.server_close()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
