"""Bundled kind ``openai-compatible``: ``GET {base_url}/models`` (OpenAI, OpenRouter, Groq, vLLM, LM Studio, llama.cpp)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hermes_plugin.errors import ProviderResponseError
from hermes_plugin.hookspecs import hookimpl

KIND = "openai-compatible"
COMMON_KEYS = frozenset({"kind", "static", "label", "expire_after", "empty_means_none"})


@dataclass(frozen=True)
class OpenAICompatible:
    """A live source for any server speaking OpenAI's ``/models``; the key is read from the environment per fetch."""

    base_url: str
    api_key_env: str | None = None
    headers: Mapping[str, str] | None = field(default=None, repr=False)  # may hold secrets: keep out of repr

    def __post_init__(self) -> None:
        check_base_url(self.base_url)
        if self.api_key_env is not None and (not isinstance(self.api_key_env, str) or not self.api_key_env):
            raise ValueError("api_key_env must be the name of an environment variable")
        if self.headers is not None and not (
            isinstance(self.headers, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items())
        ):
            raise ValueError("headers must be a table of strings")

    def fetch(self, http: Any) -> list[dict[str, Any]]:
        headers = dict(self.headers or {})
        if self.api_key_env:
            headers["Authorization"] = f"Bearer {api_key(self.api_key_env)}"
        url = self.base_url.rstrip("/") + "/models"
        data = http.get_json(url, headers=headers)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise ProviderResponseError('expected {"data": [...]} from GET /models')
        # Labels from "name" (OpenRouter, LM Studio), prices from "pricing" where the server publishes them;
        # bad items are skipped by the catalog's validation.
        return [{"id": item["id"], "label": item.get("name") if isinstance(item.get("name"), str) else None,
                 "pricing": item.get("pricing")}
                for item in items if isinstance(item, dict) and "id" in item]


def api_key(env_name: str) -> str:
    """The secret from the environment at fetch time; the error names the variable, never a value."""
    value = os.environ.get(env_name, "").strip()
    if not value:
        raise ProviderResponseError(f"environment variable {env_name} is not set")
    return value


def check_base_url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"base_url must be an http:// or https:// URL, got {value!r}")
    return value


def check_keys(table: Mapping[str, Any], allowed: set[str]) -> None:
    """Unknown keys are almost always typos (``api_key`` for ``api_key_env``): say so at startup."""
    unknown = sorted(set(table) - COMMON_KEYS - allowed)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed | COMMON_KEYS))})")


def require(table: Mapping[str, Any], key: str, kind: str) -> Any:
    if key not in table:
        raise ValueError(f"kind {kind!r} needs {key} (e.g. {key} = ...)")
    return table[key]


def factory(provider_id: str, table: Mapping[str, Any]) -> dict[str, Any]:
    check_keys(table, {"base_url", "api_key_env", "headers"})
    if "api_key" in table:
        raise ValueError("put the key in an environment variable and name it in api_key_env")
    return {"live": OpenAICompatible(require(table, "base_url", KIND), table.get("api_key_env"),
                                     table.get("headers"))}


@hookimpl
def register_provider_kinds(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(KIND, factory)
