"""Which writes the page made changed a stored value: the write's field against the page's own earlier read."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .traffic import Exchange

Scalar = (str, int, float, bool)
MIN_IDENTITY = 3  # shorter strings ("en", "1") are too common to tie a write to an object


@dataclass(frozen=True)
class Change:
    """A write that set ``field`` of the object identified by ``identity`` from ``before`` to ``after``."""

    write: Exchange
    field: str
    before: Any
    after: Any
    read_url: str  # the page's own GET that showed ``before`` (re-read after the trial to confirm)
    identity: tuple[str | None, str]  # (key, value) the write and the object share, typically the session id


def objects(data: Any, depth: int = 0) -> Iterator[dict[str, Any]]:
    """Every JSON object inside ``data``."""
    if depth > 8:
        return
    if isinstance(data, dict):
        yield data
        for value in data.values():
            yield from objects(value, depth + 1)
    elif isinstance(data, list):
        for item in data:
            yield from objects(item, depth + 1)


def id_key(name: str) -> bool:
    """``id``, ``session_id``, ``chatId``: a field that names the object rather than a value of it."""
    return name == "id" or name.endswith("_id") or name.endswith("Id")


def identities(write: Exchange) -> list[tuple[str | None, str]]:
    """(key, value) pairs that tie a write to one stored object: its id fields, else its path segments (any key)."""
    pairs: list[tuple[str | None, str]] = [
        (k, v) for k, v in write.body.items() if id_key(k) and isinstance(v, str) and len(v) >= MIN_IDENTITY
    ]
    if not pairs:
        path = write.target.split("?", 1)[0]
        pairs = [(None, segment) for segment in path.split("/") if len(segment) >= MIN_IDENTITY]
    return pairs


def find_object(data: Any, field: str, identity: tuple[str | None, str]) -> dict[str, Any] | None:
    """The object in ``data`` holding ``field`` and the identity (that key, or any key when None, = its value)."""
    key, value = identity
    for obj in objects(data):
        if field not in obj:
            continue
        if (obj.get(key) == value) if key is not None else any(v == value for k, v in obj.items() if k != field):
            return obj
    return None


def changes(exchanges: Sequence[Exchange]) -> list[Change]:
    """Each field a write set to something other than what the page had read for that object just before."""
    found: list[Change] = []
    for index, write in enumerate(exchanges):
        if write.method == "GET" or not isinstance(write.body, dict) or not 200 <= write.status < 300:
            continue
        reads = [e for e in exchanges[:index] if e.method == "GET" and 200 <= e.status < 300 and e.answer is not None]
        for field_name, after in write.body.items():
            if not isinstance(after, Scalar) or id_key(field_name):
                continue
            change = _earlier_value(write, field_name, after, reads)
            if change is not None:
                found.append(change)
    return found


def _earlier_value(write: Exchange, field_name: str, after: Any, reads: Sequence[Exchange]) -> Change | None:
    keys = identities(write)
    for read in reversed(reads):  # the page's latest read of the object is what it was acting on
        for identity in keys:
            obj = find_object(read.answer, field_name, identity)
            if obj is not None:
                before = obj[field_name]
                if isinstance(before, Scalar) and before != after:
                    return Change(write, field_name, before, after, read.target, identity)
                return None  # the page wrote back what it had read: no change
    return None
