"""The tiny dotted path language of the config: ``session.model``, ``models[].id``, ``groups[].models[].id``.

A path is dot-separated keys; a key ending in ``[]`` walks every item of the list it names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

MISSING: Any = object()


class PathError(ValueError):
    """A path that cannot be followed: a malformed path, or a value of the wrong type on the way."""


@dataclass(frozen=True)
class Step:
    key: str
    walk: bool  # True for ``key[]``: the value is a list whose items are visited one by one


def parse(path: str) -> tuple[Step, ...]:
    """Split a dotted path into steps; a bare ``[]`` step walks the current value itself."""
    if not isinstance(path, str) or not path:
        raise PathError(f"invalid path {path!r}")
    steps = []
    for part in path.split("."):
        walk = part.endswith("[]")
        key = part[:-2] if walk else part
        if (not key and not walk) or "[" in key or "]" in key:
            raise PathError(f"invalid path {path!r}")
        steps.append(Step(key, walk))
    return tuple(steps)


def get(doc: Any, path: str) -> Any:
    """The single value at a path without ``[]`` (a write's field); MISSING when a key is absent.

    Raises PathError when something on the way is not an object (``{"session": "x"}`` for ``session.model``).
    """
    value = doc
    for step in parse(path):
        if step.walk:
            raise PathError(f"path {path!r} walks a list; a write field must name one value")
        if not isinstance(value, dict):
            raise PathError(f"{step.key!r} in {path!r}: expected an object, got {type(value).__name__}")
        if step.key not in value:
            return MISSING
        value = value[step.key]
    return value


def set_value(doc: dict[str, Any], path: str, new: Any) -> None:
    """Replace the value at an existing single-value path (the kept model in a rewritten write)."""
    steps = parse(path)
    target: Any = doc
    for step in steps[:-1]:
        target = target[step.key]
    target[steps[-1].key] = new


def slots(doc: Any, path: str | tuple[Step, ...]) -> list[tuple[Any, Any]]:
    """``(container, key)`` of every value a path reaches, in order: where a rewrite puts a new value.

    A list item is ``(the list, its index)``; wrong types and missing keys on the way are skipped.
    """
    steps = parse(path) if isinstance(path, str) else path
    return list(_slots(doc, steps))


def _slots(value: Any, steps: tuple[Step, ...]) -> Iterator[tuple[Any, Any]]:
    step, rest = steps[0], steps[1:]
    if step.key:
        if not isinstance(value, dict) or step.key not in value:
            return
        if not step.walk:
            if rest:
                yield from _slots(value[step.key], rest)
            else:
                yield value, step.key
            return
        value = value[step.key]
    if not step.walk or not isinstance(value, list):
        return
    for index, item in enumerate(value):
        if rest:
            yield from _slots(item, rest)
        else:
            yield value, index


def extract(doc: Any, path: str | tuple[Step, ...]) -> list[Any]:
    """Every value a path reaches; wrong types and missing keys on the way are skipped, not raised."""
    steps = parse(path) if isinstance(path, str) else path
    return list(_walk(doc, steps))


def _walk(value: Any, steps: tuple[Step, ...]) -> Iterator[Any]:
    if not steps:
        yield value
        return
    step, rest = steps[0], steps[1:]
    if step.key:
        if not isinstance(value, dict) or step.key not in value:
            return
        value = value[step.key]
    if not step.walk:
        yield from _walk(value, rest)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, rest)


def grouped(doc: Any, provider_path: str, models_path: str) -> list[tuple[Any, list[Any]]]:
    """Pair providers with their models when both paths walk the same list (``groups[].provider`` with
    ``groups[].models[].id``): one (provider, models) per item of that list; else one pair for the document."""
    provider_steps, model_steps = parse(provider_path), parse(models_path)
    shared = 0  # steps up to and including the last common list walk
    for index, (a, b) in enumerate(zip(provider_steps, model_steps, strict=False)):
        if a != b:
            break
        if a.walk:
            shared = index + 1
    if not shared:
        providers = extract(doc, provider_steps)
        return [(providers[0] if providers else None, extract(doc, model_steps))]
    pairs = []
    for item in extract(doc, provider_steps[:shared]):
        providers = extract(item, provider_steps[shared:]) if provider_steps[shared:] else [item]
        pairs.append((providers[0] if providers else None, extract(item, model_steps[shared:])))
    return pairs
