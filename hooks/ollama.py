"""Bundled kind ``ollama``: ``GET {base_url}/api/tags`` -> ``models[].name``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hermes_plugin.errors import ProviderResponseError
from hermes_plugin.hookspecs import hookimpl

from .openai_compatible import check_base_url, check_keys, require

KIND = "ollama"


@dataclass(frozen=True)
class Ollama:
    """A local Ollama server's installed models."""

    base_url: str = "http://127.0.0.1:11434"

    def __post_init__(self) -> None:
        check_base_url(self.base_url)

    def fetch(self, http: Any) -> list[Any]:
        data = http.get_json(self.base_url.rstrip("/") + "/api/tags")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise ProviderResponseError('expected {"models": [...]} from GET /api/tags')
        return [item["name"] for item in models if isinstance(item, dict) and "name" in item]


def factory(provider_id: str, table: Mapping[str, Any]) -> dict[str, Any]:
    check_keys(table, {"base_url"})
    return {"live": Ollama(require(table, "base_url", KIND))}


@hookimpl
def register_provider_kinds(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(KIND, factory)
