"""Providers declared without code: the ``HERMES_PLUGIN_PROVIDERS`` dict or a TOML file."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_ENV = "HERMES_PLUGIN_CONFIG"


def load_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a hermes-plugin TOML file; a missing or malformed file is a ConfigError with its path."""
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def providers_table(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``[providers.<id>]`` tables of a loaded config file."""
    providers = config.get("providers", {})
    if not isinstance(providers, Mapping):
        raise ConfigError("[providers] must be a table of provider tables")
    return dict(providers)


def load_providers(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Providers from ``path`` or ``$HERMES_PLUGIN_CONFIG``; empty when neither is given."""
    path = path or os.environ.get(CONFIG_ENV)
    return providers_table(load_toml(path)) if path else {}
