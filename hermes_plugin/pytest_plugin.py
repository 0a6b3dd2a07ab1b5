"""pytest plugin: fixtures to prove a host app has no model-overwrite race (see docs/testing.md).

Loaded by every pytest run through the ``pytest11`` entry point, so everything heavy (Flask, Selenium,
the fake providers) is imported inside the fixtures, never at module import.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
REQUIRE_BROWSER_ENV = "HERMES_PLUGIN_REQUIRE_BROWSER"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})


# -- model-write recorder ------------------------------------------------------------------------------


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
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


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


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def model_writes() -> Iterator[ModelWriteRecorder]:
    """A recorder of model writes; ``model_writes.attach(app, read_model=..., routes=[...])``."""
    recorder = ModelWriteRecorder()
    try:
        yield recorder
    finally:
        recorder.detach()


@pytest.fixture
def fake_provider() -> Iterator[Callable[..., Any]]:
    """Factory: ``fake_provider(kind="openai", models=[...], latency=0.0, fault=None)`` -> a started FakeProvider."""
    from hermes_plugin.testing.fake_provider import FakeProvider

    started: list[Any] = []

    def make(kind: str = "openai", models: Any = (), **knobs: Any) -> Any:
        provider = FakeProvider(kind=kind, models=list(models), **knobs)
        provider.start()
        started.append(provider)
        return provider

    try:
        yield make
    finally:
        for provider in reversed(started):
            provider.stop()


@pytest.fixture
def loopback_server() -> Iterator[Callable[[Any], Any]]:
    """Factory: ``loopback_server(wsgi_app)`` -> a started LoopbackServer on 127.0.0.1 (``.url``)."""
    from hermes_plugin.testing.servers import LoopbackServer

    started: list[Any] = []

    def serve(app: Any) -> Any:
        server = LoopbackServer(app)
        server.start()
        started.append(server)
        return server

    try:
        yield serve
    finally:
        for server in reversed(started):
            server.stop()


@pytest.fixture
def loopback(loopback_server: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Alias of ``loopback_server`` (the name docs/internals.md uses)."""
    return loopback_server


def chromium_paths() -> tuple[str | None, str | None]:
    """The system Chromium binary and chromedriver, or None for what is missing."""
    binary = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                               shutil.which("google-chrome"), "/usr/bin/chromium") if p and Path(p).exists()), None)
    driver = next((p for p in (shutil.which("chromedriver"), "/usr/bin/chromedriver") if p and Path(p).exists()), None)
    return binary, driver


def make_chromium(extra_args: tuple[str, ...] = ()) -> Any:
    """A headless Selenium Chrome driver on the system chromium; fails or skips when it is missing."""
    binary, driver_path = chromium_paths()
    if binary is None or driver_path is None:
        missing = " and ".join(n for n, p in (("chromium", binary), ("chromedriver", driver_path)) if p is None)
        message = f"hermes-plugin: {missing} not found (install chromium + chromium-driver for browser tests)"
        if os.environ.get("CI") or os.environ.get(REQUIRE_BROWSER_ENV):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (*CHROMIUM_FLAGS, "--window-size=1280,900", *extra_args):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(30)
    driver.set_page_load_timeout(30)
    return driver


def reset_chromium(driver: Any) -> None:
    """Leave the browser as a new test expects it: one window, no storage or cookies, about:blank."""
    handles = list(driver.window_handles)
    for handle in reversed(handles):
        driver.switch_to.window(handle)
        try:
            driver.execute_script("try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}")
        except Exception:  # a page that is gone or hung: closing or blanking it below is enough
            pass
        if handle != handles[0]:
            driver.close()
    driver.switch_to.window(handles[0])
    driver.delete_all_cookies()
    driver.get("about:blank")


@pytest.fixture(scope="module")
def _hermes_chromium_driver() -> Iterator[Any]:
    driver = make_chromium()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def chromium(_hermes_chromium_driver: Any) -> Iterator[Any]:
    """A headless Chromium WebDriver: one browser per test module, reset (windows, storage, cookies) per test."""
    yield _hermes_chromium_driver
    reset_chromium(_hermes_chromium_driver)
