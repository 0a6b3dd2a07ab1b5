"""The server-side write guard: the decision table of DESIGN.md §5, session versions and the audit log.

Everything here is plain Python with no Flask: ``extension.py`` feeds it what a request carries.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

Outcome = Literal["pass", "keep", "reject", "fallback"]
Intent = Literal["user", "auto"]
INTENTS = ("user", "auto")
ON_KEEP = ("keep", "reject")


@dataclass(frozen=True)
class Decision:
    """What the guard decided for one write proposing ``proposed`` where ``stored`` is saved."""

    outcome: Outcome
    reason: str  # same | user | no_stored_model | model_present | catalog_unknown | model_absent
    session: str | None = None
    stored: str | None = None
    proposed: str | None = None
    intent: Intent = "user"
    availability: str | None = None  # of the stored model: present | absent | unknown (None when not asked)

    @property
    def changes_model(self) -> bool:
        """True when the view may store ``proposed`` (pass/fallback with a different model)."""
        return self.outcome in ("pass", "fallback") and self.proposed is not None and self.proposed != self.stored

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def needs_availability(stored: str | None, proposed: str | None, intent: str) -> bool:
    """Only an automatic write that would replace a stored model depends on the catalog."""
    return intent == "auto" and stored is not None and proposed is not None and proposed != stored


def decide(stored: str | None, proposed: str | None, intent: str, availability: str | None,
           on_keep: str = "keep", session: str | None = None) -> Decision:
    """The table of DESIGN.md §5 (the If-Match row is checked by the caller before this)."""
    if intent not in INTENTS:
        raise ValueError(f"intent must be one of {INTENTS}, got {intent!r}")
    if on_keep not in ON_KEEP:
        raise ValueError(f"on_keep must be one of {ON_KEEP}, got {on_keep!r}")
    common = {"session": session, "stored": stored, "proposed": proposed, "intent": intent}
    if proposed is None or proposed == stored:
        return Decision("pass", "same", availability=availability, **common)  # type: ignore[arg-type]
    if stored is None:
        return Decision("pass", "no_stored_model", availability=availability, **common)  # type: ignore[arg-type]
    if intent == "user":
        return Decision("pass", "user", availability=availability, **common)  # type: ignore[arg-type]
    if availability == "absent":
        return Decision("fallback", "model_absent", availability=availability, **common)  # type: ignore[arg-type]
    # Anything but a confirmed absence keeps the stored model: "unknown" must never rewrite a session.
    reason = "model_present" if availability == "present" else "catalog_unknown"
    outcome: Outcome = "keep" if on_keep == "keep" else "reject"
    return Decision(outcome, reason, availability=availability or "unknown", **common)  # type: ignore[arg-type]


class _LRU:
    """A thread-safe mapping that forgets the least recently used session past ``max_sessions``."""

    def __init__(self, max_sessions: int) -> None:
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def _touch(self, key: str, default: Any) -> Any:
        # caller holds the lock
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        self._data[key] = default
        while len(self._data) > self.max_sessions:
            self._data.popitem(last=False)
        return default

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)


class VersionMap(_LRU):
    """A version per session, 1 the first time it is seen, bumped on every model change."""

    def current(self, session: str) -> int:
        with self._lock:
            return int(self._touch(session, 1))

    def bump(self, session: str) -> int:
        with self._lock:
            version = int(self._touch(session, 1)) + 1
            self._data[session] = version
            return version

    def matches(self, session: str, if_match: str) -> bool:
        """RFC 9110 If-Match against the session's version: ``*`` or any listed ETag (weak or strong)."""
        current = self.current(session)
        for tag in if_match.split(","):
            tag = tag.strip()
            if tag == "*":
                return True
            tag = tag.removeprefix("W/").strip('"')
            if tag == str(current):
                return True
        return False


class AuditLog(_LRU):
    """The last ``per_session`` model changes (and kept/rejected proposals) of each session."""

    def __init__(self, per_session: int = 100, max_sessions: int = 10000) -> None:
        super().__init__(max_sessions)
        if per_session < 1:
            raise ValueError("per_session must be at least 1")
        self.per_session = per_session

    def record(self, decision: Decision, new: str | None, at: float | None = None) -> dict[str, Any]:
        """Append what happened to ``decision.session``'s model: ``new`` is the model stored afterwards."""
        if decision.session is None:
            raise ValueError("cannot audit a write without a session")
        entry = {
            "time": time.time() if at is None else at,
            "old": decision.stored,
            "new": new,
            "proposed": decision.proposed,
            "intent": decision.intent,
            "outcome": decision.outcome,
            "reason": decision.reason,
        }
        with self._lock:
            self._touch(decision.session, deque(maxlen=self.per_session)).append(entry)
        return entry

    def entries(self, session: str) -> list[dict[str, Any]]:
        """Oldest first; an unknown session has none."""
        with self._lock:
            log = self._data.get(session)
            return [dict(entry) for entry in log] if log else []


class SessionLocks:
    """One lock per session that currently has a write in flight; idle sessions hold no memory."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._locks: dict[str, list[Any]] = {}  # session -> [lock, number of holders and waiters]

    @contextmanager
    def hold(self, session: str) -> Iterator[None]:
        with self._mutex:
            entry = self._locks.setdefault(session, [threading.Lock(), 0])
            entry[1] += 1
        entry[0].acquire()
        try:
            yield
        finally:
            entry[0].release()
            with self._mutex:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._locks[session]

    def __len__(self) -> int:
        with self._mutex:
            return len(self._locks)
