"""Which JSON responses are model catalogs: a list whose items are model-like ids (or objects with one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# A model id: no spaces, starts with a letter or digit, and has a separator most model ids carry
# ("org/model", "model:tag", "gpt-4.1") so that plain words are not taken for models.
MODEL_ID = re.compile(r"^@?[A-Za-z0-9][\w.:@/+-]{1,199}$")
SEPARATOR = re.compile(r"[/:.-]")
# Session and request ids (hex, UUIDs) look like ids but are not models.
OPAQUE_ID = re.compile(r"^[0-9a-fA-F-]{8,}$|^[0-9]+$")
ID_KEYS = ("id", "model_id", "model")
MIN_SHARE = 0.8  # this share of a list's items must be model-like


def model_like(value: Any) -> bool:
    """Whether ``value`` reads as a model id (``openai/gpt-4.1``, ``qwen2.5:7b``), not a word or an opaque id."""
    return (
        isinstance(value, str)
        and bool(MODEL_ID.match(value))
        and bool(SEPARATOR.search(value))
        and any(c.isalpha() for c in value)
        and not OPAQUE_ID.match(value)
    )


def _item_id(item: Any) -> Any:
    if isinstance(item, dict):
        # Objects in a catalog name their model under "id"; a list of sessions carries "model" next to a
        # "session_id"/"id" that is no model, so "model" counts only when the object has no other id.
        if "id" in item:
            return item["id"]
        if "model_id" in item:
            return item["model_id"]
        if not any(k.endswith("id") for k in item):
            return item.get("model")
        return None
    return item


def _lists(data: Any, depth: int = 0) -> Iterator[list[Any]]:
    if depth > 6:
        return
    if isinstance(data, list):
        yield data
        for item in data:
            yield from _lists(item, depth + 1)
    elif isinstance(data, dict):
        for value in data.values():
            yield from _lists(value, depth + 1)


def catalog_ids(data: Any) -> list[str]:
    """The model ids of every catalog-shaped list in ``data`` (empty when it holds none)."""
    ids: list[str] = []
    for items in _lists(data):
        if not items:
            continue
        found = [_item_id(item) for item in items]
        good = [value for value in found if model_like(value)]
        if len(good) >= max(1, MIN_SHARE * len(items)):
            ids.extend(good)
    return list(dict.fromkeys(ids))
