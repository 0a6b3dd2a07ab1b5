"""JSON from outside, its nesting bounded before the recursive standard parser runs."""

from __future__ import annotations

import gc
import json
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_plugin.jsontext import MAX_DEPTH, depth, loads


def nested(levels: int, opener: str = "[", closer: str = "]") -> str:
    return opener * levels + closer * levels


@pytest.mark.parametrize(("text", "expected"), [
    ("{}", 1), ('{"a": [1, {"b": []}]}', 4), ("[]" * 300, 1), ('"[[[["', 0), ('["]]]]", [[]]]', 3),
    (r'["a\"[[[", []]', 2), (r'["a\\", [[]]]', 3), (r'["\\\"[", {}]', 2), ('[{"k": "{{{"}]', 2),
])
def test_depth_counts_brackets_outside_strings_only(text: str, expected: int) -> None:
    assert depth(text.encode()) == expected


def test_the_deepest_document_read_is_max_depth_levels() -> None:
    assert loads(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))
    with pytest.raises(ValueError, match=f"nested {MAX_DEPTH + 1} levels deep"):
        loads(nested(MAX_DEPTH + 1))
    with pytest.raises(ValueError, match="nested 100000 levels deep"):
        loads(nested(100_000).encode())


def test_brackets_in_strings_do_not_make_a_document_deep() -> None:
    text = json.dumps({"label": "[" * 5000, "ids": [{"id": f"m{i}"} for i in range(500)]})
    assert loads(text) == json.loads(text)


def test_utf16_and_utf32_are_measured_as_json_reads_them() -> None:
    for encoding in ("utf-16", "utf-32-le", "utf-8-sig"):
        with pytest.raises(ValueError, match="levels deep"):
            loads(nested(1000).encode(encoding))
        assert loads(json.dumps([[["x"]]] * 100).encode(encoding)) == [[["x"]]] * 100


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ ab\u00e9'),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
                    max_leaves=60))
def test_any_document_reads_as_the_standard_parser_reads_it(value: Any) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert loads(text) == json.loads(text) and loads(text.encode()) == json.loads(text.encode())


def reference_depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max(map(reference_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(reference_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(st.recursive(st.text(alphabet='[]{}"\\ a\n'), lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(alphabet='[]{}"\\ a', max_size=3), inner, max_size=3), max_leaves=40),
       st.booleans())
def test_depth_is_the_depth_of_what_the_text_holds(value: Any, ascii_only: bool) -> None:
    assert depth(json.dumps(value, ensure_ascii=ascii_only).encode()) == reference_depth(value)


@pytest.fixture
def unraisable() -> Iterator[list[str]]:
    """What the interpreter could not raise anywhere (a finalizer that failed), for the length of a test."""
    seen: list[str] = []
    previous, sys.unraisablehook = sys.unraisablehook, lambda info: seen.append(repr(info.exc_value))
    yield seen
    sys.unraisablehook = previous


def parses(levels: int) -> bool:
    try:
        json.loads(nested(levels))
    except RecursionError:
        return False
    return True


def test_a_deep_document_does_not_break_what_the_garbage_collector_runs_meanwhile(unraisable: list[str]) -> None:
    # A finalizer due while a document is parsed runs at the parser's depth and needs stack of its own: this
    # one needs 100 frames. The collection is timed to fall 50 levels short of the deepest the parser gets here.
    deepest = max(levels for levels in range(10, sys.getrecursionlimit(), 10) if parses(levels))
    ran: list[bool] = []

    def finalizer(levels: int = 100) -> None:
        if levels:
            finalizer(levels - 1)
        else:
            ran.append(True)

    thresholds = gc.get_threshold()
    gc.collect()
    gc.set_threshold(deepest - 50)  # the parser allocates one list per nesting level
    try:
        cycle: list[Any] = []
        holder = type("Holder", (), {})()
        cycle += [cycle, holder]
        holder.cycle = cycle  # garbage only the collector can free, with a finalizer
        weakref.finalize(holder, finalizer)
        del cycle, holder
        with pytest.raises(ValueError, match="levels deep"):
            loads(nested(100_000).encode())
    finally:
        gc.set_threshold(*thresholds)
        gc.collect()
    assert unraisable == [] and ran == [True]
