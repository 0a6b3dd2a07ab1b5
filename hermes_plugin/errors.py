"""Exception types shared by the catalog service, the HTTP layer and the CLI."""

from __future__ import annotations


class HermesPluginError(Exception):
    """Base class for errors this package raises on purpose."""


class UnknownModelError(HermesPluginError, KeyError):
    """A model id no registered provider knows."""

    def __init__(self, model_id: str) -> None:
        super().__init__(f"Unknown model: {model_id}")
        self.model_id = model_id

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UnknownProviderError(HermesPluginError, KeyError):
    """A provider id that was never registered."""

    def __init__(self, provider_id: str) -> None:
        super().__init__(f"Unknown provider: {provider_id}")
        self.provider_id = provider_id

    def __str__(self) -> str:
        return str(self.args[0])


class InvalidModelId(HermesPluginError, ValueError):
    """A model id that is empty, too long, not text, or holds control/format characters."""


class ProviderResponseError(HermesPluginError):
    """A provider answered, but not with a model list we can use (garbage, wrong schema, too big)."""


class ConfigError(HermesPluginError):
    """Provider configuration (app config dict or TOML file) that cannot be used."""


class PluginRegistrationError(HermesPluginError):
    """A plugin raised or passed bad arguments while registering; other plugins still load."""

    def __init__(self, plugin: str, error: BaseException | str) -> None:
        super().__init__(f"plugin {plugin!r} failed to register: {error}")
        self.plugin = plugin
        self.error = error
