"""Tolerant JSON extraction for graders and structured output."""

from __future__ import annotations

import pytest

from tinyinterp.llm import InvalidReply, extract_json


@pytest.mark.parametrize("text", [
    '{"grammar": 8, "age": "C"}',
    '```json\n{"grammar": 8, "age": "C"}\n```',
    'Here are the grades: {"grammar": 8, "age": "C"} Thanks!',
    'noise {not json} then {"grammar": 8, "age": "C"}',
])
def test_extracts_object(text):
    assert extract_json(text) == {"grammar": 8, "age": "C"}


def test_braces_inside_strings():
    assert extract_json('x {"a": "}{"} y') == {"a": "}{"}


@pytest.mark.parametrize("text", ["no json here", "{broken", ""])
def test_no_object_raises(text):
    with pytest.raises(InvalidReply):
        extract_json(text)
