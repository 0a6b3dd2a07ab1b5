"""Bundled kind ``static-file``: a JSON or TOML file of models, read at every fetch (edit it, refresh)."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hermes_plugin.errors import ProviderResponseError
from hermes_plugin.hookspecs import hookimpl

from .openai_compatible import check_keys, require

KIND = "static-file"
MAX_FILE_BYTES = 5 * 2**20


@dataclass(frozen=True)
class StaticFile:
    """A live source that reads a file: a JSON list, JSON ``{"models": [...]}`` or TOML ``models = [...]``."""

    path: str

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError("path must be a file name")

    def fetch(self, http: Any = None) -> list[Any]:
        path = Path(self.path).expanduser()
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ProviderResponseError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
            raw = path.read_bytes()
        except OSError as exc:
            raise ProviderResponseError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            data: Any = tomllib.loads(raw.decode("utf-8")) if path.suffix == ".toml" else json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:  # TOMLDecodeError and JSONDecodeError are ValueErrors
            raise ProviderResponseError(f"{path} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: {exc}") from exc
        models = data.get("models") if isinstance(data, dict) else data
        if not isinstance(models, list):
            raise ProviderResponseError(f'{path}: expected a list of models or {{"models": [...]}}')
        return models


def factory(provider_id: str, table: Mapping[str, Any]) -> dict[str, Any]:
    check_keys(table, {"path"})
    return {"live": StaticFile(require(table, "path", KIND))}


@hookimpl
def register_provider_kinds(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(KIND, factory)
