"""A recorder of model writes: WSGI middleware that notes every request to a host's write routes and the
stored-model change each one caused (the ``model_writes`` fixture)."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import jsonpath

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass
class ModelWrite:
    """One request to a write route, as the server saw it."""

    method: str
    path: str
    body: Any
    session: str | None
    model: Any
    intent: str | None
    status: int | None = None
    decision: str | None = None
    kept: str | None = None
    before: str | None = None
    after: str | None = None
    time: float = field(default_factory=time.monotonic)

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
class ModelChange:
    """A session's stored model changed across one write request."""

    session: str | None
    old: str | None
    new: str | None
    write: ModelWrite


def _dotted(data: Any, path: str) -> Any:
    """The value at a dotted path of a JSON body, or None when it is absent or the body has another shape."""
    try:
        value = jsonpath.get(data, path)
    except jsonpath.PathError:
        return None
    return None if value is jsonpath.MISSING else value


def _status_code(status: str) -> int | None:
    try:
        return int(status.split(" ", 1)[0])
    except ValueError:
        return None


class ModelWriteRecorder:
    """Records every request to a host's model-write routes and every stored-model change they cause.

    Attach it as WSGI middleware (works at any time, even after the app served requests)::

        model_writes.attach(app, read_model=store.model, routes=[r"/api/session/update"])
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._writes: list[ModelWrite] = []
        self._in_flight = 0
        self._detach: list[Callable[[], None]] = []

    def attach(self, app: Any, read_model: Callable[[str], str | None], routes: list[str] | None = None,
               session: str = "session_id", model: str = "model") -> ModelWriteRecorder:
        """Wrap ``app.wsgi_app``; ``routes`` are regexes matched against the whole path (a ``(?P<session>...)``
        group takes the session from the URL); ``session``/``model`` are dotted paths into the JSON body.
        With ``routes=None`` every POST/PUT/PATCH is recorded."""
        patterns = [re.compile(r) for r in routes] if routes is not None else None
        inner = app.wsgi_app

        def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            path = environ.get("PATH_INFO", "")
            method = environ.get("REQUEST_METHOD", "GET")
            match = None
            if patterns is None:
                match = re.match(".*", path) if method in WRITE_METHODS else None
            else:
                match = next((m for p in patterns if (m := p.fullmatch(path))), None)
            if match is None or method not in WRITE_METHODS:
                return inner(environ, start_response)
            return self._record(inner, environ, start_response, match, read_model, session, model)

        own = "wsgi_app" in vars(app)  # Flask's is a method: restoring means deleting our instance attribute
        app.wsgi_app = middleware
        self._detach.append(lambda: setattr(app, "wsgi_app", inner) if own else delattr(app, "wsgi_app"))
        return self

    def detach(self) -> None:
        while self._detach:
            self._detach.pop()()

    def _record(self, inner: Any, environ: dict[str, Any], start_response: Callable[..., Any], match: re.Match[str],
                read_model: Callable[[str], str | None], session_path: str, model_path: str) -> Any:
        # Buffer the body so both we and the app can read it.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        groups = match.groupdict()
        session_id = groups.get("session") or _dotted(body, session_path)
        session_id = session_id if isinstance(session_id, str) else None
        write = ModelWrite(
            method=environ.get("REQUEST_METHOD", ""), path=environ.get("PATH_INFO", ""), body=body,
            session=session_id, model=_dotted(body, model_path), intent=environ.get("HTTP_X_HERMES_INTENT"),
        )
        write.before = self._read(read_model, session_id)
        with self._cond:
            self._in_flight += 1

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            write.status = _status_code(status)
            found = {k.lower(): v for k, v in headers}
            write.decision = found.get("x-hermes-decision")
            write.kept = found.get("x-hermes-model-kept")
            return start_response(status, headers, exc_info)

        try:
            # Flask builds the whole response inside this call, so the view has run when it returns.
            return inner(environ, capture)
        finally:
            write.after = self._read(read_model, session_id)
            with self._cond:
                self._in_flight -= 1
                self._writes.append(write)
                self._cond.notify_all()

    @staticmethod
    def _read(read_model: Callable[[str], str | None], session_id: str | None) -> str | None:
        if session_id is None:
            return None
        try:
            return read_model(session_id)
        except Exception as exc:  # a reader that fails on bad ids must not turn a 400 into a 500
            return f"<read_model failed: {exc!r}>"

    @property
    def writes(self) -> list[ModelWrite]:
        with self._cond:
            return list(self._writes)

    @property
    def changes(self) -> list[ModelChange]:
        return [ModelChange(w.session, w.before, w.after, w) for w in self.writes if w.changed]

    def writes_for(self, session: str) -> list[ModelWrite]:
        return [w for w in self.writes if w.session == session]

    def clear(self) -> None:
        with self._cond:
            self._writes.clear()

    def wait_for(self, predicate: Callable[[list[ModelWrite]], bool], timeout: float = 10.0,
                 message: str = "condition") -> list[ModelWrite]:
        """Block until ``predicate(writes)`` holds (woken by each recorded write); AssertionError on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(list(self._writes)), timeout):
                raise AssertionError(f"model_writes: timed out after {timeout}s waiting for {message}; "
                                     f"writes so far: {self._writes!r}")
            return list(self._writes)

    def wait_for_writes(self, n: int, timeout: float = 10.0, where: Callable[[ModelWrite], bool] | None = None
                        ) -> list[ModelWrite]:
        """Block until at least ``n`` writes (matching ``where``) were recorded; returns them."""
        def select(writes: list[ModelWrite]) -> list[ModelWrite]:
            return [w for w in writes if where is None or where(w)]
        return select(self.wait_for(lambda ws: len(select(ws)) >= n, timeout, f"{n} write(s)"))

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no recorded route is mid-request."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._in_flight == 0, timeout):
                raise AssertionError(f"model_writes: {self._in_flight} write(s) still in flight after {timeout}s")
