"""WebSocket fan-out: catalog and session-model events to every open tab, never blocking the publisher.

With a shared state store, events also travel to the other workers (Redis pub/sub, or the SQLite
event table on one host), each of which re-sends them to its own clients.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from typing import Any

from .state import StateStore, StateUnavailable

log = logging.getLogger(__name__)

# How often a quiet connection checks that its peer is still there.
IDLE_CHECK_SECONDS = 5.0


class Client:
    """One connected socket: a bounded queue the hub fills and the socket's own thread drains."""

    def __init__(self, maxsize: int) -> None:
        self.queue: queue.Queue[str] = queue.Queue(maxsize=maxsize)
        self.closed = threading.Event()

    def next_message(self, timeout: float) -> str | None:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return None


class Hub:
    """Publish JSON events to all clients; a client too slow to keep up is dropped, not waited for."""

    def __init__(self, queue_size: int = 100, fleet: StateStore | None = None) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.queue_size = queue_size
        self._clients: set[Client] = set()
        self._lock = threading.Lock()
        self.dropped = 0
        self.fleet = fleet if fleet is not None and fleet.shared else None
        if self.fleet is not None:
            self.fleet.listen(self._from_fleet)

    def _from_fleet(self, message: dict[str, Any]) -> None:
        if message.get("type") == "ws" and isinstance(message.get("event"), dict):
            self.publish(message["event"], fleet=False)

    def connect(self) -> Client:
        client = Client(self.queue_size)
        with self._lock:
            self._clients.add(client)
        return client

    def disconnect(self, client: Client) -> None:
        client.closed.set()
        with self._lock:
            self._clients.discard(client)

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)

    def publish(self, event: dict[str, Any], fleet: bool = True) -> None:
        """Send ``event`` to every worker's clients (this one's included, through the same channel, so all
        clients see events in one order); ``fleet=False`` sends only to this process's clients."""
        if fleet and self.fleet is not None:
            try:
                self.fleet.publish(fleet_message(event), echo=True)
                return
            except StateUnavailable as exc:  # the local tabs still hear it; the others catch up on their next read
                log.warning("hermes-plugin: WebSocket event not sent to other workers: %s", exc)
        message = json.dumps(event)
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            try:
                client.queue.put_nowait(message)
            except queue.Full:
                # A full queue means the peer stopped reading: drop it so writers never wait on it.
                log.info("hermes-plugin: dropping a WebSocket client that is %d events behind", self.queue_size)
                self.dropped += 1
                self.disconnect(client)


def fleet_message(event: dict[str, Any]) -> dict[str, Any]:
    """How a WebSocket event travels between workers (``Hub`` re-sends it to its own clients)."""
    return {"type": "ws", "event": event}


def refuse_input(ws: Any, client: Client) -> None:
    """The protocol is server -> client only: a client that sends anything is let go, so its input never piles up."""
    try:
        while ws.connected and not client.closed.is_set():
            if ws.receive(timeout=IDLE_CHECK_SECONDS) is not None:
                break
    except Exception:  # a closed or broken socket: the connection ends either way
        pass
    client.closed.set()
    try:
        client.queue.put_nowait("")  # wake the sender so it ends now, not at its next idle check
    except queue.Full:
        pass


def serve(ws: Any, hub: Hub) -> None:
    """Run one connection: say hello once registered (clients may rely on it), then forward events."""
    client = hub.connect()
    threading.Thread(target=refuse_input, args=(ws, client), daemon=True, name="hermes-ws-input").start()
    try:
        ws.send(json.dumps({"type": "hello"}))
        while ws.connected and not client.closed.is_set():
            message = client.next_message(IDLE_CHECK_SECONDS)
            if message is not None and not client.closed.is_set():
                ws.send(message)
    finally:
        hub.disconnect(client)
