"""The demo's session store: one JSON file, written atomically so a killed host never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

STORE_NAME = "sessions.json"


class SessionStore:
    """Sessions keyed by id: ``{"session_id", "title", "model", "provider", "messages"}``."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / STORE_NAME
        self._lock = threading.RLock()
        # A host killed mid-write leaves its temp file behind; without this, every crash adds one forever.
        for stale in self.dir.glob(".sessions-*.tmp"):
            stale.unlink(missing_ok=True)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            with self.path.open(encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        # Same directory so os.replace is a rename on one filesystem; fsync so the rename never exposes an empty file.
        fd, tmp = tempfile.mkstemp(prefix=".sessions-", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return sorted(self._read().values(), key=lambda s: s.get("order", 0))

    def get(self, session_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._read().get(session_id)

    def model(self, session_id: str) -> str | None:
        """The stored model of a session (what ``@guard.session_model`` reads)."""
        session = self.get(session_id)
        return session.get("model") if session else None

    def create(self, model: str, title: str = "New chat", provider: str | None = None,
               session_id: str | None = None) -> dict[str, Any]:
        with self._lock:
            data = self._read()
            session_id = session_id or uuid.uuid4().hex[:12]
            session: dict[str, Any] = {"session_id": session_id, "title": title, "model": model, "provider": provider,
                       "messages": [], "order": len(data)}
            data[session_id] = session
            self._write(data)
            return session

    def update(self, session_id: str, **fields: Any) -> dict[str, Any] | None:
        """Set the given fields of one session; None when it does not exist (nothing written)."""
        with self._lock:
            data = self._read()
            session = data.get(session_id)
            if session is None:
                return None
            session.update({k: v for k, v in fields.items() if v is not None})
            self._write(data)
            return session

    def append_message(self, session_id: str, role: str, text: str, model: str | None) -> None:
        with self._lock:
            data = self._read()
            if session_id in data:
                data[session_id]["messages"].append({"role": role, "text": text, "model": model})
                self._write(data)
