"""Catalog ids are text: control and format characters are refused, ASCII or not; everything else is kept."""

from __future__ import annotations

import pytest

from hermes_plugin.errors import InvalidModelId
from hermes_plugin.models import validate_catalog_id


@pytest.mark.parametrize("value", ["gpt-4o", "@openai:gpt-4o", "p/model name 1.5", "модель/7b", "模型-v2", "a~!#$%^&*()"])
def test_ordinary_ids_are_kept_exactly(value):
    assert validate_catalog_id(value) == value


@pytest.mark.parametrize("value", ["gpt\n4", "tab\there", "bell\x07", "del\x7f", "nul\x00", "bidi\u202egpt",
                                   "zero\u200dwidth", "модель\x1b[31m", "c1\x85control"])
def test_control_and_format_characters_are_refused(value):
    with pytest.raises(InvalidModelId):
        validate_catalog_id(value)
