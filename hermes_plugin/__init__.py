"""hermes-plugin: stop chat web apps from overwriting a session's saved model before the live catalog arrives."""

from __future__ import annotations

from . import checkout  # noqa: F401  (first: it lets a source checkout import hooks/ and static/)
from .catalog import CatalogService
from .errors import (
    ConfigError,
    InvalidModelId,
    PluginRegistrationError,
    ProviderResponseError,
    UnknownModelError,
    UnknownProviderError,
)
from .extension import ModelGuard
from .hooks.anthropic import Anthropic
from .hooks.ollama import Ollama
from .hooks.openai_compatible import OpenAICompatible
from .hookspecs import hookimpl
from .models import Model

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

