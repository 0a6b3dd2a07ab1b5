"""Bundled kind ``anthropic``: ``GET /v1/models`` with ``x-api-key``, following ``has_more`` pages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hermes_plugin.errors import ProviderResponseError
from hermes_plugin.hookspecs import hookimpl

from .openai_compatible import api_key, check_base_url, check_keys

KIND = "anthropic"
API_VERSION = "2023-06-01"
MAX_PAGES = 50  # a provider that always says has_more must not keep a fetch running forever
PAGE_LIMIT = 100


@dataclass(frozen=True)
class Anthropic:
    """Anthropic's model list; the key is read from ``api_key_env`` at fetch time."""

    api_key_env: str = "ANTHROPIC_API_KEY"
    base_url: str = "https://api.anthropic.com"

    def __post_init__(self) -> None:
        check_base_url(self.base_url)
        if not isinstance(self.api_key_env, str) or not self.api_key_env:
            raise ValueError("api_key_env must be the name of an environment variable")

    def fetch(self, http: Any) -> list[dict[str, Any]]:
        headers = {"x-api-key": api_key(self.api_key_env), "anthropic-version": API_VERSION}
        url = self.base_url.rstrip("/") + "/v1/models"
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": PAGE_LIMIT}
        for _ in range(MAX_PAGES):
            page = http.get_json(url, headers=headers, params=params)
            items = page.get("data") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise ProviderResponseError('expected {"data": [...]} from GET /v1/models')
            out.extend({"id": item["id"], "label": item.get("display_name")}
                       for item in items if isinstance(item, dict) and "id" in item)
            if page.get("has_more") is not True:
                return out
            last_id = page.get("last_id")
            if not isinstance(last_id, str) or not last_id or last_id == params.get("after_id"):
                raise ProviderResponseError("has_more without a new last_id from GET /v1/models")
            params = {"limit": PAGE_LIMIT, "after_id": last_id}
        raise ProviderResponseError(f"more than {MAX_PAGES} pages from GET /v1/models")


def factory(provider_id: str, table: Mapping[str, Any]) -> dict[str, Any]:
    check_keys(table, {"base_url", "api_key_env"})
    kwargs = {key: table[key] for key in ("api_key_env", "base_url") if key in table}
    return {"live": Anthropic(**kwargs)}


@hookimpl
def register_provider_kinds(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register(KIND, factory)
