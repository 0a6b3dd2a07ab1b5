"""The least a Python relay costs under the same server: a reference target for ``proxy_bench.py --bare``.

Each server thread keeps one http.client connection to the upstream, sends the method, path and Accept
header, reads the whole answer and hands it on with its type and length. No guard, no checks, no header
copying, no streaming: what is left is the WSGI server and the hop itself, which no relay written in Python
and served by gunicorn can avoid. Not for use: it forwards almost nothing a real client sends.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit


def make_app(upstream: str) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    parts = urlsplit(upstream)
    local = threading.local()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        query = environ.get("QUERY_STRING")
        target = environ["PATH_INFO"] + (f"?{query}" if query else "")
        conn.request(environ["REQUEST_METHOD"], target, headers={"Accept": environ.get("HTTP_ACCEPT", "*/*")})
        answer = conn.getresponse()
        body = answer.read()
        start_response(f"{answer.status} {answer.reason}",
                       [("Content-Type", answer.getheader("Content-Type", "")), ("Content-Length", str(len(body)))])
        return [body]

    return app
