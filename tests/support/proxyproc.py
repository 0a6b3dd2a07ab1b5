"""Run ``hermes-plugin proxy`` as a real process (werkzeug via the CLI, or gunicorn) and talk to it raw."""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from support.processes import ServingCommand

SERVERS = ("werkzeug", "gunicorn")
STOP_WAIT = 15.0  # upper bound on a graceful stop; a process still running then is killed


@contextlib.contextmanager
def proxy_process(server: str, upstream: str, config: Path, workers: int = 1) -> Iterator[str]:
    """``hermes-plugin proxy`` under ``server``; yields its base URL once it listens, stops it afterwards."""
    if server == "werkzeug":  # prints "hermes-plugin proxy: http://127.0.0.1:PORT/ -> upstream"
        args = [sys.executable, "-c", "from hermes_plugin.cli import main; main()", "proxy",
                "--upstream", upstream, "--config", str(config), "--port", "0"]
    else:  # logs "Listening at: http://127.0.0.1:PORT" on stderr
        factory = f'hermes_plugin.proxy:create_app(upstream="{upstream}", config="{config}")'
        args = [sys.executable, "-m", "gunicorn", "-b", "127.0.0.1:0", "-w", str(workers), "-k", "gthread",
                "--threads", "16", "--graceful-timeout", "2", factory]
    with ServingCommand(args, env={**os.environ, "PYTHONUNBUFFERED": "1"}, merge_stderr=True) as served:
        try:
            yield served.url
        finally:
            served.interrupt(signal.SIGTERM, deadline=STOP_WAIT)  # gunicorn stops its workers on SIGTERM


class Decoy:
    """A raw TCP listener that records every connection: a target the proxy must never reach."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.received.append(conn.recv(65536) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")
                with contextlib.suppress(OSError):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\ndecoy")

    def sync(self) -> list[bytes]:
        """What the decoy received so far, once it has accepted every connection made before this call."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as probe:
            probe.sendall(b"SENTINEL")
            deadline = time.monotonic() + 10
            while b"SENTINEL" not in self.received and time.monotonic() < deadline:
                select.select([probe], [], [], 0.02)  # connections are accepted in order: ours is last
        assert b"SENTINEL" in self.received, "the decoy stopped accepting"
        return [data for data in self.received if data != b"SENTINEL"]

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


def raw_request(base_url: str, data: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``data`` as is on a fresh connection; returns (status code, the whole answer as received)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        while length and len(body) < int(length.group(1)) and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    status = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    assert status, f"no HTTP status line in {answer[:200]!r}"
    return int(status.group(1)), head + b"\r\n\r\n" + body
