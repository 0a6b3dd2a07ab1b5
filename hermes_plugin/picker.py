"""Custom model pickers that are not a ``<select>``: the adapter a page declares so the guard can use them.

The adapter says how to read the model the picker shows, how to open its list, how options are marked
and which attribute carries an option's model id. ``static/hermes-picker.js`` reads it from the browser
config; pages without an adapter never load that script.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

# key -> (required, what it is); every value is a non-empty string.
ADAPTER_KEYS = {
    "shown": (True, "CSS selector of the element that shows the chosen model"),
    "shown_attr": (False, "attribute of `shown` holding the model's name (default: its text)"),
    "shown_prefix": (False, "text before the model's name in `shown` (e.g. 'Selected model: ')"),
    "open": (False, "CSS selector clicked to open and close the list (default: `shown`)"),
    "option": (True, "CSS selector of one option of the open list"),
    "option_value": (True, "attribute of an option holding its model id"),
}


def check_picker_adapter(value: Any, where: str = "HERMES_PLUGIN_PICKER_ADAPTER") -> dict[str, str] | None:
    """The validated adapter (None for none); a ConfigError naming the key otherwise."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table of {', '.join(ADAPTER_KEYS)}")
    unknown = set(value) - set(ADAPTER_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (known: {', '.join(ADAPTER_KEYS)})")
    for key, (required, what) in ADAPTER_KEYS.items():
        if key not in value:
            if required:
                raise ConfigError(f"{where}: {key} is required ({what})")
            continue
        if not isinstance(value[key], str) or (not value[key] and key != "shown_prefix"):
            raise ConfigError(f"{where}: {key} must be a non-empty string ({what})")
    return dict(value)
