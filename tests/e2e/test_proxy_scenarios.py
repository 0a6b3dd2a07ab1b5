"""S1-S13 again, with the demo host on plain ``http.server`` (no Flask) and the guard in ``hermes-plugin proxy``.

The scenarios are test_scenarios.py's own functions, imported, not copied: only the ``demo_host`` fixture
differs. ``demo_host(guard=False)`` is the plain host alone (no proxy), so the guard-off test shows the
bug on this build too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import WRITE_ROUTES, DemoHost
from test_scenarios import *  # noqa: F403  (the S1-S13 tests, collected again with the fixture below)

from hermes_plugin.demo.app import demo_providers
from hermes_plugin.demo.plain import PlainDemo
from hermes_plugin.presets import preset
from hermes_plugin.proxy import create_app, proxy_config
from hermes_plugin.pytest_plugin import ModelWriteRecorder

pytestmark = pytest.mark.e2e


@dataclass
class StoreChange:
    session: str | None
    old: str | None
    new: str | None


class StoreChanges:
    """Without a proxy there is no WSGI app to record at: record stored-model changes at the store instead."""

    def __init__(self, store: Any) -> None:
        self.changes: list[StoreChange] = []
        update = store.update

        def recording(session_id: str, **fields: Any) -> Any:
            before = store.model(session_id)
            result = update(session_id, **fields)
            if store.model(session_id) != before:
                self.changes.append(StoreChange(session_id, before, store.model(session_id)))
            return result

        store.update = recording


@pytest.fixture
def demo_host(tmp_path: Path, demo_providers_pair: tuple[Any, Any], loopback_server: Callable[[Any], Any],
              model_writes: ModelWriteRecorder, chromium: Any) -> Iterator[Callable[..., DemoHost]]:
    """Factory like conftest's: the plain host, behind the proxy (``--preset demo``) unless ``guard=False``."""
    openrouter, localai = demo_providers_pair
    hosts: list[PlainDemo] = []

    def make(guard: bool = True, fetch_timeout: float = 10, cache_ttl: float = 300, **kwargs: Any) -> DemoHost:
        providers = demo_providers(openrouter.base_url, localai.base_url)
        plain = PlainDemo(providers, tmp_path / "data", fetch_timeout=fetch_timeout, cache_ttl=cache_ttl,
                          guard_label="on" if guard else "off", **kwargs).serve()
        hosts.append(plain)
        if not guard:
            return DemoHost(plain, plain.url, plain.store, openrouter, localai,
                            StoreChanges(plain.store), chromium)  # type: ignore[arg-type]
        # The guard knows the providers, as the Flask build's HERMES_PLUGIN_PROVIDERS does.
        cfg = proxy_config(preset("demo"), providers)
        app = create_app(plain.url, cfg=cfg, app_config={"HERMES_PLUGIN_FETCH_TIMEOUT": fetch_timeout,
                                                         "HERMES_PLUGIN_CACHE_EXPIRE": cache_ttl})
        model_writes.attach(app, read_model=plain.store.model, routes=WRITE_ROUTES)
        server = loopback_server(app)
        return DemoHost(app, server.url, plain.store, openrouter, localai, model_writes, chromium)

    try:
        yield make
    finally:
        for plain in hosts:
            plain.stop()
