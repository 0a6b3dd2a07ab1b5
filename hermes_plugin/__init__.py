"""hermes-plugin: stop chat web apps from overwriting a session's saved model before the live catalog arrives."""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    ConfigError,
    InvalidModelId,
    PluginRegistrationError,
    ProviderResponseError,
    UnknownModelError,
    UnknownProviderError,
)
from .hookspecs import hookimpl
from .models import Model

# Heavier names load on first use, so `import hermes_plugin` (the pytest plugin, the CLI) stays cheap.
_LAZY = {
    "ModelGuard": "hermes_plugin.extension",
    "CatalogService": "hermes_plugin.catalog",
    "OpenAICompatible": "hermes_plugin.hooks.openai_compatible",
    "Ollama": "hermes_plugin.hooks.ollama",
    "Anthropic": "hermes_plugin.hooks.anthropic",
}

__all__ = [
    "Anthropic",
    "CatalogService",
    "ConfigError",
    "InvalidModelId",
    "Model",
    "ModelGuard",
    "Ollama",
    "OpenAICompatible",
    "PluginRegistrationError",
    "ProviderResponseError",
    "UnknownModelError",
    "UnknownProviderError",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hermes_plugin' has no attribute {name!r}")
