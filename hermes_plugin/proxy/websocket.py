"""The WebSocket bridge: upgrades to any path but the plugin's own are pumped to the upstream both ways."""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from flask import Flask, request

from ..redact import printable
from .relay import Proxy
from .urls import client_target, join

log = logging.getLogger("hermes_plugin.proxy")


def client_with_host(client: Any, host: str) -> Any:
    """A simple_websocket Client class whose handshake sends ``Host: host`` (it connects to the URL's address)
    and keeps messages that arrived in the handshake's packet (the stock client sits on them until the next)."""

    class HostClient(client):  # type: ignore[misc, valid-type]
        def handshake(self) -> None:
            self.host = host  # the socket is already connected: only the Host header changes
            super().handshake()
            self.connected = self._handle_events()  # the reader thread starts after this: no race

    return HostClient


def websocket_routes(app: Flask, proxy: Proxy, prefix: str) -> None:
    """WebSocket requests to any path but the plugin's own ``/ws`` are pumped to the upstream both ways."""
    from flask_sock import Sock
    from simple_websocket import Client, ConnectionClosed

    sock = Sock(app)

    def pump(ws: Any, path: str = "") -> None:
        if request.path.startswith(prefix + "/") or request.path == prefix:
            ws.close(reason=1008, message="no such hermes-plugin WebSocket")
            return
        headers = {name: request.headers[name] for name in ("Origin", "Cookie", "Authorization", "User-Agent")
                   if name in request.headers}
        url = join(proxy.ws_upstream, client_target(request.environ))
        try:
            upstream = client_with_host(Client, request.host).connect(url, headers=headers)
        except Exception as exc:  # refused, handshake rejected, DNS: the client only hears "unavailable"
            log.warning("hermes-plugin proxy: upstream WebSocket %s failed: %s", printable(request.path[:200]),
                        type(exc).__name__)
            ws.close(reason=1011, message="upstream unavailable")  # 1011: the server cannot fulfil it
            return

        def down() -> None:
            try:
                while True:
                    ws.send(upstream.receive())
            except ConnectionClosed:
                pass
            finally:
                with contextlib.suppress(ConnectionClosed):  # the client may have closed first
                    ws.close()

        thread = threading.Thread(target=down, name="hermes-proxy-ws", daemon=True)
        thread.start()
        try:
            while True:
                upstream.send(ws.receive())
        except ConnectionClosed:
            pass
        finally:
            upstream.close()
            thread.join(timeout=5)

    sock.route("/", defaults={"path": ""}, endpoint="proxy_ws_root")(pump)
    sock.route("/<path:path>", endpoint="proxy_ws")(pump)
