"""Hook specifications: every hook a hermes-plugin plugin can implement (see docs/hooks.md)."""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("hermes_plugin")
hookimpl = pluggy.HookimplMarker("hermes_plugin")


@hookspec
def register_catalogs(register: Any) -> None:
    """Declare providers: call ``register(provider_id, static=[...], live=source, label=None)``."""


@hookspec
def register_provider_kinds(register: Any) -> None:
    """Declare config kinds: call ``register(kind, factory)``; ``factory(provider_id, table)`` returns register() kwargs."""


@hookspec(firstresult=True)
def resolve_model_alias(model_id: str, provider: str | None) -> str | None:
    """Return the canonical id for ``model_id`` (e.g. ``@nous:kimi`` -> ``kimi``), or None to leave it."""


@hookspec(firstresult=True)
def hermes_plugin_default_model(request: Any) -> str | None:
    """The model a new session gets when the page creates one without a user's pick; None defers."""


@hookspec
def model_write_decided(decision: Any) -> None:
    """Observe a guard decision on a model write (a ``hermes_plugin.writeguard.Decision``)."""


@hookspec(firstresult=True)
def authorize_request(request: Any, action: str, session_id: str | None) -> bool | None:
    """Allow (True) or refuse (False) a request to one of the plugin's routes; None defers."""


@hookspec
def hermes_plugin_session_ids() -> Any:
    """Return the host's session ids (an iterable; items may be ``(session_id, stored_model)`` pairs) for the
    impact report; every implementation's sessions are judged."""


@hookspec
def hermes_plugin_default_models() -> Any:
    """Return ``{name: model}``: default models the host falls back to (e.g. ``{"default_model": "gpt-4.1"}``),
    reported when their model is gone."""


@hookspec
def hermes_plugin_model_replacements() -> dict[str, str] | None:
    """Map retired model ids to suggested replacements (``{"openai/gpt-4o": "openai/gpt-4.1"}``); the
    page offers the suggestion when a session's stored model is confirmed absent. None adds nothing."""
