"""Model ids and labels: the value types, and the validation every id passes before we trust it."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import InvalidModelId, ProviderResponseError
from .prices import Price, parse_price

MAX_MODEL_ID_LENGTH = 256
MAX_LABEL_LENGTH = 512
# Characters a model id may never carry in a write: markup openers and quotes (ids are text, not HTML).
WRITE_FORBIDDEN = frozenset('<>"`')


@dataclass(frozen=True)
class Model:
    """One model in a catalog; ``label`` is plain text for the picker, defaulting to the id."""

    id: str
    label: str | None = None
    price: Price | None = None  # dollars per million tokens, when the provider publishes it

    @property
    def display(self) -> str:
        return self.label or self.id


def _has_control(value: str) -> bool:
    if value.isascii():  # the usual id, checked in C: the only unprintable ASCII characters are controls (Cc)
        return not value.isprintable()
    # Cc = control characters, Cf = format characters (bidi overrides, zero-width joiners...)
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in value)


def validate_catalog_id(value: Any) -> str:
    """Check an id a provider returned: kept exactly as given, but must be sane text."""
    if not isinstance(value, str):
        raise InvalidModelId(f"model id must be a string, got {type(value).__name__}")
    if not value or len(value) > MAX_MODEL_ID_LENGTH:
        raise InvalidModelId(f"model id must be 1..{MAX_MODEL_ID_LENGTH} characters")
    if _has_control(value):
        raise InvalidModelId("model id contains control or format characters")
    return value


def validate_write_id(value: Any) -> str:
    """Check an id proposed by a write: catalog rules plus no markup characters."""
    value = validate_catalog_id(value)
    if any(ch in WRITE_FORBIDDEN for ch in value):
        raise InvalidModelId("model id contains markup characters")
    return value


def clean_label(value: Any) -> str | None:
    """A provider label as plain text, or None when missing/unusable (the id is shown instead)."""
    if not isinstance(value, str) or not value.strip():
        return None
    value = "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cf"))
    return value[:MAX_LABEL_LENGTH] or None


def to_model(item: Any) -> Model:
    """Coerce one catalog item (``str``, ``Model`` or ``{"id", "label"}``) into a validated Model."""
    if isinstance(item, Model):
        return Model(validate_catalog_id(item.id), clean_label(item.label), item.price)
    if isinstance(item, str):
        return Model(validate_catalog_id(item))
    if isinstance(item, dict) and "id" in item:
        return Model(validate_catalog_id(item["id"]), clean_label(item.get("label") or item.get("name")),
                     parse_price(item))
    raise InvalidModelId(f"not a model: {type(item).__name__}")


def to_models(items: Any, *, strict: bool = True) -> list[Model]:
    """Coerce an iterable of catalog items; duplicates dropped, order kept.

    ``strict`` raises ProviderResponseError on the first bad item; otherwise bad items are skipped.
    """
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
        raise ProviderResponseError(f"expected a list of models, got {type(items).__name__}")
    seen: dict[str, Model] = {}
    for item in items:
        try:
            model = to_model(item)
        except InvalidModelId as exc:
            if strict:
                raise ProviderResponseError(str(exc)) from exc
            continue
        seen.setdefault(model.id, model)
    return list(seen.values())
