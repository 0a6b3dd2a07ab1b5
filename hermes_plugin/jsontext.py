"""JSON from outside the process (request bodies, the host's answers, a provider's list), its nesting bounded first.

The standard parser recurses once per nesting level. A body nested thousands deep reaches Python's recursion
limit inside it, and whatever else runs at that depth (a finalizer the garbage collector calls) fails too,
away from the request that caused it. So a document that opens more than ``MAX_DEPTH`` brackets has its
nesting measured first, without recursion, and one nested deeper is refused as malformed.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

MAX_DEPTH = 200  # far deeper than any chat app's JSON, far from the interpreter's recursion limit

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_STEP = [0] * 256  # how a byte changes the nesting depth
for _byte in b"[{":
    _STEP[_byte] = 1
for _byte in b"]}":
    _STEP[_byte] = -1


def loads(data: bytes | str) -> Any:
    """``json.loads``, raising ``ValueError`` for a document nested deeper than ``MAX_DEPTH``."""
    raw = _utf8(data)
    structure = raw.translate(None, _NOT_STRUCTURE)
    if structure.count(b"[") + structure.count(b"{") > MAX_DEPTH:  # it cannot nest deeper than it opens
        found = depth(raw if b"\\" in raw else structure)  # without escapes, the brackets and quotes say it all
        if found > MAX_DEPTH:
            raise ValueError(f"nested {found} levels deep; at most {MAX_DEPTH} are read")
    return json.loads(data)


def depth(raw: bytes) -> int:
    """How deep the brackets outside strings of a UTF-8 JSON text nest (the string rules are JSON's own)."""
    if b"\\" in raw:  # escapes first: an escaped backslash, then an escaped quote
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Every quote left opens or closes a string. Two adjacent quotes going together leave every other
    # byte's side of them as it was: strings with no bracket inside go whole, and cheaply.
    structure = raw.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    return max(itertools.accumulate(map(_STEP.__getitem__, structure)), default=0)


def _utf8(data: bytes | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    encoding = json.detect_encoding(data)  # as json.loads does for bytes (UTF-16 and UTF-32 too)
    return bytes(data) if encoding.startswith("utf-8") else data.decode(encoding, "surrogatepass").encode("utf-8", "surrogatepass")
