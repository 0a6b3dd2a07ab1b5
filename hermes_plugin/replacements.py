"""The retirement map: retired model ids -> suggested replacements, from config and plugins.

``HERMES_PLUGIN_MODEL_REPLACEMENTS`` wins over plugins (``hermes_plugin_model_replacements`` hook). A
suggestion is only made when the replacement is not itself confirmed absent; a chain (a -> b -> c) is
followed while each step is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError, InvalidModelId
from .models import validate_write_id

log = logging.getLogger(__name__)

MAX_CHAIN = 5  # a -> b -> c ... steps followed before giving up (and the end of a loop)


def check_table(table: Any, where: str = "HERMES_PLUGIN_MODEL_REPLACEMENTS") -> dict[str, str]:
    """A ``{retired: replacement}`` table of valid model ids; ConfigError naming the bad entry."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table of model id -> replacement model id")
    out: dict[str, str] = {}
    for old, new in table.items():
        try:
            out[validate_write_id(old)] = validate_write_id(new)
        except InvalidModelId as exc:
            raise ConfigError(f"{where}: {str(old)[:100]!r} -> {str(new)[:100]!r}: {exc}") from None
        if old == new:
            raise ConfigError(f"{where}: {old!r} is mapped to itself")
    return out


class Replacements:
    """Looks up suggestions; ``pm`` supplies plugin maps (asked each time: a plugin may load its map lazily)."""

    def __init__(self, config_table: Mapping[str, str], pm: Any = None) -> None:
        self.config_table = dict(config_table)
        self.pm = pm

    def table(self) -> dict[str, str]:
        """Every known mapping: plugins first, config on top."""
        merged: dict[str, str] = {}
        if self.pm is not None:
            for impl in self.pm.hook.hermes_plugin_model_replacements.get_hookimpls():
                try:
                    answer = impl.function()
                    if answer is not None:
                        merged.update(check_table(answer, f"plugin {impl.plugin_name}"))
                except ConfigError as exc:  # a bad map is skipped, never half-used
                    log.warning("hermes-plugin: ignoring a retirement map: %s", exc)
                except Exception:  # a broken plugin map must not break writes
                    log.exception("hermes-plugin: hermes_plugin_model_replacements of %s failed", impl.plugin_name)
        merged.update(self.config_table)
        return merged

    def suggest(self, model: str, availability: Callable[[str], str]) -> str | None:
        """The replacement to offer for ``model``: the first one in its chain not confirmed absent."""
        table = self.table()
        seen = {model}
        current = model
        for _ in range(MAX_CHAIN):
            nxt = table.get(current)
            if nxt is None or nxt in seen:
                return None
            if availability(nxt) != "absent":
                return nxt
            seen.add(nxt)
            current = nxt
        return None
