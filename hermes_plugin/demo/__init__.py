"""The naive reference host app (``hermes-plugin demo``): run it, watch the model-overwrite race, turn the guard on."""

from __future__ import annotations

import os
import tempfile
from typing import Any

from .app import LOCALAI_LIVE, OPENROUTER_LIVE, create_app, demo_providers

__all__ = ["FAIL_MODES", "create_app", "demo_providers", "run_demo"]

# --fail value -> the openrouter provider's fault ("static" breaks the host's own static list instead).
FAIL_MODES: dict[str, str | None] = {"none": None, "live": "500", "static": None, "timeout": "timeout",
                                     "refused": "refused"}


def run_demo(host: str = "127.0.0.1", port: int = 8787, latency_ms: int = 300, static_latency_ms: int = 0,
             fail: str = "none", guard: bool = True, data_dir: str | os.PathLike[str] | None = None,
             fetch_timeout: float = 10) -> None:
    """Start two simulated providers on loopback and the demo host; serve until Ctrl-C."""
    from werkzeug.serving import make_server

    from ..testing.fake_provider import FakeProvider

    if fail not in FAIL_MODES:
        raise ValueError(f"fail must be one of {', '.join(FAIL_MODES)}, got {fail!r}")
    if latency_ms < 0 or static_latency_ms < 0:
        raise ValueError("latencies must be >= 0 ms")
    latency = latency_ms / 1000
    openrouter = FakeProvider("openai", OPENROUTER_LIVE, latency=latency, fault=FAIL_MODES[fail]).start()
    localai = FakeProvider("ollama", LOCALAI_LIVE, latency=latency).start()
    try:
        data_dir = data_dir or tempfile.mkdtemp(prefix="hermes-demo-")
        app = create_app(demo_providers(openrouter.base_url, localai.base_url), data_dir, guard=guard,
                         static_latency_ms=static_latency_ms, static_fail=fail == "static",
                         fetch_timeout=fetch_timeout)
        server: Any = make_server(host, port, app, threaded=True)
        url = f"http://{host}:{server.port}/"
        print(f"hermes-plugin demo, guard {'on' if guard else 'OFF'}: {url}")
        print(f"  sessions in {data_dir}; session 'kimi' holds a model only the live catalog lists")
        print(f"  providers: openrouter {openrouter.url} (live latency {latency_ms} ms, fail={fail}), "
              f"localai {localai.url}")
        print(f"  change a provider while running: curl -X POST {openrouter.url}/_fake/config "
              "-H 'Content-Type: application/json' -d '{\"latency\": 1.5}'")
        print("  Ctrl-C to stop", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        openrouter.stop()
        localai.stop()
