"""Built-in ``[proxy]`` tables for known host apps (``hermes-plugin proxy --preset NAME``).

A preset is exactly what a user would write under ``[proxy]`` in the TOML file; docs/proxy.md walks
through ``hermes-webui`` as the example of writing one.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ConfigError

LIVE_URL = r"/api/models/live\?provider=(?P<provider>[^&]+)"
SESSION_URL = r"/api/session\?session_id=(?P<session>[^&]+)"

# hermes-webui, from its public API. Its picker is a custom dropdown over a hidden <select>; it adds live
# models as "@provider:model" while sessions store the bare id.
HERMES_WEBUI: dict[str, Any] = {
    "model_select": "#modelSelect",
    "picker": "#composerModelChip, #composerModelDropdown",
    "model_aliases": [r"^@(?P<provider>[^:]+):(?P<model>.+)$"],
    "static_urls": [{"url": r"/api/models$", "models": "groups[].models[].id", "provider": "groups[].provider_id"}],
    "live_urls": [{"url": LIVE_URL, "models": "models[].id"}],
    # The raw stored model: no message payload, no display-time resolution of the id.
    "session_read": {"url": "/api/session?session_id={session}&messages=0&resolve_model=0", "model": "session.model"},
    "session_urls": [{"url": SESSION_URL, "model": "session.model", "session": "session.session_id"}],
    # The model its config.yaml names for new conversations (a per-profile setting, read as the caller).
    "default_model": {"url": "/api/settings", "model": "default_model"},
    # The app's own model write, replayed by the proxy for undo and the user's answers to its prompts.
    "session_write": {"method": "POST", "url": "/api/session/update",
                      "body": {"session_id": "{session}", "model": "{model}"}},
    "writes": [
        {"method": "POST", "url": r"^/api/session/update$", "session": "session_id", "model": "model"},
        {"method": "POST", "url": r"^/api/session/new$", "model": "model"},
        {"method": "POST", "url": r"^/api/chat/start$", "session": "session_id", "model": "model"},
    ],
}

# The reference demo host (``hermes-plugin demo --no-guard`` or hermes_plugin.demo.plain): the same routes,
# but its static groups name the provider ``provider``, it reports the live state, and it has a custom picker.
DEMO: dict[str, Any] = {
    **copy.deepcopy(HERMES_WEBUI),
    "model_select": "#modelSelect, [data-hermes-model]",
    "picker": "#modelPicker",
    "static_urls": [{"url": r"/api/models$", "models": "groups[].models[].id", "provider": "groups[].provider"}],
    "live_urls": [{"url": LIVE_URL, "models": "models[].id", "state": "state"}],
}

PRESETS: dict[str, dict[str, Any]] = {"hermes-webui": HERMES_WEBUI, "demo": DEMO}


def preset(name: str) -> dict[str, Any]:
    """A fresh copy of a built-in ``[proxy]`` table; ConfigError naming the known ones otherwise."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})") from None
