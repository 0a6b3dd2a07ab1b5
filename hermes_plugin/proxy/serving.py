"""The werkzeug server ``hermes-plugin proxy`` runs: refuses request-targets before Python rewrites them."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class ProxyRequestHandler(WSGIRequestHandler):
    """``http.server`` turns ``GET //host/x`` into ``/host/x`` before the app sees it: refuse it here instead."""

    def parse_request(self) -> bool:
        words = self.raw_requestline.split()
        if len(words) >= 2 and words[1].startswith(b"//"):
            self.command, self.request_version, self.close_connection = "GET", "HTTP/1.1", True
            body = json.dumps({"error": "bad_request",
                               "detail": "the request-target must be a path starting with a single '/'"}).encode()
            self.send_response_only(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            return False
        return super().parse_request()


def make_proxy_server(host: str, port: int, app: Any) -> BaseWSGIServer:
    """A threaded werkzeug server for the proxy app."""
    return make_server(host, port, app, threaded=True, request_handler=ProxyRequestHandler)
