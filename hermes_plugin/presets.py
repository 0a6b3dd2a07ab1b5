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
    # The impact report's sources: the sidebar's session list (models included) and the default model.
    "session_list": {"url": "/api/sessions", "sessions": "sessions[]", "session": "session_id", "model": "model"},
    "defaults": [{"url": "/api/settings", "model": "default_model", "name": "default_model"}],
    # The model its config.yaml names for new conversations (a per-profile setting, read as the caller).
    "default_model": {"url": "/api/settings", "model": "default_model"},
    # A saved model no catalogue lists (a preview id, a custom provider's model) stays the session's model,
    # as the app's own later releases keep it: its load-time fallback to the default is kept off the session.
    "absent_model": "keep",
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
    "absent_model": "fallback",  # its retired models are really gone: the host's fallback is the right answer
}

# Open WebUI, from its front end's source. A send (``POST /api/chat/completions``) names the chat's model in
# four fields and the server stores ``user_message.models`` as the chat's list; the page's own chat save
# (``POST /api/v1/chats/<id>``) sends ``chat.models``. The server checks sends against a registry it rebuilds
# on ``GET /api/models``. Its picker is a custom listbox whose options carry the model id in data-value.
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
CHAT_ID = rf"(?P<chat_id>{UUID})"
OPEN_WEBUI: dict[str, Any] = {
    "picker": "#model-selector-model-button, #model-selector-list",
    "picker_adapter": {
        "shown": "#model-selector-model-button",
        "shown_attr": "aria-label",
        "shown_prefix": "Selected model: ",
        "option": "#model-selector-list [role=option][data-value]",
        "option_value": "data-value",
    },
    # The whole list counts as one catalog, named after its route: it has no provider field per list.
    "static_urls": [{"url": r"^/api/(?P<provider>models)(?:\?|$)", "models": "data[].id"}],
    "session_read": {"url": "/api/v1/chats/{session}", "model": "chat.models[]"},
    "session_urls": [{"url": rf"^/api/v1/chats/{CHAT_ID.replace('chat_id', 'session')}$", "model": "chat.models[]",
                      "session": "id"}],
    "writes": [
        # Temporary chats ("temporary:…", "local:…") are never stored: only a saved chat's id is a session.
        {"method": "POST", "url": r"^/api/chat/completions$", "session": "chat_id", "session_match": UUID,
         "model": ["user_message.models[]", "message_ids[].model_id", "model", "model_item.id"]},
        {"method": "POST", "url": rf"^/api/v1/chats/{CHAT_ID}$", "session": "path:chat_id", "model": "chat.models[]"},
    ],
    # Asking the list as the caller rebuilds the server's registry, so a kept model is one it will accept.
    "upstream_models": {"url": "/api/models?refresh=true", "models": "data[].id"},
    "auth_url": "/api/v1/auths/",
}

PRESETS: dict[str, dict[str, Any]] = {"hermes-webui": HERMES_WEBUI, "demo": DEMO, "open-webui": OPEN_WEBUI}


def preset(name: str) -> dict[str, Any]:
    """A fresh copy of a built-in ``[proxy]`` table; ConfigError naming the known ones otherwise."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise ConfigError(f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})") from None
