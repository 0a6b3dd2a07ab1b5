"""pytest plugin: fixtures to prove a host app has no model-overwrite race (see docs/testing.md).

Loaded by every pytest run through the ``pytest11`` entry point, so everything heavy (Flask, Selenium,
the fake providers) is imported inside the fixtures, never at module import. The helpers behind the
fixtures live in ``hermes_plugin.testing``: ``recorder`` (model writes), ``browser`` (Chromium),
``servers`` (loopback servers) and ``fake_provider``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .testing.browser import CHROMIUM_FLAGS, REQUIRE_BROWSER_ENV, chromium_paths, make_chromium, reset_chromium
from .testing.recorder import WRITE_METHODS, ModelChange, ModelWrite, ModelWriteRecorder

__all__ = [
    "CHROMIUM_FLAGS",
    "REQUIRE_BROWSER_ENV",
    "WRITE_METHODS",
    "ModelChange",
    "ModelWrite",
    "ModelWriteRecorder",
    "chromium_paths",
    "make_chromium",
    "reset_chromium",
]


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
