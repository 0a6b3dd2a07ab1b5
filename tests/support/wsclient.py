"""A minimal blocking WebSocket client for the tests (wsproto over a plain socket)."""

from __future__ import annotations

import json
import socket
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Message, RejectConnection, Request, TextMessage


class Refused(Exception):
    """The server refused the WebSocket handshake with an HTTP status."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"handshake refused: HTTP {status_code}")
        self.status_code = status_code


class RawWS:
    """A minimal blocking WebSocket client on wsproto: unlike simple_websocket's client it keeps frames that
    arrive in the same packet as the handshake (that client can sit on the server's hello until the next frame)."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, timeout: float = 30,
                 path: str = "/hermes-plugin/ws", host_header: str | None = None) -> None:
        """``host_header``: the ``Host`` to send when it is not the address connected to (a proxy must keep it)."""
        host, port = base_url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.conn = WSConnection(ConnectionType.CLIENT)
        self.events: list[Any] = []
        self.closed = False
        self.close_code: int | None = None
        extra = [(name.encode(), value.encode()) for name, value in (headers or {}).items()]
        self.sock.sendall(self.conn.send(Request(host=host_header or f"{host}:{port}", target=path, extra_headers=extra)))
        while not any(isinstance(e, AcceptConnection) for e in self.events):
            rejected = next((e for e in self.events if isinstance(e, RejectConnection)), None)
            if rejected is not None:
                self.sock.close()
                raise Refused(rejected.status_code)
            self._pump()

    def _pump(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            raise ConnectionResetError("server closed the connection")
        self.conn.receive_data(data)
        for event in self.conn.events():
            if isinstance(event, CloseConnection):
                self.closed, self.close_code = True, event.code
            self.events.append(event)

    def receive_text(self) -> str:
        """The next text message (blocking up to the socket timeout); ConnectionResetError once closed."""
        while True:
            for i, event in enumerate(self.events):
                if isinstance(event, TextMessage):
                    del self.events[i]
                    return str(event.data)
            if self.closed:
                raise ConnectionResetError("server closed the connection")
            self._pump()

    def receive_json(self) -> Any:
        """The next text message, decoded as JSON."""
        return json.loads(self.receive_text())

    def send(self, payload: str | bytes) -> None:
        self.sock.sendall(self.conn.send(Message(data=payload)))

    def close(self) -> None:
        self.sock.close()
