"""Where a write carries its model: one or several JSON fields, some of them lists, read and kept as one.

A host may name the model of one write in several places (``model``, ``model_item.id``,
``message_ids[].model_id``, ``user_message.models[]``). The guard reads them all as one proposal and,
when it keeps the stored model, rewrites every one of them; when it cannot rewrite them all consistently
it must not answer keep, so the forwarded body never says something other than the decision.

A path without ``[]`` names one model (a chat's primary model); a path with ``[]`` names the write's
model list, one entry per model of a multi-model chat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import jsonpath
from .errors import InvalidModelId
from .models import validate_write_id

Models = tuple[str, ...]


class FieldError(ValueError):
    """A write whose model fields cannot be read: a value of the wrong type or an invalid id."""


@dataclass(frozen=True)
class FieldValue:
    """The models one field of a write names."""

    path: str
    many: bool  # a list field (``[]`` in its path): the whole model list, else the primary model only
    models: Models

    def names(self, models: Models) -> bool:
        """Whether this field already names ``models`` (a single field names the first entry)."""
        return self.models == (models if self.many else models[:1])

    def spread(self, stored: Models | None) -> Models:
        """The whole model list this field proposes: a single field replaces the first stored entry only."""
        return self.models if self.many or not stored else self.models + stored[1:]


@dataclass(frozen=True)
class WriteFields:
    """The ordered paths of a write's model fields; the first one present is the field the host stores."""

    paths: tuple[str, ...]

    @classmethod
    def of(cls, value: str | Sequence[str]) -> WriteFields:
        """``"model"`` or ``["model", "message_ids[].model_id"]``; PathError for a malformed path."""
        paths = (value,) if isinstance(value, str) else tuple(value)
        if not paths or not all(isinstance(path, str) for path in paths):
            raise jsonpath.PathError(f"a write's model must be a path or a non-empty list of paths, got {value!r}")
        for path in paths:
            jsonpath.parse(path)
        if len(set(paths)) != len(paths):
            raise jsonpath.PathError(f"a write's model paths repeat one another: {list(paths)!r}")
        return cls(paths)

    @property
    def primary(self) -> str:
        """The path the browser guard reads (the first one)."""
        return self.paths[0]

    def read(self, body: Any) -> list[FieldValue]:
        """Every field present in ``body`` with its models, in config order; FieldError for a bad value."""
        found = []
        for path in self.paths:
            many = "[]" in path
            if many:
                values = jsonpath.extract(body, path)  # an absent or empty list names nothing
            else:
                try:
                    value = jsonpath.get(body, path)
                except jsonpath.PathError as exc:
                    raise FieldError(str(exc)) from None
                if value is jsonpath.MISSING:
                    continue
                if isinstance(value, list):
                    raise FieldError(f"{path}: expected one model id, got a list (name a list field {path}[])")
                values = [value]
            try:
                models = tuple(validate_write_id(value) for value in values)
            except InvalidModelId as exc:
                raise FieldError(f"{path}: {exc}") from None
            if models:
                found.append(FieldValue(path, many, models))
        return found

    @staticmethod
    def proposal(found: list[FieldValue], stored: Models | None) -> Models | None:
        """What the write proposes: the first field that differs from ``stored``, else the first field.

        A write whose fields disagree is judged by the one that would change the stored model, so a
        secondary field can never switch the model behind a "same" decision.
        """
        if not found:
            return None
        if stored:
            for value in found:
                if not value.names(stored):
                    return value.spread(stored)
        return found[0].spread(stored)

    def rewrite(self, body: Any, kept: Models) -> bool:
        """Make every present field name ``kept``; False (body untouched) when one cannot hold that list."""
        plan: list[tuple[Any, Any, str]] = []
        for path in self.paths:
            slots = jsonpath.slots(body, path)
            if "[]" in path:
                if slots and len(slots) != len(kept):
                    return False  # a list of another length: no entry-by-entry rewrite says the same
                plan.extend((container, key, model) for (container, key), model in zip(slots, kept, strict=False))
            else:
                plan.extend((container, key, kept[0]) for container, key in slots)
        for container, key, model in plan:
            container[key] = model
        return True
